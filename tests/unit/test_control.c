/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/: the control protocol nbdd and nbdctl share. Framing, request
 * validation (what a hostile local client may send), replies, and who
 * may change mappings.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../common/control.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- framing ---- */

static void feed(int fd, const char *s)
{
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void expect_line(struct ctl_linebuf *lb, const char *want)
{
	char *line;
	size_t len;

	assert_int_equal(ctl_linebuf_next(lb, &line, &len), 1);
	assert_int_equal(len, strlen(want));
	assert_string_equal(line, want);
}

static void test_linebuf_split(void **state)
{
	struct ctl_linebuf lb;
	char *line;
	size_t len;
	int p[2];

	assert_int_equal(pipe(p), 0);
	ctl_linebuf_init(&lb, 64);
	assert_false(ctl_linebuf_partial(&lb));
	feed(p[1], "{\"cmd\":");
	assert_int_equal(ctl_linebuf_fill(&lb, p[0]), 7);
	assert_int_equal(ctl_linebuf_next(&lb, &line, &len), 0);
	assert_true(ctl_linebuf_partial(&lb));
	/* the rest of one line, a CRLF line and the start of a third */
	feed(p[1], "\"list\"}\nab\r\ncd");
	assert_true(ctl_linebuf_fill(&lb, p[0]) > 0);
	/* complete lines waiting: nothing is "partly received" yet */
	assert_false(ctl_linebuf_partial(&lb));
	expect_line(&lb, "{\"cmd\":\"list\"}");
	expect_line(&lb, "ab");
	assert_int_equal(ctl_linebuf_next(&lb, &line, &len), 0);
	assert_true(ctl_linebuf_partial(&lb));
	feed(p[1], "\n\n");
	assert_true(ctl_linebuf_fill(&lb, p[0]) > 0);
	expect_line(&lb, "cd");
	expect_line(&lb, "");
	assert_false(ctl_linebuf_partial(&lb));
	close(p[1]);
	assert_int_equal(ctl_linebuf_fill(&lb, p[0]), 0); /* EOF */
	ctl_linebuf_free(&lb);
	close(p[0]);
}

static void test_linebuf_cap(void **state)
{
	char big[200];
	struct ctl_linebuf lb;
	char *line;
	size_t len;
	int p[2];

	assert_int_equal(pipe(p), 0);
	ctl_linebuf_init(&lb, 16);
	/* exactly the cap, then one byte over */
	feed(p[1], "0123456789abcdef\n");
	assert_true(ctl_linebuf_fill(&lb, p[0]) > 0);
	expect_line(&lb, "0123456789abcdef");
	feed(p[1], "0123456789abcdefX");
	assert_true(ctl_linebuf_fill(&lb, p[0]) > 0);
	assert_int_equal(ctl_linebuf_next(&lb, &line, &len), -EMSGSIZE);
	ctl_linebuf_free(&lb);

	/* a flood without '\n' fills the cap and no more */
	ctl_linebuf_init(&lb, 16);
	memset(big, 'x', sizeof(big));
	assert_int_equal(write(p[1], big, sizeof(big)), (ssize_t)sizeof(big));
	while (ctl_linebuf_room(&lb) && ctl_linebuf_fill(&lb, p[0]) > 0)
		;
	assert_true(lb.len <= 17);
	assert_int_equal(ctl_linebuf_next(&lb, &line, &len), -EMSGSIZE);
	assert_int_equal(ctl_linebuf_fill(&lb, p[0]), -ENOBUFS);
	ctl_linebuf_free(&lb);
	close(p[0]);
	close(p[1]);
}

static void test_read_line_deadline(void **state)
{
	struct ctl_linebuf lb;
	char *line;
	size_t len;
	uint64_t t0;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ctl_linebuf_init(&lb, 1024);
	assert_int_equal(ctl_write_all(sv[1], "half", 4, 0), 0);
	t0 = ctl_now_ms();
	assert_int_equal(ctl_read_line(sv[0], &lb, &line, &len, t0 + 150),
			 -ETIMEDOUT);
	assert_true(ctl_now_ms() - t0 >= 150);
	assert_int_equal(ctl_write_all(sv[1], " line\n", 6, 0), 0);
	assert_int_equal(ctl_read_line(sv[0], &lb, &line, &len, 0), 1);
	assert_string_equal(line, "half line");
	close(sv[1]);
	assert_int_equal(ctl_read_line(sv[0], &lb, &line, &len, 0),
			 -ECONNRESET);
	ctl_linebuf_free(&lb);
	close(sv[0]);
}

/* ---- requests ---- */

static int parse(const char *s, struct ctl_request *r, char *err)
{
	return ctl_request_parse(s, strlen(s), r, err, 256);
}

static void test_parse_attach(void **state)
{
	struct ctl_request r;
	char err[256];

	assert_int_equal(parse("{\"cmd\":\"attach\",\"spec\":\"memory:size=1G\","
			       "\"device\":\"/dev/nbd7\",\"name\":\"scratch\","
			       "\"connections\":4,\"readonly\":true,"
			       "\"block_size\":4096,\"timeout\":30,"
			       "\"dead_conn_timeout\":60}",
			       &r, err),
			 0);
	assert_int_equal(r.cmd, CTL_ATTACH);
	assert_string_equal(r.spec, "memory:size=1G");
	assert_int_equal(r.index, 7);
	assert_string_equal(r.name, "scratch");
	assert_int_equal(r.connections, 4);
	assert_true(r.readonly);
	assert_int_equal(r.block_size, 4096);
	assert_int_equal(r.timeout, 30);
	assert_int_equal(r.dead_conn_timeout, 60);
	ctl_request_clear(&r);
	assert_null(r.root);

	/* optional fields absent or null: defaults */
	assert_int_equal(parse("{\"cmd\":\"attach\",\"spec\":\"x\","
			       "\"device\":null,\"name\":null}",
			       &r, err),
			 0);
	assert_int_equal(r.index, -1);
	assert_null(r.name);
	assert_int_equal(r.connections, 0);
	assert_false(r.readonly);
	ctl_request_clear(&r);
	assert_true(ctl_cmd_mutates(CTL_ATTACH));
}

static void test_parse_targets(void **state)
{
	struct ctl_request r;
	char err[256];

	assert_int_equal(parse("{\"cmd\":\"detach\",\"all\":true}", &r, err), 0);
	assert_true(r.all);
	ctl_request_clear(&r);
	assert_int_equal(parse("{\"cmd\":\"detach\",\"name\":\"nbd3\"}", &r, err),
			 0);
	assert_string_equal(r.name, "nbd3");
	ctl_request_clear(&r);
	assert_int_equal(parse("{\"cmd\":\"status\",\"device\":\"/dev/nbd0\"}",
			       &r, err),
			 0);
	assert_int_equal(r.index, 0);
	ctl_request_clear(&r);
	assert_int_equal(parse("{\"cmd\":\"list\"}", &r, err), 0);
	assert_int_equal(r.cmd, CTL_LIST);
	assert_false(ctl_cmd_mutates(CTL_LIST));
	ctl_request_clear(&r);
	assert_int_equal(parse("{\"cmd\":\"resize\",\"device\":\"/dev/nbd2\","
			       "\"size\":1073741824,\"allow_shrink\":true}",
			       &r, err),
			 0);
	assert_int_equal(r.index, 2);
	assert_int_equal(r.size, 1073741824);
	assert_true(r.allow_shrink);
	assert_true(ctl_cmd_mutates(CTL_RESIZE));
	ctl_request_clear(&r);
}

/* Every one of these must be refused with its errno and a message. */
static void test_parse_refused(void **state)
{
	static const struct {
		const char *line;
		int err;
		const char *msg; /* part of the message */
	} cases[] = {
		{ "", -EBADMSG, "not valid JSON" },
		{ "garbage", -EBADMSG, "not valid JSON" },
		{ "{\"cmd\":\"list\"", -EBADMSG, "incomplete" },
		{ "{\"cmd\":\"list\"} {}", -EBADMSG, "JSON" },
		{ "{'cmd':'list'}", -EBADMSG, "JSON" },
		{ "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
		  -EBADMSG, "too deep" },
		{ "[1]", -EINVAL, "JSON object" },
		{ "\"list\"", -EINVAL, "JSON object" },
		{ "{}", -EINVAL, "no 'cmd'" },
		{ "{\"cmd\":7}", -EINVAL, "'cmd' must be a string" },
		{ "{\"cmd\":\"format\"}", -EOPNOTSUPP, "unknown command" },
		{ "{\"cmd\":\"list\",\"all\":true}", -EINVAL, "unknown field" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"readonyl\":true}", -EINVAL,
		  "unknown field 'readonyl'" },
		{ "{\"cmd\":\"attach\"}", -EINVAL, "'spec' is missing" },
		{ "{\"cmd\":\"attach\",\"spec\":\"\"}", -EINVAL, "empty" },
		{ "{\"cmd\":\"attach\",\"spec\":null}", -EINVAL, "string" },
		{ "{\"cmd\":\"attach\",\"spec\":5}", -EINVAL, "string" },
		{ "{\"cmd\":\"attach\",\"spec\":\"a\\u0000b\"}", -EINVAL, "control" },
		{ "{\"cmd\":\"attach\",\"spec\":\"a\\nb\"}", -EINVAL, "control" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"connections\":\"4\"}",
		  -EINVAL, "integer" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"connections\":1.0}",
		  -EINVAL, "integer" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"connections\":true}",
		  -EINVAL, "integer" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"connections\":-1}",
		  -EINVAL, "from 0" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"connections\":1025}",
		  -EINVAL, "from 0" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"timeout\":"
		  "99999999999999999999999999}",
		  -EINVAL, "timeout" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"timeout\":"
		  "18446744073709551615}",
		  -EINVAL, "timeout" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"readonly\":1}", -EINVAL,
		  "true or false" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"device\":\"/dev/sda\"}",
		  -EINVAL, "/dev/nbdN" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"device\":\"/dev/nbd-1\"}",
		  -EINVAL, "/dev/nbdN" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"device\":\"/dev/nbd99999999\"}",
		  -EINVAL, "/dev/nbdN" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"device\":0}", -EINVAL,
		  "string" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"name\":\"a b\"}", -EINVAL,
		  "name 'a b'" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"name\":\"-x\"}", -EINVAL,
		  "name" },
		{ "{\"cmd\":\"attach\",\"spec\":\"x\",\"name\":\"../x\"}", -EINVAL,
		  "name" },
		{ "{\"cmd\":\"detach\"}", -EINVAL, "exactly one" },
		{ "{\"cmd\":\"resize\",\"name\":\"a\"}", -EINVAL,
		  "'size' is missing" },
		{ "{\"cmd\":\"resize\",\"size\":4096}", -EINVAL, "exactly one" },
		{ "{\"cmd\":\"resize\",\"name\":\"a\",\"size\":0}", -EINVAL,
		  "from 1" },
		{ "{\"cmd\":\"resize\",\"name\":\"a\",\"size\":-4096}",
		  -EINVAL, "from 1" },
		{ "{\"cmd\":\"resize\",\"name\":\"a\",\"size\":"
		  "18446744073709551615}",
		  -EINVAL, "from 1" },
		{ "{\"cmd\":\"resize\",\"name\":\"a\",\"size\":"
		  "9223372036854775808}",
		  -EINVAL, "from 1" },
		{ "{\"cmd\":\"resize\",\"name\":\"a\",\"size\":\"1G\"}",
		  -EINVAL, "integer" },
		{ "{\"cmd\":\"resize\",\"all\":true,\"size\":4096}", -EINVAL,
		  "unknown field 'all'" },
		{ "{\"cmd\":\"detach\",\"all\":false}", -EINVAL, "exactly one" },
		{ "{\"cmd\":\"detach\",\"all\":true,\"device\":\"/dev/nbd0\"}",
		  -EINVAL, "exactly one" },
		{ "{\"cmd\":\"status\",\"name\":\"a\",\"device\":\"/dev/nbd0\"}",
		  -EINVAL, "exactly one" },
		{ "{\"cmd\":\"status\",\"all\":true}", -EINVAL, "unknown field" },
	};
	struct ctl_request r;
	char err[256];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int ret;

		err[0] = '\0';
		ret = parse(cases[i].line, &r, err);
		if (ret != cases[i].err || !strstr(err, cases[i].msg))
			fail_msg("'%s': got %d '%s', want %d '...%s...'",
				 cases[i].line, ret, err, cases[i].err,
				 cases[i].msg);
		assert_null(r.root);
		assert_null(strchr(err, '\n'));
	}
}

