/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rbd:pool=P,image=I[,namespace=N][,snap=S][,conf=FILE][,id=NAME]
 *     [,keyring=FILE][,exclusive=on][,timeout=SECONDS]
 *     [,connect_timeout=SECONDS][,cache=on]
 * — a Ceph RBD image through librbd, as rbd-nbd serves one.
 *
 * One cluster connection and one image handle per export, shared by all
 * its connections (NBDD_THREAD_PARALLEL; io.c is the data path, through
 * the asynchronous callbacks).
 * Because every NBD connection goes through that one handle (and, with
 * cache=on, its one cache), a flush on any connection covers writes made
 * on all of them:
 * multi-conn is advertised. Other Ceph clients of the same image are
 * kept consistent by Ceph's exclusive lock, which librbd passes between
 * writers unless exclusive=on pins it to us.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rbd.h"

/* Connecting never waits longer than this unless told to. */
#define DEFAULT_CONNECT_TIMEOUT "30"

struct options {
	const char *pool, *image, *namespace, *snap, *conf, *id, *keyring;
	const char *timeout, *connect_timeout;
	bool exclusive;
	bool cache;
};

/* ---- parameters ---- */

static bool parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") ||
	    !strcmp(v, "1"))
		*out = true;
	else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no") ||
		 !strcmp(v, "0"))
		*out = false;
	else
		return false;
	return true;
}

/* Whole seconds, 0..86400 (0 = Ceph's "no timeout"). */
static bool valid_seconds(const char *v)
{
	char *end;
	unsigned long s;

	if (*v < '0' || *v > '9')
		return false;
	errno = 0;
	s = strtoul(v, &end, 10);
	return !errno && !*end && s <= 86400;
}

static const char **string_option(struct options *o, const char *key)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
	    {"pool", offsetof(struct options, pool)},
	    {"image", offsetof(struct options, image)},
	    {"namespace", offsetof(struct options, namespace)},
	    {"snap", offsetof(struct options, snap)},
	    {"conf", offsetof(struct options, conf)},
	    {"id", offsetof(struct options, id)},
	    {"keyring", offsetof(struct options, keyring)},
	    {"timeout", offsetof(struct options, timeout)},
	    {"connect_timeout", offsetof(struct options, connect_timeout)},
	};
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strcmp(key, keys[i].key))
			return (const char **)((char *)o + keys[i].off);
	return NULL;
}

static bool *bool_option(struct options *o, const char *key)
{
	if (!strcmp(key, "exclusive"))
		return &o->exclusive;
	if (!strcmp(key, "cache"))
		return &o->cache;
	return NULL;
}

static int parse_params(const struct nbdd_param *p, size_t n, struct options *o)
{
	const char **slot;
	bool *flag;
	size_t i;

	for (i = 0; i < n; i++) {
		flag = bool_option(o, p[i].key);
		if (flag) {
			if (!parse_bool(p[i].value, flag)) {
				nbdd_backend_error("rbd: %s must be on or off, "
						   "not '%s'",
						   p[i].key, p[i].value);
				return -EINVAL;
			}
			continue;
		}
		slot = string_option(o, p[i].key);
		if (!slot) {
			nbdd_backend_error(
			    "rbd: unknown parameter '%s' (rbd takes pool=, "
			    "image=, namespace=, snap=, conf=, id=, "
			    "keyring=, exclusive=, timeout=, "
			    "connect_timeout=, cache=)",
			    p[i].key);
			return -EINVAL;
		}
		if (!*p[i].value) {
			nbdd_backend_error("rbd: %s= is empty", p[i].key);
			return -EINVAL;
		}
		*slot = p[i].value;
	}
	if (!o->pool || !o->image) {
		nbdd_backend_error(
		    "rbd: pool=POOL and image=IMAGE are required");
		return -EINVAL;
	}
	if ((o->timeout && !valid_seconds(o->timeout)) ||
	    (o->connect_timeout && !valid_seconds(o->connect_timeout))) {
		nbdd_backend_error("rbd: %s must be whole seconds (0..86400)",
				   o->timeout && !valid_seconds(o->timeout)
				       ? "timeout"
				       : "connect_timeout");
		return -EINVAL;
	}
	return 0;
}

/* ---- connecting ---- */

static int set(rados_t cluster, const char *key, const char *value)
{
	int e = rados_conf_set(cluster, key, value);

	if (e < 0)
		nbdd_backend_error("rbd: cannot set Ceph option %s=%s: %s", key,
				   value, strerror(-e));
	return e;
}

