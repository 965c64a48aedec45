/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * serve: serve a backend defined in this program to NBD clients.
 *
 *   serve SOCKET [SIZE]
 *
 * Listens on the Unix socket SOCKET and serves one export, "sectors": a
 * RAM disk of SIZE bytes (default 64M, a multiple of 512) whose storage
 * is defined below, in the program itself, with the public backend ABI.
 * Serves until SIGINT or SIGTERM, then disconnects every client and
 * exits. Try it with:
 *
 *   nbdinfo --map 'nbd+unix:///sectors?socket=SOCKET'
 *   qemu-io -f raw -c 'write -P 7 0 1M' 'nbd+unix:///sectors?socket=SOCKET'
 *
 * Needs no privileges. Uses only the public headers and libnbdd.so.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <nbdd/backend.h>
#include <nbdd/nbdd.h>

/*
 * ---- the backend: a sparse disk of 512-byte sectors ----
 *
 * Storage comes in 4 KiB blocks, allocated on the first write and freed
 * by trim; a block never written reads as zeroes and is reported as a
 * hole. What it shows of the ABI:
 *  - block_size: clients must align requests to 512 bytes. nbdd tells
 *    them in the handshake and refuses misaligned requests itself, so
 *    the callbacks below never see one;
 *  - extents: holes for the blocks that hold nothing;
 *  - what is left out: no .zero (nbdd writes zeroes with .pwrite, and
 *    answers a client's "fast zero" with ENOTSUP), no .flush (RAM has
 *    nothing to make durable, so flush and FUA are not advertised);
 *  - NBDD_THREAD_SERIALIZE: nbdd runs one callback at a time, so the
 *    block table needs no lock of its own.
 */

#define SECTOR 512u
#define BLOCK 4096u

struct sectors {
	uint64_t size;
	uint8_t **block; /* size / BLOCK entries, NULL: never written */
};

static int sec_open(const struct nbdd_param *params, size_t nparams,
		    int readonly, void **handle)
{
	uint64_t size = 64u << 20, nblocks;
	struct sectors *s;
	size_t i;

	for (i = 0; i < nparams; i++) {
		if (strcmp(params[i].key, "size") ||
		    nbdd_parse_size(params[i].value, &size) < 0) {
			nbdd_backend_error("sectors: bad parameter %s=%s "
					   "(sectors takes size=SIZE)",
					   params[i].key, params[i].value);
			return -EINVAL;
		}
	}
	if (size == 0 || size % SECTOR) {
		nbdd_backend_error("sectors: the size must be a non-zero "
				   "multiple of %u", SECTOR);
		return -EINVAL;
	}
	nblocks = (size + BLOCK - 1) / BLOCK;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->block = calloc(nblocks, sizeof(*s->block)))) {
		free(s);
		return -ENOMEM;
	}
	s->size = size;
	*handle = s;
	return 0;
}

static void sec_close(void *handle)
{
	struct sectors *s = handle;
	uint64_t i;

	for (i = 0; i < (s->size + BLOCK - 1) / BLOCK; i++)
		free(s->block[i]);
	free(s->block);
	free(s);
}

static int sec_get_size(void *handle, uint64_t *size)
{
	*size = ((struct sectors *)handle)->size;
	return 0;
}

static int sec_block_size(void *handle, struct nbdd_block_size *bs)
{
	bs->minimum = SECTOR;
	bs->preferred = BLOCK;
	bs->maximum = 0; /* nbdd's default */
	return 0;
}

static int sec_capabilities(void *handle, uint32_t *caps)
{
	/* One table behind every connection: all see each write at once. */
	*caps = NBDD_CAP_WRITE | NBDD_CAP_TRIM | NBDD_CAP_EXTENTS |
		NBDD_CAP_MULTI_CONN;
	return 0;
}

/* How much of [offset, offset + count) lies in offset's block. */
static size_t in_block(uint64_t offset, uint64_t count)
{
	uint64_t room = BLOCK - offset % BLOCK;

	return (size_t)(count < room ? count : room);
}

static int sec_pread(void *handle, void *buf, size_t count, uint64_t offset,
		     uint32_t flags)
{
	struct sectors *s = handle;
	uint8_t *p = buf, *b;
	size_t n;

	for (; count; count -= n, offset += n, p += n) {
		n = in_block(offset, count);
		b = s->block[offset / BLOCK];
		if (b)
			memcpy(p, b + offset % BLOCK, n);
		else
			memset(p, 0, n);
	}
	return 0;
}

static int sec_pwrite(void *handle, const void *buf, size_t count,
		      uint64_t offset, uint32_t flags)
{
	struct sectors *s = handle;
	const uint8_t *p = buf;
	uint8_t **b;
	size_t n;

	for (; count; count -= n, offset += n, p += n) {
		n = in_block(offset, count);
		b = &s->block[offset / BLOCK];
		if (!*b && !(*b = calloc(1, BLOCK))) {
			nbdd_backend_error("sectors: out of memory");
			return -ENOMEM;
		}
		memcpy(*b + offset % BLOCK, p, n);
	}
	return 0;
}

