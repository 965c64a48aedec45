/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A process per mapping: the daemon's side.
 *
 * Each mapping is served by its own process (mapserver.c: this same
 * program, started with --serve-mapping), so a backend that crashes,
 * hangs or is killed takes only its own device with it, and the daemon,
 * which notices the process end, starts another that takes the device
 * over with new sockets, as after a restart of the daemon itself.
 *
 * The two talk over a socketpair, one JSON object per line, request then
 * answer, the daemon always asking (each question after the set-up has a
 * "seq" that its answer echoes):
 *   daemon -> server: the mapping to set up (spec, options, adopt or not)
 *   server -> daemon: {"ok":true,"index":N,...} or {"ok":false,...}
 *   "stats"  -> the connections' states and counters
 *   "resize" -> the backend and the device resized, the new size
 *   "detach" -> flush, disconnect, answer, exit
 * SIGTERM makes the server leave its device to a successor and exit; so
 * does the daemon's end of the socket closing (the daemon died).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

/* Opening a backend may take a while (a remote, a cluster). */
#define START_TIMEOUT_MS  120000
#define QUERY_TIMEOUT_MS  2000
#define DETACH_TIMEOUT_MS 120000
/*
 * The worker waits this long for a resize, no longer: recoveries of
 * other mappings queue behind it, and the kernel waits for those only
 * the dead-conn timeout (60 s by default). A longer one (shrinking a big
 * cluster image deletes objects) finishes in its process unwatched.
 */
#define RESIZE_TIMEOUT_MS 30000
#define EXIT_TIMEOUT_MS   30000
#define MAX_LINE          (1u << 20)

extern char **environ;

/* This program, as started (not /proc/self/exe: under valgrind that is
 * the tool). */
static char program[PATH_MAX] = "/proc/self/exe";

void mapproc_set_program(const char *argv0)
{
	char buf[PATH_MAX];

	if (strchr(argv0, '/') && realpath(argv0, buf))
		snprintf(program, sizeof(program), "%s", buf);
}

static unsigned poll_max_us;

void mapproc_set_poll_max(unsigned usec)
{
	poll_max_us = usec;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- one JSON object per line, both sides ---- */

int mapproc_send(int fd, json_object *o)
{
	const char *text = json_object_to_json_string_ext(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t len = strlen(text), done = 0;
	char nl = '\n';

	while (done < len) {
		ssize_t n = send(fd, text + done, len - done, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return send(fd, &nl, 1, MSG_NOSIGNAL) == 1 ? 0 : -EPIPE;
}

/*
 * Read one line within @timeout_ms (-1: no limit) and parse it. Reads a
 * byte at a time: lines are short, and nothing after the newline may be
 * taken from the next answer.
 */
int mapproc_recv(int fd, int timeout_ms, json_object **out)
{
	int64_t end = timeout_ms < 0 ? 0 : now_ms() + timeout_ms;
	size_t len = 0, cap = 256;
	char *buf = malloc(cap), c;
	int r = 0;

	*out = NULL;
	if (!buf)
		return -ENOMEM;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int wait = timeout_ms < 0 ? -1 : (int)(end - now_ms());
		ssize_t n;

		if (timeout_ms >= 0 && wait <= 0) {
			r = -ETIMEDOUT;
			break;
		}
		if (poll(&p, 1, wait) < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		n = recv(fd, &c, 1, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0) {
			r = -ECONNRESET;
			break;
		}
		if (c == '\n')
			break;
		if (len + 2 > cap) {
			char *p2 = cap * 2 > MAX_LINE ? NULL : realloc(buf, cap * 2);

			if (!p2) {
				r = -EMSGSIZE;
				break;
			}
			buf = p2;
			cap *= 2;
		}
		buf[len++] = c;
	}
	if (r == 0) {
		buf[len] = '\0';
		*out = json_tokener_parse(buf);
		if (!*out || !json_object_is_type(*out, json_type_object)) {
			json_object_put(*out);
			*out = NULL;
			r = -EBADMSG;
		}
	}
	free(buf);
	return r;
}

/* ---- the daemon's side ---- */

static void add(json_object *o, const char *k, json_object *v)
{
	json_object_object_add(o, k, v);
}

static json_object *request_json(const struct mapproc_setup *s)
{
	json_object *o = json_object_new_object();

	add(o, "spec", json_object_new_string(s->spec));
	add(o, "name", s->name[0] ? json_object_new_string(s->name) : NULL);
	add(o, "index", json_object_new_int(s->opts.index));
	add(o, "adopt", json_object_new_boolean(s->adopt));
	add(o, "connections", json_object_new_int64(s->opts.connections));
	add(o, "block_size", json_object_new_int64(s->opts.block_size));
	add(o, "timeout", json_object_new_int64(s->opts.timeout));
	add(o, "dead_conn_timeout",
	    json_object_new_int64(s->opts.dead_conn_timeout));
	add(o, "readonly", json_object_new_boolean(s->opts.readonly));
	return o;
}

static const char *jget_str(json_object *o, const char *k, const char *d)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) &&
			       json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : d;
}

static int64_t jget_int(json_object *o, const char *k, int64_t d)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) &&
			       json_object_is_type(v, json_type_int)
		       ? json_object_get_int64(v)
		       : d;
}

