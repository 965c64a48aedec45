/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Network exports: backends offered to NBD clients (nbdinfo, qemu-img,
 * nbd-client) on --listen sockets. Off unless --listen is given. The
 * listeners sit in the daemon's loop; each accepted client is handed to
 * the library, which runs it on its own thread with its own deadlines.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

/* After EMFILE and the like, stop accepting this long. */
#define ACCEPT_BACKOFF_MS 1000

struct listener {
	struct loop_source src;
	const char *address;
	uint64_t paused_until; /* ms; 0: accepting */
};

struct exported {
	struct nbdd_export *e;
	const char *spec;
};

static struct {
	struct nbdd_server *srv;
	struct listener *l;
	size_t nl;
	struct exported *x;
	size_t nx;
} ex;

static void on_accept(struct loop_source *s, uint32_t events)
{
	struct listener *l = s->opaque;
	int r = nbdd_server_accept(ex.srv, s->fd);

	if (r >= 0 || r == -EAGAIN || r == -EINTR || r == -ECONNABORTED)
		return;
	if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM) {
		log_warning("%s: accept: %s; pausing for %d ms", l->address,
			    strerror(-r), ACCEPT_BACKOFF_MS);
		l->paused_until = ctl_now_ms() + ACCEPT_BACKOFF_MS;
		loop_modify(s, 0);
		return;
	}
	log_info("%s: %s", l->address, lib_error(r));
}

int exports_expire(void)
{
	uint64_t now = ctl_now_ms();
	int next = -1;
	size_t i;

	for (i = 0; i < ex.nl; i++) {
		struct listener *l = &ex.l[i];
		int ms;

		if (!l->paused_until || l->src.fd < 0)
			continue;
		if (l->paused_until <= now) {
			l->paused_until = 0;
			loop_modify(&l->src, EPOLLIN);
			continue;
		}
		ms = (int)(l->paused_until - now);
		if (next < 0 || ms < next)
			next = ms;
	}
	return next;
}

static int open_exports(const struct exports_options *o)
{
	size_t i, j;
	int r;

	ex.x = calloc(o->nexports ? o->nexports : 1, sizeof(*ex.x));
	if (!ex.x)
		return -ENOMEM;
	for (i = 0; i < o->nexports; i++) {
		const struct export_arg *a = &o->exports[i];
		struct nbdd_export_options eo = {
			.name = a->name, .readonly = a->readonly,
		};

		for (j = 0; j < i; j++)
			if (strcmp(o->exports[j].name, a->name) == 0) {
				log_err("export '%s' is given twice", a->name);
				return -EEXIST;
			}
		r = nbdd_export_open(a->spec, &eo, &ex.x[i].e);
		if (r < 0) {
			log_err("export %s=%s: %s", a->name, a->spec,
				lib_error(r));
			return r;
		}
		ex.x[i].spec = a->spec;
		ex.nx++;
		r = nbdd_server_add_export(ex.srv, ex.x[i].e);
		if (r < 0) {
			log_err("export %s: %s", a->name, lib_error(r));
			return r;
		}
		log_info("export '%s': %s (%llu bytes%s)", a->name, a->spec,
			 (unsigned long long)nbdd_export_size(ex.x[i].e),
			 nbdd_export_readonly(ex.x[i].e) ? ", read-only" : "");
	}
	return 0;
}

static int open_listeners(const struct exports_options *o)
{
	size_t i;
	int fd, r;

	ex.l = calloc(o->nlisten ? o->nlisten : 1, sizeof(*ex.l));
	if (!ex.l)
		return -ENOMEM;
	for (i = 0; i < o->nlisten; i++) {
		struct listener *l = &ex.l[i];

		l->src.fd = -1;
		l->address = o->listen[i];
		fd = nbdd_listen(l->address);
		if (fd < 0) {
			log_err("--listen %s: %s", l->address, lib_error(fd));
			return fd;
		}
		/* A client that gave up between poll and accept: no block. */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		ex.nl++;
		r = loop_add(&l->src, fd, EPOLLIN, on_accept, l);
		if (r < 0) {
			close(fd);
			return r;
		}
		log_info("listening on %s", l->address);
	}
	return 0;
}

int exports_open(const struct exports_options *o)
{
	struct nbdd_server_options so = {
		.handshake_timeout = o->handshake_timeout,
		.max_clients = o->max_clients,
	};
	int r;

	if (o->nlisten == 0 && o->nexports == 0)
		return 0;
	/* Opened all the same, so a bad spec is reported at start-up. */
	if (o->nlisten == 0)
		log_warning("--export without --listen: the exports are not "
			    "served to anyone");
	if (o->nexports == 0)
		log_warning("--listen without --export: clients will find "
			    "nothing to connect to");
	r = nbdd_server_new(&so, &ex.srv);
	if (r < 0) {
		log_err("network server: %s", lib_error(r));
		return r;
	}
	r = nbdd_server_set_tls(ex.srv, &o->tls);
	if (r < 0) {
		log_err("%s", lib_error(r));
		return r;
	}
	r = open_exports(o);
	if (r == 0)
		r = open_listeners(o);
	return r;
}

void exports_stop_listening(void)
{
	size_t i;

	for (i = 0; i < ex.nl; i++) {
		int fd = ex.l[i].src.fd;

		if (fd < 0)
			continue;
		loop_remove(&ex.l[i].src);
		close(fd);
		/* The library bound it; a Unix socket file is ours to remove. */
		if (strncmp(ex.l[i].address, "unix:", 5) == 0)
			unlink(ex.l[i].address + 5);
	}
}

/* Disconnects every network client (the library waits for them). */
void exports_close(void)
{
	size_t i;

	exports_stop_listening();
	if (ex.srv)
		nbdd_server_free(ex.srv);
	for (i = 0; i < ex.nx; i++)
		nbdd_export_unref(ex.x[i].e);
	free(ex.x);
	free(ex.l);
	memset(&ex, 0, sizeof(ex));
}

static json_object *export_json(const struct exported *x)
{
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "name",
			       json_object_new_string(nbdd_export_name(x->e)));
	json_object_object_add(o, "spec", json_object_new_string(x->spec));
	json_object_object_add(o, "backend", json_object_new_string(
					nbdd_export_backend_name(x->e)));
	json_object_object_add(o, "size",
			       json_object_new_uint64(nbdd_export_size(x->e)));
	json_object_object_add(o, "readonly", json_object_new_boolean(
					nbdd_export_readonly(x->e)));
	return o;
}

json_object *exports_list(void)
{
	json_object *o = ctl_reply_ok(), *l = json_object_new_array(),
		    *a = json_object_new_array();
	size_t i;

	if (!o || !l || !a) {
		json_object_put(o);
		json_object_put(l);
		json_object_put(a);
		return NULL;
	}
	for (i = 0; i < ex.nl; i++)
		json_object_array_add(l,
				      json_object_new_string(ex.l[i].address));
	for (i = 0; i < ex.nx; i++)
		json_object_array_add(a, export_json(&ex.x[i]));
	json_object_object_add(o, "listeners", l);
	json_object_object_add(o, "exports", a);
	return o;
}
