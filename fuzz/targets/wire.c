/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/proto/wire.c, pure: a stream of request headers decoded and checked
 * against fuzzed negotiation parameters. Whatever nbd_check_request()
 * accepts must be safe for conn.c to run as is: a command that was
 * advertised, a range inside the export with no 64-bit wrap, aligned to
 * the minimum block size, and a payload that fits the limit and is
 * exactly what a write stores.
 *
 * Input: [mode 1][size 8][eflags 2][log2 min_block 1][max_payload 4]
 *        then request headers (+ write payloads) back to back.
 * mode bit 0: structured, bit 1: extended, bit 2: base:allocation.
 */
#include "../fuzz.h"
#include "internal.h"

int fuzz_one(const uint8_t *data, size_t size);

static bool wire_has_range(uint16_t type)
{
	switch (type) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
	case NBD_CMD_CACHE:
	case NBD_CMD_WRITE_ZEROES:
	case NBD_CMD_BLOCK_STATUS:
		return true;
	default:
		return false;
	}
}

static void wire_check_accepted(const struct nbd_xmit_params *p,
				const struct nbd_request *r)
{
	uint64_t plen = nbd_request_payload_len(r, p->extended);
	bool ro = p->eflags & NBD_FLAG_READ_ONLY;

	switch (r->type) {
	case NBD_CMD_READ:
		break;
	case NBD_CMD_WRITE:
		FUZZ_CHECK(!ro);
		/* conn.c hands the payload to pwrite as r->length bytes */
		FUZZ_CHECK(plen == r->length);
		break;
	case NBD_CMD_FLUSH:
		FUZZ_CHECK(p->eflags & NBD_FLAG_SEND_FLUSH);
		break;
	case NBD_CMD_TRIM:
		FUZZ_CHECK(!ro && (p->eflags & NBD_FLAG_SEND_TRIM));
		break;
	case NBD_CMD_WRITE_ZEROES:
		FUZZ_CHECK(!ro && (p->eflags & NBD_FLAG_SEND_WRITE_ZEROES));
		break;
	case NBD_CMD_CACHE:
		FUZZ_CHECK(p->eflags & NBD_FLAG_SEND_CACHE);
		break;
	case NBD_CMD_BLOCK_STATUS:
		FUZZ_CHECK(p->base_allocation);
		FUZZ_CHECK(p->structured || p->extended);
		break;
	default:
		FUZZ_CHECK(!"an unknown command was accepted");
	}
	if (wire_has_range(r->type)) {
		/* the overflow-proof form: never off + len */
		FUZZ_CHECK(r->offset <= p->size);
		FUZZ_CHECK(r->length <= p->size - r->offset);
	}
	if (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) {
		FUZZ_CHECK(r->length <= p->max_payload);
		FUZZ_CHECK(r->offset % p->min_block == 0);
		FUZZ_CHECK(r->length % p->min_block == 0);
	}
	FUZZ_CHECK(plen <= p->max_payload && plen <= NBDD_MAX_PAYLOAD);
	if (!p->extended)
		FUZZ_CHECK(r->length <= UINT32_MAX);
}

