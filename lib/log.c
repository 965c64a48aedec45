/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging through the program's callback, and per-thread error messages. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static nbdd_log_fn log_fn;
static void *log_opaque;
static int log_max = -1; /* nothing until a program asks */

static _Thread_local char last_error[512];
static _Thread_local char backend_error[512];
static _Thread_local bool backend_error_set;

NBDD_EXPORT void nbdd_set_log(nbdd_log_fn fn, void *opaque, int max_level)
{
	log_fn = fn;
	log_opaque = opaque;
	log_max = fn ? max_level : -1;
}

bool nbdd_log_enabled(int level)
{
	return level <= log_max;
}

void nbdd_log(int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!nbdd_log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_fn(log_opaque, level, msg);
}

int set_error(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return err;
}

void clear_error(void)
{
	last_error[0] = '\0';
}

NBDD_EXPORT const char *nbdd_last_error(void)
{
	return last_error;
}

NBDD_EXPORT void nbdd_backend_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(backend_error, sizeof(backend_error), fmt, ap);
	va_end(ap);
	backend_error_set = true;
}

const char *take_backend_error(void)
{
	if (!backend_error_set)
		return NULL;
	backend_error_set = false;
	return backend_error;
}
