/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/backends/file.c on regular files (no block device here): opening
 * errors, holes after trim, SEEK_DATA extents, zero with and without
 * MAY_TRIM, FUA with and without RWF_DSYNC, direct=on with unaligned
 * requests and racing partial-block writers, read-only, resize.
 * Files live in the build tree: /tmp may be a tmpfs without O_DIRECT.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "backends/file.h"

#define HZ (NBDD_EXTENT_HOLE | NBDD_EXTENT_ZERO)

static const struct nbdd_backend *B = &nbdd_backend_file;
static char dir[512], path[600];

static int setup(void **state)
{
	const char *b = getenv("B");

	snprintf(dir, sizeof(dir), "%s/file-test-XXXXXX",
		 b && *b ? b : "build");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

/* A fresh sparse file of @size bytes. */
static void make_file(uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static int try_open(const char *extra, int readonly, void **h)
{
	struct nbdd_param p[3] = {{"path", path}};
	size_t n = 1;

	if (extra) {
		p[n].key = extra;
		p[n++].value = "on";
	}
	return B->open(p, n, readonly, h);
}

static void *open_file(const char *extra, int readonly)
{
	void *h = NULL;

	if (try_open(extra, readonly, &h))
		fail_msg("open %s: %s", path, take_backend_error());
	return h;
}

static uint64_t disk_usage(void)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	while (n--)
		if (*p++ != v)
			return false;
	return true;
}

static void test_open_errors(void **state)
{
	struct nbdd_param p[2] = {{"path", "/nonexistent/disk"}};
	void *h;

	assert_int_equal(B->open(p, 1, 0, &h), -ENOENT);
	assert_non_null(strstr(take_backend_error(), "does not exist"));
	assert_int_equal(B->open(p, 0, 0, &h), -EINVAL);
	assert_non_null(strstr(take_backend_error(), "path=FILE is required"));
	p[0].value = dir;
	assert_int_equal(B->open(p, 1, 0, &h), -EISDIR);
	assert_non_null(strstr(take_backend_error(), "is a directory"));
	assert_int_equal(B->open(p, 1, 1, &h), -EINVAL);
	assert_non_null(strstr(take_backend_error(), "is a directory"));
	p[0].value = "/dev/null";
	assert_int_equal(B->open(p, 1, 1, &h), -EINVAL);
	assert_non_null(
	    strstr(take_backend_error(), "not a regular file or block device"));
	make_file(4096);
	p[0].value = path;
	p[1] = (struct nbdd_param){"direct", "maybe"};
	assert_int_equal(B->open(p, 2, 0, &h), -EINVAL);
	assert_non_null(strstr(take_backend_error(), "on or off"));
	p[1] = (struct nbdd_param){"colour", "blue"};
	assert_int_equal(B->open(p, 2, 0, &h), -EINVAL);
	assert_non_null(strstr(take_backend_error(), "unknown parameter"));
	if (geteuid() != 0) {
		chmod(path, 0);
		assert_int_equal(B->open(p, 1, 0, &h), -EACCES);
		assert_non_null(strstr(take_backend_error(), "no permission"));
		chmod(path, 0644);
	}
}

static void test_read_write_extents(void **state)
{
	uint8_t buf[65536], back[65536];
	struct nbdd_extents x;
	uint64_t size;
	uint32_t caps;
	void *h;

	make_file(16 << 20);
	h = open_file(NULL, 0);
	assert_int_equal(B->get_size(h, &size), 0);
	assert_int_equal(size, 16 << 20);
	assert_int_equal(B->capabilities(h, &caps), 0);
	assert_true(caps & NBDD_CAP_WRITE);
	assert_true(caps & NBDD_CAP_EXTENTS);
	assert_true(caps & NBDD_CAP_RESIZE);

	memset(buf, 0xab, sizeof(buf));
	assert_int_equal(B->pwrite(h, buf, sizeof(buf), 4 << 20, 0), 0);
	assert_int_equal(B->pread(h, back, sizeof(back), 4 << 20, 0), 0);
	assert_memory_equal(buf, back, sizeof(buf));

	/* hole | data | hole, found with SEEK_DATA/SEEK_HOLE. */
	extents_init(&x, 0, 16 << 20, 0);
	assert_int_equal(B->extents(h, 16 << 20, 0, 0, &x), 0);
	assert_int_equal(x.n, 3);
	assert_int_equal(x.v[0].flags, HZ);
	assert_int_equal(x.v[0].length, 4 << 20);
	assert_int_equal(x.v[1].flags, 0);
	assert_true(x.v[1].length >= sizeof(buf));
	assert_int_equal(x.v[2].flags, HZ);
	assert_int_equal(x.v[2].offset + x.v[2].length, 16 << 20);
	extents_free(&x);

	/* Asked from the middle of the data: starts exactly there. */
	extents_init(&x, (4 << 20) + 100, 1000, 1);
	assert_int_equal(
	    B->extents(h, 1000, (4 << 20) + 100, NBDD_F_REQ_ONE, &x), 0);
	assert_int_equal(x.n, 1);
	assert_int_equal(x.v[0].length, 1000);
	assert_int_equal(x.v[0].flags, 0);
	extents_free(&x);
	assert_int_equal(B->cache(h, 1 << 20, 0, 0), 0);
	assert_int_equal(B->flush(h, 0), 0);
	B->close(h);
}

static void test_trim_makes_holes(void **state)
{
	uint8_t *buf = malloc(4 << 20), back[4096];
	struct nbdd_extents x;
	uint64_t used;
	void *h;

	make_file(4 << 20);
	h = open_file(NULL, 0);
	memset(buf, 0x11, 4 << 20);
	assert_int_equal(B->pwrite(h, buf, 4 << 20, 0, 0), 0);
	assert_int_equal(B->flush(h, 0), 0);
	used = disk_usage();
	assert_true(used >= (4 << 20));
	assert_int_equal(B->trim(h, 2 << 20, 1 << 20, NBDD_F_FUA), 0);
	assert_true(disk_usage() <= used - (2 << 20));
	assert_int_equal(B->pread(h, back, sizeof(back), 2 << 20, 0), 0);
	assert_true(all_bytes(back, sizeof(back), 0));
	extents_init(&x, 0, 4 << 20, 0);
	assert_int_equal(B->extents(h, 4 << 20, 0, 0, &x), 0);
	assert_int_equal(x.n, 3);
	assert_int_equal(x.v[1].offset, 1 << 20);
	assert_int_equal(x.v[1].length, 2 << 20);
	assert_int_equal(x.v[1].flags, HZ);
	extents_free(&x);
	free(buf);
	B->close(h);
}

static void test_zero(void **state)
{
	uint8_t *buf = malloc(1 << 20), back[8192];
	uint64_t used;
	void *h;

	make_file(1 << 20);
	h = open_file(NULL, 0);
	memset(buf, 0x22, 1 << 20);
	assert_int_equal(B->pwrite(h, buf, 1 << 20, 0, 0), 0);
	assert_int_equal(B->flush(h, 0), 0);
	used = disk_usage();

	/* NO_HOLE: zeroes, still allocated. Unaligned edges work too. */
	assert_int_equal(B->zero(h, 256 << 10, 100, NBDD_F_FUA), 0);
	assert_int_equal(B->pread(h, back, sizeof(back), 0, 0), 0);
	assert_true(all_bytes(back, 100, 0x22));
	assert_true(all_bytes(back + 100, sizeof(back) - 100, 0));
	assert_int_equal(disk_usage(), used);

	/* MAY_TRIM: a hole; FAST is honoured where fallocate works. */
	assert_int_equal(
	    B->zero(h, 512 << 10, 512 << 10, NBDD_F_MAY_TRIM | NBDD_F_FAST), 0);
	assert_true(disk_usage() <= used - (512 << 10));
	assert_int_equal(B->pread(h, back, sizeof(back), 600 << 10, 0), 0);
	assert_true(all_bytes(back, sizeof(back), 0));

	/* Without fallocate: written zeroes, and FAST refuses. */
	((struct file *)h)->no_punch = true;
	((struct file *)h)->no_zero_range = true;
	assert_int_equal(B->zero(h, 4096, 0, NBDD_F_FAST), -ENOTSUP);
	assert_non_null(take_backend_error());
	assert_int_equal(B->zero(h, 4096, 300 << 10, NBDD_F_MAY_TRIM), 0);
	assert_int_equal(B->pread(h, back, 4096, 300 << 10, 0), 0);
	assert_true(all_bytes(back, 4096, 0));
	free(buf);
	B->close(h);
}

static void test_fua(void **state)
{
	uint8_t buf[4096], back[4096];
	void *h;

	make_file(1 << 20);
	h = open_file(NULL, 0);
	memset(buf, 0x44, sizeof(buf));
	assert_int_equal(B->pwrite(h, buf, sizeof(buf), 8192, NBDD_F_FUA), 0);
	/* The fallback: a plain write, then fdatasync. */
	((struct file *)h)->no_dsync = true;
	assert_int_equal(B->pwrite(h, buf, sizeof(buf), 0, NBDD_F_FUA), 0);
	assert_int_equal(B->pread(h, back, sizeof(back), 0, 0), 0);
	assert_memory_equal(buf, back, sizeof(buf));
	B->close(h);
}

static void test_readonly(void **state)
{
	struct nbdd_export_options o = {.name = "ro"};
	uint8_t buf[16] = {0};
	char spec[700];
	struct nbdd_export *e;
	uint32_t caps;
	void *h;

	make_file(1 << 20);
	h = open_file(NULL, 1);
	assert_int_equal(B->capabilities(h, &caps), 0);
	assert_false(caps & (NBDD_CAP_WRITE | NBDD_CAP_TRIM | NBDD_CAP_ZERO));
	/* The descriptor itself is read-only. */
	assert_int_equal(B->pwrite(h, buf, sizeof(buf), 0, 0), -EBADF);
	B->close(h);

	snprintf(spec, sizeof(spec), "file:path=%s,readonly=on", path);
	assert_int_equal(nbdd_export_open(spec, &o, &e), 0);
	assert_true(nbdd_export_readonly(e));
	assert_true(export_eflags(e) & NBD_FLAG_READ_ONLY);
	assert_true(export_eflags(e) & NBD_FLAG_CAN_MULTI_CONN);
	assert_int_equal(export_pwrite(e, buf, 1, 0, 0), -EPERM);
	nbdd_export_unref(e);
}

static void test_resize(void **state)
{
	struct stat st;
	void *h;

	make_file(1 << 20);
	h = open_file(NULL, 0);
	assert_int_equal(B->resize(h, 3 << 20), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 3 << 20);
	B->close(h);
}

/* ---- direct=on ---- */

static void *open_direct(void)
{
	void *h = NULL;
	int r = try_open("direct", 0, &h);

	if (r == -EINVAL && strstr(take_backend_error(), "O_DIRECT"))
		return NULL; /* this filesystem has no O_DIRECT */
	if (r)
		fail_msg("direct open: %d", r);
	return h;
}

static void test_direct_unaligned(void **state)
{
	uint8_t *buf = malloc(3 << 20), *back = malloc(3 << 20);
	struct nbdd_block_size bs = {0};
	size_t i;
	void *h;
	int fd;

	make_file(4 << 20);
	h = open_direct();
	if (!h) {
		print_message("skipped: no O_DIRECT here\n");
		goto out;
	}
	assert_int_equal(B->block_size(h, &bs), 0);
	assert_true(bs.minimum >= 512);
	assert_int_equal(bs.minimum & (bs.minimum - 1), 0);
	for (i = 0; i < (3 << 20); i++)
		buf[i] = (uint8_t)(i % 251);
	/* Unaligned offset, length and buffer, larger than a bounce piece. */
	assert_int_equal(B->pwrite(h, buf + 1, (3 << 20) - 7, 333, NBDD_F_FUA),
			 0);
	assert_int_equal(B->pread(h, back + 3, (3 << 20) - 7, 333, 0), 0);
	assert_memory_equal(buf + 1, back + 3, (3 << 20) - 7);
	/* What reached the file, seen without O_DIRECT, agrees. */
	fd = open(path, O_RDONLY);
	assert_int_equal(pread(fd, back, 400, 0), 400);
	close(fd);
	assert_true(all_bytes(back, 333, 0));
	assert_memory_equal(back + 333, buf + 1, 67);
	B->close(h);

	/* A size that is not a multiple of the alignment is refused. */
	make_file((1 << 20) + 1);
	assert_int_equal(try_open("direct", 0, &h), -EINVAL);
	assert_non_null(strstr(take_backend_error(), "multiple"));
out:
	free(buf);
	free(back);
}

#define RMW_THREADS 8

struct rmw {
	void *h;
	int id;
};

/* Each thread owns 64 bytes of every 512-byte block: no lost updates. */
static void *rmw_writer(void *arg)
{
	struct rmw *w = arg;
	uint8_t piece[64];
	int round, blk;

	for (round = 1; round <= 20; round++) {
		memset(piece, w->id * 20 + round, sizeof(piece));
		for (blk = 0; blk < 8; blk++)
			if (B->pwrite(w->h, piece, sizeof(piece),
				      (uint64_t)blk * 512 + w->id * 64, 0))
				abort();
	}
	return NULL;
}

static void test_direct_partial_blocks_race(void **state)
{
	struct rmw w[RMW_THREADS];
	pthread_t t[RMW_THREADS];
	uint8_t back[4096];
	int i, blk;
	void *h;

	make_file(1 << 20);
	h = open_direct();
	if (!h) {
		print_message("skipped: no O_DIRECT here\n");
		return;
	}
	for (i = 0; i < RMW_THREADS; i++) {
		w[i] = (struct rmw){h, i};
		assert_int_equal(pthread_create(&t[i], NULL, rmw_writer, &w[i]),
				 0);
	}
	for (i = 0; i < RMW_THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(B->pread(h, back, sizeof(back), 0, 0), 0);
	for (blk = 0; blk < 8; blk++)
		for (i = 0; i < RMW_THREADS; i++)
			if (!all_bytes(back + blk * 512 + i * 64, 64,
				       (uint8_t)(i * 20 + 20)))
				fail_msg("block %d, thread %d: lost update",
					 blk, i);
	B->close(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_errors),
	    cmocka_unit_test(test_read_write_extents),
	    cmocka_unit_test(test_trim_makes_holes),
	    cmocka_unit_test(test_zero),
	    cmocka_unit_test(test_fua),
	    cmocka_unit_test(test_readonly),
	    cmocka_unit_test(test_resize),
	    cmocka_unit_test(test_direct_unaligned),
	    cmocka_unit_test(test_direct_partial_blocks_race),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
