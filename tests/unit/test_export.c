/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/export.c: the fallbacks (FUA by flush, zero by pwrite, FAST zero
 * refused), the thread model, capabilities and transmission flags,
 * error mapping and logging, block-size validation and the lifecycle.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "internal.h"

/* ---- a backend that records what it was asked ---- */

#define SIZE (8u << 20)

static struct {
	uint8_t data[SIZE];
	int pwrites, flushes, zeros, trims, caches, closes, resizes;
	uint32_t last_flags;
	char order[16]; /* "F" flush, "C" close */
	int fail;	/* returned by pread when non-zero */
	const char *fail_msg;
	uint32_t caps;
	struct nbdd_block_size bs;
	atomic_int inside, overlap;
	int no_extents; /* extents returns 0 without adding anything */
	uint64_t size;  /* what get_size says, when non-zero */
	int size_err;   /* returned by get_size when non-zero */
} tb;

static void note(char c)
{
	size_t n = strlen(tb.order);

	if (n + 1 < sizeof(tb.order))
		tb.order[n] = c;
}

static int t_open(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	if (n && !strcmp(p[0].key, "fail")) {
		nbdd_backend_error("cannot open: %s", p[0].value);
		return -ENODEV;
	}
	*h = &tb;
	return 0;
}

static void t_close(void *h)
{
	tb.closes++;
	note('C');
}

static int t_size(void *h, uint64_t *size)
{
	*size = tb.size ? tb.size : SIZE;
	return tb.size_err;
}

static int t_caps(void *h, uint32_t *caps)
{
	*caps = tb.caps;
	return 0;
}

static int t_block_size(void *h, struct nbdd_block_size *bs)
{
	*bs = tb.bs;
	return 0;
}

/* Sleep a little inside the call and notice anyone else inside too. */
static void occupy(void)
{
	struct timespec ts = {0, 2 * 1000 * 1000};

	if (atomic_fetch_add(&tb.inside, 1) > 0)
		atomic_store(&tb.overlap, 1);
	nanosleep(&ts, NULL);
	atomic_fetch_sub(&tb.inside, 1);
}

static int t_pread(void *h, void *buf, size_t count, uint64_t off, uint32_t f)
{
	if (tb.fail) {
		if (tb.fail_msg)
			nbdd_backend_error("%s", tb.fail_msg);
		return tb.fail;
	}
	if (count == 1)
		occupy();
	memcpy(buf, tb.data + off, count);
	return 0;
}

static int t_pwrite(void *h, const void *buf, size_t count, uint64_t off,
		    uint32_t f)
{
	tb.pwrites++;
	tb.last_flags = f;
	memcpy(tb.data + off, buf, count);
	return 0;
}

static int t_flush(void *h, uint32_t f)
{
	tb.flushes++;
	note('F');
	return 0;
}

static int t_trim(void *h, uint64_t count, uint64_t off, uint32_t f)
{
	tb.trims++;
	tb.last_flags = f;
	return 0;
}

static int t_zero(void *h, uint64_t count, uint64_t off, uint32_t f)
{
	tb.zeros++;
	tb.last_flags = f;
	memset(tb.data + off, 0, count);
	return 0;
}

static int t_cache(void *h, uint64_t count, uint64_t off, uint32_t f)
{
	tb.caches++;
	return 0;
}

static int t_extents(void *h, uint64_t count, uint64_t off, uint32_t f,
		     struct nbdd_extents *x)
{
	if (tb.no_extents)
		return 0;
	return nbdd_extents_add(x, off, count, NBDD_EXTENT_HOLE);
}

static int t_resize(void *h, uint64_t size)
{
	tb.resizes++;
	return 0;
}

/* Everything present; tests remove what they do not want. */
static const struct nbdd_backend full = {
    NBDD_BACKEND_HEADER,
    .name = "tb",
    .thread_model = NBDD_THREAD_PARALLEL,
    .open = t_open,
    .close = t_close,
    .get_size = t_size,
    .pread = t_pread,
    .pwrite = t_pwrite,
    .flush = t_flush,
    .trim = t_trim,
    .zero = t_zero,
    .cache = t_cache,
    .extents = t_extents,
    .resize = t_resize,
};

static int reset(void **state)
{
	memset(&tb, 0, sizeof(tb));
	return 0;
}

