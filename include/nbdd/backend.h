/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbdd backend ABI.
 *
 * A backend is a table of callbacks that stores bytes somewhere. nbdd owns
 * the protocol, the kernel and the clients; a backend only answers
 * "read these bytes", "write these bytes", and the like.
 *
 * Stability rules (the same ones nbdkit's plugin ABI follows):
 *  - struct nbdd_backend only ever grows at its end;
 *  - a backend sets .abi_version and .struct_size from the header it was
 *    built with; the loader copies struct_size bytes and treats every
 *    field past that as NULL/0, so an old backend keeps working;
 *  - a backend built for a newer ABI major than the loader knows is
 *    refused with a message naming both versions.
 *
 * Conventions for every callback:
 *  - return 0 on success or a negative errno on failure;
 *  - on failure, nbdd_backend_error() may record a human readable reason,
 *    which ends up in the daemon's log (never sent to a network peer);
 *  - offsets and lengths have been checked against the export size and
 *    the backend's block-size constraints before the call is made.
 *
 * A plugin (.so) exports one symbol, declared with NBDD_BACKEND_REGISTER.
 */
#ifndef NBDD_BACKEND_H
#define NBDD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Bumped when a field is added at the end of struct nbdd_backend.
 * 1: the table up to .max_in_flight; 2: the .aio_* callbacks.
 */
#define NBDD_BACKEND_ABI_VERSION 2

/* What a plugin must export (see NBDD_BACKEND_REGISTER). */
#define NBDD_BACKEND_SYMBOL "nbdd_backend_v1"

/* Thread model: how many callbacks nbdd may run at the same time. */
enum nbdd_thread_model {
	/* One callback at a time for the whole backend instance. */
	NBDD_THREAD_SERIALIZE = 0,
	/* Any callbacks may run concurrently, on any threads. */
	NBDD_THREAD_PARALLEL = 1,
};

/* Backend flags (struct nbdd_backend.flags). */
/*
 * Every data callback finishes quickly without sleeping on I/O (memory,
 * null). nbdd then runs them on the connection's own thread and batches
 * the replies, which saves two context switches per request.
 */
#define NBDD_BACKEND_INLINE (1u << 0)
/*
 * The data lives only in this process (memory): opening the same spec
 * again gives an empty disk. nbdd then never hands such a device to a
 * successor after a crash or restart; it disconnects it instead.
 */
#define NBDD_BACKEND_VOLATILE (1u << 1)
/*
 * The size can change outside nbdd (another host resizes a shared
 * image): while the backend serves a device, nbdd calls .get_size every
 * few seconds and gives the device the size it reports.
 */
#define NBDD_BACKEND_SIZE_CHANGES (1u << 2)

/* Capabilities (returned by .capabilities). */
#define NBDD_CAP_WRITE      (1u << 0)  /* pwrite works (else read-only) */
#define NBDD_CAP_FLUSH      (1u << 1)  /* flush makes writes durable */
#define NBDD_CAP_FUA        (1u << 2)  /* pwrite/zero/trim honour NBDD_F_FUA natively */
#define NBDD_CAP_TRIM       (1u << 3)  /* trim deallocates */
#define NBDD_CAP_ZERO       (1u << 4)  /* zero is efficient (else emulated by pwrite) */
#define NBDD_CAP_FAST_ZERO  (1u << 5)  /* zero with NBDD_F_FAST is honoured */
#define NBDD_CAP_CACHE      (1u << 6)  /* cache prefetches (else a no-op) */
#define NBDD_CAP_EXTENTS    (1u << 7)  /* extents reports holes/zeroes */
#define NBDD_CAP_MULTI_CONN (1u << 8)  /* all connections see one consistent image */
#define NBDD_CAP_RESIZE     (1u << 9)  /* resize works */
#define NBDD_CAP_ROTATIONAL (1u << 10) /* seeks are expensive */

/* Per-call flags. */
#define NBDD_F_FUA      (1u << 0) /* pwrite/zero/trim: durable before return */
#define NBDD_F_MAY_TRIM (1u << 1) /* zero: may deallocate instead of writing */
#define NBDD_F_FAST     (1u << 2) /* zero: return -ENOTSUP unless it is fast */
#define NBDD_F_REQ_ONE  (1u << 3) /* extents: one extent is enough */

/* Extent flags, as base:allocation defines them. */
#define NBDD_EXTENT_HOLE (1u << 0) /* not allocated */
#define NBDD_EXTENT_ZERO (1u << 1) /* reads as zeroes */

/* One key=value parameter of a backend spec, e.g. "size" = "1G". */
struct nbdd_param {
	const char *key;
	const char *value;
};

/* Block-size constraints; 0 in a field means "no constraint". */
struct nbdd_block_size {
	uint32_t minimum;   /* power of two, 1..65536 */
	uint32_t preferred; /* power of two, >= minimum */
	uint32_t maximum;   /* multiple of minimum */
};

/* Collector handed to .extents; filled with nbdd_extents_add(). */
struct nbdd_extents;

/* One request handed to an .aio_* callback; ended by nbdd_request_done(). */
struct nbdd_request;

struct nbdd_backend {
	/* --- header: must stay first, never changes --- */
	uint32_t abi_version; /* NBDD_BACKEND_ABI_VERSION at build time */
	uint32_t struct_size; /* sizeof(struct nbdd_backend) at build time */

	/* --- identity --- */
	const char *name;        /* short, [a-z0-9_-], e.g. "memory" */
	const char *description; /* one line */
	const char *help;        /* the parameters, one per line: "size=SIZE  ..." */
	enum nbdd_thread_model thread_model;
	uint32_t flags; /* NBDD_BACKEND_* */

	/*
	 * Open an instance from its parameters. @readonly is non-zero when
	 * the export is read-only; a backend may then open its storage
	 * read-only. Store the instance in *handle.
	 */
	int (*open)(const struct nbdd_param *params, size_t nparams,
		    int readonly, void **handle);
	void (*close)(void *handle);

	/* Required: the current size in bytes. */
	int (*get_size)(void *handle, uint64_t *size);
	/* Optional: block-size constraints (default: 1 / 4096 / 32 MiB). */
	int (*block_size)(void *handle, struct nbdd_block_size *bs);
	/* Optional: NBDD_CAP_* bits (default: what the callbacks present imply). */
	int (*capabilities)(void *handle, uint32_t *caps);

	/* Required. Fill @buf completely; short reads are the backend's job. */
	int (*pread)(void *handle, void *buf, size_t count, uint64_t offset,
		     uint32_t flags);
	/* Optional (absent: read-only). */
	int (*pwrite)(void *handle, const void *buf, size_t count,
		      uint64_t offset, uint32_t flags);
	/* Optional (absent: flush is a no-op and is not advertised). */
	int (*flush)(void *handle, uint32_t flags);
	/* Optional (absent: trim is not advertised). */
	int (*trim)(void *handle, uint64_t count, uint64_t offset,
		    uint32_t flags);
	/* Optional (absent: nbdd writes zeroes with pwrite). */
	int (*zero)(void *handle, uint64_t count, uint64_t offset,
		    uint32_t flags);
	/* Optional (absent: a no-op). */
	int (*cache)(void *handle, uint64_t count, uint64_t offset,
		     uint32_t flags);
	/*
	 * Optional (absent: everything is reported as allocated data).
	 * Report extents starting exactly at @offset, in order, covering at
	 * least one byte; nbdd trims what lies beyond @offset + @count.
	 */
	int (*extents)(void *handle, uint64_t count, uint64_t offset,
		       uint32_t flags, struct nbdd_extents *out);
	/* Optional: change the size (grow or shrink). */
	int (*resize)(void *handle, uint64_t new_size);

	/*
	 * Optional: how many requests of one connection may be inside the
	 * backend at once (0: 8). nbdd calls a blocking backend from that
	 * many threads per connection at most, so one that waits on a
	 * remote (a cluster, a network server) and gains from many requests
	 * in flight asks for more; the kernel sends up to 128 per socket.
	 */
	uint32_t max_in_flight;

	/*
	 * Optional (ABI 2): the asynchronous data path, for storage that
	 * completes requests on threads of its own (librbd, libnbd,
	 * io_uring). nbdd then starts each request from the connection's
	 * reader thread and sends its reply from the thread that ends it:
	 * no thread per request in flight, no hand-off to a worker and back.
	 *
	 * Each callback starts one request and returns 0; the backend then
	 * calls nbdd_request_done(@req, result) exactly once, from any
	 * thread, possibly before the callback has returned. @buf stays
	 * valid until then. A negative errno return means nothing was
	 * started, and nbdd_request_done() must not be called for @req.
	 * The callbacks run concurrently from several threads, so a backend
	 * that has any must be NBDD_THREAD_PARALLEL and not INLINE; a
	 * connection starts at most .max_in_flight of them (or the export's
	 * workers= option) before their replies have left.
	 * @flags are those of the synchronous callback of the same name.
	 *
	 * Each is used in place of its synchronous twin, which is required
	 * with it: nbdd calls that one where it needs an answer on the spot
	 * (the flush when the last connection goes, and the flush that
	 * follows a write whose FUA the backend does not do itself, run on
	 * a worker of the connection, never on the thread that ended the
	 * write). An operation without an .aio_ callback runs synchronously
	 * on the connection's workers, as for any blocking backend.
	 */
	int (*aio_pread)(void *handle, void *buf, size_t count,
			 uint64_t offset, uint32_t flags,
			 struct nbdd_request *req);
	int (*aio_pwrite)(void *handle, const void *buf, size_t count,
			  uint64_t offset, uint32_t flags,
			  struct nbdd_request *req);
	int (*aio_flush)(void *handle, uint32_t flags,
			 struct nbdd_request *req);
	int (*aio_trim)(void *handle, uint64_t count, uint64_t offset,
			uint32_t flags, struct nbdd_request *req);
	int (*aio_zero)(void *handle, uint64_t count, uint64_t offset,
			uint32_t flags, struct nbdd_request *req);

	/* New fields go here, and only here. */
};

/*
 * Services a backend may call (exported by libnbdd and by the nbdd daemon).
 */

/* Record why the current call failed; thread-local, last one wins. */
void nbdd_backend_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/*
 * End a request an .aio_* callback started: @result is 0 or a negative
 * errno. Call it once per request, from any thread; a reason for a
 * failure goes to nbdd_backend_error() on the same thread just before.
 * It does not wait for the client, nor call back into the backend: the
 * reply is sent if the socket takes it at once, else queued for the
 * connection's sender thread (or for a worker's flush first, when nbdd
 * emulates the write's FUA).
 */
void nbdd_request_done(struct nbdd_request *req, int result);

/* Append an extent; returns 0 or -errno (-ERANGE when out of order). */
int nbdd_extents_add(struct nbdd_extents *out, uint64_t offset,
		     uint64_t length, uint32_t flags);

/*
 * Parse a size such as "512", "64K", "1.5G" or "2T" (binary units).
 * Returns 0 or -EINVAL / -ERANGE.
 */
int nbdd_parse_size(const char *text, uint64_t *out);

/*
 * A plugin declares its table with this, at file scope. The prototype
 * keeps -Wmissing-prototypes quiet; C linkage lets dlsym() find it from
 * a C++ plugin too.
 */
#ifdef __cplusplus
#define NBDD_BACKEND_LINKAGE extern "C"
#else
#define NBDD_BACKEND_LINKAGE
#endif
#define NBDD_BACKEND_REGISTER(table)                                     \
	NBDD_BACKEND_LINKAGE const struct nbdd_backend *                 \
	nbdd_backend_v1(void);                                           \
	NBDD_BACKEND_LINKAGE __attribute__((visibility("default")))      \
	const struct nbdd_backend *nbdd_backend_v1(void)                 \
	{                                                                \
		return &(table);                                         \
	}

/* Initialiser for the header fields of a backend built from this header. */
#define NBDD_BACKEND_HEADER                                              \
	.abi_version = NBDD_BACKEND_ABI_VERSION,                         \
	.struct_size = sizeof(struct nbdd_backend)

#ifdef __cplusplus
}
#endif
#endif /* NBDD_BACKEND_H */
