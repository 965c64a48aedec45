/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The subcommands. Each parses its own arguments, builds one request
 * (common/ encodes it exactly as the daemon will check it) and prints
 * the reply: text by default, the daemon's JSON with --json.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nbdd/backend.h>
#include <nbdd/nbdd.h>

#include "nbdctl.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Options every command takes. */
#define COMMON_OPTIONS                                       \
	{ "json", no_argument, NULL, 'j' },                  \
	{ "help", no_argument, NULL, 'h' }

static int command_help(const char *name)
{
	const struct command *c = command_find(name);

	printf("Usage: nbdctl [--control PATH] [--json] %s %s\n%s\n",
	       c->name, c->args, c->help);
	return 0;
}

/* Reset getopt for a subcommand's own argv (GNU: optind 0 reinitialises). */
static void getopt_reset(void)
{
	optind = 0;
	opterr = 1;
}

static int parse_uint(const char *cmd, const char *opt, const char *arg,
		      unsigned long max, uint32_t *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || v > max)
		return usage_error(cmd, "%s %s: expected a number from 0 to "
				   "%lu", opt, arg, max);
	*out = (uint32_t)v;
	return 0;
}

/* ---- attach ---- */

/*
 * The daemon does not run in our directory: a plugin given by a relative
 * path ("./mine.so:key=value") is made absolute here.
 */
static char *absolute_spec(const char *spec)
{
	const char *colon = strchr(spec, ':');
	size_t head = colon ? (size_t)(colon - spec) : strlen(spec);
	char cwd[PATH_MAX], *out;

	if (spec[0] == '/' || !memchr(spec, '/', head))
		return strdup(spec);
	if (!getcwd(cwd, sizeof(cwd)))
		return strdup(spec); /* the daemon will say what is wrong */
	if (strncmp(spec, "./", 2) == 0)
		spec += 2;
	if (asprintf(&out, "%s/%s", strcmp(cwd, "/") ? cwd : "", spec) < 0)
		return NULL;
	return out;
}

static int attach_option(struct ctl_request *r, int c, const char *arg,
			 struct global *g)
{
	uint64_t bs;

	switch (c) {
	case 'c':
		return parse_uint("attach", "--connections", arg,
				  CTL_MAX_CONNECTIONS, &r->connections);
	case 'r':
		r->readonly = true;
		return 0;
	case 'b':
		if (nbdd_parse_size(arg, &bs) < 0 || bs > (1u << 20))
			return usage_error("attach", "--block-size %s: expected "
					   "a size such as 512 or 4K", arg);
		r->block_size = (uint32_t)bs;
		return 0;
	case 't':
		return parse_uint("attach", "--timeout", arg, INT32_MAX,
				  &r->timeout);
	case 'd':
		return parse_uint("attach", "--dead-conn-timeout", arg,
				  INT32_MAX, &r->dead_conn_timeout);
	case 'n':
		if (!ctl_name_valid(arg))
			return usage_error("attach", "--name '%s': use 1 to %d "
					   "letters, digits, '.', '_', ':' or "
					   "'-', starting with a letter or "
					   "digit", arg, CTL_MAX_NAME);
		r->name = arg;
		return 0;
	case 'j':
		g->json = true;
		return 0;
	case 'h':
		command_help("attach");
		exit(0);
	}
	return EXIT_USAGE;
}

static int attach_args(struct ctl_request *r, int argc, char **argv)
{
	if (argc < 1)
		return usage_error("attach", "which backend? e.g. "
				   "'nbdctl attach memory:size=1G'");
	if (argc > 2)
		return usage_error("attach", "unexpected argument '%s'",
				   argv[2]);
	if (argc == 2 && ctl_parse_device(argv[1], &r->index) < 0)
		return usage_error("attach", "'%s' is not a device: expected "
				   "/dev/nbdN", argv[1]);
	if (!*argv[0])
		return usage_error("attach", "the spec is empty");
	if (strlen(argv[0]) > CTL_MAX_SPEC)
		return usage_error("attach", "the spec is longer than %d bytes",
				   CTL_MAX_SPEC);
	return 0;
}

