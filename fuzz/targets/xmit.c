/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The transmission phase, end to end: lib/proto/conn.c + reply.c +
 * export.c serving a socketpair whose peer sends the fuzz input as its
 * request stream and reads everything the server answers.
 *
 * Input: [mode 1] then the request stream.
 * mode bits 0-1: 0 kernel socket (simple replies, no negotiation),
 *                1 network, simple replies; 2 structured; 3 extended
 *      bit 2:    base:allocation selected (block status allowed)
 *      bit 3:    a blocking backend (worker pool) instead of memory
 *      bit 4:    read-only export
 *      bit 5:    the client honours a 512-byte minimum block size
 *      bit 6:    (with bit 3) the blocking backend is asynchronous: its
 *                .aio_ callbacks end every third request at once, the
 *                rest on a thread of its own in reverse order
 *
 * The peer renumbers the cookies (request i gets cookie i) and checks
 * every reply against its request, as a strict client would: the magic
 * the mode allows, each request answered once, read data and holes
 * inside the request and covering it exactly, block status by the spec's
 * rules and never past the end of the export, error chunks well formed.
 * When the server ends the connection cleanly, every request it received
 * whole has been answered.
 */
#include "../fuzz.h"
#include "internal.h"

int fuzz_one(const uint8_t *data, size_t size);

#define XMIT_SIZE (1u << 20)

/* A blocking backend over a flat buffer, with holes where it is zero. */
struct xmit_disk {
	uint8_t *data;
};

static int xmit_open(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	struct xmit_disk *d = calloc(1, sizeof(*d));

	if (!d || !(d->data = calloc(1, XMIT_SIZE))) {
		free(d);
		return -ENOMEM;
	}
	*h = d;
	return 0;
}

static void xmit_close(void *h)
{
	struct xmit_disk *d = h;

	free(d->data);
	free(d);
}

static int xmit_size(void *h, uint64_t *size)
{
	*size = XMIT_SIZE;
	return 0;
}

static int xmit_pread(void *h, void *buf, size_t count, uint64_t off,
		      uint32_t f)
{
	struct xmit_disk *d = h;

	FUZZ_CHECK(off <= XMIT_SIZE && count <= XMIT_SIZE - off);
	memcpy(buf, d->data + off, count);
	return 0;
}

static int xmit_pwrite(void *h, const void *buf, size_t count, uint64_t off,
		       uint32_t f)
{
	struct xmit_disk *d = h;

	FUZZ_CHECK(off <= XMIT_SIZE && count <= XMIT_SIZE - off);
	memcpy(d->data + off, buf, count);
	/* an error path now and then, chosen by the data itself */
	return count && ((const uint8_t *)buf)[0] == 0xEE ? -EIO : 0;
}

static int xmit_flush(void *h, uint32_t f)
{
	return 0;
}

static int xmit_trim(void *h, uint64_t count, uint64_t off, uint32_t f)
{
	struct xmit_disk *d = h;

	FUZZ_CHECK(off <= XMIT_SIZE && count <= XMIT_SIZE - off);
	memset(d->data + off, 0, (size_t)count);
	return 0;
}

/* 4 KiB granules: all-zero ones are holes. */
static int xmit_extents(void *h, uint64_t count, uint64_t off, uint32_t f,
			struct nbdd_extents *x)
{
	struct xmit_disk *d = h;
	uint64_t end, pos = off;
	int r;

	FUZZ_CHECK(off < XMIT_SIZE && count <= XMIT_SIZE - off);
	end = off + count;
	while (pos < end) {
		static const uint8_t zeroes[4096];
		uint64_t next = MIN((pos | 4095) + 1, (uint64_t)XMIT_SIZE);
		bool zero = !memcmp(d->data + pos, zeroes, (size_t)(next - pos));

		r = nbdd_extents_add(x, pos, next - pos,
				     zero ? NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO
					  : 0);
		if (r)
			return r;
		pos = next;
	}
	return 0;
}

static const struct nbdd_backend xmit_backend = {
	NBDD_BACKEND_HEADER,
	.name = "fuzzdisk",
	.thread_model = NBDD_THREAD_PARALLEL,
	.open = xmit_open,
	.close = xmit_close,
	.get_size = xmit_size,
	.pread = xmit_pread,
	.pwrite = xmit_pwrite,
	.flush = xmit_flush,
	.trim = xmit_trim,
	.extents = xmit_extents,
};

/* ---- the same disk, asynchronous (conn-async.c) ---- */

