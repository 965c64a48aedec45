/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* lib/util.c: size parsing, full reads with deadlines, vectored writes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"

static void test_parse_size(void **state)
{
	static const struct {
		const char *text;
		int ret;
		uint64_t value;
	} cases[] = {
		{ "0", 0, 0 },
		{ "512", 0, 512 },
		{ "64K", 0, 65536 },
		{ "64k", 0, 65536 },
		{ "1M", 0, 1u << 20 },
		{ "1MiB", 0, 1u << 20 },
		{ "1MB", 0, 1u << 20 },
		{ "1.5G", 0, 3ull << 29 },
		{ "1T", 0, 1ull << 40 },
		{ "8E", 0, 1ull << 63 },
		{ "16E", -ERANGE, 0 },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },
		{ "1X", -EINVAL, 0 },
		{ "1KK", -EINVAL, 0 },
		{ "1.5", -EINVAL, 0 },
		{ "G", -EINVAL, 0 },
		{ "1.G", -EINVAL, 0 },
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		v = 0;
		int r = nbdd_parse_size(cases[i].text, &v);
		if (r != cases[i].ret)
			fail_msg("'%s': got %d, want %d", cases[i].text, r,
				 cases[i].ret);
		if (r == 0 && v != cases[i].value)
			fail_msg("'%s': got %llu", cases[i].text,
				 (unsigned long long)v);
	}
	assert_int_equal(nbdd_parse_size("7E", &v), 0);
	assert_int_equal(v, 7ull << 60);
	assert_int_equal(nbdd_parse_size(NULL, &v), -EINVAL);
}

static void test_read_full_deadline(void **state)
{
	int sv[2];
	char buf[8];
	uint64_t t0;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], "abc", 3), 3);
	t0 = now_ms();
	/* 3 of 8 bytes arrive: the deadline, not a hang, ends the wait */
	assert_int_equal(read_full(sv[0], buf, sizeof(buf), t0 + 200),
			 -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 200);
	assert_true(now_ms() - t0 < 5000);
	close(sv[1]);
	assert_int_equal(read_full(sv[0], buf, sizeof(buf), 0), -ECONNRESET);
	close(sv[0]);
}

static void test_writev_full_partial(void **state)
{
	static char big[1 << 20];
	char got[16];
	struct iovec iov[3] = {
		{ "head", 4 }, { big, sizeof(big) }, { "tail", 4 },
	};
	int sv[2];
	pid_t pid;
	size_t total = 0;
	ssize_t n;
	char sink[65536];

	memset(big, 'x', sizeof(big));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		/* 1 MiB does not fit the socket buffer: partial sends */
		_exit(writev_full(sv[1], iov, 3) == 0 ? 0 : 1);
	}
	close(sv[1]);
	assert_int_equal(read_full(sv[0], got, 4, 0), 0);
	assert_memory_equal(got, "head", 4);
	while (total < sizeof(big)) {
		n = read(sv[0], sink, MIN(sizeof(sink), sizeof(big) - total));
		assert_true(n > 0);
		total += (size_t)n;
	}
	assert_int_equal(read_full(sv[0], got, 4, 0), 0);
	assert_memory_equal(got, "tail", 4);
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_read_full_deadline),
		cmocka_unit_test(test_writev_full_partial),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
