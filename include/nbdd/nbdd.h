/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libnbdd: serve a backend over NBD, to a network client or to the kernel.
 *
 *   export  = one opened backend instance with its attributes (name, size,
 *             read-only, ...). Shared by every connection that serves it.
 *   server  = a table of exports offered to network clients; runs the
 *             handshake and then the transmission phase on a socket.
 *   mapping = an export attached to a kernel /dev/nbdX through netlink;
 *             its sockets are socketpairs served by this process.
 *
 * Every function returns 0 (or a count) on success and a negative errno
 * on failure; nbdd_last_error() then gives a message for a person.
 * The library never prints and never exits: see nbdd_set_log().
 */
#ifndef NBDD_NBDD_H
#define NBDD_NBDD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nbdd/backend.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NBDD_VERSION_STRING "0.1.0"

/* ---- logging and errors ---- */

enum nbdd_log_level {
	NBDD_LOG_ERR = 3,
	NBDD_LOG_WARNING = 4,
	NBDD_LOG_NOTICE = 5,
	NBDD_LOG_INFO = 6,
	NBDD_LOG_DEBUG = 7,
};

typedef void (*nbdd_log_fn)(void *opaque, int level, const char *msg);

/* Messages at or below @max_level go to @fn (default: none at all). */
void nbdd_set_log(nbdd_log_fn fn, void *opaque, int max_level);

/* Why the last failing call on this thread failed ("" if unknown). */
const char *nbdd_last_error(void);

/* ---- exports ---- */

struct nbdd_export;

struct nbdd_export_options {
	const char *name;        /* export name for NBD_OPT_GO ("" allowed) */
	const char *description; /* NBD_INFO_DESCRIPTION, may be NULL */
	bool readonly;           /* refuse writes even if the backend has them */
	unsigned workers;        /* threads per connection for blocking
				    backends; 0: default (8) */
};

/*
 * Open a backend from a spec: "memory:size=1G", "file:path=/srv/a.img",
 * "/usr/lib/x/plugin.so:key=value", an installed plugin's NAME
 * ("rbd:pool=p,image=i", see nbdd_set_plugin_dir()), or a NAME defined in
 * the backends directory (see nbdd_set_config_dir()). @opts may be NULL.
 */
int nbdd_export_open(const char *spec, const struct nbdd_export_options *opts,
		     struct nbdd_export **out);

/* Open a backend the program defines itself. */
int nbdd_export_new(const struct nbdd_backend *backend,
		    const struct nbdd_param *params, size_t nparams,
		    const struct nbdd_export_options *opts,
		    struct nbdd_export **out);

struct nbdd_export *nbdd_export_ref(struct nbdd_export *e);
/* Drops a reference; the last one flushes and closes the backend. */
void nbdd_export_unref(struct nbdd_export *e);

const char *nbdd_export_name(const struct nbdd_export *e);
const char *nbdd_export_backend_name(const struct nbdd_export *e);
uint64_t nbdd_export_size(const struct nbdd_export *e);
bool nbdd_export_readonly(const struct nbdd_export *e);
/* Its data dies with this process (NBDD_BACKEND_VOLATILE: memory). */
bool nbdd_export_volatile(const struct nbdd_export *e);
/* NBDD_CAP_* as served (read-only exports lose the write-side bits). */
uint32_t nbdd_export_capabilities(const struct nbdd_export *e);
void nbdd_export_block_size(const struct nbdd_export *e,
			    struct nbdd_block_size *bs);
/* Grow or shrink through the backend's resize callback. */
int nbdd_export_resize(struct nbdd_export *e, uint64_t new_size);
/*
 * Ask a backend whose size can change outside nbdd
 * (NBDD_BACKEND_SIZE_CHANGES) for its size again: 1 when it changed,
 * 0 when not, -ENOTSUP for a backend without that flag, else -errno.
 */
int nbdd_export_refresh_size(struct nbdd_export *e);

/* Where NAME.conf backend definitions live (default /etc/nbdd/backends.d). */
void nbdd_set_config_dir(const char *dir);
/*
 * Where installed plugins live (default PLUGINDIR, e.g. /usr/local/lib/nbdd):
 * "NAME:..." loads DIR/NAME.so when NAME is not built in.
 */
void nbdd_set_plugin_dir(const char *dir);

/* ---- per-connection statistics ---- */

enum nbdd_op {
	NBDD_OP_READ,
	NBDD_OP_WRITE,
	NBDD_OP_FLUSH,
	NBDD_OP_TRIM,
	NBDD_OP_ZERO,
	NBDD_OP_CACHE,
	NBDD_OP_BLOCK_STATUS,
	NBDD_OP__COUNT
};

struct nbdd_op_stats {
	uint64_t requests;
	uint64_t bytes;
	uint64_t errors;
};

struct nbdd_conn_stats {
	struct nbdd_op_stats op[NBDD_OP__COUNT];
	uint64_t in_flight; /* requests received and not yet answered */
	bool connected;     /* false once the peer has gone */
};

const char *nbdd_op_name(enum nbdd_op op); /* "read", "write", ... */

/* ---- network server ---- */

struct nbdd_server;

