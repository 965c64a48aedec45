/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One connection in transmission, shared by the reader and worker pool
 * (conn.c) and the asynchronous path (conn-async.c).
 */
#ifndef NBDD_PROTO_CONN_H
#define NBDD_PROTO_CONN_H

#include "proto/reply.h"

#define RBUF_SIZE   (256u * 1024)   /* one recv takes a burst of requests */
#define BATCH_FLUSH (256u * 1024)   /* send inline replies past this */
#define BUF_KEEP    (4u << 20)      /* larger scratch buffers are freed */
/* Backpressure for pipelining clients: requests and payload queued. */
#define MAX_QUEUED       256u
#define MAX_QUEUED_BYTES (64u << 20)
#define SEND_BUFFER      (4 << 20)  /* asynchronous connections' SO_SNDBUF */

struct job;  /* conn.c: a request queued for the workers */
struct areq; /* conn-async.c: a request inside an asynchronous backend */

struct op_counters {
	_Atomic uint64_t requests, bytes, errors;
};

struct conn {
	int fd;
	struct tls_session *tls; /* NULL: plain socket */
	enum conn_mode mode;
	struct nbdd_export *e;
	struct nbd_xmit_params xp; /* .size: the reader's, per request */
	uint64_t negotiated_size;  /* what a network client was told */
	size_t hdr_size;
	bool inline_exec;
	bool async;            /* the backend has .aio_ callbacks */

	/* reader thread only */
	uint8_t *rbuf;
	size_t rpos, rlen;     /* unread bytes are rbuf[rpos, rlen) */
	uint8_t *pbuf;         /* large inline write payloads */
	size_t pcap;
	struct outbuf batch;   /* inline replies not yet sent */
	unsigned poll_us;      /* how long to poll before sleeping */

	pthread_mutex_t wlock; /* one writer on the socket at a time */

	/*
	 * Requests on their way: the workers' queue and the asynchronous
	 * ones, with the reader waiting on qspace when either is full.
	 */
	pthread_mutex_t qlock;
	pthread_cond_t qwork;  /* a job was queued, or stop */
	pthread_cond_t qspace; /* a job ended, or a queued reply left */
	struct job *qhead, **qtail;
	unsigned queued;       /* queued or running */
	unsigned waiting;      /* queued, not yet picked up */
	uint64_t queued_bytes;
	unsigned nworkers, idle, max_workers;
	pthread_t *threads;
	bool qstop;
	/*
	 * Replies in the queue of an asynchronous connection, counted from
	 * the request's start (or a worker's or refusal's reply) until they
	 * left: at most max_workers of them started by the reader.
	 */
	unsigned aqueued;
	uint64_t abytes;       /* their buffers */

	/*
	 * Replies of asynchronous requests, sent by whichever thread ends a
	 * request while nobody else is sending, without blocking; when the
	 * socket is full the sender thread takes over and may block.
	 */
	pthread_mutex_t slock;
	pthread_cond_t swake;  /* the sender thread's turn, or stop */
	pthread_cond_t sidle;  /* nobody is sending any more */
	struct areq *shead, **stail;
	bool sending;          /* a thread owns the send queue */
	bool sender_turn;      /* ... and it is the sender thread */
	bool sstop;
	bool sender_started;
	pthread_t sender;

	atomic_bool shut;      /* conn_shutdown() was called */
	atomic_bool dead;      /* the socket failed: answer nothing more */
	atomic_bool dirty;     /* written since the last flush */
	_Atomic uint64_t in_flight;
	struct op_counters st[NBDD_OP__COUNT];
};

/* conn.c */
int conn_op_of(uint16_t nbd_cmd);  /* NBDD_OP_*, or -1 */
/*
 * The next polling window, after a sleep of @slept_us (0: the poll
 * caught the request) with the window @cur and the limit @max.
 */
unsigned conn_poll_next(unsigned cur, uint64_t slept_us, unsigned max);
uint32_t conn_call_flags(const struct nbd_request *r); /* NBDD_F_* */
void conn_count(struct conn *c, const struct nbd_request *r, bool failed);
/* The socket failed with @err: answer nothing more, wake the reader. */
void conn_mark_dead(struct conn *c, int err);
/* Copy @len payload bytes of the current request to @dst. */
int conn_take(struct conn *c, uint8_t *dst, size_t len);
/*
 * Have a worker flush the export and then async_flushed(@a): FUA for an
 * asynchronous write. Never blocks; -ENOMEM when no worker can run it.
 */
int conn_queue_flush(struct conn *c, struct areq *a);

/* conn-async.c */
int async_init(struct conn *c);
/*
 * Start a checked request whose .aio_ path export_can_submit() allows;
 * its reply is sent when it ends. Returns 0, or a negative errno when
 * the connection cannot go on (its payload could not be read).
 */
int async_submit(struct conn *c, const struct nbd_request *r,
		 enum nbdd_op op, uint64_t plen);
/*
 * Send @o (its buffer is taken over) through the reply queue: how every
 * reply leaves while the backend is asynchronous.
 */
void async_send(struct conn *c, struct outbuf *o);
/* With qlock held: must the reader wait before it queues more work? */
bool async_full(const struct conn *c);
/* A worker's flush for @a (conn_queue_flush) ended with @err. */
void async_flushed(struct areq *a, int err);
/*
 * Wait until every asynchronous request and every worker job has been
 * answered; then async_stop() stops the sender thread.
 */
void async_drain(struct conn *c);
void async_stop(struct conn *c);
void async_free(struct conn *c);

#endif /* NBDD_PROTO_CONN_H */
