/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/backends/memory.c: sparse storage (what is allocated, what RSS
 * costs), zero and trim giving memory back, extents, resize, huge sizes,
 * and writers racing each other and trims from several threads.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"

#define CHUNK 65536ull

/* AddressSanitizer maps a shadow byte for every 8 bytes the program touches. */
#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define ASAN_SHADOW(bytes) ((bytes) / 8)
#else
#define ASAN_SHADOW(bytes) 0
#endif
#define HZ (NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO)

static const struct nbdd_backend *B = &nbdd_backend_memory;

static void *mem_open(const char *size)
{
	struct nbdd_param p = {"size", size};
	void *h = NULL;

	if (B->open(&p, 1, 0, &h))
		fail_msg("open size=%s: %s", size, take_backend_error());
	return h;
}

/* Bytes reported as allocated data in [off, off + len). */
static uint64_t allocated(void *h, uint64_t off, uint64_t len)
{
	struct nbdd_extents x;
	uint64_t sum = 0;
	size_t i;

	extents_init(&x, off, len, 0);
	assert_int_equal(B->extents(h, len, off, 0, &x), 0);
	for (i = 0; i < x.n; i++) {
		if (i)
			assert_int_equal(x.v[i].offset,
					 x.v[i - 1].offset + x.v[i - 1].length);
		if (!(x.v[i].flags & NBDD_EXTENT_HOLE))
			sum += x.v[i].length;
	}
	extents_free(&x);
	return sum;
}

static long rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	assert_non_null(f);
	assert_int_equal(fscanf(f, "%ld %ld", &pages, &rss), 2);
	fclose(f);
	return rss * sysconf(_SC_PAGESIZE);
}

/* Whether this kernel drops locked pages on request (Linux 5.18). */
static bool dontneed_locked_works(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool ok = p != MAP_FAILED && madvise(p, 4096, 24) == 0;

	if (p != MAP_FAILED)
		munmap(p, 4096);
	return ok;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return false;
	return true;
}

static void test_read_write(void **state)
{
	void *h = mem_open("1M");
	uint8_t buf[200000], back[200000];
	uint64_t size;
	size_t i;

	assert_int_equal(B->get_size(h, &size), 0);
	assert_int_equal(size, 1 << 20);
	/* Never written: zeroes, and nothing allocated. */
	memset(back, 0xaa, sizeof(back));
	assert_int_equal(B->pread(h, back, sizeof(back), 1000, 0), 0);
	assert_true(all_zero(back, sizeof(back)));
	assert_int_equal(allocated(h, 0, 1 << 20), 0);

	/* Across three chunk boundaries, unaligned. */
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(B->pwrite(h, buf, sizeof(buf), 60000, 0), 0);
	assert_int_equal(B->pread(h, back, sizeof(back), 60000, 0), 0);
	assert_memory_equal(buf, back, sizeof(buf));
	/* Chunks 0..3 hold data; the rest is a hole. */
	assert_int_equal(allocated(h, 0, 1 << 20), 4 * CHUNK);
	assert_int_equal(B->pread(h, back, 100, 59950, 0), 0);
	assert_true(all_zero(back, 50));
	assert_memory_equal(back + 50, buf, 50);

	/* Beyond the end is refused, not stored. */
	assert_int_equal(B->pwrite(h, buf, 2, (1 << 20) - 1, 0), -ENOSPC);
	assert_non_null(take_backend_error());
	assert_int_equal(B->pread(h, back, 1, 1 << 20, 0), -EINVAL);
	B->close(h);
}

static void test_one_terabyte_sparse(void **state)
{
	void *h = mem_open("1T");
	uint64_t offs[] = {0, 1ull << 39, (1ull << 40) - 4096,
			   (5ull << 30) - 100};
	uint8_t buf[4096], back[4096];
	size_t i;

	memset(buf, 0x5a, sizeof(buf));
	for (i = 0; i < ARRAY_SIZE(offs); i++)
		assert_int_equal(B->pwrite(h, buf, sizeof(buf), offs[i], 0), 0);
	for (i = 0; i < ARRAY_SIZE(offs); i++) {
		assert_int_equal(B->pread(h, back, sizeof(back), offs[i], 0),
				 0);
		assert_memory_equal(buf, back, sizeof(buf));
	}
	/* The last one straddles two chunks. */
	assert_int_equal(allocated(h, 0, 1ull << 40), 5 * CHUNK);
	B->close(h);
}

