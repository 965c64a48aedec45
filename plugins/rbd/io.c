/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The rbd plugin's data path: every request is one librbd aio call on
 * the export's one image handle (librbd is thread-safe), so everything
 * nbdd has in flight is in flight in librbd too.
 *
 * nbdd uses the .aio_ callbacks: the reader thread submits, and librbd's
 * completion thread ends the request with nbdd_request_done(), which
 * sends the reply; no thread of nbdd's waits in between. The synchronous
 * callbacks, which nbdd calls where it needs an answer on the spot (the
 * flush when the export closes, the flush after a write whose FUA nbdd
 * emulates), submit the
 * same way and wait for the completion.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rbd.h"

/*
 * Block status of more than this is not asked for at once: without the
 * fast-diff object map, librbd lists every object of the range.
 */
#define EXTENTS_MAX (1ull << 30)

enum op { OP_READ, OP_WRITE, OP_FLUSH, OP_DISCARD, OP_WRITE_ZEROES };

static const char *const op_names[] = {
	[OP_READ] = "read", [OP_WRITE] = "write", [OP_FLUSH] = "flush",
	[OP_DISCARD] = "discard", [OP_WRITE_ZEROES] = "write_zeroes",
};

/* One request on its way through librbd. */
struct pending {
	struct rbd *r;
	enum op op;
	char *buf; /* read into, or written from */
	uint64_t count, offset;
	int zflags;                /* write_zeroes */
	struct nbdd_request *req;  /* asynchronous: whom to tell */
};

/* Reason for a failed request: the op, the image and Ceph's errno. */
static int failed(const struct rbd *r, const char *op, uint64_t count,
		  uint64_t offset, int err)
{
	nbdd_backend_error("rbd: %s of %llu bytes at %llu on %s: %s", op,
			   (unsigned long long)count,
			   (unsigned long long)offset, r->name, strerror(-err));
	return err;
}

static int submit(const struct pending *p, rbd_completion_t c)
{
	rbd_image_t image = p->r->image;

	switch (p->op) {
	case OP_READ:
		return rbd_aio_read(image, p->offset, p->count, p->buf, c);
	case OP_WRITE:
		return rbd_aio_write(image, p->offset, p->count, p->buf, c);
	case OP_FLUSH:
		return rbd_aio_flush(image, c);
	case OP_DISCARD:
		return rbd_aio_discard(image, p->offset, p->count, c);
	case OP_WRITE_ZEROES:
		return rbd_aio_write_zeroes(image, p->offset, p->count, c,
					    p->zflags, 0);
	}
	return -EINVAL;
}

/*
 * What librbd's answer @n (bytes, or a negative errno) means for nbdd:
 * 0, or the errno with the reason recorded (the op, the image, Ceph's
 * errno).
 */
static int result(const struct pending *p, ssize_t n)
{
	if (n < 0 && p->op == OP_FLUSH) {
		nbdd_backend_error("rbd: flush of %s: %s", p->r->name,
				   strerror((int)-n));
		return (int)n;
	}
	if (n < 0)
		return failed(p->r, op_names[p->op], p->count, p->offset,
			      (int)n);
	/* Short only if the image shrank under us: past its end is zeroes. */
	if (p->op == OP_READ && (uint64_t)n < p->count)
		memset(p->buf + n, 0, (size_t)(p->count - (uint64_t)n));
	return 0;
}

/* Synchronously: submit and wait for the completion. */
static int run(const struct pending *p)
{
	rbd_completion_t c;
	ssize_t n = rbd_aio_create_completion(NULL, NULL, &c);

	if (n == 0) {
		n = submit(p, c);
		if (n >= 0) {
			rbd_aio_wait_for_complete(c);
			n = rbd_aio_get_return_value(c);
		}
		rbd_aio_release(c);
	}
	return result(p, n);
}

/* librbd's completion thread: the request is over. */
static void ended(rbd_completion_t c, void *arg)
{
	struct pending *p = arg;
	ssize_t n = rbd_aio_get_return_value(c);

	rbd_aio_release(c);
	nbdd_request_done(p->req, result(p, n));
	free(p);
}

/* Asynchronously: 0 once librbd has it, and ended() will follow. */
static int start(const struct pending *in)
{
	struct pending *p = malloc(sizeof(*p));
	rbd_completion_t c;
	int e;

	if (!p)
		return result(in, -ENOMEM);
	*p = *in;
	e = rbd_aio_create_completion(p, ended, &c);
	if (e == 0) {
		e = submit(p, c);
		if (e < 0)
			rbd_aio_release(c);
	}
	if (e < 0) {
		e = result(p, e);
		free(p);
	}
	return e < 0 ? e : 0;
}

/*
 * write_zeroes deallocates whole objects when it may; without
 * NBDD_F_MAY_TRIM (the client said NO_HOLE) it must leave the range
 * allocated, which librbd calls thick provisioning.
 */
static int zero_flags(uint32_t flags)
{
	return flags & NBDD_F_MAY_TRIM ? 0
				       : RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
}

/*
 * The callbacks. FUA is not claimed (see rbd_capabilities): nbdd flushes
 * after us. librbd may skip the parts of a discard smaller than
 * rbd_discard_granularity_bytes: trim is advice, and NBD allows that.
 */
