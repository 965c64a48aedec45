/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The transmission engine (lib/proto/conn.c) driven from the other end of
 * a socketpair: ordering, pipelining, validation that keeps the stream in
 * sync, error mapping, draining on disconnect, structured and extended
 * replies, the worker pool, and the asynchronous path (.aio_ callbacks
 * that end requests on threads of their own, or before they return).
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "proto/conn.h"

/* ---- a test backend: a flat buffer with knobs ---- */

#define DISK_SIZE (4u << 20)

struct disk {
	uint8_t *data;
	uint64_t size;
	atomic_int flushes;
	atomic_int writes;
	int fail_read; /* -errno returned by pread when set */
	int fail_submit; /* -errno returned by the .aio_ callbacks when set */
	atomic_int aio_started, aio_ended;
	int slow_us;   /* sleep in each call, to reorder replies */
	uint64_t hole_from; /* extents: [hole_from, size) is a hole */
};

static struct disk the_disk;

/*
 * Set while the test backend is inside nbdd_request_done(): nbdd must
 * not call back into a backend from there (libnbd's poller would wait
 * for itself), so every callback checks it.
 */
static __thread bool in_done;

static void nap(void)
{
	if (the_disk.slow_us) {
		struct timespec ts = { 0, (long)(rand() % the_disk.slow_us) * 1000 };
		nanosleep(&ts, NULL);
	}
}

static int d_open(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	*h = &the_disk;
	return 0;
}

static int d_size(void *h, uint64_t *size)
{
	*size = the_disk.size;
	return 0;
}

static int d_pread(void *h, void *buf, size_t count, uint64_t off, uint32_t f)
{
	nap();
	if (the_disk.fail_read)
		return the_disk.fail_read;
	memcpy(buf, the_disk.data + off, count);
	return 0;
}

static int d_pwrite(void *h, const void *buf, size_t count, uint64_t off,
		    uint32_t f)
{
	nap();
	memcpy(the_disk.data + off, buf, count);
	atomic_fetch_add(&the_disk.writes, 1);
	return 0;
}

static int d_flush(void *h, uint32_t f)
{
	assert_false(in_done);
	atomic_fetch_add(&the_disk.flushes, 1);
	return 0;
}

static int d_extents(void *h, uint64_t count, uint64_t off, uint32_t f,
		     struct nbdd_extents *x)
{
	uint64_t end = off + count;

	if (off < the_disk.hole_from) {
		uint64_t n = MIN(end, the_disk.hole_from) - off;
		int r = nbdd_extents_add(x, off, n, 0);
		if (r)
			return r;
		off += n;
	}
	if (off < end)
		return nbdd_extents_add(x, off, the_disk.size - off,
					NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO);
	return 0;
}

/* Within the buffer start() allocates: twice DISK_SIZE. */
static int d_resize(void *h, uint64_t size)
{
	if (size > 2 * DISK_SIZE)
		return -ENOSPC;
	the_disk.size = size;
	return 0;
}

static struct nbdd_backend disk_backend = {
	NBDD_BACKEND_HEADER,
	.name = "testdisk",
	.thread_model = NBDD_THREAD_PARALLEL,
	.open = d_open,
	.get_size = d_size,
	.pread = d_pread,
	.pwrite = d_pwrite,
	.flush = d_flush,
	.extents = d_extents,
	.resize = d_resize,
};

/* ---- the asynchronous flavour: requests end on threads of their own ---- */

struct aio_job {
	enum { AIO_READ, AIO_WRITE, AIO_FLUSH } op;
	void *buf;
	size_t count;
	uint64_t off;
	struct nbdd_request *req;
};

static void end_job(struct nbdd_request *req, int result)
{
	in_done = true;
	nbdd_request_done(req, result);
	in_done = false;
}

static int aio_run(const struct aio_job *j)
{
	switch (j->op) {
	case AIO_READ:
		return d_pread(NULL, j->buf, j->count, j->off, 0);
	case AIO_WRITE:
		return d_pwrite(NULL, j->buf, j->count, j->off, 0);
	default:
		return d_flush(NULL, 0);
	}
}

static void *aio_thread(void *arg)
{
	struct aio_job *j = arg;

	end_job(j->req, aio_run(j));
	free(j);
	atomic_fetch_add(&the_disk.aio_ended, 1);
	return NULL;
}

/* Every other request ends before its callback returns; the rest later. */
static int aio_start(struct aio_job j)
{
	pthread_attr_t attr;
	struct aio_job *p;
	pthread_t t;
	int r;

	assert_false(in_done);
	if (the_disk.fail_submit)
		return the_disk.fail_submit;
	if (atomic_fetch_add(&the_disk.aio_started, 1) % 2 == 0) {
		end_job(j.req, aio_run(&j));
		atomic_fetch_add(&the_disk.aio_ended, 1);
		return 0;
	}
	p = malloc(sizeof(*p));
	assert_non_null(p);
	*p = j;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &attr, aio_thread, p);
	pthread_attr_destroy(&attr);
	assert_int_equal(r, 0);
	return 0;
}

