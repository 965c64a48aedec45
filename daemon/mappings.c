/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The table of kernel mappings: /dev/nbdN <-> the process serving it.
 *
 * Each mapping is served by a process of its own (mapproc.c,
 * mapserver.c): a backend that crashes, hangs or is killed takes only
 * its own device down, and only for a moment. The table lives on the
 * loop thread alone: requests are checked and the table changed there,
 * and the worker runs the blocking steps (starting a process and waiting
 * for it to attach, detaching) on copies (job structs). An entry's state
 * says who may touch its process: while ATTACHING, RECOVERING, RESIZING
 * or DETACHING the worker owns it and the loop reports the entry without
 * asking it anything.
 *
 * Every change is written to the state file (state.c), so a later nbdd
 * can take the devices over if this one dies (recovery.c).
 *
 * Recovery: when a mapping's process ends without being asked to (it
 * crashed or was killed, or the kernel dropped its connections) and the
 * kernel still holds the device, the worker starts another process that
 * hands the device new sockets (RECONFIGURE); the kernel resends what was
 * in flight. A device nobody can serve again (its backend cannot be
 * opened, its data was in a dead process's memory, its process keeps
 * dying, the dead-conn timeout ran out) is FAILED: its I/O fails at once,
 * `list` says why, and `detach` releases it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nbdd/kernel.h>

#include "daemon.h"

enum mstate {
	M_ATTACHING,
	M_CONNECTED,
	M_RECOVERING, /* the worker is giving the device a new process */
	M_FAILED,     /* nothing serves the device; detach releases it */
	M_DETACHING,
	M_RESIZING,   /* the worker is asking its process to resize */
};

static const char *const state_names[] = {
	[M_ATTACHING] = "attaching",
	[M_CONNECTED] = "connected",
	[M_RECOVERING] = "recovering",
	[M_FAILED] = "failed",
	[M_DETACHING] = "detaching",
	[M_RESIZING] = "resizing",
};

/* A device whose server ended is checked this long for a DISCONNECT. */
#define ENDED_WAIT_MS 2000
/* A server that ends this soon after starting, this many times running,
 * is not restarted again: something is wrong with the backend. */
#define SHORT_LIFE_S    10
#define MAX_SHORT_LIVES 5

struct mapping {
	uint64_t id;
	enum mstate state;
	int index;                     /* -1 until the kernel has picked */
	char name[CTL_MAX_NAME + 16];  /* "" until known */
	char *spec;
	struct nbdd_attach_options opts; /* as asked (index, timeouts, ...) */
	time_t attached_at;
	struct mapproc proc;           /* its serving process, once attached */
	time_t started_at;             /* of that process */
	/* What the process reported when it attached. */
	char backend[64];
	uint64_t size;
	bool readonly;
	bool volatile_data;
	unsigned conns;
	uint32_t block_size;
	struct loop_source src;        /* the process's socket, while connected */
	/* Recovery */
	unsigned recoveries;           /* new sockets handed to the kernel */
	unsigned short_lives;          /* servers that ended right away */
	unsigned link_dead;            /* the kernel's link-dead events */
	time_t recovered_at;
	char error[1300];              /* why it failed ("" unless FAILED) */
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
	mapproc_close(&e->proc);
	free(e->spec);
	free(e);
	tab.count--;
}

