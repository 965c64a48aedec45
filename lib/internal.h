/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the modules of libnbdd share and the outside world does not see.
 *
 *   log.c           logging callback, thread-local error messages
 *   util.c          sizes, full reads/writes with deadlines, string helpers
 *   export.c        backend instance + the fallbacks and the thread model
 *   extents.c       the extents collector handed to backends
 *   spec.c          "memory:size=1G" / NAME.conf / plugin.so resolution
 *   plugin.c        dlopen and ABI checks
 *   backends/       built-in backends (memory, file, null)
 *   proto/wire.c    pure encode/decode/validate
 *   proto/handshake.c  option haggling (network clients only)
 *   proto/conn.c    the transmission phase: one engine for clients and kernel
 *   proto/tls*.c    TLS credentials and sessions (gnutls), see proto/tls.h
 *   server.c        export table, listeners, client threads
 *   kernel/         netlink family, module loading, mappings
 */
#ifndef NBDD_INTERNAL_H
#define NBDD_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <nbdd/backend.h>
#include <nbdd/nbdd.h>

#include "proto/wire.h"

#define NBDD_EXPORT __attribute__((visibility("default")))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- log.c ---- */

void nbdd_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
bool nbdd_log_enabled(int level);
#define log_err(...)     nbdd_log(NBDD_LOG_ERR, __VA_ARGS__)
#define log_warning(...) nbdd_log(NBDD_LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  nbdd_log(NBDD_LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    nbdd_log(NBDD_LOG_INFO, __VA_ARGS__)
#define log_debug(...)   nbdd_log(NBDD_LOG_DEBUG, __VA_ARGS__)

/*
 * Set the thread's "last error" message (nbdd_last_error()) and return
 * @err, which must be a negative errno: `return set_error(-EINVAL, ...)`.
 */
