/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backend specs:  BACKEND[:key=value[,key=value...]]
 *
 *   BACKEND  a built-in name (memory, file, null); an installed plugin's
 *            NAME (PLUGINDIR/NAME.so: rbd, nbd); a plugin path (contains
 *            '/' or ends in ".so"); or NAME, defined by NAME.conf in the
 *            config dir (see conf.c).
 *   value    ends at an unescaped ','. "\," is a comma, "\\" a backslash,
 *            "\"" a quote. A value starting with '"' runs to the matching
 *            quote and may hold commas as they are.
 *
 * Everything is checked before anything is opened, with limits on every
 * length, and errors say where the text went wrong.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "spec.h"

static const struct nbdd_backend *const builtins[] = {
    &nbdd_backend_memory,
    &nbdd_backend_file,
    &nbdd_backend_null,
};

const struct nbdd_backend *builtin_backend(const char *name)
{
	size_t i;

	for (i = 0; name && i < ARRAY_SIZE(builtins); i++)
		if (!strcmp(builtins[i]->name, name))
			return builtins[i];
	return NULL;
}

const char *builtin_names(void)
{
	return "memory, file, null";
}

bool spec_is_plugin_path(const char *backend)
{
	size_t n = strlen(backend);

	return strchr(backend, '/') ||
	       (n > 3 && !strcmp(backend + n - 3, ".so"));
}

bool spec_valid_name(const char *name)
{
	const char *p;

	if (!*name || *name == '.' || strlen(name) > SPEC_MAX_NAME)
		return false;
	for (p = name; *p; p++)
		if (!spec_key_char(*p))
			return false;
	return true;
}

bool spec_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

void spec_init(struct backend_spec *s)
{
	memset(s, 0, sizeof(*s));
	s->readonly = -1;
}

void spec_free(struct backend_spec *s)
{
	size_t i;

	for (i = 0; i < s->nparams; i++) {
		free((char *)s->params[i].key);
		free((char *)s->params[i].value);
	}
	free(s->params);
	free(s->backend);
	free(s->description);
	spec_init(s);
}

ssize_t spec_find(const struct backend_spec *s, const char *key)
{
	size_t i;

	for (i = 0; i < s->nparams; i++)
		if (!strcmp(s->params[i].key, key))
			return (ssize_t)i;
	return -1;
}

/* Append key=value (both taken over, freed on failure). */
int spec_add(struct backend_spec *s, char *key, char *value)
{
	struct nbdd_param *v;

	if (s->nparams >= SPEC_MAX_PARAMS) {
		free(key);
		free(value);
		return -E2BIG;
	}
	v = realloc(s->params, (s->nparams + 1) * sizeof(*v));
	if (!v) {
		free(key);
		free(value);
		return -ENOMEM;
	}
	s->params = v;
	v[s->nparams++] = (struct nbdd_param){key, value};
	return 0;
}

/* ---- the spec grammar ---- */

struct cursor {
	const char *text; /* the whole spec, for messages */
	const char *p;
};

static int spec_err(const struct cursor *c, const char *what)
{
	return set_error(-EINVAL, "backend spec '%.200s': %s at position %zu",
			 c->text, what, (size_t)(c->p - c->text) + 1);
}

static bool control_char(char c)
{
	return (unsigned char)c < 0x20 || c == 0x7f;
}

#define KEY_CHARS "a key may hold only A-Z a-z 0-9 _ . -"

/* A key: [A-Za-z0-9_.-]+ followed by '='. */
static int parse_key(struct cursor *c, char **key)
{
	const char *start = c->p;

	while (spec_key_char(*c->p))
		c->p++;
	if (c->p == start && *c->p == '=')
		return spec_err(c, "empty key");
	if (c->p == start && (*c->p == ',' || !*c->p))
		return spec_err(c, "empty parameter");
	if (*c->p == ',' || !*c->p)
		return spec_err(c, "expected key=value");
	if (c->p == start || *c->p != '=')
		return spec_err(c, KEY_CHARS);
	if ((size_t)(c->p - start) > SPEC_MAX_KEY)
		return spec_err(c, "key too long");
	*key = strndup(start, (size_t)(c->p - start));
	c->p++;
	return *key ? 0 : -ENOMEM;
}

/* One character of a value, handling escapes; 0 at the value's end. */
static int value_char(struct cursor *c, bool quoted, char *out)
{
	char ch = *c->p;

	if (!ch)
		return quoted ? spec_err(c, "missing closing '\"'") : 1;
	if (quoted ? ch == '"' : ch == ',')
		return 1;
	if (control_char(ch))
		return spec_err(c, "control character in a value");
	c->p++;
	if (ch == '\\') {
		ch = *c->p;
		if (ch != ',' && ch != '\\' && ch != '"')
			return spec_err(c, "unknown escape (use \\, \\\\ "
					   "or \\\")");
		c->p++;
	}
	*out = ch;
	return 0;
}

