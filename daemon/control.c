/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control socket. Every client is non-blocking and has a buffer each
 * way, so a client that sends slowly, never reads its replies or never
 * finishes a line costs one buffer and a timer, never the loop's time.
 *
 * A request whose reply comes later (attach, detach) makes its client
 * "busy": no further line of that client is read until the reply is
 * queued, so replies keep the order of the requests. The pending job
 * knows its client by id, not pointer, so a client may vanish meanwhile.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"

/* A request line must be complete this long after its first byte. */
#define REQUEST_TIMEOUT_MS 10000
/* Pending output must make progress within this. */
#define WRITE_TIMEOUT_MS 10000
/* A connection with nothing going on is closed after this. */
#define IDLE_TIMEOUT_MS (300 * 1000)
/* Stop taking requests from a client with this much unread output. */
#define OUT_HIGH (1u << 20)
#define ACCEPT_BATCH 16

struct client {
	struct loop_source src;
	uint64_t id;
	struct ctl_peer peer;
	struct ctl_linebuf in;
	char *out;
	size_t out_len, out_off, out_cap;
	bool busy;    /* a reply is still to come from the worker */
	bool eof;     /* the peer will send nothing more */
	bool closing; /* close once the output is flushed */
	uint64_t line_start; /* when the unfinished line began, or 0 */
	uint64_t active;     /* last progress either way (idle deadline) */
	uint64_t written;    /* last output progress (write deadline) */
	struct client *next;
};

static struct {
	struct loop_source src;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool bound; /* we created path: ours to unlink */
	struct ctl_policy policy;
	char group_name[64];
	unsigned max_clients, nclients;
	uint64_t next_id;
	struct client *clients;
} ctl = { .src = { .fd = -1 } };

static void client_update(struct client *c);

/* ---- output ---- */

/*
 * Room for @len more bytes of output. What was sent is dropped first, so
 * a client that reads slowly but forever holds at most about OUT_HIGH.
 */
static bool out_reserve(struct client *c, size_t len)
{
	size_t cap;
	char *p;

	if (c->out_off > 0) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out_len + len <= c->out_cap)
		return true;
	cap = c->out_cap ? c->out_cap : 4096;
	while (cap < c->out_len + len)
		cap *= 2;
	p = realloc(c->out, cap);
	if (!p)
		return false;
	c->out = p;
	c->out_cap = cap;
	return true;
}

static void client_queue(struct client *c, json_object *reply)
{
	size_t len;
	char *line;

	if (!reply) {
		reply = ctl_reply_error(-ENOMEM, "out of memory");
		if (!reply) {
			c->closing = true;
			return;
		}
	}
	line = ctl_encode_line(reply, &len);
	json_object_put(reply);
	if (!line) {
		c->closing = true;
		return;
	}
	/* The write deadline counts from when output became pending. */
	if (c->out_len == c->out_off)
		c->written = ctl_now_ms();
	if (!out_reserve(c, len)) {
		free(line);
		c->closing = true;
		return;
	}
	memcpy(c->out + c->out_len, line, len);
	c->out_len += len;
	free(line);
}

/* Send what the socket takes; false when the peer is gone. */
static bool client_flush(struct client *c, uint64_t now)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->src.fd, c->out + c->out_off,
				 c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n <= 0)
			return false;
		c->out_off += (size_t)n;
		c->active = c->written = now;
	}
	c->out_off = c->out_len = 0;
	return true;
}

/* ---- input ---- */

static void client_request(struct client *c, const char *line, size_t len)
{
	struct ctl_request req;
	json_object *reply;
	char err[512];
	int r;

	r = ctl_request_parse(line, len, &req, err, sizeof(err));
	if (r < 0) {
		log_info("control client %llu (pid %d): %s",
			 (unsigned long long)c->id, (int)c->peer.pid, err);
		client_queue(c, ctl_reply_error(r, "%s", err));
		return;
	}
	log_debug("control client %llu (uid %u, pid %d): %s",
		  (unsigned long long)c->id, (unsigned)c->peer.uid,
		  (int)c->peer.pid, ctl_cmd_name(req.cmd));
	if (!ctl_permitted(&ctl.policy, &c->peer, req.cmd, err, sizeof(err))) {
		log_notice("refused %s from uid %u (pid %d)",
			   ctl_cmd_name(req.cmd), (unsigned)c->peer.uid,
			   (int)c->peer.pid);
		client_queue(c, ctl_reply_error(-EPERM, "%s", err));
	} else {
		reply = command_run(&req, c->id);
		if (reply)
			client_queue(c, reply);
		else
			c->busy = true;
	}
	ctl_request_clear(&req);
}

