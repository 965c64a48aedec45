/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * null:size=SIZE — reads zeroes, discards writes, advertises everything.
 * It measures what nbdd itself costs per request, so every call returns
 * at once: NBDD_BACKEND_INLINE and NBDD_THREAD_PARALLEL.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_SIZE ((uint64_t)1 << 63)

struct null_disk {
	_Atomic uint64_t size;
};

static int null_open(const struct nbdd_param *p, size_t n, int readonly,
		     void **handle)
{
	struct null_disk *d;
	uint64_t size = 0;
	bool have = false;
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(p[i].key, "size")) {
			nbdd_backend_error("null: unknown parameter '%s' (null "
					   "takes size=SIZE)",
					   p[i].key);
			return -EINVAL;
		}
		if (nbdd_parse_size(p[i].value, &size) || size > MAX_SIZE) {
			nbdd_backend_error("null: size '%s' is not a size from "
					   "0 to 8E (e.g. 1T)",
					   p[i].value);
			return -EINVAL;
		}
		have = true;
	}
	if (!have) {
		nbdd_backend_error("null: size=SIZE is required (e.g. "
				   "null:size=1T)");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	atomic_init(&d->size, size);
	*handle = d;
	return 0;
}

static void null_close(void *h)
{
	free(h);
}

static int null_get_size(void *h, uint64_t *size)
{
	*size = atomic_load(&((struct null_disk *)h)->size);
	return 0;
}

static int null_capabilities(void *h, uint32_t *caps)
{
	*caps = NBDD_CAP_WRITE | NBDD_CAP_FLUSH | NBDD_CAP_FUA | NBDD_CAP_TRIM |
		NBDD_CAP_ZERO | NBDD_CAP_FAST_ZERO | NBDD_CAP_CACHE |
		NBDD_CAP_EXTENTS | NBDD_CAP_MULTI_CONN | NBDD_CAP_RESIZE;
	return 0;
}

static int null_pread(void *h, void *buf, size_t count, uint64_t offset,
		      uint32_t flags)
{
	memset(buf, 0, count);
	return 0;
}

static int null_pwrite(void *h, const void *buf, size_t count, uint64_t offset,
		       uint32_t flags)
{
	return 0;
}

static int null_flush(void *h, uint32_t flags)
{
	return 0;
}

/* trim, zero and cache: nothing is stored, so nothing to do. */
static int null_nop(void *h, uint64_t count, uint64_t offset, uint32_t flags)
{
	return 0;
}

static int null_extents(void *h, uint64_t count, uint64_t offset,
			uint32_t flags, struct nbdd_extents *out)
{
	return nbdd_extents_add(out, offset, count,
				NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO);
}

static int null_resize(void *h, uint64_t new_size)
{
	if (new_size > MAX_SIZE) {
		nbdd_backend_error("null: size is at most 8E (2^63 bytes)");
		return -EINVAL;
	}
	atomic_store(&((struct null_disk *)h)->size, new_size);
	return 0;
}

const struct nbdd_backend nbdd_backend_null = {
    NBDD_BACKEND_HEADER,
    .name = "null",
    .description = "reads zeroes, discards writes (for benchmarks)",
    .help = "size=SIZE  the disk's size, up to 8E (required)",
    .thread_model = NBDD_THREAD_PARALLEL,
    .flags = NBDD_BACKEND_INLINE,
    .open = null_open,
    .close = null_close,
    .get_size = null_get_size,
    .capabilities = null_capabilities,
    .pread = null_pread,
    .pwrite = null_pwrite,
    .flush = null_flush,
    .trim = null_nop,
    .zero = null_nop,
    .cache = null_nop,
    .extents = null_extents,
    .resize = null_resize,
};