struct nbdd_server_options {
	unsigned handshake_timeout; /* seconds; 0: default (10) */
	unsigned max_clients;       /* 0: default (1024) */
	unsigned max_negotiating;   /* clients in the handshake; 0: default (64) */
};

int nbdd_server_new(const struct nbdd_server_options *opts,
		    struct nbdd_server **out);
/* The first export added is also the default export (empty name). */
int nbdd_server_add_export(struct nbdd_server *srv, struct nbdd_export *e);
/* Disconnects every client, waits for them, frees. */
void nbdd_server_free(struct nbdd_server *srv);

/*
 * TLS on the network server (NBD_OPT_STARTTLS), as nbdkit and qemu-nbd do it:
 *   NBDD_TLS_OFF      STARTTLS is refused; everything is plaintext
 *   NBDD_TLS_ON       clients may upgrade to TLS or stay plaintext
 *   NBDD_TLS_REQUIRE  every option but STARTTLS and ABORT is refused with
 *                     NBD_REP_ERR_TLS_REQD until the client upgrades
 * Credentials: X.509 from certificates_dir (ca-cert.pem, server-cert.pem,
 * server-key.pem, optional ca-crl.pem), or pre-shared keys from psk_file
 * (psktool's "username:hexkey" lines), or both. verify_peer asks clients
 * for a certificate signed by ca-cert.pem. Set struct_size to
 * sizeof(struct nbdd_tls_options): fields are only ever added at the end.
 */
enum nbdd_tls_mode {
	NBDD_TLS_OFF,
	NBDD_TLS_ON,
	NBDD_TLS_REQUIRE,
};

struct nbdd_tls_options {
	size_t struct_size;
	enum nbdd_tls_mode mode;
	const char *certificates_dir; /* NULL: no X.509 */
	const char *psk_file;         /* NULL: no PSK */
	bool verify_peer;             /* needs certificates_dir */
};

/*
 * Load the credentials (errors name the file and what to do) and apply
 * them to clients that connect from now on. Call before serving.
 */
int nbdd_server_set_tls(struct nbdd_server *srv,
			const struct nbdd_tls_options *opts);

/* Serve one connected client until it leaves; closes @fd. Blocking. */
int nbdd_server_serve_fd(struct nbdd_server *srv, int fd);
/* The same on a new thread; returns at once. */
int nbdd_server_start_fd(struct nbdd_server *srv, int fd);

/*
 * Bind a listening socket: "unix:/path", "tcp:HOST:PORT" ("tcp:PORT"
 * means 127.0.0.1). Returns the fd or -errno.
 */
int nbdd_listen(const char *address);
/* Accept one client from @listen_fd and start it (for an event loop). */
int nbdd_server_accept(struct nbdd_server *srv, int listen_fd);

/*
 * Busy polling, for every connection of this process to an inline
 * backend (memory, null) from now on. A reader that has sent its
 * replies and finds no request waiting tries the socket for up to
 * @usec (at most NBDD_POLL_MAX_LIMIT) before it sleeps, and stops trying
 * while the peer takes longer than that to send more: latency and IOPS
 * of a busy connection go up, and so does CPU per request. 0 (the
 * default) never polls. Returns 0, or -EINVAL past the limit.
 */
#define NBDD_POLL_MAX_LIMIT 1000
int nbdd_set_poll_max(unsigned usec);

/*
 * Serve only the transmission phase on @fd: no handshake, simple replies
 * only. This is what the kernel's nbd driver speaks. Blocking; closes @fd.
 */
int nbdd_serve_transmission(struct nbdd_export *e, int fd,
			    struct nbdd_conn_stats *final_stats);

/* ---- kernel mappings (/dev/nbdX) ---- */

struct nbdd_mapping;

struct nbdd_attach_options {
	int index;                  /* /dev/nbdINDEX; -1: the kernel picks */
	unsigned connections;       /* sockets, 1..16 (several need
				       multi-conn); 0: 1, see nbdd/kernel.h */
	uint32_t block_size;        /* 512..page size; 0: from the backend */
	uint32_t timeout;           /* seconds per request; 0: kernel default */
	uint32_t dead_conn_timeout; /* seconds to wait for new sockets; 0: off */
	const char *identifier;     /* shown in sysfs; NULL: the spec */
	bool readonly;
};

/* Load the nbd module if it is not there (a built-in driver is fine). */
int nbdd_kernel_prepare(void);

int nbdd_attach(struct nbdd_export *e, const struct nbdd_attach_options *o,
		struct nbdd_mapping **out);
int nbdd_mapping_index(const struct nbdd_mapping *m);
struct nbdd_export *nbdd_mapping_export(const struct nbdd_mapping *m);
unsigned nbdd_mapping_connections(const struct nbdd_mapping *m);
int nbdd_mapping_stats(const struct nbdd_mapping *m, unsigned conn,
		       struct nbdd_conn_stats *out);
/* Wait until the kernel or the peer ends the mapping. */
int nbdd_mapping_wait(struct nbdd_mapping *m);
/* Flush, disconnect the kernel device, wait for the sockets, free. */
int nbdd_detach(struct nbdd_mapping *m);

#ifdef __cplusplus
}
#endif
#endif /* NBDD_NBDD_H */
