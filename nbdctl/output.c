/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What nbdctl prints: text tables, sizes, JSON, error lines. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "nbdctl.h"

void say_error(const char *fmt, ...)
{
	va_list ap;

	fputs("nbdctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "nbdctl%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see nbdctl --help)\n");
	return EXIT_USAGE;
}

void human_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(buf, len, "%lluB", (unsigned long long)bytes);
		return;
	}
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	/* 1023.96 would print as "1024.0K": say 1.0M instead */
	if (v >= 1023.95 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f%c", v, units[u]);
}

void print_json(json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(
			       o, JSON_C_TO_STRING_PRETTY |
					  JSON_C_TO_STRING_SPACED |
					  JSON_C_TO_STRING_NOSLASHESCAPE));
}

json_object *jget(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

const char *jstr(json_object *o, const char *key, const char *dflt)
{
	json_object *v = jget(o, key);

	return json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : dflt;
}

int64_t jint(json_object *o, const char *key, int64_t dflt)
{
	json_object *v = jget(o, key);

	return json_object_is_type(v, json_type_int) ? json_object_get_int64(v)
						     : dflt;
}

bool jbool(json_object *o, const char *key, bool dflt)
{
	json_object *v = jget(o, key);

	return json_object_is_type(v, json_type_boolean)
		       ? json_object_get_boolean(v)
		       : dflt;
}

/* ---- tables ---- */

struct table {
	size_t ncols, nrows, cap;
	char **cells; /* nrows * ncols, header first */
	size_t *width;
	const bool *right;
};

static char *dup_cell(const char *s)
{
	char *d = strdup(s ? s : "-");

	if (!d) {
		say_error("out of memory");
		exit(1);
	}
	return d;
}

struct table *table_new(size_t ncols, const char *const *headers,
			const bool *right_aligned)
{
	struct table *t = calloc(1, sizeof(*t));

	if (!t || !(t->width = calloc(ncols, sizeof(size_t)))) {
		say_error("out of memory");
		exit(1);
	}
	t->ncols = ncols;
	t->right = right_aligned;
	table_add(t, headers);
	return t;
}

void table_add(struct table *t, const char *const *cells)
{
	size_t i;

	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		char **p = realloc(t->cells, cap * t->ncols * sizeof(char *));

		if (!p) {
			say_error("out of memory");
			exit(1);
		}
		t->cells = p;
		t->cap = cap;
	}
	for (i = 0; i < t->ncols; i++) {
		char *c = dup_cell(cells[i]);
		size_t w = strlen(c);

		t->cells[t->nrows * t->ncols + i] = c;
		if (w > t->width[i])
			t->width[i] = w;
	}
	t->nrows++;
}

void table_print(struct table *t, FILE *f)
{
	size_t r, i;

	for (r = 0; r < t->nrows; r++) {
		for (i = 0; i < t->ncols; i++) {
			const char *c = t->cells[r * t->ncols + i];
			bool last = i + 1 == t->ncols;
			int w = (int)t->width[i];

			if (t->right && t->right[i])
				fprintf(f, "%*s", w, c);
			else if (last)
				fputs(c, f);
			else
				fprintf(f, "%-*s", w, c);
			if (!last)
				fputs("  ", f);
		}
		fputc('\n', f);
	}
}

void table_free(struct table *t)
{
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->width);
	free(t);
}