/* Whole blocks are freed; the sectors trimmed in others are zeroed. */
static int sec_trim(void *handle, uint64_t count, uint64_t offset,
		    uint32_t flags)
{
	struct sectors *s = handle;
	uint8_t **b;
	size_t n;

	for (; count; count -= n, offset += n) {
		n = in_block(offset, count);
		b = &s->block[offset / BLOCK];
		if (n == BLOCK) {
			free(*b);
			*b = NULL;
		} else if (*b) {
			memset(*b + offset % BLOCK, 0, n);
		}
	}
	return 0;
}

/* Runs of unwritten (hole) and written (data) blocks, from @offset on. */
static int sec_extents(void *handle, uint64_t count, uint64_t offset,
		       uint32_t flags, struct nbdd_extents *out)
{
	struct sectors *s = handle;
	uint64_t end = offset + count, next;
	bool hole;
	int r;

	while (offset < end) {
		hole = s->block[offset / BLOCK] == NULL;
		next = (offset / BLOCK + 1) * BLOCK;
		while (next < end && (s->block[next / BLOCK] == NULL) == hole)
			next += BLOCK;
		if (next > end)
			next = end;
		r = nbdd_extents_add(out, offset, next - offset,
				     hole ? NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO
					  : 0);
		if (r < 0 || (flags & NBDD_F_REQ_ONE))
			return r;
		offset = next;
	}
	return 0;
}

static const struct nbdd_backend sectors = {
	NBDD_BACKEND_HEADER,
	.name = "sectors",
	.description = "example: a sparse RAM disk of 512-byte sectors",
	.help = "size=SIZE  bytes, a multiple of 512 (default 64M)",
	.thread_model = NBDD_THREAD_SERIALIZE,
	.flags = NBDD_BACKEND_INLINE, /* memcpy and calloc: no waiting */
	.open = sec_open,
	.close = sec_close,
	.get_size = sec_get_size,
	.block_size = sec_block_size,
	.capabilities = sec_capabilities,
	.pread = sec_pread,
	.pwrite = sec_pwrite,
	.trim = sec_trim,
	.extents = sec_extents,
};

/* ---- the program: one export, one listening socket, until a signal ---- */

static void log_to_stderr(void *opaque, int level, const char *msg)
{
	fprintf(stderr, "serve: %s\n", msg);
}

/* The export, with our backend behind it, on a new server. */
static int make_server(const char *size, struct nbdd_server **srv)
{
	const struct nbdd_param param = { "size", size };
	const struct nbdd_export_options o = {
		.name = "sectors",
		.description = "examples/programs/serve.c: RAM, 512-byte sectors",
	};
	struct nbdd_export *e;
	int r;

	r = nbdd_export_new(&sectors, &param, 1, &o, &e);
	if (r < 0)
		return r;
	r = nbdd_server_new(NULL, srv);
	if (r == 0) {
		r = nbdd_server_add_export(*srv, e);
		if (r < 0)
			nbdd_server_free(*srv);
	}
	nbdd_export_unref(e); /* the server holds its own reference */
	return r;
}

/* Accept clients until SIGINT or SIGTERM arrives on @sfd. */
static void serve(struct nbdd_server *srv, int lfd, int sfd)
{
	struct pollfd p[2] = {
		{ .fd = lfd, .events = POLLIN },
		{ .fd = sfd, .events = POLLIN },
	};
	struct signalfd_siginfo si;

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("serve: poll");
			return;
		}
		if (p[1].revents & POLLIN &&
		    read(sfd, &si, sizeof(si)) == sizeof(si)) {
			fprintf(stderr, "serve: %s: stopping\n",
				strsignal((int)si.ssi_signo));
			return;
		}
		/* A refused client (too many, out of memory) is not fatal. */
		if (p[0].revents & POLLIN && nbdd_server_accept(srv, lfd) < 0)
			fprintf(stderr, "serve: %s\n", nbdd_last_error());
	}
}

int main(int argc, char **argv)
{
	struct nbdd_server *srv;
	char address[128];
	sigset_t sigs;
	int lfd, sfd;

	if (argc < 2 || argc > 3 || argv[1][0] == '-') {
		fprintf(stderr, "usage: serve SOCKET [SIZE]\n");
		return 2;
	}
	snprintf(address, sizeof(address), "unix:%s", argv[1]);
	nbdd_set_log(log_to_stderr, NULL, NBDD_LOG_NOTICE);
	/* Blocked before any thread starts, so only the signalfd sees them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0) {
		perror("serve: signalfd");
		return 1;
	}
	if (make_server(argc > 2 ? argv[2] : "64M", &srv) < 0) {
		fprintf(stderr, "serve: %s\n", nbdd_last_error());
		return 1;
	}
	lfd = nbdd_listen(address);
	if (lfd < 0) {
		fprintf(stderr, "serve: %s\n", nbdd_last_error());
		nbdd_server_free(srv);
		return 1;
	}
	fprintf(stderr, "serve: export 'sectors' on %s\n", address);
	serve(srv, lfd, sfd);
	close(lfd);
	unlink(argv[1]);
	/* Disconnects the clients (answering what they sent), then closes
	 * the backend: sec_close() runs here. */
	nbdd_server_free(srv);
	return 0;
}
