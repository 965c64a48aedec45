/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The asynchronous path: requests for a backend with .aio_ callbacks.
 *
 * The reader starts each request itself (export_submit) and goes on
 * reading: no worker sits in between. The backend ends the request on a
 * thread of its own (librbd's), which builds the reply and queues it.
 * Whoever queues a reply while nobody is sending becomes the sender and
 * writes everything queued (up to 64 replies per sendmsg) without blocking:
 * that thread belongs to the backend, and other connections' requests
 * end on it too. When the socket is full (a client that does not read)
 * or after a few rounds, it hands the queue to this connection's sender
 * thread, the one place that may block. Replies that end while another
 * is being sent leave with the next round, so a busy connection sends
 * many replies per system call.
 *
 * While the backend is asynchronous every reply takes this queue, also
 * those of the workers (operations without an .aio_ callback) and of
 * refused requests: bytes of two replies can never interleave, even when
 * a reply was half written when the sender thread took over.
 *
 * TLS records go out from the sender thread only: gnutls cannot take a
 * record back when the socket would block.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "proto/conn.h"
#include "proto/tls.h"

#define INLINE_ROUNDS 4 /* rounds a backend's thread sends, then hands over */
#define IOV_BATCH 64    /* replies per sendmsg */
#define SMALL_REPLY 64  /* room for any reply without data */

struct areq {
	struct nbdd_request req; /* first: the backend's handle is our areq */
	struct conn *c;
	struct nbd_request r;
	bool request;            /* a request (else a reply built elsewhere) */
	struct areq *next;       /* in the send queue */
	struct outbuf o;         /* the reply; a read's data is read into it */
	size_t sent;             /* bytes of o on the socket already */
	uint8_t *payload;        /* a write's data */
	uint64_t bytes;          /* counted in c->abytes */
};

/* ---- room: at most max_in_flight requests and MAX_QUEUED_BYTES ---- */

static bool full(const struct conn *c, uint64_t bytes)
{
	return c->aqueued >= c->max_workers ||
	       (c->aqueued && c->abytes + bytes > MAX_QUEUED_BYTES);
}

/* Wait (the reader) until @bytes more fit, and count them in. */
static void take_room(struct conn *c, uint64_t bytes)
{
	pthread_mutex_lock(&c->qlock);
	while (full(c, bytes))
		pthread_cond_wait(&c->qspace, &c->qlock);
	c->aqueued++;
	c->abytes += bytes;
	pthread_mutex_unlock(&c->qlock);
}

/* A reply left (or was dropped): give its room back. */
static void finish(struct areq *a)
{
	struct conn *c = a->c;

	if (a->request)
		atomic_fetch_sub(&c->in_flight, 1);
	pthread_mutex_lock(&c->qlock);
	c->aqueued--;
	c->abytes -= a->bytes;
	pthread_cond_broadcast(&c->qspace);
	pthread_mutex_unlock(&c->qlock);
	outbuf_free(&a->o);
	free(a->payload);
	free(a);
}

/* ---- sending ---- */

static size_t unsent(const struct areq *a)
{
	return a->o.len - a->sent;
}

/* Finish the replies @n sent bytes cover; returns the first one left. */
static struct areq *advance(struct areq *list, size_t n)
{
	struct areq *next;

	while (list && n >= unsent(list)) {
		n -= unsent(list);
		next = list->next;
		finish(list);
		list = next;
	}
	if (list)
		list->sent += n;
	return list;
}

/* One reply through the TLS session: its length, or a negative errno. */
static ssize_t send_tls(struct conn *c, struct areq *a)
{
	int r;

	pthread_mutex_lock(&c->wlock);
	r = tls_write_full(c->tls, a->o.p + a->sent, unsent(a), 0);
	pthread_mutex_unlock(&c->wlock);
	return r < 0 ? r : (ssize_t)unsent(a);
}

/*
 * Write the replies on @list, oldest first. Returns what is left when
 * the socket would block (only if !@block), else NULL. When the socket
 * has failed, the replies are dropped.
 */
static struct areq *write_list(struct conn *c, struct areq *list, bool block)
{
	struct iovec iov[IOV_BATCH];
	struct msghdr msg = { .msg_iov = iov };
	struct areq *a;
	ssize_t n;
	size_t k;

	while (list) {
		if (atomic_load(&c->dead)) {
			list = advance(list, SIZE_MAX);
			continue;
		}
		if (c->tls) {
			n = send_tls(c, list);
			if (n < 0)
				conn_mark_dead(c, (int)n);
			else
				list = advance(list, (size_t)n);
			continue;
		}
		for (k = 0, a = list; a && k < IOV_BATCH; a = a->next, k++)
			iov[k] = (struct iovec){ a->o.p + a->sent, unsent(a) };
		msg.msg_iovlen = k;
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | (block ? 0 : MSG_DONTWAIT));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!block)
				return list;
			/* Only if someone made the socket non-blocking. */
			poll(&(struct pollfd){ .fd = c->fd, .events = POLLOUT },
			     1, -1);
			continue;
		}
		if (n < 0)
			conn_mark_dead(c, -errno);
		else
			list = advance(list, (size_t)n);
	}
	return NULL;
}