static bool attached(const struct mapping *e)
{
	return e->state == M_CONNECTED;
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

/*
 * @stats: the process's answer to "stats" (live connections and
 * counters), or NULL (not asked, or it did not answer).
 */
static json_object *entry_json(const struct mapping *e, json_object *stats)
{
	json_object *o = json_object_new_object(), *live = NULL, *size = NULL;
	bool known = e->state != M_ATTACHING && e->backend[0];
	const char *state = state_names[e->state];

	if (!o)
		return NULL;
	if (stats) {
		json_object_object_get_ex(stats, "live", &live);
		/* The backend may have been resized elsewhere since. */
		json_object_object_get_ex(stats, "size", &size);
	}
	if (live && (unsigned)json_object_get_int64(live) < e->conns)
		state = "degraded";
	add_device(o, e->index);
	json_object_object_add(o, "name", e->name[0] ? json_object_new_string(
							       e->name)
						     : NULL);
	json_object_object_add(o, "spec", json_object_new_string(e->spec));
	json_object_object_add(o, "state", json_object_new_string(state));
	json_object_object_add(o, "backend",
			       known ? json_object_new_string(e->backend)
				     : NULL);
	add_uint(o, "size", !known ? 0
			    : size ? (uint64_t)json_object_get_int64(size)
				   : e->size);
	json_object_object_add(o, "readonly", json_object_new_boolean(
					known ? e->readonly : e->opts.readonly));
	add_uint(o, "connections", known ? e->conns : e->opts.connections);
	if (live)
		json_object_object_add(o, "live", json_object_get(live));
	add_uint(o, "block_size", known ? e->block_size : e->opts.block_size);
	add_uint(o, "timeout", e->opts.timeout);
	add_uint(o, "dead_conn_timeout", e->opts.dead_conn_timeout);
	json_object_object_add(o, "attached_at",
			       json_object_new_int64(e->attached_at));
	json_object_object_add(o, "pid",
			       attached(e) || e->state == M_RESIZING
				       ? json_object_new_int(e->proc.pid)
				       : NULL);
	add_uint(o, "recoveries", e->recoveries);
	add_uint(o, "link_dead_events", e->link_dead);
	json_object_object_add(o, "recovered_at",
			       json_object_new_int64(e->recovered_at));
	json_object_object_add(o, "error", e->error[0] ? json_object_new_string(
								e->error)
						       : NULL);
	return o;
}

/* Ask a connected mapping's process; NULL when it cannot answer. */
static json_object *entry_stats(struct mapping *e)
{
	return attached(e) ? mapproc_stats(&e->proc) : NULL;
}

static json_object *state_json(void)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();
	struct mapping *e;

	/* Everything a successor may have to take over or release. */
	for (e = tab.head; a && e; e = e->next)
		if (e->state == M_CONNECTED || e->state == M_RECOVERING ||
		    e->state == M_RESIZING || e->state == M_FAILED)
			json_object_array_add(a, entry_json(e, NULL));
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
	for (i = 0; i < n; i++) {
		json_object *st = entry_stats(v[i]);

		json_object_array_add(a, entry_json(v[i], st));
		json_object_put(st);
	}
	free(v);
	json_object_object_add(o, "mappings", a);
	return o;
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
	json_object *err = NULL, *o, *m, *st, *v;
	struct mapping *e = resolve(req, &err);

	if (!e)
		return err;
	st = entry_stats(e);
	o = ctl_reply_ok();
	m = entry_json(e, st);
	if (!o || !m) {
		json_object_put(o);
		json_object_put(m);
		json_object_put(st);
		return NULL;
	}
	if (st && json_object_object_get_ex(st, "connection_stats", &v))
		json_object_object_add(m, "connection_stats",
				       json_object_get(v));
	if (st && json_object_object_get_ex(st, "totals", &v))
		json_object_object_add(m, "totals", json_object_get(v));
	json_object_put(st);
	json_object_object_add(o, "mapping", m);
	return o;
}

/* ---- watching a mapping's process ---- */

static void queue_recover(struct mapping *e);

/* It never speaks unasked: readable means it has gone. */
static void on_proc_event(struct loop_source *s, uint32_t events)
{
	struct mapping *e = s->opaque;
	char c;
	ssize_t n = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n > 0) {
		recv(s->fd, &c, 1, MSG_DONTWAIT); /* stray byte: drop it */
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	queue_recover(e);
}

static void watch(struct mapping *e)
{
	int r = loop_add(&e->src, e->proc.fd, EPOLLIN | EPOLLRDHUP,
			 on_proc_event, e);

	if (r < 0)
		log_warning("/dev/nbd%d: cannot watch its process: %s",
			    e->index, strerror(-r));
}

