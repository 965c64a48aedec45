/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The network server: a table of exports, listening sockets, and one
 * detached thread per client running handshake, then transmission.
 *
 * Clients are counted, and those still negotiating counted apart: a
 * client over either cap is closed at once, so a flood of idle
 * connections costs a file descriptor for a moment and nothing more.
 * nbdd_server_free() wakes every client (shutdown(2) on a socket in the
 * handshake, conn_shutdown() on one in transmission) and waits for the
 * count to reach zero.
 */
#include <errno.h>
#include <stddef.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "proto/tls.h"

#define DEFAULT_HANDSHAKE_TIMEOUT 10
#define DEFAULT_MAX_CLIENTS 1024
#define DEFAULT_MAX_NEGOTIATING 64
/* Group members may connect to a unix socket; others may not. */
#define UNIX_SOCKET_MODE 0660
/*
 * On nbdd_server_free(), clients in transmission get this long to have
 * their requests in flight answered (the spec's "SHOULD wait"); one that
 * does not read its replies is then disconnected, or it would hold the
 * server forever with a send blocked on a full socket.
 */
#define DRAIN_GRACE_MS 5000

enum client_state {
	CLIENT_NEGOTIATING, /* fd in the handshake */
	CLIENT_RUNNING,     /* conn serving */
	CLIENT_DONE,        /* fd closed or closing: hands off */
};

struct client {
	struct client *next, **pprev;
	struct nbdd_server *srv;
	int fd;
	enum client_state state;
	struct conn *conn; /* CLIENT_RUNNING only */
};

struct nbdd_server {
	pthread_mutex_t lock;
	pthread_cond_t gone; /* a client left */
	struct nbdd_export **exports; /* referenced; only ever grows */
	size_t nexports, cap;
	unsigned handshake_timeout, max_clients, max_negotiating;
	unsigned nclients, nnegotiating;
	struct client *clients;
	bool stopping;
	enum nbdd_tls_mode tls_mode;
	struct tls_creds *tls; /* set before serving, read-only after */
};

/* ---- the export table ---- */

NBDD_EXPORT int nbdd_server_new(const struct nbdd_server_options *opts,
				struct nbdd_server **out)
{
	struct nbdd_server_options o = { 0 };
	struct nbdd_server *srv;
	pthread_condattr_t ca;

	if (!out)
		return set_error(-EINVAL, "nbdd_server_new: no result pointer");
	if (opts)
		o = *opts;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return set_error(-ENOMEM, "out of memory for a server");
	pthread_mutex_init(&srv->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->gone, &ca);
	pthread_condattr_destroy(&ca);
	srv->handshake_timeout = o.handshake_timeout ? o.handshake_timeout
						     : DEFAULT_HANDSHAKE_TIMEOUT;
	srv->max_clients = o.max_clients ? o.max_clients : DEFAULT_MAX_CLIENTS;
	srv->max_negotiating = o.max_negotiating ? o.max_negotiating
						 : DEFAULT_MAX_NEGOTIATING;
	*out = srv;
	return 0;
}

static struct nbdd_export *lookup(struct nbdd_server *srv, const char *name,
				  size_t len)
{
	const char *n;
	size_t i;

	/* The empty name is the default export: the first one added. */
	if (len == 0 && srv->nexports)
		return srv->exports[0];
	for (i = 0; i < srv->nexports; i++) {
		n = nbdd_export_name(srv->exports[i]);
		if (strlen(n) == len && !memcmp(n, name, len))
			return srv->exports[i];
	}
	return NULL;
}

NBDD_EXPORT int nbdd_server_add_export(struct nbdd_server *srv,
				       struct nbdd_export *e)
{
	const char *name;
	struct nbdd_export **v;
	int r = 0;

	if (!srv || !e)
		return set_error(-EINVAL, "nbdd_server_add_export: NULL");
	name = nbdd_export_name(e);
	pthread_mutex_lock(&srv->lock);
	if (*name && lookup(srv, name, strlen(name))) {
		r = set_error(-EEXIST, "export '%s' is already served", name);
	} else if (srv->nexports == srv->cap) {
		v = realloc(srv->exports, (srv->cap ? 2 * srv->cap : 4) *
						  sizeof(*v));
		if (v) {
			srv->exports = v;
			srv->cap = srv->cap ? 2 * srv->cap : 4;
		} else {
			r = set_error(-ENOMEM, "out of memory for an export");
		}
	}
	if (r == 0)
		srv->exports[srv->nexports++] = nbdd_export_ref(e);
	pthread_mutex_unlock(&srv->lock);
	return r;
}

