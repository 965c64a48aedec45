/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One libnbd connection: the handle, its poller thread, and how a worker
 * thread waits for the command it started (an asynchronous command is
 * ended by its completion callback on the poller instead: nbd.c).
 *
 * libnbd creates no threads. The poller polls the handle's socket in the
 * direction libnbd wants plus an eventfd, and calls nbd_aio_notify_*();
 * completion callbacks then run on it and wake the waiting worker. A
 * worker kicks the eventfd only when its command could not be written
 * at once (libnbd then wants to write) or the handle died under it: in
 * every other case the poller is already waiting for the reply.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remote.h"

/* How long close waits for the server to hang up after NBD_CMD_DISC. */
#define DISCONNECT_TIMEOUT_MS 2000

/* Remember why @c died; the first reason is the one worth telling. */
static void conn_died(struct conn *c, const char *why)
{
	pthread_mutex_lock(&c->lock);
	if (!c->why[0])
		snprintf(c->why, sizeof(c->why), "%s",
			 why && *why ? why : "the server closed the connection");
	pthread_mutex_unlock(&c->lock);
	atomic_store(&c->dead, true);
}

static bool handle_gone(struct conn *c)
{
	return nbd_aio_is_dead(c->nbd) == 1 || nbd_aio_is_closed(c->nbd) == 1;
}

static void kick(struct conn *c)
{
	uint64_t one = 1;

	/* Only fails when the counter is saturated: the poller wakes anyway. */
	if (write(c->kick, &one, sizeof(one)) < 0)
		return;
}

/*
 * The poller cannot go on (poll itself failed): cut the socket and let
 * libnbd see it, so that it fails what is in flight rather than leaving
 * workers waiting for replies nobody will read.
 */
static void give_up(struct conn *c, int fd, const char *why)
{
	conn_died(c, why);
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
	if (nbd_aio_notify_read(c->nbd) == 0 && !handle_gone(c))
		(void)nbd_aio_notify_write(c->nbd);
}

