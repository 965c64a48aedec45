/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The daemon's log: stderr, one write() per message so lines from the
 * library's threads never interleave. When stderr is the journal
 * (systemd sets JOURNAL_STREAM to its device:inode) each line starts
 * with "<N>", which journald turns into the priority; otherwise with the
 * level's name, for a person at a terminal.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"

static const char *const level_names[] = {
	[NBDD_LOG_ERR] = "err",
	[NBDD_LOG_WARNING] = "warning",
	[NBDD_LOG_NOTICE] = "notice",
	[NBDD_LOG_INFO] = "info",
	[NBDD_LOG_DEBUG] = "debug",
};

static int log_max = NBDD_LOG_NOTICE;
static bool log_journal;

int log_level_parse(const char *name)
{
	int i;

	for (i = NBDD_LOG_ERR; i <= NBDD_LOG_DEBUG; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	if (strcasecmp(name, "error") == 0)
		return NBDD_LOG_ERR;
	if (strcasecmp(name, "warn") == 0)
		return NBDD_LOG_WARNING;
	return -EINVAL;
}

static bool stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!env || sscanf(env, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return st.st_dev == dev && st.st_ino == ino;
}

static void sink(void *opaque, int level, const char *msg)
{
	char line[2048];
	int n;

	if (level < NBDD_LOG_ERR)
		level = NBDD_LOG_ERR;
	if (level > NBDD_LOG_DEBUG)
		level = NBDD_LOG_DEBUG;
	if (log_journal)
		n = snprintf(line, sizeof(line), "<%d>%s\n", level, msg);
	else
		n = snprintf(line, sizeof(line), "nbdd: %s: %s\n",
			     level_names[level], msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* Nothing sensible to do when stderr itself fails. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

int log_max_level(void)
{
	return log_max;
}

void log_setup(int max_level)
{
	log_max = max_level;
	log_journal = stderr_is_journal();
	nbdd_set_log(sink, NULL, max_level);
}

void dlog(int level, const char *fmt, ...)
{
	char msg[1536];
	va_list ap;
	int saved = errno;

	if (level > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sink(NULL, level, msg);
	errno = saved;
}

const char *lib_error(int err)
{
	const char *msg = nbdd_last_error();

	if (msg && *msg)
		return msg;
	return strerror(err < 0 ? -err : err);
}