/*
 * Exports are only released in nbdd_server_free(), after every client
 * is gone, so a pointer returned here stays valid for the handshake.
 */
struct nbdd_export *server_find_export(struct nbdd_server *srv,
				       const char *name, size_t len)
{
	struct nbdd_export *e;

	pthread_mutex_lock(&srv->lock);
	e = lookup(srv, name, len);
	pthread_mutex_unlock(&srv->lock);
	return e;
}

size_t server_export_count(struct nbdd_server *srv)
{
	size_t n;

	pthread_mutex_lock(&srv->lock);
	n = srv->nexports;
	pthread_mutex_unlock(&srv->lock);
	return n;
}

/* The i-th export, or NULL past the end. */
struct nbdd_export *server_export_at(struct nbdd_server *srv, size_t i)
{
	struct nbdd_export *e;

	pthread_mutex_lock(&srv->lock);
	e = i < srv->nexports ? srv->exports[i] : NULL;
	pthread_mutex_unlock(&srv->lock);
	return e;
}

unsigned server_handshake_timeout(struct nbdd_server *srv)
{
	return srv->handshake_timeout;
}

/* ---- TLS ---- */

NBDD_EXPORT int nbdd_server_set_tls(struct nbdd_server *srv,
				    const struct nbdd_tls_options *opts)
{
	struct nbdd_tls_options o = { 0 };
	struct tls_creds *creds = NULL;
	int r;

	if (!srv || !opts)
		return set_error(-EINVAL, "nbdd_server_set_tls: NULL");
	/* Fields a caller's struct_size does not reach stay zero. */
	if (opts->struct_size < offsetof(struct nbdd_tls_options, mode) +
					sizeof(opts->mode))
		return set_error(-EINVAL, "nbdd_server_set_tls: struct_size "
				 "%zu is too small", opts->struct_size);
	memcpy(&o, opts, MIN(opts->struct_size, sizeof(o)));
	if (o.mode != NBDD_TLS_OFF && o.mode != NBDD_TLS_ON &&
	    o.mode != NBDD_TLS_REQUIRE)
		return set_error(-EINVAL, "unknown TLS mode %d", (int)o.mode);
	if (o.mode != NBDD_TLS_OFF) {
		r = tls_creds_load(&o, &creds);
		if (r < 0)
			return r;
	}
	pthread_mutex_lock(&srv->lock);
	/* A handshake under way may be using the old credentials. */
	if (srv->nclients) {
		pthread_mutex_unlock(&srv->lock);
		tls_creds_free(creds);
		return set_error(-EBUSY, "nbdd_server_set_tls: clients are "
				 "connected; set TLS before serving");
	}
	tls_creds_free(srv->tls);
	srv->tls = creds;
	srv->tls_mode = o.mode;
	pthread_mutex_unlock(&srv->lock);
	return 0;
}

enum nbdd_tls_mode server_tls(struct nbdd_server *srv,
			      const struct tls_creds **creds)
{
	*creds = srv->tls;
	return srv->tls_mode;
}

/* ---- clients ---- */

/* Count a new client in, or say why not; closes @fd when refused. */
static int client_add(struct nbdd_server *srv, int fd, struct client **out)
{
	struct client *c = calloc(1, sizeof(*c));
	const char *why = NULL;
	int r = 0;

	pthread_mutex_lock(&srv->lock);
	if (!c)
		r = -ENOMEM, why = "out of memory";
	else if (srv->stopping)
		r = -ESHUTDOWN, why = "the server is shutting down";
	else if (srv->nclients >= srv->max_clients)
		r = -EBUSY, why = "too many clients";
	else if (srv->nnegotiating >= srv->max_negotiating)
		r = -EBUSY, why = "too many clients negotiating";
	if (r == 0) {
		c->srv = srv;
		c->fd = fd;
		c->state = CLIENT_NEGOTIATING;
		c->next = srv->clients;
		c->pprev = &srv->clients;
		if (c->next)
			c->next->pprev = &c->next;
		srv->clients = c;
		srv->nclients++;
		srv->nnegotiating++;
	}
	pthread_mutex_unlock(&srv->lock);
	if (r) {
		free(c);
		close(fd);
		log_warning("client refused: %s", why);
		return set_error(r, "client refused: %s", why);
	}
	*out = c;
	return 0;
}

/* Leave the handshake: into transmission with @conn, or to the exit. */
static bool client_negotiated(struct client *c, struct conn *conn)
{
	struct nbdd_server *srv = c->srv;
	bool go_on;

	pthread_mutex_lock(&srv->lock);
	srv->nnegotiating--;
	go_on = conn && !srv->stopping;
	c->state = go_on ? CLIENT_RUNNING : CLIENT_DONE;
	c->conn = go_on ? conn : NULL;
	pthread_mutex_unlock(&srv->lock);
	return go_on;
}

