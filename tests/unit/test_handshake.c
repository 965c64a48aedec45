/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/proto/handshake.c, first part: greeting and client flags, ABORT,
 * LIST, unknown options, STARTTLS, EXPORT_NAME, and the limits on
 * lengths, counts and time. handshake_run() runs on one end of a
 * socketpair, a scripted client (nbd_test_client.c) on the other.
 * INFO, GO and the options that shape transmission: test_handshake_go.c.
 */
#include "handshake_fixture.h"

/* ---- greeting and client flags ---- */

static void test_greeting(void **state)
{
	struct fx *f = *state;
	uint16_t hflags;

	fx_connect(f);
	assert_int_equal(tc_greeting(f->cfd, &hflags), 0);
	assert_int_equal(hflags, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	assert_int_equal(tc_send_client_flags(f->cfd,
					      NBD_FLAG_C_FIXED_NEWSTYLE), 0);
	still_usable(f->cfd);
	abort_ok(f);
}

static void test_client_flags_refused(void **state)
{
	static const uint32_t bad[] = {
		0,                                         /* not fixed */
		NBD_FLAG_C_NO_ZEROES,                      /* not fixed */
		NBD_FLAG_C_FIXED_NEWSTYLE | (1u << 2),     /* unknown bit */
		NBD_FLAG_C_FIXED_NEWSTYLE | (1u << 31),
	};
	struct fx *f = *state;
	uint16_t hflags;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		fx_connect(f);
		assert_int_equal(tc_greeting(f->cfd, &hflags), 0);
		assert_int_equal(tc_send_client_flags(f->cfd, bad[i]), 0);
		expect_closed(f);
		close(f->cfd);
	}
	f->cfd = 0;
}

static void test_bad_option_magic(void **state)
{
	struct fx *f = *state;
	uint8_t junk[16] = "NOTMAGIC\0\0\0\1\0\0\0\0";

	fx_start(f);
	assert_int_equal(tc_write(f->cfd, junk, sizeof(junk)), 0);
	expect_closed(f);
	assert_int_equal(f->ret, -EPROTO);
}

static void test_client_hangs_up(void **state)
{
	struct fx *f = *state;

	fx_start(f);
	shutdown(f->cfd, SHUT_WR);
	assert_int_equal(fx_join(f), -ECONNRESET);
	assert_null(f->neg.export);
}

/* ---- ABORT, LIST, unknown options, STARTTLS ---- */

/* ABORT is acknowledged; whatever follows it is never read. */
static void test_abort_then_data(void **state)
{
	struct fx *f = *state;
	uint8_t b[64];
	size_t len = tc_build_info(b, "disk", NULL, 0);
	int w;

	fx_start(f);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_ABORT, "x", 1), 0);
	/*
	 * A GO right behind it must not put us into transmission; the
	 * server may have hung up before it is written (EPIPE).
	 */
	w = tc_send_option(f->cfd, NBD_OPT_GO, b, (uint32_t)len);
	assert_true(w == 0 || w == -EPIPE || w == -ECONNRESET);
	assert_int_equal(reply_type(f->cfd, NBD_OPT_ABORT), NBD_REP_ACK);
	expect_closed(f);
	assert_int_equal(f->ret, -ECONNABORTED);
}

static void test_list(void **state)
{
	static const char *const names[] = { "disk", "ro", "blk" };
	struct fx *f = *state;
	struct tc_reply r;
	uint32_t nlen;
	size_t i;

	fx_start(f);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_LIST, NULL, 0), 0);
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		assert_int_equal(tc_read_reply(f->cfd, &r), 0);
		assert_int_equal(r.type, NBD_REP_SERVER);
		assert_int_equal(r.opt, NBD_OPT_LIST);
		nlen = nbd_get32(r.data);
		assert_true(nlen <= r.len - 4);
		assert_int_equal(nlen, strlen(names[i]));
		assert_memory_equal(r.data + 4, names[i], nlen);
		/* the rest is the description, for a person */
		if (i == 0)
			assert_string_equal((char *)r.data + 4 + nlen,
					    "the test disk");
		else
			assert_int_equal(r.len, 4 + nlen);
		tc_reply_free(&r);
	}
	assert_int_equal(reply_type(f->cfd, NBD_OPT_LIST), NBD_REP_ACK);
	/* LIST takes no data */
	expect(f->cfd, NBD_OPT_LIST, "junk", 4, NBD_REP_ERR_INVALID);
	still_usable(f->cfd);
	abort_ok(f);
}

