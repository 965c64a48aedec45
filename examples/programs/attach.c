/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * attach: serve a backend as /dev/nbdX from your own program.
 *
 *   attach [-c CONNS] [-b BLOCK] [-i INDEX] [-d SECONDS] [-r] [-v] [SPEC]
 *   attach -a INDEX [-k] [-d SECONDS] [SPEC]
 *
 * With a SPEC ("memory:size=256M", "file:path=/srv/a.img", ...) it opens
 * that backend; without one it serves the small RAM disk defined below,
 * the way a program brings its own storage. It prints the device on
 * stdout, serves until SIGINT or SIGTERM (or until someone disconnects
 * the device), then detaches and prints per-connection statistics.
 *
 * Surviving a restart: with -d SECONDS the kernel holds I/O that long
 * when the server goes away. -k leaves the device to a successor on a
 * signal instead of detaching, and -a INDEX is that successor: it takes
 * over /dev/nbdINDEX (nbdd_mapping_adopt()) -- also after a crash, if
 * SPEC names storage that outlives the process (a file).
 *
 * Needs root (CAP_SYS_ADMIN for the nbd netlink family). Uses only the
 * public headers and libnbdd.so.
 */
#include <errno.h>
#include <getopt.h>
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
#include <nbdd/kernel.h>
#include <nbdd/nbdd.h>

/* ---- a backend of our own: bytes in one malloc()ed buffer ---- */

struct ramdisk {
	uint8_t *data;
	uint64_t size;
};

static int rd_open(const struct nbdd_param *params, size_t nparams,
		   int readonly, void **handle)
{
	struct ramdisk *rd;
	uint64_t size = 16u << 20;
	size_t i;

	for (i = 0; i < nparams; i++) {
		if (strcmp(params[i].key, "size") ||
		    nbdd_parse_size(params[i].value, &size) < 0) {
			nbdd_backend_error("ramdisk: unknown parameter %s=%s",
					   params[i].key, params[i].value);
			return -EINVAL;
		}
	}
	rd = calloc(1, sizeof(*rd));
	if (!rd || !(rd->data = calloc(1, size))) {
		free(rd);
		nbdd_backend_error("ramdisk: no memory for %llu bytes",
				   (unsigned long long)size);
		return -ENOMEM;
	}
	rd->size = size;
	*handle = rd;
	return 0;
}

static void rd_close(void *handle)
{
	struct ramdisk *rd = handle;

	free(rd->data);
	free(rd);
}

static int rd_get_size(void *handle, uint64_t *size)
{
	*size = ((struct ramdisk *)handle)->size;
	return 0;
}

static int rd_capabilities(void *handle, uint32_t *caps)
{
	/* One buffer: every connection sees every write at once. */
	*caps = NBDD_CAP_WRITE | NBDD_CAP_TRIM | NBDD_CAP_ZERO |
		NBDD_CAP_MULTI_CONN;
	return 0;
}

static int rd_pread(void *handle, void *buf, size_t count, uint64_t off,
		    uint32_t flags)
{
	memcpy(buf, ((struct ramdisk *)handle)->data + off, count);
	return 0;
}

static int rd_pwrite(void *handle, const void *buf, size_t count,
		     uint64_t off, uint32_t flags)
{
	memcpy(((struct ramdisk *)handle)->data + off, buf, count);
	return 0;
}

static int rd_zero(void *handle, uint64_t count, uint64_t off, uint32_t flags)
{
	memset(((struct ramdisk *)handle)->data + off, 0, count);
	return 0;
}

static const struct nbdd_backend ramdisk = {
	NBDD_BACKEND_HEADER,
	.name = "ramdisk",
	.description = "example: a RAM disk defined by the program itself",
	.help = "size=SIZE  bytes (default 16M)",
	.thread_model = NBDD_THREAD_SERIALIZE,
	.flags = NBDD_BACKEND_INLINE, /* memcpy never sleeps */
	.open = rd_open,
	.close = rd_close,
	.get_size = rd_get_size,
	.capabilities = rd_capabilities,
	.pread = rd_pread,
	.pwrite = rd_pwrite,
	.trim = rd_zero, /* trimmed blocks read back as zeroes */
	.zero = rd_zero,
};

/* ---- the program ---- */

static void log_to_stderr(void *opaque, int level, const char *msg)
{
	fprintf(stderr, "attach: %s\n", msg);
}

struct args {
	struct nbdd_attach_options o;
	const char *spec;
	int level;
	int adopt;   /* index to take over, or -1 */
	bool keep;   /* on a signal, leave the device to a successor */
};