int cmd_attach(struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connections", required_argument, NULL, 'c' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "readonly", no_argument, NULL, 'r' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "timeout", required_argument, NULL, 't' },
		{ "dead-conn-timeout", required_argument, NULL, 'd' },
		{ "name", required_argument, NULL, 'n' },
		COMMON_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_request r;
	json_object *reply;
	char *spec;
	int c, ret;

	ctl_request_init(&r, CTL_ATTACH);
	getopt_reset();
	while ((c = getopt_long(argc, argv, "c:rb:t:d:n:jh", opts, NULL)) != -1)
		if ((ret = attach_option(&r, c, optarg, g)) != 0)
			return ret;
	ret = attach_args(&r, argc - optind, argv + optind);
	if (ret)
		return ret;
	spec = absolute_spec(argv[optind]);
	if (!spec) {
		say_error("out of memory");
		return 1;
	}
	r.spec = spec;
	ret = call(g, &r, &reply);
	free(spec);
	if (ret)
		return ret;
	if (g->json)
		print_json(reply);
	else
		printf("%s\n", jstr(reply, "device", "?"));
	json_object_put(reply);
	return 0;
}

/* ---- detach, status: one mapping by device or name ---- */

static int set_target(const char *cmd, struct ctl_request *r, const char *arg)
{
	if (strncmp(arg, "/dev/", 5) == 0) {
		if (ctl_parse_device(arg, &r->index) < 0)
			return usage_error(cmd, "'%s' is not an nbd device "
					   "(/dev/nbdN)", arg);
		return 0;
	}
	if (!ctl_name_valid(arg))
		return usage_error(cmd, "'%s' is neither /dev/nbdN nor a "
				   "mapping name", arg);
	r->name = arg;
	return 0;
}

static int simple_options(const char *cmd, struct global *g, int argc,
			  char **argv, bool *all)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		COMMON_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	int c;

	getopt_reset();
	while ((c = getopt_long(argc, argv, all ? "ajh" : "jh", opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'a':
			if (!all)
				return usage_error(cmd, "--all is only for "
						   "detach");
			*all = true;
			break;
		case 'j':
			g->json = true;
			break;
		case 'h':
			command_help(cmd);
			exit(0);
		default:
			return EXIT_USAGE;
		}
	}
	return 0;
}

int cmd_detach(struct global *g, int argc, char **argv)
{
	struct ctl_request r;
	json_object *reply;
	int ret, n;

	ctl_request_init(&r, CTL_DETACH);
	ret = simple_options("detach", g, argc, argv, &r.all);
	if (ret)
		return ret;
	n = argc - optind;
	if (r.all && n > 0)
		return usage_error("detach", "--all takes no device");
	if (!r.all && n != 1)
		return usage_error("detach", n ? "one device at a time (or "
				   "--all)" : "which device? /dev/nbdN, a name, "
				   "or --all");
	if (!r.all && (ret = set_target("detach", &r, argv[optind])))
		return ret;
	ret = call(g, &r, &reply);
	if (ret)
		return ret;
	if (g->json)
		print_json(reply);
	json_object_put(reply);
	return 0;
}

static void print_mapping(json_object *m);
static void print_conn_stats(json_object *m);

static int cmd_status(struct global *g, int argc, char **argv)
{
	struct ctl_request r;
	json_object *reply;
	int ret;

	ctl_request_init(&r, CTL_STATUS);
	ret = simple_options("status", g, argc, argv, NULL);
	if (ret)
		return ret;
	if (argc - optind != 1)
		return usage_error("status", "which device? /dev/nbdN or a "
				   "name");
	ret = set_target("status", &r, argv[optind]);
	if (ret == 0)
		ret = call(g, &r, &reply);
	if (ret)
		return ret;
	if (g->json) {
		print_json(reply);
	} else {
		print_mapping(jget(reply, "mapping"));
		print_conn_stats(jget(reply, "mapping"));
	}
	json_object_put(reply);
	return 0;
}

/* ---- list ---- */