int rbd_plugin_pread(void *handle, void *buf, size_t count, uint64_t offset,
		     uint32_t flags)
{
	return run(&(struct pending){ .r = handle, .op = OP_READ, .buf = buf,
				      .count = count, .offset = offset });
}

int rbd_plugin_aio_pread(void *handle, void *buf, size_t count,
			 uint64_t offset, uint32_t flags,
			 struct nbdd_request *req)
{
	return start(&(struct pending){ .r = handle, .op = OP_READ,
					.buf = buf, .count = count,
					.offset = offset, .req = req });
}

int rbd_plugin_pwrite(void *handle, const void *buf, size_t count,
		      uint64_t offset, uint32_t flags)
{
	return run(&(struct pending){ .r = handle, .op = OP_WRITE,
				      .buf = (char *)buf, .count = count,
				      .offset = offset });
}

int rbd_plugin_aio_pwrite(void *handle, const void *buf, size_t count,
			  uint64_t offset, uint32_t flags,
			  struct nbdd_request *req)
{
	return start(&(struct pending){ .r = handle, .op = OP_WRITE,
					.buf = (char *)buf, .count = count,
					.offset = offset, .req = req });
}

int rbd_plugin_flush(void *handle, uint32_t flags)
{
	return run(&(struct pending){ .r = handle, .op = OP_FLUSH });
}

int rbd_plugin_aio_flush(void *handle, uint32_t flags,
			 struct nbdd_request *req)
{
	return start(&(struct pending){ .r = handle, .op = OP_FLUSH,
					.req = req });
}

int rbd_plugin_trim(void *handle, uint64_t count, uint64_t offset,
		    uint32_t flags)
{
	return run(&(struct pending){ .r = handle, .op = OP_DISCARD,
				      .count = count, .offset = offset });
}

int rbd_plugin_aio_trim(void *handle, uint64_t count, uint64_t offset,
			uint32_t flags, struct nbdd_request *req)
{
	return start(&(struct pending){ .r = handle, .op = OP_DISCARD,
					.count = count, .offset = offset,
					.req = req });
}

int rbd_plugin_zero(void *handle, uint64_t count, uint64_t offset,
		    uint32_t flags)
{
	return run(&(struct pending){ .r = handle, .op = OP_WRITE_ZEROES,
				      .count = count, .offset = offset,
				      .zflags = zero_flags(flags) });
}

int rbd_plugin_aio_zero(void *handle, uint64_t count, uint64_t offset,
			uint32_t flags, struct nbdd_request *req)
{
	return start(&(struct pending){ .r = handle, .op = OP_WRITE_ZEROES,
					.count = count, .offset = offset,
					.zflags = zero_flags(flags),
					.req = req });
}

/* ---- block status ---- */

struct range {
	uint64_t start, end;
};

struct ranges {
	struct range *v;
	size_t n, cap;
};

static int add_range(uint64_t offset, size_t length, int exists, void *arg)
{
	struct ranges *rs = arg;
	struct range *v;

	if (!exists || !length)
		return 0;
	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? 2 * rs->cap : 64;
		v = realloc(rs->v, rs->cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		rs->v = v;
	}
	rs->v[rs->n++] = (struct range){offset, offset + length};
	return 0;
}

static int by_start(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* The fast-diff object map can answer whole objects without reading them. */
static bool fast_diff(const struct rbd *r)
{
	uint64_t features = 0, flags = 0;

	return rbd_get_features(r->image, &features) == 0 &&
	       (features & RBD_FEATURE_FAST_DIFF) &&
	       rbd_get_flags(r->image, &flags) == 0 &&
	       !(flags & RBD_FLAG_FAST_DIFF_INVALID);
}

/*
 * Allocated data, from rbd_diff_iterate2 against the beginning of time
 * (including a clone's parent); what it does not report is unallocated
 * and reads as zeroes. librbd does not promise the order of its callbacks,
 * so the ranges are sorted before they are reported.
 */
int rbd_plugin_extents(void *handle, uint64_t count, uint64_t offset,
		       uint32_t flags, struct nbdd_extents *out)
{
	const uint32_t hole = NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO;
	struct rbd *r = handle;
	struct ranges rs = {0};
	uint64_t end, pos = offset, start;
	size_t i;
	int e;

	(void)flags;
	if (count > EXTENTS_MAX)
		count = EXTENTS_MAX;
	end = offset + count;
	e = rbd_diff_iterate2(r->image, NULL, offset, count, 1, fast_diff(r),
			      add_range, &rs);
	if (e < 0) {
		free(rs.v);
		return failed(r, "block status", count, offset, e);
	}
	qsort(rs.v, rs.n, sizeof(*rs.v), by_start);
	for (i = 0; i < rs.n && pos < end && e == 0; i++) {
		start = rs.v[i].start > pos ? rs.v[i].start : pos;
		if (rs.v[i].end <= pos || start >= end)
			continue;
		if (start > pos)
			e = nbdd_extents_add(out, pos, start - pos, hole);
		pos = rs.v[i].end < end ? rs.v[i].end : end;
		if (e == 0)
			e = nbdd_extents_add(out, start, pos - start, 0);
	}
	if (e == 0 && pos < end)
		e = nbdd_extents_add(out, pos, end - pos, hole);
	free(rs.v);
	return e;
}
