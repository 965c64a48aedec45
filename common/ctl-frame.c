/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Line framing for the control socket. The buffer grows only up to the
 * line cap, so a peer that never sends '\n' costs at most CTL_MAX_LINE
 * bytes and is then told off, not buffered for ever.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"

#define LINEBUF_INITIAL 4096

void ctl_linebuf_init(struct ctl_linebuf *lb, size_t max)
{
	memset(lb, 0, sizeof(*lb));
	lb->max = max;
}

void ctl_linebuf_free(struct ctl_linebuf *lb)
{
	free(lb->buf);
	ctl_linebuf_init(lb, lb->max);
}

bool ctl_linebuf_partial(const struct ctl_linebuf *lb)
{
	size_t avail = lb->len - lb->start;

	return avail > 0 && !memchr(lb->buf + lb->start, '\n', avail);
}

/* One line of max bytes plus its '\n' always fits. */
static size_t linebuf_limit(const struct ctl_linebuf *lb)
{
	return lb->max + 1;
}

bool ctl_linebuf_room(const struct ctl_linebuf *lb)
{
	return lb->len - lb->start < linebuf_limit(lb);
}

/* Make room for more input: drop consumed bytes, grow up to the limit. */
static int linebuf_make_room(struct ctl_linebuf *lb)
{
	size_t want;
	char *p;

	if (lb->start > 0) {
		memmove(lb->buf, lb->buf + lb->start, lb->len - lb->start);
		lb->len -= lb->start;
		lb->start = 0;
	}
	if (lb->len < lb->cap)
		return 0;
	if (lb->cap >= linebuf_limit(lb))
		return -ENOBUFS;
	want = lb->cap ? lb->cap * 2 : LINEBUF_INITIAL;
	if (want > linebuf_limit(lb))
		want = linebuf_limit(lb);
	/* +1: room to NUL-terminate a line that fills the buffer */
	p = realloc(lb->buf, want + 1);
	if (!p)
		return -ENOMEM;
	lb->buf = p;
	lb->cap = want;
	return 0;
}

ssize_t ctl_linebuf_fill(struct ctl_linebuf *lb, int fd)
{
	ssize_t n;
	int r;

	r = linebuf_make_room(lb);
	if (r < 0)
		return r;
	do {
		n = read(fd, lb->buf + lb->len, lb->cap - lb->len);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	lb->len += (size_t)n;
	return n;
}

int ctl_linebuf_next(struct ctl_linebuf *lb, char **line, size_t *len)
{
	char *s, *nl;
	size_t avail = lb->len - lb->start, n;

	if (!lb->buf)
		return 0; /* nothing read yet (and NULL + 0 is undefined) */
	s = lb->buf + lb->start;

	nl = avail > lb->scan ? memchr(s + lb->scan, '\n', avail - lb->scan)
			      : NULL;
	if (!nl) {
		lb->scan = avail;
		return avail > lb->max ? -EMSGSIZE : 0;
	}
	n = (size_t)(nl - s);
	if (n > lb->max)
		return -EMSGSIZE;
	lb->start += n + 1;
	lb->scan = 0;
	if (n > 0 && s[n - 1] == '\r')
		n--;
	s[n] = '\0';
	*line = s;
	*len = n;
	return 1;
}

uint64_t ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait for @events until the deadline: 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int timeout = -1, r;

	for (;;) {
		if (deadline_ms) {
			uint64_t now = ctl_now_ms();

			if (now >= deadline_ms)
				return -ETIMEDOUT;
			timeout = (int)(deadline_ms - now);
		}
		r = poll(&p, 1, timeout);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

int ctl_connect(const char *path, int *fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;

		close(s);
		return err;
	}
	*fd = s;
	return 0;
}

int ctl_write_all(int fd, const char *buf, size_t len, uint64_t deadline_ms)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		int r;

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		r = wait_fd(fd, POLLOUT, deadline_ms);
		if (r < 0)
			return r;
	}
	return 0;
}

int ctl_read_line(int fd, struct ctl_linebuf *lb, char **line, size_t *len,
		  uint64_t deadline_ms)
{
	for (;;) {
		ssize_t n;
		int r = ctl_linebuf_next(lb, line, len);

		if (r != 0)
			return r;
		r = wait_fd(fd, POLLIN, deadline_ms);
		if (r < 0)
			return r;
		n = ctl_linebuf_fill(lb, fd);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0 && n != -EAGAIN)
			return (int)n;
	}
}
