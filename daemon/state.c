/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state file (/run/nbdd/mappings.json): which devices this daemon
 * serves, rewritten atomically (temporary file + rename) after every
 * change, removed at a clean exit. A file still present at start-up
 * therefore means the previous daemon died with devices attached.
 *
 * Today that is only reported: the devices fail I/O (or wait out their
 * dead_conn_timeout) until someone disconnects them. Crash survival will
 * read the same file and take the devices over (nbdd_mapping_adopt());
 * the file records everything needed for that: device, spec, options.
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

/* One mapping of a previous daemon: is its device still configured? */
static void report_leftover(json_object *m, int old_pid)
{
	struct nbdd_kernel_device dev;
	json_object *v;
	const char *spec = "?";
	int index;

	if (!json_object_object_get_ex(m, "index", &v) ||
	    !json_object_is_type(v, json_type_int))
		return;
	index = json_object_get_int(v);
	if (json_object_object_get_ex(m, "spec", &v) &&
	    json_object_is_type(v, json_type_string))
		spec = json_object_get_string(v);
	if (index < 0 || nbdd_kernel_device(index, &dev) < 0 ||
	    !dev.connected)
		return;
	log_warning("/dev/nbd%d (%s) was attached by a previous nbdd (pid %d) "
		    "that did not exit cleanly; it is still configured but "
		    "not served. Release it with `nbd-client -d /dev/nbd%d` "
		    "(taking it over is not supported yet)",
		    index, spec, old_pid, index);
}

void state_check_previous(const char *path)
{
	json_object *root, *a, *v;
	char old[4096];
	size_t i, n;
	int pid = 0;

	if (access(path, F_OK) < 0)
		return;
	root = json_object_from_file(path);
	if (!root || !json_object_object_get_ex(root, "mappings", &a) ||
	    !json_object_is_type(a, json_type_array)) {
		log_warning("state file %s is unreadable; ignoring it", path);
		json_object_put(root);
		return;
	}
	if (json_object_object_get_ex(root, "pid", &v))
		pid = json_object_get_int(v);
	n = json_object_array_length(a);
	for (i = 0; i < n; i++)
		report_leftover(json_object_array_get_idx(a, i), pid);
	json_object_put(root);
	/* Kept for a person (or a future nbdd) to look at. */
	if (n > 0 &&
	    (size_t)snprintf(old, sizeof(old), "%s.previous", path) <
		    sizeof(old) &&
	    rename(path, old) == 0)
		log_notice("the previous daemon's state is kept in %s", old);
}