static int a_pread(void *h, void *buf, size_t count, uint64_t off,
		   uint32_t f, struct nbdd_request *req)
{
	return aio_start((struct aio_job){ AIO_READ, buf, count, off, req });
}

static int a_pwrite(void *h, const void *buf, size_t count, uint64_t off,
		    uint32_t f, struct nbdd_request *req)
{
	return aio_start((struct aio_job){ AIO_WRITE, (void *)buf, count, off,
					   req });
}

static int a_flush(void *h, uint32_t f, struct nbdd_request *req)
{
	return aio_start((struct aio_job){ AIO_FLUSH, NULL, 0, 0, req });
}

/* How the test backend runs requests. */
enum exec { WORKERS, INLINE, ASYNC };

static void set_exec(enum exec how)
{
	bool async = how == ASYNC;

	disk_backend.flags = how == INLINE ? NBDD_BACKEND_INLINE : 0;
	disk_backend.aio_pread = async ? a_pread : NULL;
	disk_backend.aio_pwrite = async ? a_pwrite : NULL;
	disk_backend.aio_flush = async ? a_flush : NULL;
	/* Async: more in flight than the socket holds replies for. */
	disk_backend.max_in_flight = async ? 128 : 0;
}

/* Wait (bounded) until every asynchronous request's thread is done. */
static void wait_aio_ended(void)
{
	uint64_t deadline = now_ms() + 10000;

	while (atomic_load(&the_disk.aio_ended) <
	       atomic_load(&the_disk.aio_started)) {
		assert_true(now_ms() < deadline);
		usleep(1000);
	}
}

/* ---- the server side: conn_run on a thread ---- */

struct server {
	pthread_t thread;
	struct conn *conn;
	struct nbdd_export *e;
	int client_fd;
	int result;
};

static void *serve(void *arg)
{
	struct server *s = arg;

	s->result = conn_run(s->conn);
	return NULL;
}

static void start(struct server *s, enum exec how, enum conn_mode mode,
		  bool structured, bool extended)
{
	struct negotiated neg = { .min_block = 1 };
	int sv[2];

	memset(&the_disk, 0, sizeof(the_disk));
	the_disk.size = DISK_SIZE;
	the_disk.data = calloc(1, 2 * DISK_SIZE);
	the_disk.hole_from = DISK_SIZE;
	set_exec(how);
	assert_int_equal(nbdd_export_new(&disk_backend, NULL, 0, NULL,
					 &neg.export), 0);
	neg.structured = structured || extended;
	neg.extended = extended;
	neg.base_allocation = structured || extended;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s->client_fd = sv[0];
	s->conn = conn_new(sv[1], mode, &neg);
	s->e = neg.export;
	assert_non_null(s->conn);
	assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static int stop(struct server *s)
{
	close(s->client_fd);
	pthread_join(s->thread, NULL);
	conn_free(s->conn);
	wait_aio_ended();
	free(the_disk.data);
	return s->result;
}

/* ---- the client side ---- */

static void send_all(int fd, const void *buf, size_t len)
{
	assert_int_equal(write_full(fd, buf, len, 0), 0);
}

static void recv_all(int fd, void *buf, size_t len)
{
	assert_int_equal(read_full(fd, buf, len, now_ms() + 10000), 0);
}

static void send_req(int fd, bool ext, uint16_t type, uint16_t flags,
		     uint64_t cookie, uint64_t off, uint64_t len,
		     const void *payload)
{
	struct nbd_request r = { .type = type, .flags = flags,
				 .cookie = cookie, .offset = off,
				 .length = len };
	uint8_t hdr[NBD_EXTENDED_REQUEST_SIZE];

	send_all(fd, hdr, nbd_encode_request(hdr, ext, &r));
	if (payload)
		send_all(fd, payload, (size_t)len);
}

/* Read a simple reply header; returns the error and sets *cookie. */
static uint32_t recv_simple(int fd, uint64_t *cookie)
{
	uint8_t h[NBD_SIMPLE_REPLY_SIZE];

	recv_all(fd, h, sizeof(h));
	assert_int_equal(nbd_get32(h), NBD_SIMPLE_REPLY_MAGIC);
	*cookie = nbd_get64(h + 8);
	return nbd_get32(h + 4);
}

struct chunk {
	uint16_t flags, type;
	uint64_t cookie, length;
	uint8_t payload[4096];
};

/* Read one structured or extended chunk; keeps up to 4096 payload bytes. */
static void recv_chunk(int fd, bool ext, struct chunk *c)
{
	uint8_t h[NBD_EXTENDED_REPLY_SIZE];
	size_t hs = ext ? NBD_EXTENDED_REPLY_SIZE : NBD_STRUCTURED_REPLY_SIZE;
	uint8_t sink[4096];
	uint64_t left;

	recv_all(fd, h, hs);
	assert_int_equal(nbd_get32(h), ext ? NBD_EXTENDED_REPLY_MAGIC
					   : NBD_STRUCTURED_REPLY_MAGIC);
	c->flags = nbd_get16(h + 4);
	c->type = nbd_get16(h + 6);
	c->cookie = nbd_get64(h + 8);
	c->length = ext ? nbd_get64(h + 24) : nbd_get32(h + 16);
	left = c->length;
	recv_all(fd, c->payload, (size_t)MIN(left, sizeof(c->payload)));
	left -= MIN(left, sizeof(c->payload));
	while (left) {
		size_t n = (size_t)MIN(left, sizeof(sink));
		recv_all(fd, sink, n);
		left -= n;
	}
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + seed);
}