static void client_process(struct client *c, uint64_t now)
{
	char *line;
	size_t len;
	int r;

	while (!c->busy && !c->closing && c->out_len - c->out_off < OUT_HIGH) {
		r = ctl_linebuf_next(&c->in, &line, &len);
		if (r == 0)
			break;
		if (r < 0) {
			client_queue(c, ctl_reply_error(
						r, "request longer than %d bytes",
						CTL_MAX_LINE));
			c->closing = true;
			break;
		}
		client_request(c, line, len);
	}
	if (!ctl_linebuf_partial(&c->in))
		c->line_start = 0;
	else if (!c->line_start)
		c->line_start = now;
	/* Nothing more will come: finish what is owed, then close. */
	if (c->eof && !c->busy)
		c->closing = true;
}

/* Returns false when the client is to be closed at once. */
static bool client_read(struct client *c, uint64_t now)
{
	ssize_t n = ctl_linebuf_fill(&c->in, c->src.fd);

	if (n == -EAGAIN)
		return true;
	if (n < 0)
		return false;
	if (n == 0)
		c->eof = true;
	else
		c->active = now;
	return true;
}

/* ---- life cycle ---- */

static void client_free(struct client *c)
{
	int fd = c->src.fd; /* loop_remove() forgets it */
	struct client **p;

	for (p = &ctl.clients; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	loop_remove(&c->src);
	close(fd);
	ctl_linebuf_free(&c->in);
	free(c->out);
	free(c);
	ctl.nclients--;
}

static bool client_wants_input(const struct client *c)
{
	return !c->eof && !c->closing && !c->busy &&
	       c->out_len - c->out_off < OUT_HIGH && ctl_linebuf_room(&c->in);
}

static void client_update(struct client *c)
{
	uint32_t ev = 0;

	if (client_wants_input(c))
		ev |= EPOLLIN;
	if (c->out_len > c->out_off)
		ev |= EPOLLOUT;
	loop_modify(&c->src, ev);
}

static void on_client(struct loop_source *s, uint32_t events)
{
	struct client *c = s->opaque;
	uint64_t now = ctl_now_ms();

	/* Gone both ways: nobody is left to answer. */
	if (events & (EPOLLHUP | EPOLLERR)) {
		client_free(c);
		return;
	}
	if ((events & EPOLLIN) && !client_read(c, now)) {
		client_free(c);
		return;
	}
	client_process(c, now);
	if (!client_flush(c, now) ||
	    (c->closing && c->out_len == c->out_off)) {
		client_free(c);
		return;
	}
	client_update(c);
}

/* Over the limit: tell the client why, without waiting for it. */
static void refuse_client(int fd)
{
	json_object *o = ctl_reply_error(-EBUSY, "too many control clients "
					 "(%u); try again later",
					 ctl.max_clients);
	size_t len;
	char *line = o ? ctl_encode_line(o, &len) : NULL;

	if (line && send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("refusing a control client: %s", strerror(errno));
	free(line);
	json_object_put(o);
	close(fd);
}

static void client_new(int fd)
{
	struct client *c = calloc(1, sizeof(*c));

	if (!c || ctl_peer_get(fd, &c->peer) < 0 ||
	    loop_add(&c->src, fd, EPOLLIN, on_client, c) < 0) {
		log_warning("control client: %s", strerror(errno));
		free(c);
		close(fd);
		return;
	}
	ctl_linebuf_init(&c->in, CTL_MAX_LINE);
	c->id = ++ctl.next_id;
	c->active = ctl_now_ms();
	c->next = ctl.clients;
	ctl.clients = c;
	ctl.nclients++;
}

static void on_listen(struct loop_source *s, uint32_t events)
{
	int i, fd;

	for (i = 0; i < ACCEPT_BATCH; i++) {
		fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warning("control socket: accept: %s",
					    strerror(errno));
			return;
		}
		if (ctl.nclients >= ctl.max_clients)
			refuse_client(fd);
		else
			client_new(fd);
	}
}

/* ---- deferred replies and deadlines ---- */

void control_reply(uint64_t client_id, json_object *reply)
{
	struct client *c;

	for (c = ctl.clients; c; c = c->next)
		if (c->id == client_id)
			break;
	if (!c) {
		json_object_put(reply);
		return;
	}
	c->busy = false;
	client_queue(c, reply);
	/* The write happens in on_client once EPOLLOUT says so. */
	client_update(c);
}

/* Milliseconds until @c's next deadline; 0 when due; -1 when none. */
static int64_t client_deadline(const struct client *c, uint64_t now,
			       const char **why)
{
	uint64_t due;

	if (c->closing && c->out_len == c->out_off) {
		*why = NULL;
		return 0;
	}
	if (c->out_len > c->out_off) {
		/* Sending requests does not excuse not reading replies. */
		*why = "does not read its replies";
		due = c->written + WRITE_TIMEOUT_MS;
	} else if (c->busy) {
		return -1;
	} else if (c->line_start) {
		*why = "did not finish its request";
		due = c->line_start + REQUEST_TIMEOUT_MS;
	} else {
		*why = NULL; /* idle: close quietly */
		due = c->active + IDLE_TIMEOUT_MS;
	}
	return due > now ? (int64_t)(due - now) : 0;
}

int control_expire(void)
{
	uint64_t now = ctl_now_ms();
	struct client *c, *next;
	int64_t next_ms = -1;

	for (c = ctl.clients; c; c = next) {
		const char *why = NULL;
		int64_t ms = client_deadline(c, now, &why);

		next = c->next;
		if (ms != 0) {
			if (ms > 0 && (next_ms < 0 || ms < next_ms))
				next_ms = ms;
			continue;
		}
		if (why) {
			log_info("control client %llu (pid %d) %s in time; "
				 "closing it",
				 (unsigned long long)c->id, (int)c->peer.pid,
				 why);
			if (c->line_start && c->out_len == c->out_off) {
				client_queue(c, ctl_reply_error(
							-ETIMEDOUT,
							"request not completed "
							"within %d s",
							REQUEST_TIMEOUT_MS /
								1000));
				client_flush(c, now);
			}
		}
		client_free(c);
	}
	return next_ms > INT32_MAX ? INT32_MAX : (int)next_ms;
}

unsigned control_client_count(void)
{
	return ctl.nclients;
}

/* ---- the listening socket ---- */

static int resolve_group(const char *name)
{
	struct group *g;

	if (!name)
		return 0;
	errno = 0;
	g = getgrnam(name);
	if (!g) {
		log_err("--control-group %s: %s", name,
			errno ? strerror(errno) : "no such group");
		return -ENOENT;
	}
	ctl.policy.has_group = true;
	ctl.policy.group = g->gr_gid;
	snprintf(ctl.group_name, sizeof(ctl.group_name), "%s", name);
	ctl.policy.group_name = ctl.group_name;
	return 0;
}

/* The directory is created if missing (its parent must exist). */
static int make_parent_dir(const char *path)
{
	char buf[sizeof(ctl.path)];
	char *dir;

	snprintf(buf, sizeof(buf), "%s", path);
	dir = dirname(buf);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		log_err("cannot create %s for the control socket: %s", dir,
			strerror(errno));
		return -errno;
	}
	return 0;
}

