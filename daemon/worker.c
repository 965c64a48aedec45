/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker thread: attach and detach block (opening a plugin, netlink,
 * flushing a backend, waiting for the kernel to drop its sockets), so
 * they run here, one at a time and in order, while the loop keeps
 * answering `list` and `status`. One thread rather than one per job:
 * mapping changes then happen in the order they were asked for.
 *
 * A finished job goes to a done list and an eventfd wakes the loop,
 * which calls job->done() there: replies and table updates stay on the
 * loop thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct job *todo_head, **todo_tail = &todo_head;
static struct job *done_head, **done_tail = &done_head;
static bool stopping, started;
static pthread_t thread;
static int done_fd = -1;
static struct loop_source done_src = { .fd = -1 };

static void push(struct job ***tail, struct job *j)
{
	j->next = NULL;
	**tail = j;
	*tail = &j->next;
}

static struct job *pop(struct job **head, struct job ***tail)
{
	struct job *j = *head;

	if (j) {
		*head = j->next;
		if (!*head)
			*tail = head;
	}
	return j;
}

/* A failed write means the counter is saturated: the loop wakes anyway. */
static void wake_loop(void)
{
	uint64_t one = 1;
	ssize_t n = write(done_fd, &one, sizeof(one));

	(void)n;
}

static void *worker_main(void *arg)
{
	struct job *j;

	pthread_mutex_lock(&lock);
	for (;;) {
		while (!todo_head && !stopping)
			pthread_cond_wait(&wake, &lock);
		j = pop(&todo_head, &todo_tail);
		if (!j)
			break; /* stopping, and nothing left */
		pthread_mutex_unlock(&lock);
		j->run(j);
		pthread_mutex_lock(&lock);
		push(&done_tail, j);
		wake_loop();
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

static void run_done(void)
{
	struct job *j;

	for (;;) {
		pthread_mutex_lock(&lock);
		j = pop(&done_head, &done_tail);
		pthread_mutex_unlock(&lock);
		if (!j)
			return;
		j->done(j);
	}
}

static void on_done(struct loop_source *s, uint32_t events)
{
	uint64_t n;

	if (read(s->fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_debug("worker eventfd: %s", strerror(errno));
	run_done();
}

int worker_start(void)
{
	int r;

	done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (done_fd < 0)
		return -errno;
	r = loop_add(&done_src, done_fd, EPOLLIN, on_done, NULL);
	if (r == 0)
		r = -pthread_create(&thread, NULL, worker_main, NULL);
	if (r < 0) {
		loop_remove(&done_src);
		close(done_fd);
		done_fd = -1;
		return r;
	}
	started = true;
	return 0;
}

void worker_submit(struct job *j)
{
	pthread_mutex_lock(&lock);
	push(&todo_tail, j);
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
}

void worker_stop(void)
{
	if (!started)
		return;
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	pthread_join(thread, NULL);
	started = false;
	run_done();
	loop_remove(&done_src);
	close(done_fd);
	done_fd = -1;
}