/* ---- tests ---- */

static void write_then_read(enum exec how)
{
	struct server s;
	uint8_t out[4096], in[4096];
	uint64_t cookie;

	start(&s, how, CONN_KERNEL, false, false);
	fill_pattern(out, sizeof(out), 1);
	send_req(s.client_fd, false, NBD_CMD_WRITE, 0, 11, 8192, 4096, out);
	assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(cookie, 11);
	assert_memory_equal(the_disk.data + 8192, out, 4096);

	send_req(s.client_fd, false, NBD_CMD_READ, 0, 12, 8192, 4096, NULL);
	assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(cookie, 12);
	recv_all(s.client_fd, in, sizeof(in));
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(stop(&s), 0);
}

static void test_write_read_inline(void **state)
{
	write_then_read(INLINE);
}

static void test_write_read_workers(void **state)
{
	write_then_read(WORKERS);
}

static void test_write_read_async(void **state)
{
	write_then_read(ASYNC);
}

/*
 * An asynchronous connection's socket holds a 1 MiB reply (and more), so
 * the thread that ends a large read can send it without a hand-off; the
 * others keep the system's default. Past net.core.wmem_max it grows only
 * with CAP_NET_ADMIN (as root); without, it still grows up to that cap.
 */
static void test_async_send_buffer(void **state)
{
	int size = 0, dflt = 0, sv[2], forced;
	socklen_t len = sizeof(size);
	struct server s;

	/* Do we have CAP_NET_ADMIN? Then nbdd has it too. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	size = SEND_BUFFER;
	forced = setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &size,
			    sizeof(size)) == 0;
	close(sv[0]);
	close(sv[1]);
	start(&s, WORKERS, CONN_KERNEL, false, false);
	assert_int_equal(getsockopt(s.conn->fd, SOL_SOCKET, SO_SNDBUF, &dflt,
				    &len), 0);
	assert_int_equal(stop(&s), 0);
	start(&s, ASYNC, CONN_KERNEL, false, false);
	assert_int_equal(getsockopt(s.conn->fd, SOL_SOCKET, SO_SNDBUF, &size,
				    &len), 0);
	assert_true(dflt < SEND_BUFFER);
	assert_true(size > dflt); /* grown, with the capability or without */
	if (forced)
		assert_true(size >= SEND_BUFFER); /* the kernel doubles it */
	assert_int_equal(stop(&s), 0);
}

/*
 * Many requests in one burst, against a slow blocking backend so that
 * replies come back out of order: every cookie is answered exactly once
 * and every read returns what the write before the burst stored.
 */
static void pipelined(enum exec how)
{
	enum { N = 64 };
	struct server s;
	static uint8_t buf[N][512];
	bool seen[2 * N] = { false };
	uint64_t cookie;
	uint8_t in[512];
	int i;

	start(&s, how, CONN_KERNEL, false, false);
	for (i = 0; i < N; i++)
		fill_pattern(the_disk.data + i * 512, 512, (unsigned)i);
	the_disk.slow_us = how == INLINE ? 0 : 2000;
	for (i = 0; i < N; i++) {
		fill_pattern(buf[i], 512, (unsigned)(i + 100));
		send_req(s.client_fd, false, NBD_CMD_READ, 0, (uint64_t)i,
			 (uint64_t)i * 512, 512, NULL);
		send_req(s.client_fd, false, NBD_CMD_WRITE, 0,
			 (uint64_t)(N + i), (uint64_t)(N + i) * 512, 512,
			 buf[i]);
	}
	for (i = 0; i < 2 * N; i++) {
		assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
		assert_true(cookie < 2 * N);
		assert_false(seen[cookie]);
		seen[cookie] = true;
		if (cookie < N) {
			uint8_t want[512];
			recv_all(s.client_fd, in, sizeof(in));
			fill_pattern(want, 512, (unsigned)cookie);
			assert_memory_equal(in, want, 512);
		}
	}
	for (i = 0; i < N; i++)
		assert_memory_equal(the_disk.data + (N + i) * 512, buf[i], 512);
	assert_int_equal(stop(&s), 0);
}

static void test_pipelined_inline(void **state)
{
	pipelined(INLINE);
}

static void test_pipelined_workers(void **state)
{
	pipelined(WORKERS);
}

