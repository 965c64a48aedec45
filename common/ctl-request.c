/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Control requests: one table says which fields each command takes, so
 * the parser refuses unknown or misspelt fields instead of ignoring them
 * (a typo must not silently attach read-write).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum field {
	F_SPEC = 1u << 0,
	F_DEVICE = 1u << 1,
	F_NAME = 1u << 2,
	F_ALL = 1u << 3,
	F_CONNECTIONS = 1u << 4,
	F_READONLY = 1u << 5,
	F_BLOCK_SIZE = 1u << 6,
	F_TIMEOUT = 1u << 7,
	F_DEAD_CONN_TIMEOUT = 1u << 8,
	F_SIZE = 1u << 9,
	F_ALLOW_SHRINK = 1u << 10,
};

static const struct {
	const char *name;
	unsigned fields;
	bool mutates;
} commands[CTL__COUNT] = {
	[CTL_ATTACH] = { "attach",
			 F_SPEC | F_DEVICE | F_NAME | F_CONNECTIONS |
				 F_READONLY | F_BLOCK_SIZE | F_TIMEOUT |
				 F_DEAD_CONN_TIMEOUT,
			 true },
	[CTL_DETACH] = { "detach", F_DEVICE | F_NAME | F_ALL, true },
	[CTL_LIST] = { "list", 0, false },
	[CTL_STATUS] = { "status", F_DEVICE | F_NAME, false },
	[CTL_RESIZE] = { "resize", F_DEVICE | F_NAME | F_SIZE | F_ALLOW_SHRINK,
			 true },
	[CTL_EXPORTS] = { "exports", 0, false },
	[CTL_VERSION] = { "version", 0, false },
	[CTL_PING] = { "ping", 0, false },
};

static const struct {
	const char *key;
	enum field f;
} fields[] = {
	{ "spec", F_SPEC },
	{ "device", F_DEVICE },
	{ "name", F_NAME },
	{ "all", F_ALL },
	{ "connections", F_CONNECTIONS },
	{ "readonly", F_READONLY },
	{ "block_size", F_BLOCK_SIZE },
	{ "timeout", F_TIMEOUT },
	{ "dead_conn_timeout", F_DEAD_CONN_TIMEOUT },
	{ "size", F_SIZE },
	{ "allow_shrink", F_ALLOW_SHRINK },
};

const char *ctl_cmd_name(enum ctl_cmd cmd)
{
	return (unsigned)cmd < CTL__COUNT ? commands[cmd].name : "?";
}

enum ctl_cmd ctl_cmd_from_name(const char *name)
{
	unsigned i;

	for (i = 0; i < CTL__COUNT; i++)
		if (name && strcmp(commands[i].name, name) == 0)
			return (enum ctl_cmd)i;
	return CTL__COUNT;
}

bool ctl_cmd_mutates(enum ctl_cmd cmd)
{
	return (unsigned)cmd < CTL__COUNT && commands[cmd].mutates;
}

void ctl_request_init(struct ctl_request *r, enum ctl_cmd cmd)
{
	memset(r, 0, sizeof(*r));
	r->cmd = cmd;
	r->index = -1;
}

void ctl_request_clear(struct ctl_request *r)
{
	if (r->root)
		json_object_put(r->root);
	ctl_request_init(r, r->cmd);
}

/* ---- names and devices ---- */

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1]))
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

int ctl_parse_device(const char *text, int *index)
{
	unsigned long v;

	if (!text || strncmp(text, "/dev/nbd", 8) != 0 ||
	    !parse_uint(text + 8, CTL_MAX_DEVICE_INDEX, &v))
		return -EINVAL;
	*index = (int)v;
	return 0;
}

bool ctl_name_valid(const char *name)
{
	size_t i, n = name ? strlen(name) : 0;

	if (n == 0 || n > CTL_MAX_NAME)
		return false;
	for (i = 0; i < n; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || !strchr("._:-", c)))
			return false;
	}
	return true;
}

