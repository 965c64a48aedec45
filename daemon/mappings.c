/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The table of kernel mappings: /dev/nbdN <-> an opened backend.
 *
 * The table lives on the loop thread alone: requests are checked and the
 * table changed there, and the worker only runs the blocking library
 * calls on copies (job structs). An entry's state says who may touch its
 * nbdd_mapping: while ATTACHING or DETACHING the worker owns it and the
 * loop reports the entry without looking inside.
 *
 * The serving threads of a mapping belong to the library; an entry only
 * watches nbdd_mapping_fd() to learn when the kernel ended it.
 *
 * Every change is written to the state file (state.c), so a later nbdd
 * can take the devices over if this one dies (recovery.c).
 *
 * Recovery: when every connection of a mapping ends but the kernel
 * still holds the device (its request timeout killed a socket, or the
 * sockets broke), the mapping is not over: the worker hands the device
 * new sockets (nbdd_mapping_adopt(), RECONFIGURE) and the kernel resends
 * what was in flight. A device nobody can serve again (its backend
 * cannot be opened, its data was in a dead process's memory, the
 * kernel's dead-conn timeout ran out) is FAILED: its I/O fails at once,
 * `list` says why, and `detach` releases it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nbdd/kernel.h>

#include "daemon.h"

enum mstate {
	M_ATTACHING,
	M_CONNECTED,
	M_DEGRADED,
	M_RECOVERING, /* the worker is giving the device new sockets */
	M_FAILED,     /* nothing serves the device; detach releases it */
	M_DETACHING,
};

static const char *const state_names[] = {
	[M_ATTACHING] = "attaching",
	[M_CONNECTED] = "connected",
	[M_DEGRADED] = "degraded",
	[M_RECOVERING] = "recovering",
	[M_FAILED] = "failed",
	[M_DETACHING] = "detaching",
};

/* A device whose sockets ended is checked this long for a DISCONNECT. */
#define ENDED_WAIT_MS 2000

struct mapping {
	uint64_t id;
	enum mstate state;
	int index;                     /* -1 until the kernel has picked */
	char name[CTL_MAX_NAME + 16];  /* "" until known */
	char *spec;
	struct nbdd_attach_options opts; /* as asked (index, timeouts, ...) */
	time_t attached_at;
	struct nbdd_mapping *m;        /* once attached */
	/* Copied from m when attached: readable while the worker owns m. */
	char backend[64];
	uint64_t size;
	bool readonly;
	unsigned conns;
	uint32_t block_size;
	struct loop_source src;        /* m's event fd, while connected */
	/* Recovery */
	unsigned recoveries;           /* new sockets handed to the kernel */
	unsigned link_dead;            /* the kernel's link-dead events */
	time_t recovered_at;
	char error[1100];              /* why it failed ("" unless FAILED) */
	struct mapping *next;
};

static struct {
	struct mapping *head;
	uint64_t next_id;
	unsigned count;
	char *state_path;
	uint32_t dead_conn_timeout; /* defaults for attach */
	uint32_t timeout;
} tab;

/* ---- the table ---- */

static struct mapping *find_id(uint64_t id)
{
	struct mapping *p;

	for (p = tab.head; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

static struct mapping *find_name(const char *name)
{
	struct mapping *p;

	for (p = tab.head; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

static struct mapping *find_index(int index)
{
	struct mapping *p;

	for (p = tab.head; p; p = p->next)
		if (p->index == index)
			return p;
	return NULL;
}

static void entry_free(struct mapping *e)
{
	struct mapping **p;

	for (p = &tab.head; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			break;
		}
	loop_remove(&e->src);
	free(e->spec);
	free(e);
	tab.count--;
}

static bool attached(const struct mapping *e)
{
	return e->state == M_CONNECTED || e->state == M_DEGRADED;
}

unsigned mappings_count(void)
{
	return tab.count;
}

/* ---- JSON for list, status and the state file ---- */

static void add_device(json_object *o, int index)
{
	char dev[32];

	snprintf(dev, sizeof(dev), "/dev/nbd%d", index);
	json_object_object_add(o, "device",
			       index < 0 ? NULL : json_object_new_string(dev));
	json_object_object_add(o, "index", json_object_new_int(index));
}

static void add_uint(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static json_object *entry_json(const struct mapping *e)
{
	json_object *o = json_object_new_object();
	bool known = e->state != M_ATTACHING;

	if (!o)
		return NULL;
	add_device(o, e->index);
	json_object_object_add(o, "name", e->name[0] ? json_object_new_string(
							       e->name)
						     : NULL);
	json_object_object_add(o, "spec", json_object_new_string(e->spec));
	json_object_object_add(o, "state",
			       json_object_new_string(state_names[e->state]));
	json_object_object_add(o, "backend",
			       known ? json_object_new_string(e->backend)
				     : NULL);
	add_uint(o, "size", known ? e->size : 0);
	json_object_object_add(o, "readonly", json_object_new_boolean(
					known ? e->readonly : e->opts.readonly));
	add_uint(o, "connections", known ? e->conns : e->opts.connections);
	if (attached(e))
		add_uint(o, "live", nbdd_mapping_live(e->m));
	add_uint(o, "block_size", known ? e->block_size : e->opts.block_size);
	add_uint(o, "timeout", e->opts.timeout);
	add_uint(o, "dead_conn_timeout", e->opts.dead_conn_timeout);
	json_object_object_add(o, "attached_at",
			       json_object_new_int64(e->attached_at));
	add_uint(o, "recoveries", e->recoveries);
	add_uint(o, "link_dead_events", e->link_dead);
	json_object_object_add(o, "recovered_at",
			       json_object_new_int64(e->recovered_at));
	json_object_object_add(o, "error", e->error[0] ? json_object_new_string(
								e->error)
						       : NULL);
	return o;
}

/* What list shows, taken while the loop still owns m. */
static void entry_describe(struct mapping *e)
{
	struct nbdd_export *x = nbdd_mapping_export(e->m);

	snprintf(e->backend, sizeof(e->backend), "%s",
		 nbdd_export_backend_name(x));
	e->size = nbdd_export_size(x);
	e->readonly = e->opts.readonly || nbdd_export_readonly(x);
	e->conns = nbdd_mapping_connections(e->m);
	if (nbdd_sysfs_block_size(e->index, &e->block_size) < 0)
		e->block_size = e->opts.block_size;
}

static json_object *state_json(void)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();
	struct mapping *e;

	/* Everything a successor may have to take over or release. */
	for (e = tab.head; a && e; e = e->next)
		if (e->m || e->state == M_RECOVERING || e->state == M_FAILED)
			json_object_array_add(a, entry_json(e));
	if (o) {
		json_object_object_add(o, "version", json_object_new_int(1));
		json_object_object_add(o, "pid", json_object_new_int(getpid()));
		json_object_object_add(o, "mappings", a);
	} else {
		json_object_put(a);
	}
	return o;
}

void mappings_save(void)
{
	json_object *s;

	if (!tab.state_path)
		return;
	s = state_json();
	if (s)
		state_write(tab.state_path, s);
	json_object_put(s);
}

/* By device; mappings whose device is not known yet last. */
static int by_index(const void *a, const void *b)
{
	unsigned x = (unsigned)(*(struct mapping *const *)a)->index;
	unsigned y = (unsigned)(*(struct mapping *const *)b)->index;

	return x < y ? -1 : x > y;
}

json_object *mappings_list(void)
{
	json_object *o = ctl_reply_ok(), *a = json_object_new_array();
	struct mapping **v = calloc(tab.count + 1, sizeof(*v)), *e;
	size_t n = 0, i;

	if (!o || !a || !v) {
		json_object_put(o);
		json_object_put(a);
		free(v);
		return NULL;
	}
	for (e = tab.head; e; e = e->next)
		v[n++] = e;
	qsort(v, n, sizeof(*v), by_index);
	for (i = 0; i < n; i++)
		json_object_array_add(a, entry_json(v[i]));
	free(v);
	json_object_object_add(o, "mappings", a);
	return o;
}

static json_object *ops_json(const struct nbdd_op_stats *ops)
{
	json_object *o = json_object_new_object();
	int i;

	for (i = 0; o && i < NBDD_OP__COUNT; i++) {
		json_object *s = json_object_new_object();

		add_uint(s, "requests", ops[i].requests);
		add_uint(s, "bytes", ops[i].bytes);
		add_uint(s, "errors", ops[i].errors);
		json_object_object_add(o, nbdd_op_name((enum nbdd_op)i), s);
	}
	return o;
}

static void add_conn_stats(json_object *o, const struct mapping *e)
{
	struct nbdd_op_stats total[NBDD_OP__COUNT] = { 0 };
	json_object *a = json_object_new_array(), *t;
	unsigned i, n = nbdd_mapping_connections(e->m);
	uint64_t in_flight = 0;
	int k;

	for (i = 0; i < n; i++) {
		struct nbdd_conn_stats st;
		json_object *c;

		if (nbdd_mapping_stats(e->m, i, &st) < 0)
			continue;
		c = json_object_new_object();
		add_uint(c, "connection", i);
		json_object_object_add(c, "connected",
				       json_object_new_boolean(st.connected));
		add_uint(c, "in_flight", st.in_flight);
		json_object_object_add(c, "ops", ops_json(st.op));
		json_object_array_add(a, c);
		in_flight += st.in_flight;
		for (k = 0; k < NBDD_OP__COUNT; k++) {
			total[k].requests += st.op[k].requests;
			total[k].bytes += st.op[k].bytes;
			total[k].errors += st.op[k].errors;
		}
	}
	json_object_object_add(o, "connection_stats", a);
	t = json_object_new_object();
	add_uint(t, "in_flight", in_flight);
	json_object_object_add(t, "ops", ops_json(total));
	json_object_object_add(o, "totals", t);
}

/* The entry @req names, or NULL with *err set to the reply. */
static struct mapping *resolve(const struct ctl_request *req,
			       json_object **err)
{
	struct mapping *e;

	if (req->name) {
		e = find_name(req->name);
		if (!e)
			*err = ctl_reply_error(-ENOENT, "no mapping named '%s'",
					       req->name);
	} else {
		e = find_index(req->index);
		if (!e)
			*err = ctl_reply_error(-ENOENT,
					       "/dev/nbd%d is not attached by "
					       "nbdd",
					       req->index);
	}
	return e;
}

json_object *mappings_status(const struct ctl_request *req)
{
	json_object *err = NULL, *o, *m;
	struct mapping *e = resolve(req, &err);

	if (!e)
		return err;
	o = ctl_reply_ok();
	m = entry_json(e);
	if (!o || !m) {
		json_object_put(o);
		json_object_put(m);
		return NULL;
	}
	if (attached(e))
		add_conn_stats(m, e);
	json_object_object_add(o, "mapping", m);
	return o;
}

/* ---- watching a mapping ---- */

static void queue_detach(struct mapping **v, size_t n, uint64_t client_id);
static void queue_recover(struct mapping *e);

static void on_mapping_event(struct loop_source *s, uint32_t events)
{
	struct mapping *e = s->opaque;
	unsigned live, total;
	uint64_t count;

	if (read(s->fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_debug("/dev/nbd%d: event fd: %s", e->index,
			  strerror(errno));
	live = nbdd_mapping_live(e->m);
	total = nbdd_mapping_connections(e->m);
	if (live == 0) {
		/* Disconnected, or sockets lost: the worker finds out. */
		queue_recover(e);
	} else if (live < total && e->state != M_DEGRADED) {
		log_warning("/dev/nbd%d (%s): %u of %u connections ended; "
			    "serving on %u",
			    e->index, e->name, total - live, total, live);
		e->state = M_DEGRADED;
	}
}

static void watch(struct mapping *e)
{
	int r = loop_add(&e->src, nbdd_mapping_fd(e->m), EPOLLIN,
			 on_mapping_event, e);

	if (r < 0)
		log_warning("/dev/nbd%d: cannot watch its connections: %s",
			    e->index, strerror(-r));
}

/* ---- recovery: new sockets for a device that lost its own ---- */

struct recover_job {
	struct job job;
	uint64_t mapping_id;
	int index;
	struct nbdd_mapping *old;      /* abandoned by run() */
	struct nbdd_export *x;         /* our reference */
	struct nbdd_attach_options opts;
	/* results */
	bool ended;                    /* the kernel let the device go */
	int err;
	char msg[512];
	struct nbdd_mapping *m;
};

/* Configured still? DISCONNECT releases it moments after our sockets. */
static bool device_released(int index)
{
	int pid, i;

	for (i = 0; i < ENDED_WAIT_MS / 50; i++) {
		if (nbdd_sysfs_pid(index, &pid) < 0 || pid == 0)
			return true;
		usleep(50 * 1000);
	}
	return false;
}

static void recover_run(struct job *j)
{
	struct recover_job *r = (struct recover_job *)j;
	int ret;

	nbdd_mapping_abandon(r->old);
	r->old = NULL;
	if (device_released(r->index)) {
		r->ended = true;
		return;
	}
	ret = nbdd_mapping_adopt(r->x, r->index, &r->opts, &r->m);
	if (ret < 0) {
		r->err = ret;
		snprintf(r->msg, sizeof(r->msg), "%s", lib_error(ret));
		/* Nobody will serve it: fail its I/O now, not per request. */
		nbdd_kernel_fail_fast(r->index);
	}
}

static void mark_failed(struct mapping *e, const char *why)
{
	e->state = M_FAILED;
	snprintf(e->error, sizeof(e->error), "%s", why);
	log_err("/dev/nbd%d (%s): failed: %s. Its I/O fails; release it with "
		"`nbdctl detach /dev/nbd%d`",
		e->index, e->name, why, e->index);
}

static void recover_done(struct job *j)
{
	struct recover_job *r = (struct recover_job *)j;
	struct mapping *e = find_id(r->mapping_id);

	nbdd_export_unref(r->x);
	if (!e) { /* cannot happen: nobody frees a RECOVERING entry */
		nbdd_mapping_abandon(r->m);
		free(r);
		return;
	}
	if (r->ended) {
		log_notice("/dev/nbd%d (%s): the kernel ended the mapping "
			   "(disconnected by another program?); cleaning up",
			   e->index, e->name);
		entry_free(e);
	} else if (r->err < 0) {
		mark_failed(e, r->msg);
	} else {
		e->m = r->m;
		e->state = M_CONNECTED;
		e->recoveries++;
		e->recovered_at = time(NULL);
		entry_describe(e);
		watch(e);
		log_notice("/dev/nbd%d (%s): lost its connections; served again "
			   "with new ones (recovery %u)",
			   e->index, e->name, e->recoveries);
	}
	mappings_save();
	free(r);
}

static void queue_recover(struct mapping *e)
{
	struct recover_job *r = calloc(1, sizeof(*r));

	loop_remove(&e->src);
	if (!r) {
		nbdd_mapping_abandon(e->m);
		e->m = NULL;
		mark_failed(e, "out of memory for the recovery");
		return;
	}
	log_warning("/dev/nbd%d (%s): every connection ended; checking "
		    "whether the kernel still holds the device",
		    e->index, e->name);
	r->job.run = recover_run;
	r->job.done = recover_done;
	r->mapping_id = e->id;
	r->index = e->index;
	r->old = e->m;
	r->x = nbdd_export_ref(nbdd_mapping_export(e->m));
	e->m = NULL; /* the worker's now */
	r->opts = e->opts;
	r->opts.identifier = NULL; /* the device's own, from sysfs */
	e->state = M_RECOVERING;
	worker_submit(&r->job);
}

/* ---- attach ---- */

struct attach_job {
	struct job job;
	uint64_t client_id;
	uint64_t mapping_id;
	int adopt_index;   /* >= 0: take over a previous nbdd's device */
	char *spec;
	char name[CTL_MAX_NAME + 1];
	struct nbdd_attach_options opts;
	/* results */
	int err;
	char msg[1024];
	struct nbdd_mapping *m;
};

/* The previous nbdd's device, served by the backend opened again. */
static void adopt_run(struct attach_job *a, struct nbdd_export *x)
{
	int r;

	if (nbdd_export_volatile(x)) {
		a->err = -ENODATA;
		snprintf(a->msg, sizeof(a->msg),
			 "its data was in the previous nbdd's memory (backend "
			 "%s), which died with it",
			 nbdd_export_backend_name(x));
	} else if ((r = nbdd_mapping_adopt(x, a->adopt_index, &a->opts,
					   &a->m)) < 0) {
		a->err = r;
		snprintf(a->msg, sizeof(a->msg), "%s", lib_error(r));
	}
	nbdd_export_unref(x);
}

static void attach_run(struct job *j)
{
	struct attach_job *a = (struct attach_job *)j;
	struct nbdd_export_options eo = {
		.name = a->name[0] ? a->name : a->spec,
		.readonly = a->opts.readonly,
	};
	struct nbdd_export *x;
	int r;

	r = nbdd_export_open(a->spec, &eo, &x);
	if (r < 0) {
		a->err = r;
		snprintf(a->msg, sizeof(a->msg), "%s", lib_error(r));
		goto out;
	}
	if (a->adopt_index >= 0) {
		adopt_run(a, x);
		goto out;
	}
	/*
	 * A named mapping shows its name in /sys/block/nbdX/backend, which
	 * udev turns into /dev/disk/by-nbd/NAME (udev/59-nbdd.rules).
	 */
	if (a->name[0])
		a->opts.identifier = a->name;
	/* The mapping takes its own reference to the export. */
	r = nbdd_attach(x, &a->opts, &a->m);
	if (r < 0) {
		a->err = r;
		snprintf(a->msg, sizeof(a->msg), "%s", lib_error(r));
	}
	nbdd_export_unref(x);
out:
	/* A device we cannot take over must not wait for us per request. */
	if (a->err < 0 && a->adopt_index >= 0)
		nbdd_kernel_fail_fast(a->adopt_index);
}

/* A default name nobody took: "nbdN", else "nbdN.ID". */
static void default_name(struct mapping *e)
{
	snprintf(e->name, sizeof(e->name), "nbd%d", e->index);
	if (find_name(e->name) != e)
		snprintf(e->name, sizeof(e->name), "nbd%d.%llu", e->index,
			 (unsigned long long)e->id);
}

static json_object *attach_reply(const struct mapping *e)
{
	json_object *o = ctl_reply_ok();

	if (!o)
		return NULL;
	add_device(o, e->index);
	json_object_object_add(o, "name", json_object_new_string(e->name));
	add_uint(o, "size", e->size);
	return o;
}

static void attach_done(struct job *j)
{
	struct attach_job *a = (struct attach_job *)j;
	struct mapping *e = find_id(a->mapping_id);
	json_object *reply;

	if (a->err < 0 && a->adopt_index >= 0) {
		char why[1100];

		snprintf(why, sizeof(why), "cannot take it over: %s", a->msg);
		mark_failed(e, why);
		mappings_save();
		reply = NULL;
	} else if (a->err < 0) {
		log_warning("attach %s: %s", a->spec, a->msg);
		reply = ctl_reply_error(a->err, "%s", a->msg);
		entry_free(e);
	} else {
		e->m = a->m;
		e->index = nbdd_mapping_index(a->m);
		e->state = M_CONNECTED;
		if (!e->attached_at)
			e->attached_at = time(NULL);
		entry_describe(e);
		if (!e->name[0])
			default_name(e);
		watch(e);
		recovery_watch_events(); /* the attach loaded the driver */
		if (a->adopt_index >= 0) {
			e->recoveries++;
			e->recovered_at = time(NULL);
			log_notice("/dev/nbd%d (%s): taken over from the previous "
				   "nbdd: %s", e->index, e->name, e->spec);
		} else {
			log_notice("/dev/nbd%d (%s): attached %s", e->index,
				   e->name, e->spec);
		}
		mappings_save();
		reply = attach_reply(e);
	}
	if (a->client_id)
		control_reply(a->client_id, reply);
	else
		json_object_put(reply);
	free(a->spec);
	free(a);
}

/* Names are unique; "nbdN" is only for /dev/nbdN (the default names). */
static json_object *check_attach(const struct ctl_request *req)
{
	struct mapping *e;
	int n;

	if (req->index >= 0 && (e = find_index(req->index)))
		return ctl_reply_error(-EBUSY, "/dev/nbd%d is already %s (%s)",
				       req->index,
				       e->state == M_ATTACHING ? "being attached"
							       : "attached",
				       e->name[0] ? e->name : e->spec);
	if (!req->name)
		return NULL;
	if (ctl_name_is_default(req->name, &n) && n != req->index)
		return ctl_reply_error(-EINVAL,
				       "name '%s' is reserved for /dev/nbd%d",
				       req->name, n);
	e = find_name(req->name);
	if (e)
		return ctl_reply_error(-EEXIST,
				       "a mapping named '%s' already exists "
				       "(/dev/nbd%d)",
				       req->name, e->index);
	return NULL;
}

/* @defaults: fill the timeouts the request left at 0 with the daemon's. */
static struct mapping *entry_new(const struct ctl_request *req, bool defaults)
{
	struct mapping *e = calloc(1, sizeof(*e));

	if (!e || !(e->spec = strdup(req->spec))) {
		free(e);
		return NULL;
	}
	e->id = ++tab.next_id;
	e->state = M_ATTACHING;
	e->index = req->index;
	e->src.fd = -1;
	if (req->name)
		snprintf(e->name, sizeof(e->name), "%s", req->name);
	e->opts = (struct nbdd_attach_options){
		.index = req->index,
		.connections = req->connections,
		.block_size = req->block_size,
		.timeout = req->timeout,
		.dead_conn_timeout = req->dead_conn_timeout,
		.readonly = req->readonly,
	};
	if (defaults && !e->opts.timeout)
		e->opts.timeout = tab.timeout;
	if (defaults && !e->opts.dead_conn_timeout)
		e->opts.dead_conn_timeout = tab.dead_conn_timeout;
	e->next = tab.head;
	tab.head = e;
	tab.count++;
	return e;
}

json_object *mappings_attach(const struct ctl_request *req,
			     uint64_t client_id)
{
	json_object *err = check_attach(req);
	struct attach_job *a;
	struct mapping *e;

	if (err)
		return err;
	a = calloc(1, sizeof(*a));
	e = a ? entry_new(req, true) : NULL;
	if (!e || !(a->spec = strdup(req->spec))) {
		if (e)
			entry_free(e);
		free(a);
		return ctl_reply_error(-ENOMEM, "out of memory");
	}
	a->job.run = attach_run;
	a->job.done = attach_done;
	a->client_id = client_id;
	a->mapping_id = e->id;
	a->adopt_index = -1;
	if (req->name)
		snprintf(a->name, sizeof(a->name), "%s", req->name);
	a->opts = e->opts;
	worker_submit(&a->job);
	return NULL;
}

void mappings_restore(const struct ctl_request *req, time_t attached_at,
		      const char *failed)
{
	struct attach_job *a;
	struct mapping *e;

	if (find_index(req->index) || (req->name && find_name(req->name))) {
		log_warning("state file: /dev/nbd%d (%s) is listed twice; "
			    "ignoring the second", req->index,
			    req->name ? req->name : req->spec);
		return;
	}
	a = calloc(1, sizeof(*a));
	e = a ? entry_new(req, false) : NULL;
	if (!e || !(a->spec = strdup(req->spec))) {
		if (e)
			entry_free(e);
		free(a);
		log_err("/dev/nbd%d: out of memory to take it over",
			req->index);
		nbdd_kernel_fail_fast(req->index);
		return;
	}
	e->attached_at = attached_at;
	if (failed) {
		mark_failed(e, failed);
		nbdd_kernel_fail_fast(req->index);
		free(a->spec);
		free(a);
		return;
	}
	e->state = M_RECOVERING;
	a->job.run = attach_run;
	a->job.done = attach_done;
	a->mapping_id = e->id;
	a->adopt_index = req->index;
	if (req->name)
		snprintf(a->name, sizeof(a->name), "%s", req->name);
	a->opts = e->opts;
	worker_submit(&a->job);
}

void mappings_link_dead(int index)
{
	struct mapping *e = index >= 0 ? find_index(index) : NULL;

	if (index == NBDD_EVENTS_LOST) {
		log_warning("link-dead events were lost (the kernel's queue "
			    "overran); connection states are in `nbdctl "
			    "status`");
		return;
	}
	if (!e) {
		log_info("/dev/nbd%d: the kernel reports a dead connection "
			 "(not ours)", index);
		return;
	}
	e->link_dead++;
	log_warning("/dev/nbd%d (%s): the kernel reports a dead connection "
		    "(link-dead event %u)", index, e->name, e->link_dead);
}

/* ---- detach ---- */

struct detach_item {
	uint64_t mapping_id;
	int index;
	struct nbdd_mapping *m;
	int err;
	char msg[512];
};

struct detach_job {
	struct job job;
	uint64_t client_id; /* 0: the kernel ended it, nobody asked */
	size_t n;
	struct detach_item item[];
};

static int release_device(int index)
{
	int r = nbdd_kernel_disconnect(index), pid;

	/* Released meanwhile (by the kernel or another program): done. */
	if (r < 0 && (nbdd_sysfs_pid(index, &pid) < 0 || pid == 0))
		r = 0;
	return r;
}

static void detach_run(struct job *j)
{
	struct detach_job *d = (struct detach_job *)j;
	size_t i;

	for (i = 0; i < d->n; i++) {
		struct detach_item *it = &d->item[i];
		/* A failed mapping has no sockets of ours, only the device. */
		int r = it->m ? nbdd_detach(it->m) : release_device(it->index);

		if (r < 0) {
			it->err = r;
			snprintf(it->msg, sizeof(it->msg), "%s", lib_error(r));
		}
	}
}

static void detach_done(struct job *j)
{
	struct detach_job *d = (struct detach_job *)j;
	json_object *devs = json_object_new_array(), *reply;
	const struct detach_item *failed = NULL;
	size_t i, nfailed = 0;

	for (i = 0; i < d->n; i++) {
		const struct detach_item *it = &d->item[i];
		struct mapping *e = find_id(it->mapping_id);
		char dev[32];

		snprintf(dev, sizeof(dev), "/dev/nbd%d", it->index);
		if (it->err < 0) {
			log_warning("detach %s: %s", dev, it->msg);
			if (!failed)
				failed = it;
			nfailed++;
		} else {
			log_notice("%s (%s): detached", dev, e ? e->name : "?");
		}
		json_object_array_add(devs, json_object_new_string(dev));
		if (e)
			entry_free(e);
	}
	mappings_save();
	if (!d->client_id) {
		json_object_put(devs);
	} else {
		if (failed) {
			reply = ctl_reply_error(failed->err, "/dev/nbd%d: %s%s",
						failed->index, failed->msg,
						nfailed > 1 ? " (and others)"
							    : "");
			json_object_put(devs);
		} else {
			reply = ctl_reply_ok();
			json_object_object_add(reply, "detached", devs);
		}
		control_reply(d->client_id, reply);
	}
	free(d);
}

/*
 * The entries leave the loop's hands here: marked DETACHING, no longer
 * watched, and their nbdd_mapping given to the worker.
 */
static void queue_detach(struct mapping **v, size_t n, uint64_t client_id)
{
	struct detach_job *d;
	size_t i;

	d = calloc(1, sizeof(*d) + n * sizeof(d->item[0]));
	if (!d) {
		/* Keep them attached; the client hears why. */
		if (client_id)
			control_reply(client_id,
				      ctl_reply_error(-ENOMEM, "out of memory"));
		return;
	}
	d->job.run = detach_run;
	d->job.done = detach_done;
	d->client_id = client_id;
	d->n = n;
	for (i = 0; i < n; i++) {
		v[i]->state = M_DETACHING;
		loop_remove(&v[i]->src);
		d->item[i].mapping_id = v[i]->id;
		d->item[i].index = v[i]->index;
		d->item[i].m = v[i]->m;
	}
	worker_submit(&d->job);
}

static json_object *detach_all(uint64_t client_id)
{
	struct mapping **v, *e;
	json_object *o;
	size_t n = 0;

	v = calloc(tab.count ? tab.count : 1, sizeof(*v));
	if (!v)
		return ctl_reply_error(-ENOMEM, "out of memory");
	for (e = tab.head; e; e = e->next)
		if (attached(e) || e->state == M_FAILED)
			v[n++] = e;
	if (n == 0) {
		free(v);
		o = ctl_reply_ok();
		json_object_object_add(o, "detached", json_object_new_array());
		return o;
	}
	queue_detach(v, n, client_id);
	free(v);
	return NULL;
}

json_object *mappings_detach(const struct ctl_request *req,
			     uint64_t client_id)
{
	json_object *err = NULL;
	struct mapping *e;

	if (req->all)
		return detach_all(client_id);
	e = resolve(req, &err);
	if (!e)
		return err;
	if (!attached(e) && e->state != M_FAILED) {
		const char *what = e->state == M_ATTACHING    ? "attached"
				   : e->state == M_RECOVERING ? "recovered"
							      : "detached";

		if (req->name)
			return ctl_reply_error(-EBUSY,
					       "'%s' is still being %s: try "
					       "again in a moment",
					       req->name, what);
		return ctl_reply_error(-EBUSY,
				       "/dev/nbd%d is still being %s: try "
				       "again in a moment",
				       req->index, what);
	}
	queue_detach(&e, 1, client_id);
	return NULL;
}

/* ---- start and end ---- */

int mappings_init(const char *state_path, uint32_t timeout,
		  uint32_t dead_conn_timeout)
{
	tab.timeout = timeout;
	tab.dead_conn_timeout = dead_conn_timeout;
	if (!state_path)
		return 0;
	tab.state_path = strdup(state_path);
	return tab.state_path ? 0 : -ENOMEM;
}

const char *mappings_state_path(void)
{
	return tab.state_path;
}

/*
 * Leave the device to the next nbdd? Only when the kernel waits for one
 * (a dead-conn timeout) and the next one can serve the same data.
 */
static bool can_hand_over(const struct mapping *e)
{
	return e->m && e->opts.dead_conn_timeout > 0 &&
	       !nbdd_export_volatile(nbdd_mapping_export(e->m));
}

/*
 * The worker has stopped, so every entry is either attached or was
 * never going to be: detach what is attached, here and in order.
 */
int mappings_shutdown(bool handover)
{
	struct mapping *e, *next;
	unsigned kept = 0;
	int ret = 0;

	/* First what stays: served until the state file lists it. */
	for (e = tab.head; handover && e; e = e->next)
		if (can_hand_over(e) || e->state == M_FAILED)
			kept++;
	for (e = tab.head; e; e = next) {
		next = e->next;
		if (handover && (can_hand_over(e) || e->state == M_FAILED))
			continue;
		if (e->m) {
			int r;

			loop_remove(&e->src);
			r = nbdd_detach(e->m);
			if (r < 0) {
				log_err("/dev/nbd%d: detach: %s", e->index,
					lib_error(r));
				if (!ret)
					ret = r;
			} else {
				log_notice("/dev/nbd%d (%s): detached",
					   e->index, e->name);
			}
		} else if (e->state == M_FAILED) {
			release_device(e->index);
		}
		entry_free(e);
	}
	if (kept && tab.state_path)
		mappings_save();
	while ((e = tab.head)) {
		if (e->m) {
			loop_remove(&e->src);
			nbdd_mapping_abandon(e->m);
			log_notice("/dev/nbd%d (%s): left to the next nbdd; the "
				   "kernel holds its I/O for up to %u s",
				   e->index, e->name,
				   e->opts.dead_conn_timeout);
		}
		entry_free(e);
	}
	if (tab.state_path && !kept)
		state_remove(tab.state_path);
	free(tab.state_path);
	tab.state_path = NULL;
	return ret;
}
