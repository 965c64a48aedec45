/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbdctl: the command-line client of nbdd's control socket.
 *
 *   main.c      global options, the command table lookup, exit codes
 *   commands.c  the table of subcommands, one function each
 *   client.c    one request -> one reply over the control socket
 *   output.c    text tables, human sizes, JSON, error lines
 *
 * Exit codes: 0 success, 1 failure (the daemon's message or why it could
 * not be reached), 2 bad usage.
 */
#ifndef NBDCTL_H
#define NBDCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "../common/control.h"

#define EXIT_USAGE 2

struct global {
	const char *control; /* socket path */
	bool json;
};

struct command {
	const char *name;
	const char *args; /* for usage lines */
	const char *help;
	int (*run)(struct global *g, int argc, char **argv);
};

/* ---- commands.c ---- */

extern const struct command commands[];
const struct command *command_find(const char *name);
int cmd_attach(struct global *g, int argc, char **argv);
int cmd_detach(struct global *g, int argc, char **argv);

/* ---- persist.c: --persistent, attach-configured ---- */

int cmd_attach_p(struct global *g, int argc, char **argv);
int cmd_detach_p(struct global *g, int argc, char **argv);
int cmd_attach_configured(struct global *g, int argc, char **argv);

/* ---- client.c ---- */

/*
 * Send @req and wait for the reply. On success returns 0 with *reply
 * the daemon's object (json_object_put() it); otherwise prints one line
 * saying why and returns 1.
 */
int call(const struct global *g, const struct ctl_request *req,
	 json_object **reply);

/* ---- output.c ---- */

void say_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the usage error and returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* "1.0G", "512B": binary units, as lsblk shows them. */
void human_size(uint64_t bytes, char *buf, size_t len);
void print_json(json_object *o);

const char *jstr(json_object *o, const char *key, const char *dflt);
int64_t jint(json_object *o, const char *key, int64_t dflt);
bool jbool(json_object *o, const char *key, bool dflt);
json_object *jget(json_object *o, const char *key);

struct table;
struct table *table_new(size_t ncols, const char *const *headers,
			const bool *right_aligned);
/* Copies the @ncols strings of a row. */
void table_add(struct table *t, const char *const *cells);
void table_print(struct table *t, FILE *f);
void table_free(struct table *t);

#endif /* NBDCTL_H */