static void test_parse_huge(void **state)
{
	size_t n = CTL_MAX_LINE + 100, i;
	char *line = malloc(n + 1), err[256];
	struct ctl_request r;
	int len;

	assert_non_null(line);
	/* longer than a line may be */
	memset(line, ' ', n);
	line[n] = '\0';
	assert_int_equal(ctl_request_parse(line, n, &r, err, sizeof(err)),
			 -EMSGSIZE);
	/* a spec over CTL_MAX_SPEC inside a line that fits */
	len = snprintf(line, n, "{\"cmd\":\"attach\",\"spec\":\"");
	for (i = 0; i < CTL_MAX_SPEC + 1; i++)
		line[len++] = 'a';
	strcpy(line + len, "\"}");
	assert_int_equal(parse(line, &r, err), -EINVAL);
	assert_non_null(strstr(err, "longer than"));
	/* a tiny error buffer is still terminated */
	assert_int_equal(ctl_request_parse("x", 1, &r, err, 8), -EBADMSG);
	assert_int_equal(strlen(err), 7);
	free(line);
}

static void same(const struct ctl_request *a, const struct ctl_request *b)
{
	assert_int_equal(a->cmd, b->cmd);
	assert_int_equal(a->index, b->index);
	assert_int_equal(a->all, b->all);
	assert_int_equal(a->connections, b->connections);
	assert_int_equal(a->readonly, b->readonly);
	assert_int_equal(a->block_size, b->block_size);
	assert_int_equal(a->timeout, b->timeout);
	assert_int_equal(a->dead_conn_timeout, b->dead_conn_timeout);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->allow_shrink, b->allow_shrink);
	if (a->spec)
		assert_string_equal(a->spec, b->spec);
	else
		assert_null(b->spec);
	if (a->name)
		assert_string_equal(a->name, b->name);
	else
		assert_null(b->name);
}

