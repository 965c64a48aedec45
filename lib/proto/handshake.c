/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fixed-newstyle option haggling, server side.
 *
 * Everything the client sends here is hostile until checked:
 *  - the whole handshake runs under one deadline, so a slow or silent
 *    client cannot hold a negotiation slot (CVE-2024-7409);
 *  - an option's payload is read into memory only up to
 *    NBDD_MAX_OPTION_LEN; larger ones are read and dropped in small
 *    chunks and answered with NBD_REP_ERR_TOO_BIG (CVE-2017-15119),
 *    absurd ones end the connection;
 *  - every length inside an option is checked against what is left of
 *    it before it is used (CVE-2017-15118, CVE-2022-26495);
 *  - error replies carry fixed messages and never echo client bytes;
 *  - no backend is opened here: exports are open already, and GO only
 *    takes a reference (CVE-2019-14850).
 * A broken client only ever ends its own connection.
 *
 * TLS follows the spec's modes: with TLS off, STARTTLS is refused
 * (NOTLS); "on" lets a client upgrade when it likes and serves it either
 * way; "require" answers every option but STARTTLS and ABORT with
 * NBD_REP_ERR_TLS_REQD until it has (FORCEDTLS). After STARTTLS nothing
 * negotiated before it survives, and the haggling goes on inside TLS.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "proto/tls.h"

#define OPT_HEADER_SIZE 16
#define REP_HEADER_SIZE 20
/* An oversized option up to this size is drained and refused politely. */
#define DISCARD_MAX (16u * NBDD_MAX_OPTION_LEN)
/* Client bytes shown in logs, made printable. */
#define LOG_NAME_MAX 64

/* The negotiation state of one client. */
struct hs {
	struct nbdd_server *srv;
	int fd;
	struct tls_session *tls; /* after a successful STARTTLS */
	enum nbdd_tls_mode tls_mode;
	const struct tls_creds *tls_creds;
	uint64_t deadline;
	bool no_zeroes;
	bool structured;
	bool extended;
	/* base:allocation selected by SET_META_CONTEXT, for this export */
	bool meta_base;
	struct nbdd_export *meta_export; /* compared, never dereferenced */
	unsigned noptions;
	/* the option being handled */
	uint32_t opt;
	uint32_t len;
	uint8_t *data; /* NBDD_MAX_OPTION_LEN bytes, allocated once */
};

/* Handler results besides a negative errno (close the connection). */
enum { OPT_NEXT = 0, OPT_TRANSMIT = 1, OPT_ANSWERED = 2 };

/* ---- I/O under the deadline ---- */

static int hs_read(struct hs *h, void *buf, size_t len)
{
	if (h->tls)
		return tls_read_full(h->tls, buf, len, h->deadline);
	return read_full(h->fd, buf, len, h->deadline);
}

static int hs_write(struct hs *h, const void *buf, size_t len)
{
	if (h->tls)
		return tls_write_full(h->tls, buf, len, h->deadline);
	return write_full(h->fd, buf, len, h->deadline);
}

/* Read and drop @len bytes without holding them in memory. */
static int hs_discard(struct hs *h, uint64_t len)
{
	uint8_t sink[4096];
	size_t step;
	int r;

	while (len) {
		step = (size_t)MIN(len, (uint64_t)sizeof(sink));
		r = hs_read(h, sink, step);
		if (r < 0)
			return r;
		len -= step;
	}
	return 0;
}

static int send_reply(struct hs *h, uint32_t type, const void *data,
		      size_t len)
{
	uint8_t buf[REP_HEADER_SIZE + 256];
	int r;

	nbd_put64(buf, NBD_OPT_REPLY_MAGIC);
	nbd_put32(buf + 8, h->opt);
	nbd_put32(buf + 12, type);
	nbd_put32(buf + 16, (uint32_t)len);
	/* Small replies leave in one write. */
	if (len <= sizeof(buf) - REP_HEADER_SIZE) {
		if (len)
			memcpy(buf + REP_HEADER_SIZE, data, len);
		return hs_write(h, buf, REP_HEADER_SIZE + len);
	}
	r = hs_write(h, buf, REP_HEADER_SIZE);
	return r < 0 ? r : hs_write(h, data, len);
}