static void client_remove(struct client *c)
{
	struct nbdd_server *srv = c->srv;

	pthread_mutex_lock(&srv->lock);
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	if (c->state == CLIENT_NEGOTIATING)
		srv->nnegotiating--;
	srv->nclients--;
	pthread_cond_broadcast(&srv->gone);
	pthread_mutex_unlock(&srv->lock);
	free(c);
}

/* Hands off the fd and conn before they are closed and freed. */
static void client_done(struct client *c)
{
	pthread_mutex_lock(&c->srv->lock);
	c->state = CLIENT_DONE;
	c->conn = NULL;
	pthread_mutex_unlock(&c->srv->lock);
}

static int client_serve(struct client *c)
{
	struct negotiated neg;
	struct conn *conn = NULL;
	int r;

	r = handshake_run(c->srv, c->fd, &neg);
	if (r == 0) {
		conn = conn_new(c->fd, CONN_NETWORK, &neg);
		if (!conn) {
			tls_session_free(neg.tls);
			nbdd_export_unref(neg.export);
			r = set_error(-ENOMEM, "out of memory for a connection");
		}
	}
	if (!client_negotiated(c, conn)) {
		/* Refused, failed, or the server stopped meanwhile. */
		if (conn)
			conn_free(conn); /* closes the fd */
		else
			close(c->fd);
		return r ? r : -ESHUTDOWN;
	}
	r = conn_run(conn);
	client_done(c);
	conn_free(conn);
	return r;
}

NBDD_EXPORT int nbdd_server_serve_fd(struct nbdd_server *srv, int fd)
{
	struct client *c;
	int r;

	if (!srv || fd < 0) {
		if (fd >= 0)
			close(fd);
		return set_error(-EINVAL, "nbdd_server_serve_fd: bad argument");
	}
	r = client_add(srv, fd, &c);
	if (r < 0)
		return r;
	r = client_serve(c);
	client_remove(c);
	return r;
}

static void *client_main(void *arg)
{
	struct client *c = arg;

	client_serve(c);
	/* Last touch of the server: nbdd_server_free() may follow at once. */
	client_remove(c);
	return NULL;
}

NBDD_EXPORT int nbdd_server_start_fd(struct nbdd_server *srv, int fd)
{
	pthread_attr_t attr;
	struct client *c;
	pthread_t t;
	int r;

	if (!srv || fd < 0) {
		if (fd >= 0)
			close(fd);
		return set_error(-EINVAL, "nbdd_server_start_fd: bad argument");
	}
	r = client_add(srv, fd, &c);
	if (r < 0)
		return r;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &attr, client_main, c);
	pthread_attr_destroy(&attr);
	if (r) {
		/* Out of the list first: free() must not see a closed fd. */
		client_remove(c);
		close(fd);
		log_warning("client refused: cannot start a thread: %s",
			    strerror(r));
		return set_error(-r, "cannot start a client thread: %s",
				 strerror(r));
	}
	return 0;
}

