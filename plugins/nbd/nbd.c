/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbd:uri=URI[,connections=N] — another NBD server as a backend.
 *
 * Whatever libnbd's nbd_connect_uri() takes: nbd://host[:port]/export,
 * nbd+unix:///export?socket=PATH, nbds://... with TLS (tls-certificates=
 * and tls-psk-file= in the URI's query are libnbd's). What the remote
 * can do is what we serve: its size, block sizes, read-only flag, FUA,
 * flush, trim, zero (NO_HOLE and FAST_ZERO passed on), cache, and
 * base:allocation block status. A remote error fails that one request
 * with its errno; a connection that dies fails its requests with EIO,
 * and the request that finds it so wakes the remote's reconnector
 * thread, which connects it again (at most once a second, to a remote
 * of the same size) while later requests go on elsewhere or fail fast.
 *
 * Reads, writes, flushes, trims and zeroes take the asynchronous path
 * (.aio_ callbacks): started from nbdd's reader, ended by libnbd's
 * completion callback on the connection's poller, which hands the result
 * to nbdd_request_done(). Cache and block status wait on a worker.
 *
 * Several connections (connections=N, default 4 when the remote
 * advertises multi-conn, else 1) share the requests round robin; more
 * than one is refused for a writable remote without multi-conn, where
 * a flush on one connection need not cover writes made on another. So
 * every client of ours sees one consistent image, and we advertise
 * multi-conn ourselves.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "remote.h"

#define DEFAULT_MULTI_CONNECTIONS 4
#define RETRY_NS 1000000000ull
/* nbdd's own limit on a preferred block size. */
#define MAX_PREFERRED (32u << 20)

struct remote {
	char *uri;
	unsigned nconns;
	struct conn conns[MAX_CONNECTIONS];
	atomic_uint next; /* round robin */
	/* The reconnector: woken by a request that found a lost connection. */
	pthread_mutex_t retry_lock;
	pthread_cond_t retry_cond;
	bool retry_wanted, stopping, reconnector_started;
	pthread_t reconnector;
	uint64_t size;
	uint32_t caps;
	struct nbdd_block_size bs;
};

/* ---- reconnecting ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Lost connections are connected again here, off the request path: a
 * connect may take as long as TCP gives up after, and nbdd's reader
 * starts requests itself. Each at most once a second.
 */
static void *reconnect_loop(void *arg)
{
	struct remote *r = arg;
	struct conn *c;
	uint64_t now;
	unsigned i;

	pthread_mutex_lock(&r->retry_lock);
	for (;;) {
		while (!r->retry_wanted && !r->stopping)
			pthread_cond_wait(&r->retry_cond, &r->retry_lock);
		if (r->stopping)
			break;
		r->retry_wanted = false;
		pthread_mutex_unlock(&r->retry_lock);
		for (i = 0; i < r->nconns; i++) {
			c = &r->conns[i];
			now = now_ns();
			if (atomic_load(&c->dead) && now >= c->retry_at) {
				c->retry_at = now + RETRY_NS;
				(void)conn_reconnect(c, r->size);
			}
		}
		pthread_mutex_lock(&r->retry_lock);
	}
	pthread_mutex_unlock(&r->retry_lock);
	return NULL;
}

static int start_reconnector(struct remote *r)
{
	int e = start_thread(&r->reconnector, reconnect_loop, r);

	r->reconnector_started = e == 0;
	return e;
}

static void want_reconnect(struct remote *r)
{
	pthread_mutex_lock(&r->retry_lock);
	r->retry_wanted = true;
	pthread_cond_signal(&r->retry_cond);
	pthread_mutex_unlock(&r->retry_lock);
}

static void stop_reconnector(struct remote *r)
{
	if (!r->reconnector_started)
		return;
	pthread_mutex_lock(&r->retry_lock);
	r->stopping = true;
	pthread_cond_signal(&r->retry_cond);
	pthread_mutex_unlock(&r->retry_lock);
	pthread_join(r->reconnector, NULL);
	r->reconnector_started = false;
}

/* ---- opening ---- */

