/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NBD_OPT_STARTTLS in lib/proto/handshake.c: the option state machine in
 * each TLS mode (the spec's NOTLS, SELECTIVETLS with every export open,
 * FORCEDTLS), with a real TLS handshake (gnutls, PSK) for what follows
 * the upgrade. And nbdd_server_set_tls()'s checks of what it is given.
 */
#include <gnutls/gnutls.h>
#include <sys/stat.h>

#include "handshake_fixture.h"
#include "proto/tls.h"

#define PSK_USER "alice"
#define PSK_HEX "8a2b1e3f4c5d6e7f8091a2b3c4d5e6f7"

static char psk_path[] = "/tmp/nbdd-test-psk.XXXXXX";

/* A fixture server in @mode with a PSK file; -errno of set_tls. */
static int set_mode(struct fx *f, enum nbdd_tls_mode mode)
{
	struct nbdd_tls_options o = {
		.struct_size = sizeof(o),
		.mode = mode,
		.psk_file = psk_path,
	};

	return nbdd_server_set_tls(f->srv, &o);
}

static int setup_mode(void **state, enum nbdd_tls_mode mode)
{
	struct fx *f = fx_new(5);

	assert_int_equal(set_mode(f, mode), 0);
	*state = f;
	return 0;
}

static int setup_on(void **state)
{
	return setup_mode(state, NBDD_TLS_ON);
}

static int setup_require(void **state)
{
	return setup_mode(state, NBDD_TLS_REQUIRE);
}

static int teardown_tls(void **state)
{
	struct fx *f = *state;

	if (f->ret == 0)
		tls_session_free(f->neg.tls);
	return teardown(state);
}

/* ---- the client's side of TLS ---- */

struct tls_client {
	gnutls_session_t s;
	gnutls_psk_client_credentials_t cred;
};