/* A socket left by a dead daemon is removed; a live one is an error. */
static int clear_stale(const char *path)
{
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		log_err("%s exists and is not a socket; not touching it",
			path);
		return -EEXIST;
	}
	r = ctl_connect(path, &fd);
	if (r == 0) {
		close(fd);
		log_err("another nbdd is already running on %s", path);
		return -EADDRINUSE;
	}
	if (r != -ECONNREFUSED) {
		log_err("cannot tell whether %s is in use: %s", path,
			strerror(-r));
		return r;
	}
	log_notice("removing stale control socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static int bind_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, r = 0;

	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Never world-accessible, not even between bind() and chmod(). */
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		r = -errno;
	umask(old);
	if (r == 0) {
		ctl.bound = true;
		if (ctl.policy.has_group &&
		    chown(path, (uid_t)-1, ctl.policy.group) < 0)
			r = -errno;
	}
	if (r == 0 && chmod(path, 0660) < 0)
		r = -errno;
	if (r == 0 && listen(fd, 64) < 0)
		r = -errno;
	if (r < 0) {
		log_err("control socket %s: %s", path, strerror(-r));
		close(fd);
		return r;
	}
	return fd;
}

int control_open(const struct control_options *o)
{
	int fd, r;

	if (strlen(o->path) >= sizeof(ctl.path)) {
		log_err("control socket path too long: %s", o->path);
		return -ENAMETOOLONG;
	}
	snprintf(ctl.path, sizeof(ctl.path), "%s", o->path);
	ctl.max_clients = o->max_clients ? o->max_clients : 64;
	ctl.policy.owner = geteuid();
	r = resolve_group(o->group);
	if (r == 0)
		r = make_parent_dir(o->path);
	if (r == 0)
		r = clear_stale(o->path);
	if (r < 0)
		return r;
	fd = bind_socket(o->path);
	if (fd < 0)
		return fd;
	r = loop_add(&ctl.src, fd, EPOLLIN, on_listen, NULL);
	if (r < 0) {
		close(fd);
		return r;
	}
	log_info("control socket %s (mode 0660%s%s)", o->path,
		 o->group ? ", group " : "", o->group ? o->group : "");
	return 0;
}

void control_stop_listening(void)
{
	int fd = ctl.src.fd;

	if (fd < 0)
		return;
	loop_remove(&ctl.src);
	close(fd);
	if (ctl.bound && unlink(ctl.path) < 0 && errno != ENOENT)
		log_warning("removing %s: %s", ctl.path, strerror(errno));
	ctl.bound = false;
}

void control_close(void)
{
	control_stop_listening();
	while (ctl.clients)
		client_free(ctl.clients);
}