static void list_row(struct table *t, json_object *m)
{
	char size[32], conns[32];
	int64_t total = jint(m, "connections", 0), live = jint(m, "live", -1);
	const char *cells[7];

	human_size((uint64_t)jint(m, "size", 0), size, sizeof(size));
	if (live >= 0 && live != total)
		snprintf(conns, sizeof(conns), "%lld/%lld", (long long)live,
			 (long long)total);
	else
		snprintf(conns, sizeof(conns), "%lld", (long long)total);
	cells[0] = jstr(m, "device", "-");
	cells[1] = jstr(m, "name", "-");
	cells[2] = jstr(m, "spec", "?");
	cells[3] = jint(m, "size", 0) ? size : "-";
	cells[4] = conns;
	cells[5] = jbool(m, "readonly", false) ? "yes" : "no";
	cells[6] = jstr(m, "state", "?");
	table_add(t, cells);
}

static int cmd_list(struct global *g, int argc, char **argv)
{
	static const char *const head[] = { "DEVICE", "NAME", "BACKEND", "SIZE",
					    "CONNS", "RO", "STATE" };
	static const bool right[] = { false, false, false, true,
				      false, false, false };
	struct ctl_request r;
	json_object *reply, *a;
	struct table *t;
	size_t i;
	int ret;

	ctl_request_init(&r, CTL_LIST);
	ret = simple_options("list", g, argc, argv, NULL);
	if (ret)
		return ret;
	if (optind < argc)
		return usage_error("list", "unexpected argument '%s'",
				   argv[optind]);
	ret = call(g, &r, &reply);
	if (ret)
		return ret;
	a = jget(reply, "mappings");
	if (g->json) {
		print_json(reply);
	} else if (json_object_array_length(a) > 0) {
		t = table_new(ARRAY_SIZE(head), head, right);
		for (i = 0; i < json_object_array_length(a); i++)
			list_row(t, json_object_array_get_idx(a, i));
		table_print(t, stdout);
		table_free(t);
	}
	json_object_put(reply);
	return 0;
}

/* ---- status details ---- */

static void field(const char *label, const char *value)
{
	printf("  %-19s %s\n", label, value);
}

static void seconds_field(const char *label, int64_t s, const char *zero)
{
	char buf[64];

	if (s == 0)
		snprintf(buf, sizeof(buf), "%s", zero);
	else
		snprintf(buf, sizeof(buf), "%lld s", (long long)s);
	field(label, buf);
}

static void print_mapping(json_object *m)
{
	char buf[128], size[32];
	time_t at = (time_t)jint(m, "attached_at", 0);
	struct tm tm;

	printf("%s (%s)\n", jstr(m, "device", "-"), jstr(m, "name", "-"));
	field("spec:", jstr(m, "spec", "?"));
	field("backend:", jstr(m, "backend", "-"));
	field("state:", jstr(m, "state", "?"));
	human_size((uint64_t)jint(m, "size", 0), size, sizeof(size));
	snprintf(buf, sizeof(buf), "%s (%lld bytes)", size,
		 (long long)jint(m, "size", 0));
	field("size:", buf);
	field("read-only:", jbool(m, "readonly", false) ? "yes" : "no");
	snprintf(buf, sizeof(buf), "%lld", (long long)jint(m, "block_size", 0));
	field("block size:", buf);
	seconds_field("timeout:", jint(m, "timeout", 0), "kernel default");
	seconds_field("dead-conn timeout:", jint(m, "dead_conn_timeout", 0),
		      "off");
	snprintf(buf, sizeof(buf), "%lld (%lld live)",
		 (long long)jint(m, "connections", 0),
		 (long long)jint(m, "live", 0));
	field("connections:", buf);
	if (at && localtime_r(&at, &tm) &&
	    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm))
		field("attached:", buf);
	at = (time_t)jint(m, "recovered_at", 0);
	snprintf(buf, sizeof(buf), "%lld", (long long)jint(m, "recoveries", 0));
	if (at && localtime_r(&at, &tm))
		strftime(buf + strlen(buf), sizeof(buf) - strlen(buf),
			 " (last %Y-%m-%d %H:%M:%S)", &tm);
	field("recoveries:", buf);
	if (jint(m, "pid", 0) > 0) {
		snprintf(buf, sizeof(buf), "%lld", (long long)jint(m, "pid", 0));
		field("server pid:", buf);
	}
	snprintf(buf, sizeof(buf), "%lld",
		 (long long)jint(m, "link_dead_events", 0));
	field("link-dead events:", buf);
	if (jstr(m, "error", NULL))
		field("error:", jstr(m, "error", NULL));
}

