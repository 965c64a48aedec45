/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/plugin.c: loading build/examples/pattern.so through a spec, and
 * refusing broken plugins (new ABI, no symbol, NULL table, garbage) with
 * messages that say what to do. The broken plugins are compiled here,
 * from a few lines each, with the system compiler.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <dlfcn.h>

#include "internal.h"

static char tmp[64];
static char top[1024];

static const char *build_dir(void)
{
	const char *b = getenv("B");

	return b && *b ? b : "build";
}

/* Compile @body into @tmp/@name.so against the public header. */
static void make_plugin(const char *name, const char *body)
{
	char src[256], cmd[2048];
	const char *cc = getenv("CC");
	FILE *f;

	snprintf(src, sizeof(src), "%s/%s.c", tmp, name);
	f = fopen(src, "w");
	assert_non_null(f);
	fprintf(f, "#include <errno.h>\n#include <nbdd/backend.h>\n%s\n", body);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "%s -shared -fPIC -I'%s/include' -o '%s/%s.so' '%s'",
		 cc && *cc ? cc : "cc", top, tmp, name, src);
	if (system(cmd) != 0)
		fail_msg("cannot compile a test plugin: %s", cmd);
}

#define CALLBACKS                                                              \
	"static int o(const struct nbdd_param *p, size_t n, int ro,"           \
	" void **h) { *h = 0; return 0; }\n"                                   \
	"static int s(void *h, uint64_t *z) { *z = 4096; return 0; }\n"        \
	"static int r(void *h, void *b, size_t c, uint64_t o,"                 \
	" uint32_t f) { return 0; }\n"

static int setup(void **state)
{
	const char *t = getenv("NBDD_TOP");

	snprintf(top, sizeof(top), "%s", t && *t ? t : ".");
	strcpy(tmp, "/tmp/nbdd-plugin-XXXXXX");
	if (!mkdtemp(tmp))
		return -1;
	make_plugin("future", CALLBACKS
		    "static struct nbdd_backend t = { .abi_version ="
		    " NBDD_BACKEND_ABI_VERSION + 1,"
		    " .struct_size = sizeof(t) + 64, .name = \"future\","
		    " .open = o, .get_size = s, .pread = r };\n"
		    "NBDD_BACKEND_REGISTER(t)");
	/* Built before the .aio_ fields existed: ABI 1, a shorter table. */
	make_plugin("abi1", CALLBACKS
		    "static struct nbdd_backend t = { .abi_version = 1,"
		    " .struct_size = offsetof(struct nbdd_backend, aio_pread),"
		    " .name = \"old\", .open = o, .get_size = s,"
		    " .pread = r, .aio_pread = (void *)1 };\n"
		    "NBDD_BACKEND_REGISTER(t)");
	make_plugin("nosym",
		    CALLBACKS "struct nbdd_backend t = { NBDD_BACKEND_HEADER,"
			      " .name = \"nosym\", .open = o, .get_size = s,"
			      " .pread = r };");
	make_plugin("nulltable",
		    "const struct nbdd_backend *nbdd_backend_v1(void);\n"
		    "const struct nbdd_backend *nbdd_backend_v1(void)"
		    " { return 0; }");
	make_plugin("nopread", CALLBACKS
		    "static struct nbdd_backend t = { NBDD_BACKEND_HEADER,"
		    " .name = \"nopread\", .open = o, .get_size = s };\n"
		    "NBDD_BACKEND_REGISTER(t)");
	make_plugin("good", CALLBACKS
		    "static struct nbdd_backend t = { NBDD_BACKEND_HEADER,"
		    " .name = \"good\", .open = o, .get_size = s,"
		    " .pread = r };\n"
		    "NBDD_BACKEND_REGISTER(t)");
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	return system(cmd);
}

static void expect_load_error(const char *name, int err, const char *frag)
{
	struct nbdd_backend b;
	char path[256];
	void *dl = (void *)1;
	int r;

	snprintf(path, sizeof(path), "%s/%s.so", tmp, name);
	r = plugin_load(path, &b, &dl);
	if (r != err || !strstr(nbdd_last_error(), frag))
		fail_msg("%s: %d '%s', want %d '%s'", name, r,
			 nbdd_last_error(), err, frag);
	assert_null(dl);
}

