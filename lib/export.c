/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An export: one opened backend instance shared by every connection that
 * serves it. This is the one place where
 *  - the backend's thread model is enforced (NBDD_THREAD_SERIALIZE: the
 *    export's mutex is held around every callback);
 *  - the capabilities served are decided, from .capabilities or from the
 *    callbacks present, minus what a read-only export may not do;
 *  - missing features are emulated: FUA by a flush after the write, zero
 *    by writing zeroes, cache as a no-op, extents as "all data";
 *  - a backend's return value is turned into a valid negative errno and
 *    its message (nbdd_backend_error()) logged with the export's name.
 *
 * e->caps holds what the backend itself does, as served: NBDD_CAP_FUA
 * means native FUA, NBDD_CAP_ZERO an efficient zero. What is emulated on
 * top shows only in export_eflags().
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_WORKERS 8
#define MAX_WORKERS 1024
#define DEFAULT_PREFERRED 4096u
#define MAX_BLOCK_MIN 65536u
#define MAX_ERRNO 4095

/* Largest pwrite when zero is emulated; stays within any block maximum. */
#define ZERO_CHUNK (1u << 20)

/* Never written: the kernel maps it to its zero page, it costs no RSS. */
static uint8_t zero_area[ZERO_CHUNK];

/* Capabilities that only make sense for an export that can be written. */
#define WRITE_CAPS                                                             \
	(NBDD_CAP_WRITE | NBDD_CAP_TRIM | NBDD_CAP_ZERO | NBDD_CAP_FAST_ZERO | \
	 NBDD_CAP_FUA | NBDD_CAP_RESIZE)

/* ---- thread model and errors ---- */

static inline void enter(struct nbdd_export *e)
{
	if (e->b.thread_model == NBDD_THREAD_SERIALIZE)
		pthread_mutex_lock(&e->lock);
}

static inline void leave(struct nbdd_export *e)
{
	if (e->b.thread_model == NBDD_THREAD_SERIALIZE)
		pthread_mutex_unlock(&e->lock);
}

/*
 * Make @*r a valid negative errno and say why the backend failed: its own
 * message if it left one (without a "name: " we add anyway), else the
 * errno's.
 */
static const char *reason(const struct nbdd_export *e, int *r)
{
	const char *msg = take_backend_error();
	size_t n = strlen(e->b.name);

	if (*r > 0 || *r < -MAX_ERRNO)
		*r = -EIO;
	if (!msg)
		return strerror(-*r);
	if (!strncmp(msg, e->b.name, n) && msg[n] == ':' && msg[n + 1] == ' ')
		msg += n + 2;
	return msg;
}

/*
 * A backend failed a request (or returned garbage): log why, with the
 * export's name, and give the engine an errno it can put on the wire.
 */
static int failed(struct nbdd_export *e, const char *op, int r)
{
	int given = r;
	const char *why = reason(e, &r);

	if (r != given)
		log_warning("export '%s': %s returned %d from %s, not a "
			    "negative errno; reporting EIO",
			    e->name, e->b.name, given, op);
	/* FAST zero refused is the protocol working, not a failure. */
	if (r == -ENOTSUP && !strcmp(op, "zero"))
		log_debug("export '%s': %s: %s: %s", e->name, e->b.name, op,
			  why);
	else
		log_warning("export '%s': %s: %s failed: %s", e->name,
			    e->b.name, op, why);
	return r;
}

#define CHECK(e, op, r) ((r) == 0 ? 0 : failed((e), (op), (r)))

/* ---- the calls the engine makes ---- */

int export_pread(struct nbdd_export *e, void *buf, size_t count,
		 uint64_t offset, uint32_t flags)
{
	int r;

	enter(e);
	r = e->b.pread(e->handle, buf, count, offset, 0);
	leave(e);
	return CHECK(e, "pread", r);
}

int export_flush(struct nbdd_export *e)
{
	int r;

	if (!(e->caps & NBDD_CAP_FLUSH))
		return 0;
	enter(e);
	r = e->b.flush(e->handle, 0);
	leave(e);
	return CHECK(e, "flush", r);
}

/* FUA the backend cannot honour itself becomes a flush afterwards. */
static bool strip_fua(const struct nbdd_export *e, uint32_t *flags)
{
	if (!(*flags & NBDD_F_FUA) || (e->caps & NBDD_CAP_FUA))
		return false;
	*flags &= ~NBDD_F_FUA;
	return true;
}

