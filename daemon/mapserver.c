/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A process per mapping: the serving side (`nbdd --serve-mapping`,
 * started by mapproc.c with its control socket as fd 3).
 *
 * It opens the backend, attaches it to a device (or takes over the one
 * named, after a crash), answers the daemon's questions ("stats",
 * "resize") and serves until one of:
 *   "detach"            flush, disconnect the device, answer, exit 0;
 *   SIGTERM, or the daemon's end of fd 3 closing (the daemon died):
 *                       stop serving and leave the device to a successor
 *                       (requests already read are answered first);
 *   every connection ended (the kernel dropped them): exit 3, and the
 *                       daemon decides what follows.
 * A backend whose size can change elsewhere (NBDD_BACKEND_SIZE_CHANGES)
 * is asked for it every SIZE_POLL_MS, and the device follows.
 * The serving threads belong to the library; this thread only waits.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <nbdd/kernel.h>

#include "daemon.h"

#define CTL_FD 3
/* RECONFIGURE refuses while the predecessor's sockets live: let it go. */
#define ADOPT_TRIES 50
#define ADOPT_WAIT_US (100 * 1000)
/* How often a backend whose size can change elsewhere is asked for it. */
#define SIZE_POLL_MS 2000

/* The "seq" of the question being answered (none for the set-up). */
static int64_t asked_seq;

static json_object *jobj(void)
{
	return json_object_new_object();
}

static void reply(json_object *ans)
{
	if (asked_seq)
		json_object_object_add(ans, "seq",
				       json_object_new_int64(asked_seq));
	mapproc_send(CTL_FD, ans);
}

static void add(json_object *o, const char *k, json_object *v)
{
	json_object_object_add(o, k, v);
}

static void answer_error(int err, const char *msg)
{
	json_object *o = jobj();

	add(o, "ok", json_object_new_boolean(false));
	add(o, "errno", json_object_new_int(err));
	add(o, "error", json_object_new_string(msg));
	reply(o);
	json_object_put(o);
}

static int64_t jint(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v)
						   : 0;
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) &&
			       json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

static uint32_t juint(json_object *o, const char *k)
{
	int64_t v = jint(o, k);

	return v < 0 || v > UINT32_MAX ? 0 : (uint32_t)v;
}

/* The daemon's predecessor child may still hold the sockets a moment. */
static int adopt(struct nbdd_export *x, int index,
		 const struct nbdd_attach_options *o, struct nbdd_mapping **m)
{
	int r = -EBUSY, i;

	for (i = 0; i < ADOPT_TRIES && r == -EBUSY; i++) {
		if (i)
			usleep(ADOPT_WAIT_US);
		r = nbdd_mapping_adopt(x, index, o, m);
	}
	return r;
}

static struct nbdd_mapping *set_up(json_object *req)
{
	const char *spec = jstr(req, "spec"), *name = jstr(req, "name");
	struct nbdd_attach_options o = {
		.index = (int)jint(req, "index"),
		.connections = juint(req, "connections"),
		.block_size = juint(req, "block_size"),
		.timeout = juint(req, "timeout"),
		.dead_conn_timeout = juint(req, "dead_conn_timeout"),
		.readonly = json_object_get_boolean(
			json_object_object_get(req, "readonly")),
	};
	struct nbdd_export_options eo = {
		.name = name ? name : spec,
		.readonly = o.readonly,
	};
	bool take_over = json_object_get_boolean(
		json_object_object_get(req, "adopt"));
	struct nbdd_mapping *m = NULL;
	struct nbdd_export *x;
	json_object *ans;
	uint32_t bs = 0;
	int r;