static struct nbdd_export *open_with(const struct nbdd_backend *b,
				     bool readonly)
{
	struct nbdd_export_options o = {.name = "exp", .readonly = readonly};
	struct nbdd_export *e = NULL;

	if (nbdd_export_new(b, NULL, 0, &o, &e))
		fail_msg("open: %s", nbdd_last_error());
	return e;
}

/* ---- fallbacks ---- */

static void test_fua_emulated_by_flush(void **state)
{
	struct nbdd_export *e = open_with(&full, false);

	assert_false(nbdd_export_capabilities(e) & NBDD_CAP_FUA);
	assert_true(export_eflags(e) & NBD_FLAG_SEND_FUA);
	assert_int_equal(export_pwrite(e, "abc", 3, 0, NBDD_F_FUA), 0);
	assert_int_equal(tb.pwrites, 1);
	assert_int_equal(tb.last_flags, 0);
	assert_int_equal(tb.flushes, 1);
	assert_int_equal(export_pwrite(e, "abc", 3, 0, 0), 0);
	assert_int_equal(tb.flushes, 1);
	assert_int_equal(export_trim(e, 4096, 0, NBDD_F_FUA), 0);
	assert_int_equal(tb.flushes, 2);
	nbdd_export_unref(e);
}

static void test_fua_native(void **state)
{
	struct nbdd_backend b = full;
	struct nbdd_export *e;

	b.capabilities = t_caps;
	tb.caps = NBDD_CAP_WRITE | NBDD_CAP_FLUSH | NBDD_CAP_FUA;
	e = open_with(&b, false);
	assert_int_equal(export_pwrite(e, "abc", 3, 0, NBDD_F_FUA), 0);
	assert_int_equal(tb.last_flags, NBDD_F_FUA);
	assert_int_equal(tb.flushes, 0);
	nbdd_export_unref(e);
}

static void test_zero_by_pwrite(void **state)
{
	struct nbdd_backend b = full;
	struct nbdd_export *e;
	size_t i;

	b.zero = NULL;
	e = open_with(&b, false);
	assert_false(nbdd_export_capabilities(e) & NBDD_CAP_ZERO);
	assert_true(export_eflags(e) & NBD_FLAG_SEND_WRITE_ZEROES);
	memset(tb.data, 0xff, SIZE);
	/* 3 MiB + 1 byte: four writes of at most 1 MiB. */
	assert_int_equal(
	    export_zero(e, (3u << 20) + 1, 100, NBDD_F_MAY_TRIM | NBDD_F_FUA),
	    0);
	assert_int_equal(tb.pwrites, 4);
	assert_int_equal(tb.flushes, 1);
	assert_int_equal(tb.data[99], 0xff);
	for (i = 100; i < 100 + (3u << 20) + 1; i++)
		if (tb.data[i])
			fail_msg("byte %zu not zeroed", i);
	assert_int_equal(tb.data[100 + (3u << 20) + 1], 0xff);
	nbdd_export_unref(e);
}

static void test_zero_chunks_respect_maximum(void **state)
{
	struct nbdd_backend b = full;
	struct nbdd_export *e;

	b.zero = NULL;
	b.block_size = t_block_size;
	tb.bs = (struct nbdd_block_size){512, 4096, 65536};
	e = open_with(&b, false);
	assert_int_equal(export_zero(e, 1 << 20, 0, 0), 0);
	assert_int_equal(tb.pwrites, 16);
	nbdd_export_unref(e);
}

static void test_fast_zero(void **state)
{
	struct nbdd_backend b = full;
	struct nbdd_export *e;

	/* Emulated zero is never fast: refused at once, nothing written. */
	b.zero = NULL;
	e = open_with(&b, false);
	assert_true(export_eflags(e) & NBD_FLAG_SEND_FAST_ZERO);
	assert_int_equal(export_zero(e, 4096, 0, NBDD_F_FAST), -ENOTSUP);
	assert_int_equal(tb.pwrites, 0);
	nbdd_export_unref(e);

	/* A .zero that never promised to honour FAST: the same. */
	e = open_with(&full, false);
	assert_true(nbdd_export_capabilities(e) & NBDD_CAP_ZERO);
	assert_int_equal(export_zero(e, 4096, 0, NBDD_F_FAST), -ENOTSUP);
	assert_int_equal(tb.zeros, 0);
	assert_int_equal(export_zero(e, 4096, 0, NBDD_F_MAY_TRIM), 0);
	assert_int_equal(tb.zeros, 1);
	assert_int_equal(tb.last_flags, NBDD_F_MAY_TRIM);
	nbdd_export_unref(e);

	/* One that did gets the flag. */
	b = full;
	b.capabilities = t_caps;
	tb.caps = NBDD_CAP_WRITE | NBDD_CAP_ZERO | NBDD_CAP_FAST_ZERO;
	e = open_with(&b, false);
	assert_int_equal(export_zero(e, 4096, 0, NBDD_F_FAST), 0);
	assert_int_equal(tb.last_flags, NBDD_F_FAST);
	nbdd_export_unref(e);
}

