/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One request, one reply. Every failure ends here as one line on stderr
 * that says what to do about it; the daemon's own messages are shown as
 * it wrote them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdctl.h"

/* Attach and detach may wait for a backend to open or flush. */
#define REPLY_TIMEOUT_SLOW_S 300
#define REPLY_TIMEOUT_S 30
/* Replies are not capped by the protocol; this is only a sanity bound. */
#define MAX_REPLY (16u << 20)

static void connect_error(const char *path, int err)
{
	struct stat st;

	if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		say_error("cannot connect to nbdd at %s: not a socket", path);
		return;
	}
	switch (-err) {
	case ENOENT:
	case ECONNREFUSED:
		say_error("nbdd is not running (cannot connect to %s: %s); "
			  "start it with 'systemctl start nbdd' or 'nbdd &'",
			  path, strerror(-err));
		break;
	case EACCES:
	case EPERM:
		say_error("cannot connect to %s: %s (root, or a member of the "
			  "group nbdd was started with --control-group, may "
			  "use it)",
			  path, strerror(-err));
		break;
	default:
		say_error("cannot connect to nbdd at %s: %s", path,
			  strerror(-err));
	}
}

static int send_request(int fd, const struct ctl_request *req,
			uint64_t deadline)
{
	json_object *o = ctl_request_encode(req);
	size_t len;
	char *line = o ? ctl_encode_line(o, &len) : NULL;
	int r;

	json_object_put(o);
	if (!line) {
		say_error("out of memory");
		return -ENOMEM;
	}
	r = ctl_write_all(fd, line, len, deadline);
	free(line);
	if (r < 0)
		say_error("sending to nbdd: %s", strerror(-r));
	return r;
}

static void read_error(int err, unsigned timeout)
{
	switch (-err) {
	case ETIMEDOUT:
		say_error("no reply from nbdd within %u s", timeout);
		break;
	case ECONNRESET:
		say_error("nbdd closed the connection without replying "
			  "(did it exit? see its log)");
		break;
	default:
		say_error("reading nbdd's reply: %s", strerror(-err));
	}
}

static json_object *parse_reply(const char *line, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	json_object *o = NULL;

	if (tok) {
		o = json_tokener_parse_ex(tok, line, (int)len);
		json_tokener_free(tok);
	}
	if (!o)
		say_error("nbdd's reply is not JSON");
	return o;
}

int call(const struct global *g, const struct ctl_request *req,
	 json_object **reply)
{
	unsigned timeout = ctl_cmd_mutates(req->cmd) ? REPLY_TIMEOUT_SLOW_S
						     : REPLY_TIMEOUT_S;
	uint64_t deadline = ctl_now_ms() + timeout * 1000ull;
	struct ctl_linebuf lb;
	const char *msg;
	json_object *o = NULL;
	char *line;
	size_t len;
	int fd, r;

	r = ctl_connect(g->control, &fd);
	if (r < 0) {
		connect_error(g->control, r);
		return 1;
	}
	ctl_linebuf_init(&lb, MAX_REPLY);
	r = send_request(fd, req, deadline);
	if (r == 0) {
		r = ctl_read_line(fd, &lb, &line, &len, deadline);
		if (r < 0)
			read_error(r, timeout);
		else
			o = parse_reply(line, len);
	}
	ctl_linebuf_free(&lb);
	close(fd);
	if (!o)
		return 1;
	r = ctl_reply_status(o, &msg);
	if (r < 0) {
		say_error("%s", msg);
		json_object_put(o);
		return 1;
	}
	*reply = o;
	return 0;
}
