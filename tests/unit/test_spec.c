/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/spec.c and lib/conf.c: the spec grammar with its escapes and
 * limits, NAME.conf files and their errors, names that try to leave the
 * config dir, and the ownership rules for config files and symlinks.
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

static char dir[64];

static const char *param(const struct backend_spec *s, const char *key)
{
	size_t i;

	for (i = 0; i < s->nparams; i++)
		if (!strcmp(s->params[i].key, key))
			return s->params[i].value;
	return NULL;
}

static void expect_error(int r, int err, const char *fragment)
{
	if (r != err)
		fail_msg("got %d, want %d (%s)", r, err, nbdd_last_error());
	if (!strstr(nbdd_last_error(), fragment))
		fail_msg("message '%s' lacks '%s'", nbdd_last_error(),
			 fragment);
}

/* ---- grammar ---- */

static void test_simple(void **state)
{
	struct backend_spec s;

	assert_int_equal(spec_parse("memory:size=1G", &s), 0);
	assert_string_equal(s.backend, "memory");
	assert_int_equal(s.nparams, 1);
	assert_string_equal(param(&s, "size"), "1G");
	assert_int_equal(s.readonly, -1);
	assert_null(s.description);
	spec_free(&s);

	assert_int_equal(spec_parse("null", &s), 0);
	assert_string_equal(s.backend, "null");
	assert_int_equal(s.nparams, 0);
	spec_free(&s);

	assert_int_equal(spec_parse("memory:", &s), 0);
	assert_int_equal(s.nparams, 0);
	spec_free(&s);

	assert_int_equal(spec_parse("/usr/lib/x.so:a=1,b=two,c=", &s), 0);
	assert_string_equal(s.backend, "/usr/lib/x.so");
	assert_int_equal(s.nparams, 3);
	assert_string_equal(param(&s, "b"), "two");
	assert_string_equal(param(&s, "c"), "");
	spec_free(&s);
}

static void test_escapes_and_quotes(void **state)
{
	struct backend_spec s;

	assert_int_equal(spec_parse("file:path=a\\,b,k=c\\\\d,e=x=y", &s), 0);
	assert_int_equal(s.nparams, 3);
	assert_string_equal(param(&s, "path"), "a,b");
	assert_string_equal(param(&s, "k"), "c\\d");
	assert_string_equal(param(&s, "e"), "x=y");
	spec_free(&s);

	assert_int_equal(spec_parse("file:path=\"a,b \\\"q\\\" \\\\\",k=1", &s),
			 0);
	assert_string_equal(param(&s, "path"), "a,b \"q\" \\");
	assert_string_equal(param(&s, "k"), "1");
	spec_free(&s);

	assert_int_equal(spec_parse("f:v=\\\"lead", &s), 0);
	assert_string_equal(param(&s, "v"), "\"lead");
	spec_free(&s);
}

static void test_grammar_errors(void **state)
{
	static const struct {
		const char *spec, *msg;
	} bad[] = {
	    {"", "empty"},
	    {":size=1", "no backend"},
	    {"m:size", "expected key=value"},
	    {"m:=v", "empty key"},
	    {"m:a=1,", "trailing ','"},
	    {"m:a=1,,b=2", "empty parameter"},
	    {"m:a=1,a=2", "duplicate parameter"},
	    {"m:a=\\q", "unknown escape"},
	    {"m:a=x\\", "unknown escape"},
	    {"m:a=\"open", "missing closing"},
	    {"m:a=\"x\"y", "expected ','"},
	    {"m:a b=1", "a key may hold only"},
	    {"m:a=x\ny", "control character"},
	    {"me\tm:a=1", "control character"},
	};
	struct backend_spec s;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = spec_parse(bad[i].spec, &s);
		if (r != -EINVAL || !strstr(nbdd_last_error(), bad[i].msg))
			fail_msg("'%s': %d '%s', want '%s'", bad[i].spec, r,
				 nbdd_last_error(), bad[i].msg);
		/* A failed parse leaves nothing to free. */
		assert_null(s.backend);
		assert_int_equal(s.nparams, 0);
	}
	expect_error(spec_parse(NULL, &s), -EINVAL, "empty");
}

static void test_limits(void **state)
{
	struct backend_spec s;
	char *text = malloc(80000), *p;
	int i;

	/* 64 parameters pass, 65 do not. */
	p = text + sprintf(text, "m:");
	for (i = 0; i < 64; i++)
		p += sprintf(p, "%sk%d=%d", i ? "," : "", i, i);
	assert_int_equal(spec_parse(text, &s), 0);
	assert_int_equal(s.nparams, 64);
	spec_free(&s);
	sprintf(p, ",k64=1");
	expect_error(spec_parse(text, &s), -EINVAL, "too many parameters");

	/* Values up to 4096 bytes; keys up to 64. */
	p = text + sprintf(text, "m:v=");
	memset(p, 'x', 4096);
	p[4096] = '\0';
	assert_int_equal(spec_parse(text, &s), 0);
	spec_free(&s);
	strcat(text, "x");
	expect_error(spec_parse(text, &s), -EINVAL, "value too long");
	p = text + sprintf(text, "m:");
	memset(p, 'k', 65);
	strcpy(p + 65, "=1");
	expect_error(spec_parse(text, &s), -EINVAL, "key too long");

	memset(text, 'a', 70000);
	text[70000] = '\0';
	expect_error(spec_parse(text, &s), -EINVAL, "longer than");
	free(text);
}

