/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Building whole replies into a byte buffer. The transmission engine
 * appends one or many replies to an outbuf and sends it with one write,
 * so read data lands straight behind its header with no extra copy.
 */
#ifndef NBDD_PROTO_REPLY_H
#define NBDD_PROTO_REPLY_H

#include "internal.h"

struct outbuf {
	uint8_t *p;
	size_t len;
	size_t cap;
};

/* Make room for @n more bytes; returns a pointer to them or NULL. */
uint8_t *outbuf_reserve(struct outbuf *o, size_t n);
void outbuf_free(struct outbuf *o);

/*
 * Each appends one complete reply for @r, in the form the connection
 * negotiated (simple, structured or extended), and returns 0, or
 * -ENOMEM when the buffer cannot grow (the caller then disconnects).
 */
int reply_ok(struct outbuf *o, const struct nbd_xmit_params *xp,
	     const struct nbd_request *r);
int reply_error(struct outbuf *o, const struct nbd_xmit_params *xp,
		const struct nbd_request *r, uint32_t nbd_error);

/*
 * Append the reply of a READ that succeeds, all but its data: returns
 * where the r->length data bytes go (already counted in o->len), or NULL
 * when the buffer cannot grow. A read that fails after all has @o cut
 * back and reply_error() appended instead.
 */
uint8_t *reply_read_start(struct outbuf *o, const struct nbd_xmit_params *xp,
			  const struct nbd_request *r);

/*
 * Run a READ against @e and append its reply: data, or with structured
 * replies holes where the backend reports zeroes. A backend error becomes
 * an error reply. *@err receives the backend's -errno (0 on success).
 */
int reply_read(struct outbuf *o, const struct nbd_xmit_params *xp,
	       const struct nbd_request *r, struct nbdd_export *e, int *err);

/* The same for BLOCK_STATUS (base:allocation). */
int reply_block_status(struct outbuf *o, const struct nbd_xmit_params *xp,
		       const struct nbd_request *r, struct nbdd_export *e,
		       int *err);

#endif /* NBDD_PROTO_REPLY_H */