static void test_cache_and_extents_absent(void **state)
{
	struct nbdd_backend b = full;
	struct nbdd_extents x;
	struct nbdd_export *e;

	b.cache = NULL;
	b.extents = NULL;
	e = open_with(&b, false);
	assert_false(export_eflags(e) & NBD_FLAG_SEND_CACHE);
	assert_int_equal(export_cache(e, 4096, 0), 0);
	extents_init(&x, 4096, 65536, 100);
	assert_int_equal(export_extents(e, 65536, 4096, 0, &x), 0);
	assert_int_equal(x.n, 1);
	assert_int_equal(x.v[0].offset, 4096);
	assert_int_equal(x.v[0].length, 65536);
	assert_int_equal(x.v[0].flags, 0);
	extents_free(&x);
	nbdd_export_unref(e);

	/* A backend that promises extents and reports none: EIO. */
	e = open_with(&full, false);
	tb.no_extents = 1;
	extents_init(&x, 0, 4096, 100);
	assert_int_equal(export_extents(e, 4096, 0, 0, &x), -EIO);
	extents_free(&x);
	assert_int_equal(export_cache(e, 4096, 0), 0);
	assert_int_equal(tb.caches, 1);
	nbdd_export_unref(e);
}

/* ---- thread model ---- */

static void *reader(void *arg)
{
	struct nbdd_export *e = arg;
	uint8_t c;
	int i;

	for (i = 0; i < 15; i++)
		assert_int_equal(export_pread(e, &c, 1, 0, 0), 0);
	return NULL;
}

static int max_overlap(enum nbdd_thread_model model)
{
	struct nbdd_backend b = full;
	struct nbdd_export *e;
	pthread_t t[4];
	int i;

	b.thread_model = model;
	e = open_with(&b, false);
	atomic_store(&tb.overlap, 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reader, e), 0);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	nbdd_export_unref(e);
	return atomic_load(&tb.overlap);
}

static void test_serialize_serializes(void **state)
{
	assert_int_equal(max_overlap(NBDD_THREAD_SERIALIZE), 0);
	/* The detector works: a parallel backend does overlap. */
	assert_int_equal(max_overlap(NBDD_THREAD_PARALLEL), 1);
}

/* ---- capabilities ---- */

static void test_caps_implied(void **state)
{
	struct nbdd_export *e = open_with(&full, false);
	uint32_t c = nbdd_export_capabilities(e);
	uint16_t f = export_eflags(e);

	assert_int_equal(c, NBDD_CAP_WRITE | NBDD_CAP_FLUSH | NBDD_CAP_TRIM |
				NBDD_CAP_ZERO | NBDD_CAP_CACHE |
				NBDD_CAP_EXTENTS | NBDD_CAP_RESIZE);
	assert_int_equal(f, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
				NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
				NBD_FLAG_SEND_WRITE_ZEROES |
				NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_SEND_DF |
				NBD_FLAG_SEND_CACHE);
	assert_false(nbdd_export_readonly(e));
	assert_false(export_is_inline(e));
	assert_int_equal(e->workers, 8);
	nbdd_export_unref(e);
}

