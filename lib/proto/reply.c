/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Replies: simple, structured or extended, built in place in an outbuf. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/reply.h"

/* Reads this large are worth an extents query to send holes instead. */
#define SPARSE_READ_MIN (64u * 1024)

uint8_t *outbuf_reserve(struct outbuf *o, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (o->cap - o->len < n) {
		cap = o->cap ? o->cap : 4096;
		while (cap - o->len < n)
			cap *= 2;
		p = realloc(o->p, cap);
		if (!p)
			return NULL;
		o->p = p;
		o->cap = cap;
	}
	return o->p + o->len;
}

void outbuf_free(struct outbuf *o)
{
	free(o->p);
	o->p = NULL;
	o->len = o->cap = 0;
}

static size_t chunk_header_size(const struct nbd_xmit_params *xp)
{
	return xp->extended ? NBD_EXTENDED_REPLY_SIZE
			    : NBD_STRUCTURED_REPLY_SIZE;
}

/* Append a chunk header; the caller appends @payload_len bytes after it. */
static uint8_t *put_chunk(struct outbuf *o, const struct nbd_xmit_params *xp,
			  const struct nbd_request *r, uint16_t flags,
			  uint16_t type, size_t payload_len)
{
	size_t hs = chunk_header_size(xp);
	uint8_t *p = outbuf_reserve(o, hs + payload_len);

	if (!p)
		return NULL;
	nbd_encode_chunk_header(p, xp->extended, flags, type, r->cookie,
				r->offset, payload_len);
	o->len += hs + payload_len;
	return p + hs;
}

int reply_ok(struct outbuf *o, const struct nbd_xmit_params *xp,
	     const struct nbd_request *r)
{
	uint8_t *p;

	/* Extended headers forbid simple replies; structured ones allow them. */
	if (xp->extended)
		return put_chunk(o, xp, r, NBD_REPLY_FLAG_DONE,
				 NBD_REPLY_TYPE_NONE, 0) ? 0 : -ENOMEM;
	p = outbuf_reserve(o, NBD_SIMPLE_REPLY_SIZE);
	if (!p)
		return -ENOMEM;
	o->len += nbd_encode_simple_reply(p, r->cookie, 0);
	return 0;
}

int reply_error(struct outbuf *o, const struct nbd_xmit_params *xp,
		const struct nbd_request *r, uint32_t nbd_error)
{
	uint8_t *p;

	if (xp->structured || xp->extended) {
		/* error (32), message length (16), no message */
		p = put_chunk(o, xp, r, NBD_REPLY_FLAG_DONE,
			      NBD_REPLY_TYPE_ERROR, 6);
		if (!p)
			return -ENOMEM;
		nbd_put32(p, nbd_error);
		nbd_put16(p + 4, 0);
		return 0;
	}
	p = outbuf_reserve(o, NBD_SIMPLE_REPLY_SIZE);
	if (!p)
		return -ENOMEM;
	o->len += nbd_encode_simple_reply(p, r->cookie, nbd_error);
	return 0;
}

/* Undo a partly built reply and send an error for it instead. */
static int read_failed(struct outbuf *o, size_t mark,
		       const struct nbd_xmit_params *xp,
		       const struct nbd_request *r, int err)
{
	o->len = mark;
	return reply_error(o, xp, r, nbd_errno_to_wire(-err));
}

/* An OFFSET_DATA chunk's header for @len bytes at @off: where they go. */
static uint8_t *start_data_chunk(struct outbuf *o,
				 const struct nbd_xmit_params *xp,
				 const struct nbd_request *r, uint16_t flags,
				 uint64_t off, size_t len)
{
	uint8_t *p = put_chunk(o, xp, r, flags, NBD_REPLY_TYPE_OFFSET_DATA,
			       8 + len);

	if (!p)
		return NULL;
	nbd_put64(p, off);
	return p + 8;
}

/* One OFFSET_DATA chunk of @len bytes at @off, read from the backend. */
static int put_data_chunk(struct outbuf *o, const struct nbd_xmit_params *xp,
			  const struct nbd_request *r, uint16_t flags,
			  uint64_t off, size_t len, struct nbdd_export *e)
{
	uint8_t *p = start_data_chunk(o, xp, r, flags, off, len);

	return p ? export_pread(e, p, len, off, 0) : -ENOMEM;
}

/*
 * A structured read made of data and hole chunks, following the
 * backend's extents. Returns 0, -ENOMEM, or the backend's -errno.
 */
