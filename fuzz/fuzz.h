/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the fuzz targets share.
 *
 * Each fuzz/targets/NAME.c defines
 *
 *     int fuzz_one(const uint8_t *data, size_t size);
 *
 * and keeps every other file-scope name prefixed with NAME, because the
 * same files are built two ways:
 *  - with libFuzzer's main (fuzz/libfuzzer.c), one binary per target;
 *  - all together in tests/unit/test_fuzz_regressions.c, which includes
 *    each target with fuzz_one renamed and replays fuzz/corpus/NAME and
 *    fuzz/regressions/NAME, so every crash once found stays fixed under
 *    `make check` and `make check-asan`.
 *
 * A target calls FUZZ_CHECK() on what must hold whatever the input: a
 * broken promise aborts, and libFuzzer keeps the input as a crash.
 */
#ifndef NBDD_FUZZ_H
#define NBDD_FUZZ_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: broken promise: %s\n",        \
				__FILE__, __LINE__, #cond);                   \
			abort();                                              \
		}                                                             \
	} while (0)

/* A peer that hangs on to its end this long is a bug (a lost wakeup). */
#define FUZZ_PEER_DEADLINE_MS 20000

static inline uint64_t fuzz_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * The client side of a socketpair, on its own thread: it sends the fuzz
 * input, half-closes, and reads (and counts) whatever the server answers
 * until the server closes its end. Reading and writing are interleaved
 * with poll(), so a server that answers before it has read everything
 * never deadlocks against us.
 */
struct fuzz_peer {
	int fd;
	const uint8_t *data;
	size_t size;
	size_t received;
	pthread_t thread;
	/* optional: sees every byte the server sends, in order */
	void (*on_reply)(void *ctx, const uint8_t *p, size_t n);
	void *ctx;
};

static inline void *fuzz_peer_main(void *arg)
{
	struct fuzz_peer *p = arg;
	uint64_t deadline = fuzz_now_ms() + FUZZ_PEER_DEADLINE_MS;
	size_t sent = 0;
	bool wr_open = true;
	uint8_t sink[65536];
	ssize_t n;

	if (p->size == 0) {
		shutdown(p->fd, SHUT_WR);
		wr_open = false;
	}
	for (;;) {
		struct pollfd pfd = { .fd = p->fd,
				      .events = POLLIN | (wr_open ? POLLOUT : 0) };

		FUZZ_CHECK(fuzz_now_ms() < deadline); /* the server hung */
		if (poll(&pfd, 1, 100) < 0) {
			FUZZ_CHECK(errno == EINTR);
			continue;
		}
		if (wr_open && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
			n = send(p->fd, p->data + sent, p->size - sent,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				sent += (size_t)n;
			if ((n < 0 && errno != EAGAIN && errno != EINTR) ||
			    sent == p->size) {
				shutdown(p->fd, SHUT_WR);
				wr_open = false;
			}
		}
		if (pfd.revents & (POLLIN | POLLERR | POLLHUP)) {
			n = recv(p->fd, sink, sizeof(sink), MSG_DONTWAIT);
			if (n > 0) {
				p->received += (size_t)n;
				if (p->on_reply)
					p->on_reply(p->ctx, sink, (size_t)n);
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR))
				break; /* the server closed its end */
		}
	}
	return NULL;
}

/*
 * Make a socketpair, start the peer on sv[0] with @data and return the
 * server's end, or -1. Set p->on_reply (or NULL) before.
 */
static inline int fuzz_peer_start(struct fuzz_peer *p, const uint8_t *data,
				  size_t size)
{
	int sv[2];

	signal(SIGPIPE, SIG_IGN);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	p->fd = sv[0];
	p->data = data;
	p->size = size;
	p->received = 0;
	/* on_reply and ctx are the caller's to set before */
	if (pthread_create(&p->thread, NULL, fuzz_peer_main, p)) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	return sv[1];
}

/* After the server closed its end: wait for the peer and close ours. */
static inline void fuzz_peer_join(struct fuzz_peer *p)
{
	pthread_join(p->thread, NULL);
	close(p->fd);
}

/* Big-endian reads of fuzz input that may run short (missing bytes: 0). */
static inline uint64_t fuzz_take(const uint8_t **d, size_t *n, size_t bytes)
{
	uint64_t v = 0;

	while (bytes--) {
		v <<= 8;
		if (*n) {
			v |= **d;
			(*d)++;
			(*n)--;
		}
	}
	return v;
}

#endif /* NBDD_FUZZ_H */