static void test_pattern_through_spec(void **state)
{
	struct nbdd_export_options o = {.name = "pat"};
	struct nbdd_export *e;
	char so[1100], spec[1200];
	uint8_t buf[64];
	int i;

	snprintf(so, sizeof(so), "%s/%s/examples/pattern.so", top, build_dir());
	if (access(so, F_OK))
		fail_msg("%s is missing: run make first", so);
	snprintf(spec, sizeof(spec), "%s:size=1M", so);
	assert_int_equal(nbdd_export_open(spec, &o, &e), 0);
	assert_string_equal(nbdd_export_backend_name(e), "pattern");
	assert_int_equal(nbdd_export_size(e), 1 << 20);
	assert_true(nbdd_export_readonly(e));
	assert_true(nbdd_export_capabilities(e) & NBDD_CAP_MULTI_CONN);
	assert_true(export_eflags(e) & NBD_FLAG_READ_ONLY);
	assert_true(export_is_inline(e));
	/* Offset 0x1234 is mid-word: the word at 0x1230 holds 0x1230. */
	assert_int_equal(export_pread(e, buf, sizeof(buf), 0x1234, 0), 0);
	assert_memory_equal(buf, "\x00\x00\x12\x30", 4);
	for (i = 0; i < 7; i++) {
		uint64_t w = 0;
		int j;
		for (j = 0; j < 8; j++)
			w = w << 8 | buf[4 + 8 * i + j];
		assert_int_equal(w, 0x1238 + 8 * i);
	}
	assert_int_equal(export_pwrite(e, buf, 8, 0, 0), -EPERM);
	nbdd_export_unref(e);

	/* The plugin's own messages reach us through nbdd_last_error(). */
	snprintf(spec, sizeof(spec), "%s:size=big", so);
	assert_int_equal(nbdd_export_open(spec, NULL, &e), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "'big' is not a size"));
}

/* "pattern:..." finds PLUGINDIR/pattern.so once the directory is set. */
static void test_installed_plugin_by_name(void **state)
{
	struct nbdd_export *e;
	char dir[1100];

	snprintf(dir, sizeof(dir), "%s/%s/examples", top, build_dir());
	nbdd_set_plugin_dir(tmp);
	assert_false(plugin_installed("pattern"));
	assert_int_equal(nbdd_export_open("pattern:size=1M", NULL, &e), -ENOENT);
	assert_non_null(strstr(nbdd_last_error(), "/pattern.so"));

	nbdd_set_plugin_dir(dir);
	assert_true(plugin_installed("pattern"));
	assert_false(plugin_installed("../examples/pattern"));
	assert_false(plugin_installed("memory2"));
	assert_int_equal(nbdd_export_open("pattern:size=2M", NULL, &e), 0);
	assert_string_equal(nbdd_export_backend_name(e), "pattern");
	assert_int_equal(nbdd_export_size(e), 2 << 20);
	nbdd_export_unref(e);
	/* Built-in names still win over a plugin of the same name. */
	assert_int_equal(nbdd_export_open("memory:size=1M", NULL, &e), 0);
	assert_string_equal(nbdd_export_backend_name(e), "memory");
	nbdd_export_unref(e);
	nbdd_set_plugin_dir(NULL);
}

/* Load tmp/@name.so, which must load; returns its dlopen() handle. */
static void *load_ok(const char *name, struct nbdd_backend *b)
{
	char path[256];
	void *dl = NULL;

	snprintf(path, sizeof(path), "%s/%s.so", tmp, name);
	assert_int_equal(plugin_load(path, b, &dl), 0);
	assert_non_null(dl);
	return dl;
}

static void test_good_plugin(void **state)
{
	struct nbdd_backend b;
	void *dl = load_ok("good", &b);

	assert_string_equal(b.name, "good");
	assert_non_null(b.pread);
	assert_null(b.pwrite);
	dlclose(dl);
}

static void test_future_abi_refused(void **state)
{
	char want[160];

	snprintf(want, sizeof(want),
		 "was built for nbdd backend ABI %u; this nbdd supports up "
		 "to %u: rebuild it against this nbdd",
		 NBDD_BACKEND_ABI_VERSION + 1, NBDD_BACKEND_ABI_VERSION);
	expect_load_error("future", -EINVAL, want);
}

/* An ABI 1 plugin loads; what lies past its table (.aio_) is absent. */
static void test_abi1_plugin_loads(void **state)
{
	struct nbdd_backend b;
	void *dl = load_ok("abi1", &b);

	assert_string_equal(b.name, "old");
	assert_non_null(b.pread);
	assert_null(b.aio_pread);
	assert_false(backend_has_aio(&b));
	dlclose(dl);
}

