/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer's entry point around one target's fuzz_one(). */
#include <stddef.h>
#include <stdint.h>

int fuzz_one(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_one(data, size);
	return 0;
}