static void usage(void)
{
	fprintf(stderr, "usage: attach [-c CONNS] [-b BLOCK] [-i INDEX] "
		"[-d DEAD_CONN_SECONDS] [-r] [-k] [-v] [SPEC]\n"
		"       attach -a INDEX [-k] [-d DEAD_CONN_SECONDS] [SPEC]\n");
	exit(2);
}

static void parse_args(int argc, char **argv, struct args *a)
{
	int c;

	while ((c = getopt(argc, argv, "a:c:b:i:d:krvh")) != -1) {
		switch (c) {
		case 'a': a->adopt = atoi(optarg); break;
		case 'c': a->o.connections = (unsigned)atoi(optarg); break;
		case 'b': a->o.block_size = (uint32_t)atoi(optarg); break;
		case 'i': a->o.index = atoi(optarg); break;
		case 'd': a->o.dead_conn_timeout = (uint32_t)atoi(optarg); break;
		case 'k': a->keep = true; break;
		case 'r': a->o.readonly = true; break;
		case 'v': a->level = NBDD_LOG_DEBUG; break;
		default: usage();
		}
	}
	if (optind < argc - 1)
		usage();
	a->spec = optind < argc ? argv[optind] : NULL;
}

static int open_export(const char *spec, struct nbdd_export **e)
{
	static const struct nbdd_param size = { "size", "16M" };

	if (spec)
		return nbdd_export_open(spec, NULL, e);
	return nbdd_export_new(&ramdisk, &size, 1, NULL, e);
}

/*
 * Serve until a signal (returns 1) or until the kernel ends every
 * connection (returns 0).
 */
static int serve(struct nbdd_mapping *m, int sfd)
{
	struct pollfd p[2] = {
		{ .fd = sfd, .events = POLLIN },
		{ .fd = nbdd_mapping_fd(m), .events = POLLIN },
	};
	struct signalfd_siginfo si;
	uint64_t n;

	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return -errno;
		if ((p[0].revents & POLLIN) &&
		    read(sfd, &si, sizeof(si)) == sizeof(si)) {
			fprintf(stderr, "attach: %s\n",
				strsignal((int)si.ssi_signo));
			return 1;
		}
		if ((p[1].revents & POLLIN) &&
		    read(p[1].fd, &n, sizeof(n)) == sizeof(n) &&
		    nbdd_mapping_live(m) == 0) {
			fprintf(stderr, "attach: the device was disconnected\n");
			return 0;
		}
	}
}

static void print_stats(struct nbdd_mapping *m, int index)
{
	struct nbdd_conn_stats st;
	unsigned i;
	int op;

	for (i = 0; i < nbdd_mapping_connections(m); i++) {
		if (nbdd_mapping_stats(m, i, &st) < 0)
			continue;
		fprintf(stderr, "attach: /dev/nbd%d connection %u:", index, i);
		for (op = 0; op < NBDD_OP__COUNT; op++)
			if (st.op[op].requests)
				fprintf(stderr, " %s %llu (%llu bytes)",
					nbdd_op_name((enum nbdd_op)op),
					(unsigned long long)st.op[op].requests,
					(unsigned long long)st.op[op].bytes);
		fputc('\n', stderr);
	}
}

static int start(struct args *a, struct nbdd_mapping **m)
{
	struct nbdd_export *e;
	int r;

	if (open_export(a->spec, &e) < 0)
		return -1;
	if (a->adopt >= 0)
		r = nbdd_mapping_adopt(e, a->adopt, &a->o, m);
	else
		r = nbdd_attach(e, &a->o, m);
	nbdd_export_unref(e); /* the mapping holds its own reference */
	return r;
}

int main(int argc, char **argv)
{
	struct args a = {
		.o = { .index = -1 }, .level = NBDD_LOG_NOTICE, .adopt = -1,
	};
	struct nbdd_mapping *m;
	int sfd, index, r;
	sigset_t sigs;

	parse_args(argc, argv, &a);
	nbdd_set_log(log_to_stderr, NULL, a.level);
	/* Blocked before any thread starts, so only signalfd sees them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0) {
		perror("attach: signalfd");
		return 1;
	}
	if (start(&a, &m) < 0) {
		fprintf(stderr, "attach: %s\n", nbdd_last_error());
		return 1;
	}
	index = nbdd_mapping_index(m);
	printf("/dev/nbd%d\n", index);
	fflush(stdout);
	r = serve(m, sfd);
	print_stats(m, index);
	if (r == 1 && a.keep) {
		nbdd_mapping_abandon(m);
		fprintf(stderr, "attach: left /dev/nbd%d to a successor\n",
			index);
		return 0;
	}
	if (nbdd_detach(m) < 0 || r < 0) {
		fprintf(stderr, "attach: detach: %s\n", nbdd_last_error());
		return 1;
	}
	return 0;
}
