/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What test_handshake.c and test_handshake_go.c share: a server with
 * three exports ("disk", the default; "ro", read-only; "blk", with a
 * 512-byte minimum block size), handshake_run() on a thread at one end
 * of a socketpair, and helpers for the scripted client at the other.
 * Included, not linked: files in tests/unit/ are linked into every test.
 */
#ifndef NBDD_TESTS_HANDSHAKE_FIXTURE_H
#define NBDD_TESTS_HANDSHAKE_FIXTURE_H

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
#include "nbd_test_client.h"

#define DISK_SIZE (1u << 20)
#define BLK_SIZE (64u << 10)

/* ---- exports: a tiny backend, one with block-size constraints ---- */

static inline int t_open(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	*h = NULL;
	return 0;
}

static inline int t_size(void *h, uint64_t *size)
{
	*size = DISK_SIZE;
	return 0;
}

static inline int t_blk_size(void *h, uint64_t *size)
{
	*size = BLK_SIZE;
	return 0;
}

static inline int t_block_size(void *h, struct nbdd_block_size *bs)
{
	bs->minimum = 512;
	bs->preferred = 4096;
	bs->maximum = 65536;
	return 0;
}

static inline int t_pread(void *h, void *buf, size_t count, uint64_t off,
			  uint32_t f)
{
	memset(buf, 0, count);
	return 0;
}

static inline int t_pwrite(void *h, const void *buf, size_t count, uint64_t off,
			   uint32_t f)
{
	return 0;
}

static inline int t_flush(void *h, uint32_t f)
{
	return 0;
}

static const struct nbdd_backend disk_backend = {
	NBDD_BACKEND_HEADER,
	.name = "hsdisk",
	.open = t_open,
	.get_size = t_size,
	.pread = t_pread,
	.pwrite = t_pwrite,
	.flush = t_flush,
};

static const struct nbdd_backend blk_backend = {
	NBDD_BACKEND_HEADER,
	.name = "hsblk",
	.open = t_open,
	.get_size = t_blk_size,
	.block_size = t_block_size,
	.pread = t_pread,
};

/* ---- fixture: a server with "disk" (default), "ro" and "blk" ---- */

struct fx {
	struct nbdd_server *srv;
	struct nbdd_export *disk, *ro, *blk;
	pthread_t thread;
	int cfd, sfd; /* client end, server end */
	int ret;
	struct negotiated neg;
	bool joined;
};

static inline struct nbdd_export *add(struct nbdd_server *srv,
				      const struct nbdd_backend *b,
				      const struct nbdd_export_options *o)
{
	struct nbdd_export *e;

	assert_int_equal(nbdd_export_new(b, NULL, 0, o, &e), 0);
	assert_int_equal(nbdd_server_add_export(srv, e), 0);
	nbdd_export_unref(e); /* the server holds its own reference */
	return e;
}

static inline struct fx *fx_new(unsigned timeout)
{
	struct nbdd_server_options so = { .handshake_timeout = timeout };
	struct nbdd_export_options disk = { .name = "disk",
					    .description = "the test disk" };
	struct nbdd_export_options ro = { .name = "ro", .readonly = true };
	struct nbdd_export_options blk = { .name = "blk" };
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(nbdd_server_new(&so, &f->srv), 0);
	f->disk = add(f->srv, &disk_backend, &disk);
	f->ro = add(f->srv, &disk_backend, &ro);
	f->blk = add(f->srv, &blk_backend, &blk);
	return f;
}

static inline int setup(void **state)
{
	*state = fx_new(5);
	return 0;
}

static inline void *hs_thread(void *arg)
{
	struct fx *f = arg;

	f->ret = handshake_run(f->srv, f->sfd, &f->neg);
	/* As server.c does: a failed handshake ends the connection. */
	if (f->ret < 0)
		close(f->sfd);
	return NULL;
}

/* Start handshake_run() and return the client's end, greeting unread. */
static inline int fx_connect(struct fx *f)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	f->cfd = sv[0];
	f->sfd = sv[1];
	f->joined = false;
	assert_int_equal(pthread_create(&f->thread, NULL, hs_thread, f), 0);
	return f->cfd;
}

