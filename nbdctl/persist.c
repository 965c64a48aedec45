/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Persistent mappings: one file per mapping, MAPPINGS_DIR/NAME.conf
 * (/etc/nbdd/mappings.d, or $NBDD_MAPPINGS_DIR), attached again at every
 * boot by `nbdctl attach-configured` (nbdd.service runs it once the
 * daemon is ready, udev whenever a block device appears).
 *
 *   attach --persistent --name NAME [--requires PATH] ...  attach, then
 *          write NAME.conf from what the daemon reports
 *   detach --persistent NAME   detach (if attached), remove NAME.conf
 *   attach-configured          attach every NAME.conf not attached yet
 *                              whose requires= path exists
 *
 * The file is written by nbdctl, not the daemon: the daemon runs
 * sandboxed with /etc read-only, and a person may edit the files.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdctl.h"

#define CONF_SUFFIX ".conf"

static const char *mappings_dir(void)
{
	const char *d = getenv("NBDD_MAPPINGS_DIR");

	return d && *d ? d : NBDD_SYSCONFDIR "/nbdd/mappings.d";
}

/* ---- argv: the options only nbdctl knows, taken out ---- */

struct persist_args {
	bool persistent;
	const char *requires;
	const char *name;
	bool device_given;
};

/* Remove --persistent and --requires PATH from argv; note --name. */
static int strip_args(const char *cmd, int *argc, char **argv,
		      struct persist_args *p)
{
	int i, o = 0;

	for (i = 0; i < *argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--") == 0) {
			while (i < *argc)
				argv[o++] = argv[i++];
			break;
		}
		if (strcmp(a, "--persistent") == 0) {
			p->persistent = true;
			continue;
		}
		if (strcmp(a, "--requires") == 0 ||
		    strncmp(a, "--requires=", 11) == 0) {
			if (a[10] == '=')
				p->requires = a + 11;
			else if (i + 1 < *argc)
				p->requires = argv[++i];
			if (!p->requires || p->requires[0] != '/')
				return usage_error(cmd, "--requires: expected "
						   "an absolute path");
			continue;
		}
		if (strcmp(a, "--name") == 0 && i + 1 < *argc)
			p->name = argv[i + 1];
		else if (strncmp(a, "--name=", 7) == 0)
			p->name = a + 7;
		else if (strncmp(a, "/dev/", 5) == 0)
			p->device_given = true;
		argv[o++] = argv[i];
	}
	*argc = o;
	argv[o] = NULL;
	if (p->requires && !p->persistent)
		return usage_error(cmd, "--requires is for --persistent");
	return 0;
}

/* ---- the files ---- */

static int conf_path(char *buf, size_t len, const char *name)
{
	if ((size_t)snprintf(buf, len, "%s/%s%s", mappings_dir(), name,
			     CONF_SUFFIX) >= len) {
		say_error("%s: path too long", mappings_dir());
		return -1;
	}
	return 0;
}

/* NAME.conf from the daemon's view of the mapping, atomically. */
static int conf_write(json_object *m, const struct persist_args *p)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	FILE *f;
	int r;

	if (conf_path(path, sizeof(path), p->name) < 0)
		return 1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (mkdir(mappings_dir(), 0755) < 0 && errno != EEXIST) {
		say_error("%s: %s", mappings_dir(), strerror(errno));
		return 1;
	}
	f = fopen(tmp, "we");
	if (!f) {
		say_error("%s: %s", tmp, strerror(errno));
		return 1;
	}
	fprintf(f, "# nbdd persistent mapping (nbdctl attach --persistent); "
		   "see nbdctl(8)\n");
	fprintf(f, "spec = %s\n", jstr(m, "spec", ""));
	if (p->device_given)
		fprintf(f, "device = %s\n", jstr(m, "device", ""));
	fprintf(f, "readonly = %s\n", jbool(m, "readonly", false) ? "yes" : "no");
	fprintf(f, "connections = %lld\n", (long long)jint(m, "connections", 0));
	fprintf(f, "block_size = %lld\n", (long long)jint(m, "block_size", 0));
	fprintf(f, "timeout = %lld\n", (long long)jint(m, "timeout", 0));
	fprintf(f, "dead_conn_timeout = %lld\n",
		(long long)jint(m, "dead_conn_timeout", 0));
	if (p->requires)
		fprintf(f, "requires = %s\n", p->requires);
	r = fflush(f) || fsync(fileno(f)) ? -errno : 0;
	if (fclose(f) && !r)
		r = -errno;
	if (!r && rename(tmp, path) < 0)
		r = -errno;
	if (r) {
		unlink(tmp);
		say_error("%s: %s", path, strerror(-r));
		return 1;
	}
	return 0;
}

