/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The nbd backend: another NBD server, reached through libnbd.
 *
 * A remote is a set of libnbd handles to the same export. Each handle
 * has a poller thread that drives its state machine (conn.c). The
 * backend's .aio_ callbacks (nbd.c) start a command with one of libnbd's
 * nbd_aio_* calls from nbdd's reader and return; the poller runs the
 * command's completion callback, which ends the request. The blocking
 * callbacks (cache, block status, and the flush at close) start the
 * same way and sleep until that callback wakes them. Many commands are
 * in flight on one handle at once, and the handle's lock is held only
 * while a command is queued or a reply is read. A lost connection is
 * connected again by the remote's reconnector thread.
 */
#ifndef NBDD_PLUGIN_NBD_REMOTE_H
#define NBDD_PLUGIN_NBD_REMOTE_H

#include <libnbd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <nbdd/backend.h>

#define MAX_CONNECTIONS 16

/* One libnbd handle and the thread that moves its state machine on. */
struct conn {
	struct nbd_handle *nbd;
	const char *uri; /* the remote's, for messages */
	unsigned index;  /* 1-based, for messages */
	int kick;        /* eventfd: wakes the poller */
	pthread_t poller;
	bool started;
	/*
	 * Held for reading from starting a command to its reply, and for
	 * writing while a lost connection is replaced (conn_reconnect()).
	 */
	pthread_rwlock_t use;
	atomic_bool dead;    /* no command can succeed on it any more */
	uint64_t retry_at;   /* CLOCK_MONOTONIC ns; the reconnector's alone */
	atomic_bool closing; /* conn_disconnect() waits for the poller */
	pthread_mutex_t lock; /* guards why, inflight */
	char why[200];        /* why it died; the first reason stays */
	/* Asynchronous commands started and not yet ended (conn_hold()). */
	unsigned inflight;
	pthread_cond_t drained; /* inflight reached 0 */
};

/* A command in flight and the worker thread waiting for it. */
struct request {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int err; /* errno from libnbd's completion callback */
	/* block status only: where the extents go */
	struct nbdd_extents *out;
	int add_err;
};

/* libnbd's message for this thread's last failed call, never NULL. */
static inline const char *libnbd_error(void)
{
	const char *msg = nbd_get_error();

	return msg && *msg ? msg : "unknown libnbd error";
}

/* A thread with every signal blocked; 0, or -errno with the reason said. */
int start_thread(pthread_t *t, void *(*fn)(void *), void *arg);

/* Fields and locks; dead until connected and started. */
void conn_init(struct conn *c, unsigned index, const char *uri);
/* Connect (blocking); on failure @why gets libnbd's reason. */
int conn_connect(struct conn *c, char *why, size_t size);
/* The poller: from here on @c serves requests. */
int conn_start(struct conn *c);
void conn_destroy(struct conn *c);
/*
 * Replace a dead connection by a new one to the same URI, which must
 * still have @size bytes. 0 when @c is live (again).
 */
int conn_reconnect(struct conn *c, uint64_t size);

/* The completion callback a request passes to nbd_aio_*(). */
nbd_completion_callback request_init(struct request *rq);
/* What a request was, for its error message. */
struct what {
	const char *op; /* "pread", "flush", ... */
	uint64_t count;
	uint64_t offset;
};

/*
 * Wait for the command behind @cookie (nbd_aio_*()'s return) and give
 * its result as 0 or -errno, with nbdd_backend_error() saying why it
 * failed. A connection that is gone fails every request with EIO.
 */
int request_finish(struct conn *c, struct request *rq, int64_t cookie,
		   struct what w);
/* The error of a request that found no live connection. */
int conn_lost_error(struct conn *c, struct what w);

/*
 * An asynchronous command (the .aio_ callbacks) holds its connection from
 * its start to its end, so that a reconnection does not replace the
 * handle under it: conn_hold() before nbd_aio_*(), conn_release() when
 * it has ended (or did not start).
 */
void conn_hold(struct conn *c);
void conn_release(struct conn *c);
/* After nbd_aio_*() queued a command: wake the poller if it must write. */
void conn_wake(struct conn *c);
/* The error of a command nbd_aio_*() did not queue (libnbd's reason). */
int request_not_started(struct conn *c, struct what w);
/* The error of a command that ended with @err (an errno, not 0). */
int request_failed(struct conn *c, int err, struct what w);

#endif