static int put_sparse_read(struct outbuf *o, const struct nbd_xmit_params *xp,
			   const struct nbd_request *r, struct nbdd_export *e)
{
	struct nbdd_extents x;
	uint64_t off = r->offset, end = r->offset + r->length;
	uint16_t flags;
	uint8_t *p;
	size_t i;
	int ret;

	extents_init(&x, r->offset, r->length, 1024);
	ret = export_extents(e, r->length, r->offset, 0, &x);
	for (i = 0; ret == 0 && off < end; i++) {
		/* Past the reported extents the rest is plain data. */
		uint64_t len = i < x.n ? MIN(x.v[i].length, end - off)
				       : end - off;
		bool zero = i < x.n && (x.v[i].flags & NBDD_EXTENT_ZERO);

		flags = off + len == end ? NBD_REPLY_FLAG_DONE : 0;
		if (zero) {
			p = put_chunk(o, xp, r, flags,
				      NBD_REPLY_TYPE_OFFSET_HOLE, 12);
			if (!p) {
				ret = -ENOMEM;
				break;
			}
			nbd_put64(p, off);
			nbd_put32(p + 8, (uint32_t)len);
		} else {
			ret = put_data_chunk(o, xp, r, flags, off, (size_t)len,
					     e);
		}
		off += len;
	}
	extents_free(&x);
	return ret;
}

uint8_t *reply_read_start(struct outbuf *o, const struct nbd_xmit_params *xp,
			  const struct nbd_request *r)
{
	uint8_t *p;

	if (!xp->structured && !xp->extended) {
		p = outbuf_reserve(o, NBD_SIMPLE_REPLY_SIZE + r->length);
		if (!p)
			return NULL;
		nbd_encode_simple_reply(p, r->cookie, 0);
		o->len += NBD_SIMPLE_REPLY_SIZE + r->length;
		return p + NBD_SIMPLE_REPLY_SIZE;
	}
	return start_data_chunk(o, xp, r, NBD_REPLY_FLAG_DONE, r->offset,
				(size_t)r->length);
}

int reply_read(struct outbuf *o, const struct nbd_xmit_params *xp,
	       const struct nbd_request *r, struct nbdd_export *e, int *err)
{
	size_t mark = o->len;
	uint8_t *p;
	int ret;

	if ((xp->structured || xp->extended) && r->length >= SPARSE_READ_MIN &&
	    !(r->flags & NBD_CMD_FLAG_DF) && (e->caps & NBDD_CAP_EXTENTS)) {
		ret = put_sparse_read(o, xp, r, e);
	} else {
		p = reply_read_start(o, xp, r);
		ret = p ? export_pread(e, p, (size_t)r->length, r->offset, 0)
			: -ENOMEM;
	}
	*err = ret;
	if (ret == -ENOMEM && o->len == mark)
		return -ENOMEM;
	return ret ? read_failed(o, mark, xp, r, ret) : 0;
}

static int put_status_chunk(struct outbuf *o, const struct nbd_xmit_params *xp,
			    const struct nbd_request *r,
			    const struct nbdd_extents *x)
{
	size_t i, each = xp->extended ? 16 : 8, head = xp->extended ? 8 : 4;
	uint8_t *p;

	p = put_chunk(o, xp, r, NBD_REPLY_FLAG_DONE,
		      xp->extended ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT
				   : NBD_REPLY_TYPE_BLOCK_STATUS,
		      head + each * x->n);
	if (!p)
		return -ENOMEM;
	nbd_put32(p, NBDD_META_ID_BASE_ALLOCATION);
	if (xp->extended)
		nbd_put32(p + 4, (uint32_t)x->n);
	p += head;
	for (i = 0; i < x->n; i++, p += each) {
		if (xp->extended) {
			nbd_put64(p, x->v[i].length);
			nbd_put64(p + 8, x->v[i].flags);
		} else {
			/* Clipped to a 32-bit request, so it fits. */
			nbd_put32(p, (uint32_t)x->v[i].length);
			nbd_put32(p + 4, x->v[i].flags);
		}
	}
	return 0;
}

int reply_block_status(struct outbuf *o, const struct nbd_xmit_params *xp,
		       const struct nbd_request *r, struct nbdd_export *e,
		       int *err)
{
	bool one = r->flags & NBD_CMD_FLAG_REQ_ONE;
	struct nbdd_extents x;
	int ret;

	extents_init(&x, r->offset, r->length, one ? 1 : NBDD_MAX_EXTENTS);
	ret = export_extents(e, r->length, r->offset,
			     one ? NBDD_F_REQ_ONE : 0, &x);
	if (ret == 0 && x.n == 0)
		ret = -EIO; /* the backend broke its promise of one extent */
	*err = ret;
	if (ret == 0)
		ret = put_status_chunk(o, xp, r, &x);
	else
		ret = reply_error(o, xp, r, nbd_errno_to_wire(-ret));
	extents_free(&x);
	return ret;
}