static void test_huge_size(void **state)
{
	struct nbdd_param p = {"size", "16E"};
	void *h = mem_open("8E");
	uint8_t buf[512] = {1, 2, 3}, back[512];
	uint64_t end = 1ull << 63;

	assert_int_equal(B->pwrite(h, buf, 512, end - 512, 0), 0);
	assert_int_equal(B->pread(h, back, 512, end - 512, 0), 0);
	assert_memory_equal(buf, back, 512);
	assert_int_equal(allocated(h, end - (1ull << 40), 1ull << 40), CHUNK);
	B->close(h);

	assert_int_equal(B->open(&p, 1, 0, &h), -EINVAL);
	assert_non_null(strstr(take_backend_error(), "8E"));
	assert_int_equal(B->open(NULL, 0, 0, &h), -EINVAL);
	assert_non_null(strstr(take_backend_error(), "required"));
	p.key = "bogus";
	assert_int_equal(B->open(&p, 1, 0, &h), -EINVAL);
	assert_non_null(strstr(take_backend_error(), "unknown parameter"));
}

static void test_rss_follows_data(void **state)
{
	const size_t total = 64u << 20, piece = 1u << 20;
	uint8_t *buf = malloc(piece);
	long before, written, trimmed;
	void *h = mem_open("1T");
	size_t i;

	memset(buf, 0x77, piece);
	before = rss_bytes();
	for (i = 0; i < total; i += piece)
		assert_int_equal(B->pwrite(h, buf, piece, (1ull << 39) + i, 0),
				 0);
	written = rss_bytes() - before;
	/* Within 10% of what was written, plus a small constant. */
	if (written < (long)total ||
	    written > (long)total * 11 / 10 + (1 << 20) +
			      (long)ASAN_SHADOW(total))
		fail_msg("RSS grew by %ld for %zu bytes written", written,
			 total);
	assert_int_equal(allocated(h, 0, 1ull << 40), total);

	/* Trim gives it back at once. */
	assert_int_equal(B->trim(h, total, 1ull << 39, 0), 0);
	trimmed = rss_bytes() - before;
	/* (ASan's shadow of the freed pages stays.) */
	if (trimmed > (2 << 20) + (long)ASAN_SHADOW(total))
		fail_msg("RSS still %ld above the start after trim", trimmed);
	assert_int_equal(allocated(h, 0, 1ull << 40), 0);

	/* A 4K write into a fresh chunk costs a page, not the chunk. */
	before = rss_bytes();
	for (i = 0; i < 64; i++)
		assert_int_equal(B->pwrite(h, buf, 4096, i * (1ull << 30), 0),
				 0);
	written = rss_bytes() - before;
	if (written > 64 * 4096 + (1 << 20))
		fail_msg("64 sparse 4K writes cost %ld bytes of RSS", written);
	free(buf);
	B->close(h);
}

static void test_zero_and_trim(void **state)
{
	void *h = mem_open("16M");
	uint8_t buf[4 * 65536], back[4 * 65536];

	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(B->pwrite(h, buf, sizeof(buf), 0, 0), 0);
	assert_int_equal(allocated(h, 0, 16 << 20), 4 * CHUNK);

	/* MAY_TRIM: whole chunks go, partial ones are zeroed in place. */
	assert_int_equal(B->zero(h, CHUNK + 200, CHUNK - 100, NBDD_F_MAY_TRIM),
			 0);
	assert_int_equal(allocated(h, 0, 16 << 20), 3 * CHUNK);
	assert_int_equal(B->pread(h, back, sizeof(back), 0, 0), 0);
	assert_memory_equal(back, buf, CHUNK - 100);
	assert_true(all_zero(back + CHUNK - 100, CHUNK + 200));
	assert_memory_equal(back + 2 * CHUNK + 100, buf, CHUNK - 100);

	/* Without MAY_TRIM (NO_HOLE) too: RAM cannot be provisioned. */
	assert_int_equal(B->zero(h, 2 * CHUNK, 2 * CHUNK, 0), 0);
	assert_int_equal(allocated(h, 0, 16 << 20), CHUNK);
	assert_int_equal(B->pread(h, back, sizeof(back), CHUNK, 0), 0);
	assert_true(all_zero(back, sizeof(back)));

	/* Trim of everything, including never-written space. */
	assert_int_equal(B->trim(h, 16 << 20, 0, 0), 0);
	assert_int_equal(allocated(h, 0, 16 << 20), 0);
	assert_int_equal(B->pread(h, back, sizeof(back), 0, 0), 0);
	assert_true(all_zero(back, sizeof(back)));
	B->close(h);
}