/* What nbdctl encodes, the daemon parses back unchanged. */
static void test_encode_roundtrip(void **state)
{
	struct ctl_request in[8], out;
	char err[256], *line;
	size_t len, i;

	ctl_request_init(&in[0], CTL_ATTACH);
	in[0].spec = "file:path=/srv/a \"b\".img";
	in[0].index = 12;
	in[0].name = "data.1";
	in[0].connections = 3;
	in[0].readonly = true;
	in[0].block_size = 512;
	in[0].timeout = 7;
	in[0].dead_conn_timeout = 9;
	ctl_request_init(&in[1], CTL_ATTACH);
	in[1].spec = "memory:size=1G";
	ctl_request_init(&in[2], CTL_DETACH);
	in[2].all = true;
	ctl_request_init(&in[3], CTL_DETACH);
	in[3].name = "x";
	ctl_request_init(&in[4], CTL_STATUS);
	in[4].index = 0;
	ctl_request_init(&in[5], CTL_VERSION);
	ctl_request_init(&in[6], CTL_RESIZE);
	in[6].name = "vm";
	in[6].size = (1ull << 62) + 4096;
	in[6].allow_shrink = true;
	ctl_request_init(&in[7], CTL_RESIZE);
	in[7].index = 3;
	in[7].size = 512;
	for (i = 0; i < ARRAY_SIZE(in); i++) {
		json_object *o = ctl_request_encode(&in[i]);

		assert_non_null(o);
		line = ctl_encode_line(o, &len);
		json_object_put(o);
		assert_non_null(line);
		assert_int_equal(line[len - 1], '\n');
		assert_null(memchr(line, '\n', len - 1));
		if (ctl_request_parse(line, len - 1, &out, err, sizeof(err)))
			fail_msg("%s: %s", line, err);
		same(&in[i], &out);
		ctl_request_clear(&out);
		free(line);
	}
}

