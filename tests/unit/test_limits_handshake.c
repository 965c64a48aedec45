/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Handshake limits from docs/SECURITY.md that tests/unit/test_handshake*.c
 * do not already pin down: error messages never echo the client, the
 * exact drain boundary for oversized options, the deadline against a
 * busy client, no backend I/O before transmission, and no state carried
 * from INFO or SET_META_CONTEXT of one export into GO of another.
 *
 * handshake_run() runs on a thread over a socketpair; this file is the
 * client, byte by byte.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"

#define IO_MS 5000

/* ---- a backend that counts what is asked of it ---- */

static atomic_int io_calls;

static int b_open(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	*h = NULL;
	return 0;
}

static int b_size(void *h, uint64_t *size)
{
	*size = 1 << 20;
	return 0;
}

static int b_pread(void *h, void *buf, size_t count, uint64_t off, uint32_t f)
{
	atomic_fetch_add(&io_calls, 1);
	memset(buf, 0, count);
	return 0;
}

static int b_pwrite(void *h, const void *buf, size_t count, uint64_t off,
		    uint32_t f)
{
	atomic_fetch_add(&io_calls, 1);
	return 0;
}

static int b_flush(void *h, uint32_t f)
{
	atomic_fetch_add(&io_calls, 1);
	return 0;
}

static int b_block_4k(void *h, struct nbdd_block_size *bs)
{
	bs->minimum = 4096;
	bs->preferred = 4096;
	bs->maximum = 1 << 20;
	return 0;
}

static struct nbdd_backend plain = {
	NBDD_BACKEND_HEADER,
	.name = "counting",
	.thread_model = NBDD_THREAD_PARALLEL,
	.open = b_open,
	.get_size = b_size,
	.pread = b_pread,
	.pwrite = b_pwrite,
	.flush = b_flush,
};

static struct nbdd_backend aligned = {
	NBDD_BACKEND_HEADER,
	.name = "aligned",
	.thread_model = NBDD_THREAD_PARALLEL,
	.open = b_open,
	.get_size = b_size,
	.block_size = b_block_4k,
	.pread = b_pread,
};

/* ---- the server side ---- */

struct hs_test {
	struct nbdd_server *srv;
	struct nbdd_export *disk, *blk;
	pthread_t thread;
	int fd, sfd;
	int result;
	bool joined;
	uint64_t ended_ms;
	struct negotiated neg;
};

static void *hs_thread(void *arg)
{
	struct hs_test *t = arg;

	t->result = handshake_run(t->srv, t->sfd, &t->neg);
	t->ended_ms = now_ms();
	/* what server.c does on failure: the connection ends */
	if (t->result < 0)
		shutdown(t->sfd, SHUT_RDWR);
	return NULL;
}