struct xmit_job {
	struct xmit_job *next;
	enum { XJ_READ, XJ_WRITE, XJ_FLUSH, XJ_TRIM } op;
	void *buf;
	uint64_t count, off;
	struct nbdd_request *req;
};

struct xmit_adisk {
	struct xmit_disk d; /* first: the synchronous callbacks take it */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct xmit_job *jobs; /* newest first: they end out of order */
	bool stop;
	atomic_uint started;
	pthread_t thread;
};

static int xmit_job_run(struct xmit_adisk *a, const struct xmit_job *j)
{
	switch (j->op) {
	case XJ_READ:
		return xmit_pread(a, j->buf, (size_t)j->count, j->off, 0);
	case XJ_WRITE:
		return xmit_pwrite(a, j->buf, (size_t)j->count, j->off, 0);
	case XJ_FLUSH:
		return xmit_flush(a, 0);
	default:
		return xmit_trim(a, j->count, j->off, 0);
	}
}

static void *xmit_completer(void *arg)
{
	struct xmit_adisk *a = arg;
	struct xmit_job *j;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		while (!a->jobs && !a->stop)
			pthread_cond_wait(&a->cond, &a->lock);
		j = a->jobs;
		if (!j)
			break;
		a->jobs = j->next;
		pthread_mutex_unlock(&a->lock);
		nbdd_request_done(j->req, xmit_job_run(a, j));
		free(j);
		pthread_mutex_lock(&a->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

static int xmit_aopen(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	struct xmit_adisk *a = calloc(1, sizeof(*a));

	if (!a || !(a->d.data = calloc(1, XMIT_SIZE))) {
		free(a);
		return -ENOMEM;
	}
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	FUZZ_CHECK(pthread_create(&a->thread, NULL, xmit_completer, a) == 0);
	*h = a;
	return 0;
}

static void xmit_aclose(void *h)
{
	struct xmit_adisk *a = h;

	pthread_mutex_lock(&a->lock);
	/* Every request ended before the last connection went. */
	FUZZ_CHECK(a->jobs == NULL);
	a->stop = true;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	free(a->d.data);
	free(a);
}

static int xmit_submit(void *h, struct xmit_job job)
{
	struct xmit_adisk *a = h;
	struct xmit_job *j;

	/* Refused at submission now and then, chosen by the data itself. */
	if (job.op == XJ_WRITE && job.count &&
	    ((const uint8_t *)job.buf)[0] == 0xED)
		return -ENOSPC;
	if (atomic_fetch_add(&a->started, 1) % 3 == 0) {
		nbdd_request_done(job.req, xmit_job_run(a, &job));
		return 0;
	}
	j = malloc(sizeof(*j));
	FUZZ_CHECK(j != NULL);
	*j = job;
	pthread_mutex_lock(&a->lock);
	j->next = a->jobs;
	a->jobs = j;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
	return 0;
}

static int xmit_aio_pread(void *h, void *buf, size_t count, uint64_t off,
			  uint32_t f, struct nbdd_request *req)
{
	return xmit_submit(h, (struct xmit_job){ NULL, XJ_READ, buf, count,
						 off, req });
}

static int xmit_aio_pwrite(void *h, const void *buf, size_t count,
			   uint64_t off, uint32_t f, struct nbdd_request *req)
{
	return xmit_submit(h, (struct xmit_job){ NULL, XJ_WRITE, (void *)buf,
						 count, off, req });
}

static int xmit_aio_flush(void *h, uint32_t f, struct nbdd_request *req)
{
	return xmit_submit(h, (struct xmit_job){ NULL, XJ_FLUSH, NULL, 0, 0,
						 req });
}

static int xmit_aio_trim(void *h, uint64_t count, uint64_t off, uint32_t f,
			 struct nbdd_request *req)
{
	return xmit_submit(h, (struct xmit_job){ NULL, XJ_TRIM, NULL, count,
						 off, req });
}

/* xmit_backend's table with its own instance and the .aio_ callbacks. */
static struct nbdd_backend xmit_async_table(void)
{
	struct nbdd_backend b = xmit_backend;

	b.name = "fuzzasync";
	b.open = xmit_aopen;
	b.close = xmit_aclose;
	b.aio_pread = xmit_aio_pread;
	b.aio_pwrite = xmit_aio_pwrite;
	b.aio_flush = xmit_aio_flush;
	b.aio_trim = xmit_aio_trim;
	return b;
}

/* ---- the oracle: a strict client's view of the replies ---- */

#define XMIT_MAX_REQS 4096
/* the largest chunk payload we collect: 65536 extended extents */
#define XMIT_MAX_COLLECT (8 + 16 * 65536)

struct xmit_req {
	uint16_t type, flags;
	uint64_t off, len;
	uint64_t covered; /* read bytes sent as data or holes */
	bool done, failed, whole;
};

struct xmit_oracle {
	struct xmit_req req[XMIT_MAX_REQS];
	size_t nreq;
	bool structured, extended;
	uint64_t size;
	/* the reply being parsed */
	uint8_t hdr[NBD_EXTENDED_REPLY_SIZE];
	size_t hlen, hneed;
	uint64_t skip;      /* payload bytes to pass over */
	uint8_t *pay;       /* payload bytes to look at */
	size_t plen, pneed;
	uint64_t rest;      /* after the collected part, to skip */
	struct xmit_req *cur;
	uint16_t cflags, ctype;
};

static bool xmit_inside(const struct xmit_req *r, uint64_t off, uint64_t len)
{
	return off >= r->off && len <= r->len && off - r->off <= r->len - len;
}

static struct xmit_req *xmit_lookup(struct xmit_oracle *o, uint64_t cookie)
{
	FUZZ_CHECK(cookie < o->nreq);         /* a cookie we sent */
	FUZZ_CHECK(!o->req[cookie].done);     /* answered once */
	FUZZ_CHECK(o->req[cookie].type != NBD_CMD_DISC);
	return &o->req[cookie];
}

static void xmit_finish(struct xmit_req *r)
{
	if (r->type == NBD_CMD_READ && !r->failed)
		FUZZ_CHECK(r->covered == r->len);
	r->done = true;
}

static void xmit_error_value(uint32_t err)
{
	FUZZ_CHECK(err == NBD_EPERM || err == NBD_EIO || err == NBD_ENOMEM ||
		   err == NBD_EINVAL || err == NBD_ENOSPC ||
		   err == NBD_EOVERFLOW || err == NBD_ENOTSUP ||
		   err == NBD_ESHUTDOWN);
}

static void xmit_block_status(struct xmit_oracle *o, const uint8_t *p,
			      size_t n)
{
	struct xmit_req *r = o->cur;
	size_t each = o->extended ? 16 : 8, head = o->extended ? 8 : 4, i, k;
	uint64_t len, sum = 0, last = 0;

	FUZZ_CHECK(r->type == NBD_CMD_BLOCK_STATUS);
	FUZZ_CHECK(n > head && (n - head) % each == 0);
	k = (n - head) / each;
	FUZZ_CHECK(nbd_get32(p) == NBDD_META_ID_BASE_ALLOCATION);
	if (o->extended)
		FUZZ_CHECK(nbd_get32(p + 4) == k);
	for (i = 0; i < k; i++) {
		const uint8_t *d = p + head + i * each;
		uint64_t flags = o->extended ? nbd_get64(d + 8) : nbd_get32(d + 4);

		len = o->extended ? nbd_get64(d) : nbd_get32(d);
		FUZZ_CHECK(len > 0);
		FUZZ_CHECK(!(flags & ~(uint64_t)(NBDD_EXTENT_HOLE |
						 NBDD_EXTENT_ZERO)));
		sum += len;
		last = len;
	}
	/* all but the last inside the request; REQ_ONE: one, inside */
	FUZZ_CHECK(sum - last < r->len);
	if (r->flags & NBD_CMD_FLAG_REQ_ONE)
		FUZZ_CHECK(k == 1 && last <= r->len);
	/* never past the end of the export */
	FUZZ_CHECK(sum <= o->size - r->off);
}

/* A chunk's collected payload (or its first part) has arrived. */
static void xmit_payload(struct xmit_oracle *o)
{
	struct xmit_req *r = o->cur;
	const uint8_t *p = o->pay;
	uint64_t off, len;

	switch (o->ctype) {
	case NBD_REPLY_TYPE_OFFSET_DATA:
		off = nbd_get64(p);
		FUZZ_CHECK(xmit_inside(r, off, o->rest));
		r->covered += o->rest;
		break;
	case NBD_REPLY_TYPE_OFFSET_HOLE:
		off = nbd_get64(p);
		len = nbd_get32(p + 8);
		FUZZ_CHECK(len > 0 && xmit_inside(r, off, len));
		r->covered += len;
		break;
	case NBD_REPLY_TYPE_BLOCK_STATUS:
	case NBD_REPLY_TYPE_BLOCK_STATUS_EXT:
		xmit_block_status(o, p, o->plen);
		break;
	case NBD_REPLY_TYPE_ERROR:
	case NBD_REPLY_TYPE_ERROR_OFFSET:
		xmit_error_value(nbd_get32(p));
		FUZZ_CHECK(nbd_get16(p + 4) <= 4096);
		if (o->ctype == NBD_REPLY_TYPE_ERROR) {
			FUZZ_CHECK(nbd_get16(p + 4) <= o->plen - 6);
		} else {
			FUZZ_CHECK(nbd_get16(p + 4) <= o->plen - 14);
			FUZZ_CHECK(xmit_inside(r, nbd_get64(p + 6 +
							    nbd_get16(p + 4)),
					       1));
		}
		r->failed = true;
		break;
	}
	if (o->cflags & NBD_REPLY_FLAG_DONE)
		xmit_finish(r);
}

/* Collect @need payload bytes, then skip @rest more. */
static void xmit_collect(struct xmit_oracle *o, uint64_t need, uint64_t rest)
{
	FUZZ_CHECK(need <= XMIT_MAX_COLLECT);
	o->pneed = (size_t)need;
	o->plen = 0;
	o->rest = rest;
}

static void xmit_header(struct xmit_oracle *o)
{
	uint32_t magic = nbd_get32(o->hdr);
	struct xmit_req *r;
	uint64_t len;

	if (magic == NBD_SIMPLE_REPLY_MAGIC) {
		uint32_t err = nbd_get32(o->hdr + 4);

		FUZZ_CHECK(!o->extended);
		r = xmit_lookup(o, nbd_get64(o->hdr + 8));
		if (err)
			xmit_error_value(err);
		if (r->type == NBD_CMD_READ && !err) {
			/* simple replies carry the data whole */
			o->skip = r->len;
			r->covered = r->len;
		}
		r->failed = err != 0;
		xmit_finish(r);
		return;
	}
	o->cflags = nbd_get16(o->hdr + 4);
	o->ctype = nbd_get16(o->hdr + 6);
	r = o->cur = xmit_lookup(o, nbd_get64(o->hdr + 8));
	len = o->extended ? nbd_get64(o->hdr + 24) : nbd_get32(o->hdr + 16);
	FUZZ_CHECK(!(o->cflags & ~NBD_REPLY_FLAG_DONE));
	switch (o->ctype) {
	case NBD_REPLY_TYPE_NONE:
		FUZZ_CHECK(len == 0 && (o->cflags & NBD_REPLY_FLAG_DONE));
		xmit_finish(r);
		return;
	case NBD_REPLY_TYPE_OFFSET_DATA:
		FUZZ_CHECK(r->type == NBD_CMD_READ && len >= 9);
		FUZZ_CHECK(len - 8 <= NBDD_MAX_PAYLOAD);
		xmit_collect(o, 8, len - 8);
		break;
	case NBD_REPLY_TYPE_OFFSET_HOLE:
		FUZZ_CHECK(r->type == NBD_CMD_READ && len == 12);
		xmit_collect(o, 12, 0);
		break;
	case NBD_REPLY_TYPE_BLOCK_STATUS:
	case NBD_REPLY_TYPE_BLOCK_STATUS_EXT:
		FUZZ_CHECK((o->ctype == NBD_REPLY_TYPE_BLOCK_STATUS_EXT) ==
			   o->extended);
		xmit_collect(o, len, 0);
		break;
	case NBD_REPLY_TYPE_ERROR:
		FUZZ_CHECK(len >= 6 && len <= 6 + 4096);
		xmit_collect(o, len, 0);
		break;
	case NBD_REPLY_TYPE_ERROR_OFFSET:
		FUZZ_CHECK(len >= 14 && len <= 14 + 4096);
		xmit_collect(o, len, 0);
		break;
	default:
		FUZZ_CHECK(!"an unknown reply chunk type");
	}
}

static void xmit_on_reply(void *ctx, const uint8_t *p, size_t n)
{
	struct xmit_oracle *o = ctx;
	size_t k;

	while (n) {
		if (o->skip) {
			k = (size_t)MIN((uint64_t)n, o->skip);
			o->skip -= k;
		} else if (o->pneed) {
			k = MIN(n, o->pneed - o->plen);
			memcpy(o->pay + o->plen, p, k);
			o->plen += k;
			if (o->plen == o->pneed) {
				o->pneed = 0;
				o->skip = o->rest;
				xmit_payload(o);
			}
		} else {
			if (o->hlen < 4) {
				k = MIN(n, 4 - o->hlen);
			} else {
				k = MIN(n, o->hneed - o->hlen);
			}
			memcpy(o->hdr + o->hlen, p, k);
			o->hlen += k;
			if (o->hlen == 4) {
				uint32_t m = nbd_get32(o->hdr);

				FUZZ_CHECK(m == NBD_SIMPLE_REPLY_MAGIC ||
					   (o->structured &&
					    m == (o->extended
						  ? NBD_EXTENDED_REPLY_MAGIC
						  : NBD_STRUCTURED_REPLY_MAGIC)));
				o->hneed = m == NBD_SIMPLE_REPLY_MAGIC
						   ? NBD_SIMPLE_REPLY_SIZE
					   : o->extended ? NBD_EXTENDED_REPLY_SIZE
							 : NBD_STRUCTURED_REPLY_SIZE;
			}
			if (o->hlen == o->hneed) {
				o->hlen = 0;
				xmit_header(o);
			}
		}
		p += k;
		n -= k;
	}
}

/*
 * Give request i cookie i, in a copy of the stream, and note each request
 * as conn.c will read it: stop where it stops reading (a bad magic,
 * DISC, an extended payload over the limit) or the input ends.
 */
static uint8_t *xmit_prepare(struct xmit_oracle *o, const uint8_t *data,
			     size_t size)
{
	size_t hs = o->extended ? NBD_EXTENDED_REQUEST_SIZE
				: NBD_SIMPLE_REQUEST_SIZE, pos = 0;
	uint8_t *copy = malloc(size ? size : 1);
	struct nbd_request r;
	uint64_t plen;

	FUZZ_CHECK(copy != NULL);
	memcpy(copy, data, size);
	while (o->nreq < XMIT_MAX_REQS &&
	       nbd_decode_request(copy + pos, size - pos, o->extended, &r) > 0) {
		struct xmit_req *q = &o->req[o->nreq];

		nbd_put64(copy + pos + 8, o->nreq);
		o->nreq++;
		q->type = r.type;
		q->flags = r.flags;
		q->off = r.offset;
		q->len = r.length;
		if (r.type == NBD_CMD_DISC)
			break;
		plen = nbd_request_payload_len(&r, o->extended);
		if (o->extended && plen > NBDD_MAX_PAYLOAD)
			break;
		if (plen > size - pos - hs)
			break;
		q->whole = true;
		pos += hs + (size_t)plen;
	}
	return copy;
}

int fuzz_one(const uint8_t *data, size_t size)
{
	struct nbdd_export_options eo = { .name = "fuzz", .workers = 3 };
	struct negotiated neg = { .min_block = 1 };
	struct fuzz_peer peer = { .on_reply = NULL };
	struct nbdd_backend async_table;
	struct xmit_oracle *o;
	uint8_t mode, *stream;
	struct conn *c;
	size_t i;
	int fd, ret;

	if (size < 1)
		return 0;
	mode = data[0];
	eo.readonly = mode & 0x10;
	async_table = xmit_async_table();
	if (mode & 0x08)
		ret = nbdd_export_new(mode & 0x40 ? &async_table : &xmit_backend,
				      NULL, 0, &eo, &neg.export);
	else
		ret = nbdd_export_open("memory:size=1M", &eo, &neg.export);
	FUZZ_CHECK(ret == 0);
	neg.structured = (mode & 3) >= 2;
	neg.extended = (mode & 3) == 3;
	neg.base_allocation = (mode & 4) && neg.structured;
	if (mode & 0x20)
		neg.min_block = 512;

	o = calloc(1, sizeof(*o));
	FUZZ_CHECK(o != NULL);
	o->pay = malloc(XMIT_MAX_COLLECT);
	FUZZ_CHECK(o->pay != NULL);
	o->structured = neg.structured;
	o->extended = neg.extended;
	o->size = nbdd_export_size(neg.export);
	stream = xmit_prepare(o, data + 1, size - 1);
	peer.on_reply = xmit_on_reply;
	peer.ctx = o;

	fd = fuzz_peer_start(&peer, stream, size - 1);
	FUZZ_CHECK(fd >= 0);
	c = conn_new(fd, (mode & 3) ? CONN_NETWORK : CONN_KERNEL, &neg);
	FUZZ_CHECK(c != NULL);
	ret = conn_run(c);
	FUZZ_CHECK(ret <= 0);
	conn_free(c); /* closes fd: the peer sees EOF */
	fuzz_peer_join(&peer);

	/* replies are written whole: none was cut off */
	FUZZ_CHECK(o->hlen == 0 && o->skip == 0 && o->pneed == 0);
	/* a clean end: everything received whole was answered */
	if (ret == 0)
		for (i = 0; i < o->nreq; i++)
			FUZZ_CHECK(!o->req[i].whole || o->req[i].done);
	free(stream);
	free(o->pay);
	free(o);
	return 0;
}