static void test_devices_and_names(void **state)
{
	int idx = -1;

	assert_int_equal(ctl_parse_device("/dev/nbd0", &idx), 0);
	assert_int_equal(idx, 0);
	assert_int_equal(ctl_parse_device("/dev/nbd15", &idx), 0);
	assert_int_equal(idx, 15);
	assert_int_equal(ctl_parse_device("/dev/nbd", &idx), -EINVAL);
	assert_int_equal(ctl_parse_device("/dev/nbd00", &idx), -EINVAL);
	assert_int_equal(ctl_parse_device("/dev/nbd1p1", &idx), -EINVAL);
	assert_int_equal(ctl_parse_device("nbd1", &idx), -EINVAL);
	assert_int_equal(ctl_parse_device(NULL, &idx), -EINVAL);
	assert_int_equal(ctl_parse_device("/dev/nbd18446744073709551617",
					  &idx),
			 -EINVAL);
	assert_true(ctl_name_valid("a"));
	assert_true(ctl_name_valid("vm-42.disk_0:boot"));
	assert_false(ctl_name_valid(""));
	assert_false(ctl_name_valid(".hidden"));
	assert_false(ctl_name_valid("a/b"));
	assert_false(ctl_name_valid("a b"));
	assert_false(ctl_name_valid("\xc3\xa9t\xc3\xa9"));
	assert_true(ctl_name_valid(
		"0123456789012345678901234567890123456789012345678901234567890123"));
	assert_false(ctl_name_valid(
		"01234567890123456789012345678901234567890123456789012345678901234"));
	assert_true(ctl_name_is_default("nbd3", &idx));
	assert_int_equal(idx, 3);
	assert_false(ctl_name_is_default("nbd", &idx));
	assert_false(ctl_name_is_default("nbd3x", &idx));
	assert_false(ctl_name_is_default("nbd03", &idx));
	assert_int_equal(ctl_cmd_from_name("detach"), CTL_DETACH);
	assert_int_equal(ctl_cmd_from_name("nope"), CTL__COUNT);
	assert_int_equal(ctl_cmd_from_name(NULL), CTL__COUNT);
}