static int parse_params(const struct nbdd_param *p, size_t n,
			const char **uri, unsigned *connections)
{
	char *end;
	unsigned long v;
	size_t i;

	for (i = 0; i < n; i++) {
		if (!strcmp(p[i].key, "uri")) {
			*uri = p[i].value;
		} else if (!strcmp(p[i].key, "connections")) {
			errno = 0;
			v = strtoul(p[i].value, &end, 10);
			if (errno || end == p[i].value || *end || v < 1 ||
			    v > MAX_CONNECTIONS || p[i].value[0] == '-') {
				nbdd_backend_error("nbd: connections must be "
						   "a number from 1 to %d, "
						   "not '%s'",
						   MAX_CONNECTIONS,
						   p[i].value);
				return -EINVAL;
			}
			*connections = (unsigned)v;
		} else {
			nbdd_backend_error("nbd: unknown parameter '%s' (nbd "
					   "takes uri=, connections=; TLS "
					   "settings go in the URI)",
					   p[i].key);
			return -EINVAL;
		}
	}
	if (!*uri || !**uri) {
		nbdd_backend_error("nbd: uri=URI is required, e.g. "
				   "nbd://HOST:PORT/EXPORT or "
				   "nbd+unix:///EXPORT?socket=PATH");
		return -EINVAL;
	}
	return 0;
}

static bool can(int r)
{
	return r == 1; /* -1, an error, means no */
}

/* A block size the remote advertised, or 0 (nbdd's default). */
static uint32_t block_size(struct nbd_handle *h, int which)
{
	int64_t v = nbd_get_block_size(h, which);

	return v > 0 && v <= UINT32_MAX ? (uint32_t)v : 0;
}

/* What the first connection learned about the remote. */
static int probe(struct remote *r, unsigned *connections)
{
	struct nbd_handle *h = r->conns[0].nbd;
	int64_t size = nbd_get_size(h);
	bool multi_conn = can(nbd_can_multi_conn(h));
	bool readonly = can(nbd_is_read_only(h));
	uint32_t c = NBDD_CAP_MULTI_CONN;

	if (size < 0) {
		nbdd_backend_error("nbd: %s: cannot get the size: %s", r->uri,
				   libnbd_error());
		return -EIO;
	}
	r->size = (uint64_t)size;
	if (!readonly)
		c |= NBDD_CAP_WRITE;
	c |= can(nbd_can_flush(h)) ? NBDD_CAP_FLUSH : 0;
	c |= can(nbd_can_fua(h)) ? NBDD_CAP_FUA : 0;
	c |= can(nbd_can_trim(h)) ? NBDD_CAP_TRIM : 0;
	c |= can(nbd_can_zero(h)) ? NBDD_CAP_ZERO : 0;
	c |= can(nbd_can_fast_zero(h)) ? NBDD_CAP_FAST_ZERO : 0;
	c |= can(nbd_can_cache(h)) ? NBDD_CAP_CACHE : 0;
	c |= can(nbd_is_rotational(h)) ? NBDD_CAP_ROTATIONAL : 0;
	if (can(nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION)))
		c |= NBDD_CAP_EXTENTS;
	r->caps = c;

	/* 0 (not advertised) leaves nbdd's default; it checks the rest. */
	r->bs.minimum = block_size(h, LIBNBD_SIZE_MINIMUM);
	r->bs.preferred = block_size(h, LIBNBD_SIZE_PREFERRED);
	r->bs.maximum = block_size(h, LIBNBD_SIZE_MAXIMUM);
	if (r->bs.preferred > MAX_PREFERRED)
		r->bs.preferred = MAX_PREFERRED;

	if (!*connections)
		*connections = multi_conn ? DEFAULT_MULTI_CONNECTIONS : 1;
	if (*connections > 1 && !multi_conn && !readonly) {
		nbdd_backend_error("nbd: %s does not advertise multi-conn, so "
				   "connections=%u could show clients an "
				   "inconsistent image: use connections=1",
				   r->uri, *connections);
		return -EINVAL;
	}
	return 0;
}

static void remote_free(struct remote *r)
{
	unsigned i;

	stop_reconnector(r);
	for (i = 0; i < r->nconns; i++)
		conn_destroy(&r->conns[i]);
	pthread_cond_destroy(&r->retry_cond);
	pthread_mutex_destroy(&r->retry_lock);
	free(r->uri);
	free(r);
}

/* Connection @i (0-based) of @r, counted in r->nconns even if it fails. */
static int connect_one(struct remote *r, unsigned i)
{
	char why[200];
	int err;

	conn_init(&r->conns[i], i + 1, r->uri);
	r->nconns = i + 1;
	err = conn_connect(&r->conns[i], why, sizeof(why));
	if (err)
		nbdd_backend_error("nbd: cannot connect to %s: %s", r->uri,
				   why);
	return err;
}