static int tls_client_start(struct tls_client *c, int fd)
{
	const gnutls_datum_t key = { (unsigned char *)PSK_HEX,
				     sizeof(PSK_HEX) - 1 };
	int r;

	assert_int_equal(gnutls_psk_allocate_client_credentials(&c->cred), 0);
	assert_int_equal(gnutls_psk_set_client_credentials(
				 c->cred, PSK_USER, &key, GNUTLS_PSK_KEY_HEX),
			 0);
	assert_int_equal(gnutls_init(&c->s, GNUTLS_CLIENT), 0);
	assert_int_equal(gnutls_priority_set_direct(
				 c->s, "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK", NULL),
			 0);
	assert_int_equal(gnutls_credentials_set(c->s, GNUTLS_CRD_PSK, c->cred),
			 0);
	gnutls_transport_set_int(c->s, fd);
	gnutls_handshake_set_timeout(c->s, TC_TIMEOUT_MS);
	do
		r = gnutls_handshake(c->s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	return r;
}

static void tls_client_free(struct tls_client *c)
{
	gnutls_deinit(c->s);
	gnutls_psk_free_client_credentials(c->cred);
}

static void tls_write(struct tls_client *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t n;

	while (len) {
		n = gnutls_record_send(c->s, p, len);
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

static void tls_read(struct tls_client *c, void *buf, size_t len)
{
	uint8_t *p = buf;
	ssize_t n;

	while (len) {
		n = gnutls_record_recv(c->s, p, len);
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

/* Send @opt over TLS; the type of its one reply (payload dropped). */
static uint32_t tls_expect(struct tls_client *c, uint32_t opt,
			   const void *data, uint32_t len)
{
	uint8_t h[20], sink[256];
	uint32_t rlen;

	nbd_put64(h, NBD_IHAVEOPT);
	nbd_put32(h + 8, opt);
	nbd_put32(h + 12, len);
	tls_write(c, h, 16);
	if (len)
		tls_write(c, data, len);
	tls_read(c, h, 20);
	assert_true(nbd_get64(h) == NBD_OPT_REPLY_MAGIC);
	assert_int_equal(nbd_get32(h + 8), opt);
	rlen = nbd_get32(h + 16);
	assert_true(rlen <= sizeof(sink));
	tls_read(c, sink, rlen);
	return nbd_get32(h + 12);
}

/* STARTTLS acknowledged, then the TLS handshake with the right key. */
static void upgrade(struct fx *f, struct tls_client *c)
{
	expect(f->cfd, NBD_OPT_STARTTLS, NULL, 0, NBD_REP_ACK);
	assert_int_equal(tls_client_start(c, f->cfd), 0);
}

/* GO over TLS for "disk"; INFO replies skipped up to the ACK. */
static void tls_go(struct fx *f, struct tls_client *c)
{
	uint8_t b[64], h[20], sink[256];
	size_t len = tc_build_info(b, "disk", NULL, 0);
	uint32_t type, rlen;

	nbd_put64(h, NBD_IHAVEOPT);
	nbd_put32(h + 8, NBD_OPT_GO);
	nbd_put32(h + 12, (uint32_t)len);
	tls_write(c, h, 16);
	tls_write(c, b, len);
	do {
		tls_read(c, h, 20);
		type = nbd_get32(h + 12);
		rlen = nbd_get32(h + 16);
		assert_true(rlen <= sizeof(sink));
		tls_read(c, sink, rlen);
	} while (type == NBD_REP_INFO);
	assert_int_equal(type, NBD_REP_ACK);
	assert_int_equal(fx_join(f), 0);
	assert_ptr_equal(f->neg.export, f->disk);
	assert_non_null(f->neg.tls);
}

/* ---- --tls=require: the spec's FORCEDTLS ---- */

static void test_require_refuses_options_before_tls(void **state)
{
	static const uint32_t opts[] = {
		NBD_OPT_LIST, NBD_OPT_STRUCTURED_REPLY, NBD_OPT_INFO,
		NBD_OPT_GO, NBD_OPT_LIST_META_CONTEXT, NBD_OPT_PEEK_EXPORT,
		NBD_OPT_EXTENDED_HEADERS, 1000,
	};
	struct fx *f = *state;
	uint8_t b[64];
	size_t i, len = tc_build_info(b, "disk", NULL, 0);

	fx_start(f);
	for (i = 0; i < ARRAY_SIZE(opts); i++)
		expect(f->cfd, opts[i], b,
		       opts[i] == NBD_OPT_INFO || opts[i] == NBD_OPT_GO
			       ? (uint32_t)len : 0,
		       NBD_REP_ERR_TLS_REQD);
	/* ABORT is still honoured without TLS */
	abort_ok(f);
	assert_null(f->neg.export);
}

/* EXPORT_NAME has no error reply: without TLS the server hangs up. */
static void test_require_export_name_hangs_up(void **state)
{
	struct fx *f = *state;

	fx_start(f);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_EXPORT_NAME, "disk", 4),
			 0);
	expect_closed(f);
	assert_int_equal(f->ret, -EACCES);
}

/* After the upgrade nothing is refused for want of TLS. */
static void test_require_after_tls(void **state)
{
	struct fx *f = *state;
	struct tls_client c;

	fx_start(f);
	upgrade(f, &c);
	assert_int_equal(tls_expect(&c, NBD_OPT_STRUCTURED_REPLY, NULL, 0),
			 NBD_REP_ACK);
	assert_int_equal(tls_expect(&c, NBD_OPT_PEEK_EXPORT, NULL, 0),
			 NBD_REP_ERR_UNSUP);
	tls_go(f, &c);
	assert_true(f->neg.structured);
	tls_client_free(&c);
}

/* ---- STARTTLS itself ---- */

static void test_starttls_with_data(void **state)
{
	struct fx *f = *state;

	fx_start(f);
	expect(f->cfd, NBD_OPT_STARTTLS, "\x16\x03\x01", 3, NBD_REP_ERR_INVALID);
	/* still plain text, still negotiating: ABORT is answered */
	abort_ok(f);
}

static void test_starttls_twice(void **state)
{
	struct fx *f = *state;
	struct tls_client c;

	fx_start(f);
	upgrade(f, &c);
	assert_int_equal(tls_expect(&c, NBD_OPT_STARTTLS, NULL, 0),
			 NBD_REP_ERR_INVALID);
	/* the session goes on, inside TLS */
	assert_int_equal(tls_expect(&c, NBD_OPT_PEEK_EXPORT, NULL, 0),
			 NBD_REP_ERR_UNSUP);
	assert_int_equal(tls_expect(&c, NBD_OPT_ABORT, NULL, 0), NBD_REP_ACK);
	assert_int_equal(fx_join(f), -ECONNABORTED);
	tls_client_free(&c);
}

/* The spec: nothing negotiated before STARTTLS survives it. */
static void test_starttls_forgets_state(void **state)
{
	struct fx *f = *state;
	struct tls_client c;

	fx_start(f);
	expect(f->cfd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, NBD_REP_ACK);
	upgrade(f, &c);
	tls_go(f, &c);
	assert_false(f->neg.structured);
	tls_client_free(&c);
}

/* --tls=on serves a client that never upgrades. */
static void test_on_serves_plaintext(void **state)
{
	struct fx *f = *state;
	struct infos in;
	uint8_t b[64];
	size_t len = tc_build_info(b, "disk", NULL, 0);

	fx_start(f);
	assert_int_equal(tc_send_option(f->cfd, NBD_OPT_GO, b, (uint32_t)len),
			 0);
	assert_int_equal(read_infos(f->cfd, NBD_OPT_GO, &in), NBD_REP_ACK);
	assert_int_equal(fx_join(f), 0);
	assert_null(f->neg.tls);
}

/* A client that speaks no TLS after the ACK is dropped, nothing else. */
static void test_tls_handshake_garbage(void **state)
{
	struct fx *f = *state;
	char junk[64];

	fx_start(f);
	expect(f->cfd, NBD_OPT_STARTTLS, NULL, 0, NBD_REP_ACK);
	memset(junk, 'x', sizeof(junk));
	assert_int_equal(tc_write(f->cfd, junk, sizeof(junk)), 0);
	expect_closed(f);
	assert_int_equal(f->ret, -ECONNABORTED);
}

/* A wrong key fails the handshake on both sides. */
static void test_tls_wrong_key(void **state)
{
	const gnutls_datum_t key = { (unsigned char *)"00112233", 8 };
	struct fx *f = *state;
	struct tls_client c;
	int r;

	fx_start(f);
	expect(f->cfd, NBD_OPT_STARTTLS, NULL, 0, NBD_REP_ACK);
	assert_int_equal(gnutls_psk_allocate_client_credentials(&c.cred), 0);
	assert_int_equal(gnutls_psk_set_client_credentials(
				 c.cred, PSK_USER, &key, GNUTLS_PSK_KEY_HEX),
			 0);
	assert_int_equal(gnutls_init(&c.s, GNUTLS_CLIENT), 0);
	assert_int_equal(gnutls_priority_set_direct(
				 c.s, "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK", NULL),
			 0);
	gnutls_credentials_set(c.s, GNUTLS_CRD_PSK, c.cred);
	gnutls_transport_set_int(c.s, f->cfd);
	gnutls_handshake_set_timeout(c.s, TC_TIMEOUT_MS);
	do
		r = gnutls_handshake(c.s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	assert_true(r < 0);
	expect_closed(f);
	tls_client_free(&c);
}

/* ---- nbdd_server_set_tls(): what it refuses ---- */

static void test_set_tls_checks(void **state)
{
	struct fx *f = *state;
	struct nbdd_tls_options o = { .struct_size = sizeof(o),
				      .mode = NBDD_TLS_ON };
	char bad[] = "/tmp/nbdd-test-badpsk.XXXXXX";
	int fd;

	assert_int_equal(nbdd_server_set_tls(f->srv, &o), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "--tls-psk"));
	o.psk_file = "/nonexistent/psk";
	assert_int_equal(nbdd_server_set_tls(f->srv, &o), -ENOENT);
	/* a line without a key */
	fd = mkstemp(bad);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "alice:00ff\nbob\n", 15), 15);
	close(fd);
	o.psk_file = bad;
	assert_int_equal(nbdd_server_set_tls(f->srv, &o), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "line 2"));
	/* readable by others */
	chmod(bad, 0644);
	assert_int_equal(nbdd_server_set_tls(f->srv, &o), -EPERM);
	assert_non_null(strstr(nbdd_last_error(), "chmod 0600"));
	unlink(bad);
	/* verify_peer needs certificates; a struct too small is refused */
	o.psk_file = psk_path;
	o.verify_peer = true;
	assert_int_equal(nbdd_server_set_tls(f->srv, &o), -EINVAL);
	o.verify_peer = false;
	o.struct_size = 4;
	assert_int_equal(nbdd_server_set_tls(f->srv, &o), -EINVAL);
	f->cfd = 0;
}