/* Called with the lock held: wait for the clients, up to the grace. */
static void wait_clients(struct nbdd_server *srv)
{
	struct timespec until;
	struct client *c;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += DRAIN_GRACE_MS / 1000;
	until.tv_nsec += (DRAIN_GRACE_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (srv->nclients &&
	       pthread_cond_timedwait(&srv->gone, &srv->lock, &until) !=
		       ETIMEDOUT)
		;
	if (!srv->nclients)
		return;
	log_warning("%u client(s) still busy after %d ms: disconnecting them",
		    srv->nclients, DRAIN_GRACE_MS);
	for (c = srv->clients; c; c = c->next)
		if (c->state == CLIENT_RUNNING)
			shutdown(c->fd, SHUT_RDWR); /* blocked sends fail */
	while (srv->nclients)
		pthread_cond_wait(&srv->gone, &srv->lock);
}

NBDD_EXPORT void nbdd_server_free(struct nbdd_server *srv)
{
	struct client *c;
	size_t i;

	if (!srv)
		return;
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	for (c = srv->clients; c; c = c->next) {
		if (c->state == CLIENT_NEGOTIATING)
			shutdown(c->fd, SHUT_RDWR); /* the handshake's read fails */
		else if (c->state == CLIENT_RUNNING)
			conn_shutdown(c->conn); /* in-flight requests finish */
	}
	wait_clients(srv);
	pthread_mutex_unlock(&srv->lock);
	for (i = 0; i < srv->nexports; i++)
		nbdd_export_unref(srv->exports[i]);
	free(srv->exports);
	tls_creds_free(srv->tls);
	pthread_cond_destroy(&srv->gone);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}

/* ---- sockets ---- */

static void set_nodelay(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int one = 1;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

NBDD_EXPORT int nbdd_server_accept(struct nbdd_server *srv, int listen_fd)
{
	int fd;

	if (!srv)
		return set_error(-EINVAL, "nbdd_server_accept: no server");
	do
		fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return set_error(-errno, "accept: %s", strerror(errno));
	/* Small replies must not wait for Nagle. */
	set_nodelay(fd);
	return nbdd_server_start_fd(srv, fd);
}

/*
 * A path that exists is replaced only if it is a socket nobody listens
 * on (left by a process that died); anything else is an error, so a
 * typo cannot delete a file and two daemons cannot steal one socket.
 */
static int clear_stale_socket(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, r;

	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return set_error(-EEXIST, "%s exists and is not a socket",
				 sa->sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (r == 0)
		return set_error(-EADDRINUSE, "%s: another server listens "
				 "there", sa->sun_path);
	if (unlink(sa->sun_path) < 0 && errno != ENOENT)
		return set_error(-errno, "cannot remove stale socket %s: %s",
				 sa->sun_path, strerror(errno));
	return 0;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (!*path || strlen(path) >= sizeof(sa.sun_path))
		return set_error(-ENAMETOOLONG, "unix socket path '%s' is "
				 "empty or too long", path);
	strcpy(sa.sun_path, path);
	r = clear_stale_socket(&sa);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return set_error(-errno, "socket: %s", strerror(errno));
	/*
	 * chmod between bind and listen: until listen() nobody can
	 * connect, so there is no moment with the umask's mode.
	 */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, UNIX_SOCKET_MODE) < 0 || listen(fd, SOMAXCONN) < 0) {
		r = -errno;
		close(fd);
		return set_error(r, "cannot listen on %s: %s", path,
				 strerror(-r));
	}
	return fd;
}

/* Split "HOST:PORT", "[V6]:PORT" or "PORT" (host 127.0.0.1). */
static int split_host_port(const char *text, char *host, size_t hlen,
			   const char **port)
{
	const char *colon, *end;
	size_t n;

	if (*text == '[') {
		end = strchr(text, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		n = (size_t)(end - text - 1);
		*port = end + 2;
		text++;
	} else {
		colon = strrchr(text, ':');
		if (!colon) {
			snprintf(host, hlen, "127.0.0.1");
			*port = text;
			return 0;
		}
		if (memchr(text, ':', (size_t)(colon - text)))
			return -EINVAL; /* a bare IPv6 address needs [] */
		n = (size_t)(colon - text);
		*port = colon + 1;
	}
	if (n == 0 || n >= hlen)
		return -EINVAL;
	memcpy(host, text, n);
	host[n] = '\0';
	return 0;
}

static int valid_port(const char *p)
{
	char *end;
	unsigned long v;

	if (*p < '0' || *p > '9')
		return 0;
	v = strtoul(p, &end, 10);
	return !*end && v <= 65535;
}

static int bind_one(const struct addrinfo *ai)
{
	int fd, one = 1;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
	    listen(fd, SOMAXCONN) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

static int listen_tcp(const char *spec)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res, *ai;
	char host[256];
	const char *port;
	int fd = -EADDRNOTAVAIL, r;

	if (split_host_port(spec, host, sizeof(host), &port) < 0 ||
	    !valid_port(port))
		return set_error(-EINVAL, "bad address 'tcp:%s' (tcp:PORT, "
				 "tcp:HOST:PORT or tcp:[IPV6]:PORT)", spec);
	r = getaddrinfo(host, port, &hints, &res);
	if (r)
		return set_error(-EADDRNOTAVAIL, "tcp:%s: %s", spec,
				 gai_strerror(r));
	for (ai = res; ai; ai = ai->ai_next) {
		fd = bind_one(ai);
		if (fd >= 0)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return set_error(fd, "cannot listen on tcp:%s: %s", spec,
				 strerror(-fd));
	return fd;
}

NBDD_EXPORT int nbdd_listen(const char *address)
{
	if (!address)
		return set_error(-EINVAL, "nbdd_listen: no address");
	if (!strncmp(address, "unix:", 5))
		return listen_unix(address + 5);
	if (!strncmp(address, "tcp:", 4))
		return listen_tcp(address + 4);
	return set_error(-EINVAL, "unknown address '%s' (unix:PATH or "
			 "tcp:[HOST:]PORT)", address);
}
