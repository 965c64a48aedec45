/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The handshake and option phase (lib/proto/handshake.c), and what follows
 * it: the fuzz input is everything a network client sends after the
 * server's greeting (client flags, options, then transmission requests).
 * A peer thread feeds it through a socketpair and reads the replies;
 * handshake_run() runs here and, when it ends in transmission, conn_run()
 * serves the rest of the input on the same socket, as server.c does.
 *
 * The server offers three exports: "disk" (the default, memory), "ro"
 * (read-only, with a description) and "blk" (a backend with block-size
 * constraints).
 *
 * The peer checks the option phase as a strict client would: it knows
 * the options it sent (from the input) and expects, for each in turn,
 * replies with the right magic and option number, only reply types that
 * option may get, well-formed payloads within their limits, and a final
 * ACK or error; nothing cut off. Transmission is xmit.c's to check.
 */
#include "../fuzz.h"
#include "internal.h"

int fuzz_one(const uint8_t *data, size_t size);

static int hs_open(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	*h = NULL;
	return 0;
}

static int hs_size(void *h, uint64_t *size)
{
	*size = 1u << 20;
	return 0;
}

static int hs_block_size(void *h, struct nbdd_block_size *bs)
{
	bs->minimum = 512;
	bs->preferred = 4096;
	bs->maximum = 65536;
	return 0;
}

static int hs_pread(void *h, void *buf, size_t count, uint64_t off,
		    uint32_t f)
{
	FUZZ_CHECK(off <= (1u << 20) && count <= (1u << 20) - off);
	FUZZ_CHECK(off % 512 == 0 && count % 512 == 0 && count <= 65536);
	memset(buf, 0x5a, count);
	return 0;
}

static const struct nbdd_backend hs_backend = {
	NBDD_BACKEND_HEADER,
	.name = "fuzzblk",
	.thread_model = NBDD_THREAD_SERIALIZE,
	.flags = NBDD_BACKEND_INLINE,
	.open = hs_open,
	.get_size = hs_size,
	.block_size = hs_block_size,
	.pread = hs_pread,
};

/* ---- the oracle ---- */

#define HS_MAX_OPTS 512

struct hs_oracle {
	uint32_t opt[HS_MAX_OPTS];
	size_t nopt, k;
	bool no_zeroes;
	enum { HS_GREETING, HS_OPTIONS, HS_EXPORT_NAME, HS_DONE } phase;
	uint8_t buf[20 + 4 + 2 * 4096];
	size_t have, need;
	bool in_payload;
};

static void hs_prepare(struct hs_oracle *o, const uint8_t *d, size_t n)
{
	size_t pos = 4;
	uint32_t len;

	o->need = 18;
	if (n < 4)
		return;
	o->no_zeroes = nbd_get32(d) & NBD_FLAG_C_NO_ZEROES;
	while (o->nopt < HS_MAX_OPTS && n - pos >= 16 &&
	       nbd_get64(d + pos) == NBD_IHAVEOPT) {
		o->opt[o->nopt++] = nbd_get32(d + pos + 8);
		len = nbd_get32(d + pos + 12);
		if (len > n - pos - 16)
			break;
		pos += 16 + len;
	}
}

static bool hs_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

static void hs_info(uint32_t opt, const uint8_t *p, uint32_t len)
{
	uint32_t min, pref, max;

	FUZZ_CHECK(opt == NBD_OPT_INFO || opt == NBD_OPT_GO);
	FUZZ_CHECK(len >= 2);
	switch (nbd_get16(p)) {
	case NBD_INFO_EXPORT:
		FUZZ_CHECK(len == 12);
		FUZZ_CHECK(nbd_get16(p + 10) & NBD_FLAG_HAS_FLAGS);
		break;
	case NBD_INFO_NAME:
	case NBD_INFO_DESCRIPTION:
		FUZZ_CHECK(len <= 2 + NBDD_MAX_STRING);
		break;
	case NBD_INFO_BLOCK_SIZE:
		FUZZ_CHECK(len == 14);
		min = nbd_get32(p + 2);
		pref = nbd_get32(p + 6);
		max = nbd_get32(p + 10);
		FUZZ_CHECK(hs_pow2(min) && min <= 65536 && hs_pow2(pref));
		FUZZ_CHECK(min <= pref && pref <= max && max % min == 0);
		FUZZ_CHECK(max <= NBDD_MAX_PAYLOAD);
		break;
	default:
		FUZZ_CHECK(!"an unknown NBD_INFO type");
	}
}