/*
 * Our defaults first, then the configuration file (which may override
 * them), then what the spec says (which overrides both).
 */
static int configure(rados_t cluster, const struct options *o)
{
	int e;

	if ((e = set(cluster, "client_mount_timeout",
		     DEFAULT_CONNECT_TIMEOUT)) < 0 ||
	    /* Our own messages say what failed; Ceph's go to its log. */
	    (e = set(cluster, "log_to_stderr", "false")) < 0 ||
	    (e = set(cluster, "err_to_stderr", "false")) < 0)
		return e;
	e = rados_conf_read_file(cluster, o->conf);
	if (e < 0) {
		if (o->conf)
			nbdd_backend_error("rbd: cannot read Ceph "
					   "configuration %s: %s",
					   o->conf, strerror(-e));
		else
			nbdd_backend_error("rbd: no Ceph configuration found "
					   "(/etc/ceph/ceph.conf, $CEPH_CONF, "
					   "~/.ceph/config): give conf=FILE");
		return e;
	}
	if (o->keyring && (e = set(cluster, "keyring", o->keyring)) < 0)
		return e;
	if (o->connect_timeout &&
	    (e = set(cluster, "client_mount_timeout", o->connect_timeout)) < 0)
		return e;
	if (o->timeout &&
	    ((e = set(cluster, "rados_osd_op_timeout", o->timeout)) < 0 ||
	     (e = set(cluster, "rados_mon_op_timeout", o->timeout)) < 0))
		return e;
	/*
	 * After the configuration file, which may say "rbd cache = true"
	 * for virtual machines: once a client has flushed, librbd's cache
	 * acknowledges writes before any OSD has them (write-around or
	 * write-back). A successor nbdd cannot recover those after a crash,
	 * yet the kernel believes them written and its next flush succeeds:
	 * a running filesystem would lose data it never hears about. So the
	 * cache is off unless the spec turns it on.
	 */
	return set(cluster, "rbd_cache", o->cache ? "true" : "false");
}

static int connect_error(const struct options *o, int e)
{
	const char *who = o->id ? o->id : "admin";

	switch (-e) {
	case ENOENT:
		nbdd_backend_error("rbd: no key for client.%s: give "
				   "keyring=FILE (or keyring= in the Ceph "
				   "configuration)",
				   who);
		break;
	case EACCES:
	case EPERM:
		nbdd_backend_error("rbd: the monitors refused client.%s: wrong "
				   "key in the keyring, or no such user "
				   "(ceph auth get client.%s)",
				   who, who);
		break;
	case ETIMEDOUT:
		nbdd_backend_error("rbd: no answer from the monitors (mon_host "
				   "in the Ceph configuration) within "
				   "connect_timeout=%s s: is the cluster up "
				   "and reachable?",
				   o->connect_timeout
				       ? o->connect_timeout
				       : DEFAULT_CONNECT_TIMEOUT);
		break;
	default:
		nbdd_backend_error("rbd: cannot connect to the cluster as "
				   "client.%s: %s",
				   who, strerror(-e));
	}
	return e;
}

static int connect_cluster(struct rbd *r, const struct options *o)
{
	int e;

	e = rados_create(&r->cluster, o->id);
	if (e < 0) {
		nbdd_backend_error("rbd: cannot create a Ceph client for id "
				   "'%s': %s",
				   o->id ? o->id : "admin", strerror(-e));
		r->cluster = NULL;
		return e;
	}
	e = configure(r->cluster, o);
	if (e < 0)
		return e;
	e = rados_connect(r->cluster);
	if (e < 0)
		return connect_error(o, e);
	e = rados_ioctx_create(r->cluster, o->pool, &r->io);
	if (e < 0) {
		r->io = NULL;
		if (e == -ENOENT)
			nbdd_backend_error("rbd: pool '%s' does not exist "
					   "(ceph osd pool ls lists them)",
					   o->pool);
		else
			nbdd_backend_error("rbd: cannot open pool '%s': %s",
					   o->pool, strerror(-e));
		return e;
	}
	if (o->namespace)
		rados_ioctx_set_namespace(r->io, o->namespace);
	return 0;
}

/* ---- opening the image ---- */

