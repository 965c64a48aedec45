/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The transmission phase: one engine for network clients and for the
 * kernel's sockets.
 *
 * A reader thread owns the socket's receive side. It decodes and checks
 * each request before any backend sees it, then:
 *  - inline backends (memory, null): runs the request itself and appends
 *    the reply to a batch, which goes out in one write when no further
 *    request is already waiting. Under load this is one recv and one
 *    send per burst of requests, and no thread hand-off at all;
 *  - blocking backends (files, plugins): queues the request for a small
 *    per-connection pool of workers, which answer in completion order,
 *    each reply in a single write under the socket's write lock;
 *  - asynchronous backends (.aio_ callbacks: rbd): starts the request
 *    itself and goes on reading; the thread that ends it sends the reply
 *    (conn-async.c). Operations without an .aio_ callback take the
 *    workers' path.
 * Payload of invalid requests is still read and dropped, so the stream
 * stays in sync and only that request fails.
 *
 * A network client may be on TLS (c->tls): the reader then receives
 * through the session and every send goes through it under wlock, as
 * gnutls allows one receiver and one sender at a time. The kernel's
 * sockets never are: for them it costs a branch, and nothing else.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/conn.h"
#include "proto/tls.h"

/* A request queued for the workers. */
struct job {
	struct job *next;
	struct nbd_request r;
	uint8_t *data; /* write payload */
	struct areq *flush_for; /* else: flush, then reply to this write */
};

static const char *const op_names[NBDD_OP__COUNT] = {
	[NBDD_OP_READ] = "read",   [NBDD_OP_WRITE] = "write",
	[NBDD_OP_FLUSH] = "flush", [NBDD_OP_TRIM] = "trim",
	[NBDD_OP_ZERO] = "zero",   [NBDD_OP_CACHE] = "cache",
	[NBDD_OP_BLOCK_STATUS] = "block-status",
};

NBDD_EXPORT const char *nbdd_op_name(enum nbdd_op op)
{
	return (unsigned)op < NBDD_OP__COUNT ? op_names[op] : "unknown";
}

int conn_op_of(uint16_t type)
{
	switch (type) {
	case NBD_CMD_READ: return NBDD_OP_READ;
	case NBD_CMD_WRITE: return NBDD_OP_WRITE;
	case NBD_CMD_FLUSH: return NBDD_OP_FLUSH;
	case NBD_CMD_TRIM: return NBDD_OP_TRIM;
	case NBD_CMD_WRITE_ZEROES: return NBDD_OP_ZERO;
	case NBD_CMD_CACHE: return NBDD_OP_CACHE;
	case NBD_CMD_BLOCK_STATUS: return NBDD_OP_BLOCK_STATUS;
	default: return -1;
	}
}

void conn_count(struct conn *c, const struct nbd_request *r, bool failed)
{
	int op = conn_op_of(r->type);

	if (op < 0)
		return;
	atomic_fetch_add_explicit(&c->st[op].requests, 1, memory_order_relaxed);
	/* Bytes moved, so a refused 2^64-byte trim inflates nothing. */
	if (op != NBDD_OP_FLUSH && !failed)
		atomic_fetch_add_explicit(&c->st[op].bytes, r->length,
					  memory_order_relaxed);
	if (failed)
		atomic_fetch_add_explicit(&c->st[op].errors, 1,
					  memory_order_relaxed);
}

/* ---- sending ---- */

void conn_mark_dead(struct conn *c, int err)
{
	if (!atomic_exchange(&c->dead, true)) {
		if (err != -EPIPE && err != -ECONNRESET)
			log_warning("%s: cannot send replies: %s",
				    nbdd_export_name(c->e), strerror(-err));
		/* Wake the reader: nobody is listening any more. */
		shutdown(c->fd, SHUT_RDWR);
	}
}

static void send_out(struct conn *c, struct outbuf *o)
{
	int r;

	if (!o->len)
		return;
	if (c->async) {
		async_send(c, o);
		return;
	}
	if (!atomic_load(&c->dead)) {
		pthread_mutex_lock(&c->wlock);
		if (c->tls)
			r = tls_write_full(c->tls, o->p, o->len, 0);
		else
			r = write_full(c->fd, o->p, o->len, 0);
		pthread_mutex_unlock(&c->wlock);
		if (r < 0)
			conn_mark_dead(c, r);
	}
	o->len = 0;
	if (o->cap > BUF_KEEP)
		outbuf_free(o);
}