static void test_unknown_options(void **state)
{
	static const uint32_t opts[] = { NBD_OPT_PEEK_EXPORT, 0, 12, 4242,
					 UINT32_MAX };
	struct fx *f = *state;
	uint8_t payload[1000];
	size_t i;

	memset(payload, 'A', sizeof(payload));
	fx_start(f);
	for (i = 0; i < ARRAY_SIZE(opts); i++)
		expect(f->cfd, opts[i], payload, sizeof(payload),
		       NBD_REP_ERR_UNSUP);
	still_usable(f->cfd);
	abort_ok(f);
}

/* Refused, its data consumed; nothing switches, the stream goes on. */
static void test_starttls_refused(void **state)
{
	struct fx *f = *state;
	struct infos in;
	uint8_t b[64];
	size_t len;

	fx_start(f);
	expect(f->cfd, NBD_OPT_STARTTLS, NULL, 0, NBD_REP_ERR_POLICY);
	expect(f->cfd, NBD_OPT_STARTTLS, "\x16\x03\x01", 3, NBD_REP_ERR_POLICY);
	/* options right after STARTTLS are read in plain text, as sent */
	len = tc_build_info(b, "disk", NULL, 0);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_STARTTLS, NULL, 0), 0);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_INFO, b, (uint32_t)len),
			 0);
	assert_int_equal(reply_type(f->cfd, NBD_OPT_STARTTLS),
			 NBD_REP_ERR_POLICY);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_INFO, &in), NBD_REP_ACK);
	assert_true(in.export);
	abort_ok(f);
}

/* ---- EXPORT_NAME ---- */

static void test_export_name(void **state)
{
	struct fx *f = *state;
	uint8_t b[10];

	fx_start(f); /* NO_ZEROES was negotiated */
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_EXPORT_NAME, "ro", 2),
			 0);
	assert_int_equal(tc_read(f->cfd, b, sizeof(b)), 0);
	assert_int_equal(fx_join(f), 0);
	assert_true(nbd_get64(b) == DISK_SIZE);
	assert_true(nbd_get16(b + 8) & NBD_FLAG_HAS_FLAGS);
	assert_true(nbd_get16(b + 8) & NBD_FLAG_READ_ONLY);
	/* no structured replies: DF must not be offered */
	assert_false(nbd_get16(b + 8) & NBD_FLAG_SEND_DF);
	assert_ptr_equal(f->neg.export, f->ro);
	assert_false(f->neg.structured);
	assert_false(f->neg.extended);
	assert_false(f->neg.base_allocation);
	assert_int_equal(f->neg.min_block, 1);
	/* no zeroes followed: the next thing on the wire is ours */
	assert_int_equal(send(f->sfd, "Z", 1, 0), 1);
	assert_int_equal(tc_read(f->cfd, b, 1), 0);
	assert_int_equal(b[0], 'Z');
}

static void test_export_name_zeroes(void **state)
{
	struct fx *f = *state;
	uint8_t b[134], zero[124] = { 0 };
	uint16_t hflags;

	fx_connect(f);
	assert_int_equal(tc_greeting(f->cfd, &hflags), 0);
	assert_int_equal(tc_send_client_flags(f->cfd,
					      NBD_FLAG_C_FIXED_NEWSTYLE), 0);
	/* the empty name is the default export, the first added */
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_EXPORT_NAME, NULL, 0),
			 0);
	assert_int_equal(tc_read(f->cfd, b, sizeof(b)), 0);
	assert_int_equal(fx_join(f), 0);
	assert_ptr_equal(f->neg.export, f->disk);
	assert_true(nbd_get64(b) == DISK_SIZE);
	assert_false(nbd_get16(b + 8) & NBD_FLAG_READ_ONLY);
	assert_memory_equal(b + 10, zero, sizeof(zero));
}

static void test_export_name_unknown(void **state)
{
	struct fx *f = *state;

	fx_start(f);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_EXPORT_NAME, "nope",
					4), 0);
	expect_closed(f);
	assert_int_equal(f->ret, -ENOENT);
}

/* A client that cannot promise alignment gets no aligned-only export. */
static void test_export_name_needs_block_size(void **state)
{
	struct fx *f = *state;

	fx_start(f);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_EXPORT_NAME, "blk", 3),
			 0);
	expect_closed(f);
}

static void test_export_name_after_extended(void **state)
{
	struct fx *f = *state;

	fx_start(f);
	expect(f->cfd, NBD_OPT_EXTENDED_HEADERS, NULL, 0, NBD_REP_ACK);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_EXPORT_NAME, "disk",
					4), 0);
	expect_closed(f);
}

