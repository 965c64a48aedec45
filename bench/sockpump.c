/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Unix socket ceiling the network benchmark is measured against: what a
 * socketpair(AF_UNIX, SOCK_STREAM) moves on this machine with no NBD server
 * at all, so "how close to the socket" can be said in the same run.
 *
 *   sockpump stream CHUNK SECONDS
 *       one thread writes CHUNK-byte buffers, another reads them: MB/s.
 *   sockpump rr REQ REPLY DEPTH SECONDS
 *       request/response: the client keeps DEPTH requests of REQ bytes in
 *       flight, the server answers each with REPLY bytes (an NBD 4k read is
 *       REQ=28, REPLY=16+4096): round trips per second. Both sides do one
 *       read() and one write() per message or burst, as a lean server would.
 *
 * Prints one JSON object on stdout. Every loop ends after SECONDS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t r = write(fd, p, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int read_all(int fd, char *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* ---- stream ---- */

struct stream {
	int fd;
	size_t chunk;
	uint64_t bytes;
};

static void *stream_reader(void *arg)
{
	struct stream *s = arg;
	char *buf = malloc(s->chunk);
	if (!buf)
		die("malloc");
	for (;;) {
		ssize_t r = read(s->fd, buf, s->chunk);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			break;
		}
		s->bytes += (uint64_t)r;
	}
	free(buf);
	return NULL;
}

static void stream(size_t chunk, double seconds)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	struct stream s = {.fd = sv[1], .chunk = chunk};
	pthread_t t;
	char *buf = calloc(1, chunk);
	if (!buf)
		die("calloc");
	memset(buf, 0x5a, chunk);
	pthread_create(&t, NULL, stream_reader, &s);
	double c0 = cpu_seconds(), t0 = now(), t1;
	uint64_t written = 0;
	do {
		for (int i = 0; i < 16; i++) {
			if (write_all(sv[0], buf, chunk) < 0)
				die("write");
			written += chunk;
		}
		t1 = now();
	} while (t1 - t0 < seconds);
	shutdown(sv[0], SHUT_WR);
	pthread_join(t, NULL);
	t1 = now();
	double cpu = cpu_seconds() - c0;
	printf("{\"mode\":\"stream\",\"chunk\":%zu,\"seconds\":%.3f,"
	       "\"bytes\":%llu,\"MBps\":%.1f,\"cpu_s\":%.3f}\n",
	       chunk, t1 - t0, (unsigned long long)s.bytes,
	       s.bytes / (t1 - t0) / 1e6, cpu);
	free(buf);
	close(sv[0]);
	close(sv[1]);
}

/* ---- request/response ---- */

struct rr {
	int fd;
	size_t req, reply;
	unsigned depth;
};

/* The server: read whatever requests are there, answer them all in one
 * write (the batching a pipelined server does). */
static void *rr_server(void *arg)
{
	struct rr *r = arg;
	size_t rbufsz = r->req * r->depth;
	char *in = malloc(rbufsz), *out = calloc(r->depth, r->reply);
	size_t have = 0;
	if (!in || !out)
		die("malloc");
	for (;;) {
		ssize_t n = read(r->fd, in + have, rbufsz - have);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			break;
		}
		have += (size_t)n;
		size_t whole = have / r->req;
		if (whole == 0)
			continue;
		if (write_all(r->fd, out, whole * r->reply) < 0)
			break;
		have -= whole * r->req;
		memmove(in, in + whole * r->req, have);
	}
	free(in);
	free(out);
	return NULL;
}

static void rr(size_t req, size_t reply, unsigned depth, double seconds)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	struct rr r = {.fd = sv[1], .req = req, .reply = reply, .depth = depth};
	pthread_t t;
	pthread_create(&t, NULL, rr_server, &r);
	char *q = calloc(depth, req), *a = malloc(reply);
	if (!q || !a)
		die("malloc");
	double c0 = cpu_seconds(), t0 = now(), t1;
	uint64_t done = 0;
	/* Fill the pipe, then one new request per answer read. */
	if (write_all(sv[0], q, req * depth) < 0)
		die("write");
	do {
		for (int i = 0; i < 64; i++) {
			if (read_all(sv[0], a, reply) < 0)
				die("read");
			done++;
			if (write_all(sv[0], q, req) < 0)
				die("write");
		}
		t1 = now();
	} while (t1 - t0 < seconds);
	for (unsigned i = 0; i < depth; i++)
		if (read_all(sv[0], a, reply) < 0)
			die("read");
	t1 = now();
	double cpu = cpu_seconds() - c0;
	shutdown(sv[0], SHUT_WR);
	pthread_join(t, NULL);
	printf("{\"mode\":\"rr\",\"req\":%zu,\"reply\":%zu,\"depth\":%u,"
	       "\"seconds\":%.3f,\"ops\":%llu,\"ops_per_s\":%.0f,"
	       "\"cpu_us_per_op\":%.3f}\n",
	       req, reply, depth, t1 - t0, (unsigned long long)done,
	       done / (t1 - t0), cpu / (double)done * 1e6);
	free(q);
	free(a);
	close(sv[0]);
	close(sv[1]);
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "stream") == 0) {
		stream(strtoull(argv[2], NULL, 0), atof(argv[3]));
		return 0;
	}
	if (argc == 6 && strcmp(argv[1], "rr") == 0) {
		unsigned depth = (unsigned)atoi(argv[4]);
		rr(strtoull(argv[2], NULL, 0), strtoull(argv[3], NULL, 0),
		   depth ? depth : 1, atof(argv[5]));
		return 0;
	}
	fprintf(stderr, "usage: sockpump stream CHUNK SECONDS\n"
			"       sockpump rr REQ REPLY DEPTH SECONDS\n");
	return 2;
}
