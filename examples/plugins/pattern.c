/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pattern:size=SIZE — a read-only disk whose every 8-byte word holds its
 * own offset, big-endian: the word at offset 0x1000 reads
 * 00 00 00 00 00 00 10 00. Whatever a client reads, it can tell where
 * the bytes came from, which makes it handy for testing clients, caches
 * and the kernel's request splitting.
 *
 * Built like any third-party plugin, from <nbdd/backend.h> alone:
 *   cc -shared -fPIC -o pattern.so pattern.c
 *   nbdctl attach ./pattern.so:size=1G
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <nbdd/backend.h>

struct pattern {
	uint64_t size;
};

static int pattern_open(const struct nbdd_param *params, size_t nparams,
			int readonly, void **handle)
{
	struct pattern *p;
	uint64_t size = 0;
	int have = 0;
	size_t i;

	for (i = 0; i < nparams; i++) {
		if (strcmp(params[i].key, "size")) {
			nbdd_backend_error("pattern: unknown parameter '%s' "
					   "(pattern takes size=SIZE)",
					   params[i].key);
			return -EINVAL;
		}
		if (nbdd_parse_size(params[i].value, &size)) {
			nbdd_backend_error("pattern: '%s' is not a size",
					   params[i].value);
			return -EINVAL;
		}
		have = 1;
	}
	if (!have) {
		nbdd_backend_error("pattern: size=SIZE is required");
		return -EINVAL;
	}
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->size = size;
	*handle = p;
	return 0;
}

static void pattern_close(void *handle)
{
	free(handle);
}

static int pattern_get_size(void *handle, uint64_t *size)
{
	*size = ((struct pattern *)handle)->size;
	return 0;
}

/* Nothing is stored and nothing changes: any number of clients agree. */
static int pattern_capabilities(void *handle, uint32_t *caps)
{
	*caps = NBDD_CAP_MULTI_CONN;
	return 0;
}

static void put_be64(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static int pattern_pread(void *handle, void *buf, size_t count, uint64_t offset,
			 uint32_t flags)
{
	unsigned char *p = buf, word[8];
	uint64_t base;
	size_t skip, n;

	while (count) {
		base = offset & ~(uint64_t)7;
		skip = (size_t)(offset - base);
		n = 8 - skip < count ? 8 - skip : count;
		put_be64(word, base);
		memcpy(p, word + skip, n);
		p += n;
		offset += n;
		count -= n;
	}
	return 0;
}

static const struct nbdd_backend pattern = {
    NBDD_BACKEND_HEADER,
    .name = "pattern",
    .description = "read-only: each 8-byte word holds its own offset",
    .help = "size=SIZE  the disk's size (required)",
    .thread_model = NBDD_THREAD_PARALLEL,
    /* Pure computation: it never sleeps, so it may run inline. */
    .flags = NBDD_BACKEND_INLINE,
    .open = pattern_open,
    .close = pattern_close,
    .get_size = pattern_get_size,
    .capabilities = pattern_capabilities,
    .pread = pattern_pread,
};

NBDD_BACKEND_REGISTER(pattern)
