/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The rbd plugin's data path. Our ABI is synchronous: each of up to 8
 * worker threads per connection calls in and waits for its answer. Every
 * request is one librbd aio call with its own completion that the calling
 * worker waits on, so all the workers' requests are in flight in librbd at
 * once on the one shared image handle (librbd is thread-safe), and we
 * create no thread of our own.
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

/* Reason for a failed request: the op, the image and Ceph's errno. */
static int failed(const struct rbd *r, const char *op, uint64_t count,
		  uint64_t offset, int err)
{
	nbdd_backend_error("rbd: %s of %llu bytes at %llu on %s: %s", op,
			   (unsigned long long)count,
			   (unsigned long long)offset, r->name, strerror(-err));
	return err;
}

/*
 * The result of one aio request: @submitted is what submitting it on @c
 * returned. Wait for it, release @c, and return librbd's answer (>= 0,
 * or a negative errno).
 */
static ssize_t wait_for(rbd_completion_t c, int submitted)
{
	ssize_t n = submitted;

	if (submitted >= 0) {
		rbd_aio_wait_for_complete(c);
		n = rbd_aio_get_return_value(c);
	}
	rbd_aio_release(c);
	return n;
}

int rbd_plugin_pread(void *handle, void *buf, size_t count, uint64_t offset,
		     uint32_t flags)
{
	struct rbd *r = handle;
	rbd_completion_t c;
	ssize_t n;

	(void)flags;
	n = rbd_aio_create_completion(NULL, NULL, &c);
	if (n == 0)
		n = wait_for(c, rbd_aio_read(r->image, offset, count, buf, c));
	if (n < 0)
		return failed(r, "read", count, offset, (int)n);
	/* Short only if the image shrank under us: past its end is zeroes. */
	if ((size_t)n < count)
		memset((char *)buf + n, 0, count - (size_t)n);
	return 0;
}

int rbd_plugin_flush(void *handle, uint32_t flags)
{
	struct rbd *r = handle;
	rbd_completion_t c;
	ssize_t n;

	(void)flags;
	n = rbd_aio_create_completion(NULL, NULL, &c);
	if (n == 0)
		n = wait_for(c, rbd_aio_flush(r->image, c));
	if (n < 0) {
		nbdd_backend_error("rbd: flush of %s: %s", r->name,
				   strerror((int)-n));
		return (int)n;
	}
	return 0;
}

/* FUA is not claimed (see rbd_capabilities): nbdd flushes after us. */
int rbd_plugin_pwrite(void *handle, const void *buf, size_t count,
		      uint64_t offset, uint32_t flags)
{
	struct rbd *r = handle;
	rbd_completion_t c;
	ssize_t n;

	(void)flags;
	n = rbd_aio_create_completion(NULL, NULL, &c);
	if (n == 0)
		n = wait_for(c, rbd_aio_write(r->image, offset, count, buf, c));
	if (n < 0)
		return failed(r, "write", count, offset, (int)n);
	return 0;
}

/*
 * librbd may skip the parts of a discard smaller than
 * rbd_discard_granularity_bytes: trim is advice, and NBD allows that.
 */
int rbd_plugin_trim(void *handle, uint64_t count, uint64_t offset,
		    uint32_t flags)
{
	struct rbd *r = handle;
	rbd_completion_t c;
	ssize_t n;

	(void)flags;
	n = rbd_aio_create_completion(NULL, NULL, &c);
	if (n == 0)
		n = wait_for(c, rbd_aio_discard(r->image, offset, count, c));
	if (n < 0)
		return failed(r, "discard", count, offset, (int)n);
	return 0;
}

/*
 * write_zeroes deallocates whole objects when it may; without
 * NBDD_F_MAY_TRIM (the client said NO_HOLE) it must leave the range
 * allocated, which librbd calls thick provisioning.
 */
int rbd_plugin_zero(void *handle, uint64_t count, uint64_t offset,
		    uint32_t flags)
{
	struct rbd *r = handle;
	int zflags =
	    flags & NBDD_F_MAY_TRIM ? 0 : RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
	rbd_completion_t c;
	ssize_t n;

	n = rbd_aio_create_completion(NULL, NULL, &c);
	if (n == 0)
		n = wait_for(c, rbd_aio_write_zeroes(r->image, offset, count, c,
						     zflags, 0));
	if (n < 0)
		return failed(r, "write_zeroes", count, offset, (int)n);
	return 0;
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