static void test_pipelined_async(void **state)
{
	pipelined(ASYNC);
}

/*
 * A write whose payload is larger than the receive buffer: while the
 * reader waits for the rest of it, the replies it has already made must
 * be on their way. A client that waits for one of them before sending
 * more (as a pipelining client at its queue depth does) would otherwise
 * wait for ever.
 */
static void test_replies_leave_before_large_payload(void **state)
{
	enum { BIG = 1u << 20, SMALL = 512, HDR = NBD_SIMPLE_REQUEST_SIZE };
	static uint8_t big[BIG];
	uint8_t first[2 * HDR + SMALL + 4096];
	struct nbd_request w1 = { .type = NBD_CMD_WRITE, .cookie = 1,
				  .offset = 0, .length = SMALL };
	struct nbd_request w2 = { .type = NBD_CMD_WRITE, .cookie = 2,
				  .offset = 4096, .length = BIG };
	struct pollfd p;
	uint64_t cookie;
	struct server s;

	start(&s, INLINE, CONN_KERNEL, false, false);
	fill_pattern(big, BIG, 2);
	/*
	 * One send, so that one recv gets the small write, the big one's
	 * header and the start of its payload: the reader then has a reply
	 * to send and nothing left to read before the payload's rest.
	 */
	nbd_encode_request(first, false, &w1);
	fill_pattern(first + HDR, SMALL, 1);
	nbd_encode_request(first + HDR + SMALL, false, &w2);
	memcpy(first + 2 * HDR + SMALL, big, 4096);
	send_all(s.client_fd, first, sizeof(first)); /* and no more, for now */

	p = (struct pollfd){ .fd = s.client_fd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(cookie, 1);

	send_all(s.client_fd, big + 4096, BIG - 4096);
	assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(cookie, 2);
	assert_memory_equal(the_disk.data, first + HDR, SMALL);
	assert_memory_equal(the_disk.data + 4096, big, BIG);
	assert_int_equal(stop(&s), 0);
}

/* The polling window: grows while requests come soon, stops after a lull. */
static void test_poll_window(void **state)
{
	assert_int_equal(conn_poll_next(0, 10, 32), 4);  /* a short sleep */
	assert_int_equal(conn_poll_next(4, 10, 32), 8);
	assert_int_equal(conn_poll_next(16, 32, 32), 32);
	assert_int_equal(conn_poll_next(32, 10, 32), 32); /* never past max */
	assert_int_equal(conn_poll_next(8, 0, 32), 8);    /* caught: keep */
	assert_int_equal(conn_poll_next(1000, 0, 32), 32); /* limit lowered */
	assert_int_equal(conn_poll_next(8, 33, 32), 0);   /* a lull: stop */
	assert_int_equal(conn_poll_next(8, 10, 0), 0);    /* turned off */
	assert_int_equal(conn_poll_next(0, 1, 2), 2);
	assert_int_equal(nbdd_set_poll_max(NBDD_POLL_MAX_LIMIT + 1), -EINVAL);
}

static void disc_drains_and_flushes(enum exec how);

/*
 * With polling on, every path (inline, workers, asynchronous) still
 * answers every request, and a disconnect still drains and flushes.
 */
static void test_polling_serves(void **state)
{
	assert_int_equal(nbdd_set_poll_max(200), 0);
	pipelined(INLINE);
	write_then_read(INLINE);
	pipelined(WORKERS);
	pipelined(ASYNC);
	disc_drains_and_flushes(INLINE);
}

/* Whatever failed, the tests after it run without polling. */
static int polling_off(void **state)
{
	return nbdd_set_poll_max(0);
}

/* A refused write has its payload drained; the next request still works. */
static void test_invalid_write_keeps_sync(void **state)
{
	struct server s;
	uint8_t out[4096], in[4096];
	uint64_t cookie;

	start(&s, INLINE, CONN_KERNEL, false, false);
	memset(out, 0xab, sizeof(out));
	/* straddles the end of the disk */
	send_req(s.client_fd, false, NBD_CMD_WRITE, 0, 1, DISK_SIZE - 1024,
		 4096, out);
	assert_int_not_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(cookie, 1);
	send_req(s.client_fd, false, NBD_CMD_READ, 0, 2, DISK_SIZE - 4096,
		 4096, NULL);
	assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(cookie, 2);
	recv_all(s.client_fd, in, sizeof(in));
	memset(out, 0, sizeof(out));
	assert_memory_equal(in, out, sizeof(in)); /* nothing was written */
	assert_int_equal(the_disk.writes, 0);
	assert_int_equal(stop(&s), 0);
}

static uint32_t read_at(int fd, uint64_t cookie, uint64_t off)
{
	uint8_t in[4096];
	uint64_t got;
	uint32_t err;

	send_req(fd, false, NBD_CMD_READ, 0, cookie, off, sizeof(in), NULL);
	err = recv_simple(fd, &got);
	assert_int_equal(got, cookie);
	if (err == 0)
		recv_all(fd, in, sizeof(in));
	return err;
}

/*
 * A resize reaches the kernel, so its connections follow the export's
 * size both ways; a network client keeps the size it was told, but
 * never past the end a shrink left.
 */
static void size_follows(enum conn_mode mode)
{
	struct server s;

	start(&s, INLINE, mode, false, false);
	assert_int_equal(nbdd_export_resize(s.e, DISK_SIZE / 2), 0);
	assert_int_equal(read_at(s.client_fd, 1, DISK_SIZE / 2), NBD_EINVAL);
	assert_int_equal(read_at(s.client_fd, 2, DISK_SIZE / 2 - 4096), 0);
	assert_int_equal(nbdd_export_resize(s.e, 2 * DISK_SIZE), 0);
	assert_int_equal(read_at(s.client_fd, 3, DISK_SIZE - 4096), 0);
	assert_int_equal(read_at(s.client_fd, 4, DISK_SIZE),
			 mode == CONN_KERNEL ? 0 : NBD_EINVAL);
	assert_int_equal(stop(&s), 0);
}

static void test_kernel_size_follows_resize(void **state)
{
	size_follows(CONN_KERNEL);
}

static void test_network_size_stays_negotiated(void **state)
{
	size_follows(CONN_NETWORK);
}

/* A write above the payload limit: refused, drained, connection lives. */
static void test_oversized_payload(void **state)
{
	size_t big = NBDD_MAX_PAYLOAD + 4096;
	uint8_t *out = calloc(1, big);
	struct server s;
	uint64_t cookie;

	assert_non_null(out);
	start(&s, INLINE, CONN_KERNEL, false, false);
	send_req(s.client_fd, false, NBD_CMD_WRITE, 0, 5, 0, big, NULL);
	send_all(s.client_fd, out, big);
	assert_int_not_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(cookie, 5);
	send_req(s.client_fd, false, NBD_CMD_FLUSH, 0, 6, 0, 0, NULL);
	assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(cookie, 6);
	assert_int_equal(the_disk.writes, 0);
	assert_int_equal(stop(&s), 0);
	free(out);
}

/* Garbage where a request header should be: hard disconnect. */
static void test_bad_magic_disconnects(void **state)
{
	uint8_t junk[NBD_SIMPLE_REQUEST_SIZE];
	struct server s;
	char c;

	start(&s, INLINE, CONN_KERNEL, false, false);
	memset(junk, 0x5a, sizeof(junk));
	send_all(s.client_fd, junk, sizeof(junk));
	assert_int_equal(read(s.client_fd, &c, 1), 0); /* EOF */
	assert_int_equal(stop(&s), -EPROTO);
}

/* Backend errors reach the client as the matching NBD error. */
static void test_backend_error_mapping(void **state)
{
	static const struct {
		int err;
		uint32_t wire;
	} cases[] = {
		{ -EIO, NBD_EIO },       { -ENOSPC, NBD_ENOSPC },
		{ -EPERM, NBD_EPERM },   { -ENOMEM, NBD_ENOMEM },
		{ -EINVAL, NBD_EINVAL }, { -ESTALE, NBD_EIO },
	};
	struct server s;
	uint64_t cookie;
	size_t i;

	start(&s, INLINE, CONN_KERNEL, false, false);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		the_disk.fail_read = cases[i].err;
		send_req(s.client_fd, false, NBD_CMD_READ, 0, i, 0, 512, NULL);
		assert_int_equal(recv_simple(s.client_fd, &cookie),
				 cases[i].wire);
		assert_int_equal(cookie, i);
	}
	assert_int_equal(stop(&s), 0);
}