static void test_extents_merge_and_req_one(void **state)
{
	void *h = mem_open("1G");
	uint8_t buf[65536] = {9};
	struct nbdd_extents x;

	assert_int_equal(B->pwrite(h, buf, sizeof(buf), 10 * CHUNK, 0), 0);
	assert_int_equal(B->pwrite(h, buf, sizeof(buf), 11 * CHUNK, 0), 0);
	extents_init(&x, 100, (1 << 30) - 100, 0);
	assert_int_equal(B->extents(h, (1 << 30) - 100, 100, 0, &x), 0);
	assert_int_equal(x.n, 3);
	assert_int_equal(x.v[0].flags, HZ);
	assert_int_equal(x.v[0].length, 10 * CHUNK - 100);
	assert_int_equal(x.v[1].flags, 0);
	assert_int_equal(x.v[1].length, 2 * CHUNK);
	assert_int_equal(x.v[2].offset + x.v[2].length, 1 << 30);
	extents_free(&x);

	extents_init(&x, 10 * CHUNK + 5, 1 << 20, 1);
	assert_int_equal(
	    B->extents(h, 1 << 20, 10 * CHUNK + 5, NBDD_F_REQ_ONE, &x), 0);
	assert_int_equal(x.n, 1);
	assert_int_equal(x.v[0].length, 2 * CHUNK - 5);
	extents_free(&x);
	B->close(h);
}

static void test_resize(void **state)
{
	void *h = mem_open("1M");
	uint8_t buf[8192], back[8192];
	uint64_t size;

	memset(buf, 0x33, sizeof(buf));
	assert_int_equal(B->pwrite(h, buf, sizeof(buf), (1 << 20) - 8192, 0),
			 0);
	/* Shrink to the middle of that data, then grow again. */
	assert_int_equal(B->resize(h, (1 << 20) - 4096), 0);
	assert_int_equal(B->get_size(h, &size), 0);
	assert_int_equal(size, (1 << 20) - 4096);
	assert_int_equal(B->pwrite(h, buf, 1, (1 << 20) - 4096, 0), -ENOSPC);
	assert_int_equal(B->resize(h, 1ull << 40), 0);
	assert_int_equal(B->pread(h, back, sizeof(back), (1 << 20) - 8192, 0),
			 0);
	assert_memory_equal(back, buf, 4096);
	assert_true(all_zero(back + 4096, 4096));
	/* Shrinking past whole chunks frees them. */
	assert_int_equal(B->pwrite(h, buf, sizeof(buf), 1ull << 39, 0), 0);
	assert_int_equal(B->resize(h, 1 << 20), 0);
	assert_int_equal(B->resize(h, 1ull << 40), 0);
	assert_int_equal(allocated(h, 1 << 20, (1ull << 40) - (1 << 20)), 0);
	assert_int_equal(B->resize(h, (1ull << 63) + 1), -EINVAL);
	B->close(h);
}

/* ---- concurrency ---- */

#define THREADS 8
#define REGION (4u << 20)

struct worker {
	void *h;
	int id;
};

/* Each thread owns a region: writes odd-sized pieces, trims, rewrites. */
static void *writer(void *arg)
{
	struct worker *w = arg;
	uint64_t base = (uint64_t)w->id * REGION;
	uint8_t *buf = malloc(REGION);
	size_t off, n;
	int round;

	for (round = 0; round < 4; round++) {
		memset(buf, w->id * 16 + round + 1, REGION);
		for (off = 0; off < REGION; off += n) {
			n = MIN((size_t)REGION - off, 4096 + off % 99991);
			if (B->pwrite(w->h, buf + off, n, base + off, 0))
				abort();
		}
		if (round < 3 && B->trim(w->h, REGION - 12345, base + 777, 0))
			abort();
	}
	free(buf);
	return NULL;
}

/* Readers hammer the same chunks meanwhile; they must never crash. */
static void *reader(void *arg)
{
	struct worker *w = arg;
	uint8_t buf[70000];
	int i;

	for (i = 0; i < 2000; i++)
		if (B->pread(w->h, buf, sizeof(buf),
			     (uint64_t)(i * 7919) % (THREADS * REGION - 70000),
			     0))
			abort();
	return NULL;
}

static void test_concurrent_writers(void **state)
{
	struct worker w[THREADS + 2];
	pthread_t t[THREADS + 2];
	uint8_t *back = malloc(REGION);
	void *h = mem_open("32M");
	int i;

	for (i = 0; i < THREADS + 2; i++) {
		w[i] = (struct worker){h, i};
		assert_int_equal(pthread_create(&t[i], NULL,
						i < THREADS ? writer : reader,
						&w[i]),
				 0);
	}
	for (i = 0; i < THREADS + 2; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < THREADS; i++) {
		size_t j;
		assert_int_equal(
		    B->pread(h, back, REGION, (uint64_t)i * REGION, 0), 0);
		for (j = 0; j < REGION; j++)
			if (back[j] != i * 16 + 4)
				fail_msg("thread %d byte %zu: %u", i, j,
					 back[j]);
	}
	assert_int_equal(allocated(h, 0, 32 << 20), 32 << 20);
	free(back);
	B->close(h);
}

/*
 * Chunks trimmed from one region are reused by writes to another. A
 * reader of the first region may see its data or zeroes, never bytes
 * that belong elsewhere.
 */