static void start(struct hs_test *t, unsigned timeout)
{
	struct nbdd_server_options so = { .handshake_timeout = timeout };
	struct nbdd_export_options disk = { .name = "disk" };
	struct nbdd_export_options blk = { .name = "blk",
					   .description = "aligned" };
	uint8_t g[18], flags[4];
	int sv[2];

	memset(t, 0, sizeof(*t));
	atomic_store(&io_calls, 0);
	assert_int_equal(nbdd_server_new(&so, &t->srv), 0);
	assert_int_equal(nbdd_export_new(&plain, NULL, 0, &disk, &t->disk), 0);
	assert_int_equal(nbdd_export_new(&aligned, NULL, 0, &blk, &t->blk), 0);
	assert_int_equal(nbdd_server_add_export(t->srv, t->disk), 0);
	assert_int_equal(nbdd_server_add_export(t->srv, t->blk), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	t->fd = sv[0];
	t->sfd = sv[1];
	assert_int_equal(pthread_create(&t->thread, NULL, hs_thread, t), 0);
	assert_int_equal(read_full(t->fd, g, sizeof(g), now_ms() + IO_MS), 0);
	assert_true(nbd_get64(g) == NBD_MAGIC);
	assert_true(nbd_get64(g + 8) == NBD_IHAVEOPT);
	nbd_put32(flags, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	assert_int_equal(write_full(t->fd, flags, 4, 0), 0);
}

static void join(struct hs_test *t)
{
	if (!t->joined)
		pthread_join(t->thread, NULL);
	t->joined = true;
}

/* Close our end, wait for the handshake; returns its result. */
static int finish(struct hs_test *t)
{
	close(t->fd);
	join(t);
	close(t->sfd);
	if (t->neg.export)
		nbdd_export_unref(t->neg.export);
	nbdd_export_unref(t->disk);
	nbdd_export_unref(t->blk);
	nbdd_server_free(t->srv);
	return t->result;
}

/* ---- the client side ---- */

static void opt_header(struct hs_test *t, uint32_t opt, uint32_t len)
{
	uint8_t h[16];

	nbd_put64(h, NBD_IHAVEOPT);
	nbd_put32(h + 8, opt);
	nbd_put32(h + 12, len);
	assert_int_equal(write_full(t->fd, h, sizeof(h), 0), 0);
}

static void opt_send(struct hs_test *t, uint32_t opt, const void *data,
		     uint32_t len)
{
	opt_header(t, opt, len);
	if (len)
		assert_int_equal(write_full(t->fd, data, len, 0), 0);
}

struct reply {
	uint32_t opt, type, len;
	uint8_t data[8192];
};

static void reply(struct hs_test *t, struct reply *r)
{
	uint8_t h[20];

	assert_int_equal(read_full(t->fd, h, sizeof(h), now_ms() + IO_MS), 0);
	assert_true(nbd_get64(h) == NBD_OPT_REPLY_MAGIC);
	r->opt = nbd_get32(h + 8);
	r->type = nbd_get32(h + 12);
	r->len = nbd_get32(h + 16);
	assert_true(r->len <= sizeof(r->data));
	assert_int_equal(read_full(t->fd, r->data, r->len, now_ms() + IO_MS),
			 0);
}

/* Replies to @opt up to the final one; returns its type. */
static uint32_t final(struct hs_test *t, uint32_t opt, struct reply *r)
{
	do {
		reply(t, r);
		assert_int_equal(r->opt, opt);
	} while (r->type != NBD_REP_ACK && !(r->type & NBD_REP_FLAG_ERROR));
	return r->type;
}

/* GO/INFO payload: name (with a length that may lie) and info list. */
static size_t go_payload(uint8_t *b, uint32_t name_len, const void *name,
			 size_t real_len, uint16_t ninfo, uint16_t info)
{
	size_t n = 0, i;

	nbd_put32(b, name_len);
	n += 4;
	memcpy(b + n, name, real_len);
	n += real_len;
	nbd_put16(b + n, ninfo);
	n += 2;
	for (i = 0; i < ninfo; i++, n += 2)
		nbd_put16(b + n, info);
	return n;
}

static uint32_t go(struct hs_test *t, uint32_t opt, const char *name,
		   uint16_t ninfo, uint16_t info)
{
	static uint8_t b[70000];
	struct reply r;
	size_t n = go_payload(b, (uint32_t)strlen(name), name, strlen(name),
			      ninfo, info);

	opt_send(t, opt, b, (uint32_t)n);
	return final(t, opt, &r);
}

/* The connection still negotiates: LIST names both exports. */
static void still_negotiating(struct hs_test *t)
{
	struct reply r;
	int servers = 0;

	opt_send(t, NBD_OPT_LIST, NULL, 0);
	do {
		reply(t, &r);
		if (r.type == NBD_REP_SERVER)
			servers++;
	} while (r.type == NBD_REP_SERVER);
	assert_int_equal(r.type, NBD_REP_ACK);
	assert_int_equal(servers, 2);
}

/* The server hung up: EOF (or a reset) on our end, and it failed. */
static void hung_up(struct hs_test *t)
{
	uint8_t b[64];
	int r;

	do
		r = read_full(t->fd, b, 1, now_ms() + IO_MS);
	while (r == 0);
	assert_int_equal(r, -ECONNRESET);
	join(t);
	assert_true(t->result < 0);
}

/* ---- tests ---- */

/* CVE-2020-10761: an error never echoes what the client sent. */
static void test_error_does_not_echo(void **state)
{
	static char name[NBDD_MAX_STRING + 1];
	struct hs_test t;
	struct reply r;
	uint8_t b[NBDD_MAX_STRING + 64];
	size_t n;

	start(&t, 10);
	memset(name, 'Q', NBDD_MAX_STRING);
	name[NBDD_MAX_STRING] = '\0';
	n = go_payload(b, NBDD_MAX_STRING, name, NBDD_MAX_STRING, 0, 0);
	opt_send(&t, NBD_OPT_GO, b, (uint32_t)n);
	assert_int_equal(final(&t, NBD_OPT_GO, &r), NBD_REP_ERR_UNKNOWN);
	assert_true(r.len <= NBDD_MAX_STRING);
	assert_null(memmem(r.data, r.len, "QQQQ", 4));
	/* an unknown option's payload is not echoed either */
	opt_send(&t, 0x7777, name, 300);
	assert_int_equal(final(&t, 0x7777, &r), NBD_REP_ERR_UNSUP);
	assert_null(memmem(r.data, r.len, "QQQQ", 4));
	finish(&t);
}

/*
 * CVE-2017-15119: options past 64 KiB are drained, never held, and
 * refused up to 16 x 64 KiB; one byte more and the server hangs up at
 * once. (test_handshake.c covers 64 KiB + 1 and 4 GiB.)
 */
static void test_discard_boundary(void **state)
{
	static uint8_t big[16 * NBDD_MAX_OPTION_LEN];
	struct hs_test t;
	struct reply r;
	uint64_t t0;

	start(&t, 10);
	opt_send(&t, 0x7777, big, sizeof(big));
	assert_int_equal(final(&t, 0x7777, &r), NBD_REP_ERR_TOO_BIG);
	still_negotiating(&t);
	t0 = now_ms();
	opt_header(&t, NBD_OPT_INFO, sizeof(big) + 1);
	hung_up(&t);
	assert_true(t.ended_ms - t0 < 5000); /* not the 10 s deadline */
	assert_int_equal(finish(&t), -E2BIG);
}

/*
 * CVE-2024-7409: one deadline for the whole negotiation, also for a
 * client that keeps it busy with valid options and never sends GO.
 * (test_handshake.c covers silent and trickling clients.)
 */
static void test_deadline_busy_client(void **state)
{
	struct hs_test t;
	uint64_t t0;
	uint8_t b[32];
	int i;

	start(&t, 1);
	t0 = now_ms();
	nbd_put64(b, NBD_IHAVEOPT);
	nbd_put32(b + 8, NBD_OPT_LIST);
	nbd_put32(b + 12, 0);
	for (i = 0; i < 200 && now_ms() - t0 < 5000; i++) {
		if (write_full(t.fd, b, 16, 0) < 0 ||
		    read_full(t.fd, b + 16, 1, now_ms() + IO_MS) < 0)
			break;
		/* the rest of the replies */
		while (read_full(t.fd, b + 16, 1, now_ms() + 50) == 0)
			;
		usleep(20000);
	}
	assert_true(i >= 5); /* it was answered while in time */
	hung_up(&t);
	/* at the 1 s deadline (without one, hung_up() would have failed) */
	assert_true(t.ended_ms - t0 >= 900 && t.ended_ms - t0 < 8000);
	assert_int_equal(finish(&t), -ETIMEDOUT);
}

/*
 * CVE-2019-14851 and CVE-2019-14850: INFO, LIST and a meta context for
 * one export leave no state that GO of another export inherits, and no
 * backend is touched before transmission.
 */
static void test_state_does_not_leak(void **state)
{
	struct hs_test t;
	struct reply r;
	uint8_t b[64];

	start(&t, 10);
	opt_send(&t, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	assert_int_equal(final(&t, NBD_OPT_STRUCTURED_REPLY, &r), NBD_REP_ACK);
	nbd_put32(b, 3);
	memcpy(b + 4, "blk", 3);
	nbd_put32(b + 7, 1);
	nbd_put32(b + 11, 15);
	memcpy(b + 15, "base:allocation", 15);
	opt_send(&t, NBD_OPT_SET_META_CONTEXT, b, 30);
	assert_int_equal(final(&t, NBD_OPT_SET_META_CONTEXT, &r), NBD_REP_ACK);
	assert_int_equal(go(&t, NBD_OPT_INFO, "blk", 1, NBD_INFO_BLOCK_SIZE),
			 NBD_REP_ACK);
	assert_int_equal(go(&t, NBD_OPT_GO, "disk", 0, 0), NBD_REP_ACK);
	join(&t);
	assert_int_equal(t.result, 0);
	assert_ptr_equal(t.neg.export, t.disk);
	assert_false(t.neg.base_allocation); /* selected for blk, not disk */
	assert_int_equal(t.neg.min_block, 1); /* agreed for blk only */
	assert_int_equal(atomic_load(&io_calls), 0);
	finish(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_does_not_echo),
		cmocka_unit_test(test_discard_boundary),
		cmocka_unit_test(test_deadline_busy_client),
		cmocka_unit_test(test_state_does_not_leak),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