/* ---- replies ---- */

static void test_replies(void **state)
{
	json_object *o;
	const char *msg;
	size_t len;
	char *line;

	o = ctl_reply_ok();
	assert_int_equal(ctl_reply_status(o, &msg), 0);
	json_object_put(o);

	/* one line whatever a backend put in its message */
	o = ctl_reply_error(-ENOENT, "no such thing:\n%s", "second\tline");
	assert_int_equal(ctl_reply_status(o, &msg), -ENOENT);
	assert_string_equal(msg, "no such thing: second line");
	line = ctl_encode_line(o, &len);
	assert_null(memchr(line, '\n', len - 1));
	free(line);
	json_object_put(o);

	o = ctl_reply_error(0, "x");
	assert_int_equal(ctl_reply_status(o, &msg), -EIO);
	json_object_put(o);

	o = json_tokener_parse("{\"ok\":false}");
	assert_int_equal(ctl_reply_status(o, &msg), -EPROTO);
	assert_non_null(msg);
	json_object_put(o);
	o = json_tokener_parse("{\"ok\":false,\"error\":\"e\",\"errno\":99999}");
	assert_int_equal(ctl_reply_status(o, &msg), -EPROTO);
	assert_string_equal(msg, "e");
	json_object_put(o);
	o = json_tokener_parse("{\"ok\":\"yes\"}");
	assert_int_equal(ctl_reply_status(o, &msg), -EPROTO);
	json_object_put(o);
	o = json_tokener_parse("[true]");
	assert_int_equal(ctl_reply_status(o, &msg), -EPROTO);
	json_object_put(o);
	assert_int_equal(ctl_reply_status(NULL, &msg), -EPROTO);
}

