/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One epoll loop for the control socket and its clients, the network
 * listeners, signals, the worker's completions and the mappings' event
 * fds. Everything it calls is non-blocking, so no client can hold up
 * another.
 *
 * A source is embedded in its owner. Only the loop thread adds, changes
 * or removes sources, and a handler frees nothing but its own source,
 * so an event later in the same batch never points at freed memory.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "daemon.h"

#define LOOP_BATCH 32

static int epfd = -1;
static bool quitting;

int loop_init(void)
{
	epfd = epoll_create1(EPOLL_CLOEXEC);
	return epfd < 0 ? -errno : 0;
}

void loop_free(void)
{
	if (epfd >= 0)
		close(epfd);
	epfd = -1;
}

int loop_add(struct loop_source *s, int fd, uint32_t events, loop_fn fn,
	     void *opaque)
{
	struct epoll_event ev = { .events = events, .data.ptr = s };

	s->fd = fd;
	s->events = events;
	s->fn = fn;
	s->opaque = opaque;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		s->fd = -1;
		return -errno;
	}
	return 0;
}

int loop_modify(struct loop_source *s, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = s };

	if (s->fd < 0 || s->events == events)
		return 0;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev) < 0)
		return -errno;
	s->events = events;
	return 0;
}

void loop_remove(struct loop_source *s)
{
	if (s->fd < 0)
		return;
	epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
	s->fd = -1;
}

int loop_dispatch(int timeout_ms)
{
	struct epoll_event ev[LOOP_BATCH];
	int n, i;

	n = epoll_wait(epfd, ev, LOOP_BATCH, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (i = 0; i < n; i++) {
		struct loop_source *s = ev[i].data.ptr;

		s->fn(s, ev[i].events);
	}
	return n;
}

void loop_quit(void)
{
	quitting = true;
}

bool loop_quitting(void)
{
	return quitting;
}