	if (!spec) {
		answer_error(-EINVAL, "no spec");
		return NULL;
	}
	r = nbdd_export_open(spec, &eo, &x);
	if (r < 0) {
		answer_error(r, lib_error(r));
		return NULL;
	}
	if (take_over && nbdd_export_volatile(x)) {
		char msg[256];

		snprintf(msg, sizeof(msg),
			 "its data was in the previous server's memory "
			 "(backend %s), which died with it",
			 nbdd_export_backend_name(x));
		answer_error(-ENODATA, msg);
		nbdd_export_unref(x);
		return NULL;
	}
	/* A named mapping shows its name in sysfs (udev's by-nbd link). */
	if (!take_over && name)
		o.identifier = name;
	r = take_over ? adopt(x, o.index, &o, &m) : nbdd_attach(x, &o, &m);
	if (r < 0) {
		answer_error(r, lib_error(r));
		nbdd_export_unref(x);
		return NULL;
	}
	ans = jobj();
	add(ans, "ok", json_object_new_boolean(true));
	add(ans, "index", json_object_new_int(nbdd_mapping_index(m)));
	add(ans, "backend", json_object_new_string(nbdd_export_backend_name(x)));
	add(ans, "size", json_object_new_int64((int64_t)nbdd_export_size(x)));
	add(ans, "readonly", json_object_new_boolean(o.readonly ||
						     nbdd_export_readonly(x)));
	add(ans, "volatile", json_object_new_boolean(nbdd_export_volatile(x)));
	add(ans, "connections",
	    json_object_new_int64(nbdd_mapping_connections(m)));
	if (nbdd_sysfs_block_size(nbdd_mapping_index(m), &bs) < 0)
		bs = o.block_size;
	add(ans, "block_size", json_object_new_int64(bs));
	reply(ans);
	json_object_put(ans);
	nbdd_export_unref(x); /* the mapping holds its own */
	return m;
}

/* ---- answering ---- */

static json_object *ops_json(const struct nbdd_op_stats *ops)
{
	json_object *o = jobj();
	int i;

	for (i = 0; i < NBDD_OP__COUNT; i++) {
		json_object *s = jobj();

		add(s, "requests", json_object_new_uint64(ops[i].requests));
		add(s, "bytes", json_object_new_uint64(ops[i].bytes));
		add(s, "errors", json_object_new_uint64(ops[i].errors));
		add(o, nbdd_op_name((enum nbdd_op)i), s);
	}
	return o;
}

static void answer_stats(struct nbdd_mapping *m)
{
	struct nbdd_op_stats total[NBDD_OP__COUNT] = { 0 };
	json_object *ans = jobj(), *a = json_object_new_array(), *t = jobj();
	unsigned i, n = nbdd_mapping_connections(m);
	uint64_t in_flight = 0;
	int k;

	for (i = 0; i < n; i++) {
		struct nbdd_conn_stats st;
		json_object *c;

		if (nbdd_mapping_stats(m, i, &st) < 0)
			continue;
		c = jobj();
		add(c, "connection", json_object_new_uint64(i));
		add(c, "connected", json_object_new_boolean(st.connected));
		add(c, "in_flight", json_object_new_uint64(st.in_flight));
		add(c, "ops", ops_json(st.op));
		json_object_array_add(a, c);
		in_flight += st.in_flight;
		for (k = 0; k < NBDD_OP__COUNT; k++) {
			total[k].requests += st.op[k].requests;
			total[k].bytes += st.op[k].bytes;
			total[k].errors += st.op[k].errors;
		}
	}
	add(t, "in_flight", json_object_new_uint64(in_flight));
	add(t, "ops", ops_json(total));
	add(ans, "ok", json_object_new_boolean(true));
	add(ans, "live", json_object_new_uint64(nbdd_mapping_live(m)));
	add(ans, "size", json_object_new_uint64(
				 nbdd_export_size(nbdd_mapping_export(m))));
	add(ans, "connection_stats", a);
	add(ans, "totals", t);
	reply(ans);
	json_object_put(ans);
}

static void answer_resize(struct nbdd_mapping *m, uint64_t size,
			  bool allow_shrink)
{
	struct nbdd_export *x = nbdd_mapping_export(m);
	json_object *ans;
	uint64_t cur;
	int r;

	/* Compare with the size now, not as it was when attached. */
	nbdd_mapping_sync_size(m);
	cur = nbdd_export_size(x);
	if (size < cur && !allow_shrink) {
		char msg[256];

		snprintf(msg, sizeof(msg),
			 "it has %llu bytes: shrinking it to %llu cuts off "
			 "data (and a filesystem on it); say --allow-shrink "
			 "if that is meant",
			 (unsigned long long)cur, (unsigned long long)size);
		answer_error(-EINVAL, msg);
		return;
	}
	r = nbdd_mapping_resize(m, size);
	if (r < 0) {
		answer_error(r, lib_error(r));
		return;
	}
	ans = jobj();
	add(ans, "ok", json_object_new_boolean(true));
	add(ans, "size", json_object_new_int64((int64_t)nbdd_export_size(x)));
	reply(ans);
	json_object_put(ans);
}