int export_pwrite(struct nbdd_export *e, const void *buf, size_t count,
		  uint64_t offset, uint32_t flags)
{
	uint32_t f = flags & NBDD_F_FUA;
	bool fua = strip_fua(e, &f);
	int r;

	if (!(e->caps & NBDD_CAP_WRITE))
		return -EPERM;
	enter(e);
	r = e->b.pwrite(e->handle, buf, count, offset, f);
	leave(e);
	r = CHECK(e, "pwrite", r);
	return r == 0 && fua ? export_flush(e) : r;
}

int export_trim(struct nbdd_export *e, uint64_t count, uint64_t offset,
		uint32_t flags)
{
	uint32_t f = flags & NBDD_F_FUA;
	bool fua = strip_fua(e, &f);
	int r;

	if (!(e->caps & NBDD_CAP_WRITE))
		return -EPERM;
	if (!(e->caps & NBDD_CAP_TRIM))
		return -ENOTSUP;
	enter(e);
	r = e->b.trim(e->handle, count, offset, f);
	leave(e);
	r = CHECK(e, "trim", r);
	return r == 0 && fua ? export_flush(e) : r;
}

/* Zero without an efficient .zero: write zeroes, a bounded chunk at a time. */
static int zero_by_pwrite(struct nbdd_export *e, uint64_t count,
			  uint64_t offset)
{
	uint64_t chunk = MIN((uint64_t)ZERO_CHUNK, (uint64_t)e->bs.maximum);
	uint64_t n;
	int r = 0;

	while (count && r == 0) {
		n = MIN(count, chunk);
		enter(e);
		r = e->b.pwrite(e->handle, zero_area, (size_t)n, offset, 0);
		leave(e);
		r = CHECK(e, "pwrite (emulating zero)", r);
		offset += n;
		count -= n;
	}
	return r;
}

int export_zero(struct nbdd_export *e, uint64_t count, uint64_t offset,
		uint32_t flags)
{
	uint32_t f = flags & (NBDD_F_FUA | NBDD_F_MAY_TRIM | NBDD_F_FAST);
	bool fua = strip_fua(e, &f);
	int r;

	if (!(e->caps & NBDD_CAP_WRITE))
		return -EPERM;
	/* The client asked to know at once whether zeroing is cheap. */
	if ((f & NBDD_F_FAST) && !(e->caps & NBDD_CAP_FAST_ZERO))
		return -ENOTSUP;
	if (e->caps & NBDD_CAP_ZERO) {
		enter(e);
		r = e->b.zero(e->handle, count, offset, f);
		leave(e);
		r = CHECK(e, "zero", r);
	} else {
		r = zero_by_pwrite(e, count, offset);
	}
	return r == 0 && fua ? export_flush(e) : r;
}

int export_cache(struct nbdd_export *e, uint64_t count, uint64_t offset)
{
	int r;

	if (!(e->caps & NBDD_CAP_CACHE))
		return 0;
	enter(e);
	r = e->b.cache(e->handle, count, offset, 0);
	leave(e);
	return CHECK(e, "cache", r);
}

int export_extents(struct nbdd_export *e, uint64_t count, uint64_t offset,
		   uint32_t flags, struct nbdd_extents *out)
{
	int r;

	if (!(e->caps & NBDD_CAP_EXTENTS))
		return nbdd_extents_add(out, offset, count, 0);
	enter(e);
	r = e->b.extents(e->handle, count, offset, flags & NBDD_F_REQ_ONE, out);
	leave(e);
	r = CHECK(e, "extents", r);
	if (r == 0 && out->n == 0) {
		log_warning("export '%s': %s: extents reported nothing for "
			    "offset %llu; reporting EIO",
			    e->name, e->b.name, (unsigned long long)offset);
		r = -EIO;
	}
	return r;
}

/* ---- the asynchronous path ---- */

bool backend_has_aio(const struct nbdd_backend *b)
{
	return b->aio_pread || b->aio_pwrite || b->aio_flush || b->aio_trim ||
	       b->aio_zero;
}