/* ---- running one request ---- */

uint32_t conn_call_flags(const struct nbd_request *r)
{
	uint32_t f = 0;

	if (r->flags & NBD_CMD_FLAG_FUA)
		f |= NBDD_F_FUA;
	if (r->type == NBD_CMD_WRITE_ZEROES) {
		if (!(r->flags & NBD_CMD_FLAG_NO_HOLE))
			f |= NBDD_F_MAY_TRIM;
		if (r->flags & NBD_CMD_FLAG_FAST_ZERO)
			f |= NBDD_F_FAST;
	}
	return f;
}

/*
 * Run a checked request and append its reply to @o. Returns 0, or
 * -ENOMEM when no reply could be built (the connection then ends).
 */
static int exec_request(struct conn *c, const struct nbd_request *r,
			const uint8_t *data, struct outbuf *o)
{
	uint32_t f = conn_call_flags(r);
	int err = 0, ret;

	switch (r->type) {
	case NBD_CMD_READ:
		ret = reply_read(o, &c->xp, r, c->e, &err);
		conn_count(c, r, err);
		return ret;
	case NBD_CMD_BLOCK_STATUS:
		ret = reply_block_status(o, &c->xp, r, c->e, &err);
		conn_count(c, r, err);
		return ret;
	case NBD_CMD_WRITE:
		err = export_pwrite(c->e, data, (size_t)r->length, r->offset, f);
		break;
	case NBD_CMD_FLUSH:
		atomic_store(&c->dirty, false);
		err = export_flush(c->e);
		break;
	case NBD_CMD_TRIM:
		err = export_trim(c->e, r->length, r->offset, f);
		break;
	case NBD_CMD_WRITE_ZEROES:
		err = export_zero(c->e, r->length, r->offset, f);
		break;
	case NBD_CMD_CACHE:
		err = export_cache(c->e, r->length, r->offset);
		break;
	default:
		err = -EINVAL; /* nbd_check_request() let through a new type */
		break;
	}
	if (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_TRIM ||
	    r->type == NBD_CMD_WRITE_ZEROES)
		atomic_store(&c->dirty, true);
	conn_count(c, r, err);
	if (err)
		return reply_error(o, &c->xp, r, nbd_errno_to_wire(-err));
	return reply_ok(o, &c->xp, r);
}

/* ---- receiving ---- */

static void flush_batch(struct conn *c)
{
	send_out(c, &c->batch);
}

/* Up to @len bytes as recv(2) gives them, in plain text either way. */
static ssize_t receive(struct conn *c, void *buf, size_t len, bool nonblock)
{
	ssize_t n;

	if (c->tls) {
		n = tls_recv(c->tls, buf, len, nonblock);
		if (n >= 0)
			return n;
		errno = (int)-n;
		return -1;
	}
	return recv(c->fd, buf, len, nonblock ? MSG_DONTWAIT : 0);
}

/* ---- polling ---- */

static _Atomic unsigned poll_max_us;

NBDD_EXPORT int nbdd_set_poll_max(unsigned usec)
{
	if (usec > NBDD_POLL_MAX_LIMIT)
		return set_error(-EINVAL, "a polling time of %u us is over "
				 "the limit of %u us", usec,
				 NBDD_POLL_MAX_LIMIT);
	atomic_store(&poll_max_us, usec);
	return 0;
}

/*
 * As QEMU's event loops do (poll-max-ns): a request that came soon after
 * we gave up polling says a longer window would have caught it, so the
 * window doubles (from 4 us, up to @max); a long sleep says the peer is
 * not that busy, and polling stops until it is again.
 */
unsigned conn_poll_next(unsigned cur, uint64_t slept_us, unsigned max)
{
	if (!max || slept_us > max)
		return 0;
	if (!slept_us)
		return MIN(cur, max); /* the limit may have been lowered */
	return cur ? MIN(cur * 2, max) : MIN(4u, max);
}