static void op_rows(struct table *t, const char *conn, json_object *ops,
		    bool all)
{
	json_object_object_foreach(ops, op, s)
	{
		char req[32], bytes[32], errs[32];
		const char *cells[5] = { conn, op, req, bytes, errs };
		int64_t n = jint(s, "requests", 0), e = jint(s, "errors", 0);

		if (!all && n == 0 && e == 0)
			continue;
		snprintf(req, sizeof(req), "%lld", (long long)n);
		human_size((uint64_t)jint(s, "bytes", 0), bytes, sizeof(bytes));
		snprintf(errs, sizeof(errs), "%lld", (long long)e);
		table_add(t, cells);
	}
}

/* Connection states, then requests/bytes/errors per op: busy ops of
 * each connection, every op in the total. */
static void print_conn_stats(json_object *m)
{
	static const char *const head1[] = { "CONN", "STATE", "IN-FLIGHT" };
	static const char *const head2[] = { "CONN", "OP", "REQUESTS", "BYTES",
					     "ERRORS" };
	static const bool right2[] = { false, false, true, true, true };
	json_object *a = jget(m, "connection_stats");
	struct table *t1, *t2;
	size_t i;

	if (!a)
		return;
	t1 = table_new(ARRAY_SIZE(head1), head1, NULL);
	t2 = table_new(ARRAY_SIZE(head2), head2, right2);
	for (i = 0; i < json_object_array_length(a); i++) {
		json_object *c = json_object_array_get_idx(a, i);
		char id[16], fl[32];
		const char *cells[3] = { id, "", fl };

		snprintf(id, sizeof(id), "%lld",
			 (long long)jint(c, "connection", 0));
		cells[1] = jbool(c, "connected", false) ? "connected" : "closed";
		snprintf(fl, sizeof(fl), "%lld",
			 (long long)jint(c, "in_flight", 0));
		table_add(t1, cells);
		op_rows(t2, id, jget(c, "ops"), false);
	}
	op_rows(t2, "total", jget(jget(m, "totals"), "ops"), true);
	putchar('\n');
	table_print(t1, stdout);
	putchar('\n');
	table_print(t2, stdout);
	table_free(t1);
	table_free(t2);
}

/* ---- resize ---- */

static int cmd_resize(struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "allow-shrink", no_argument, NULL, 's' },
		COMMON_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_request r;
	json_object *reply;
	char human[32];
	int c, ret;

	ctl_request_init(&r, CTL_RESIZE);
	getopt_reset();
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			r.allow_shrink = true;
			break;
		case 'j':
			g->json = true;
			break;
		case 'h':
			command_help("resize");
			exit(0);
		default:
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 2)
		return usage_error("resize", "give the device (or name) and "
				   "its new size, e.g. 'nbdctl resize "
				   "/dev/nbd0 20G'");
	ret = set_target("resize", &r, argv[optind]);
	if (ret)
		return ret;
	ret = nbdd_parse_size(argv[optind + 1], &r.size);
	if (ret == -ERANGE || (ret == 0 && r.size > INT64_MAX))
		return usage_error("resize", "%s is too big: a device has "
				   "at most 2^63-1 bytes", argv[optind + 1]);
	if (ret < 0 || r.size == 0)
		return usage_error("resize", "'%s' is not a size: use bytes "
				   "or a number with K, M, G, T, P or E",
				   argv[optind + 1]);
	ret = call(g, &r, &reply);
	if (ret)
		return ret;
	if (g->json) {
		print_json(reply);
	} else {
		human_size((uint64_t)jint(reply, "size", 0), human,
			   sizeof(human));
		printf("%s: %s\n", argv[optind], human);
	}
	json_object_put(reply);
	return 0;
}

/* ---- exports, version, ping ---- */