static void test_export_name_oversized(void **state)
{
	struct fx *f = *state;

	fx_start(f);
	/* no error reply exists for EXPORT_NAME: the server hangs up */
	assert_int_equal(tc_send_option_raw(f->cfd, NBD_OPT_EXPORT_NAME,
					    NBDD_MAX_OPTION_LEN + 1, NULL, 0),
			 0);
	expect_closed(f);
	assert_int_equal(f->ret, -E2BIG);
}


/* ---- limits ---- */

/* Over NBDD_MAX_OPTION_LEN: drained without being held, then refused. */
static void test_oversized_option(void **state)
{
	struct fx *f = *state;
	size_t big = NBDD_MAX_OPTION_LEN + 1;
	uint8_t *payload = calloc(1, big);

	assert_non_null(payload);
	fx_start(f);
	/* the limit itself is fine */
	expect(f->cfd, 4242, payload, NBDD_MAX_OPTION_LEN, NBD_REP_ERR_UNSUP);
	expect(f->cfd, 4242, payload, (uint32_t)big, NBD_REP_ERR_TOO_BIG);
	expect(f->cfd, NBD_OPT_INFO, payload, (uint32_t)big,
	       NBD_REP_ERR_TOO_BIG);
	expect(f->cfd, NBD_OPT_SET_META_CONTEXT, payload, (uint32_t)big,
	       NBD_REP_ERR_TOO_BIG);
	free(payload);
	still_usable(f->cfd);
	abort_ok(f);
}

/* A 4 GiB option is not waited for: the server hangs up at once. */
static void test_absurd_option(void **state)
{
	struct fx *f = *state;
	uint64_t t0;
	int w;

	fx_start(f);
	t0 = now_ms();
	/*
	 * The server may answer and hang up on the header alone, before
	 * the 4 bytes behind it are written: then that write fails.
	 */
	w = tc_send_option_raw(f->cfd, NBD_OPT_GO, UINT32_MAX, "\0\0\0\0", 4);
	assert_true(w == 0 || w == -EPIPE || w == -ECONNRESET);
	/* told why first */
	assert_int_equal(reply_type(f->cfd, NBD_OPT_GO), NBD_REP_ERR_TOO_BIG);
	expect_closed(f);
	assert_int_equal(f->ret, -E2BIG);
	assert_true(now_ms() - t0 < 2000); /* well before the deadline */
}

/* Length fields inside an option that point past its end. */
static void test_huge_string_lengths(void **state)
{
	struct fx *f = *state;
	uint8_t b[64];

	fx_start(f);
	/* INFO/GO: name length */
	nbd_put32(b, UINT32_MAX);
	nbd_put16(b + 4, 0);
	expect(f->cfd, NBD_OPT_GO, b, 6, NBD_REP_ERR_INVALID);
	nbd_put32(b, 0x80000000u);
	expect(f->cfd, NBD_OPT_INFO, b, 10, NBD_REP_ERR_INVALID);
	nbd_put32(b, 5); /* one byte longer than what is there */
	memcpy(b + 4, "disk", 4);
	nbd_put16(b + 8, 0);
	expect(f->cfd, NBD_OPT_GO, b, 10, NBD_REP_ERR_INVALID);
	/* too short to hold even the counts */
	expect(f->cfd, NBD_OPT_GO, b, 5, NBD_REP_ERR_INVALID);
	expect(f->cfd, NBD_OPT_GO, NULL, 0, NBD_REP_ERR_INVALID);
	/* META: name length, then a query length */
	nbd_put32(b, UINT32_MAX);
	nbd_put32(b + 4, 0);
	expect(f->cfd, NBD_OPT_LIST_META_CONTEXT, b, 8, NBD_REP_ERR_INVALID);
	nbd_put32(b, 0);
	nbd_put32(b + 4, 1);
	nbd_put32(b + 8, UINT32_MAX);
	expect(f->cfd, NBD_OPT_LIST_META_CONTEXT, b, 12, NBD_REP_ERR_INVALID);
	/* a query count far beyond what the option holds */
	nbd_put32(b + 4, UINT32_MAX);
	nbd_put32(b + 8, 0);
	expect(f->cfd, NBD_OPT_LIST_META_CONTEXT, b, 12, NBD_REP_ERR_INVALID);
	still_usable(f->cfd);
	abort_ok(f);
}