/*
 * The batch of replies has left and no request is waiting: poll for one
 * within the window, else sleep in recv(2), and size the next window by
 * how long that took. Only the inline path gets here: there the reader
 * is the whole server, and its sleep the wake-up that polling saves.
 * (A batch sent because it grew past BATCH_FLUSH, large reads, is
 * followed by a plain blocking recv: the window stays as it was.)
 * Behind workers or an asynchronous backend the hand-offs remain, and
 * polling measured no gain (docs/performance.md).
 */
static ssize_t await_requests(struct conn *c, void *buf, size_t len)
{
	unsigned max = atomic_load_explicit(&poll_max_us, memory_order_relaxed);
	uint64_t start, until, slept;
	ssize_t n;
	int err;

	if (!max && !c->poll_us)
		return receive(c, buf, len, false);
	if (c->poll_us) {
		until = now_us() + c->poll_us;
		do {
			n = receive(c, buf, len, true);
			if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				c->poll_us = conn_poll_next(c->poll_us, 0, max);
				return n;
			}
		} while (now_us() < until);
	}
	start = now_us();
	n = receive(c, buf, len, false);
	err = errno;
	slept = now_us() - start;
	c->poll_us = conn_poll_next(c->poll_us, MAX(slept, 1u), max);
	errno = err;
	return n;
}

/*
 * Make at least @need (<= RBUF_SIZE) unread bytes available. Before
 * blocking, the pending batch is sent: replies leave as soon as there is
 * nothing more to do, and not a moment before.
 */
static int fill(struct conn *c, size_t need)
{
	ssize_t n;

	/* All consumed: the next recv gets the whole buffer, not its tail. */
	if (c->rpos == c->rlen)
		c->rpos = c->rlen = 0;
	while (c->rlen - c->rpos < need) {
		if (c->rpos + need > RBUF_SIZE) {
			memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
			c->rlen -= c->rpos;
			c->rpos = 0;
		}
		n = receive(c, c->rbuf + c->rlen, RBUF_SIZE - c->rlen,
			    c->batch.len != 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			flush_batch(c);
			n = await_requests(c, c->rbuf + c->rlen,
					   RBUF_SIZE - c->rlen);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		c->rlen += (size_t)n;
	}
	return 0;
}

/*
 * Copy @len payload bytes to @dst: first what is buffered, then the rest.
 * Before waiting for the rest, the inline replies made so far are sent:
 * a pipelining client would otherwise get none of them until it has
 * sent this whole payload, and its writes would go in lock-step.
 */
int conn_take(struct conn *c, uint8_t *dst, size_t len)
{
	size_t have = MIN(c->rlen - c->rpos, len);

	memcpy(dst, c->rbuf + c->rpos, have);
	c->rpos += have;
	if (len > have)
		flush_batch(c);
	if (len > have && c->tls)
		return tls_read_full(c->tls, dst + have, len - have, 0);
	if (len > have)
		return read_full(c->fd, dst + have, len - have, 0);
	return 0;
}

/* Read and drop the payload of a request we refuse. */
static int discard(struct conn *c, uint64_t len)
{
	size_t step;
	int r;

	while (len) {
		step = (size_t)MIN(len, (uint64_t)RBUF_SIZE);
		r = fill(c, step);
		if (r < 0)
			return r;
		c->rpos += step;
		len -= step;
	}
	return 0;
}

static int run_inline(struct conn *c, const struct nbd_request *r,
		      uint64_t plen)
{
	const uint8_t *data = NULL;
	uint8_t *p;
	int ret;

	if (plen && plen <= RBUF_SIZE) {
		ret = fill(c, (size_t)plen);
		if (ret < 0)
			return ret;
		data = c->rbuf + c->rpos;
		c->rpos += (size_t)plen;
	} else if (plen) {
		if (c->pcap < plen) {
			p = realloc(c->pbuf, (size_t)plen);
			if (!p)
				return -ENOMEM;
			c->pbuf = p;
			c->pcap = (size_t)plen;
		}
		ret = conn_take(c, c->pbuf, (size_t)plen);
		if (ret < 0)
			return ret;
		data = c->pbuf;
	}
	ret = exec_request(c, r, data, &c->batch);
	atomic_fetch_sub(&c->in_flight, 1);
	if (c->pcap > BUF_KEEP) {
		free(c->pbuf);
		c->pbuf = NULL;
		c->pcap = 0;
	}
	if (c->batch.len >= BATCH_FLUSH)
		flush_batch(c);
	return ret;
}

/* ---- worker pool ---- */

static void *worker_main(void *arg)
{
	struct conn *c = arg;
	struct outbuf o = { 0 };
	struct job *j;
	int r;

	/* Writes we serve may be what the kernel needs to reclaim memory. */
	if (c->mode == CONN_KERNEL)
		prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
	pthread_mutex_lock(&c->qlock);
	for (;;) {
		while (!c->qhead && !c->qstop) {
			c->idle++;
			pthread_cond_wait(&c->qwork, &c->qlock);
			c->idle--;
		}
		j = c->qhead;
		if (!j)
			break;
		c->qhead = j->next;
		c->waiting--;
		if (!c->qhead)
			c->qtail = &c->qhead;
		pthread_mutex_unlock(&c->qlock);

		if (j->flush_for) {
			async_flushed(j->flush_for, export_flush(c->e));
		} else {
			r = exec_request(c, &j->r, j->data, &o);
			if (r < 0)
				conn_mark_dead(c, r);
			send_out(c, &o);
			atomic_fetch_sub(&c->in_flight, 1);
		}

		pthread_mutex_lock(&c->qlock);
		c->queued--;
		c->queued_bytes -= j->r.type == NBD_CMD_WRITE ? j->r.length : 0;
		pthread_cond_broadcast(&c->qspace);
		free(j->data);
		free(j);
	}
	pthread_mutex_unlock(&c->qlock);
	outbuf_free(&o);
	return NULL;
}

/* Called with qlock held: one more worker unless one is free for the job. */
static void maybe_spawn(struct conn *c)
{
	if (c->idle > c->waiting || c->nworkers >= c->max_workers)
		return;
	if (pthread_create(&c->threads[c->nworkers], NULL, worker_main, c))
		return; /* the workers we have will get to it */
	c->nworkers++;
}

int conn_queue_flush(struct conn *c, struct areq *a)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->flush_for = a;
	pthread_mutex_lock(&c->qlock);
	maybe_spawn(c);
	if (c->nworkers == 0) { /* and none can start: no flush, no reply */
		pthread_mutex_unlock(&c->qlock);
		free(j);
		return -ENOMEM;
	}
	/* Not waited for: the backend's thread must not block here. */
	c->queued++;
	c->waiting++;
	*c->qtail = j;
	c->qtail = &j->next;
	pthread_cond_signal(&c->qwork);
	pthread_mutex_unlock(&c->qlock);
	return 0;
}