static int nbd_open(const struct nbdd_param *params, size_t nparams,
		    int readonly, void **handle)
{
	const char *uri = NULL;
	unsigned want = 0, i;
	struct remote *r;
	int err;

	err = parse_params(params, nparams, &uri, &want);
	if (err)
		return err;
	r = calloc(1, sizeof(*r));
	if (!r || !(r->uri = strdup(uri))) {
		free(r);
		return -ENOMEM;
	}
	pthread_mutex_init(&r->retry_lock, NULL);
	pthread_cond_init(&r->retry_cond, NULL);
	err = connect_one(r, 0);
	if (!err)
		err = probe(r, &want);
	for (i = 1; !err && i < want; i++) {
		err = connect_one(r, i);
		if (!err && nbd_get_size(r->conns[i].nbd) != (int64_t)r->size) {
			nbdd_backend_error("nbd: %s: connection %u sees another "
					   "size than connection 1",
					   r->uri, i + 1);
			err = -EIO;
		}
	}
	for (i = 0; !err && i < r->nconns; i++)
		err = conn_start(&r->conns[i]);
	if (!err)
		err = start_reconnector(r);
	if (err) {
		remote_free(r);
		return err;
	}
	*handle = r;
	return 0;
}

static void nbd_close_remote(void *h)
{
	remote_free(h);
}

static int nbd_get_size_cb(void *h, uint64_t *size)
{
	*size = ((struct remote *)h)->size;
	return 0;
}

static int nbd_block_size_cb(void *h, struct nbdd_block_size *bs)
{
	*bs = ((struct remote *)h)->bs;
	return 0;
}

static int nbd_capabilities_cb(void *h, uint32_t *caps)
{
	*caps = ((struct remote *)h)->caps;
	return 0;
}

/* ---- requests ---- */

/*
 * The next live connection, round robin; NULL when all are lost. A lost
 * one it passes wakes the reconnector.
 */
static struct conn *pick(struct remote *r)
{
	unsigned start = atomic_fetch_add_explicit(&r->next, 1,
						   memory_order_relaxed);
	struct conn *c, *live = NULL;
	bool lost = false;
	unsigned i;

	for (i = 0; i < r->nconns && !live; i++) {
		c = &r->conns[(start + i) % r->nconns];
		if (atomic_load(&c->dead))
			lost = true;
		else
			live = c;
	}
	if (lost)
		want_reconnect(r);
	return live;
}

/* One request as the callbacks hand it over. */
struct cmd {
	struct what w; /* w.op is the NBD command's name */
	enum { PREAD, PWRITE, FLUSH, TRIM, ZERO, CACHE, BLOCK_STATUS } type;
	void *buf;
	uint32_t flags; /* LIBNBD_CMD_FLAG_* */
};

static int got_extents(void *opaque, const char *context, uint64_t offset,
		       uint32_t *entries, size_t n, int *error);

/* Queue @cmd on @nbd; block status puts its extents through @rq. */
static int64_t start(struct nbd_handle *nbd, const struct cmd *cmd,
		     nbd_completion_callback cb, struct request *rq)
{
	uint64_t n = cmd->w.count, off = cmd->w.offset;

	switch (cmd->type) {
	case PREAD:
		return nbd_aio_pread(nbd, cmd->buf, n, off, cb, cmd->flags);
	case PWRITE:
		return nbd_aio_pwrite(nbd, cmd->buf, n, off, cb, cmd->flags);
	case FLUSH:
		return nbd_aio_flush(nbd, cb, cmd->flags);
	case TRIM:
		return nbd_aio_trim(nbd, n, off, cb, cmd->flags);
	case ZERO:
		return nbd_aio_zero(nbd, n, off, cb, cmd->flags);
	case CACHE:
		return nbd_aio_cache(nbd, n, off, cb, cmd->flags);
	case BLOCK_STATUS:
		rq->out = cmd->buf;
		return nbd_aio_block_status(
		    nbd, n, off,
		    (nbd_extent_callback){.callback = got_extents,
					  .user_data = rq},
		    cb, cmd->flags);
	}
	abort();
}