/* DISC: in-flight requests are answered, then written data is flushed. */
static void disc_drains_and_flushes(enum exec how)
{
	enum { N = 16 };
	struct server s;
	uint8_t out[4096];
	uint64_t cookie;
	int i;
	char c;

	start(&s, how, CONN_KERNEL, false, false);
	the_disk.slow_us = 5000;
	memset(out, 0x42, sizeof(out));
	for (i = 0; i < N; i++)
		send_req(s.client_fd, false, NBD_CMD_WRITE, 0, (uint64_t)i,
			 (uint64_t)i * 4096, 4096, out);
	send_req(s.client_fd, false, NBD_CMD_DISC, 0, 99, 0, 0, NULL);
	for (i = 0; i < N; i++)
		assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(read(s.client_fd, &c, 1), 0); /* then EOF */
	assert_int_equal(stop(&s), 0);
	assert_int_equal(the_disk.writes, N);
	assert_true(the_disk.flushes >= 1);
}

static void test_disc_drains_and_flushes(void **state)
{
	disc_drains_and_flushes(WORKERS);
}

static void test_disc_drains_async(void **state)
{
	disc_drains_and_flushes(ASYNC);
}

/* Statistics count requests, bytes and errors per operation. */
static void test_stats(void **state)
{
	struct nbdd_conn_stats st;
	uint8_t out[1024] = { 0 }, in[1024];
	struct server s;
	uint64_t cookie;

	start(&s, INLINE, CONN_KERNEL, false, false);
	send_req(s.client_fd, false, NBD_CMD_WRITE, 0, 1, 0, 1024, out);
	send_req(s.client_fd, false, NBD_CMD_READ, 0, 2, 0, 1024, NULL);
	send_req(s.client_fd, false, NBD_CMD_READ, 0, 3, DISK_SIZE, 1024, NULL);
	assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
	recv_all(s.client_fd, in, sizeof(in));
	assert_int_not_equal(recv_simple(s.client_fd, &cookie), 0);
	conn_stats(s.conn, &st);
	assert_int_equal(st.op[NBDD_OP_WRITE].requests, 1);
	assert_int_equal(st.op[NBDD_OP_WRITE].bytes, 1024);
	assert_int_equal(st.op[NBDD_OP_READ].requests, 2);
	assert_int_equal(st.op[NBDD_OP_READ].errors, 1);
	assert_int_equal(st.op[NBDD_OP_READ].bytes, 1024); /* not the refused */
	assert_int_equal(st.in_flight, 0);
	assert_int_equal(stop(&s), 0);
}