/* ---- resolution and config files ---- */

static void write_conf(const char *name, const char *text, mode_t mode)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s.conf", dir, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static int setup_dir(void **state)
{
	strcpy(dir, "/tmp/nbdd-spec-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	nbdd_set_config_dir(dir);
	return 0;
}

static int teardown_dir(void **state)
{
	char cmd[128];

	nbdd_set_config_dir(NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static void test_resolve_builtin_and_plugin(void **state)
{
	struct backend_spec s;

	assert_int_equal(spec_resolve("memory:size=1M", &s), 0);
	assert_string_equal(s.backend, "memory");
	spec_free(&s);
	assert_int_equal(spec_resolve("./x.so:k=v", &s), 0);
	assert_string_equal(s.backend, "./x.so");
	spec_free(&s);
	assert_int_equal(spec_resolve("plugin.so", &s), 0);
	spec_free(&s);
	assert_non_null(builtin_backend("file"));
	assert_non_null(builtin_backend("null"));
	assert_null(builtin_backend("nope"));
	assert_null(builtin_backend(NULL));
}

static void test_unknown_backend(void **state)
{
	struct backend_spec s;

	expect_error(spec_resolve("nosuch:size=1", &s), -ENOENT,
		     "unknown backend 'nosuch'");
	assert_non_null(strstr(nbdd_last_error(), "memory, file, null"));
	assert_non_null(strstr(nbdd_last_error(), dir));
	assert_null(s.backend);
}

static void test_conf_file(void **state)
{
	struct backend_spec s;

	write_conf("disk",
		   "# a test disk\r\n"
		   "\n"
		   "   backend = memory:size=1M\n"
		   "description = \"  spaced, # not a comment \\\"q\\\" \"\n"
		   "readonly=yes\n"
		   "\tcolour = blue   \n"
		   "empty =\n"
		   "# trailing comment without newline",
		   0644);
	assert_int_equal(spec_resolve("disk", &s), 0);
	assert_string_equal(s.backend, "memory");
	assert_string_equal(param(&s, "size"), "1M");
	assert_string_equal(param(&s, "colour"), "blue");
	assert_string_equal(param(&s, "empty"), "");
	assert_int_equal(s.nparams, 3);
	assert_string_equal(s.description, "  spaced, # not a comment \"q\" ");
	assert_int_equal(s.readonly, 1);
	spec_free(&s);

	/* NAME:k=v overrides the file's value and may add new ones. */
	assert_int_equal(spec_resolve("disk:size=2M,extra=1", &s), 0);
	assert_string_equal(param(&s, "size"), "2M");
	assert_string_equal(param(&s, "extra"), "1");
	assert_int_equal(s.nparams, 4);
	spec_free(&s);
}

static void test_conf_errors(void **state)
{
	static const struct {
		const char *text, *msg;
	} bad[] = {
	    {"description = x\n", "no 'backend = ...' line"},
	    {"backend = memory\nsize = 1\n\nsize = 2\n",
	     "bad.conf:4: duplicate key 'size' (first set on line 2)"},
	    {"backend = memory\nbackend = null\n",
	     "bad.conf:2: duplicate key 'backend'"},
	    {"[section]\nbackend = memory\n", "bad.conf:1: expected"},
	    {"backend memory\n", "bad.conf:1: expected '='"},
	    {"backend = memory\nreadonly = maybe\n",
	     "bad.conf:2: readonly must be true or false"},
	    {"backend = other\n", "bad.conf:1: backend 'other' is "
				  "neither"},
	    {"backend = memory:size=1\nsize = 2\n",
	     "bad.conf:2: 'size' is also set on line 1"},
	    {"backend = memory:a=\\q\n", "bad.conf:1: backend:"},
	    {"d = \"open\nbackend = memory\n", "bad.conf:1: missing"},
	    {"backend = memory\nk = a\033b\n", "bad.conf:2: control"},
	};
	struct backend_spec s;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		write_conf("bad", bad[i].text, 0644);
		int r = spec_resolve("bad", &s);
		if (r >= 0 || !strstr(nbdd_last_error(), bad[i].msg))
			fail_msg("case %zu: %d '%s', want '%s'", i, r,
				 nbdd_last_error(), bad[i].msg);
		assert_null(s.backend);
	}
}

static void test_conf_limits(void **state)
{
	struct backend_spec s;
	char *text = malloc(20000), *p;
	int i;

	p = text + sprintf(text, "backend = null\n# ");
	memset(p, 'x', 4100);
	strcpy(p + 4100, "\n");
	write_conf("long", text, 0644);
	expect_error(spec_resolve("long", &s), -EINVAL,
		     "long.conf:2: line longer than 4096 bytes");

	p = text + sprintf(text, "backend = null\n");
	for (i = 0; i < 65; i++)
		p += sprintf(p, "k%d = %d\n", i, i);
	write_conf("many", text, 0644);
	expect_error(spec_resolve("many", &s), -EINVAL,
		     "many.conf:66: more than 64 parameters");

	write_conf("nul", "backend = null\0\n", 0644);
	/* write_conf stops at the NUL: write one by hand. */
	snprintf(text, 200, "%s/nul.conf", dir);
	FILE *f = fopen(text, "w");
	fwrite("backend = null\n\0x\n", 1, 18, f);
	fclose(f);
	expect_error(spec_resolve("nul", &s), -EINVAL, "NUL byte");
	free(text);
}

static void test_names_stay_in_dir(void **state)
{
	static const char *const names[] = {
	    "..", ".hidden", "a b", "x%y", "..conf", "a\\b", "n\xc3\xa9",
	};
	struct backend_spec s;
	char path[128];
	size_t i;

	/* A tempting target next to (not in) the config dir. */
	snprintf(path, sizeof(path), "%s/.hidden.conf", dir);
	write_conf(".hidden", "backend = memory:size=1\n", 0644);
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		int r = spec_resolve(names[i], &s);
		if (r != -EINVAL ||
		    !strstr(nbdd_last_error(), "invalid backend name"))
			fail_msg("'%s': %d '%s'", names[i], r,
				 nbdd_last_error());
	}
	unlink(path);
	/* With a '/', it is a plugin path and never a config file. */
	assert_int_equal(spec_resolve("../etc/passwd", &s), 0);
	assert_string_equal(s.backend, "../etc/passwd");
	spec_free(&s);
}

static void test_conf_permissions(void **state)
{
	struct backend_spec s;
	char path[128];

	write_conf("ww", "backend = null:size=1\n", 0666);
	expect_error(spec_resolve("ww", &s), -EPERM, "world-writable");

	write_conf("other", "backend = null:size=1\n", 0644);
	snprintf(path, sizeof(path), "%s/other.conf", dir);
	if (geteuid() == 0) {
		/* Root may give it away; a user cannot, so only root tests. */
		assert_int_equal(chown(path, 65534, 65534), 0);
		expect_error(spec_resolve("other", &s), -EPERM,
			     "owned by uid 65534");
	}

	/* Not a regular file. */
	snprintf(path, sizeof(path), "%s/fifo.conf", dir);
	assert_int_equal(mkfifo(path, 0644), 0);
	expect_error(spec_resolve("fifo", &s), -EINVAL, "not a regular file");
}

static void test_conf_symlinks(void **state)
{
	struct backend_spec s;
	char target[128], link[128];

	write_conf("real", "backend = null:size=1\n", 0644);
	snprintf(target, sizeof(target), "%s/real.conf", dir);
	snprintf(link, sizeof(link), "%s/alias.conf", dir);
	assert_int_equal(symlink(target, link), 0);
	/* Our own (or root's) symlink is followed... */
	assert_int_equal(spec_resolve("alias", &s), 0);
	assert_string_equal(s.backend, "null");
	spec_free(&s);
	/* ...another user's is not; only root can make one here. */
	if (geteuid() == 0) {
		assert_int_equal(lchown(link, 65534, 65534), 0);
		expect_error(spec_resolve("alias", &s), -EPERM,
			     "symlink owned by uid 65534");
	}

	/* A dangling symlink is an error, not "unknown backend". */
	snprintf(link, sizeof(link), "%s/dangling.conf", dir);
	assert_int_equal(symlink("/nonexistent/x.conf", link), 0);
	expect_error(spec_resolve("dangling", &s), -EINVAL, "cannot open");
}

static void test_config_dir_default(void **state)
{
	struct backend_spec s;

	nbdd_set_config_dir(NULL);
	expect_error(spec_resolve("nosuch", &s), -ENOENT,
		     NBDD_SYSCONFDIR "/nbdd/backends.d/nosuch.conf");
	nbdd_set_config_dir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple),
	    cmocka_unit_test(test_escapes_and_quotes),
	    cmocka_unit_test(test_grammar_errors),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_resolve_builtin_and_plugin),
	    cmocka_unit_test(test_unknown_backend),
	    cmocka_unit_test(test_conf_file),
	    cmocka_unit_test(test_conf_errors),
	    cmocka_unit_test(test_conf_limits),
	    cmocka_unit_test(test_names_stay_in_dir),
	    cmocka_unit_test(test_conf_permissions),
	    cmocka_unit_test(test_conf_symlinks),
	    cmocka_unit_test(test_config_dir_default),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