bool ctl_name_is_default(const char *name, int *index)
{
	unsigned long v;

	if (!name || strncmp(name, "nbd", 3) != 0 ||
	    !parse_uint(name + 3, CTL_MAX_DEVICE_INDEX, &v))
		return false;
	if (index)
		*index = (int)v;
	return true;
}

/* ---- parsing ---- */

struct parse {
	const char *cmd;
	char *err;
	size_t errlen;
};

static int bad(struct parse *p, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(struct parse *p, int err, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->cmd)
		snprintf(p->err, p->errlen, "%s: %s", p->cmd, msg);
	else
		snprintf(p->err, p->errlen, "%s", msg);
	return err;
}

static bool printable(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* A string without NUL or control characters; NULL when JSON null. */
static int get_string(struct parse *p, json_object *v, const char *key,
		      size_t max, bool nullable, const char **out)
{
	const char *s;
	int len;

	if (!v && nullable) {
		*out = NULL;
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return bad(p, -EINVAL, "'%s' must be a string%s", key,
			   nullable ? " or null" : "");
	s = json_object_get_string(v);
	len = json_object_get_string_len(v);
	if (len <= 0)
		return bad(p, -EINVAL, "'%s' is empty", key);
	if ((size_t)len > max)
		return bad(p, -EINVAL, "'%s' is longer than %zu bytes", key,
			   max);
	if (strlen(s) != (size_t)len || !printable(s, (size_t)len))
		return bad(p, -EINVAL, "'%s' contains a control character",
			   key);
	*out = s;
	return 0;
}

static int get_uint(struct parse *p, json_object *v, const char *key,
		    uint32_t max, uint32_t *out)
{
	int64_t n;

	if (!json_object_is_type(v, json_type_int))
		return bad(p, -EINVAL, "'%s' must be an integer", key);
	errno = 0;
	n = json_object_get_int64(v);
	/* json-c clamps values beyond int64 to INT64_MAX and sets errno */
	if (n < 0 || n > (int64_t)max || errno == ERANGE)
		return bad(p, -EINVAL, "'%s' must be from 0 to %u", key, max);
	*out = (uint32_t)n;
	return 0;
}

/* A size in bytes: positive, and within what a file offset can say. */
static int get_size(struct parse *p, json_object *v, const char *key,
		    uint64_t *out)
{
	int64_t n;

	if (!json_object_is_type(v, json_type_int))
		return bad(p, -EINVAL, "'%s' must be an integer", key);
	errno = 0;
	n = json_object_get_int64(v);
	/* Beyond int64, json-c keeps it as a uint64 and clamps int64 reads. */
	if (n <= 0 || errno == ERANGE ||
	    json_object_get_uint64(v) > (uint64_t)INT64_MAX)
		return bad(p, -EINVAL, "'%s' must be from 1 to %lld bytes",
			   key, (long long)INT64_MAX);
	*out = (uint64_t)n;
	return 0;
}

static int get_bool(struct parse *p, json_object *v, const char *key,
		    bool *out)
{
	if (!json_object_is_type(v, json_type_boolean))
		return bad(p, -EINVAL, "'%s' must be true or false", key);
	*out = json_object_get_boolean(v);
	return 0;
}

static int get_device(struct parse *p, json_object *v, int *index)
{
	const char *s;
	int r = get_string(p, v, "device", 64, true, &s);

	if (r < 0 || !s)
		return r;
	if (ctl_parse_device(s, index) < 0)
		return bad(p, -EINVAL, "'device' must be /dev/nbdN, not '%s'",
			   s);
	return 0;
}

static int get_name(struct parse *p, json_object *v, const char **name)
{
	int r = get_string(p, v, "name", CTL_MAX_NAME, true, name);

	if (r < 0 || !*name)
		return r;
	if (!ctl_name_valid(*name))
		return bad(p, -EINVAL,
			   "name '%s': use 1 to %d letters, digits, '.', "
			   "'_', ':' or '-', starting with a letter or digit",
			   *name, CTL_MAX_NAME);
	return 0;
}

static int parse_field(struct parse *p, enum field f, const char *key,
		       json_object *v, struct ctl_request *r)
{
	switch (f) {
	case F_SPEC:
		return get_string(p, v, key, CTL_MAX_SPEC, false, &r->spec);
	case F_DEVICE:
		return get_device(p, v, &r->index);
	case F_NAME:
		return get_name(p, v, &r->name);
	case F_ALL:
		return get_bool(p, v, key, &r->all);
	case F_CONNECTIONS:
		return get_uint(p, v, key, CTL_MAX_CONNECTIONS,
				&r->connections);
	case F_READONLY:
		return get_bool(p, v, key, &r->readonly);
	case F_BLOCK_SIZE:
		return get_uint(p, v, key, 1u << 20, &r->block_size);
	case F_TIMEOUT:
		return get_uint(p, v, key, INT32_MAX, &r->timeout);
	case F_DEAD_CONN_TIMEOUT:
		return get_uint(p, v, key, INT32_MAX, &r->dead_conn_timeout);
	case F_SIZE:
		return get_size(p, v, key, &r->size);
	case F_ALLOW_SHRINK:
		return get_bool(p, v, key, &r->allow_shrink);
	}
	return bad(p, -EINVAL, "unknown field '%s'", key);
}

static enum field field_from_key(const char *key)
{
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(fields); i++)
		if (strcmp(fields[i].key, key) == 0)
			return fields[i].f;
	return 0;
}

static int parse_fields(struct parse *p, json_object *root,
			struct ctl_request *r, unsigned *seen)
{
	json_object_object_foreach(root, key, v)
	{
		enum field f = field_from_key(key);
		int err;

		if (strcmp(key, "cmd") == 0)
			continue;
		if (!f || !(commands[r->cmd].fields & f))
			return bad(p, -EINVAL, "unknown field '%.64s'", key);
		err = parse_field(p, f, key, v, r);
		if (err < 0)
			return err;
		*seen |= f;
	}
	return 0;
}

/* Rules that span fields. */
static int check_request(struct parse *p, const struct ctl_request *r,
			 unsigned seen)
{
	int targets = (r->index >= 0) + (r->name != NULL) + r->all;

	switch (r->cmd) {
	case CTL_ATTACH:
		if (!(seen & F_SPEC))
			return bad(p, -EINVAL, "'spec' is missing");
		break;
	case CTL_DETACH:
		if (targets != 1)
			return bad(p, -EINVAL, "give exactly one of 'device', "
				   "'name' or \"all\": true");
		break;
	case CTL_STATUS:
		if (targets != 1)
			return bad(p, -EINVAL,
				   "give exactly one of 'device' or 'name'");
		break;
	case CTL_RESIZE:
		if (targets != 1)
			return bad(p, -EINVAL,
				   "give exactly one of 'device' or 'name'");
		if (!(seen & F_SIZE))
			return bad(p, -EINVAL, "'size' is missing");
		break;
	default:
		break;
	}
	return 0;
}

static json_object *tokenize(struct parse *p, const char *line, size_t len,
			     int *err)
{
	struct json_tokener *tok;
	json_object *root;
	size_t end;

	*err = 0;
	if (len > CTL_MAX_LINE) {
		*err = bad(p, -EMSGSIZE, "request longer than %d bytes",
			   CTL_MAX_LINE);
		return NULL;
	}
	tok = json_tokener_new_ex(CTL_MAX_DEPTH);
	if (!tok) {
		*err = bad(p, -ENOMEM, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, line, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (!root) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		*err = bad(p, -EBADMSG, "request is not valid JSON: %s",
			   e == json_tokener_continue
				   ? "incomplete"
				   : json_tokener_error_desc(e));
	} else {
		while (end < len && strchr(" \t\r", line[end]))
			end++;
		if (end < len) {
			*err = bad(p, -EBADMSG, "request is not valid JSON: "
				   "data after the object");
			json_object_put(root);
			root = NULL;
		}
	}
	json_tokener_free(tok);
	return root;
}

static int parse_cmd(struct parse *p, json_object *root, enum ctl_cmd *cmd)
{
	json_object *v;
	const char *name;

	if (!json_object_is_type(root, json_type_object))
		return bad(p, -EINVAL, "request must be a JSON object");
	if (!json_object_object_get_ex(root, "cmd", &v))
		return bad(p, -EINVAL, "request has no 'cmd'");
	if (!json_object_is_type(v, json_type_string))
		return bad(p, -EINVAL, "'cmd' must be a string");
	name = json_object_get_string(v);
	*cmd = ctl_cmd_from_name(name);
	if (*cmd == CTL__COUNT)
		return bad(p, -EOPNOTSUPP, "unknown command '%.64s'", name);
	return 0;
}

int ctl_request_parse(const char *line, size_t len, struct ctl_request *out,
		      char *err, size_t errlen)
{
	struct parse p = { .err = err, .errlen = errlen };
	json_object *root;
	enum ctl_cmd cmd = CTL__COUNT;
	unsigned seen = 0;
	int r;

	ctl_request_init(out, CTL__COUNT);
	root = tokenize(&p, line, len, &r);
	if (!root)
		return r;
	r = parse_cmd(&p, root, &cmd);
	if (r == 0) {
		out->cmd = cmd;
		out->root = root;
		p.cmd = ctl_cmd_name(cmd);
		r = parse_fields(&p, root, out, &seen);
	}
	if (r == 0)
		r = check_request(&p, out, seen);
	if (r < 0) {
		if (out->root)
			ctl_request_clear(out);
		else
			json_object_put(root);
	}
	return r;
}

/* ---- encoding ---- */

static int add(json_object *o, const char *key, json_object *v)
{
	if (!v)
		return -ENOMEM;
	return json_object_object_add(o, key, v) < 0 ? -ENOMEM : 0;
}

static int add_str(json_object *o, const char *key, const char *s)
{
	if (!s)
		return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
	return add(o, key, json_object_new_string(s));
}

static int add_device(json_object *o, int index)
{
	char dev[32];

	if (index < 0)
		return add_str(o, "device", NULL);
	snprintf(dev, sizeof(dev), "/dev/nbd%d", index);
	return add_str(o, "device", dev);
}

static int encode_attach(json_object *o, const struct ctl_request *r)
{
	int err = 0;

	err |= add_str(o, "spec", r->spec);
	err |= add_device(o, r->index);
	err |= add_str(o, "name", r->name);
	err |= add(o, "connections", json_object_new_int64(r->connections));
	err |= add(o, "readonly", json_object_new_boolean(r->readonly));
	err |= add(o, "block_size", json_object_new_int64(r->block_size));
	err |= add(o, "timeout", json_object_new_int64(r->timeout));
	err |= add(o, "dead_conn_timeout",
		   json_object_new_int64(r->dead_conn_timeout));
	return err ? -ENOMEM : 0;
}

/* Only the target that is set: the daemon insists on exactly one. */
static int encode_target(json_object *o, const struct ctl_request *r)
{
	if (r->all)
		return add(o, "all", json_object_new_boolean(true));
	if (r->name)
		return add_str(o, "name", r->name);
	return add_device(o, r->index);
}

static int encode_resize(json_object *o, const struct ctl_request *r)
{
	int err = encode_target(o, r);

	err |= add(o, "size", json_object_new_int64((int64_t)r->size));
	if (r->allow_shrink)
		err |= add(o, "allow_shrink", json_object_new_boolean(true));
	return err ? -ENOMEM : 0;
}

json_object *ctl_request_encode(const struct ctl_request *r)
{
	json_object *o = json_object_new_object();
	int err;

	if (!o || (unsigned)r->cmd >= CTL__COUNT)
		goto fail;
	err = add_str(o, "cmd", ctl_cmd_name(r->cmd));
	if (!err && r->cmd == CTL_ATTACH)
		err = encode_attach(o, r);
	else if (!err && (r->cmd == CTL_DETACH || r->cmd == CTL_STATUS))
		err = encode_target(o, r);
	else if (!err && r->cmd == CTL_RESIZE)
		err = encode_resize(o, r);
	if (err)
		goto fail;
	return o;
fail:
	json_object_put(o);
	return NULL;
}