/* Well-formed, but longer than any string we accept. */
static void test_name_too_long(void **state)
{
	struct fx *f = *state;
	size_t n = NBDD_MAX_STRING + 1;
	uint8_t *b = malloc(n + 8);
	struct tc_reply r;

	assert_non_null(b);
	nbd_put32(b, (uint32_t)n);
	memset(b + 4, 'S', n);
	nbd_put16(b + 4 + n, 0);
	fx_start(f);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_GO, b,
					(uint32_t)n + 6), 0);
	assert_int_equal(tc_read_reply(f->cfd, &r), 0);
	assert_int_equal(r.type, NBD_REP_ERR_TOO_BIG);
	/* the message is ours, not an echo of the client's bytes */
	assert_true(r.len < 128);
	assert_null(memmem(r.data, r.len, "SSSS", 4));
	tc_reply_free(&r);
	/* an unknown name of the maximum length: UNKNOWN, not echoed */
	nbd_put32(b, NBDD_MAX_STRING);
	nbd_put16(b + 4 + NBDD_MAX_STRING, 0);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_INFO, b,
					NBDD_MAX_STRING + 6), 0);
	assert_int_equal(tc_read_reply(f->cfd, &r), 0);
	assert_int_equal(r.type, NBD_REP_ERR_UNKNOWN);
	assert_null(memmem(r.data, r.len, "SSSS", 4));
	tc_reply_free(&r);
	free(b);
	still_usable(f->cfd);
	abort_ok(f);
}

static void test_too_many_options(void **state)
{
	struct fx *f = *state;
	uint8_t *hdrs = malloc(16 * (NBDD_MAX_OPTIONS + 1));
	unsigned i;

	assert_non_null(hdrs);
	for (i = 0; i <= NBDD_MAX_OPTIONS; i++) {
		nbd_put64(hdrs + 16 * i, NBD_IHAVEOPT);
		nbd_put32(hdrs + 16 * i + 8, NBD_OPT_PEEK_EXPORT);
		nbd_put32(hdrs + 16 * i + 12, 0);
	}
	fx_start(f);
	/* pipelined: one more than the cap */
	assert_int_equal(tc_write(f->cfd, hdrs, 16 * (NBDD_MAX_OPTIONS + 1)),
			 0);
	free(hdrs);
	for (i = 0; i < NBDD_MAX_OPTIONS; i++)
		assert_int_equal(reply_type(f->cfd, NBD_OPT_PEEK_EXPORT),
				 NBD_REP_ERR_UNSUP);
	expect_closed(f);
	assert_int_equal(f->ret, -E2BIG);
}

/* ---- the deadline ---- */

static int setup_short(void **state)
{
	*state = fx_new(1);
	return 0;
}

/* A client that says nothing after the greeting. */
static void test_timeout_silent(void **state)
{
	struct fx *f = *state;
	uint64_t t0 = now_ms(), dt;
	uint16_t hflags;

	fx_connect(f);
	assert_int_equal(tc_greeting(f->cfd, &hflags), 0);
	assert_int_equal(fx_join(f), -ETIMEDOUT);
	dt = now_ms() - t0;
	assert_true(dt >= 900 && dt < 3000);
	assert_true(tc_peer_closed(f->cfd));
}

/* One deadline for the whole handshake, not one per read. */
static void test_timeout_trickle(void **state)
{
	struct fx *f = *state;
	struct timespec nap = { 0, 150 * 1000 * 1000 };
	uint64_t t0 = now_ms();
	struct tc_reply r;
	int i, answered = 0;

	fx_start(f);
	for (i = 0; i < 40; i++) {
		if (tc_send_option(f->cfd, NBD_OPT_PEEK_EXPORT, NULL, 0) < 0 ||
		    tc_read_reply(f->cfd, &r) < 0)
			break;
		tc_reply_free(&r);
		answered++;
		nanosleep(&nap, NULL);
	}
	assert_int_equal(fx_join(f), -ETIMEDOUT);
	assert_true(answered >= 2 && answered < 20);
	assert_true(now_ms() - t0 < 3000);
}

/* A half-sent option is not waited for beyond the deadline either. */
static void test_timeout_partial_option(void **state)
{
	struct fx *f = *state;

	fx_start(f);
	assert_int_equal(tc_send_option_raw(f->cfd, NBD_OPT_GO, 100, "\0\0",
					    2), 0);
	assert_int_equal(fx_join(f), -ETIMEDOUT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_greeting),
		T(test_client_flags_refused),
		T(test_bad_option_magic),
		T(test_client_hangs_up),
		T(test_abort_then_data),
		T(test_list),
		T(test_unknown_options),
		T(test_starttls_refused),
		T(test_export_name),
		T(test_export_name_zeroes),
		T(test_export_name_unknown),
		T(test_export_name_needs_block_size),
		T(test_export_name_after_extended),
		T(test_export_name_oversized),
		T(test_oversized_option),
		T(test_absurd_option),
		T(test_huge_string_lengths),
		T(test_name_too_long),
		T(test_too_many_options),
#undef T
		cmocka_unit_test_setup_teardown(test_timeout_silent,
						setup_short, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_trickle,
						setup_short, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_partial_option,
						setup_short, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