/* The daemon's mapping called @name, or NULL. *list to put. */
static json_object *find_mapping(struct global *g, const char *name,
				 json_object **list)
{
	struct ctl_request r;
	json_object *a;
	size_t i;

	*list = NULL;
	ctl_request_init(&r, CTL_LIST);
	if (call(g, &r, list))
		return NULL;
	a = jget(*list, "mappings");
	for (i = 0; a && i < json_object_array_length(a); i++) {
		json_object *m = json_object_array_get_idx(a, i);

		if (strcmp(jstr(m, "name", ""), name) == 0)
			return m;
	}
	return NULL;
}

int cmd_attach_p(struct global *g, int argc, char **argv)
{
	struct persist_args p = { 0 };
	json_object *list, *m;
	int ret;

	ret = strip_args("attach", &argc, argv, &p);
	if (ret)
		return ret;
	if (p.persistent && !p.name)
		return usage_error("attach", "--persistent needs --name NAME "
				   "(the file's name and /dev/disk/by-nbd/NAME)");
	ret = cmd_attach(g, argc, argv);
	if (ret || !p.persistent)
		return ret;
	m = find_mapping(g, p.name, &list);
	ret = m ? conf_write(m, &p) : 1;
	if (!m)
		say_error("%s: attached, but gone before it could be saved",
			  p.name);
	json_object_put(list);
	return ret;
}

int cmd_detach_p(struct global *g, int argc, char **argv)
{
	struct persist_args p = { 0 };
	char path[PATH_MAX];
	json_object *list, *m;
	int ret;

	ret = strip_args("detach", &argc, argv, &p);
	if (ret || !p.persistent)
		return ret ? ret : cmd_detach(g, argc, argv);
	if (argc != 2 || !ctl_name_valid(argv[1]) ||
	    strncmp(argv[1], "--", 2) == 0)
		return usage_error("detach", "--persistent takes the "
				   "mapping's NAME");
	if (conf_path(path, sizeof(path), argv[1]) < 0)
		return 1;
	/* Not attached (no backend yet, say): only the file goes. */
	m = find_mapping(g, argv[1], &list);
	json_object_put(list);
	if (m && (ret = cmd_detach(g, argc, argv)) != 0)
		return ret;
	if (unlink(path) < 0 && !(errno == ENOENT && m)) {
		say_error("%s: %s", path, strerror(errno));
		return 1;
	}
	return 0;
}

/* ---- attach-configured ---- */

struct conf {
	char spec[CTL_MAX_SPEC + 1];
	char device[64];
	char requires[PATH_MAX];
	struct ctl_request r;
};

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

static int conf_number(const char *file, const char *key, const char *v,
		       uint32_t *out)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-' || n > INT32_MAX) {
		say_error("%s: %s = %s: expected a number", file, key, v);
		return -1;
	}
	*out = (uint32_t)n;
	return 0;
}

static int conf_line(const char *file, struct conf *c, char *k, char *v)
{
	if (strcmp(k, "spec") == 0)
		return snprintf(c->spec, sizeof(c->spec), "%s", v) <
				       (int)sizeof(c->spec) ? 0 : -1;
	if (strcmp(k, "device") == 0) {
		snprintf(c->device, sizeof(c->device), "%s", v);
		return ctl_parse_device(v, &c->r.index) < 0 ? -1 : 0;
	}
	if (strcmp(k, "requires") == 0)
		return snprintf(c->requires, sizeof(c->requires), "%s", v) <
				       (int)sizeof(c->requires) ? 0 : -1;
	if (strcmp(k, "readonly") == 0) {
		c->r.readonly = strcmp(v, "yes") == 0 || strcmp(v, "true") == 0;
		return 0;
	}
	if (strcmp(k, "connections") == 0)
		return conf_number(file, k, v, &c->r.connections);
	if (strcmp(k, "block_size") == 0)
		return conf_number(file, k, v, &c->r.block_size);
	if (strcmp(k, "timeout") == 0)
		return conf_number(file, k, v, &c->r.timeout);
	if (strcmp(k, "dead_conn_timeout") == 0)
		return conf_number(file, k, v, &c->r.dead_conn_timeout);
	say_error("%s: unknown key '%s'", file, k);
	return -1;
}