static void test_caps_readonly(void **state)
{
	struct nbdd_backend b = full;
	struct nbdd_export *e;
	uint16_t f;

	b.capabilities = t_caps;
	tb.caps = ~0u;
	e = open_with(&b, true);
	assert_true(nbdd_export_readonly(e));
	assert_int_equal(nbdd_export_capabilities(e),
			 NBDD_CAP_FLUSH | NBDD_CAP_CACHE | NBDD_CAP_EXTENTS |
			     NBDD_CAP_MULTI_CONN | NBDD_CAP_ROTATIONAL);
	f = export_eflags(e);
	assert_true(f & NBD_FLAG_READ_ONLY);
	assert_true(f & NBD_FLAG_CAN_MULTI_CONN);
	assert_true(f & NBD_FLAG_ROTATIONAL);
	assert_false(f & (NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
			  NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO |
			  NBD_FLAG_SEND_RESIZE));
	assert_int_equal(export_pwrite(e, "x", 1, 0, 0), -EPERM);
	assert_int_equal(export_trim(e, 1, 0, 0), -EPERM);
	assert_int_equal(export_zero(e, 1, 0, 0), -EPERM);
	assert_int_equal(nbdd_export_resize(e, 4096), -EPERM);
	assert_int_equal(tb.pwrites + tb.trims + tb.zeros + tb.resizes, 0);
	nbdd_export_unref(e);
	/* Nothing to make durable on a read-only export. */
	assert_int_equal(tb.flushes, 0);
}

static void test_caps_need_callbacks(void **state)
{
	struct nbdd_backend b = full;
	struct nbdd_export *e;

	/* Claims without callbacks are dropped; FUA needs FLUSH. */
	b.capabilities = t_caps;
	b.trim = NULL;
	b.flush = NULL;
	tb.caps = NBDD_CAP_WRITE | NBDD_CAP_TRIM | NBDD_CAP_FUA |
		  NBDD_CAP_FAST_ZERO | NBDD_CAP_MULTI_CONN;
	e = open_with(&b, false);
	assert_int_equal(nbdd_export_capabilities(e),
			 NBDD_CAP_WRITE | NBDD_CAP_MULTI_CONN);
	assert_false(export_eflags(e) &
		     (NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_FLUSH));
	assert_true(export_eflags(e) & NBD_FLAG_CAN_MULTI_CONN);
	assert_int_equal(export_trim(e, 1, 0, 0), -ENOTSUP);
	assert_int_equal(export_flush(e), 0);
	nbdd_export_unref(e);

	/* No pwrite: read-only whatever was asked. */
	b = full;
	b.pwrite = NULL;
	e = open_with(&b, false);
	assert_true(nbdd_export_readonly(e));
	assert_true(export_eflags(e) & NBD_FLAG_READ_ONLY);
	nbdd_export_unref(e);
}

/* ---- errors ---- */

static char logged[1024];

static void capture(void *opaque, int level, const char *msg)
{
	if (level <= NBDD_LOG_WARNING)
		snprintf(logged, sizeof(logged), "%s", msg);
}

static void test_error_mapping(void **state)
{
	struct nbdd_export *e = open_with(&full, false);
	uint8_t buf[4];

	nbdd_set_log(capture, NULL, NBDD_LOG_DEBUG);
	tb.fail = -ENOSPC;
	tb.fail_msg = "disk quota gone";
	assert_int_equal(export_pread(e, buf, 4, 0, 0), -ENOSPC);
	assert_non_null(strstr(logged, "export 'exp'"));
	assert_non_null(strstr(logged, "disk quota gone"));
	/* The message was taken: the next failure has its own. */
	assert_null(take_backend_error());

	tb.fail_msg = NULL;
	tb.fail = 5;
	assert_int_equal(export_pread(e, buf, 4, 0, 0), -EIO);
	tb.fail = -100000;
	assert_int_equal(export_pread(e, buf, 4, 0, 0), -EIO);
	assert_non_null(strstr(logged, "Input/output error"));
	tb.fail = -EPERM;
	assert_int_equal(export_pread(e, buf, 4, 0, 0), -EPERM);
	nbdd_set_log(NULL, NULL, 0);
	tb.fail = 0;
	nbdd_export_unref(e);
}

static void test_open_failure(void **state)
{
	struct nbdd_param p = {"fail", "no device"};
	struct nbdd_export *e = NULL;

	assert_int_equal(nbdd_export_new(&full, &p, 1, NULL, &e), -ENODEV);
	assert_null(e);
	assert_non_null(strstr(nbdd_last_error(), "tb: cannot open: no "
						  "device"));
	assert_int_equal(tb.closes, 0);
}