bool export_can_submit(const struct nbdd_export *e, enum nbdd_op op,
		       uint32_t flags)
{
	const struct nbdd_backend *b = &e->b;
	bool writable = e->caps & NBDD_CAP_WRITE;

	switch (op) {
	case NBDD_OP_READ:
		return b->aio_pread;
	case NBDD_OP_WRITE:
		return b->aio_pwrite && writable;
	case NBDD_OP_FLUSH:
		return b->aio_flush && (e->caps & NBDD_CAP_FLUSH);
	case NBDD_OP_TRIM:
		return b->aio_trim && writable && (e->caps & NBDD_CAP_TRIM);
	case NBDD_OP_ZERO:
		return b->aio_zero && writable && (e->caps & NBDD_CAP_ZERO) &&
		       (!(flags & NBDD_F_FAST) ||
			(e->caps & NBDD_CAP_FAST_ZERO));
	default:
		return false;
	}
}

int export_submit(struct nbdd_export *e, struct nbdd_request *req,
		  enum nbdd_op op, void *buf, uint64_t count, uint64_t offset,
		  uint32_t flags)
{
	uint32_t f = flags & (NBDD_F_FUA | NBDD_F_MAY_TRIM | NBDD_F_FAST);
	int r;

	req->e = e;
	/* As export_pwrite() & co: no FLUSH capability, no flush to follow. */
	req->flush_after = strip_fua(e, &f) && op != NBDD_OP_READ &&
			   (e->caps & NBDD_CAP_FLUSH);
	switch (op) {
	case NBDD_OP_READ:
		req->op = "pread";
		r = e->b.aio_pread(e->handle, buf, (size_t)count, offset, 0,
				   req);
		break;
	case NBDD_OP_WRITE:
		req->op = "pwrite";
		r = e->b.aio_pwrite(e->handle, buf, (size_t)count, offset,
				    f & NBDD_F_FUA, req);
		break;
	case NBDD_OP_FLUSH:
		req->op = "flush";
		r = e->b.aio_flush(e->handle, 0, req);
		break;
	case NBDD_OP_TRIM:
		req->op = "trim";
		r = e->b.aio_trim(e->handle, count, offset, f & NBDD_F_FUA,
				  req);
		break;
	case NBDD_OP_ZERO:
		req->op = "zero";
		r = e->b.aio_zero(e->handle, count, offset, f, req);
		break;
	default:
		r = -EINVAL;
		break;
	}
	return CHECK(e, req->op, r);
}

NBDD_EXPORT void nbdd_request_done(struct nbdd_request *req, int result)
{
	/* A message left by a call that then succeeded must not linger. */
	if (result == 0)
		(void)take_backend_error();
	req->flush_pending = result == 0 && req->flush_after;
	req->done(req, CHECK(req->e, req->op, result));
}

/*
 * SEND_DF is set because reads honour DF; the NBD spec wants it clear for
 * a client that negotiated neither structured replies nor extended
 * headers, which only the handshake knows.
 *
 * SEND_RESIZE is never set: NBD_CMD_RESIZE is not served on the wire.
 * Resizing is nbdd_export_resize(), driven by the daemon, which then
 * tells the kernel (and new clients see the new size).
 */
uint16_t export_eflags(const struct nbdd_export *e)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_DF;
	uint32_t c = e->caps;

	if (e->readonly)
		f |= NBD_FLAG_READ_ONLY;
	if (c & NBDD_CAP_FLUSH)
		f |= NBD_FLAG_SEND_FLUSH;
	/* Native, or emulated by a flush. */
	if ((c & NBDD_CAP_FLUSH) && (c & NBDD_CAP_WRITE))
		f |= NBD_FLAG_SEND_FUA;
	if (c & NBDD_CAP_ROTATIONAL)
		f |= NBD_FLAG_ROTATIONAL;
	if (c & NBDD_CAP_TRIM)
		f |= NBD_FLAG_SEND_TRIM;
	/* Emulated when not native; FAST then honestly fails with ENOTSUP. */
	if (c & NBDD_CAP_WRITE)
		f |= NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
	if (c & NBDD_CAP_MULTI_CONN)
		f |= NBD_FLAG_CAN_MULTI_CONN;
	if (c & NBDD_CAP_CACHE)
		f |= NBD_FLAG_SEND_CACHE;
	return f;
}