static void print_exports(json_object *reply)
{
	static const char *const head[] = { "NAME", "BACKEND", "SIZE", "RO" };
	static const bool right[] = { false, false, true, false };
	json_object *l = jget(reply, "listeners"), *a = jget(reply, "exports");
	struct table *t;
	size_t i;

	if (json_object_array_length(l) == 0) {
		printf("no network exports (nbdd serves them with --listen "
		       "and --export)\n");
		return;
	}
	for (i = 0; i < json_object_array_length(l); i++)
		printf("listening on %s\n",
		       json_object_get_string(json_object_array_get_idx(l, i)));
	t = table_new(ARRAY_SIZE(head), head, right);
	for (i = 0; i < json_object_array_length(a); i++) {
		json_object *x = json_object_array_get_idx(a, i);
		char size[32];
		const char *cells[4] = { jstr(x, "name", "?"),
					 jstr(x, "spec", "?"), size,
					 jbool(x, "readonly", false) ? "yes"
								     : "no" };

		human_size((uint64_t)jint(x, "size", 0), size, sizeof(size));
		table_add(t, cells);
	}
	putchar('\n');
	table_print(t, stdout);
	table_free(t);
}

static int cmd_simple(struct global *g, int argc, char **argv,
		      enum ctl_cmd cmd, json_object **reply)
{
	struct ctl_request r;
	int ret;

	ctl_request_init(&r, cmd);
	ret = simple_options(ctl_cmd_name(cmd), g, argc, argv, NULL);
	if (ret)
		return ret;
	if (optind < argc)
		return usage_error(ctl_cmd_name(cmd), "unexpected argument '%s'",
				   argv[optind]);
	return call(g, &r, reply);
}

static int cmd_exports(struct global *g, int argc, char **argv)
{
	json_object *reply;
	int ret = cmd_simple(g, argc, argv, CTL_EXPORTS, &reply);

	if (ret)
		return ret;
	if (g->json)
		print_json(reply);
	else
		print_exports(reply);
	json_object_put(reply);
	return 0;
}

static int cmd_version(struct global *g, int argc, char **argv)
{
	json_object *reply;
	int ret;

	if (!g->json)
		printf("nbdctl %s\n", NBDD_VERSION_STRING);
	ret = cmd_simple(g, argc, argv, CTL_VERSION, &reply);
	if (ret)
		return ret;
	if (g->json)
		print_json(reply);
	else
		printf("nbdd %s (control protocol %lld)\n",
		       jstr(reply, "version", "?"),
		       (long long)jint(reply, "protocol", 0));
	json_object_put(reply);
	return 0;
}

static int cmd_ping(struct global *g, int argc, char **argv)
{
	json_object *reply;
	int ret = cmd_simple(g, argc, argv, CTL_PING, &reply);

	if (ret)
		return ret;
	if (g->json)
		print_json(reply);
	json_object_put(reply);
	return 0;
}

const struct command commands[] = {
	{ "attach",
	  "SPEC [/dev/nbdN] [--name NAME] [--connections N] [--read-only]\n"
	  "       [--block-size N] [--timeout S] [--dead-conn-timeout S]\n"
	  "       [--persistent [--requires PATH]]",
	  "Attach a backend to a kernel device and print the device.", cmd_attach_p },
	{ "detach", "/dev/nbdN|NAME|--all|--persistent NAME",
	  "Flush and disconnect a device, or all of them.", cmd_detach_p },
	{ "attach-configured", "",
	  "Attach the persistent mappings not attached yet.",
	  cmd_attach_configured },
	{ "list", "", "The devices nbdd serves.", cmd_list },
	{ "status", "/dev/nbdN|NAME",
	  "One device in detail, with per-connection statistics.", cmd_status },
	{ "resize", "/dev/nbdN|NAME SIZE [--allow-shrink]",
	  "Grow (or shrink) a backend and its device together.", cmd_resize },
	{ "exports", "", "The network exports and listeners.", cmd_exports },
	{ "version", "", "nbdctl's and the daemon's versions.", cmd_version },
	{ "ping", "", "Exit 0 when the daemon answers.", cmd_ping },
	{ NULL, NULL, NULL, NULL },
};

const struct command *command_find(const char *name)
{
	const struct command *c;

	for (c = commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}