/* With slock held: the sender thread continues from here. */
static void hand_over(struct conn *c)
{
	c->sender_turn = true;
	pthread_cond_signal(&c->swake);
}

/* With slock held: put @list back in front of the queue. */
static void requeue(struct conn *c, struct areq *list)
{
	struct areq *last = list;

	while (last->next)
		last = last->next;
	last->next = c->shead;
	if (!c->shead)
		c->stail = &last->next;
	c->shead = list;
}

/*
 * Send the queue until it is empty, as the thread that owns it (sending
 * is set). Without @block, hand it over rather than wait.
 */
static void send_queued(struct conn *c, bool block)
{
	struct areq *list;
	unsigned round;

	for (round = 0;; round++) {
		pthread_mutex_lock(&c->slock);
		list = c->shead;
		if (!list) {
			c->sending = c->sender_turn = false;
			pthread_cond_broadcast(&c->sidle);
			pthread_mutex_unlock(&c->slock);
			return;
		}
		if (!block && (round == INLINE_ROUNDS || c->tls)) {
			hand_over(c);
			pthread_mutex_unlock(&c->slock);
			return;
		}
		c->shead = NULL;
		c->stail = &c->shead;
		pthread_mutex_unlock(&c->slock);

		list = write_list(c, list, block);
		if (list) {
			pthread_mutex_lock(&c->slock);
			requeue(c, list);
			hand_over(c);
			pthread_mutex_unlock(&c->slock);
			return;
		}
	}
}

/* Queue @a's reply; send the queue unless another thread is at it. */
static void post(struct conn *c, struct areq *a)
{
	a->next = NULL;
	pthread_mutex_lock(&c->slock);
	*c->stail = a;
	c->stail = &a->next;
	if (c->sending) {
		pthread_mutex_unlock(&c->slock);
		return;
	}
	c->sending = true;
	pthread_mutex_unlock(&c->slock);
	send_queued(c, false);
}

static void *sender_main(void *arg)
{
	struct conn *c = arg;

	if (c->mode == CONN_KERNEL)
		prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
	pthread_mutex_lock(&c->slock);
	for (;;) {
		if (c->sender_turn) {
			pthread_mutex_unlock(&c->slock);
			send_queued(c, true);
			pthread_mutex_lock(&c->slock);
		} else if (c->sstop) {
			break;
		} else {
			pthread_cond_wait(&c->swake, &c->slock);
		}
	}
	pthread_mutex_unlock(&c->slock);
	return NULL;
}

void async_send(struct conn *c, struct outbuf *o)
{
	struct areq *a = calloc(1, sizeof(*a));

	if (!a) {
		conn_mark_dead(c, -ENOMEM);
		o->len = 0;
		return;
	}
	a->c = c;
	a->o = *o;
	*o = (struct outbuf){ 0 };
	a->bytes = a->o.len;
	/* Not waited for: the reader waits before it queues more work. */
	pthread_mutex_lock(&c->qlock);
	c->aqueued++;
	c->abytes += a->bytes;
	pthread_mutex_unlock(&c->qlock);
	post(c, a);
}

bool async_full(const struct conn *c)
{
	return full(c, 0);
}

/* ---- requests ---- */

/* The engine's end of a request (struct nbdd_request.done). */
static void request_done(struct nbdd_request *req, int err)
{
	struct areq *a = (struct areq *)req;
	struct conn *c = a->c;
	const struct nbd_request *r = &a->r;
	int ret = 0;

	if (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_TRIM ||
	    r->type == NBD_CMD_WRITE_ZEROES)
		atomic_store(&c->dirty, true);
	if (!err && req->flush_pending) {
		/* The client hears of this write after a worker's flush. */
		req->flush_pending = false;
		err = conn_queue_flush(c, a);
		if (!err)
			return;
	}
	if (err) {
		a->o.len = 0; /* a read's data */
		ret = reply_error(&a->o, &c->xp, r, nbd_errno_to_wire(-err));
	} else if (r->type != NBD_CMD_READ) {
		ret = reply_ok(&a->o, &c->xp, r);
	}
	conn_count(c, r, err != 0);
	free(a->payload);
	a->payload = NULL;
	if (ret < 0)
		conn_mark_dead(c, ret); /* no memory for a reply: we stop */
	post(c, a);
}