bool export_is_inline(const struct nbdd_export *e)
{
	return e->b.flags & NBDD_BACKEND_INLINE;
}

/* ---- opening ---- */

/* What the callbacks present allow a backend to claim. */
static uint32_t callback_caps(const struct nbdd_backend *b)
{
	uint32_t c = NBDD_CAP_MULTI_CONN | NBDD_CAP_ROTATIONAL;

	if (b->pwrite)
		c |= NBDD_CAP_WRITE | NBDD_CAP_FUA;
	if (b->flush)
		c |= NBDD_CAP_FLUSH;
	if (b->trim)
		c |= NBDD_CAP_TRIM;
	if (b->zero)
		c |= NBDD_CAP_ZERO | NBDD_CAP_FAST_ZERO;
	if (b->cache)
		c |= NBDD_CAP_CACHE;
	if (b->extents)
		c |= NBDD_CAP_EXTENTS;
	if (b->resize)
		c |= NBDD_CAP_RESIZE;
	return c;
}

/*
 * Without .capabilities the callbacks speak for themselves, except for
 * promises a callback's mere presence cannot make: native FUA, honouring
 * FAST, multi-connection consistency, rotational media.
 */
static uint32_t implied_caps(const struct nbdd_backend *b)
{
	return callback_caps(b) & ~(NBDD_CAP_FUA | NBDD_CAP_FAST_ZERO |
				    NBDD_CAP_MULTI_CONN | NBDD_CAP_ROTATIONAL);
}

static int setup_caps(struct nbdd_export *e)
{
	uint32_t c = implied_caps(&e->b), claimed;
	const char *why;
	int r;

	if (e->b.capabilities) {
		r = e->b.capabilities(e->handle, &c);
		if (r) {
			why = reason(e, &r);
			return set_error(r, "backend %s: capabilities: %s",
					 e->b.name, why);
		}
		claimed = c;
		c &= callback_caps(&e->b);
		if (c != claimed)
			log_debug("export '%s': %s claims capabilities 0x%x "
				  "without their callbacks; ignored",
				  e->name, e->b.name, claimed & ~c);
	}
	if (!(c & NBDD_CAP_WRITE))
		e->readonly = true;
	if (e->readonly) {
		c &= ~WRITE_CAPS;
		/* One instance serves every connection and nothing changes. */
		c |= NBDD_CAP_MULTI_CONN;
	}
	if (!(c & NBDD_CAP_FLUSH))
		c &= ~NBDD_CAP_FUA;
	if (!(c & NBDD_CAP_ZERO))
		c &= ~NBDD_CAP_FAST_ZERO;
	e->caps = c;
	return 0;
}

static bool pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* Why @bs is unacceptable, or NULL. */
static const char *block_size_problem(const struct nbdd_block_size *bs)
{
	if (!pow2(bs->minimum) || bs->minimum > MAX_BLOCK_MIN)
		return "the minimum must be a power of two from 1 to 65536";
	if (!pow2(bs->preferred) || bs->preferred < bs->minimum)
		return "the preferred size must be a power of two, at least "
		       "the minimum";
	if (bs->preferred > NBDD_MAX_PAYLOAD)
		return "the preferred size must be at most 32 MiB";
	if (bs->maximum != UINT32_MAX && bs->maximum % bs->minimum)
		return "the maximum must be a multiple of the minimum";
	if (bs->maximum < bs->preferred)
		return "the maximum must be at least the preferred size";
	return NULL;
}

static int setup_block_size(struct nbdd_export *e)
{
	struct nbdd_block_size bs = {0};
	const char *why;
	int r;

	if (e->b.block_size) {
		r = e->b.block_size(e->handle, &bs);
		if (r) {
			why = reason(e, &r);
			return set_error(r, "backend %s: block_size: %s",
					 e->b.name, why);
		}
	}
	if (!bs.minimum)
		bs.minimum = 1;
	if (!bs.preferred)
		bs.preferred = MAX(DEFAULT_PREFERRED, bs.minimum);
	if (!bs.maximum)
		bs.maximum = MAX((uint32_t)NBDD_MAX_PAYLOAD, bs.preferred);
	why = block_size_problem(&bs);
	if (why)
		return set_error(-EINVAL,
				 "backend %s: invalid block sizes "
				 "(minimum %u, preferred %u, maximum %u): %s",
				 e->b.name, bs.minimum, bs.preferred,
				 bs.maximum, why);
	/* Nothing larger ever reaches a backend in one call. */
	bs.maximum = MIN(bs.maximum, (uint32_t)NBDD_MAX_PAYLOAD);
	e->bs = bs;
	return 0;
}