static bool jget_bool(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) &&
	       json_object_get_boolean(v);
}

/* Wait for the process to exit, SIGKILL after @ms; its wait status. */
static int reap(pid_t pid, int ms)
{
	int64_t end = now_ms() + ms;
	int st = 0;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid || (r < 0 && errno != EINTR))
			return st;
		if (now_ms() >= end) {
			log_warning("mapping process %d did not exit in %d s; "
				    "killing it",
				    (int)pid, ms / 1000);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return st;
		}
		usleep(10 * 1000);
	}
}

void mapproc_close(struct mapproc *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	p->pid = 0;
}

int mapproc_start(const struct mapproc_setup *s, struct mapproc *p,
		  struct mapproc_result *res)
{
	char level[8], poll_arg[16], *argv[6];
	posix_spawn_file_actions_t fa;
	json_object *req, *ans = NULL;
	int sv[2], r;

	memset(res, 0, sizeof(*res));
	p->fd = -1;
	p->pid = 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		snprintf(res->msg, sizeof(res->msg),
			 "cannot make a socket for the mapping process: %s",
			 strerror(-r));
		return res->err = r;
	}
	snprintf(level, sizeof(level), "%d", log_max_level());
	argv[0] = "nbdd";
	argv[1] = "--serve-mapping";
	argv[2] = level;
	argv[3] = harden_mlock() ? "mlock" : "no-mlock";
	/* Only when set: an older binary put in place under us takes four. */
	snprintf(poll_arg, sizeof(poll_arg), "%u", poll_max_us);
	argv[4] = poll_max_us ? poll_arg : NULL;
	argv[5] = NULL;
	posix_spawn_file_actions_init(&fa);
	/* Its end becomes fd 3; everything else we hold is close-on-exec. */
	posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
	r = posix_spawn(&p->pid, program, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	if (r) {
		close(sv[0]);
		snprintf(res->msg, sizeof(res->msg),
			 "cannot start a mapping process: %s", strerror(r));
		return res->err = -r;
	}
	p->fd = sv[0];
	req = request_json(s);
	r = req ? mapproc_send(p->fd, req) : -ENOMEM;
	json_object_put(req);
	if (r == 0)
		r = mapproc_recv(p->fd, START_TIMEOUT_MS, &ans);
	if (r < 0) {
		snprintf(res->msg, sizeof(res->msg),
			 "the mapping process (pid %d) %s", (int)p->pid,
			 r == -ETIMEDOUT ? "did not answer in time"
					 : "ended before answering");
		kill(p->pid, SIGKILL);
		reap(p->pid, EXIT_TIMEOUT_MS);
		mapproc_close(p);
		return res->err = r == -ETIMEDOUT ? r : -EIO;
	}
	if (!jget_bool(ans, "ok")) {
		res->err = (int)jget_int(ans, "errno", -EIO);
		if (res->err >= 0)
			res->err = -EIO;
		snprintf(res->msg, sizeof(res->msg), "%s",
			 jget_str(ans, "error", "failed"));
		json_object_put(ans);
		reap(p->pid, EXIT_TIMEOUT_MS);
		mapproc_close(p);
		return res->err;
	}
	res->index = (int)jget_int(ans, "index", -1);
	snprintf(res->backend, sizeof(res->backend), "%s",
		 jget_str(ans, "backend", "?"));
	res->size = (uint64_t)jget_int(ans, "size", 0);
	res->readonly = jget_bool(ans, "readonly");
	res->volatile_data = jget_bool(ans, "volatile");
	res->connections = (unsigned)jget_int(ans, "connections", 1);
	res->block_size = (uint32_t)jget_int(ans, "block_size", 0);
	json_object_put(ans);
	return 0;
}