struct churn {
	void *h;
	uint64_t off;
	uint8_t byte;
	atomic_int *stop;
};

static void *churner(void *arg)
{
	struct churn *c = arg;
	uint8_t *buf = malloc(1 << 20);

	memset(buf, c->byte, 1 << 20);
	while (!atomic_load(c->stop)) {
		if (B->pwrite(c->h, buf, 1 << 20, c->off, 0) ||
		    B->trim(c->h, 1 << 20, c->off, 0))
			abort();
	}
	free(buf);
	return NULL;
}

static void test_reads_never_see_reused_chunks(void **state)
{
	atomic_int stop = 0;
	void *h = mem_open("64M");
	struct churn x = {h, 0, 0x11, &stop}, y = {h, 1 << 20, 0x22, &stop};
	uint8_t buf[65536];
	pthread_t t[2];
	int i, j;

	assert_int_equal(pthread_create(&t[0], NULL, churner, &x), 0);
	assert_int_equal(pthread_create(&t[1], NULL, churner, &y), 0);
	for (i = 0; i < 10000; i++) {
		assert_int_equal(B->pread(h, buf, sizeof(buf),
					  (uint64_t)(i % 16) * 65536, 0),
				 0);
		for (j = 0; j < (int)sizeof(buf); j++)
			if (buf[j] != 0x11 && buf[j] != 0)
				fail_msg("read %d: byte %d is 0x%x", i, j,
					 buf[j]);
	}
	atomic_store(&stop, 1);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	B->close(h);
}

/*
 * The daemon runs under mlockall(MCL_ONFAULT), where MADV_DONTNEED is
 * refused: a chunk given back must still come back zeroed, and on
 * kernels with MADV_DONTNEED_LOCKED its memory must still be returned.
 */
static void test_trim_under_mlockall(void **state)
{
	uint8_t *buf = malloc(16 << 20), back[65536];
	long before, after;
	void *h;

	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)) {
		print_message("skipped: mlockall: %s\n", strerror(errno));
		free(buf);
		return;
	}
	h = mem_open("1G");
	memset(buf, 0x55, 16 << 20);
	assert_int_equal(B->pwrite(h, buf, 16 << 20, 0, 0), 0);
	before = rss_bytes();
	assert_int_equal(B->trim(h, 16 << 20, 0, 0), 0);
	after = rss_bytes();
	/* Reuses a chunk that held 0x55: only our 4 KiB may show. */
	assert_int_equal(B->pwrite(h, buf, 4096, 512 << 20, 0), 0);
	assert_int_equal(B->pread(h, back, sizeof(back), 512 << 20, 0), 0);
	assert_memory_equal(back, buf, 4096);
	assert_true(all_zero(back + 4096, sizeof(back) - 4096));
	assert_int_equal(B->pread(h, back, sizeof(back), 0, 0), 0);
	assert_true(all_zero(back, sizeof(back)));
	munlockall();
	print_message("RSS %ld -> %ld after trimming 16 MiB (locked)\n", before,
		      after);
	if (dontneed_locked_works())
		assert_true(after < before - (8 << 20));
	free(buf);
	B->close(h);
}

static void test_through_export(void **state)
{
	struct nbdd_export *e;
	uint8_t buf[4096] = {1};

	assert_int_equal(nbdd_export_open("memory:size=1T", NULL, &e), 0);
	assert_int_equal(
	    nbdd_export_capabilities(e),
	    NBDD_CAP_WRITE | NBDD_CAP_FLUSH | NBDD_CAP_FUA | NBDD_CAP_TRIM |
		NBDD_CAP_ZERO | NBDD_CAP_FAST_ZERO | NBDD_CAP_CACHE |
		NBDD_CAP_EXTENTS | NBDD_CAP_MULTI_CONN | NBDD_CAP_RESIZE);
	assert_true(export_is_inline(e));
	assert_int_equal(export_pwrite(e, buf, 4096, 1ull << 35, NBDD_F_FUA),
			 0);
	assert_int_equal(export_zero(e, 1 << 20, 0, NBDD_F_FAST), 0);
	assert_int_equal(nbdd_export_resize(e, 1ull << 41), 0);
	assert_int_equal(nbdd_export_size(e), 1ull << 41);
	nbdd_export_unref(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_read_write),
	    cmocka_unit_test(test_one_terabyte_sparse),
	    cmocka_unit_test(test_huge_size),
	    cmocka_unit_test(test_rss_follows_data),
	    cmocka_unit_test(test_zero_and_trim),
	    cmocka_unit_test(test_extents_merge_and_req_one),
	    cmocka_unit_test(test_resize),
	    cmocka_unit_test(test_concurrent_writers),
	    cmocka_unit_test(test_reads_never_see_reused_chunks),
	    cmocka_unit_test(test_trim_under_mlockall),
	    cmocka_unit_test(test_through_export),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