static void wire_replies(const uint8_t *d, size_t n)
{
	uint8_t buf[NBD_EXTENDED_REPLY_SIZE];
	uint64_t cookie = fuzz_take(&d, &n, 8), off = fuzz_take(&d, &n, 8);
	uint64_t plen = fuzz_take(&d, &n, 4);
	uint16_t type = (uint16_t)fuzz_take(&d, &n, 2);
	int err = (int)fuzz_take(&d, &n, 4);
	size_t len;

	len = nbd_encode_chunk_header(buf, true, NBD_REPLY_FLAG_DONE, type,
				      cookie, off, plen);
	FUZZ_CHECK(len == NBD_EXTENDED_REPLY_SIZE);
	FUZZ_CHECK(nbd_get32(buf) == NBD_EXTENDED_REPLY_MAGIC);
	FUZZ_CHECK(nbd_get16(buf + 6) == type && nbd_get64(buf + 8) == cookie);
	FUZZ_CHECK(nbd_get64(buf + 16) == off && nbd_get64(buf + 24) == plen);
	len = nbd_encode_chunk_header(buf, false, 0, type, cookie, off, plen);
	FUZZ_CHECK(len == NBD_STRUCTURED_REPLY_SIZE);
	FUZZ_CHECK(nbd_get32(buf + 16) == (uint32_t)plen);
	FUZZ_CHECK(nbd_encode_simple_reply(buf, cookie, 5) ==
		   NBD_SIMPLE_REPLY_SIZE);
	FUZZ_CHECK(nbd_get64(buf + 8) == cookie);
	if (err > 0)
		FUZZ_CHECK(nbd_errno_to_wire(err) != 0);
	FUZZ_CHECK(nbd_cmd_name(type) != NULL);
	FUZZ_CHECK(nbd_opt_name((uint32_t)err) != NULL);
}

int fuzz_one(const uint8_t *data, size_t size)
{
	const uint8_t *d = data;
	size_t n = size, hdr;
	uint8_t mode = (uint8_t)fuzz_take(&d, &n, 1);
	struct nbd_xmit_params p = { 0 };
	uint32_t maxp;
	int requests = 0;

	p.structured = mode & 1;
	p.extended = mode & 2;
	p.base_allocation = mode & 4;
	p.size = fuzz_take(&d, &n, 8);
	p.eflags = (uint16_t)fuzz_take(&d, &n, 2) | NBD_FLAG_HAS_FLAGS;
	p.min_block = 1u << (fuzz_take(&d, &n, 1) % 17);
	maxp = (uint32_t)fuzz_take(&d, &n, 4);
	/* what conn.c derives from the backend's maximum block size */
	p.max_payload = maxp && maxp < NBDD_MAX_PAYLOAD ? maxp : NBDD_MAX_PAYLOAD;
	hdr = p.extended ? NBD_EXTENDED_REQUEST_SIZE : NBD_SIMPLE_REQUEST_SIZE;

	if (mode & 0x80) {
		wire_replies(d, n);
		return 0;
	}
	while (requests++ < 1024) {
		struct nbd_request r, again;
		uint8_t enc[NBD_EXTENDED_REQUEST_SIZE];
		uint64_t plen;
		uint32_t err;
		int got = nbd_decode_request(d, n, p.extended, &r);

		FUZZ_CHECK(got == 0 || got == -EPROTO || got == (int)hdr);
		FUZZ_CHECK((got == 0) == (n < hdr) || got == -EPROTO);
		if (got <= 0)
			break;
		/* decode and encode are each other's inverse */
		FUZZ_CHECK(nbd_encode_request(enc, p.extended, &r) == hdr);
		FUZZ_CHECK(memcmp(enc, d, hdr) == 0);
		FUZZ_CHECK(nbd_decode_request(enc, hdr, p.extended, &again) ==
			   (int)hdr);
		FUZZ_CHECK(r.flags == again.flags && r.type == again.type &&
			   r.cookie == again.cookie &&
			   r.offset == again.offset && r.length == again.length);
		d += hdr;
		n -= hdr;

		err = nbd_check_request(&p, &r);
		FUZZ_CHECK(err == 0 || err == NBD_EINVAL || err == NBD_EPERM ||
			   err == NBD_ENOSPC || err == NBD_EOVERFLOW ||
			   err == NBD_ENOTSUP);
		if (r.type == NBD_CMD_DISC)
			FUZZ_CHECK(err == 0);
		else if (err == 0)
			wire_check_accepted(&p, &r);

		/* conn.c drains the payload of refused requests too */
		plen = nbd_request_payload_len(&r, p.extended);
		if (plen > n)
			break;
		d += plen;
		n -= (size_t)plen;
	}
	return 0;
}
