/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What spec.c and conf.c share: limits and helpers for backend specs. */
#ifndef NBDD_SPEC_H
#define NBDD_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "internal.h"

#define SPEC_MAX_PARAMS 64
#define SPEC_MAX_PARAMS_STR "64"
#define SPEC_MAX_KEY 64
#define SPEC_MAX_VALUE 4096u
#define SPEC_MAX_TEXT 65536u
#define SPEC_MAX_NAME 255u
#define SPEC_MAX_PATH 4096u

/* NAME.conf: the longest line and the largest file we read. */
#define CONF_MAX_LINE 4096u
#define CONF_MAX_FILE (1u << 20)

void spec_init(struct backend_spec *s);
/* Append a parameter, taking over both strings: 0, -E2BIG or -ENOMEM. */
int spec_add(struct backend_spec *s, char *key, char *value);
/* Index of @key in s->params, or -1. */
ssize_t spec_find(const struct backend_spec *s, const char *key);

bool spec_key_char(char c);
bool spec_is_plugin_path(const char *backend);
/* A NAME that may become NAME.conf: no '/', no leading '.'. */
bool spec_valid_name(const char *name);
const char *builtin_names(void);

/* The config dir in effect (nbdd_set_config_dir()). */
void config_dir(char *buf, size_t size);
/* Read @dir/@name.conf into @out; -ENOENT (no message) if it is absent. */
int conf_load(const char *dir, const char *name, struct backend_spec *out);

#endif /* NBDD_SPEC_H */