/* ---- permissions ---- */

static void test_permissions(void **state)
{
	struct ctl_policy none = { .owner = 0 };
	struct ctl_policy grp = { .owner = 0, .has_group = true, .group = 500,
				  .group_name = "nbdd" };
	struct ctl_peer root = { .uid = 0, .gid = 0 };
	struct ctl_peer user = { .uid = 1000, .gid = 1000 };
	struct ctl_peer member = { .uid = 1001, .gid = 1001, .ngroups = 2,
				   .groups = { 27, 500 } };
	struct ctl_peer primary = { .uid = 1002, .gid = 500 };
	char why[256];
	int c;

	for (c = 0; c < CTL__COUNT; c++) {
		bool m = ctl_cmd_mutates((enum ctl_cmd)c);

		/* reading is open to anyone who can connect */
		assert_true(ctl_permitted(&none, &root, c, why, sizeof(why)));
		assert_int_equal(ctl_permitted(&none, &user, c, why,
					       sizeof(why)),
				 !m);
		assert_int_equal(ctl_permitted(&grp, &user, c, why,
					       sizeof(why)),
				 !m);
		assert_true(ctl_permitted(&grp, &member, c, why, sizeof(why)));
		assert_true(ctl_permitted(&grp, &primary, c, why, sizeof(why)));
		/* a group the daemon was not given counts for nothing */
		assert_int_equal(ctl_permitted(&none, &member, c, why,
					       sizeof(why)),
				 !m);
	}
	assert_false(ctl_permitted(&grp, &user, CTL_ATTACH, why, sizeof(why)));
	assert_non_null(strstr(why, "not permitted: attach"));
	assert_non_null(strstr(why, "'nbdd'"));
	assert_false(ctl_permitted(&none, &user, CTL_DETACH, why, sizeof(why)));
	assert_non_null(strstr(why, "not permitted: detach needs root"));

	/* the daemon's own (unprivileged) user may do what it can */
	none.owner = 1000;
	assert_true(ctl_permitted(&none, &user, CTL_ATTACH, why, sizeof(why)));
}

static void test_peer_credentials(void **state)
{
	struct ctl_peer p;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(ctl_peer_get(sv[0], &p), 0);
	assert_int_equal(p.uid, getuid());
	assert_int_equal(p.gid, getgid());
	assert_int_equal(p.pid, getpid());
	assert_true(ctl_peer_in_group(&p, getgid()));
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(ctl_peer_get(-1, &p), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linebuf_split),
		cmocka_unit_test(test_linebuf_cap),
		cmocka_unit_test(test_read_line_deadline),
		cmocka_unit_test(test_parse_attach),
		cmocka_unit_test(test_parse_targets),
		cmocka_unit_test(test_parse_refused),
		cmocka_unit_test(test_parse_huge),
		cmocka_unit_test(test_encode_roundtrip),
		cmocka_unit_test(test_devices_and_names),
		cmocka_unit_test(test_replies),
		cmocka_unit_test(test_permissions),
		cmocka_unit_test(test_peer_credentials),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
