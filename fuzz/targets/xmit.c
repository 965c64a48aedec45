/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The transmission phase, end to end: lib/proto/conn.c + reply.c +
 * export.c serving a socketpair whose peer sends the fuzz input as its
 * request stream and reads everything the server answers.
 *
 * Input: [mode 1] then the request stream.
 * mode bits 0-1: 0 kernel socket (simple replies, no negotiation),
 *                1 network, simple replies; 2 structured; 3 extended
 *      bit 2:    base:allocation selected (block status allowed)
 *      bit 3:    a blocking backend (worker pool) instead of memory
 *      bit 4:    read-only export
 *      bit 5:    the client honours a 512-byte minimum block size
 */
#include "../fuzz.h"
#include "internal.h"

int fuzz_one(const uint8_t *data, size_t size);

#define XMIT_SIZE (1u << 20)

/* A blocking backend over a flat buffer, with holes where it is zero. */
struct xmit_disk {
	uint8_t *data;
};

static int xmit_open(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	struct xmit_disk *d = calloc(1, sizeof(*d));

	if (!d || !(d->data = calloc(1, XMIT_SIZE))) {
		free(d);
		return -ENOMEM;
	}
	*h = d;
	return 0;
}

static void xmit_close(void *h)
{
	struct xmit_disk *d = h;

	free(d->data);
	free(d);
}

static int xmit_size(void *h, uint64_t *size)
{
	*size = XMIT_SIZE;
	return 0;
}

static int xmit_pread(void *h, void *buf, size_t count, uint64_t off,
		      uint32_t f)
{
	struct xmit_disk *d = h;

	FUZZ_CHECK(off <= XMIT_SIZE && count <= XMIT_SIZE - off);
	memcpy(buf, d->data + off, count);
	return 0;
}

static int xmit_pwrite(void *h, const void *buf, size_t count, uint64_t off,
		       uint32_t f)
{
	struct xmit_disk *d = h;

	FUZZ_CHECK(off <= XMIT_SIZE && count <= XMIT_SIZE - off);
	memcpy(d->data + off, buf, count);
	/* an error path now and then, chosen by the data itself */
	return count && ((const uint8_t *)buf)[0] == 0xEE ? -EIO : 0;
}

static int xmit_flush(void *h, uint32_t f)
{
	return 0;
}

static int xmit_trim(void *h, uint64_t count, uint64_t off, uint32_t f)
{
	struct xmit_disk *d = h;

	FUZZ_CHECK(off <= XMIT_SIZE && count <= XMIT_SIZE - off);
	memset(d->data + off, 0, (size_t)count);
	return 0;
}

/* 4 KiB granules: all-zero ones are holes. */
static int xmit_extents(void *h, uint64_t count, uint64_t off, uint32_t f,
			struct nbdd_extents *x)
{
	struct xmit_disk *d = h;
	uint64_t end, pos = off;
	int r;

	FUZZ_CHECK(off < XMIT_SIZE && count <= XMIT_SIZE - off);
	end = off + count;
	while (pos < end) {
		static const uint8_t zeroes[4096];
		uint64_t next = MIN((pos | 4095) + 1, (uint64_t)XMIT_SIZE);
		bool zero = !memcmp(d->data + pos, zeroes, (size_t)(next - pos));

		r = nbdd_extents_add(x, pos, next - pos,
				     zero ? NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO
					  : 0);
		if (r)
			return r;
		pos = next;
	}
	return 0;
}

static const struct nbdd_backend xmit_backend = {
	NBDD_BACKEND_HEADER,
	.name = "fuzzdisk",
	.thread_model = NBDD_THREAD_PARALLEL,
	.open = xmit_open,
	.close = xmit_close,
	.get_size = xmit_size,
	.pread = xmit_pread,
	.pwrite = xmit_pwrite,
	.flush = xmit_flush,
	.trim = xmit_trim,
	.extents = xmit_extents,
};

int fuzz_one(const uint8_t *data, size_t size)
{
	struct nbdd_export_options eo = { .name = "fuzz", .workers = 3 };
	struct negotiated neg = { .min_block = 1 };
	struct fuzz_peer peer;
	uint8_t mode;
	struct conn *c;
	int fd, ret;

	if (size < 1)
		return 0;
	mode = data[0];
	eo.readonly = mode & 0x10;
	if (mode & 0x08)
		ret = nbdd_export_new(&xmit_backend, NULL, 0, &eo, &neg.export);
	else
		ret = nbdd_export_open("memory:size=1M", &eo, &neg.export);
	FUZZ_CHECK(ret == 0);
	neg.structured = (mode & 3) >= 2;
	neg.extended = (mode & 3) == 3;
	neg.base_allocation = (mode & 4) && neg.structured;
	if (mode & 0x20)
		neg.min_block = 512;

	fd = fuzz_peer_start(&peer, data + 1, size - 1);
	FUZZ_CHECK(fd >= 0);
	c = conn_new(fd, (mode & 3) ? CONN_NETWORK : CONN_KERNEL, &neg);
	FUZZ_CHECK(c != NULL);
	ret = conn_run(c);
	FUZZ_CHECK(ret <= 0);
	conn_free(c); /* closes fd: the peer sees EOF */
	fuzz_peer_join(&peer);
	return 0;
}
