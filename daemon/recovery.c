/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Surviving our own death: what a new nbdd does with the devices a
 * previous one left (SIGKILL, a crash, `systemctl restart`).
 *
 * The previous daemon's state file lists each mapping with its device,
 * spec and options. Its mtime is a heartbeat: touched every
 * HEARTBEAT_S while mappings exist, and written last at a hand-over
 * exit. So at start-up "now - mtime" says how long the devices have had
 * no server, and against each one's dead-conn timeout whether the kernel
 * is still holding its I/O for us:
 *  - still holding: open the backend again and hand the device new
 *    sockets (nbdd_mapping_adopt()); the kernel resends what was in
 *    flight, and nothing above the device sees more than a pause;
 *  - timed out, no timeout at all, or data that lived in the dead
 *    process (memory): the mapping is FAILED. Its I/O fails at once,
 *    `nbdctl list` says why, `nbdctl detach` releases it.
 *
 * The kernel's link-dead events (the nbd family's multicast group) are
 * watched here too, and counted per mapping for `nbdctl status`.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <nbdd/kernel.h>

#include "daemon.h"

#define HEARTBEAT_S 1

static struct loop_source beat_src = { .fd = -1 };
static struct loop_source events_src = { .fd = -1 };
static struct nbdd_kernel_events *kevents;

/* ---- reading the previous daemon's state ---- */

static const char *jstring(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int64_t jnumber(json_object *o, const char *key, int64_t dflt)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int))
		return dflt;
	return json_object_get_int64(v);
}

static uint32_t juint32(json_object *o, const char *key)
{
	int64_t v = jnumber(o, key, 0);

	return v < 0 || v > UINT32_MAX ? 0 : (uint32_t)v;
}

/* Why the mapping cannot be taken over, or NULL. */
static const char *refusal(json_object *m, int old_pid, int64_t gap,
			   char *buf, size_t len)
{
	uint32_t wait = juint32(m, "dead_conn_timeout");
	const char *state = jstring(m, "state"), *err = jstring(m, "error");

	if (state && !strcmp(state, "failed")) {
		snprintf(buf, len, "%s", err ? err : "failed before the restart");
		return buf;
	}
	if (wait == 0) {
		snprintf(buf, len,
			 "it had no dead-conn timeout, so the kernel failed "
			 "its I/O as soon as the previous nbdd (pid %d) died",
			 old_pid);
		return buf;
	}
	if (gap >= wait) {
		snprintf(buf, len,
			 "the previous nbdd (pid %d) stopped serving it about "
			 "%lld s ago, longer than its dead-conn timeout (%u s): "
			 "the kernel has failed I/O on it since",
			 old_pid, (long long)gap, wait);
		return buf;
	}
	return NULL;
}

static void restore_one(json_object *m, int old_pid, int64_t gap)
{
	struct ctl_request req;
	struct nbdd_kernel_device dev;
	const char *spec = jstring(m, "spec"), *why;
	char buf[600];
	int64_t index = jnumber(m, "index", -1);

	if (!spec || index < 0 || index > INT32_MAX) {
		log_warning("state file: a mapping without spec or device; "
			    "skipped");
		return;
	}
	if (nbdd_kernel_device((int)index, &dev) < 0 || dev.pid == 0) {
		log_notice("/dev/nbd%lld (%s) of the previous nbdd is no longer "
			   "configured; nothing to take over",
			   (long long)index, spec);
		return;
	}
	ctl_request_init(&req, CTL_ATTACH);
	req.spec = spec;
	req.index = (int)index;
	req.name = jstring(m, "name");
	req.readonly = json_object_get_boolean(
		json_object_object_get(m, "readonly"));
	req.connections = juint32(m, "connections");
	req.block_size = juint32(m, "block_size");
	req.timeout = juint32(m, "timeout");
	req.dead_conn_timeout = juint32(m, "dead_conn_timeout");
	why = refusal(m, old_pid, gap, buf, sizeof(buf));
	if (!why)
		log_notice("/dev/nbd%d (%s): taking it over from the previous "
			   "nbdd (pid %d), unserved for about %lld s",
			   req.index, spec, old_pid, (long long)gap);
	mappings_restore(&req, (time_t)jnumber(m, "attached_at", 0), why);
}

void recovery_restore(void)
{
	const char *path = mappings_state_path();
	json_object *root, *a;
	char old[4096];
	struct stat st;
	int64_t gap;
	size_t i, n;
	int pid;

	if (!path || stat(path, &st) < 0)
		return;
	root = json_object_from_file(path);
	if (!root || !json_object_object_get_ex(root, "mappings", &a) ||
	    !json_object_is_type(a, json_type_array)) {
		log_warning("state file %s is unreadable; ignoring it", path);
		json_object_put(root);
		return;
	}
	pid = (int)jnumber(root, "pid", 0);
	gap = (int64_t)time(NULL) - (int64_t)st.st_mtime;
	if (gap < 0)
		gap = 0;
	if (pid > 0 && pid != getpid() && kill(pid, 0) == 0)
		log_warning("the previous nbdd (pid %d) still runs: its devices "
			    "stay with it", pid);
	n = json_object_array_length(a);
	for (i = 0; i < n; i++)
		restore_one(json_object_array_get_idx(a, i), pid, gap);
	json_object_put(root);
	/* Kept for a person to look at; ours replaces it at once. */
	if (n > 0 &&
	    (size_t)snprintf(old, sizeof(old), "%s.previous", path) <
		    sizeof(old))
		rename(path, old);
}

/* ---- the heartbeat ---- */

static void on_beat(struct loop_source *s, uint32_t events)
{
	const char *path = mappings_state_path();
	uint64_t ticks;

	if (read(s->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		log_debug("heartbeat timer: %s", strerror(errno));
	if (path && mappings_count() > 0 &&
	    utimensat(AT_FDCWD, path, NULL, 0) < 0 && errno != ENOENT)
		log_debug("heartbeat on %s: %s", path, strerror(errno));
}

int recovery_start(void)
{
	struct itimerspec every = {
		.it_value = { .tv_sec = HEARTBEAT_S },
		.it_interval = { .tv_sec = HEARTBEAT_S },
	};
	int fd, r;

	if (!mappings_state_path())
		return 0;
	fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (timerfd_settime(fd, 0, &every, NULL) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	r = loop_add(&beat_src, fd, EPOLLIN, on_beat, NULL);
	if (r < 0)
		close(fd);
	return r;
}

/* ---- link-dead events ---- */

static void deliver(void *opaque, int index)
{
	mappings_link_dead(index);
}

static void on_events(struct loop_source *s, uint32_t what)
{
	if (nbdd_kernel_events_dispatch(kevents, deliver, NULL) < 0)
		log_debug("link-dead events: %s", lib_error(-EIO));
}

/* Once the driver is there (the first attach may load it). */
void recovery_watch_events(void)
{
	int r;

	if (kevents)
		return;
	r = nbdd_kernel_events_open(&kevents);
	if (r < 0) {
		log_debug("link-dead events: %s", lib_error(r));
		kevents = NULL;
		return;
	}
	r = loop_add(&events_src, nbdd_kernel_events_fd(kevents), EPOLLIN,
		     on_events, NULL);
	if (r < 0) {
		log_warning("link-dead events: %s", strerror(-r));
		nbdd_kernel_events_close(kevents);
		kevents = NULL;
	}
}

void recovery_stop(void)
{
	loop_remove(&events_src);
	nbdd_kernel_events_close(kevents);
	kevents = NULL;
	if (beat_src.fd >= 0) {
		int fd = beat_src.fd;

		loop_remove(&beat_src);
		close(fd);
	}
}