static void test_missing_symbol(void **state)
{
	expect_load_error("nosym", -ENOEXEC, "has no nbdd_backend_v1()");
	expect_load_error("nulltable", -EINVAL, "the backend table is NULL");
	expect_load_error("nopread", -EINVAL, "required callbacks");
}

static void test_not_a_plugin(void **state)
{
	char path[256];
	FILE *f;

	expect_load_error("absent", -ENOENT, "No such file");
	snprintf(path, sizeof(path), "%s/text.so", tmp);
	f = fopen(path, "w");
	fputs("not an ELF file\n", f);
	fclose(f);
	expect_load_error("text", -ENOEXEC, "cannot be loaded");
}

static int o_ok(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	return 0;
}

static int s_ok(void *h, uint64_t *size)
{
	return 0;
}

static int r_ok(void *h, void *b, size_t c, uint64_t off, uint32_t f)
{
	return 0;
}

static int w_ok(void *h, const void *b, size_t c, uint64_t off, uint32_t f)
{
	return 0;
}

static int ar_ok(void *h, void *b, size_t c, uint64_t off, uint32_t f,
		 struct nbdd_request *req)
{
	return -EIO;
}

static int aw_ok(void *h, const void *b, size_t c, uint64_t off, uint32_t f,
		 struct nbdd_request *req)
{
	return -EIO;
}

static int z_ok(void *h, uint64_t size)
{
	return 0;
}

static void test_backend_copy_checks(void **state)
{
	const struct nbdd_backend good = {
	    NBDD_BACKEND_HEADER, .name = "ok",	.open = o_ok,
	    .get_size = s_ok,	 .pread = r_ok,
	};
	struct nbdd_backend in, out;

	assert_int_equal(backend_copy(&good, &out, "t"), 0);
	assert_string_equal(out.name, "ok");

	assert_int_equal(backend_copy(NULL, &out, "t"), -EINVAL);
	in = good;
	in.abi_version = 0;
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "NBDD_BACKEND_HEADER"));
	in = good;
	in.struct_size = 16;
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "struct_size 16"));
	in.struct_size = 0xdeadbeef;
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	in.struct_size = sizeof(in) - 4;
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	/* A shorter table: what lies past struct_size counts as absent. */
	in = good;
	in.pwrite = w_ok;
	in.resize = z_ok;
	in.struct_size = offsetof(struct nbdd_backend, pwrite);
	assert_int_equal(backend_copy(&in, &out, "t"), 0);
	assert_ptr_equal(out.pread, r_ok);
	assert_null(out.pwrite);
	assert_null(out.resize);
	in.struct_size = offsetof(struct nbdd_backend, pread);
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	in = good;
	in.name = "Bad Name";
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), ".name"));
	in.name = NULL;
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	in = good;
	in.thread_model = 7;
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "thread_model"));
	in = good;
	in.flags = 1u << 9;
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	/* .aio_ callbacks: concurrent, so parallel; each with its twin. */
	in = good;
	in.thread_model = NBDD_THREAD_PARALLEL;
	in.aio_pread = ar_ok;
	assert_int_equal(backend_copy(&in, &out, "t"), 0);
	assert_ptr_equal(out.aio_pread, ar_ok);
	in.thread_model = NBDD_THREAD_SERIALIZE;
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "NBDD_THREAD_PARALLEL"));
	in.thread_model = NBDD_THREAD_PARALLEL;
	in.flags = NBDD_BACKEND_INLINE;
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "NBDD_BACKEND_INLINE"));
	in.flags = 0;
	in.aio_pwrite = aw_ok;
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	assert_non_null(strstr(nbdd_last_error(), "synchronous twin"));
	in.pwrite = w_ok;
	assert_int_equal(backend_copy(&in, &out, "t"), 0);
	in = good;
	in.get_size = NULL;
	assert_int_equal(backend_copy(&in, &out, "t"), -EINVAL);
	/* A refused table leaves nothing callable behind. */
	assert_null(out.open);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pattern_through_spec),
	    cmocka_unit_test(test_installed_plugin_by_name),
	    cmocka_unit_test(test_good_plugin),
	    cmocka_unit_test(test_future_abi_refused),
	    cmocka_unit_test(test_abi1_plugin_loads),
	    cmocka_unit_test(test_missing_symbol),
	    cmocka_unit_test(test_not_a_plugin),
	    cmocka_unit_test(test_backend_copy_checks),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