int set_error(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void clear_error(void);
/* The message a backend gave with nbdd_backend_error(), or NULL; clears it. */
const char *take_backend_error(void);

/* ---- util.c ---- */

/*
 * Read/write exactly @len bytes. @deadline_ms is an absolute
 * CLOCK_MONOTONIC time in ms (0: none). Returns 0, -ETIMEDOUT, -ECONNRESET
 * on EOF, or another -errno. Retries EINTR and short transfers.
 */
int read_full(int fd, void *buf, size_t len, uint64_t deadline_ms);
int write_full(int fd, const void *buf, size_t len, uint64_t deadline_ms);
int writev_full(int fd, struct iovec *iov, int iovcnt);
uint64_t now_ms(void);
uint64_t now_us(void);
/* Until @fd is ready for @events: 0, or -ETIMEDOUT past the deadline. */
int wait_fd(int fd, short events, uint64_t deadline_ms);

/* ---- extents.c ---- */

struct extent {
	uint64_t offset;
	uint64_t length;
	uint32_t flags;
};

struct nbdd_extents {
	uint64_t start; /* first byte asked for */
	uint64_t end;   /* one past the last byte worth keeping */
	uint64_t next;  /* where the next extent must start */
	struct extent *v;
	size_t n, cap;
	size_t max; /* stop collecting after this many */
};

void extents_init(struct nbdd_extents *x, uint64_t offset, uint64_t count,
		  size_t max);
void extents_free(struct nbdd_extents *x);

/* ---- export.c ---- */

struct nbdd_export {
	atomic_uint refs;
	struct nbdd_backend b; /* copied from the backend, zero-padded */
	void *handle;
	void *dl; /* dlopen() handle of a plugin, or NULL */
	char *name;
	char *description;
	char *spec; /* as given, for listings */
	bool readonly;
	uint32_t caps; /* NBDD_CAP_* as served */
	struct nbdd_block_size bs;
	_Atomic uint64_t size;
	unsigned workers;
	pthread_mutex_t lock; /* held around calls for NBDD_THREAD_SERIALIZE */
};

/*
 * The calls the transmission engine makes. They apply the thread model,
 * the fallbacks (FUA by flush, zero by pwrite, cache as a no-op) and map
 * backend errors; each returns 0 or a negative errno.
 */
int export_pread(struct nbdd_export *e, void *buf, size_t count,
		 uint64_t offset, uint32_t flags);
int export_pwrite(struct nbdd_export *e, const void *buf, size_t count,
		  uint64_t offset, uint32_t flags);
int export_flush(struct nbdd_export *e);
int export_trim(struct nbdd_export *e, uint64_t count, uint64_t offset,
		uint32_t flags);
int export_zero(struct nbdd_export *e, uint64_t count, uint64_t offset,
		uint32_t flags);
int export_cache(struct nbdd_export *e, uint64_t count, uint64_t offset);
int export_extents(struct nbdd_export *e, uint64_t count, uint64_t offset,
		   uint32_t flags, struct nbdd_extents *out);

/*
 * The asynchronous path (backends with .aio_ callbacks). The engine
 * embeds a struct nbdd_request in each request it submits and is told
 * the outcome through ->done, from whatever thread the backend ends it
 * on; FUA the backend lacks becomes ->flush_pending.
 */
struct nbdd_request {
	struct nbdd_export *e;
	const char *op;     /* the callback running, for messages */
	bool flush_after;   /* emulated FUA: flush once the write is done */
	/*
	 * Set when ->done is called for a write that succeeded and needs
	 * that flush: the engine runs it (export_flush(), on a thread of
	 * its own) before it replies. Never from the backend's thread,
	 * which may be the one its flush would wait for (libnbd's poller).
	 */
	bool flush_pending;
	/* The engine's: @err is 0 or a valid negative errno, logged. */
	void (*done)(struct nbdd_request *req, int err);
};

bool backend_has_aio(const struct nbdd_backend *b);
/* Does @op with @flags (NBDD_F_*) have an asynchronous path on @e? */
bool export_can_submit(const struct nbdd_export *e, enum nbdd_op op,
		       uint32_t flags);
/*
 * Start @op (one export_can_submit() allowed) for @req, whose ->done is
 * set. 0: ->done will be called once. Else a negative errno, logged, and
 * ->done will not be called.
 */
int export_submit(struct nbdd_export *e, struct nbdd_request *req,
		  enum nbdd_op op, void *buf, uint64_t count,
		  uint64_t offset, uint32_t flags);

/* Transmission flags for this export (HAS_FLAGS always set). */
uint16_t export_eflags(const struct nbdd_export *e);
bool export_is_inline(const struct nbdd_export *e);

/* ---- spec.c / plugin.c ---- */

struct backend_spec {
	char *backend; /* "memory", "/path/x.so", ... */
	struct nbdd_param *params;
	size_t nparams;
	/* export attributes a NAME.conf may set */
	char *description;
	int readonly; /* -1: not set */
};

/* Parse "name:key=value,key=value" (see docs/nbdd-backends.7). */
int spec_parse(const char *text, struct backend_spec *out);
/* Resolve NAME against the config dir when it names no backend. */
int spec_resolve(const char *text, struct backend_spec *out);
void spec_free(struct backend_spec *s);

/* A built-in backend by name, or NULL. */
const struct nbdd_backend *builtin_backend(const char *name);
/* Is there a PLUGINDIR/NAME.so? (rbd, nbd: backends with big libraries) */
bool plugin_installed(const char *name);
void plugin_dir(char *buf, size_t size);
/*
 * dlopen @path (or PLUGINDIR/@path.so for an installed NAME) and return its table, copied into @out with the ABI
 * checks done. *dl receives the handle to dlclose() after close().
 */
int plugin_load(const char *path, struct nbdd_backend *out, void **dl);
/* Copy a table honouring struct_size, or fail with a clear message. */
int backend_copy(const struct nbdd_backend *in, struct nbdd_backend *out,
		 const char *origin);

extern const struct nbdd_backend nbdd_backend_memory;
extern const struct nbdd_backend nbdd_backend_file;
extern const struct nbdd_backend nbdd_backend_null;

/* ---- proto/handshake.c ---- */

struct negotiated {
	struct nbdd_export *export; /* referenced */
	bool structured;
	bool extended;
	bool base_allocation;
	uint32_t min_block; /* 1 unless the client promised to honour ours */
	struct tls_session *tls; /* owned; NULL for a plaintext client */
};

struct nbdd_server; /* server.c */
struct tls_creds;   /* proto/tls.h */
struct tls_session;

/*
 * Run fixed-newstyle negotiation on @fd. On 0 the client asked to enter
 * transmission and @out is filled; on a negative errno the connection is
 * to be closed (the client aborted, timed out or broke the protocol).
 */
int handshake_run(struct nbdd_server *srv, int fd, struct negotiated *out);

/* Exports the handshake may offer (server.c). */
struct nbdd_export *server_find_export(struct nbdd_server *srv,
				       const char *name, size_t len);
size_t server_export_count(struct nbdd_server *srv);
struct nbdd_export *server_export_at(struct nbdd_server *srv, size_t i);
unsigned server_handshake_timeout(struct nbdd_server *srv);
/* The TLS mode, and the credentials unless the mode is off (server.c). */
enum nbdd_tls_mode server_tls(struct nbdd_server *srv,
			      const struct tls_creds **creds);

/* ---- proto/conn.c ---- */

struct conn;

enum conn_mode {
	CONN_NETWORK, /* after a handshake */
	CONN_KERNEL,  /* transmission only, simple replies */
};

struct conn *conn_new(int fd, enum conn_mode mode,
		      const struct negotiated *neg);
/* Serve until the peer disconnects or conn_shutdown(); then drain. */
int conn_run(struct conn *c);
/* Ask a running conn to stop (from any thread). */
void conn_shutdown(struct conn *c);
void conn_stats(const struct conn *c, struct nbdd_conn_stats *out);
/* Closes the fd, ends the TLS session, drops the export reference. */
void conn_free(struct conn *c);

#endif /* NBDD_INTERNAL_H */