static void mark_failed(struct mapping *e, const char *why)
{
	e->state = M_FAILED;
	snprintf(e->error, sizeof(e->error), "%s", why);
	log_err("/dev/nbd%d (%s): failed: %s. Its I/O fails; release it with "
		"`nbdctl detach /dev/nbd%d`",
		e->index, e->name, why, e->index);
}

/* What mapproc_start() reported, kept for list and status. */
static void entry_describe(struct mapping *e, const struct mapproc_result *r)
{
	snprintf(e->backend, sizeof(e->backend), "%s", r->backend);
	e->size = r->size;
	e->readonly = r->readonly;
	e->volatile_data = r->volatile_data;
	e->conns = r->connections;
	e->block_size = r->block_size ? r->block_size : e->opts.block_size;
}

static void setup_from(const struct mapping *e, struct mapproc_setup *s,
		       bool adopt)
{
	memset(s, 0, sizeof(*s));
	s->spec = e->spec;
	snprintf(s->name, sizeof(s->name), "%s", e->name);
	s->opts = e->opts;
	s->opts.index = adopt ? e->index : e->opts.index;
	s->adopt = adopt;
}

/* ---- recovery: a new process for a device that lost its own ---- */

struct recover_job {
	struct job job;
	uint64_t mapping_id;
	int index;
	struct mapproc old;     /* reaped by run() */
	struct mapproc_setup setup;
	char *spec;
	/* results */
	int status;             /* the old process's wait status */
	bool ended;             /* the kernel let the device go */
	struct mapproc proc;
	struct mapproc_result res;
};

/* Configured still? DISCONNECT releases it moments after its sockets. */
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

	r->status = mapproc_reap(&r->old);
	if (device_released(r->index)) {
		r->ended = true;
		return;
	}
	if (mapproc_start(&r->setup, &r->proc, &r->res) < 0)
		/* Nobody will serve it: fail its I/O now, not per request. */
		nbdd_kernel_fail_fast(r->index);
}

static void describe_status(int st, char *buf, size_t len)
{
	if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
		snprintf(buf, len, "its connections were dropped");
	else if (WIFEXITED(st))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
	else
		snprintf(buf, len, "ended");
}

static void recover_done(struct job *j)
{
	struct recover_job *r = (struct recover_job *)j;
	struct mapping *e = find_id(r->mapping_id);
	char how[128], why[1200];

	describe_status(r->status, how, sizeof(how));
	if (!e) { /* cannot happen: nobody frees a RECOVERING entry */
		if (r->proc.pid)
			mapproc_detach(&r->proc, why, sizeof(why));
	} else if (r->ended) {
		log_notice("/dev/nbd%d (%s): the kernel ended the mapping "
			   "(disconnected by another program?); cleaning up",
			   e->index, e->name);
		entry_free(e);
	} else if (r->res.err < 0) {
		snprintf(why, sizeof(why),
			 "its server %s, and a new one could not take over: "
			 "%s", how, r->res.msg);
		mark_failed(e, why);
	} else {
		e->proc = r->proc;
		e->started_at = time(NULL);
		e->state = M_CONNECTED;
		e->recoveries++;
		e->recovered_at = e->started_at;
		entry_describe(e, &r->res);
		watch(e);
		log_notice("/dev/nbd%d (%s): its server %s; a new one (pid %d) "
			   "took over (recovery %u)",
			   e->index, e->name, how, (int)e->proc.pid,
			   e->recoveries);
	}
	mappings_save();
	free(r->spec);
	free(r);
}

