/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* lib/extents.c: order, contiguity, clipping, merging, the limit. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

#define HZ (NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO)

static void expect_extent(const struct nbdd_extents *x, size_t i, uint64_t off,
			  uint64_t len, uint32_t flags)
{
	assert_true(i < x->n);
	assert_int_equal(x->v[i].offset, off);
	assert_int_equal(x->v[i].length, len);
	assert_int_equal(x->v[i].flags, flags);
}

static void test_in_order(void **state)
{
	struct nbdd_extents x;

	extents_init(&x, 1000, 3000, 100);
	assert_int_equal(nbdd_extents_add(&x, 1000, 500, 0), 0);
	assert_int_equal(nbdd_extents_add(&x, 1500, 500, HZ), 0);
	assert_int_equal(nbdd_extents_add(&x, 2000, 2000, 0), 0);
	assert_int_equal(x.n, 3);
	expect_extent(&x, 0, 1000, 500, 0);
	expect_extent(&x, 1, 1500, 500, HZ);
	expect_extent(&x, 2, 2000, 2000, 0);
	extents_free(&x);
	assert_null(x.v);
	assert_int_equal(x.n, 0);
}

static void test_first_must_start_at_offset(void **state)
{
	struct nbdd_extents x;
	const char *msg;

	(void)take_backend_error();
	extents_init(&x, 4096, 4096, 10);
	assert_int_equal(nbdd_extents_add(&x, 0, 8192, 0), -ERANGE);
	msg = take_backend_error();
	assert_non_null(msg);
	assert_non_null(strstr(msg, "first extent must start at 4096"));
	assert_int_equal(x.n, 0);
	extents_free(&x);
}

static void test_gap_and_overlap_refused(void **state)
{
	struct nbdd_extents x;
	const char *msg;

	extents_init(&x, 0, 10000, 10);
	assert_int_equal(nbdd_extents_add(&x, 0, 100, 0), 0);
	assert_int_equal(nbdd_extents_add(&x, 200, 100, HZ), -ERANGE);
	msg = take_backend_error();
	assert_non_null(msg);
	assert_non_null(strstr(msg, "next extent must start at 100"));
	assert_int_equal(nbdd_extents_add(&x, 50, 100, HZ), -ERANGE);
	/* Still usable after a refusal, and nothing was recorded. */
	assert_int_equal(nbdd_extents_add(&x, 100, 100, HZ), 0);
	assert_int_equal(x.n, 2);
	extents_free(&x);
}

static void test_zero_length_and_bad_flags(void **state)
{
	struct nbdd_extents x;

	extents_init(&x, 0, 100, 10);
	assert_int_equal(nbdd_extents_add(&x, 0, 0, 0), -EINVAL);
	assert_non_null(take_backend_error());
	assert_int_equal(nbdd_extents_add(&x, 0, 10, 1u << 7), -EINVAL);
	assert_non_null(strstr(take_backend_error(), "unknown flags"));
	assert_int_equal(nbdd_extents_add(NULL, 0, 10, 0), -EINVAL);
	assert_int_equal(nbdd_extents_add(&x, 0, UINT64_MAX, 0), 0);
	assert_int_equal(x.n, 1);
	expect_extent(&x, 0, 0, 100, 0);
	extents_free(&x);
}

static void test_overflow(void **state)
{
	struct nbdd_extents x;

	extents_init(&x, 100, 100, 10);
	assert_int_equal(nbdd_extents_add(&x, 100, UINT64_MAX - 10, 0),
			 -ERANGE);
	extents_free(&x);
}

static void test_clip_at_end(void **state)
{
	struct nbdd_extents x;

	extents_init(&x, 0, 1000, 10);
	assert_int_equal(nbdd_extents_add(&x, 0, 600, 0), 0);
	assert_int_equal(nbdd_extents_add(&x, 600, 1 << 20, HZ), 0);
	/* Past the request: accepted (order still checked) and dropped. */
	assert_int_equal(nbdd_extents_add(&x, 600 + (1 << 20), 10, 0), 0);
	assert_int_equal(nbdd_extents_add(&x, 5, 10, 0), -ERANGE);
	assert_int_equal(x.n, 2);
	expect_extent(&x, 1, 600, 400, HZ);
	extents_free(&x);
}

static void test_merge_equal_flags(void **state)
{
	struct nbdd_extents x;
	uint64_t off = 0;
	int i;

	extents_init(&x, 0, 1 << 20, 4);
	for (i = 0; i < 100; i++, off += 512)
		assert_int_equal(nbdd_extents_add(&x, off, 512, 0), 0);
	assert_int_equal(nbdd_extents_add(&x, off, 512, HZ), 0);
	assert_int_equal(nbdd_extents_add(&x, off + 512, 512, HZ), 0);
	assert_int_equal(x.n, 2);
	expect_extent(&x, 0, 0, 51200, 0);
	expect_extent(&x, 1, 51200, 1024, HZ);
	extents_free(&x);
}

static void test_stop_at_max(void **state)
{
	struct nbdd_extents x;
	uint64_t off = 0;
	int i;

	extents_init(&x, 0, 1 << 20, 3);
	for (i = 0; i < 10; i++, off += 100)
		assert_int_equal(nbdd_extents_add(&x, off, 100, i % 2 ? HZ : 0),
				 0);
	assert_int_equal(x.n, 3);
	expect_extent(&x, 2, 200, 100, 0);
	/* Nothing after the cut may grow the last extent. */
	assert_true(x.next >= x.end);
	extents_free(&x);
}

static void test_req_one_still_merges(void **state)
{
	struct nbdd_extents x;

	extents_init(&x, 0, 1000, 1);
	assert_int_equal(nbdd_extents_add(&x, 0, 100, 0), 0);
	assert_int_equal(nbdd_extents_add(&x, 100, 100, 0), 0);
	assert_int_equal(nbdd_extents_add(&x, 200, 100, HZ), 0);
	assert_int_equal(nbdd_extents_add(&x, 300, 100, 0), 0);
	assert_int_equal(x.n, 1);
	expect_extent(&x, 0, 0, 200, 0);
	extents_free(&x);
}

static void test_many_extents_grow(void **state)
{
	struct nbdd_extents x;
	uint64_t off = 1ull << 40;
	int i;

	extents_init(&x, off, 1ull << 32, 0);
	for (i = 0; i < 10000; i++, off += 4096)
		assert_int_equal(
		    nbdd_extents_add(&x, off, 4096, i % 2 ? HZ : 0), 0);
	assert_int_equal(x.n, 10000);
	expect_extent(&x, 9999, (1ull << 40) + 9999 * 4096ull, 4096, HZ);
	extents_free(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_in_order),
	    cmocka_unit_test(test_first_must_start_at_offset),
	    cmocka_unit_test(test_gap_and_overlap_refused),
	    cmocka_unit_test(test_zero_length_and_bad_flags),
	    cmocka_unit_test(test_overflow),
	    cmocka_unit_test(test_clip_at_end),
	    cmocka_unit_test(test_merge_equal_flags),
	    cmocka_unit_test(test_stop_at_max),
	    cmocka_unit_test(test_req_one_still_merges),
	    cmocka_unit_test(test_many_extents_grow),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