/* One whole option reply (header and payload) in o->buf. */
static void hs_reply(struct hs_oracle *o)
{
	const uint8_t *p = o->buf + 20;
	uint32_t opt = nbd_get32(o->buf + 8), type = nbd_get32(o->buf + 12);
	uint32_t len = nbd_get32(o->buf + 16);
	bool final = false;

	switch (type) {
	case NBD_REP_ACK:
		FUZZ_CHECK(len == 0);
		final = true;
		break;
	case NBD_REP_SERVER:
		FUZZ_CHECK(opt == NBD_OPT_LIST && len >= 4);
		FUZZ_CHECK(nbd_get32(p) <= len - 4);
		FUZZ_CHECK(nbd_get32(p) <= NBDD_MAX_STRING);
		break;
	case NBD_REP_INFO:
		hs_info(opt, p, len);
		break;
	case NBD_REP_META_CONTEXT:
		FUZZ_CHECK(opt == NBD_OPT_LIST_META_CONTEXT ||
			   opt == NBD_OPT_SET_META_CONTEXT);
		FUZZ_CHECK(len == 4 + strlen(NBDD_META_BASE_ALLOCATION));
		FUZZ_CHECK(!memcmp(p + 4, NBDD_META_BASE_ALLOCATION, len - 4));
		FUZZ_CHECK(nbd_get32(p) ==
			   (opt == NBD_OPT_SET_META_CONTEXT
				    ? NBDD_META_ID_BASE_ALLOCATION : 0));
		break;
	default:
		FUZZ_CHECK(type >= NBD_REP_ERR_UNSUP &&
			   type <= NBD_REP_ERR_EXT_HEADER_REQD);
		FUZZ_CHECK(len <= NBDD_MAX_STRING);
		final = true;
	}
	if (!final)
		return;
	o->k++;
	if ((opt == NBD_OPT_GO && type == NBD_REP_ACK) || opt == NBD_OPT_ABORT)
		o->phase = HS_DONE; /* transmission, or the end */
	else if (o->k < o->nopt && o->opt[o->k] == NBD_OPT_EXPORT_NAME)
		o->phase = HS_EXPORT_NAME;
}