static int parse_value(struct cursor *c, char **value)
{
	bool quoted = *c->p == '"';
	size_t n = 0;
	char *v, ch = 0;
	int r;

	v = malloc(strlen(c->p) + 1);
	if (!v)
		return -ENOMEM;
	c->p += quoted;
	while ((r = value_char(c, quoted, &ch)) == 0)
		v[n++] = ch;
	if (r < 0 || n > SPEC_MAX_VALUE) {
		free(v);
		return r < 0 ? r : spec_err(c, "value too long");
	}
	if (quoted && *++c->p && *c->p != ',') {
		free(v);
		return spec_err(c, "expected ',' after a quoted value");
	}
	v[n] = '\0';
	*value = v;
	return 0;
}

static int parse_params(struct cursor *c, struct backend_spec *s)
{
	char *key = NULL, *value = NULL;
	int r;

	while (*c->p) {
		r = parse_key(c, &key);
		if (r)
			return r;
		r = parse_value(c, &value);
		if (r) {
			free(key);
			return r;
		}
		if (spec_find(s, key) >= 0) {
			r = spec_err(c, "duplicate parameter");
			free(key);
			free(value);
			return r;
		}
		r = spec_add(s, key, value);
		if (r == -E2BIG)
			return spec_err(
			    c,
			    "too many parameters (at most " SPEC_MAX_PARAMS_STR
			    ")");
		if (r)
			return r;
		if (*c->p == ',' && !*++c->p)
			return spec_err(c, "trailing ','");
	}
	return 0;
}

int spec_parse(const char *text, struct backend_spec *out)
{
	struct cursor c = {text, text};
	const char *colon;
	size_t len;
	int r;

	spec_init(out);
	if (!text || !*text)
		return set_error(-EINVAL, "empty backend spec");
	if (strlen(text) > SPEC_MAX_TEXT)
		return set_error(-EINVAL, "backend spec longer than %u bytes",
				 SPEC_MAX_TEXT);
	colon = strchr(text, ':');
	len = colon ? (size_t)(colon - text) : strlen(text);
	if (!len)
		return spec_err(&c, "no backend before ':'");
	for (c.p = text; c.p < text + len; c.p++)
		if (control_char(*c.p))
			return spec_err(&c, "control character");
	out->backend = strndup(text, len);
	if (!out->backend)
		return set_error(-ENOMEM, "out of memory");
	if (colon) {
		c.p = colon + 1;
		r = parse_params(&c, out);
		if (r) {
			spec_free(out);
			return r == -ENOMEM ? set_error(r, "out of memory") : r;
		}
	}
	return 0;
}

/* ---- resolution ---- */

/* Parameters given with NAME (NAME:k=v) override those of NAME.conf. */
static int apply_overrides(struct backend_spec *conf,
			   struct backend_spec *given)
{
	ssize_t at;
	size_t i;
	int r;

	for (i = 0; i < given->nparams; i++) {
		char *key = (char *)given->params[i].key;
		char *value = (char *)given->params[i].value;

		given->params[i].key = given->params[i].value = NULL;
		at = spec_find(conf, key);
		if (at >= 0) {
			free(key);
			free((char *)conf->params[at].value);
			conf->params[at].value = value;
			continue;
		}
		r = spec_add(conf, key, value);
		if (r)
			return set_error(r, r == -E2BIG ? "too many parameters"
							: "out of memory");
	}
	return 0;
}

int spec_resolve(const char *text, struct backend_spec *out)
{
	struct backend_spec conf;
	char dir[SPEC_MAX_PATH];
	int r;

	r = spec_parse(text, out);
	if (r)
		return r;
	if (spec_is_plugin_path(out->backend) || builtin_backend(out->backend) ||
	    plugin_installed(out->backend))
		return 0;
	config_dir(dir, sizeof(dir));
	if (!spec_valid_name(out->backend)) {
		r = set_error(-EINVAL,
			      "invalid backend name '%.100s': a "
			      "NAME for %s/NAME.conf holds only A-Z a-z 0-9 "
			      "_ . - and does not start with '.'",
			      out->backend, dir);
		goto fail;
	}
	r = conf_load(dir, out->backend, &conf);
	if (r == -ENOENT) {
		char pdir[SPEC_MAX_PATH];

		plugin_dir(pdir, sizeof(pdir));
		r = set_error(-ENOENT,
			      "unknown backend '%s': not a built-in "
			      "backend (%s), not an installed plugin (%s/%s.so), "
			      "not a plugin path (one with a '/' or ending in "
			      ".so), and there is no %s/%s.conf",
			      out->backend, builtin_names(), pdir, out->backend,
			      dir, out->backend);
	}
	if (r)
		goto fail;
	r = apply_overrides(&conf, out);
	spec_free(out);
	if (r) {
		spec_free(&conf);
		return r;
	}
	*out = conf;
	return 0;
fail:
	spec_free(out);
	return r;
}