/* Structured replies: a read is one OFFSET_DATA chunk flagged DONE. */
static void test_structured_read(void **state)
{
	struct server s;
	struct chunk c;

	start(&s, INLINE, CONN_NETWORK, true, false);
	fill_pattern(the_disk.data + 4096, 1024, 9);
	send_req(s.client_fd, false, NBD_CMD_READ, 0, 7, 4096, 1024, NULL);
	recv_chunk(s.client_fd, false, &c);
	assert_int_equal(c.cookie, 7);
	assert_int_equal(c.type, NBD_REPLY_TYPE_OFFSET_DATA);
	assert_int_equal(c.flags, NBD_REPLY_FLAG_DONE);
	assert_int_equal(c.length, 8 + 1024);
	assert_int_equal(nbd_get64(c.payload), 4096);
	assert_memory_equal(c.payload + 8, the_disk.data + 4096, 1024);
	assert_int_equal(stop(&s), 0);
}

/* A large read over a hole: a data chunk, then a hole chunk, then DONE. */
static void test_structured_sparse_read(void **state)
{
	struct server s;
	struct chunk c;

	start(&s, INLINE, CONN_NETWORK, true, false);
	/* the second MiB onwards is a hole */
	the_disk.hole_from = 1u << 20;
	send_req(s.client_fd, false, NBD_CMD_READ, 0, 8, (1u << 20) - 65536,
		 262144, NULL);
	recv_chunk(s.client_fd, false, &c);
	assert_int_equal(c.type, NBD_REPLY_TYPE_OFFSET_DATA);
	assert_int_equal(c.flags, 0);
	assert_int_equal(c.length, 8 + 65536);
	recv_chunk(s.client_fd, false, &c);
	assert_int_equal(c.type, NBD_REPLY_TYPE_OFFSET_HOLE);
	assert_int_equal(c.flags, NBD_REPLY_FLAG_DONE);
	assert_int_equal(nbd_get64(c.payload), 1u << 20);
	assert_int_equal(nbd_get32(c.payload + 8), 262144 - 65536);
	/* DF asks for one data chunk even over a hole */
	send_req(s.client_fd, false, NBD_CMD_READ, NBD_CMD_FLAG_DF, 9,
		 (1u << 20) - 65536, 262144, NULL);
	recv_chunk(s.client_fd, false, &c);
	assert_int_equal(c.type, NBD_REPLY_TYPE_OFFSET_DATA);
	assert_int_equal(c.flags, NBD_REPLY_FLAG_DONE);
	assert_int_equal(c.length, 8 + 262144);
	assert_int_equal(stop(&s), 0);
}

/* Block status, in the structured and in the extended form. */
static void block_status(bool ext)
{
	struct server s;
	struct chunk c;
	const uint8_t *d;

	start(&s, INLINE, CONN_NETWORK, true, ext);
	the_disk.hole_from = 1u << 20;
	send_req(s.client_fd, ext, NBD_CMD_BLOCK_STATUS, 0, 3, 0, 2u << 20,
		 NULL);
	recv_chunk(s.client_fd, ext, &c);
	assert_int_equal(c.cookie, 3);
	assert_int_equal(c.flags, NBD_REPLY_FLAG_DONE);
	assert_int_equal(nbd_get32(c.payload), NBDD_META_ID_BASE_ALLOCATION);
	if (ext) {
		assert_int_equal(c.type, NBD_REPLY_TYPE_BLOCK_STATUS_EXT);
		assert_int_equal(nbd_get32(c.payload + 4), 2);
		d = c.payload + 8;
		assert_int_equal(nbd_get64(d), 1u << 20);
		assert_int_equal(nbd_get64(d + 8), 0);
		assert_int_equal(nbd_get64(d + 16), 1u << 20);
		assert_int_equal(nbd_get64(d + 24),
				 NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO);
	} else {
		assert_int_equal(c.type, NBD_REPLY_TYPE_BLOCK_STATUS);
		assert_int_equal(c.length, 4 + 2 * 8);
		d = c.payload + 4;
		assert_int_equal(nbd_get32(d), 1u << 20);
		assert_int_equal(nbd_get32(d + 4), 0);
		assert_int_equal(nbd_get32(d + 8), 1u << 20);
		assert_int_equal(nbd_get32(d + 12),
				 NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO);
	}
	/* REQ_ONE: exactly one descriptor */
	send_req(s.client_fd, ext, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE,
		 4, 0, 2u << 20, NULL);
	recv_chunk(s.client_fd, ext, &c);
	assert_int_equal(c.length, ext ? 8 + 16 : 4 + 8);
	assert_int_equal(stop(&s), 0);
}

