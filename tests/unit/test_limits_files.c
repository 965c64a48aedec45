/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Files named by backend specs (file:path=...) are opened safely by a
 * daemon that usually runs as root (docs/SECURITY.md):
 *  - a symlink is followed only when root or the daemon's own user owns
 *    it, the rule conf.c applies to NAME.conf: a link planted by another
 *    user in a directory they can write cannot point the daemon at
 *    /etc/shadow or /dev/sda;
 *  - a FIFO or another special file is refused at once, without the open
 *    blocking the daemon;
 *  - the error says what was wrong.
 * tests/unit/test_spec.c covers the same rules for NAME.conf itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"

#define NOBODY 65534

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/nbdd-limits-files.XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", dir, name);
}

static void make_file(const char *name, const char *text, mode_t mode)
{
	char p[128];
	int fd;

	path_of(p, sizeof(p), name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	/* a whole sector, so it is a usable export */
	assert_int_equal(ftruncate(fd, 4096), 0);
	close(fd);
}

/* Open file:path=DIR/@name (plus @extra); 0 or the -errno. */
static int open_file(const char *name, const char *extra)
{
	struct nbdd_export *e;
	char spec[256];
	int r;

	snprintf(spec, sizeof(spec), "file:path=%s/%s%s", dir, name, extra);
	r = nbdd_export_open(spec, NULL, &e);
	if (r == 0)
		nbdd_export_unref(e);
	return r;
}

static void test_own_file_and_root_link(void **state)
{
	char target[128], link[128];

	make_file("disk.img", "data", 0600);
	assert_int_equal(open_file("disk.img", ""), 0);
	path_of(target, sizeof(target), "disk.img");
	path_of(link, sizeof(link), "alias.img");
	assert_int_equal(symlink(target, link), 0);
	/* a link this user (root, when run as root) made is followed */
	assert_int_equal(open_file("alias.img", ""), 0);
}

/* A link another user planted is not followed. */
static void test_planted_link(void **state)
{
	char target[128], link[128];

	if (geteuid() != 0)
		skip(); /* only root can make a link owned by another user */
	make_file("secret", "SECRET", 0600);
	path_of(target, sizeof(target), "secret");
	path_of(link, sizeof(link), "planted.img");
	assert_int_equal(symlink(target, link), 0);
	assert_int_equal(lchown(link, NOBODY, NOBODY), 0);
	assert_int_equal(open_file("planted.img", ""), -EPERM);
	assert_non_null(strstr(nbdd_last_error(), "symlink"));
	assert_int_equal(open_file("planted.img", ",readonly=on"), -EPERM);
	/* nor one to a device */
	assert_int_equal(unlink(link), 0);
	assert_int_equal(symlink("/dev/zero", link), 0);
	assert_int_equal(lchown(link, NOBODY, NOBODY), 0);
	assert_int_equal(open_file("planted.img", ",readonly=on"), -EPERM);
}

/*
 * A FIFO is refused without blocking: opening one for reading waits for
 * a writer that never comes. Run in a child so a hang fails the test
 * instead of stalling it.
 */
static void test_fifo_does_not_block(void **state)
{
	char p[128];
	pid_t pid;
	int status = 0, i;

	path_of(p, sizeof(p), "fifo");
	assert_int_equal(mkfifo(p, 0600), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int a = open_file("fifo", ",readonly=on");
		int b = open_file("fifo", "");

		_exit(a == -EINVAL && b == -EINVAL ? 0 : 1);
	}
	for (i = 0; i < 50; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		usleep(100000);
	}
	if (i == 50) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail_msg("opening a FIFO as a file export blocked for 5 s");
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Special files and directories: refused with the reason. */
static void test_not_a_disk(void **state)
{
	char link[128];

	assert_int_equal(open_file("", ""), -EISDIR);
	path_of(link, sizeof(link), "zero");
	assert_int_equal(symlink("/dev/zero", link), 0);
	assert_int_equal(open_file("zero", ",readonly=on"), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "not a regular file"));
	assert_int_equal(open_file("missing", ""), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_own_file_and_root_link,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_planted_link, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fifo_does_not_block,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_disk, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