/* Run @cmd on the next live connection and wait for its reply. */
static int run(struct remote *r, const struct cmd *cmd, struct request *rq)
{
	struct conn *c = pick(r);
	int err;

	if (!c)
		return conn_lost_error(&r->conns[0], cmd->w);
	pthread_rwlock_rdlock(&c->use);
	/* Lost since pick(), and maybe replaced meanwhile. */
	if (atomic_load(&c->dead))
		err = conn_lost_error(c, cmd->w);
	else
		err = request_finish(c, rq,
				     start(c->nbd, cmd, request_init(rq), rq),
				     cmd->w);
	pthread_rwlock_unlock(&c->use);
	return err;
}

/* An asynchronous command on its way: what its end needs. */
struct pending {
	struct conn *c;
	struct nbdd_request *req;
	struct what w;
};

/* libnbd's completion callback, on the connection's poller. */
static int ended(void *opaque, int *error)
{
	struct pending *p = opaque;
	struct conn *c = p->c;

	nbdd_request_done(p->req,
			  *error ? request_failed(c, *error, p->w) : 0);
	free(p);
	conn_release(c);
	return 1; /* retire the command: nobody asks for it by cookie */
}

/* Start @cmd on the next live connection; ended() tells nbdd. */
static int submit(struct remote *r, const struct cmd *cmd,
		  struct nbdd_request *req)
{
	struct conn *c = pick(r);
	struct pending *p;
	int err = 0;

	if (!c)
		return conn_lost_error(&r->conns[0], cmd->w);
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	*p = (struct pending){ c, req, cmd->w };
	pthread_rwlock_rdlock(&c->use);
	if (atomic_load(&c->dead)) {
		err = conn_lost_error(c, cmd->w);
	} else {
		conn_hold(c);
		if (start(c->nbd, cmd,
			  (nbd_completion_callback){ .callback = ended,
						     .user_data = p },
			  NULL) < 0) {
			err = request_not_started(c, cmd->w);
			conn_release(c);
		} else {
			p = NULL; /* ended() has it, and may be done already */
			conn_wake(c);
		}
	}
	pthread_rwlock_unlock(&c->use);
	free(p);
	return err;
}

static uint32_t fua(uint32_t flags)
{
	return flags & NBDD_F_FUA ? LIBNBD_CMD_FLAG_FUA : 0;
}

static uint32_t zero_flags(uint32_t flags)
{
	return fua(flags) |
	       (flags & NBDD_F_MAY_TRIM ? 0 : LIBNBD_CMD_FLAG_NO_HOLE) |
	       (flags & NBDD_F_FAST ? LIBNBD_CMD_FLAG_FAST_ZERO : 0);
}

static int nbd_pread_cb(void *h, void *buf, size_t count, uint64_t offset,
			uint32_t flags)
{
	struct cmd cmd = {{"pread", count, offset}, PREAD, buf, 0};
	struct request rq;

	return run(h, &cmd, &rq);
}

static int nbd_pwrite_cb(void *h, const void *buf, size_t count,
			 uint64_t offset, uint32_t flags)
{
	/* libnbd only reads from a write's buffer. */
	struct cmd cmd = {{"pwrite", count, offset}, PWRITE, (void *)buf,
			  fua(flags)};
	struct request rq;

	return run(h, &cmd, &rq);
}

/* Every write completed on any connection is covered (see the top). */
static int nbd_flush_cb(void *h, uint32_t flags)
{
	struct cmd cmd = {{"flush", 0, 0}, FLUSH, NULL, 0};
	struct request rq;

	return run(h, &cmd, &rq);
}

static int nbd_trim_cb(void *h, uint64_t count, uint64_t offset,
		       uint32_t flags)
{
	struct cmd cmd = {{"trim", count, offset}, TRIM, NULL, fua(flags)};
	struct request rq;

	return run(h, &cmd, &rq);
}

static int nbd_zero_cb(void *h, uint64_t count, uint64_t offset,
		       uint32_t flags)
{
	struct cmd cmd = {{"zero", count, offset}, ZERO, NULL,
			  zero_flags(flags)};
	struct request rq;

	return run(h, &cmd, &rq);
}

static int nbd_cache_cb(void *h, uint64_t count, uint64_t offset,
			uint32_t flags)
{
	struct cmd cmd = {{"cache", count, offset}, CACHE, NULL, 0};
	struct request rq;

	return run(h, &cmd, &rq);
}

static int nbd_aio_pread_cb(void *h, void *buf, size_t count, uint64_t offset,
			    uint32_t flags, struct nbdd_request *req)
{
	struct cmd cmd = {{"pread", count, offset}, PREAD, buf, 0};

	return submit(h, &cmd, req);
}