/* 0: keep serving; 1: detached, exit; -1: the daemon has gone. */
static int on_request(struct nbdd_mapping *m)
{
	json_object *req, *ans;
	const char *cmd;
	int r = mapproc_recv(CTL_FD, 5000, &req);

	if (r < 0)
		return -1;
	cmd = jstr(req, "cmd");
	asked_seq = jint(req, "seq");
	if (cmd && !strcmp(cmd, "stats")) {
		answer_stats(m);
		r = 0;
	} else if (cmd && !strcmp(cmd, "resize")) {
		answer_resize(m, (uint64_t)jint(req, "size"),
			      json_object_get_boolean(json_object_object_get(
				      req, "allow_shrink")));
		r = 0;
	} else if (cmd && !strcmp(cmd, "detach")) {
		r = nbdd_detach(m);
		if (r < 0) {
			answer_error(r, lib_error(r));
		} else {
			ans = jobj();
			add(ans, "ok", json_object_new_boolean(true));
			reply(ans);
			json_object_put(ans);
		}
		r = 1;
	} else {
		answer_error(-EINVAL, "unknown request");
		r = 0;
	}
	json_object_put(req);
	return r;
}

/*
 * Resized elsewhere (another host, the cluster's CLI)? False once the
 * backend says its size never changes by itself. A failure is logged
 * when it starts and when it ends, not every time.
 */
static bool follow_backend_size(struct nbdd_mapping *m)
{
	static int last;
	int r = nbdd_mapping_sync_size(m);

	if (r == -ENOTSUP)
		return false;
	if (r < 0 && r != last)
		log_warning("/dev/nbd%d: cannot follow its backend's size: %s",
			    nbdd_mapping_index(m), lib_error(r));
	else if (r >= 0 && last < 0)
		log_notice("/dev/nbd%d: its backend's size can be read again",
			   nbdd_mapping_index(m));
	last = r < 0 ? r : 0;
	return true;
}

static int set_poll_max(const char *arg)
{
	char *end;
	unsigned long v = strtoul(arg, &end, 10);

	/* The library has the limit; only what fits an unsigned reaches it. */
	if (end == arg || *end || v > UINT_MAX ||
	    nbdd_set_poll_max((unsigned)v) < 0) {
		fprintf(stderr, "nbdd: --serve-mapping: bad poll time '%s'\n",
			arg);
		return -EINVAL;
	}
	return 0;
}

/*
 * argv: nbdd --serve-mapping LOG_LEVEL mlock|no-mlock [POLL_MAX_US]
 * (no POLL_MAX_US: no polling, and what a daemon older than this binary,
 * upgraded under it, passes).
 */
int mapserver_main(int argc, char **argv)
{
	struct nbdd_mapping *m;
	bool follow_size = true;
	json_object *req;
	sigset_t set;
	int sfd, r;

	if (argc != 4 && argc != 5) {
		fprintf(stderr, "nbdd: --serve-mapping is started by nbdd "
				"itself, not by hand\n");
		return 2;
	}
	log_setup(atoi(argv[2]));
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGPIPE);
	/* Before any thread exists, so that all of them inherit it. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	harden_process(strcmp(argv[3], "mlock") == 0);
	if (argc == 5 && set_poll_max(argv[4]) < 0)
		return 2;
	if (mapproc_recv(CTL_FD, 30000, &req) < 0)
		return 2;
	m = set_up(req);
	json_object_put(req);
	if (!m)
		return 1;
	for (;;) {
		int timeout = follow_size ? SIZE_POLL_MS : -1;
		struct pollfd p[3] = {
			{ .fd = CTL_FD, .events = POLLIN },
			{ .fd = sfd, .events = POLLIN },
			{ .fd = nbdd_mapping_fd(m), .events = POLLIN },
		};

		r = poll(p, 3, timeout);
		if (r == 0) {
			follow_size = follow_backend_size(m);
			continue;
		}
		if (r < 0)
			continue;
		if (p[2].revents) {
			uint64_t n;

			if (read(p[2].fd, &n, sizeof(n)) < 0)
				n = 0;
			if (nbdd_mapping_live(m) == 0) {
				nbdd_mapping_abandon(m);
				return 3;
			}
		}
		if (p[1].revents) {
			/* SIGTERM, SIGINT: leave the device to a successor. */
			nbdd_mapping_abandon(m);
			return 0;
		}
		if (p[0].revents) {
			r = on_request(m);
			if (r == 1)
				return 0;
			if (r < 0) {
				nbdd_mapping_abandon(m);
				return 0;
			}
		}
	}
}