static int conf_read(const char *file, struct conf *c)
{
	char line[PATH_MAX + 64], *eq;
	FILE *f = fopen(file, "re");
	int r = 0;

	if (!f) {
		say_error("%s: %s", file, strerror(errno));
		return -1;
	}
	while (r == 0 && fgets(line, sizeof(line), f)) {
		char *s = trim(line);

		if (!*s || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			say_error("%s: expected KEY = VALUE: %s", file, s);
			r = -1;
			break;
		}
		*eq = '\0';
		r = conf_line(file, c, trim(s), trim(eq + 1));
		if (r < 0)
			say_error("%s: bad value for '%s'", file, trim(s));
	}
	fclose(f);
	if (r == 0 && !c->spec[0]) {
		say_error("%s: no spec", file);
		r = -1;
	}
	return r;
}

static int attach_one(struct global *g, const char *file, const char *name,
		      json_object *attached)
{
	struct conf *c = calloc(1, sizeof(*c));
	json_object *reply;
	size_t i;
	int ret = 1;

	if (!c)
		return 1;
	ctl_request_init(&c->r, CTL_ATTACH);
	if (conf_read(file, c) < 0)
		goto out;
	ret = 0;
	for (i = 0; attached && i < json_object_array_length(attached); i++)
		if (strcmp(jstr(json_object_array_get_idx(attached, i), "name",
				""), name) == 0)
			goto out; /* already there: nothing to do */
	if (c->requires[0] && access(c->requires, F_OK) < 0) {
		printf("%s: waiting for %s\n", name, c->requires);
		goto out;
	}
	c->r.spec = c->spec;
	c->r.name = name;
	ret = call(g, &c->r, &reply);
	if (ret == 0) {
		printf("%s: %s\n", name, jstr(reply, "device", "?"));
		json_object_put(reply);
	}
out:
	free(c);
	return ret;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int cmd_attach_configured(struct global *g, int argc, char **argv)
{
	struct ctl_request r;
	json_object *list = NULL;
	struct dirent **ents;
	char file[PATH_MAX], name[CTL_MAX_NAME + 1];
	int n, i, ret = 0;

	if (argc > 1) {
		if (strcmp(argv[1], "--help") && strcmp(argv[1], "-h"))
			return usage_error("attach-configured", "no arguments");
		printf("Usage: nbdctl attach-configured\nAttach every mapping "
		       "of %s/NAME.conf not attached yet.\n", mappings_dir());
		return 0;
	}
	n = scandir(mappings_dir(), &ents, NULL, by_name);
	if (n < 0)
		return errno == ENOENT ? 0 : (say_error("%s: %s", mappings_dir(),
							strerror(errno)), 1);
	ctl_request_init(&r, CTL_LIST);
	if (n > 0 && call(g, &r, &list))
		n = -(n + 1); /* no daemon: free the entries, fail */
	for (i = 0; i < (n < 0 ? -(n + 1) : n); i++) {
		const char *d = ents[i]->d_name;
		size_t len = strlen(d), sl = strlen(CONF_SUFFIX);

		if (n > 0 && len > sl && len - sl <= CTL_MAX_NAME &&
		    strcmp(d + len - sl, CONF_SUFFIX) == 0) {
			snprintf(name, sizeof(name), "%.*s", (int)(len - sl), d);
			snprintf(file, sizeof(file), "%s/%s", mappings_dir(), d);
			if (!ctl_name_valid(name))
				say_error("%s: not a mapping name", file);
			else if (attach_one(g, file, name, jget(list, "mappings")))
				ret = 1; /* the others are still tried */
		}
		free(ents[i]);
	}
	free(ents);
	json_object_put(list);
	return n < 0 ? 1 : ret;
}