void async_flushed(struct areq *a, int err)
{
	request_done(&a->req, err);
}

/* A buffer of exactly @cap bytes, so large reads take no doubling slack. */
static int outbuf_presize(struct outbuf *o, size_t cap)
{
	o->p = malloc(cap);
	o->cap = o->p ? cap : 0;
	return o->p ? 0 : -ENOMEM;
}

int async_submit(struct conn *c, const struct nbd_request *r, enum nbdd_op op,
		 uint64_t plen)
{
	struct areq *a = calloc(1, sizeof(*a));
	bool read = op == NBDD_OP_READ;
	void *buf = NULL;
	int ret;

	if (!a) {
		atomic_fetch_sub(&c->in_flight, 1);
		return -ENOMEM;
	}
	a->c = c;
	a->r = *r;
	a->request = true;
	a->req.done = request_done;
	if (plen) {
		a->payload = malloc((size_t)plen);
		ret = a->payload ? conn_take(c, a->payload, (size_t)plen)
				 : -ENOMEM;
		if (ret < 0) {
			/* The stream is lost: the connection ends. */
			atomic_fetch_sub(&c->in_flight, 1);
			free(a->payload);
			free(a);
			return ret;
		}
		buf = a->payload;
	}
	a->bytes = read ? r->length : plen;
	take_room(c, a->bytes);
	if (op == NBDD_OP_FLUSH)
		atomic_store(&c->dirty, false);
	ret = outbuf_presize(&a->o, SMALL_REPLY + (read ? r->length : 0));
	/*
	 * One data chunk, even for a structured client over a hole: asking
	 * the backend where its holes are would cost more than sending the
	 * zeroes (rbd: a diff_iterate per read).
	 */
	if (!ret && read) {
		buf = reply_read_start(&a->o, &c->xp, r);
		ret = buf ? 0 : -ENOMEM;
	}
	if (!ret)
		ret = export_submit(c->e, &a->req, op, buf, r->length,
				    r->offset, conn_call_flags(r));
	/* From here @a may be gone: the backend can end it at once. */
	if (ret < 0)
		request_done(&a->req, ret);
	return 0;
}

/* ---- lifecycle ---- */

/*
 * A reply that does not fit the socket's send buffer costs a hand-off to
 * the sender thread, and a Unix socket's default (~208 KiB) is less than
 * one 1 MiB read. 4 MiB lets the completing thread send most large
 * replies itself (rbd, 1 MiB reads: docs/performance.md). Unix sockets
 * only (the kernel's socketpairs, local clients): TCP sizes its buffer
 * itself, and setting one would turn that off; TLS replies always go
 * through the sender thread. It adds to the queue's own bound
 * (MAX_QUEUED_BYTES) what a client that stops reading can hold. Without
 * CAP_NET_ADMIN, net.core.wmem_max caps the plain setting.
 */
static void grow_send_buffer(const struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int size = SEND_BUFFER;

	if (c->tls || getsockname(c->fd, (struct sockaddr *)&ss, &len) ||
	    ss.ss_family != AF_UNIX)
		return;
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)))
		(void)setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &size,
				 sizeof(size));
}

int async_init(struct conn *c)
{
	c->stail = &c->shead;
	pthread_mutex_init(&c->slock, NULL);
	pthread_cond_init(&c->swake, NULL);
	pthread_cond_init(&c->sidle, NULL);
	if (!c->async)
		return 0;
	grow_send_buffer(c);
	if (pthread_create(&c->sender, NULL, sender_main, c))
		return -ENOMEM; /* conn_free() calls async_free() */
	c->sender_started = true;
	return 0;
}

void async_stop(struct conn *c)
{
	if (!c->sender_started)
		return;
	pthread_mutex_lock(&c->slock);
	while (c->sending)
		pthread_cond_wait(&c->sidle, &c->slock);
	c->sstop = true;
	pthread_cond_signal(&c->swake);
	pthread_mutex_unlock(&c->slock);
	pthread_join(c->sender, NULL);
	c->sender_started = false;
}

void async_drain(struct conn *c)
{
	if (!c->async)
		return;
	pthread_mutex_lock(&c->qlock);
	while (c->aqueued || c->queued)
		pthread_cond_wait(&c->qspace, &c->qlock);
	pthread_mutex_unlock(&c->qlock);
}

void async_free(struct conn *c)
{
	async_stop(c);
	pthread_mutex_destroy(&c->slock);
	pthread_cond_destroy(&c->swake);
	pthread_cond_destroy(&c->sidle);
}
