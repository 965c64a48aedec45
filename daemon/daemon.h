/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbdd, the daemon: what its modules share.
 *
 *   main.c      options, start-up order, shutdown order
 *   log.c       stderr sink with journald priority prefixes
 *   loop.c      the one epoll loop every socket and signal goes through
 *   signals.c   SIGTERM/SIGINT/SIGHUP as signalfd events
 *   harden.c    oom_score_adj, mlockall, PR_SET_IO_FLUSHER
 *   control.c   the control socket: listener, clients, framing, deadlines
 *   commands.c  one request -> one reply, permissions checked
 *   worker.c    a thread for the slow calls (attach, detach)
 *   mappings.c  the table of kernel mappings, recovery of lost sockets
 *   state.c     /run/nbdd/mappings.json, written on every change
 *   recovery.c  taking over a dead nbdd's devices; heartbeat; link-dead
 *   mapproc.c   a process per mapping: starting it, asking it
 *   mapserver.c that process (nbdd --serve-mapping)
 *   exports.c   network exports and their listeners
 *
 * Threads: the loop thread owns every socket, the control clients, the
 * mapping table and the epoll set; the worker thread only makes blocking
 * calls (starting a mapping's process and waiting for it to attach,
 * detaching) and hands results back (worker.c). Each mapping is served
 * by a process of its own (mapproc.c, mapserver.c).
 */
#ifndef NBDD_DAEMON_H
#define NBDD_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/types.h>

#include <json-c/json.h>

#include <nbdd/nbdd.h>

#include "../common/control.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- log.c ---- */