/*
 * It never speaks unasked: bytes waiting now are a late answer to a
 * question we stopped waiting for. Drop them, or they would answer the
 * next one.
 */
static void drop_stale(int fd)
{
	char buf[4096];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/*
 * Ask @o (it gains a "seq") and wait for the answer that echoes it: an
 * answer that comes after we stopped waiting for it (a resize that took
 * longer than its timeout) must not pass for the next one's.
 */
static int ask(const struct mapproc *p, json_object *o, int timeout_ms,
	       json_object **ans)
{
	static _Atomic int64_t next_seq = 1;
	int64_t seq = next_seq++, end = now_ms() + timeout_ms;
	int r;

	add(o, "seq", json_object_new_int64(seq));
	drop_stale(p->fd);
	r = mapproc_send(p->fd, o);
	json_object_put(o);
	while (r == 0) {
		int64_t left = end - now_ms();

		if (left <= 0)
			return -ETIMEDOUT;
		r = mapproc_recv(p->fd, (int)left, ans);
		if (r == 0 && jget_int(*ans, "seq", 0) == seq)
			return 0;
		/* The rest of a late answer drop_stale() cut: skip it too. */
		if (r == -EBADMSG)
			r = 0;
		json_object_put(*ans);
		*ans = NULL;
	}
	return r;
}

json_object *mapproc_stats(struct mapproc *p)
{
	json_object *o = json_object_new_object(), *ans = NULL;

	add(o, "cmd", json_object_new_string("stats"));
	return ask(p, o, QUERY_TIMEOUT_MS, &ans) < 0 ? NULL : ans;
}

int mapproc_detach(struct mapproc *p, char *msg, size_t len)
{
	json_object *o = json_object_new_object(), *ans = NULL;
	int r;

	add(o, "cmd", json_object_new_string("detach"));
	r = ask(p, o, DETACH_TIMEOUT_MS, &ans);
	if (r < 0) {
		snprintf(msg, len, "the mapping process (pid %d) %s",
			 (int)p->pid,
			 r == -ETIMEDOUT ? "did not detach in time"
					 : "ended while detaching");
		kill(p->pid, SIGKILL);
	} else if (!jget_bool(ans, "ok")) {
		r = (int)jget_int(ans, "errno", -EIO);
		snprintf(msg, len, "%s", jget_str(ans, "error", "failed"));
	}
	json_object_put(ans);
	reap(p->pid, EXIT_TIMEOUT_MS);
	mapproc_close(p);
	return r;
}

int mapproc_resize(const struct mapproc *p, uint64_t size,
		   bool allow_shrink, uint64_t *now, char *msg, size_t len)
{
	json_object *o = json_object_new_object(), *ans = NULL;
	int r;

	add(o, "cmd", json_object_new_string("resize"));
	add(o, "size", json_object_new_int64((int64_t)size));
	add(o, "allow_shrink", json_object_new_boolean(allow_shrink));
	r = ask(p, o, RESIZE_TIMEOUT_MS, &ans);
	if (r == -ETIMEDOUT) {
		snprintf(msg, len, "the resize did not finish within %d s; "
			 "the mapping process (pid %d) goes on with it: "
			 "`nbdctl status` shows the size once it is done",
			 RESIZE_TIMEOUT_MS / 1000, (int)p->pid);
	} else if (r < 0) {
		snprintf(msg, len, "the mapping process (pid %d) ended while "
			 "resizing; the mapping recovers, then try again",
			 (int)p->pid);
	} else if (!jget_bool(ans, "ok")) {
		r = (int)jget_int(ans, "errno", -EIO);
		snprintf(msg, len, "%s", jget_str(ans, "error", "failed"));
	} else {
		*now = (uint64_t)jget_int(ans, "size", (int64_t)size);
	}
	json_object_put(ans);
	return r;
}

void mapproc_hand_over(struct mapproc *p)
{
	kill(p->pid, SIGTERM);
	reap(p->pid, EXIT_TIMEOUT_MS);
	mapproc_close(p);
}

int mapproc_reap(struct mapproc *p)
{
	int st = reap(p->pid, EXIT_TIMEOUT_MS);

	mapproc_close(p);
	return st;
}