static int image_error(struct rbd *r, const struct options *o, int e)
{
	rbd_image_t probe;

	if (e == -ENOENT && o->snap &&
	    rbd_open_read_only(r->io, o->image, &probe, NULL) == 0) {
		rbd_close(probe);
		nbdd_backend_error("rbd: image '%s' in pool '%s' has no "
				   "snapshot '%s' (rbd snap ls lists them)",
				   o->image, o->pool, o->snap);
	} else if (e == -ENOENT) {
		nbdd_backend_error("rbd: no image '%s' in pool '%s'%s%s (rbd "
				   "ls lists them)",
				   o->image, o->pool,
				   o->namespace ? ", namespace " : "",
				   o->namespace ? o->namespace : "");
	} else if (e == -EACCES || e == -EPERM) {
		nbdd_backend_error("rbd: client.%s may not open %s: its caps "
				   "need 'profile rbd' on the pool",
				   o->id ? o->id : "admin", r->name);
	} else {
		nbdd_backend_error("rbd: cannot open %s: %s", r->name,
				   strerror(-e));
	}
	return e;
}

/* exclusive=on: take the lock and keep it, as rbd-nbd --exclusive does. */
static int lock_image(struct rbd *r)
{
	int e = rbd_lock_acquire(r->image, RBD_LOCK_MODE_EXCLUSIVE);

	if (e == -EOPNOTSUPP || e == -EINVAL)
		nbdd_backend_error("rbd: exclusive=on: image %s has no "
				   "exclusive-lock feature (rbd feature "
				   "enable %s exclusive-lock)",
				   r->name, r->name);
	else if (e == -EROFS || e == -EBUSY)
		nbdd_backend_error("rbd: exclusive=on: image %s is locked by "
				   "another client (rbd status %s shows "
				   "which)",
				   r->name, r->name);
	else if (e < 0)
		nbdd_backend_error("rbd: exclusive=on: cannot lock %s: %s",
				   r->name, strerror(-e));
	return e;
}

/*
 * A pool's or an image's own settings (rbd config pool|image set) are
 * applied at open, over ours: refuse a cache the spec did not ask for,
 * rather than run with one silently.
 */
static int check_cache(struct rbd *r, bool wanted)
{
	rbd_config_option_t *opts = NULL;
	const char *where = NULL;
	int e, i, n = 0;

	if (wanted)
		return 0;
	e = rbd_config_image_list(r->image, NULL, &n);
	if (e == -ERANGE && n > 0) {
		opts = calloc((size_t)n, sizeof(*opts));
		e = opts ? rbd_config_image_list(r->image, opts, &n) : -ENOMEM;
	}
	if (e < 0) {
		free(opts);
		nbdd_backend_error("rbd: cannot read the configuration of %s: "
				   "%s", r->name, strerror(-e));
		return e;
	}
	for (i = 0; i < n; i++)
		if (!strcmp(opts[i].name, "rbd_cache") &&
		    !strcmp(opts[i].value, "true"))
			where = opts[i].source == RBD_CONFIG_SOURCE_IMAGE ? "image"
				: opts[i].source == RBD_CONFIG_SOURCE_POOL ? "pool"
									  : NULL;
	if (where)
		nbdd_backend_error("rbd: the %s configuration of %s turns "
				   "rbd_cache on, which lets a crash of nbdd "
				   "lose acknowledged writes: remove it (rbd "
				   "config %s rm ... rbd_cache) or give cache=on",
				   where, r->name, where);
	rbd_config_image_list_cleanup(opts, n);
	free(opts);
	return where ? -EINVAL : 0;
}

static void rbd_close_handle(void *handle)
{
	struct rbd *r = handle;

	if (r->image) {
		if (r->exclusive)
			rbd_lock_release(r->image);
		rbd_close(r->image);
	}
	if (r->io)
		rados_ioctx_destroy(r->io);
	if (r->cluster)
		rados_shutdown(r->cluster);
	free(r->name);
	free(r);
}

