/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The scripted test client: see nbd_test_client.h. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nbd_test_client.h"
#include "proto/wire.h"

static long long tc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int tc_wait(int fd, short events, long long deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	long long left;
	int r;

	for (;;) {
		left = deadline - tc_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

int tc_read(int fd, void *buf, size_t len)
{
	long long deadline = tc_now_ms() + TC_TIMEOUT_MS;
	char *p = buf;
	ssize_t n;
	int r;

	while (len) {
		r = tc_wait(fd, POLLIN, deadline);
		if (r < 0)
			return r;
		n = recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int tc_write(int fd, const void *buf, size_t len)
{
	long long deadline = tc_now_ms() + TC_TIMEOUT_MS;
	const char *p = buf;
	ssize_t n;
	int r;

	while (len) {
		r = tc_wait(fd, POLLOUT, deadline);
		if (r < 0)
			return r;
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int tc_greeting(int fd, uint16_t *handshake_flags)
{
	uint8_t b[18];
	int r = tc_read(fd, b, sizeof(b));

	if (r < 0)
		return r;
	if (nbd_get64(b) != NBD_MAGIC || nbd_get64(b + 8) != NBD_IHAVEOPT)
		return -EPROTO;
	*handshake_flags = nbd_get16(b + 16);
	return 0;
}

int tc_send_client_flags(int fd, uint32_t flags)
{
	uint8_t b[4];

	nbd_put32(b, flags);
	return tc_write(fd, b, sizeof(b));
}

int tc_start(int fd)
{
	uint16_t hflags;
	int r = tc_greeting(fd, &hflags);

	if (r < 0)
		return r;
	return tc_send_client_flags(fd, NBD_FLAG_C_FIXED_NEWSTYLE |
						NBD_FLAG_C_NO_ZEROES);
}

int tc_send_option_raw(int fd, uint32_t opt, uint32_t len, const void *data,
		       size_t data_len)
{
	uint8_t h[16];
	int r;

	nbd_put64(h, NBD_IHAVEOPT);
	nbd_put32(h + 8, opt);
	nbd_put32(h + 12, len);
	r = tc_write(fd, h, sizeof(h));
	if (r == 0 && data_len)
		r = tc_write(fd, data, data_len);
	return r;
}

int tc_send_option(int fd, uint32_t opt, const void *data, uint32_t len)
{
	return tc_send_option_raw(fd, opt, len, data, len);
}

int tc_read_reply(int fd, struct tc_reply *r)
{
	uint8_t h[20];
	int ret;

	memset(r, 0, sizeof(*r));
	ret = tc_read(fd, h, sizeof(h));
	if (ret < 0)
		return ret;
	if (nbd_get64(h) != NBD_OPT_REPLY_MAGIC)
		return -EPROTO;
	r->opt = nbd_get32(h + 8);
	r->type = nbd_get32(h + 12);
	r->len = nbd_get32(h + 16);
	if (r->len > (1u << 20))
		return -E2BIG;
	r->data = calloc(1, (size_t)r->len + 1);
	if (!r->data)
		return -ENOMEM;
	ret = r->len ? tc_read(fd, r->data, r->len) : 0;
	if (ret < 0)
		tc_reply_free(r);
	return ret;
}

void tc_reply_free(struct tc_reply *r)
{
	free(r->data);
	r->data = NULL;
}

size_t tc_build_info(uint8_t *buf, const char *name, const uint16_t *reqs,
		     uint16_t nreqs)
{
	size_t n = strlen(name), i;

	nbd_put32(buf, (uint32_t)n);
	memcpy(buf + 4, name, n);
	nbd_put16(buf + 4 + n, nreqs);
	for (i = 0; i < nreqs; i++)
		nbd_put16(buf + 6 + n + 2 * i, reqs[i]);
	return 6 + n + 2 * (size_t)nreqs;
}

size_t tc_build_meta(uint8_t *buf, const char *name,
		     const char *const *queries, uint32_t nqueries)
{
	size_t n = strlen(name), pos, q;
	uint32_t i;

	nbd_put32(buf, (uint32_t)n);
	memcpy(buf + 4, name, n);
	nbd_put32(buf + 4 + n, nqueries);
	pos = 8 + n;
	for (i = 0; i < nqueries; i++) {
		q = strlen(queries[i]);
		nbd_put32(buf + pos, (uint32_t)q);
		memcpy(buf + pos + 4, queries[i], q);
		pos += 4 + q;
	}
	return pos;
}

bool tc_peer_closed(int fd)
{
	uint8_t sink[4096];
	long long deadline = tc_now_ms() + TC_TIMEOUT_MS;
	ssize_t n;

	/* Whatever the peer still had queued is read and dropped. */
	for (;;) {
		if (tc_wait(fd, POLLIN, deadline) < 0)
			return false;
		n = recv(fd, sink, sizeof(sink), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0 && errno != EINTR)
			return false;
	}
}
