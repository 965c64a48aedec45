/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The extents collector a backend fills from its .extents callback.
 *
 * A backend reports extents in order, each starting where the previous
 * one ended, beginning exactly at the offset it was asked about. We hold
 * it to that (a gap or an overlap would make the reply to the client a
 * lie), clip what lies past the request, merge neighbours with the same
 * flags (fewer descriptors on the wire) and stop at the caller's limit.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define EXTENT_FLAGS (NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO)

void extents_init(struct nbdd_extents *x, uint64_t offset, uint64_t count,
		  size_t max)
{
	x->start = offset;
	/* Saturate: a request is checked against the size, but be safe. */
	x->end = count > UINT64_MAX - offset ? UINT64_MAX : offset + count;
	x->next = offset;
	x->v = NULL;
	x->n = 0;
	x->cap = 0;
	x->max = max ? max : SIZE_MAX;
}

void extents_free(struct nbdd_extents *x)
{
	free(x->v);
	x->v = NULL;
	x->n = 0;
	x->cap = 0;
}

static int extents_grow(struct nbdd_extents *x)
{
	size_t cap = x->cap ? x->cap * 2 : 16;
	struct extent *v;

	if (cap > x->max)
		cap = x->max;
	v = realloc(x->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	x->v = v;
	x->cap = cap;
	return 0;
}

static int check_extent(const struct nbdd_extents *x, uint64_t offset,
			uint64_t length, uint32_t flags)
{
	if (!x)
		return -EINVAL;
	if (length == 0) {
		nbdd_backend_error("extent at offset %llu has length 0",
				   (unsigned long long)offset);
		return -EINVAL;
	}
	if (flags & ~EXTENT_FLAGS) {
		nbdd_backend_error("extent at offset %llu has unknown flags "
				   "0x%x (only NBDD_EXTENT_HOLE and "
				   "NBDD_EXTENT_ZERO exist)",
				   (unsigned long long)offset, flags);
		return -EINVAL;
	}
	if (offset != x->next) {
		nbdd_backend_error("extent at offset %llu is out of order: "
				   "the %s extent must start at %llu",
				   (unsigned long long)offset,
				   x->next == x->start ? "first" : "next",
				   (unsigned long long)x->next);
		return -ERANGE;
	}
	if (length > UINT64_MAX - offset) {
		nbdd_backend_error("extent at offset %llu with length %llu "
				   "overflows",
				   (unsigned long long)offset,
				   (unsigned long long)length);
		return -ERANGE;
	}
	return 0;
}

NBDD_EXPORT int nbdd_extents_add(struct nbdd_extents *x, uint64_t offset,
				 uint64_t length, uint32_t flags)
{
	struct extent *last;
	int r;

	r = check_extent(x, offset, length, flags);
	if (r)
		return r;
	x->next = offset + length;
	/* Past the request, or the caller has enough: accept and drop. */
	if (offset >= x->end)
		return 0;
	if (length > x->end - offset)
		length = x->end - offset;
	last = x->n ? &x->v[x->n - 1] : NULL;
	if (last && last->flags == flags) {
		last->length += length;
		return 0;
	}
	if (x->n >= x->max) {
		/* Full: nothing after this point may merge into the last. */
		x->end = offset;
		return 0;
	}
	if (x->n == x->cap) {
		r = extents_grow(x);
		if (r)
			return r;
	}
	x->v[x->n++] = (struct extent){offset, length, flags};
	return 0;
}