static void *poller(void *arg)
{
	struct conn *c = arg;
	struct pollfd fds[2];
	unsigned dir;
	uint64_t n;
	int r;

	while (!handle_gone(c)) {
		bool closing = atomic_load(&c->closing);

		dir = nbd_aio_get_direction(c->nbd);
		fds[0] = (struct pollfd){.fd = nbd_aio_get_fd(c->nbd)};
		fds[1] = (struct pollfd){.fd = c->kick, .events = POLLIN};
		if (dir & LIBNBD_AIO_DIRECTION_READ)
			fds[0].events |= POLLIN;
		if (dir & LIBNBD_AIO_DIRECTION_WRITE)
			fds[0].events |= POLLOUT;
		r = poll(fds, 2, closing ? DISCONNECT_TIMEOUT_MS : -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			give_up(c, fds[0].fd, strerror(errno));
			break;
		}
		if (r == 0) /* closing, and the server did not hang up */
			break;
		/* Fails only when not kicked (EAGAIN): nothing to drain. */
		if ((fds[1].revents & POLLIN) &&
		    read(c->kick, &n, sizeof(n)) < 0)
			n = 0;
		/* Another thread may have moved the state machine meanwhile. */
		dir = nbd_aio_get_direction(c->nbd);
		r = 0;
		if ((dir & LIBNBD_AIO_DIRECTION_READ) &&
		    (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
			r = nbd_aio_notify_read(c->nbd);
		else if ((dir & LIBNBD_AIO_DIRECTION_WRITE) &&
			 (fds[0].revents & (POLLOUT | POLLHUP | POLLERR)))
			r = nbd_aio_notify_write(c->nbd);
		if (r < 0) {
			conn_died(c, libnbd_error());
			break;
		}
	}
	conn_died(c, NULL);
	return NULL;
}

void conn_init(struct conn *c, unsigned index, const char *uri)
{
	memset(c, 0, sizeof(*c));
	c->uri = uri;
	c->index = index;
	c->kick = -1;
	atomic_init(&c->dead, true);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->drained, NULL);
	pthread_rwlock_init(&c->use, NULL);
}

void conn_hold(struct conn *c)
{
	pthread_mutex_lock(&c->lock);
	c->inflight++;
	pthread_mutex_unlock(&c->lock);
}

void conn_release(struct conn *c)
{
	pthread_mutex_lock(&c->lock);
	if (--c->inflight == 0)
		pthread_cond_broadcast(&c->drained);
	pthread_mutex_unlock(&c->lock);
}

int conn_connect(struct conn *c, char *why, size_t size)
{
	int err;

	c->nbd = nbd_create();
	/*
	 * Whoever writes a backend spec is trusted as root is (SECURITY.md),
	 * so the URI may name a TLS PSK file or certificate directory.
	 */
	if (!c->nbd || nbd_set_uri_allow_local_file(c->nbd, true) < 0 ||
	    nbd_add_meta_context(c->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
	    nbd_set_request_block_size(c->nbd, true) < 0 ||
	    nbd_connect_uri(c->nbd, c->uri) < 0) {
		err = nbd_get_errno();
		snprintf(why, size, "%s", libnbd_error());
		nbd_close(c->nbd);
		c->nbd = NULL;
		return err > 0 ? -err : -EIO;
	}
	return 0;
}

int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int r;

	/* Signals are the daemon's business, not our threads'. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		nbdd_backend_error("nbd: cannot start a thread: %s",
				   strerror(r));
	return -r;
}

int conn_start(struct conn *c)
{
	int r;

	c->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->kick < 0) {
		r = -errno;
		nbdd_backend_error("nbd: eventfd: %s", strerror(errno));
		return r;
	}
	atomic_store(&c->closing, false);
	atomic_store(&c->dead, false);
	r = start_thread(&c->poller, poller, c);
	if (r) {
		atomic_store(&c->dead, true);
		return r;
	}
	c->started = true;
	return 0;
}

/*
 * Say goodbye (NBD_CMD_DISC), let the server hang up (boundedly), stop
 * the poller and free the handle; @c can connect again.
 */
static void conn_disconnect(struct conn *c)
{
	if (c->started) {
		atomic_store(&c->closing, true);
		/* Fails on a dead handle, which has nothing to say goodbye to. */
		(void)nbd_aio_disconnect(c->nbd, 0);
		kick(c);
		pthread_join(c->poller, NULL);
		c->started = false;
	}
	if (c->kick >= 0)
		close(c->kick);
	c->kick = -1;
	nbd_close(c->nbd);
	c->nbd = NULL;
	atomic_store(&c->dead, true);
}

void conn_destroy(struct conn *c)
{
	conn_disconnect(c);
	pthread_rwlock_destroy(&c->use);
	pthread_cond_destroy(&c->drained);
	pthread_mutex_destroy(&c->lock);
}

int conn_reconnect(struct conn *c, uint64_t size)
{
	char why[sizeof(c->why) - 32];
	int r = 0;

	/*
	 * Waits for the requests still on the dead handle: they fail fast.
	 * libnbd ends the asynchronous ones (their callbacks run) when it
	 * finds the handle dead, before the poller stops.
	 */
	pthread_rwlock_wrlock(&c->use);
	if (!atomic_load(&c->dead))
		goto out;
	pthread_mutex_lock(&c->lock);
	while (c->inflight)
		pthread_cond_wait(&c->drained, &c->lock);
	pthread_mutex_unlock(&c->lock);
	conn_disconnect(c);
	r = conn_connect(c, why, sizeof(why));
	if (!r && nbd_get_size(c->nbd) != (int64_t)size) {
		snprintf(why, sizeof(why), "it came back with another size");
		r = -EIO;
	}
	if (r) {
		/* What a request on it will say, until the next try. */
		pthread_mutex_lock(&c->lock);
		snprintf(c->why, sizeof(c->why), "connecting again: %s", why);
		pthread_mutex_unlock(&c->lock);
		conn_disconnect(c);
		goto out;
	}
	pthread_mutex_lock(&c->lock);
	c->why[0] = '\0';
	pthread_mutex_unlock(&c->lock);
	r = conn_start(c);
	if (r)
		conn_disconnect(c);
out:
	pthread_rwlock_unlock(&c->use);
	return r;
}

/* ---- requests ---- */

/* Runs on whichever thread libnbd completes the command in. */
static int request_done(void *opaque, int *error)
{
	struct request *rq = opaque;

	pthread_mutex_lock(&rq->lock);
	rq->err = *error;
	rq->done = true;
	pthread_cond_signal(&rq->cond);
	pthread_mutex_unlock(&rq->lock);
	return 1; /* retire the command: nobody asks for it by cookie */
}

nbd_completion_callback request_init(struct request *rq)
{
	memset(rq, 0, sizeof(*rq));
	pthread_mutex_init(&rq->lock, NULL);
	pthread_cond_init(&rq->cond, NULL);
	return (nbd_completion_callback){.callback = request_done,
					 .user_data = rq};
}

/* "pread of 4096 bytes at 8192", or "flush". */
static const char *describe(struct what w, char *buf, size_t size)
{
	if (!w.count)
		return w.op;
	snprintf(buf, size, "%s of %" PRIu64 " bytes at %" PRIu64, w.op,
		 w.count, w.offset);
	return buf;
}

int conn_lost_error(struct conn *c, struct what w)
{
	char why[sizeof(c->why)], what[80];

	pthread_mutex_lock(&c->lock);
	snprintf(why, sizeof(why), "%s",
		 c->why[0] ? c->why : "the server closed the connection");
	pthread_mutex_unlock(&c->lock);
	nbdd_backend_error("nbd: %s: connection %u to %s is lost (%s); a "
			   "later request connects again, at most once a "
			   "second",
			   describe(w, what, sizeof(what)), c->index, c->uri,
			   why);
	return -EIO;
}

static int request_error(struct conn *c, int err, const char *libnbd_msg,
			 struct what w)
{
	char buf[80];
	const char *what;

	/* libnbd fails what is in flight with ENOTCONN when the socket dies. */
	if (err == ENOTCONN || handle_gone(c)) {
		conn_died(c, libnbd_msg);
		return conn_lost_error(c, w);
	}
	what = describe(w, buf, sizeof(buf));
	if (libnbd_msg)
		nbdd_backend_error("nbd: %s: %s", what, libnbd_msg);
	else if (err == ESHUTDOWN)
		nbdd_backend_error("nbd: %s: the server is shutting down "
				   "(ESHUTDOWN)",
				   what);
	else
		nbdd_backend_error("nbd: %s: the server replied: %s", what,
				   strerror(err));
	return err > 0 ? -err : -EIO;
}

int request_not_started(struct conn *c, struct what w)
{
	char msg[sizeof(c->why)];
	int err = nbd_get_errno();

	/* Copied: the next libnbd call may replace it. */
	snprintf(msg, sizeof(msg), "%s", libnbd_error());
	return request_error(c, err > 0 ? err : EIO, msg, w);
}

int request_failed(struct conn *c, int err, struct what w)
{
	return request_error(c, err, NULL, w);
}

void conn_wake(struct conn *c)
{
	if ((nbd_aio_get_direction(c->nbd) & LIBNBD_AIO_DIRECTION_WRITE) ||
	    handle_gone(c))
		kick(c);
}

int request_finish(struct conn *c, struct request *rq, int64_t cookie,
		   struct what w)
{
	int err;

	if (cookie < 0) {
		/* Not queued: the completion callback will never run. */
		err = request_not_started(c, w);
		goto out;
	}
	conn_wake(c);
	pthread_mutex_lock(&rq->lock);
	while (!rq->done)
		pthread_cond_wait(&rq->cond, &rq->lock);
	err = rq->err;
	pthread_mutex_unlock(&rq->lock);
	if (err)
		err = request_error(c, err, NULL, w);
	else if (rq->add_err)
		err = rq->add_err; /* nbdd_extents_add()'s, said in nbd.c */
out:
	pthread_cond_destroy(&rq->cond);
	pthread_mutex_destroy(&rq->lock);
	return err;
}