static void test_bad_block_sizes(void **state)
{
	static const struct {
		struct nbdd_block_size bs;
		const char *msg; /* NULL: accepted */
	} cases[] = {
	    {{3, 0, 0}, "power of two"},
	    {{131072, 0, 0}, "from 1 to 65536"},
	    {{4096, 512, 0}, "at least the minimum"},
	    {{4096, 3 << 12, 0}, "at least the minimum"},
	    {{512, 64u << 20, 0}, "at most 32 MiB"},
	    {{4096, 4096, 6000}, "multiple of the minimum"},
	    {{512, 65536, 4096}, "at least the preferred"},
	    {{512, 4096, 1u << 20}, NULL},
	    {{65536, 0, 0}, NULL},
	};
	struct nbdd_backend b = full;
	struct nbdd_export *e;
	size_t i;
	int r;

	b.block_size = t_block_size;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		tb.bs = cases[i].bs;
		tb.closes = 0;
		e = NULL;
		r = nbdd_export_new(&b, NULL, 0, NULL, &e);
		if (!cases[i].msg) {
			assert_int_equal(r, 0);
			nbdd_export_unref(e);
			continue;
		}
		if (r != -EINVAL || !strstr(nbdd_last_error(), cases[i].msg))
			fail_msg("case %zu: %d '%s'", i, r, nbdd_last_error());
		assert_non_null(strstr(nbdd_last_error(), "block sizes"));
		/* The instance opened for probing was closed again. */
		assert_int_equal(tb.closes, 1);
	}
}

static void test_block_size_defaults(void **state)
{
	struct nbdd_backend b = full;
	struct nbdd_block_size bs;
	struct nbdd_export *e = open_with(&full, false);

	nbdd_export_block_size(e, &bs);
	assert_int_equal(bs.minimum, 1);
	assert_int_equal(bs.preferred, 4096);
	assert_int_equal(bs.maximum, 32u << 20);
	nbdd_export_unref(e);

	/* "No maximum" becomes what nbdd ever sends in one call. */
	b.block_size = t_block_size;
	tb.bs = (struct nbdd_block_size){1, 0, UINT32_MAX};
	e = open_with(&b, false);
	nbdd_export_block_size(e, &bs);
	assert_int_equal(bs.maximum, 32u << 20);
	nbdd_export_unref(e);
}

/* ---- lifecycle ---- */

static void test_last_unref_flushes_then_closes(void **state)
{
	struct nbdd_export *e = open_with(&full, false);

	assert_ptr_equal(nbdd_export_ref(e), e);
	nbdd_export_unref(e);
	assert_int_equal(tb.closes, 0);
	nbdd_export_unref(e);
	assert_string_equal(tb.order, "FC");
}

static void test_resize(void **state)
{
	struct nbdd_backend b = full;
	struct nbdd_export *e = open_with(&full, false);

	assert_int_equal(nbdd_export_resize(e, 4096), 0);
	assert_int_equal(tb.resizes, 1);
	/* The backend's get_size is what counts. */
	assert_int_equal(nbdd_export_size(e), SIZE);
	nbdd_export_unref(e);

	b.resize = NULL;
	e = open_with(&b, false);
	assert_int_equal(nbdd_export_resize(e, 4096), -ENOTSUP);
	nbdd_export_unref(e);
}

/* A size that changes outside nbdd is seen only when the backend says so. */
static void test_refresh_size(void **state)
{
	struct nbdd_backend b = full;
	struct nbdd_export *e = open_with(&full, false);

	tb.size = 2 * SIZE;
	assert_int_equal(nbdd_export_refresh_size(e), -ENOTSUP);
	assert_int_equal(nbdd_export_size(e), SIZE);
	nbdd_export_unref(e);

	tb.size = 0;
	b.flags = NBDD_BACKEND_SIZE_CHANGES;
	e = open_with(&b, false);
	assert_int_equal(nbdd_export_refresh_size(e), 0);
	tb.size = 2 * SIZE;
	assert_int_equal(nbdd_export_refresh_size(e), 1);
	assert_int_equal(nbdd_export_size(e), 2 * SIZE);
	assert_int_equal(nbdd_export_refresh_size(e), 0);
	/* A failure leaves the size as it was and says why. */
	tb.size_err = -EIO;
	tb.size = SIZE;
	assert_int_equal(nbdd_export_refresh_size(e), -EIO);
	assert_int_equal(nbdd_export_size(e), 2 * SIZE);
	assert_non_null(strstr(nbdd_last_error(), "tb"));
	tb.size_err = 0;
	/* Requests are checked against the new size. */
	assert_int_equal(nbdd_export_refresh_size(e), 1);
	assert_int_equal(nbdd_export_size(e), SIZE);
	nbdd_export_unref(e);
}