static int setup_size(struct nbdd_export *e)
{
	uint64_t size = 0;
	const char *why;
	int r;

	r = e->b.get_size(e->handle, &size);
	if (r) {
		why = reason(e, &r);
		return set_error(r, "backend %s: get_size: %s", e->b.name, why);
	}
	if (size % e->bs.minimum)
		log_warning("export '%s': size %llu is not a multiple of the "
			    "minimum block size %u; the tail is unreachable",
			    e->name, (unsigned long long)size, e->bs.minimum);
	atomic_store(&e->size, size);
	return 0;
}

static int check_options(const struct nbdd_export_options *o)
{
	if (o->name && strlen(o->name) > NBDD_MAX_STRING)
		return set_error(-EINVAL, "export name longer than %u bytes",
				 NBDD_MAX_STRING);
	if (o->description && strlen(o->description) > NBDD_MAX_STRING)
		return set_error(-EINVAL,
				 "export description longer than %u "
				 "bytes",
				 NBDD_MAX_STRING);
	if (o->workers > MAX_WORKERS)
		return set_error(-EINVAL,
				 "workers must be 1 to %u (0: what the "
				 "backend asks for, else %u)",
				 MAX_WORKERS, DEFAULT_WORKERS);
	return 0;
}

static void export_free(struct nbdd_export *e)
{
	if (e->dl)
		dlclose(e->dl);
	pthread_mutex_destroy(&e->lock);
	free(e->name);
	free(e->description);
	free(e->spec);
	free(e);
}

static struct nbdd_export *export_alloc(const struct nbdd_export_options *o,
					const char *description, bool readonly)
{
	struct nbdd_export *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	atomic_init(&e->refs, 1);
	pthread_mutex_init(&e->lock, NULL);
	e->readonly = readonly;
	e->workers = o->workers; /* 0: the backend's wish, in export_start() */
	e->name = strdup(o->name ? o->name : "");
	if (description)
		e->description = strdup(description);
	if (!e->name || (description && !e->description)) {
		export_free(e);
		return NULL;
	}
	return e;
}

/* Open the backend instance in @e (whose .b is filled) and probe it. */
static int export_start(struct nbdd_export *e, const struct nbdd_param *p,
			size_t np)
{
	const char *why;
	int r;

	if (!e->workers)
		e->workers = e->b.max_in_flight
				     ? MIN(e->b.max_in_flight, MAX_WORKERS)
				     : DEFAULT_WORKERS;
	(void)take_backend_error(); /* nothing stale in our messages */
	r = e->b.open(p, np, e->readonly, &e->handle);
	if (r) {
		why = reason(e, &r);
		return set_error(r, "backend %s: %s", e->b.name, why);
	}
	r = setup_caps(e);
	if (!r)
		r = setup_block_size(e);
	if (!r)
		r = setup_size(e);
	if (r && e->b.close)
		e->b.close(e->handle);
	return r;
}

static const struct nbdd_export_options no_options;

NBDD_EXPORT int nbdd_export_new(const struct nbdd_backend *backend,
				const struct nbdd_param *params, size_t nparams,
				const struct nbdd_export_options *opts,
				struct nbdd_export **out)
{
	struct nbdd_export *e;
	int r;

	if (!out || (nparams && !params))
		return set_error(-EINVAL, "nbdd_export_new: bad arguments");
	opts = opts ? opts : &no_options;
	r = check_options(opts);
	if (r)
		return r;
	e = export_alloc(opts, opts->description, opts->readonly);
	if (!e)
		return set_error(-ENOMEM, "out of memory");
	r = backend_copy(backend, &e->b, "the program's backend");
	if (!r)
		r = export_start(e, params, nparams);
	if (r) {
		export_free(e);
		return r;
	}
	*out = e;
	return 0;
}

