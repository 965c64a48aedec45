/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state file (/run/nbdd/mappings.json): which devices this daemon
 * serves, rewritten atomically (temporary file + rename) after every
 * change, removed at a clean exit. A file still present at start-up
 * therefore means the previous daemon died with devices attached.
 *
 * recovery.c reads it at start-up and takes the devices over: the file
 * records everything needed for that (device, spec, options), and its
 * mtime is the heartbeat that tells how long they have had no server.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nbdd/kernel.h>

#include "daemon.h"

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int state_write(const char *path, json_object *state)
{
	char tmp[4096];
	const char *text;
	int fd, r;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	text = json_object_to_json_string_ext(state, JSON_C_TO_STRING_PRETTY |
						  JSON_C_TO_STRING_NOSLASHESCAPE);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	r = write_all(fd, text, strlen(text));
	if (r == 0)
		r = write_all(fd, "\n", 1);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r == 0)
		return 0;
	unlink(tmp);
fail:
	log_warning("state file %s: %s", path, strerror(-r));
	return r;
}

void state_remove(const char *path)
{
	if (unlink(path) < 0 && errno != ENOENT)
		log_warning("removing state file %s: %s", path,
			    strerror(errno));
}