static void queue_recover(struct mapping *e)
{
	struct recover_job *r = calloc(1, sizeof(*r));
	time_t now = time(NULL);

	loop_remove(&e->src);
	e->short_lives = now - e->started_at < SHORT_LIFE_S ? e->short_lives + 1
							    : 0;
	if (r && e->short_lives >= MAX_SHORT_LIVES) {
		char how[128], why[256];

		describe_status(mapproc_reap(&e->proc), how, sizeof(how));
		snprintf(why, sizeof(why),
			 "its server ended %u times in a row within %d s of "
			 "starting (last: %s); not restarting it",
			 e->short_lives, SHORT_LIFE_S, how);
		nbdd_kernel_fail_fast(e->index);
		mark_failed(e, why);
		mappings_save();
		free(r);
		return;
	}
	if (!r || !(r->spec = strdup(e->spec))) {
		free(r);
		mapproc_reap(&e->proc);
		nbdd_kernel_fail_fast(e->index);
		mark_failed(e, "out of memory for the recovery");
		return;
	}
	log_warning("/dev/nbd%d (%s): its server (pid %d) ended; starting "
		    "another",
		    e->index, e->name, (int)e->proc.pid);
	r->job.run = recover_run;
	r->job.done = recover_done;
	r->mapping_id = e->id;
	r->index = e->index;
	r->old = e->proc;
	e->proc = (struct mapproc){ .fd = -1 };
	setup_from(e, &r->setup, true);
	r->setup.spec = r->spec;
	e->state = M_RECOVERING;
	worker_submit(&r->job);
}

/* ---- attach (and taking over a previous daemon's device) ---- */

struct attach_job {
	struct job job;
	uint64_t client_id;
	uint64_t mapping_id;
	char *spec;
	struct mapproc_setup setup;
	/* results */
	struct mapproc proc;
	struct mapproc_result res;
};

