/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NAME.conf: a backend defined once by the administrator and then used
 * by name ("nbdctl attach mydisk"). The format (docs/man/nbdd-backends.7):
 *
 *   # comment
 *   backend = file:path=/srv/disk.img     (required: a built-in or plugin)
 *   description = Build cache             (optional)
 *   readonly = true                       (optional: true|false)
 *   direct = on                           (anything else: a parameter)
 *
 * Such a file decides which code the daemon loads and runs, so it must
 * not be writable by anyone but its owner, who must be root or the user
 * running nbdd, and a symlink is followed only when one of them owns it
 * (the file backend's rule for path=). The file is checked once opened
 * (fstat), and O_NOFOLLOW keeps a file that was not a symlink from
 * becoming one between lstat() and open().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "spec.h"

#ifndef NBDD_SYSCONFDIR
#define NBDD_SYSCONFDIR "/etc"
#endif
#define DEFAULT_DIR NBDD_SYSCONFDIR "/nbdd/backends.d"

static pthread_mutex_t dir_lock = PTHREAD_MUTEX_INITIALIZER;
static char *dir_set;

NBDD_EXPORT void nbdd_set_config_dir(const char *dir)
{
	char *copy = dir && *dir ? strdup(dir) : NULL;

	pthread_mutex_lock(&dir_lock);
	free(dir_set);
	dir_set = copy;
	pthread_mutex_unlock(&dir_lock);
}

void config_dir(char *buf, size_t size)
{
	pthread_mutex_lock(&dir_lock);
	snprintf(buf, size, "%s", dir_set ? dir_set : DEFAULT_DIR);
	pthread_mutex_unlock(&dir_lock);
}

/* ---- opening, with the ownership rules ---- */

static int conf_check(const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		return set_error(-EINVAL, "%s is not a regular file", path);
	if (st->st_mode & S_IWOTH)
		return set_error(-EPERM,
				 "%s is world-writable, so anyone could "
				 "choose what nbdd runs: chmod o-w it",
				 path);
	if (st->st_uid != 0 && st->st_uid != geteuid())
		return set_error(-EPERM,
				 "%s is owned by uid %u, neither root "
				 "nor the user running nbdd",
				 path, (unsigned)st->st_uid);
	return 0;
}

static int conf_open(const char *path)
{
	int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT
			   ? -ENOENT
			   : set_error(-errno, "%s: %s", path, strerror(errno));
	if (!S_ISLNK(st.st_mode))
		flags |= O_NOFOLLOW;
	else if (st.st_uid != 0 && st.st_uid != geteuid())
		return set_error(-EPERM,
				 "%s is a symlink owned by uid %u: "
				 "only symlinks owned by root or the user "
				 "running nbdd are followed",
				 path, (unsigned)st.st_uid);
	fd = open(path, flags);
	if (fd < 0)
		return set_error(errno == ENOENT ? -EINVAL : -errno,
				 "cannot open %s: %s", path,
				 errno == ELOOP ? "it became a symlink"
						: strerror(errno));
	r = fstat(fd, &st) < 0
		? set_error(-errno, "%s: %s", path, strerror(errno))
		: conf_check(path, &st);
	if (r) {
		close(fd);
		return r;
	}
	return fd;
}

/* The whole file, NUL-terminated; a file is small or it is a mistake. */
static int conf_read(const char *path, char **text)
{
	size_t len = 0;
	ssize_t n;
	char *buf;
	int err, fd = conf_open(path);

	if (fd < 0)
		return fd;
	buf = malloc(CONF_MAX_FILE + 2);
	if (!buf) {
		close(fd);
		return set_error(-ENOMEM, "out of memory");
	}
	do {
		n = read(fd, buf + len, CONF_MAX_FILE + 1 - len);
		if (n > 0)
			len += (size_t)n;
	} while ((n > 0 && len <= CONF_MAX_FILE) || (n < 0 && errno == EINTR));
	err = errno;
	close(fd);
	if (n < 0 || len > CONF_MAX_FILE || memchr(buf, '\0', len)) {
		free(buf);
		return set_error(n < 0 ? -err : -EINVAL, "%s: %s", path,
				 n < 0 ? strerror(err)
				 : len > CONF_MAX_FILE
				     ? "larger than 1 MiB"
				     : "contains a NUL byte: not a text file");
	}
	buf[len] = '\0';
	*text = buf;
	return 0;
}

/* ---- parsing ---- */

struct conf {
	const char *path;
	unsigned line;
	struct backend_spec *out; /* description, readonly, parameters */
	char *backend;
	unsigned backend_line, desc_line, ro_line;
	unsigned param_line[SPEC_MAX_PARAMS];
};

__attribute__((format(printf, 2, 3))) static int conf_err(const struct conf *c,
							  const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return set_error(-EINVAL, "%s:%u: %s", c->path, c->line, msg);
}

static char *skip_space(char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Unquote "..." in place (escapes \" and \\); only blanks may follow. */
static int unquote(struct conf *c, char *p)
{
	char *w = p, *r = p + 1;

	for (; *r && *r != '"'; r++) {
		if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
			r++;
		*w++ = *r;
	}
	if (*r != '"')
		return conf_err(c, "missing closing '\"'");
	if (*skip_space(r + 1))
		return conf_err(c, "text after the closing '\"'");
	*w = '\0';
	return 0;
}

static int parse_bool(struct conf *c, const char *v, int *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcmp(v, yes[i]) || !strcmp(v, no[i])) {
			*out = !strcmp(v, yes[i]);
			return 0;
		}
	}
	return conf_err(c, "readonly must be true or false, not '%.40s'", v);
}

static int set_once(struct conf *c, unsigned *line, const char *key)
{
	if (*line)
		return conf_err(c, "duplicate key '%s' (first set on line %u)",
				key, *line);
	*line = c->line;
	return 0;
}

static int conf_entry(struct conf *c, const char *key, const char *value)
{
	struct backend_spec *s = c->out;
	ssize_t at;
	char *k, *v;
	int r;

	if (!strcmp(key, "backend")) {
		r = set_once(c, &c->backend_line, key);
		return r ? r : (c->backend = strdup(value)) ? 0 : -ENOMEM;
	}
	if (!strcmp(key, "description")) {
		r = set_once(c, &c->desc_line, key);
		return r ? r : (s->description = strdup(value)) ? 0 : -ENOMEM;
	}
	if (!strcmp(key, "readonly")) {
		r = set_once(c, &c->ro_line, key);
		return r ? r : parse_bool(c, value, &s->readonly);
	}
	at = spec_find(s, key);
	if (at >= 0)
		return conf_err(c, "duplicate key '%s' (first set on line %u)",
				key, c->param_line[at]);
	if (s->nparams >= SPEC_MAX_PARAMS)
		return conf_err(c, "more than %d parameters", SPEC_MAX_PARAMS);
	k = strdup(key);
	v = strdup(value);
	c->param_line[s->nparams] = c->line;
	return k && v ? spec_add(s, k, v) : (free(k), free(v), -ENOMEM);
}

/* One line, NUL-terminated and writable: "key = value", blank or comment. */
static int conf_line(struct conf *c, char *line)
{
	char *p = skip_space(line), *key = p, *end, *value;

	if (!*p || *p == '#')
		return 0;
	while (spec_key_char(*p))
		p++;
	if (p == key || (*p != '=' && *p != ' ' && *p != '\t'))
		return conf_err(c, "expected 'key = value' (a key holds only "
				   "A-Z a-z 0-9 _ . -)");
	if ((size_t)(p - key) > SPEC_MAX_KEY)
		return conf_err(c, "key longer than %d bytes", SPEC_MAX_KEY);
	end = p;
	p = skip_space(p);
	if (*p != '=')
		return conf_err(c, "expected '=' after '%.*s'",
				(int)(end - key), key);
	*end = '\0';
	value = skip_space(p + 1);
	for (p = value; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			return conf_err(c, "control character in the value");
	if (*value == '"') {
		int r = unquote(c, value);
		if (r)
			return r;
	} else {
		for (end = value + strlen(value);
		     end > value && (end[-1] == ' ' || end[-1] == '\t');)
			*--end = '\0';
	}
	return conf_entry(c, key, value);
}

static int conf_lines(struct conf *c, char *text)
{
	char *line, *nl;
	size_t len;
	int r;

	for (line = text; *line; line = nl + 1) {
		c->line++;
		nl = strchr(line, '\n');
		if (!nl)
			nl = line + strlen(line) - 1; /* last line, no '\n' */
		else
			*nl = '\0';
		len = strlen(line);
		if (len > CONF_MAX_LINE)
			return conf_err(c, "line longer than %u bytes",
					CONF_MAX_LINE);
		if (len && line[len - 1] == '\r')
			line[len - 1] = '\0';
		r = conf_line(c, line);
		if (r)
			return r == -ENOMEM ? set_error(r, "out of memory") : r;
	}
	return 0;
}

/* Turn "backend = SPEC" plus the other keys into one spec in @out. */
static int conf_finish(struct conf *c, struct backend_spec *out)
{
	struct backend_spec *s = c->out;
	size_t i;
	int r;

	c->line = c->backend_line;
	r = spec_parse(c->backend, out);
	if (r)
		return conf_err(c, "backend: %s", nbdd_last_error());
	if (!spec_is_plugin_path(out->backend) &&
	    !builtin_backend(out->backend) &&
	    !plugin_installed(out->backend))
		return conf_err(c,
				"backend '%.100s' is neither a built-in "
				"backend (%s), an installed plugin nor a "
				"plugin path: a NAME.conf cannot name another "
				"NAME",
				out->backend, builtin_names());
	for (i = 0; i < s->nparams; i++) {
		if (spec_find(out, s->params[i].key) >= 0) {
			c->line = c->param_line[i];
			return conf_err(c,
					"'%s' is also set on line %u, in "
					"backend = ...",
					s->params[i].key, c->backend_line);
		}
		r = spec_add(out, (char *)s->params[i].key,
			     (char *)s->params[i].value);
		s->params[i].key = s->params[i].value = NULL;
		if (r)
			return conf_err(c, "too many parameters");
	}
	out->description = s->description;
	out->readonly = s->readonly;
	s->description = NULL;
	return 0;
}

int conf_load(const char *dir, const char *name, struct backend_spec *out)
{
	struct backend_spec attrs;
	char path[SPEC_MAX_PATH];
	struct conf c = {.path = path, .out = &attrs};
	char *text = NULL;
	int r;

	spec_init(out);
	spec_init(&attrs);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.conf", dir, name) >=
	    sizeof(path))
		return set_error(-ENAMETOOLONG, "config dir path too long");
	r = conf_read(path, &text);
	if (!r)
		r = conf_lines(&c, text);
	if (!r && !c.backend)
		r = set_error(-EINVAL,
			      "%s: no 'backend = ...' line (e.g. "
			      "backend = file:path=/srv/disk.img)",
			      path);
	if (!r)
		r = conf_finish(&c, out);
	if (r)
		spec_free(out);
	spec_free(&attrs);
	free(c.backend);
	free(text);
	return r;
}
