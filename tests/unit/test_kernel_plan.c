/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* lib/kernel/plan.c: attach options, server flags, kernel releases. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "kernel/kernel.h"

#define ALL_FLAGS 0x1fffu

static void test_server_flags(void **state)
{
	uint16_t f;

	/* Commands the kernel never sends are not advertised to it. */
	f = kernel_server_flags(ALL_FLAGS, false, false);
	assert_int_equal(f, NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY |
			 NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
			 NBD_FLAG_ROTATIONAL | NBD_FLAG_SEND_TRIM |
			 NBD_FLAG_CAN_MULTI_CONN);
	/* WRITE_ZEROES only where the kernel sends it. */
	f = kernel_server_flags(ALL_FLAGS, false, true);
	assert_true(f & NBD_FLAG_SEND_WRITE_ZEROES);
	assert_false(f & NBD_FLAG_SEND_FAST_ZERO);
	f = kernel_server_flags(NBD_FLAG_SEND_FLUSH, false, true);
	assert_false(f & NBD_FLAG_SEND_WRITE_ZEROES);
	/* FUA means nothing without a write cache (FLUSH). */
	f = kernel_server_flags(NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM, false,
				false);
	assert_int_equal(f, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_TRIM);
	f = kernel_server_flags(NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_FLUSH, false,
				false);
	assert_true(f & NBD_FLAG_SEND_FUA);
	/* A read-only mapping of a writable export. */
	f = kernel_server_flags(NBD_FLAG_SEND_FLUSH, true, false);
	assert_int_equal(f, NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY |
			 NBD_FLAG_SEND_FLUSH);
	assert_int_equal(kernel_server_flags(0, false, false),
			 NBD_FLAG_HAS_FLAGS);
}

static void test_release(void **state)
{
	static const struct {
		const char *release;
		int ret;
		unsigned major, minor;
		bool wz;
	} cases[] = {
		{ "6.1.0-56-amd64", 0, 6, 1, false },
		{ "6.11.9-arch1-1", 0, 6, 11, false },
		{ "6.12.0", 0, 6, 12, true },
		{ "6.18.44-fc-v769", 0, 6, 18, true },
		{ "7.0-rc1", 0, 7, 0, true },
		{ "5.15.0-91-generic", 0, 5, 15, false },
		{ "10.2", 0, 10, 2, true },
		{ "6", -EINVAL, 0, 0, false },
		{ "6.", -EINVAL, 0, 0, false },
		{ "6.x", -EINVAL, 0, 0, false },
		{ "v6.12", -EINVAL, 0, 0, false },
		{ "", -EINVAL, 0, 0, false },
		{ "99999999.1", -EINVAL, 0, 0, false },
	};
	unsigned ma, mi;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		ma = mi = 12345;
		int r = kernel_release_parse(cases[i].release, &ma, &mi);
		if (r != cases[i].ret)
			fail_msg("'%s': got %d", cases[i].release, r);
		if (r == 0 && (ma != cases[i].major || mi != cases[i].minor))
			fail_msg("'%s': got %u.%u", cases[i].release, ma, mi);
		if (kernel_release_has_write_zeroes(cases[i].release) !=
		    cases[i].wz)
			fail_msg("'%s': write_zeroes wrong", cases[i].release);
	}
	assert_int_equal(kernel_release_parse(NULL, &ma, &mi), -EINVAL);
	assert_false(kernel_release_has_write_zeroes(NULL));
}

static struct attach_input input(uint16_t eflags)
{
	return (struct attach_input){
		.size = 64u << 20, .eflags = eflags, .min_block = 1,
		.page_size = 4096,
	};
}

static void test_connections(void **state)
{
	struct nbdd_attach_options o = { .index = -1 };
	struct attach_input in = input(NBD_FLAG_CAN_MULTI_CONN);
	struct attach_plan p;

	/* One socket by default, even with multi-conn (rescuer starvation). */
	assert_int_equal(attach_plan_make(&o, &in, &p), 0);
	assert_int_equal(p.connections, 1);
	o.connections = 4;
	assert_int_equal(attach_plan_make(&o, &in, &p), 0);
	assert_int_equal(p.connections, 4);
	o.connections = 16;
	assert_int_equal(attach_plan_make(&o, &in, &p), 0);
	assert_int_equal(p.connections, 16);
	o.connections = 17;
	assert_int_equal(attach_plan_make(&o, &in, &p), -EINVAL);

	/* Without multi-conn more than one is refused, saying why. */
	in = input(NBD_FLAG_SEND_FLUSH);
	o.connections = 0;
	assert_int_equal(attach_plan_make(&o, &in, &p), 0);
	assert_int_equal(p.connections, 1);
	o.connections = 2;
	assert_int_equal(attach_plan_make(&o, &in, &p), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "multi-conn"));
	o.connections = 1;
	assert_int_equal(attach_plan_make(&o, &in, &p), 0);
}

static void test_block_size(void **state)
{
	struct nbdd_attach_options o = { .index = -1 };
	struct attach_input in = input(0);
	struct attach_plan p;
	static const uint32_t bad[] = { 256, 768, 1000, 8192, 3 };
	size_t i;

	assert_int_equal(attach_plan_make(&o, &in, &p), 0);
	assert_int_equal(p.block_size, 512);
	in.min_block = 4096; /* the backend's own minimum wins */
	assert_int_equal(attach_plan_make(&o, &in, &p), 0);
	assert_int_equal(p.block_size, 4096);
	o.block_size = 1024; /* ...and an explicit smaller one is refused */
	assert_int_equal(attach_plan_make(&o, &in, &p), -EINVAL);
	in.min_block = 8192; /* more than a page: the kernel cannot */
	o.block_size = 0;
	assert_int_equal(attach_plan_make(&o, &in, &p), -EINVAL);
	in.page_size = 65536;
	assert_int_equal(attach_plan_make(&o, &in, &p), 0);
	assert_int_equal(p.block_size, 8192);

	in = input(0);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		o.block_size = bad[i];
		if (attach_plan_make(&o, &in, &p) != -EINVAL)
			fail_msg("block size %u accepted", bad[i]);
	}
	o.block_size = 2048;
	assert_int_equal(attach_plan_make(&o, &in, &p), 0);
	assert_int_equal(p.block_size, 2048);
}

static void test_size_and_rest(void **state)
{
	struct nbdd_attach_options o = {
		.index = -1, .block_size = 4096, .timeout = 30,
		.dead_conn_timeout = 60, .readonly = true,
	};
	struct attach_input in = input(NBD_FLAG_SEND_FLUSH);
	struct attach_plan p;

	in.size = 1000000; /* not a multiple of 4096: rounded down */
	assert_int_equal(attach_plan_make(&o, &in, &p), 0);
	assert_int_equal(p.size, 999424);
	assert_int_equal(p.timeout, 30);
	assert_int_equal(p.dead_conn_timeout, 60);
	assert_true(p.server_flags & NBD_FLAG_READ_ONLY);
	in.size = 4095; /* less than a block */
	assert_int_equal(attach_plan_make(&o, &in, &p), -EINVAL);
	in.size = 4096;
	o.index = -2;
	assert_int_equal(attach_plan_make(&o, &in, &p), -EINVAL);
	o.index = 7;
	assert_int_equal(attach_plan_make(&o, &in, &p), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_flags),
		cmocka_unit_test(test_release),
		cmocka_unit_test(test_connections),
		cmocka_unit_test(test_block_size),
		cmocka_unit_test(test_size_and_rest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