static void hs_whole(struct hs_oracle *o)
{
	switch (o->phase) {
	case HS_GREETING:
		FUZZ_CHECK(nbd_get64(o->buf) == NBD_MAGIC);
		FUZZ_CHECK(nbd_get64(o->buf + 8) == NBD_IHAVEOPT);
		FUZZ_CHECK(nbd_get16(o->buf + 16) ==
			   (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
		o->phase = o->nopt && o->opt[0] == NBD_OPT_EXPORT_NAME
				   ? HS_EXPORT_NAME : HS_OPTIONS;
		o->have = 0;
		o->need = o->phase == HS_OPTIONS ? 20
			  : o->no_zeroes ? 10 : 134;
		return;
	case HS_OPTIONS:
		if (!o->in_payload) {
			FUZZ_CHECK(nbd_get64(o->buf) == NBD_OPT_REPLY_MAGIC);
			/* replies come for the options sent, in order */
			FUZZ_CHECK(o->k < o->nopt);
			FUZZ_CHECK(nbd_get32(o->buf + 8) == o->opt[o->k]);
			FUZZ_CHECK(nbd_get32(o->buf + 16) <= sizeof(o->buf) - 20);
			if (nbd_get32(o->buf + 16)) {
				o->in_payload = true;
				o->need = 20 + nbd_get32(o->buf + 16);
				return;
			}
		}
		o->in_payload = false;
		hs_reply(o);
		break;
	case HS_EXPORT_NAME:
		FUZZ_CHECK(nbd_get64(o->buf) <= (1u << 20));
		FUZZ_CHECK(nbd_get16(o->buf + 8) & NBD_FLAG_HAS_FLAGS);
		o->phase = HS_DONE;
		break;
	case HS_DONE:
		break;
	}
	o->have = 0;
	o->need = o->phase == HS_EXPORT_NAME ? (o->no_zeroes ? 10 : 134) : 20;
}

static void hs_on_reply(void *ctx, const uint8_t *p, size_t n)
{
	struct hs_oracle *o = ctx;
	size_t k;

	while (n && o->phase != HS_DONE) {
		k = MIN(n, o->need - o->have);
		memcpy(o->buf + o->have, p, k);
		o->have += k;
		p += k;
		n -= k;
		if (o->have == o->need)
			hs_whole(o);
	}
}

static struct nbdd_server *hs_server(void)
{
	struct nbdd_server_options so = { .handshake_timeout = 1,
					  .max_clients = 4,
					  .max_negotiating = 4 };
	struct nbdd_export_options disk = { .name = "disk" };
	struct nbdd_export_options ro = { .name = "ro",
					  .description = "read-only disk",
					  .readonly = true };
	struct nbdd_export_options blk = { .name = "blk" };
	struct nbdd_server *srv;
	struct nbdd_export *e;

	FUZZ_CHECK(nbdd_server_new(&so, &srv) == 0);
	FUZZ_CHECK(nbdd_export_open("memory:size=1M", &disk, &e) == 0);
	FUZZ_CHECK(nbdd_server_add_export(srv, e) == 0);
	nbdd_export_unref(e);
	FUZZ_CHECK(nbdd_export_open("memory:size=64K", &ro, &e) == 0);
	FUZZ_CHECK(nbdd_server_add_export(srv, e) == 0);
	nbdd_export_unref(e);
	FUZZ_CHECK(nbdd_export_new(&hs_backend, NULL, 0, &blk, &e) == 0);
	FUZZ_CHECK(nbdd_server_add_export(srv, e) == 0);
	nbdd_export_unref(e);
	return srv;
}

int fuzz_one(const uint8_t *data, size_t size)
{
	struct nbdd_server *srv = hs_server();
	struct negotiated neg;
	struct fuzz_peer peer = { .on_reply = hs_on_reply };
	struct hs_oracle *o = calloc(1, sizeof(*o));
	struct conn *c;
	int fd, ret;

	FUZZ_CHECK(o != NULL);
	hs_prepare(o, data, size);
	peer.ctx = o;
	fd = fuzz_peer_start(&peer, data, size);
	FUZZ_CHECK(fd >= 0);
	memset(&neg, 0, sizeof(neg));
	ret = handshake_run(srv, fd, &neg);
	if (ret == 0) {
		FUZZ_CHECK(neg.export != NULL);
		FUZZ_CHECK(neg.min_block >= 1 && neg.min_block <= 65536 &&
			   (neg.min_block & (neg.min_block - 1)) == 0);
		/* extended headers imply structured replies */
		FUZZ_CHECK(!neg.extended || neg.structured);
		c = conn_new(fd, CONN_NETWORK, &neg);
		FUZZ_CHECK(c != NULL);
		FUZZ_CHECK(conn_run(c) <= 0);
		conn_free(c); /* closes fd, drops the export reference */
	} else {
		FUZZ_CHECK(ret < 0);
		FUZZ_CHECK(neg.export == NULL);
		close(fd);
	}
	fuzz_peer_join(&peer);
	/* no reply was cut off */
	FUZZ_CHECK(o->phase == HS_DONE || o->have == 0);
	free(o);
	nbdd_server_free(srv);
	return 0;
}