void log_setup(int max_level);
int log_max_level(void);
int log_level_parse(const char *name);
void dlog(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define log_err(...)     dlog(NBDD_LOG_ERR, __VA_ARGS__)
#define log_warning(...) dlog(NBDD_LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  dlog(NBDD_LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    dlog(NBDD_LOG_INFO, __VA_ARGS__)
#define log_debug(...)   dlog(NBDD_LOG_DEBUG, __VA_ARGS__)
/* The library's message if it left one, else strerror(-err). */
const char *lib_error(int err);

/* ---- loop.c ---- */

struct loop_source;
typedef void (*loop_fn)(struct loop_source *src, uint32_t events);

/* Embedded in whatever owns the fd; that owner removes it before free. */
struct loop_source {
	int fd;
	uint32_t events;
	loop_fn fn;
	void *opaque;
};

int loop_init(void);
void loop_free(void);
int loop_add(struct loop_source *s, int fd, uint32_t events, loop_fn fn,
	     void *opaque);
int loop_modify(struct loop_source *s, uint32_t events);
void loop_remove(struct loop_source *s);
/* Wait up to @timeout_ms (-1: no limit) and dispatch what is ready. */
int loop_dispatch(int timeout_ms);
void loop_quit(void);
bool loop_quitting(void);

/* ---- signals.c ---- */

/* Block the signals for every thread created later, then watch them. */
int signals_block(void);
int signals_watch(void);
void signals_free(void);
/* The quit came from SIGINT (detach everything), not SIGTERM. */
bool signals_interrupted(void);

/* ---- harden.c ---- */

void harden_process(bool mlock);
/* What harden_process() was asked (mapping processes do the same). */
bool harden_mlock(void);

/* ---- worker.c ---- */

struct job {
	void (*run)(struct job *j);  /* on the worker thread: may block */
	void (*done)(struct job *j); /* on the loop thread; frees the job */
	struct job *next;
};

int worker_start(void);
void worker_submit(struct job *j);
/* Run what is queued, join the thread, then every pending done(). */
void worker_stop(void);

/* ---- control.c ---- */

struct control_options {
	const char *path;
	const char *group; /* NULL: root only */
	unsigned max_clients;
};

int control_open(const struct control_options *o);
void control_close(void);
/* Stop accepting (shutdown begins); clients stay until control_close(). */
void control_stop_listening(void);
/* A deferred reply for a client that may have gone meanwhile. */
void control_reply(uint64_t client_id, json_object *reply);
/* Milliseconds until the next client deadline (-1: none); expire due. */
int control_expire(void);
unsigned control_client_count(void);

/* ---- commands.c ---- */

/* A reply, or NULL when one will follow through control_reply(). */
json_object *command_run(const struct ctl_request *req, uint64_t client_id);

/* ---- mappings.c ---- */

/* @timeout, @dead_conn_timeout: defaults for attach requests without. */
int mappings_init(const char *state_path, uint32_t timeout,
		  uint32_t dead_conn_timeout);
const char *mappings_state_path(void);
/*
 * A previous nbdd's mapping: take the device over (worker), or with
 * @failed, list it as failed for that reason and fail its I/O.
 */
void mappings_restore(const struct ctl_request *req, time_t attached_at,
		      const char *failed);
/* The kernel's link-dead event for /dev/nbdINDEX (or NBDD_EVENTS_LOST). */
void mappings_link_dead(int index);
json_object *mappings_attach(const struct ctl_request *req,
			     uint64_t client_id);
json_object *mappings_detach(const struct ctl_request *req,
			     uint64_t client_id);
json_object *mappings_list(void);
json_object *mappings_status(const struct ctl_request *req);
json_object *mappings_resize(const struct ctl_request *req,
			     uint64_t client_id);
/*
 * Shutdown: detach everything, or with @handover leave the devices a
 * successor can take over to it (state file kept); 0 or the first error.
 */
int mappings_shutdown(bool handover);
unsigned mappings_count(void);
/* Rewrite the state file (SIGHUP: it may have been removed). */
void mappings_save(void);

/* ---- state.c ---- */

int state_write(const char *path, json_object *state);
void state_remove(const char *path);

/* ---- recovery.c ---- */

/* Take over (or list as failed) what the state file's daemon left. */
void recovery_restore(void);
/* The heartbeat on the state file. */
int recovery_start(void);
/* Watch link-dead events once the nbd driver is loaded. */
void recovery_watch_events(void);
void recovery_stop(void);

/* ---- mapproc.c: a process per mapping, the daemon's side ---- */

struct mapproc {
	pid_t pid; /* 0: none */
	int fd;    /* our end of its control socket */
};

struct mapproc_setup {
	const char *spec;
	char name[CTL_MAX_NAME + 16]; /* as struct mapping's */
	struct nbdd_attach_options opts; /* opts.index: the device to adopt */
	bool adopt;                      /* take over a device that lost its server */
};

struct mapproc_result {
	int err;
	char msg[1024];
	int index;
	char backend[64];
	uint64_t size;
	bool readonly;
	bool volatile_data; /* NBDD_BACKEND_VOLATILE: cannot be handed over */
	unsigned connections;
	uint32_t block_size;
};

/* The path mapping processes are started from: this program's. */
void mapproc_set_program(const char *argv0);
/* Their --poll-max-us (nbdd_set_poll_max()), the daemon's own. */
void mapproc_set_poll_max(unsigned usec);
/* Start one and wait for it to serve (or fail): blocks, worker thread. */
int mapproc_start(const struct mapproc_setup *s, struct mapproc *p,
		  struct mapproc_result *res);
/* Its connections: {"live":N,"connection_stats":[...],"totals":{...}}. */
json_object *mapproc_stats(struct mapproc *p);
/* Flush, disconnect, wait for the exit: blocks (worker thread). */
int mapproc_detach(struct mapproc *p, char *msg, size_t len);
/*
 * Resize the backend and its device (a smaller @size only with
 * @allow_shrink); *now is the size it ended with.
 */
int mapproc_resize(const struct mapproc *p, uint64_t size,
		   bool allow_shrink, uint64_t *now, char *msg, size_t len);
/* SIGTERM: it leaves the device to a successor; wait for the exit. */
void mapproc_hand_over(struct mapproc *p);
/* It ended (its socket closed): collect it; its wait status. */
int mapproc_reap(struct mapproc *p);
void mapproc_close(struct mapproc *p);
/* One JSON object per line over a stream socket (both sides). */
int mapproc_send(int fd, json_object *o);
int mapproc_recv(int fd, int timeout_ms, json_object **out);

/* ---- mapserver.c: the serving process ---- */

int mapserver_main(int argc, char **argv);

/* ---- exports.c ---- */

struct export_arg {
	const char *name;
	const char *spec;
	bool readonly;
};

struct exports_options {
	const char **listen;
	size_t nlisten;
	struct export_arg *exports;
	size_t nexports;
	unsigned max_clients;
	unsigned handshake_timeout;
	struct nbdd_tls_options tls; /* --tls, --tls-certificates, ... */
};

int exports_open(const struct exports_options *o);
void exports_stop_listening(void);
/* Resume paused listeners; milliseconds until the next one (-1: none). */
int exports_expire(void);
void exports_close(void);
json_object *exports_list(void);

#endif /* NBDD_DAEMON_H */