static int nbd_aio_pwrite_cb(void *h, const void *buf, size_t count,
			     uint64_t offset, uint32_t flags,
			     struct nbdd_request *req)
{
	struct cmd cmd = {{"pwrite", count, offset}, PWRITE, (void *)buf,
			  fua(flags)};

	return submit(h, &cmd, req);
}

static int nbd_aio_flush_cb(void *h, uint32_t flags, struct nbdd_request *req)
{
	struct cmd cmd = {{"flush", 0, 0}, FLUSH, NULL, 0};

	return submit(h, &cmd, req);
}

static int nbd_aio_trim_cb(void *h, uint64_t count, uint64_t offset,
			   uint32_t flags, struct nbdd_request *req)
{
	struct cmd cmd = {{"trim", count, offset}, TRIM, NULL, fua(flags)};

	return submit(h, &cmd, req);
}

static int nbd_aio_zero_cb(void *h, uint64_t count, uint64_t offset,
			   uint32_t flags, struct nbdd_request *req)
{
	struct cmd cmd = {{"zero", count, offset}, ZERO, NULL,
			  zero_flags(flags)};

	return submit(h, &cmd, req);
}

/*
 * base:allocation's entries are (length, flags) pairs from @offset on;
 * its HOLE and ZERO bits are ours. Runs on the poller thread, so a
 * failure is kept in the request and told by the worker.
 */
static int got_extents(void *opaque, const char *context, uint64_t offset,
		       uint32_t *entries, size_t n, int *error)
{
	struct request *rq = opaque;
	size_t i;

	if (strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
		return 0;
	for (i = 0; i + 1 < n && !rq->add_err; i += 2) {
		if (entries[i] == 0)
			break; /* a broken server; what came so far stands */
		rq->add_err = nbdd_extents_add(rq->out, offset, entries[i],
					       entries[i + 1] &
						   (NBDD_EXTENT_HOLE |
						    NBDD_EXTENT_ZERO));
		offset += entries[i];
	}
	return 0;
}

static int nbd_extents_cb(void *h, uint64_t count, uint64_t offset,
			  uint32_t flags, struct nbdd_extents *out)
{
	struct cmd cmd = {{"block status", count, offset}, BLOCK_STATUS, out,
			  flags & NBDD_F_REQ_ONE ? LIBNBD_CMD_FLAG_REQ_ONE : 0};
	struct request rq = {0};
	int r = run(h, &cmd, &rq);

	if (r && r == rq.add_err)
		nbdd_backend_error("nbd: the block status %s sent for offset "
				   "%" PRIu64 " does not fit together "
				   "(extents out of order or too long)",
				   ((struct remote *)h)->uri, offset);
	return r;
}

static const struct nbdd_backend nbd_backend = {
    NBDD_BACKEND_HEADER,
    .name = "nbd",
    .description = "another NBD server, through libnbd",
    .help = "uri=URI          the remote: nbd://HOST[:PORT]/EXPORT,\n"
	    "                 nbd+unix:///EXPORT?socket=PATH, nbds://... "
	    "(TLS:\n"
	    "                 tls-certificates=DIR, tls-psk-file=FILE in "
	    "the query)\n"
	    "connections=N    libnbd connections, 1-16 (default 4 with "
	    "multi-conn, else 1)",
    .thread_model = NBDD_THREAD_PARALLEL,
    .open = nbd_open,
    .close = nbd_close_remote,
    .get_size = nbd_get_size_cb,
    .block_size = nbd_block_size_cb,
    .capabilities = nbd_capabilities_cb,
    .pread = nbd_pread_cb,
    .pwrite = nbd_pwrite_cb,
    .flush = nbd_flush_cb,
    .trim = nbd_trim_cb,
    .zero = nbd_zero_cb,
    .cache = nbd_cache_cb,
    .extents = nbd_extents_cb,
    /* The kernel sends up to 128 requests per socket; so may we. */
    .max_in_flight = 128,
    .aio_pread = nbd_aio_pread_cb,
    .aio_pwrite = nbd_aio_pwrite_cb,
    .aio_flush = nbd_aio_flush_cb,
    .aio_trim = nbd_aio_trim_cb,
    .aio_zero = nbd_aio_zero_cb,
};
NBDD_BACKEND_REGISTER(nbd_backend)