/* An error reply with a fixed message; the connection goes on. */
static int send_error(struct hs *h, uint32_t type, const char *msg)
{
	int r = send_reply(h, type, msg, strlen(msg));

	log_debug("handshake: %s refused: %s", nbd_opt_name(h->opt), msg);
	return r < 0 ? r : OPT_NEXT;
}

static int send_ack(struct hs *h)
{
	int r = send_reply(h, NBD_REP_ACK, NULL, 0);

	return r < 0 ? r : OPT_NEXT;
}

/* A bounded, printable copy of client bytes for a log line. */
static const char *printable(char *dst, const uint8_t *src, size_t len)
{
	size_t i, n = MIN(len, (size_t)LOG_NAME_MAX);

	for (i = 0; i < n; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
	dst[n] = '\0';
	return dst;
}

/* ---- parsing an option's payload ---- */

struct cursor {
	const uint8_t *p;
	size_t left;
};

static bool take32(struct cursor *c, uint32_t *v)
{
	if (c->left < 4)
		return false;
	*v = nbd_get32(c->p);
	c->p += 4;
	c->left -= 4;
	return true;
}

static bool take16(struct cursor *c, uint16_t *v)
{
	if (c->left < 2)
		return false;
	*v = nbd_get16(c->p);
	c->p += 2;
	c->left -= 2;
	return true;
}

/* A string of @len bytes that must lie inside the option. */
static bool take_str(struct cursor *c, uint32_t len, const uint8_t **s)
{
	if (len > c->left)
		return false;
	*s = c->p;
	c->p += len;
	c->left -= len;
	return true;
}

/* ---- what is said about an export ---- */

/*
 * The transmission flags this client sees. DF only makes sense with
 * structured replies (the spec requires it clear otherwise), and the
 * block-status payload form is not implemented.
 */
static uint16_t client_eflags(const struct hs *h, const struct nbdd_export *e)
{
	uint16_t f = export_eflags(e);

	if (!h->structured)
		f &= (uint16_t)~NBD_FLAG_SEND_DF;
	f &= (uint16_t)~NBD_FLAG_BLOCK_STAT_PAYLOAD;
	return f;
}

/* The payload size conn.c enforces, so what we advertise is what holds. */
static uint32_t max_payload(const struct nbdd_export *e)
{
	return MIN(e->bs.maximum ? e->bs.maximum : NBDD_MAX_PAYLOAD,
		   NBDD_MAX_PAYLOAD);
}

static uint32_t min_block(const struct nbdd_export *e)
{
	return e->bs.minimum ? e->bs.minimum : 1;
}

static int send_info_export(struct hs *h, const struct nbdd_export *e)
{
	uint8_t b[12];

	nbd_put16(b, NBD_INFO_EXPORT);
	nbd_put64(b + 2, nbdd_export_size(e));
	nbd_put16(b + 10, client_eflags(h, e));
	return send_reply(h, NBD_REP_INFO, b, sizeof(b));
}

static int send_info_string(struct hs *h, uint16_t type, const char *s)
{
	size_t len = MIN(strlen(s), (size_t)NBDD_MAX_STRING);
	uint8_t *b = malloc(2 + len);
	int r;

	if (!b)
		return -ENOMEM;
	nbd_put16(b, type);
	memcpy(b + 2, s, len);
	r = send_reply(h, NBD_REP_INFO, b, 2 + len);
	free(b);
	return r;
}

static int send_info_block_size(struct hs *h, const struct nbdd_export *e)
{
	uint32_t pref = MAX(e->bs.preferred, MAX(min_block(e), 512u));
	uint8_t b[14];

	nbd_put16(b, NBD_INFO_BLOCK_SIZE);
	nbd_put32(b + 2, min_block(e));
	nbd_put32(b + 6, MIN(pref, max_payload(e)));
	nbd_put32(b + 10, max_payload(e));
	return send_reply(h, NBD_REP_INFO, b, sizeof(b));
}

static struct nbdd_export *find(struct hs *h, const uint8_t *name,
				uint32_t len)
{
	return server_find_export(h->srv, (const char *)name, len);
}

/* What a successful GO or EXPORT_NAME hands to the transmission phase. */
static void enter_transmission(struct hs *h, struct nbdd_export *e,
			       bool block_size_agreed, struct negotiated *out)
{
	out->export = nbdd_export_ref(e);
	out->structured = h->structured;
	out->extended = h->extended;
	out->base_allocation = h->meta_base && h->meta_export == e &&
			       (h->structured || h->extended);
	out->min_block = block_size_agreed ? min_block(e) : 1;
	/*
	 * The session goes with the connection into transmission, where
	 * the handshake's deadline no longer applies.
	 */
	out->tls = h->tls;
	h->tls = NULL;
	if (out->tls)
		tls_session_set_deadline(out->tls, 0);
	log_info("client entering transmission with export '%s'%s%s%s",
		 nbdd_export_name(e),
		 h->extended ? ", extended headers"
			     : h->structured ? ", structured replies" : "",
		 out->base_allocation ? ", base:allocation" : "",
		 out->tls ? ", TLS" : "");
}

/* ---- the options ---- */

static int opt_export_name(struct hs *h, struct negotiated *out)
{
	uint8_t b[8 + 2 + 124] = { 0 };
	struct nbdd_export *e;
	char shown[LOG_NAME_MAX + 1];
	int r;

	/* Here no error can be returned: the spec says hang up. */
	if (h->extended) {
		log_info("handshake: EXPORT_NAME after extended headers");
		return -EPROTO;
	}
	e = h->len <= NBDD_MAX_STRING ? find(h, h->data, h->len) : NULL;
	if (!e) {
		log_info("handshake: EXPORT_NAME of unknown export '%s'",
			 printable(shown, h->data, h->len));
		return -ENOENT;
	}
	/*
	 * This client cannot promise to honour a minimum block size,
	 * and backends are promised aligned requests: refuse.
	 */
	if (min_block(e) > 1) {
		log_info("handshake: export '%s' needs a block size agreement; "
			 "EXPORT_NAME cannot make one", nbdd_export_name(e));
		return -EPROTO;
	}
	nbd_put64(b, nbdd_export_size(e));
	nbd_put16(b + 8, client_eflags(h, e));
	r = hs_write(h, b, h->no_zeroes ? 10 : sizeof(b));
	if (r < 0)
		return r;
	enter_transmission(h, e, false, out);
	return OPT_TRANSMIT;
}

static int opt_list(struct hs *h)
{
	struct nbdd_export *e;
	size_t i, nlen, dlen;
	const char *desc;
	uint8_t *b;
	int r = 0;

	if (h->len)
		return send_error(h, NBD_REP_ERR_INVALID,
				  "NBD_OPT_LIST takes no data");
	b = malloc(4 + 2 * (size_t)NBDD_MAX_STRING);
	if (!b)
		return -ENOMEM;
	for (i = 0; r >= 0 && (e = server_export_at(h->srv, i)); i++) {
		/* The name, then the description for a person to read. */
		nlen = MIN(strlen(nbdd_export_name(e)), (size_t)NBDD_MAX_STRING);
		desc = e->description ? e->description : "";
		dlen = MIN(strlen(desc), (size_t)NBDD_MAX_STRING);
		nbd_put32(b, (uint32_t)nlen);
		memcpy(b + 4, nbdd_export_name(e), nlen);
		memcpy(b + 4 + nlen, desc, dlen);
		r = send_reply(h, NBD_REP_SERVER, b, 4 + nlen + dlen);
	}
	free(b);
	return r < 0 ? r : send_ack(h);
}

/* The information items a GO or INFO asked for, as a bit set. */
static unsigned info_wanted(struct cursor *c, uint16_t n)
{
	unsigned want = 0;
	uint16_t item;

	while (n-- && take16(c, &item))
		if (item <= NBD_INFO_BLOCK_SIZE)
			want |= 1u << item;
	return want;
}

static int send_infos(struct hs *h, const struct nbdd_export *e,
		      unsigned want)
{
	int r = send_info_export(h, e);

	if (r >= 0 && (want & (1u << NBD_INFO_NAME)))
		r = send_info_string(h, NBD_INFO_NAME, nbdd_export_name(e));
	if (r >= 0 && (want & (1u << NBD_INFO_DESCRIPTION)) && e->description)
		r = send_info_string(h, NBD_INFO_DESCRIPTION, e->description);
	/*
	 * Always sent, to INFO as to GO: GO must repeat what INFO said,
	 * and a client that did not ask still learns our limits.
	 */
	if (r >= 0)
		r = send_info_block_size(h, e);
	return r;
}

static int opt_info_go(struct hs *h, struct negotiated *out)
{
	struct cursor c = { h->data, h->len };
	const uint8_t *name;
	uint32_t nlen;
	uint16_t nreq;
	struct nbdd_export *e;
	bool go = h->opt == NBD_OPT_GO, agreed;
	unsigned want;
	int r;

	if (!take32(&c, &nlen) || !take_str(&c, nlen, &name) ||
	    !take16(&c, &nreq) || c.left != 2 * (size_t)nreq)
		return send_error(h, NBD_REP_ERR_INVALID,
				  "malformed option: lengths do not add up");
	if (nlen > NBDD_MAX_STRING)
		return send_error(h, NBD_REP_ERR_TOO_BIG,
				  "export name too long");
	if (nreq > NBDD_MAX_INFO_REQS)
		return send_error(h, NBD_REP_ERR_TOO_BIG,
				  "too many information requests");
	want = info_wanted(&c, nreq);
	e = find(h, name, nlen);
	if (!e)
		return send_error(h, NBD_REP_ERR_UNKNOWN, "unknown export");
	agreed = want & (1u << NBD_INFO_BLOCK_SIZE);
	if (go && !agreed && min_block(e) > 1) {
		/* The spec wants our sizes sent first, to save a round trip. */
		r = send_info_block_size(h, e);
		if (r < 0)
			return r;
		return send_error(h, NBD_REP_ERR_BLOCK_SIZE_REQD,
				  "this export needs NBD_INFO_BLOCK_SIZE");
	}
	r = send_infos(h, e, want);
	if (r >= 0)
		r = send_reply(h, NBD_REP_ACK, NULL, 0);
	if (r < 0)
		return r;
	if (!go)
		return OPT_NEXT;
	enter_transmission(h, e, agreed, out);
	return OPT_TRANSMIT;
}

static int opt_structured_reply(struct hs *h)
{
	if (h->len)
		return send_error(h, NBD_REP_ERR_INVALID,
				  "NBD_OPT_STRUCTURED_REPLY takes no data");
	if (h->extended)
		return send_error(h, NBD_REP_ERR_EXT_HEADER_REQD,
				  "extended headers are already in use");
	if (h->structured)
		return send_error(h, NBD_REP_ERR_INVALID,
				  "structured replies are already in use");
	h->structured = true;
	return send_ack(h);
}

static int opt_extended_headers(struct hs *h)
{
	if (h->len)
		return send_error(h, NBD_REP_ERR_INVALID,
				  "NBD_OPT_EXTENDED_HEADERS takes no data");
	if (h->extended)
		return send_error(h, NBD_REP_ERR_INVALID,
				  "extended headers are already in use");
	/* They take precedence, and carry structured replies with them. */
	h->extended = true;
	h->structured = true;
	return send_ack(h);
}

static bool str_is(const uint8_t *s, uint32_t len, const char *lit)
{
	return len == strlen(lit) && !memcmp(s, lit, len);
}

/*
 * Walk the queries of a LIST or SET_META_CONTEXT. Returns 1 when one of
 * them names base:allocation (for LIST also the "base:" wildcard, and no
 * query at all), 0 when none does, -1 when the option is malformed.
 */
static int meta_queries(struct cursor *c, bool list)
{
	uint32_t n, qlen;
	const uint8_t *q;
	int found = 0;

	if (!take32(c, &n))
		return -1;
	if (n == 0)
		found = list;
	while (n--) {
		if (!take32(c, &qlen) || !take_str(c, qlen, &q))
			return -1;
		if (str_is(q, qlen, NBDD_META_BASE_ALLOCATION) ||
		    (list && str_is(q, qlen, "base:")))
			found = 1;
		/* Anything else is an unknown context: ignored. */
	}
	return c->left ? -1 : found;
}

static int opt_meta_context(struct hs *h)
{
	bool set = h->opt == NBD_OPT_SET_META_CONTEXT;
	struct cursor c = { h->data, h->len };
	const uint8_t *name;
	struct nbdd_export *e;
	uint32_t nlen;
	uint8_t b[4 + sizeof(NBDD_META_BASE_ALLOCATION) - 1];
	int found, r;

	/* A SET replaces the selection, even when it fails. */
	if (set) {
		h->meta_base = false;
		h->meta_export = NULL;
	}
	if (!take32(&c, &nlen) || !take_str(&c, nlen, &name))
		return send_error(h, NBD_REP_ERR_INVALID,
				  "malformed option: lengths do not add up");
	found = meta_queries(&c, !set);
	if (found < 0)
		return send_error(h, NBD_REP_ERR_INVALID,
				  "malformed option: lengths do not add up");
	if (set && !h->structured)
		return send_error(h, NBD_REP_ERR_INVALID,
				  "negotiate structured replies first");
	if (nlen > NBDD_MAX_STRING)
		return send_error(h, NBD_REP_ERR_TOO_BIG,
				  "export name too long");
	e = find(h, name, nlen);
	if (!e)
		return send_error(h, NBD_REP_ERR_UNKNOWN, "unknown export");
	if (found) {
		/* Context ids in LIST replies are reserved: zero. */
		nbd_put32(b, set ? NBDD_META_ID_BASE_ALLOCATION : 0);
		memcpy(b + 4, NBDD_META_BASE_ALLOCATION, sizeof(b) - 4);
		r = send_reply(h, NBD_REP_META_CONTEXT, b, sizeof(b));
		if (r < 0)
			return r;
	}
	if (set && found) {
		h->meta_base = true;
		h->meta_export = e;
	}
	return send_ack(h);
}

static int opt_starttls(struct hs *h)
{
	int r;

	if (h->tls_mode == NBDD_TLS_OFF)
		return send_error(h, NBD_REP_ERR_POLICY,
				  "TLS is not enabled on this server");
	if (h->len)
		return send_error(h, NBD_REP_ERR_INVALID,
				  "NBD_OPT_STARTTLS takes no data");
	if (h->tls)
		return send_error(h, NBD_REP_ERR_INVALID,
				  "TLS is already in use");
	r = send_reply(h, NBD_REP_ACK, NULL, 0);
	if (r < 0)
		return r;
	r = tls_session_start(h->tls_creds, h->fd, h->deadline, &h->tls);
	if (r < 0)
		return r;
	/* The spec: nothing negotiated in plain text survives the upgrade. */
	h->structured = false;
	h->extended = false;
	h->meta_base = false;
	h->meta_export = NULL;
	return OPT_NEXT;
}

/*
 * Under --tls=require, before TLS: the spec's FORCEDTLS. Returns
 * OPT_NEXT when the option was refused here, 1 when it may go on.
 */
static int tls_gate(struct hs *h)
{
	if (h->tls_mode != NBDD_TLS_REQUIRE || h->tls ||
	    h->opt == NBD_OPT_STARTTLS || h->opt == NBD_OPT_ABORT)
		return 1;
	if (h->opt == NBD_OPT_EXPORT_NAME) {
		/* It has no error reply: the spec says hang up. */
		log_info("handshake: EXPORT_NAME without TLS, which this "
			 "server requires: disconnecting");
		return -EACCES;
	}
	return send_error(h, NBD_REP_ERR_TLS_REQD,
			  "this server requires TLS: use NBD_OPT_STARTTLS");
}

static int handle_option(struct hs *h, struct negotiated *out)
{
	int r = tls_gate(h);

	if (r != 1)
		return r;
	switch (h->opt) {
	case NBD_OPT_EXPORT_NAME:
		return opt_export_name(h, out);
	case NBD_OPT_ABORT:
		/* Acknowledge, then hang up; the client may already have. */
		send_reply(h, NBD_REP_ACK, NULL, 0);
		log_debug("handshake: client aborted");
		return -ECONNABORTED;
	case NBD_OPT_LIST:
		return opt_list(h);
	case NBD_OPT_STARTTLS:
		return opt_starttls(h);
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		return opt_info_go(h, out);
	case NBD_OPT_STRUCTURED_REPLY:
		return opt_structured_reply(h);
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		return opt_meta_context(h);
	case NBD_OPT_EXTENDED_HEADERS:
		return opt_extended_headers(h);
	default: /* PEEK_EXPORT and anything newer than us */
		return send_error(h, NBD_REP_ERR_UNSUP, "unsupported option");
	}
}

/*
 * Read one option header and, if it fits, its payload into h->data.
 * Returns 0, OPT_ANSWERED (oversized and refused already) or -errno.
 */
static int read_option(struct hs *h)
{
	uint8_t hdr[OPT_HEADER_SIZE];
	int r = hs_read(h, hdr, sizeof(hdr));

	if (r < 0)
		return r;
	if (nbd_get64(hdr) != NBD_IHAVEOPT) {
		log_info("handshake: bad option magic, disconnecting");
		return -EPROTO;
	}
	h->opt = nbd_get32(hdr + 8);
	h->len = nbd_get32(hdr + 12);
	if (++h->noptions > NBDD_MAX_OPTIONS) {
		log_info("handshake: more than %u options, disconnecting",
			 NBDD_MAX_OPTIONS);
		return -E2BIG;
	}
	log_debug("handshake: %s, %u bytes", nbd_opt_name(h->opt), h->len);
	if (h->len <= NBDD_MAX_OPTION_LEN)
		return h->len ? hs_read(h, h->data, h->len) : 0;
	/*
	 * An absurd length is an attack: say why, then hang up without
	 * reading it. EXPORT_NAME has no error reply at all.
	 */
	if (h->opt == NBD_OPT_EXPORT_NAME || h->len > DISCARD_MAX) {
		log_info("handshake: %s of %u bytes, disconnecting",
			 nbd_opt_name(h->opt), h->len);
		if (h->opt != NBD_OPT_EXPORT_NAME)
			send_error(h, NBD_REP_ERR_TOO_BIG, "option too large");
		return -E2BIG;
	}
	r = hs_discard(h, h->len);
	if (r < 0)
		return r;
	r = send_error(h, NBD_REP_ERR_TOO_BIG, "option too large");
	return r < 0 ? r : OPT_ANSWERED;
}

static int greet(struct hs *h)
{
	uint8_t b[18];
	uint32_t cflags;
	int r;

	nbd_put64(b, NBD_MAGIC);
	nbd_put64(b + 8, NBD_IHAVEOPT);
	nbd_put16(b + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	r = hs_write(h, b, sizeof(b));
	if (r >= 0)
		r = hs_read(h, b, 4);
	if (r < 0)
		return r;
	cflags = nbd_get32(b);
	/* We speak fixed newstyle only; unknown bits mean hang up. */
	if (!(cflags & NBD_FLAG_C_FIXED_NEWSTYLE) ||
	    (cflags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE |
				  NBD_FLAG_C_NO_ZEROES))) {
		log_info("handshake: client flags 0x%x refused", cflags);
		return -EPROTO;
	}
	h->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;
	return 0;
}

int handshake_run(struct nbdd_server *srv, int fd, struct negotiated *out)
{
	struct hs h = { .srv = srv, .fd = fd };
	int r;

	memset(out, 0, sizeof(*out));
	h.tls_mode = server_tls(srv, &h.tls_creds);
	h.deadline = now_ms() + 1000 * (uint64_t)server_handshake_timeout(srv);
	h.data = malloc(NBDD_MAX_OPTION_LEN);
	if (!h.data)
		return set_error(-ENOMEM, "out of memory for a handshake");
	r = greet(&h);
	while (r >= 0) {
		r = read_option(&h);
		if (r == 0)
			r = handle_option(&h, out);
		if (r == OPT_TRANSMIT)
			break;
	}
	free(h.data);
	tls_session_free(h.tls); /* NULL once handed to transmission */
	if (r == -ETIMEDOUT)
		log_info("handshake: no agreement within %u s, disconnecting",
			 server_handshake_timeout(srv));
	if (r < 0)
		return set_error(r, "handshake failed: %s", strerror(-r));
	return 0;
}