static void test_block_status_structured(void **state)
{
	block_status(false);
}

static void test_block_status_extended(void **state)
{
	block_status(true);
}

/* Extended headers: even a write is answered with an extended chunk. */
static void test_extended_write_reply(void **state)
{
	uint8_t out[512];
	struct server s;
	struct chunk c;

	start(&s, INLINE, CONN_NETWORK, true, true);
	memset(out, 0x11, sizeof(out));
	send_req(s.client_fd, true, NBD_CMD_WRITE, NBD_CMD_FLAG_PAYLOAD_LEN, 21,
		 512, 512, out);
	recv_chunk(s.client_fd, true, &c);
	assert_int_equal(c.cookie, 21);
	assert_int_equal(c.type, NBD_REPLY_TYPE_NONE);
	assert_int_equal(c.flags, NBD_REPLY_FLAG_DONE);
	assert_memory_equal(the_disk.data + 512, out, 512);
	/* an error on a structured connection is an error chunk */
	send_req(s.client_fd, true, NBD_CMD_READ, 0, 22, DISK_SIZE, 512, NULL);
	recv_chunk(s.client_fd, true, &c);
	assert_int_equal(c.type, NBD_REPLY_TYPE_ERROR);
	assert_int_not_equal(nbd_get32(c.payload), 0);
	assert_int_equal(stop(&s), 0);
}

/* Extended headers: a payload over the limit is a hard disconnect. */
static void test_extended_huge_payload_disconnects(void **state)
{
	struct server s;
	char c;

	start(&s, INLINE, CONN_NETWORK, true, true);
	send_req(s.client_fd, true, NBD_CMD_WRITE, NBD_CMD_FLAG_PAYLOAD_LEN, 1,
		 0, 1ull << 40, NULL);
	assert_int_equal(read(s.client_fd, &c, 1), 0);
	assert_int_equal(stop(&s), -EPROTO);
	assert_int_equal(the_disk.writes, 0);
}

/*
 * Asynchronous errors: one that ends a request and one refused at
 * submission each fail that request only, with the matching NBD error.
 */
static void test_async_errors(void **state)
{
	uint8_t out[512] = { 0 };
	struct server s;
	uint64_t cookie;

	start(&s, ASYNC, CONN_KERNEL, false, false);
	the_disk.fail_read = -ENOSPC;
	assert_int_equal(read_at(s.client_fd, 1, 0), NBD_ENOSPC);
	assert_int_equal(read_at(s.client_fd, 2, 0), NBD_ENOSPC);
	the_disk.fail_read = 0;
	the_disk.fail_submit = -EPERM;
	send_req(s.client_fd, false, NBD_CMD_WRITE, 0, 3, 0, 512, out);
	assert_int_equal(recv_simple(s.client_fd, &cookie), NBD_EPERM);
	assert_int_equal(cookie, 3);
	the_disk.fail_submit = 0;
	assert_int_equal(read_at(s.client_fd, 4, 0), 0);
	assert_int_equal(stop(&s), 0);
}

/* FUA the backend lacks: the reply comes after a flush that followed. */
static void test_async_fua_flushes_first(void **state)
{
	uint8_t out[512] = { 1 };
	struct server s;
	uint64_t cookie;

	start(&s, ASYNC, CONN_KERNEL, false, false);
	send_req(s.client_fd, false, NBD_CMD_WRITE, 0, 1, 0, 512, out);
	assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(the_disk.flushes, 0);
	send_req(s.client_fd, false, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 2, 512,
		 512, out);
	assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
	assert_int_equal(cookie, 2);
	assert_int_equal(the_disk.flushes, 1);
	assert_int_equal(the_disk.writes, 2);
	assert_int_equal(stop(&s), 0);
}

/*
 * A client that stops reading: every request still ends, and no thread
 * of the backend's is kept waiting on the full socket (they all return
 * while nothing is read). Read later, every reply is whole and in sync.
 */