/* The table for @s->backend: built in, or loaded from a plugin. */
static int load_backend(const struct backend_spec *s, struct nbdd_export *e)
{
	const struct nbdd_backend *b = builtin_backend(s->backend);

	if (b)
		return backend_copy(b, &e->b, s->backend);
	return plugin_load(s->backend, &e->b, &e->dl);
}

NBDD_EXPORT int nbdd_export_open(const char *spec,
				 const struct nbdd_export_options *opts,
				 struct nbdd_export **out)
{
	struct backend_spec s;
	struct nbdd_export *e;
	int r;

	if (!spec || !out)
		return set_error(-EINVAL, "nbdd_export_open: bad arguments");
	opts = opts ? opts : &no_options;
	r = check_options(opts);
	if (r)
		return r;
	r = spec_resolve(spec, &s);
	if (r)
		return r;
	e = export_alloc(opts,
			 opts->description ? opts->description : s.description,
			 opts->readonly || s.readonly == 1);
	if (!e || !(e->spec = strdup(spec))) {
		r = set_error(-ENOMEM, "out of memory");
		goto out;
	}
	r = load_backend(&s, e);
	if (!r)
		r = export_start(e, s.params, s.nparams);
out:
	spec_free(&s);
	if (r && e)
		export_free(e);
	if (!r)
		*out = e;
	return r;
}

NBDD_EXPORT struct nbdd_export *nbdd_export_ref(struct nbdd_export *e)
{
	if (e)
		atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	return e;
}

NBDD_EXPORT void nbdd_export_unref(struct nbdd_export *e)
{
	if (!e ||
	    atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Nobody else holds it: what was acknowledged must be durable. */
	if (!e->readonly)
		export_flush(e);
	if (e->b.close)
		e->b.close(e->handle);
	export_free(e);
}

NBDD_EXPORT const char *nbdd_export_name(const struct nbdd_export *e)
{
	return e->name;
}

NBDD_EXPORT const char *nbdd_export_backend_name(const struct nbdd_export *e)
{
	return e->b.name;
}

NBDD_EXPORT uint64_t nbdd_export_size(const struct nbdd_export *e)
{
	return atomic_load(&((struct nbdd_export *)e)->size);
}

NBDD_EXPORT bool nbdd_export_volatile(const struct nbdd_export *e)
{
	return e->b.flags & NBDD_BACKEND_VOLATILE;
}

NBDD_EXPORT int nbdd_export_refresh_size(struct nbdd_export *e)
{
	uint64_t size = 0;
	int r;

	if (!(e->b.flags & NBDD_BACKEND_SIZE_CHANGES))
		return -ENOTSUP;
	enter(e);
	r = e->b.get_size(e->handle, &size);
	leave(e);
	if (r) {
		const char *why = reason(e, &r);

		return set_error(r, "backend %s: size: %s", e->b.name, why);
	}
	return atomic_exchange(&e->size, size) != size;
}

NBDD_EXPORT bool nbdd_export_readonly(const struct nbdd_export *e)
{
	return e->readonly;
}

NBDD_EXPORT uint32_t nbdd_export_capabilities(const struct nbdd_export *e)
{
	return e->caps;
}

NBDD_EXPORT void nbdd_export_block_size(const struct nbdd_export *e,
					struct nbdd_block_size *bs)
{
	*bs = e->bs;
}

NBDD_EXPORT int nbdd_export_resize(struct nbdd_export *e, uint64_t new_size)
{
	uint64_t size = new_size;
	const char *why;
	int r;

	if (e->readonly)
		return set_error(-EPERM, "export '%s' is read-only", e->name);
	if (!(e->caps & NBDD_CAP_RESIZE))
		return set_error(-ENOTSUP, "backend %s cannot resize %s",
				 e->b.name, e->name);
	if (new_size % e->bs.minimum)
		return set_error(-EINVAL,
				 "size %llu is not a multiple of the "
				 "minimum block size %u",
				 (unsigned long long)new_size, e->bs.minimum);
	enter(e);
	r = e->b.resize(e->handle, new_size);
	/* The backend may have rounded: believe what it reports. */
	if (r == 0 && e->b.get_size(e->handle, &size))
		size = new_size;
	leave(e);
	if (r) {
		why = reason(e, &r);
		return set_error(r, "backend %s: resize to %llu: %s", e->b.name,
				 (unsigned long long)new_size, why);
	}
	atomic_store(&e->size, size);
	return 0;
}