/* Connected, greeted, client flags sent: ready for options. */
static inline int fx_start(struct fx *f)
{
	int fd = fx_connect(f);

	assert_int_equal(tc_start(fd), 0);
	return fd;
}

/* Wait for handshake_run() to return; its result. */
static inline int fx_join(struct fx *f)
{
	if (!f->joined) {
		pthread_join(f->thread, NULL);
		f->joined = true;
	}
	return f->ret;
}

static inline int teardown(void **state)
{
	struct fx *f = *state;

	if (f->cfd > 0) {
		shutdown(f->cfd, SHUT_RDWR); /* unblocks a failed test */
		fx_join(f);
		close(f->cfd);
	}
	if (f->ret == 0 && f->neg.export) {
		nbdd_export_unref(f->neg.export);
		close(f->sfd);
	}
	nbdd_server_free(f->srv);
	free(f);
	return 0;
}

/* ---- small helpers ---- */

static inline uint32_t reply_type(int fd, uint32_t opt)
{
	struct tc_reply r;
	uint32_t type;

	assert_int_equal(tc_read_reply(fd, &r), 0);
	assert_int_equal(r.opt, opt);
	type = r.type;
	/* An error message is short, fixed text. */
	if (type & NBD_REP_FLAG_ERROR)
		assert_true(r.len < 128);
	tc_reply_free(&r);
	return type;
}

/* Send @opt and expect exactly one reply of @type. */
static inline void expect(int fd, uint32_t opt, const void *data, uint32_t len,
			  uint32_t type)
{
	assert_int_equal(tc_send_option(fd, opt, data, len), 0);
	assert_int_equal(reply_type(fd, opt), type);
}

/* The connection still works: a harmless option is answered. */
static inline void still_usable(int fd)
{
	expect(fd, NBD_OPT_PEEK_EXPORT, NULL, 0, NBD_REP_ERR_UNSUP);
}

/* The server hung up, and handshake_run() said so. */
static inline void expect_closed(struct fx *f)
{
	assert_true(tc_peer_closed(f->cfd));
	assert_true(fx_join(f) < 0);
	assert_null(f->neg.export);
}

static inline void abort_ok(struct fx *f)
{
	expect(f->cfd, NBD_OPT_ABORT, NULL, 0, NBD_REP_ACK);
	assert_int_equal(fx_join(f), -ECONNABORTED);
}

/* Read INFO replies up to the final one; returns its type. */
struct infos {
	bool export, name, description, block_size;
	uint64_t size;
	uint16_t eflags;
	uint32_t bs[3];
	char text[NBDD_MAX_STRING + 1];
	char desc[NBDD_MAX_STRING + 1];
};

static inline uint32_t read_infos(int fd, uint32_t opt, struct infos *in)
{
	struct tc_reply r;
	uint32_t type;
	uint16_t item;

	memset(in, 0, sizeof(*in));
	for (;;) {
		assert_int_equal(tc_read_reply(fd, &r), 0);
		assert_int_equal(r.opt, opt);
		type = r.type;
		if (type != NBD_REP_INFO) {
			tc_reply_free(&r);
			return type;
		}
		assert_true(r.len >= 2);
		item = nbd_get16(r.data);
		switch (item) {
		case NBD_INFO_EXPORT:
			assert_int_equal(r.len, 12);
			in->export = true;
			in->size = nbd_get64(r.data + 2);
			in->eflags = nbd_get16(r.data + 10);
			break;
		case NBD_INFO_NAME:
			in->name = true;
			memcpy(in->text, r.data + 2, r.len - 2);
			break;
		case NBD_INFO_DESCRIPTION:
			in->description = true;
			memcpy(in->desc, r.data + 2, r.len - 2);
			break;
		case NBD_INFO_BLOCK_SIZE:
			assert_int_equal(r.len, 14);
			in->block_size = true;
			in->bs[0] = nbd_get32(r.data + 2);
			in->bs[1] = nbd_get32(r.data + 6);
			in->bs[2] = nbd_get32(r.data + 10);
			break;
		default:
			fail_msg("unexpected info item %u", item);
		}
		tc_reply_free(&r);
	}
}

#endif /* NBDD_TESTS_HANDSHAKE_FIXTURE_H */