/* Run a job on the reader thread: the fallback when no worker starts. */
static int run_here(struct conn *c, struct job *j)
{
	struct outbuf o = { 0 };
	int r = exec_request(c, &j->r, j->data, &o);

	send_out(c, &o);
	outbuf_free(&o);
	atomic_fetch_sub(&c->in_flight, 1);
	free(j->data);
	free(j);
	return r;
}

static int enqueue(struct conn *c, const struct nbd_request *r, uint64_t plen)
{
	struct job *j = calloc(1, sizeof(*j));
	int ret = -ENOMEM;

	if (j) {
		j->r = *r;
		ret = 0;
	}
	if (j && plen) {
		j->data = malloc((size_t)plen);
		ret = j->data ? conn_take(c, j->data, (size_t)plen) : -ENOMEM;
	}
	if (ret < 0) { /* the connection ends: nothing more in flight */
		atomic_fetch_sub(&c->in_flight, 1);
		if (j)
			free(j->data);
		free(j);
		return ret;
	}
	pthread_mutex_lock(&c->qlock);
	maybe_spawn(c);
	if (c->nworkers == 0) {
		pthread_mutex_unlock(&c->qlock);
		return run_here(c, j);
	}
	while (c->queued >= MAX_QUEUED ||
	       (c->queued && c->queued_bytes + plen > MAX_QUEUED_BYTES) ||
	       (c->async && async_full(c)))
		pthread_cond_wait(&c->qspace, &c->qlock);
	c->queued++;
	c->waiting++;
	c->queued_bytes += plen;
	*c->qtail = j;
	c->qtail = &j->next;
	pthread_cond_signal(&c->qwork);
	pthread_mutex_unlock(&c->qlock);
	return 0;
}