static void attach_run(struct job *j)
{
	struct attach_job *a = (struct attach_job *)j;

	mapproc_start(&a->setup, &a->proc, &a->res);
	/* A device we cannot take over must not wait for us per request. */
	if (a->res.err < 0 && a->setup.adopt)
		nbdd_kernel_fail_fast(a->setup.opts.index);
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
	json_object *reply = NULL;

	if (a->res.err < 0 && a->setup.adopt) {
		char why[1100];

		snprintf(why, sizeof(why), "cannot take it over: %s",
			 a->res.msg);
		mark_failed(e, why);
		mappings_save();
	} else if (a->res.err < 0) {
		log_warning("attach %s: %s", a->spec, a->res.msg);
		reply = ctl_reply_error(a->res.err, "%s", a->res.msg);
		entry_free(e);
	} else {
		e->proc = a->proc;
		e->started_at = time(NULL);
		e->index = a->res.index;
		e->state = M_CONNECTED;
		if (!e->attached_at)
			e->attached_at = e->started_at;
		entry_describe(e, &a->res);
		if (!e->name[0])
			default_name(e);
		watch(e);
		recovery_watch_events(); /* the attach loaded the driver */
		if (a->setup.adopt) {
			e->recoveries++;
			e->recovered_at = e->started_at;
			log_notice("/dev/nbd%d (%s): taken over from the previous "
				   "nbdd: %s (pid %d)",
				   e->index, e->name, e->spec,
				   (int)e->proc.pid);
		} else {
			log_notice("/dev/nbd%d (%s): attached %s (pid %d)",
				   e->index, e->name, e->spec,
				   (int)e->proc.pid);
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
	e->proc.fd = -1;
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

static struct attach_job *attach_job_new(struct mapping *e, bool adopt)
{
	struct attach_job *a = calloc(1, sizeof(*a));

	if (!a || !(a->spec = strdup(e->spec))) {
		free(a);
		return NULL;
	}
	a->job.run = attach_run;
	a->job.done = attach_done;
	a->mapping_id = e->id;
	setup_from(e, &a->setup, adopt);
	a->setup.spec = a->spec;
	return a;
}

json_object *mappings_attach(const struct ctl_request *req,
			     uint64_t client_id)
{
	json_object *err = check_attach(req);
	struct attach_job *a;
	struct mapping *e;

	if (err)
		return err;
	e = entry_new(req, true);
	a = e ? attach_job_new(e, false) : NULL;
	if (!a) {
		if (e)
			entry_free(e);
		return ctl_reply_error(-ENOMEM, "out of memory");
	}
	a->client_id = client_id;
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
	e = entry_new(req, false);
	if (!e) {
		log_err("/dev/nbd%d: out of memory to take it over",
			req->index);
		nbdd_kernel_fail_fast(req->index);
		return;
	}
	e->attached_at = attached_at;
	if (failed) {
		mark_failed(e, failed);
		nbdd_kernel_fail_fast(req->index);
		return;
	}
	a = attach_job_new(e, true);
	if (!a) {
		mark_failed(e, "out of memory to take it over");
		nbdd_kernel_fail_fast(req->index);
		return;
	}
	e->state = M_RECOVERING;
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

/* ---- resize ---- */

/*
 * The worker asks; the entry keeps its process (RESIZING keeps the loop
 * from asking it anything meanwhile, and a shutdown, which waits for the
 * worker, finds it as it was).
 */
struct resize_job {
	struct job job;
	uint64_t client_id;
	uint64_t mapping_id;
	int index;
	struct mapproc proc; /* a copy: the entry owns it */
	uint64_t size, now;
	bool allow_shrink;
	int err;
	char msg[1100];
};

static void resize_run(struct job *j)
{
	struct resize_job *r = (struct resize_job *)j;

	r->err = mapproc_resize(&r->proc, r->size, r->allow_shrink, &r->now,
				r->msg, sizeof(r->msg));
}

static void resize_done(struct job *j)
{
	struct resize_job *r = (struct resize_job *)j;
	struct mapping *e = find_id(r->mapping_id);
	json_object *reply;

	if (e && e->state == M_RESIZING) {
		e->state = M_CONNECTED;
		if (r->err == 0)
			e->size = r->now;
		/* Gone meanwhile? The watch sees it at once and recovers. */
		watch(e);
	}
	if (r->err < 0) {
		char dev[32];
		/* The library's messages often name the device already. */
		bool named;

		snprintf(dev, sizeof(dev), "/dev/nbd%d: ", r->index);
		named = strncmp(r->msg, dev, strlen(dev)) == 0;
		log_warning("resize %s%s", named ? "" : dev, r->msg);
		reply = ctl_reply_error(r->err, "%s%s", named ? "" : dev,
					r->msg);
	} else {
		reply = ctl_reply_ok();
		if (reply)
			json_object_object_add(reply, "size",
					       json_object_new_uint64(r->now));
	}
	control_reply(r->client_id, reply);
	mappings_save();
	free(r);
}

json_object *mappings_resize(const struct ctl_request *req,
			     uint64_t client_id)
{
	json_object *err = NULL;
	struct resize_job *r;
	struct mapping *e;

	e = resolve(req, &err);
	if (!e)
		return err;
	if (!attached(e))
		return ctl_reply_error(e->state == M_FAILED ? -EIO : -EBUSY,
				       "/dev/nbd%d is %s: %s", e->index,
				       state_names[e->state],
				       e->state == M_FAILED
					       ? "detach it first"
					       : "try again in a moment");
	if (e->readonly)
		return ctl_reply_error(-EROFS, "/dev/nbd%d is read-only: a "
				       "read-only mapping keeps its size",
				       e->index);
	r = calloc(1, sizeof(*r));
	if (!r)
		return ctl_reply_error(-ENOMEM, "out of memory");
	r->job.run = resize_run;
	r->job.done = resize_done;
	r->client_id = client_id;
	r->mapping_id = e->id;
	r->index = e->index;
	r->proc = e->proc;
	r->size = req->size;
	r->allow_shrink = req->allow_shrink;
	e->state = M_RESIZING;
	loop_remove(&e->src);
	worker_submit(&r->job);
	return NULL;
}

/* ---- detach ---- */

struct detach_item {
	uint64_t mapping_id;
	int index;
	struct mapproc proc; /* pid 0: a failed mapping, only the device */
	int err;
	char msg[1100];
};

struct detach_job {
	struct job job;
	uint64_t client_id;
	char busy[256]; /* detach --all: what it left, for the reply */
	size_t n;
	struct detach_item item[];
};

/* What an entry that can be neither detached nor left alone is doing. */
static const char *in_progress(const struct mapping *e)
{
	return e->state == M_ATTACHING	  ? "attached"
	       : e->state == M_RECOVERING ? "recovered"
	       : e->state == M_RESIZING	  ? "resized"
					  : "detached";
}

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

		if (it->proc.pid) {
			it->err = mapproc_detach(&it->proc, it->msg,
						 sizeof(it->msg));
		} else {
			it->err = release_device(it->index);
			if (it->err < 0)
				snprintf(it->msg, sizeof(it->msg), "%s",
					 lib_error(it->err));
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
		} else if (d->busy[0]) {
			reply = ctl_reply_error(-EBUSY,
						"detached %zu; %s: try again "
						"in a moment",
						d->n, d->busy);
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
 * watched, and their process given to the worker.
 */
static void queue_detach(struct mapping **v, size_t n, uint64_t client_id,
			 const char *busy)
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
	snprintf(d->busy, sizeof(d->busy), "%s", busy ? busy : "");
	d->n = n;
	for (i = 0; i < n; i++) {
		v[i]->state = M_DETACHING;
		loop_remove(&v[i]->src);
		d->item[i].mapping_id = v[i]->id;
		d->item[i].index = v[i]->index;
		d->item[i].proc = v[i]->proc;
		v[i]->proc = (struct mapproc){ .fd = -1 };
	}
	worker_submit(&d->job);
}

/*
 * Every mapping that can go now goes; one still being attached, recovered
 * or resized stays, and the reply says so rather than claim all went.
 */
static json_object *detach_all(uint64_t client_id)
{
	struct mapping **v, *e;
	char busy[256] = "";
	size_t n = 0, len = 0;
	json_object *o;

	v = calloc(tab.count ? tab.count : 1, sizeof(*v));
	if (!v)
		return ctl_reply_error(-ENOMEM, "out of memory");
	for (e = tab.head; e; e = e->next) {
		if (attached(e) || e->state == M_FAILED)
			v[n++] = e;
		else if (e->state != M_DETACHING && len < sizeof(busy))
			len += (size_t)snprintf(busy + len, sizeof(busy) - len,
						"%s'%s' is still being %s",
						len ? ", " : "",
						e->name[0] ? e->name : "?",
						in_progress(e));
	}
	if (n == 0) {
		free(v);
		if (busy[0])
			return ctl_reply_error(-EBUSY,
					       "%s: try again in a moment",
					       busy);
		o = ctl_reply_ok();
		json_object_object_add(o, "detached", json_object_new_array());
		return o;
	}
	queue_detach(v, n, client_id, busy);
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
		const char *what = in_progress(e);

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
	queue_detach(&e, 1, client_id, NULL);
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
	return attached(e) && e->opts.dead_conn_timeout > 0 &&
	       !e->volatile_data;
}

static bool kept_at_exit(const struct mapping *e, bool handover)
{
	return handover && (can_hand_over(e) || e->state == M_FAILED);
}

/*
 * The worker has stopped, so every entry is attached, failed, or was
 * never going to be: detach or hand over, here and in order.
 */
int mappings_shutdown(bool handover)
{
	struct mapping *e, *next;
	unsigned kept = 0;
	char msg[1100];
	int ret = 0;

	for (e = tab.head; e; e = e->next)
		kept += kept_at_exit(e, handover);
	for (e = tab.head; e; e = next) {
		next = e->next;
		if (kept_at_exit(e, handover))
			continue;
		loop_remove(&e->src);
		if (e->proc.pid) {
			int r = mapproc_detach(&e->proc, msg, sizeof(msg));

			if (r < 0) {
				log_err("/dev/nbd%d: detach: %s", e->index, msg);
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
	/* What stays is written before its servers let go of it. */
	if (kept && tab.state_path)
		mappings_save();
	while ((e = tab.head)) {
		loop_remove(&e->src);
		if (e->proc.pid) {
			mapproc_hand_over(&e->proc);
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