/* Credentials are not swapped under a client that may be using them. */
static void test_set_tls_busy(void **state)
{
	struct fx *f = *state;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	assert_int_equal(nbdd_server_start_fd(f->srv, sv[1]), 0);
	assert_int_equal(set_mode(f, NBDD_TLS_REQUIRE), -EBUSY);
	assert_non_null(strstr(nbdd_last_error(), "before serving"));
	close(sv[0]); /* the client leaves; nbdd_server_free() waits for it */
	f->cfd = 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define REQ(fn) cmocka_unit_test_setup_teardown(fn, setup_require, teardown_tls)
#define ON(fn) cmocka_unit_test_setup_teardown(fn, setup_on, teardown_tls)
		REQ(test_require_refuses_options_before_tls),
		REQ(test_require_export_name_hangs_up),
		REQ(test_require_after_tls),
		REQ(test_starttls_with_data),
		ON(test_starttls_with_data),
		REQ(test_starttls_twice),
		ON(test_starttls_twice),
		ON(test_starttls_forgets_state),
		ON(test_on_serves_plaintext),
		REQ(test_tls_handshake_garbage),
		REQ(test_tls_wrong_key),
		ON(test_set_tls_checks),
		ON(test_set_tls_busy),
	};
	int fd, r;

	fd = mkstemp(psk_path);
	if (fd < 0 || write(fd, PSK_USER ":" PSK_HEX "\n",
			    sizeof(PSK_USER ":" PSK_HEX "\n") - 1) < 0)
		return 1;
	close(fd);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(psk_path);
	return r;
}