static void stop_workers(struct conn *c)
{
	unsigned i;

	pthread_mutex_lock(&c->qlock);
	c->qstop = true;
	pthread_cond_broadcast(&c->qwork);
	pthread_mutex_unlock(&c->qlock);
	for (i = 0; i < c->nworkers; i++)
		pthread_join(c->threads[i], NULL);
	c->nworkers = 0;
}

/* ---- the reader loop ---- */

/* An invalid request: drop its payload and answer with @err. */
static int refuse(struct conn *c, const struct nbd_request *r, uint64_t plen,
		  uint32_t err)
{
	struct outbuf o = { 0 };
	int ret = discard(c, plen);

	if (ret < 0)
		return ret;
	conn_count(c, r, true);
	if (c->inline_exec) {
		ret = reply_error(&c->batch, &c->xp, r, err);
	} else {
		ret = reply_error(&o, &c->xp, r, err);
		send_out(c, &o);
		outbuf_free(&o);
	}
	atomic_fetch_sub(&c->in_flight, 1);
	return ret;
}

/*
 * The size requests are checked against. A resize reaches the kernel
 * with the export's new size, so its connections follow the export; a
 * network client was told a size and keeps it, but never past the end a
 * shrink left.
 */
static uint64_t current_size(struct conn *c)
{
	uint64_t now = nbdd_export_size(c->e);

	if (c->mode == CONN_KERNEL)
		return now;
	return MIN(now, c->negotiated_size);
}

static int serve_one(struct conn *c, const struct nbd_request *r)
{
	uint64_t plen = nbd_request_payload_len(r, c->xp.extended);
	uint32_t err;
	int op;

	c->xp.size = current_size(c);
	err = nbd_check_request(&c->xp, r);

	/*
	 * A 64-bit payload length beyond our limit cannot be drained in any
	 * sensible time; the spec asks for a hard disconnect here.
	 */
	if (c->xp.extended && plen > c->xp.max_payload) {
		log_warning("%s: %s with a %llu-byte payload is over the "
			    "%u-byte limit: disconnecting",
			    nbdd_export_name(c->e), nbd_cmd_name(r->type),
			    (unsigned long long)plen, c->xp.max_payload);
		return -EPROTO;
	}
	atomic_fetch_add(&c->in_flight, 1);
	if (err) {
		if (nbdd_log_enabled(NBDD_LOG_DEBUG))
			log_debug("%s: %s off=%llu len=%llu refused: error %u",
				  nbdd_export_name(c->e), nbd_cmd_name(r->type),
				  (unsigned long long)r->offset,
				  (unsigned long long)r->length, err);
		return refuse(c, r, plen, err);
	}
	if (c->inline_exec)
		return run_inline(c, r, plen);
	op = conn_op_of(r->type);
	if (c->async && op >= 0 &&
	    export_can_submit(c->e, (enum nbdd_op)op, conn_call_flags(r)))
		return async_submit(c, r, (enum nbdd_op)op, plen);
	return enqueue(c, r, plen);
}

int conn_run(struct conn *c)
{
	struct nbd_request r;
	int n, ret = 0;

	if (c->mode == CONN_KERNEL)
		prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
	while (!atomic_load(&c->shut) && !atomic_load(&c->dead)) {
		ret = fill(c, c->hdr_size);
		if (ret < 0)
			break;
		n = nbd_decode_request(c->rbuf + c->rpos, c->rlen - c->rpos,
				       c->xp.extended, &r);
		if (n < 0) {
			log_warning("%s: bad request magic: the peer is out of "
				    "sync, disconnecting",
				    nbdd_export_name(c->e));
			ret = -EPROTO;
			break;
		}
		c->rpos += (size_t)n;
		if (r.type == NBD_CMD_DISC)
			break;
		ret = serve_one(c, &r);
		if (ret < 0)
			break;
	}
	/*
	 * Drain: queued requests are answered (asynchronous ones first: a
	 * write with an emulated FUA still needs a worker for its flush),
	 * the batch goes out, and the sender stops last.
	 */
	async_drain(c);
	stop_workers(c);
	flush_batch(c);
	async_stop(c);
	if (atomic_load(&c->dirty) && (c->e->caps & NBDD_CAP_FLUSH))
		export_flush(c->e);
	/* Workers are gone: this thread is the only sender left. */
	if (c->tls && !atomic_load(&c->dead))
		tls_session_bye(c->tls);
	/* The peer learns at once that we are done, whenever we free. */
	shutdown(c->fd, SHUT_RDWR);
	if (ret == -ECONNRESET || atomic_load(&c->shut))
		ret = 0;
	return ret;
}