static void test_async_stalled_client(void **state)
{
	enum { N = 64, LEN = DISK_SIZE / N };
	static uint8_t in[LEN], want[LEN];
	bool seen[N] = { false };
	uint64_t cookie, deadline;
	struct server s;
	int i;

	start(&s, ASYNC, CONN_KERNEL, false, false);
	for (i = 0; i < N; i++)
		fill_pattern(the_disk.data + (size_t)i * LEN, LEN, (unsigned)i);
	for (i = 0; i < N; i++)
		send_req(s.client_fd, false, NBD_CMD_READ, 0, (uint64_t)i,
			 (uint64_t)i * LEN, LEN, NULL);
	/* The whole disk in replies: far more than the socket holds. */
	deadline = now_ms() + 10000;
	while (atomic_load(&the_disk.aio_ended) < N) {
		assert_true(now_ms() < deadline);
		usleep(1000);
	}
	for (i = 0; i < N; i++) {
		assert_int_equal(recv_simple(s.client_fd, &cookie), 0);
		assert_true(cookie < N);
		assert_false(seen[cookie]);
		seen[cookie] = true;
		recv_all(s.client_fd, in, LEN);
		fill_pattern(want, LEN, (unsigned)cookie);
		assert_memory_equal(in, want, LEN);
	}
	assert_int_equal(stop(&s), 0);
}

/*
 * Operations without an .aio_ callback (block status here) run on the
 * workers while reads are asynchronous; their replies share one queue.
 */
static void test_async_mixed_with_workers(void **state)
{
	struct server s;
	struct chunk c;
	bool seen[4] = { false };
	int i;

	start(&s, ASYNC, CONN_NETWORK, true, false);
	the_disk.hole_from = 1u << 20;
	the_disk.slow_us = 2000;
	fill_pattern(the_disk.data, 1024, 5);
	send_req(s.client_fd, false, NBD_CMD_READ, 0, 1, 0, 1024, NULL);
	send_req(s.client_fd, false, NBD_CMD_BLOCK_STATUS, 0, 2, 0, 2u << 20,
		 NULL);
	send_req(s.client_fd, false, NBD_CMD_READ, 0, 3, 0, 1024, NULL);
	for (i = 0; i < 3; i++) {
		recv_chunk(s.client_fd, false, &c);
		assert_true(c.cookie >= 1 && c.cookie <= 3);
		assert_false(seen[c.cookie]);
		seen[c.cookie] = true;
		assert_int_equal(c.flags, NBD_REPLY_FLAG_DONE);
		if (c.cookie == 2) {
			assert_int_equal(c.type, NBD_REPLY_TYPE_BLOCK_STATUS);
			assert_int_equal(c.length, 4 + 2 * 8);
		} else {
			assert_int_equal(c.type, NBD_REPLY_TYPE_OFFSET_DATA);
			assert_int_equal(c.length, 8 + 1024);
			assert_memory_equal(c.payload + 8, the_disk.data, 1024);
		}
	}
	assert_int_equal(stop(&s), 0);
}

/* conn_shutdown() from another thread ends conn_run() cleanly. */
static void test_shutdown(void **state)
{
	struct server s;

	start(&s, WORKERS, CONN_KERNEL, false, false);
	conn_shutdown(s.conn);
	pthread_join(s.thread, NULL);
	assert_int_equal(s.result, 0);
	close(s.client_fd);
	conn_free(s.conn);
	free(the_disk.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_read_inline),
		cmocka_unit_test(test_write_read_workers),
		cmocka_unit_test(test_write_read_async),
		cmocka_unit_test(test_pipelined_inline),
		cmocka_unit_test(test_pipelined_workers),
		cmocka_unit_test(test_pipelined_async),
		cmocka_unit_test(test_async_send_buffer),
		cmocka_unit_test(test_poll_window),
		cmocka_unit_test_teardown(test_polling_serves, polling_off),
		cmocka_unit_test(test_replies_leave_before_large_payload),
		cmocka_unit_test(test_invalid_write_keeps_sync),
		cmocka_unit_test(test_kernel_size_follows_resize),
		cmocka_unit_test(test_network_size_stays_negotiated),
		cmocka_unit_test(test_oversized_payload),
		cmocka_unit_test(test_bad_magic_disconnects),
		cmocka_unit_test(test_backend_error_mapping),
		cmocka_unit_test(test_disc_drains_and_flushes),
		cmocka_unit_test(test_disc_drains_async),
		cmocka_unit_test(test_async_errors),
		cmocka_unit_test(test_async_fua_flushes_first),
		cmocka_unit_test(test_async_stalled_client),
		cmocka_unit_test(test_async_mixed_with_workers),
		cmocka_unit_test(test_stats),
		cmocka_unit_test(test_structured_read),
		cmocka_unit_test(test_structured_sparse_read),
		cmocka_unit_test(test_block_status_structured),
		cmocka_unit_test(test_block_status_extended),
		cmocka_unit_test(test_extended_write_reply),
		cmocka_unit_test(test_extended_huge_payload_disconnects),
		cmocka_unit_test(test_shutdown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