static void test_options(void **state)
{
	struct nbdd_export_options o = {.workers = 5000};
	struct nbdd_export *e;
	char *name;

	assert_int_equal(nbdd_export_new(&full, NULL, 0, &o, &e), -EINVAL);
	o.workers = 3;
	assert_int_equal(nbdd_export_new(&full, NULL, 0, &o, &e), 0);
	assert_int_equal(e->workers, 3);
	assert_string_equal(nbdd_export_name(e), "");
	assert_string_equal(nbdd_export_backend_name(e), "tb");
	nbdd_export_unref(e);

	/* Without a count of its own, the export takes the backend's wish. */
	{
		static const struct {
			uint32_t max_in_flight;
			unsigned workers, want;
		} cases[] = {
			{ 0, 0, 8 },
			{ 128, 0, 128 },
			{ 1u << 30, 0, 1024 }, /* bounded like an explicit count */
			{ 128, 3, 3 },         /* the export's own count wins */
		};
		struct nbdd_backend b = full;
		size_t i;

		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			b.max_in_flight = cases[i].max_in_flight;
			o.workers = cases[i].workers;
			assert_int_equal(nbdd_export_new(&b, NULL, 0, &o, &e), 0);
			assert_int_equal(e->workers, cases[i].want);
			nbdd_export_unref(e);
		}
	}

	name = malloc(5000);
	memset(name, 'n', 4999);
	name[4999] = '\0';
	o.name = name;
	assert_int_equal(nbdd_export_new(&full, NULL, 0, &o, &e), -EINVAL);
	free(name);
	assert_int_equal(nbdd_export_new(NULL, NULL, 0, NULL, &e), -EINVAL);
}

static void test_open_spec(void **state)
{
	struct nbdd_export_options o = {.name = "m", .description = "d"};
	struct nbdd_export *e;

	assert_int_equal(nbdd_export_open("memory:size=1M", &o, &e), 0);
	assert_string_equal(e->spec, "memory:size=1M");
	assert_string_equal(e->description, "d");
	assert_int_equal(nbdd_export_size(e), 1 << 20);
	assert_true(export_is_inline(e));
	assert_true(export_eflags(e) & NBD_FLAG_CAN_MULTI_CONN);
	assert_false(export_eflags(e) & NBD_FLAG_SEND_RESIZE);
	nbdd_export_unref(e);
	assert_int_equal(nbdd_export_open("memory", &o, &e), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "size=SIZE is required"));
	assert_int_equal(nbdd_export_open("memory:size=1M,x=1", &o, &e),
			 -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "unknown parameter 'x'"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_fua_emulated_by_flush, reset),
	    cmocka_unit_test_setup(test_fua_native, reset),
	    cmocka_unit_test_setup(test_zero_by_pwrite, reset),
	    cmocka_unit_test_setup(test_zero_chunks_respect_maximum, reset),
	    cmocka_unit_test_setup(test_fast_zero, reset),
	    cmocka_unit_test_setup(test_cache_and_extents_absent, reset),
	    cmocka_unit_test_setup(test_serialize_serializes, reset),
	    cmocka_unit_test_setup(test_caps_implied, reset),
	    cmocka_unit_test_setup(test_caps_readonly, reset),
	    cmocka_unit_test_setup(test_caps_need_callbacks, reset),
	    cmocka_unit_test_setup(test_error_mapping, reset),
	    cmocka_unit_test_setup(test_open_failure, reset),
	    cmocka_unit_test_setup(test_bad_block_sizes, reset),
	    cmocka_unit_test_setup(test_block_size_defaults, reset),
	    cmocka_unit_test_setup(test_last_unref_flushes_then_closes, reset),
	    cmocka_unit_test_setup(test_resize, reset),
	    cmocka_unit_test_setup(test_refresh_size, reset),
	    cmocka_unit_test_setup(test_options, reset),
	    cmocka_unit_test_setup(test_open_spec, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