/* ---- lifecycle ---- */

struct conn *conn_new(int fd, enum conn_mode mode, const struct negotiated *neg)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct nbdd_export *e = neg->export;

	if (!c)
		return NULL;
	c->fd = fd;
	c->tls = neg->tls;
	c->mode = mode;
	c->e = e;
	c->negotiated_size = nbdd_export_size(e);
	c->xp = (struct nbd_xmit_params){
		.size = c->negotiated_size,
		.eflags = export_eflags(e),
		.min_block = neg->min_block ? neg->min_block : 1,
		.max_payload = MIN(e->bs.maximum ? e->bs.maximum
						 : NBDD_MAX_PAYLOAD,
				   NBDD_MAX_PAYLOAD),
		.structured = mode == CONN_NETWORK && neg->structured,
		.extended = mode == CONN_NETWORK && neg->extended,
		.base_allocation = mode == CONN_NETWORK && neg->base_allocation,
	};
	/* Validate against what the peer was told, as the handshake does. */
	c->xp.eflags &= (uint16_t)~NBD_FLAG_BLOCK_STAT_PAYLOAD;
	if (!c->xp.structured)
		c->xp.eflags &= (uint16_t)~NBD_FLAG_SEND_DF;
	c->hdr_size = c->xp.extended ? NBD_EXTENDED_REQUEST_SIZE
				     : NBD_SIMPLE_REQUEST_SIZE;
	c->inline_exec = export_is_inline(e);
	c->async = backend_has_aio(&e->b);
	c->max_workers = e->workers ? e->workers : 8;
	c->qtail = &c->qhead;
	c->rbuf = malloc(RBUF_SIZE);
	c->threads = calloc(c->max_workers, sizeof(*c->threads));
	if (!c->rbuf || !c->threads) {
		free(c->rbuf);
		free(c->threads);
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->wlock, NULL);
	pthread_mutex_init(&c->qlock, NULL);
	pthread_cond_init(&c->qwork, NULL);
	pthread_cond_init(&c->qspace, NULL);
	if (async_init(c) < 0) {
		c->fd = -1; /* the caller still owns it */
		c->tls = NULL;
		c->e = NULL;
		conn_free(c);
		return NULL;
	}
	return c;
}

void conn_shutdown(struct conn *c)
{
	atomic_store(&c->shut, true);
	/* The reader sees EOF; queued work is still answered. */
	shutdown(c->fd, SHUT_RD);
}

void conn_stats(const struct conn *c, struct nbdd_conn_stats *out)
{
	struct conn *m = (struct conn *)c; /* atomics are read, not changed */
	int i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < NBDD_OP__COUNT; i++) {
		out->op[i].requests = atomic_load(&m->st[i].requests);
		out->op[i].bytes = atomic_load(&m->st[i].bytes);
		out->op[i].errors = atomic_load(&m->st[i].errors);
	}
	out->in_flight = atomic_load(&m->in_flight);
	out->connected = !atomic_load(&m->dead);
}

void conn_free(struct conn *c)
{
	if (!c)
		return;
	tls_session_free(c->tls);
	close(c->fd);
	nbdd_export_unref(c->e);
	async_free(c);
	pthread_mutex_destroy(&c->wlock);
	pthread_mutex_destroy(&c->qlock);
	pthread_cond_destroy(&c->qwork);
	pthread_cond_destroy(&c->qspace);
	outbuf_free(&c->batch);
	free(c->pbuf);
	free(c->rbuf);
	free(c->threads);
	free(c);
}

NBDD_EXPORT int nbdd_serve_transmission(struct nbdd_export *e, int fd,
					struct nbdd_conn_stats *final_stats)
{
	struct negotiated neg = { .export = nbdd_export_ref(e), .min_block = 1 };
	struct conn *c = conn_new(fd, CONN_KERNEL, &neg);
	int ret;

	if (!c) {
		nbdd_export_unref(e);
		close(fd);
		return set_error(-ENOMEM, "out of memory for a connection");
	}
	ret = conn_run(c);
	if (final_stats)
		conn_stats(c, final_stats);
	conn_free(c);
	return ret;
}