static int rbd_open_handle(const struct nbdd_param *params, size_t nparams,
			   int readonly, void **handle)
{
	struct options o = {0};
	struct rbd *r;
	int e;

	e = parse_params(params, nparams, &o);
	if (e < 0)
		return e;
	if (o.exclusive && (readonly || o.snap)) {
		nbdd_backend_error("rbd: exclusive=on locks an image for "
				   "writing: not with snap= or a read-only "
				   "export");
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	if (asprintf(&r->name, "%s/%s%s%s%s%s", o.pool,
		     o.namespace ? o.namespace : "", o.namespace ? "/" : "",
		     o.image, o.snap ? "@" : "", o.snap ? o.snap : "") < 0) {
		r->name = NULL;
		e = -ENOMEM;
		goto fail;
	}
	r->writable = !readonly && !o.snap;
	e = connect_cluster(r, &o);
	if (e < 0)
		goto fail;
	e = r->writable ? rbd_open(r->io, o.image, &r->image, NULL)
			: rbd_open_read_only(r->io, o.image, &r->image, o.snap);
	if (e < 0) {
		r->image = NULL;
		image_error(r, &o, e);
		goto fail;
	}
	e = check_cache(r, o.cache);
	if (e < 0)
		goto fail;
	if (o.exclusive) {
		e = lock_image(r);
		if (e < 0)
			goto fail;
		r->exclusive = true;
	}
	*handle = r;
	return 0;
fail:
	rbd_close_handle(r);
	return e;
}

/* ---- size and capabilities ---- */

static int rbd_get_size_cb(void *handle, uint64_t *size)
{
	struct rbd *r = handle;
	int e = rbd_get_size(r->image, size);

	if (e < 0)
		nbdd_backend_error("rbd: size of %s: %s", r->name,
				   strerror(-e));
	return e;
}

/*
 * FUA is not native: librbd has no write-through flag we could rely on,
 * so nbdd turns FUA into a flush after the write. Fast zero is not
 * promised: write_zeroes may have to write.
 */
static int rbd_capabilities(void *handle, uint32_t *caps)
{
	struct rbd *r = handle;

	*caps = NBDD_CAP_FLUSH | NBDD_CAP_EXTENTS | NBDD_CAP_MULTI_CONN;
	if (r->writable)
		*caps |= NBDD_CAP_WRITE | NBDD_CAP_TRIM | NBDD_CAP_ZERO |
			 NBDD_CAP_RESIZE;
	return 0;
}

static int rbd_resize_cb(void *handle, uint64_t new_size)
{
	struct rbd *r = handle;
	int e = rbd_resize(r->image, new_size);

	if (e < 0)
		nbdd_backend_error("rbd: resize of %s to %llu bytes: %s",
				   r->name, (unsigned long long)new_size,
				   strerror(-e));
	return e;
}

static const struct nbdd_backend rbd_backend = {
    NBDD_BACKEND_HEADER,
    .name = "rbd",
    .description = "a Ceph RBD image, through librbd",
    .help = "pool=POOL          the RADOS pool (required)\n"
	    "image=IMAGE        the RBD image (required)\n"
	    "namespace=NS       the pool namespace\n"
	    "snap=SNAP          serve a snapshot, read-only\n"
	    "conf=FILE          Ceph configuration (default: Ceph's search)\n"
	    "id=NAME            the client.NAME to authenticate as (admin)\n"
	    "keyring=FILE       that client's keyring\n"
	    "exclusive=on       take the exclusive lock and keep it\n"
	    "timeout=SECONDS    fail I/O Ceph cannot do in time (0: wait)\n"
	    "connect_timeout=SECONDS  give up connecting (30)\n"
	    "cache=on           librbd's cache: faster small writes, but a "
	    "crash of nbdd loses writes it acknowledged",
    .thread_model = NBDD_THREAD_PARALLEL,
    /* Another host, or the rbd CLI, may resize the image. */
    .flags = NBDD_BACKEND_SIZE_CHANGES,
    /* A cluster gains from many requests in flight: as many as the
     * kernel sends on a socket. */
    .max_in_flight = 128,
    .open = rbd_open_handle,
    .close = rbd_close_handle,
    .get_size = rbd_get_size_cb,
    .capabilities = rbd_capabilities,
    .pread = rbd_plugin_pread,
    .pwrite = rbd_plugin_pwrite,
    .flush = rbd_plugin_flush,
    .trim = rbd_plugin_trim,
    .zero = rbd_plugin_zero,
    .extents = rbd_plugin_extents,
    .resize = rbd_resize_cb,
    .aio_pread = rbd_plugin_aio_pread,
    .aio_pwrite = rbd_plugin_aio_pwrite,
    .aio_flush = rbd_plugin_aio_flush,
    .aio_trim = rbd_plugin_aio_trim,
    .aio_zero = rbd_plugin_aio_zero,
};

NBDD_BACKEND_REGISTER(rbd_backend)
