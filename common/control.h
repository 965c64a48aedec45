/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control protocol between nbdd and nbdctl (docs/control-protocol.md):
 * one JSON object per line over a Unix stream socket, one reply line per
 * request line, in order.
 *
 * Both programs link this one implementation, so what nbdctl encodes is
 * exactly what the daemon validates:
 *
 *   ctl-frame.c    line framing with a length cap; blocking helpers
 *                  with deadlines for the CLI
 *   ctl-request.c  requests: encode, parse and validate; names, devices
 *   ctl-reply.c    replies: {"ok":true,...} / {"ok":false,"error":..}
 *   ctl-peer.c     SO_PEERCRED and who may do what
 *
 * Nothing here prints or exits; functions return 0 or a negative errno.
 */
#ifndef NBDD_COMMON_CONTROL_H
#define NBDD_COMMON_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#define CTL_DEFAULT_PATH "/run/nbdd/control.sock"
#define CTL_PROTOCOL_VERSION 1

/* A request or reply line, without its '\n'. */
#define CTL_MAX_LINE (64 * 1024)
#define CTL_MAX_SPEC 4096
#define CTL_MAX_NAME 64
/* Sanity bounds only: the library gives the precise limits and reasons. */
#define CTL_MAX_CONNECTIONS 1024
#define CTL_MAX_DEVICE_INDEX (1 << 20)
/* Nesting deeper than any valid request is refused by the tokenizer. */
#define CTL_MAX_DEPTH 8

enum ctl_cmd {
	CTL_ATTACH,
	CTL_DETACH,
	CTL_LIST,
	CTL_STATUS,
	CTL_RESIZE,
	CTL_EXPORTS,
	CTL_VERSION,
	CTL_PING,
	CTL__COUNT
};

/*
 * A parsed request. Strings point into @root, which the request owns
 * until ctl_request_clear(); absent optional values are NULL, -1, 0.
 */
struct ctl_request {
	enum ctl_cmd cmd;
	const char *spec;           /* attach */
	int index;                  /* attach, detach, status, resize: /dev/nbdINDEX */
	const char *name;           /* attach, detach, status, resize */
	bool all;                   /* detach */
	uint32_t connections;       /* attach (0: library default) */
	bool readonly;
	uint32_t block_size;
	uint32_t timeout;
	uint32_t dead_conn_timeout;
	uint64_t size;              /* resize: the new size in bytes */
	bool allow_shrink;          /* resize */
	json_object *root;
};

/* ---- ctl-request.c ---- */

const char *ctl_cmd_name(enum ctl_cmd cmd);
/* CTL__COUNT when @name is no command. */
enum ctl_cmd ctl_cmd_from_name(const char *name);
/* Commands that change mappings and need the control permission. */
bool ctl_cmd_mutates(enum ctl_cmd cmd);

void ctl_request_init(struct ctl_request *r, enum ctl_cmd cmd);
void ctl_request_clear(struct ctl_request *r);

/*
 * Parse and validate one request line (@len bytes, no '\n'). On failure
 * returns -errno and writes one line for a person to @err:
 * -EBADMSG not JSON, -EINVAL a bad field, -EOPNOTSUPP unknown command.
 */
int ctl_request_parse(const char *line, size_t len, struct ctl_request *out,
		      char *err, size_t errlen);

/* The JSON object for @r (NULL on ENOMEM): what nbdctl sends. */
json_object *ctl_request_encode(const struct ctl_request *r);

/*
 * "/dev/nbdN" -> N. -EINVAL for anything else (no "nbdN", no leading
 * zeros, no trailing characters).
 */
int ctl_parse_device(const char *text, int *index);
/* 1..CTL_MAX_NAME of [A-Za-z0-9._:-], starting with a letter or digit. */
bool ctl_name_valid(const char *name);
/* "nbdN": the default name of /dev/nbdN; N in *index. */
bool ctl_name_is_default(const char *name, int *index);

/* ---- ctl-reply.c ---- */

/* {"ok":true}; callers add their fields. NULL on ENOMEM. */
json_object *ctl_reply_ok(void);
/* {"ok":false,"error":MSG,"errno":E}; @err may be negative or positive. */
json_object *ctl_reply_error(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Check that @reply is a reply object. Returns 0 if "ok" is true; the
 * daemon's negative errno (-EPROTO if it named none) with *msg set when
 * it is false; -EPROTO with *msg describing the problem when @reply is
 * not a reply at all.
 */
int ctl_reply_status(json_object *reply, const char **msg);

/* A JSON-encoded line with its '\n', malloc()ed; NULL on ENOMEM. */
char *ctl_encode_line(json_object *o, size_t *len);

/* ---- ctl-frame.c ---- */

/*
 * Input bytes cut into lines. Lines longer than @max are reported once
 * as -EMSGSIZE: after that the stream is out of step and the reader
 * should close it.
 */
struct ctl_linebuf {
	char *buf;
	size_t start; /* first byte not yet returned */
	size_t len;   /* bytes held */
	size_t scan;  /* bytes from start known to hold no '\n' */
	size_t cap;
	size_t max;
};

void ctl_linebuf_init(struct ctl_linebuf *lb, size_t max);
void ctl_linebuf_free(struct ctl_linebuf *lb);
/* True while a line is partly received and no complete one waits. */
bool ctl_linebuf_partial(const struct ctl_linebuf *lb);
/* True when a read would have room for at least one byte. */
bool ctl_linebuf_room(const struct ctl_linebuf *lb);

/*
 * One read() from @fd into the buffer. Returns the byte count, 0 at EOF,
 * -EAGAIN when nothing is waiting, -ENOMEM, or the read's -errno.
 */
ssize_t ctl_linebuf_fill(struct ctl_linebuf *lb, int fd);

/*
 * The next complete line: 1 with *line (NUL-terminated in place, '\n'
 * and a trailing '\r' removed) valid until the next call; 0 when more
 * input is needed; -EMSGSIZE when the pending line is too long.
 */
int ctl_linebuf_next(struct ctl_linebuf *lb, char **line, size_t *len);

/* Absolute CLOCK_MONOTONIC milliseconds. */
uint64_t ctl_now_ms(void);

/* Blocking helpers for the CLI; @deadline_ms absolute, 0: none. */
int ctl_connect(const char *path, int *fd);
int ctl_write_all(int fd, const char *buf, size_t len, uint64_t deadline_ms);
/*
 * Read one line; -ETIMEDOUT at the deadline, -ECONNRESET when the peer
 * closes before a complete line, -EMSGSIZE when it is too long.
 */
int ctl_read_line(int fd, struct ctl_linebuf *lb, char **line, size_t *len,
		  uint64_t deadline_ms);

/* ---- ctl-peer.c ---- */

#define CTL_MAX_GROUPS 256

struct ctl_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	int ngroups;                   /* supplementary groups known */
	gid_t groups[CTL_MAX_GROUPS];
};

struct ctl_policy {
	uid_t owner;     /* the daemon's own user: always allowed */
	bool has_group;
	gid_t group;     /* --control-group */
	const char *group_name;
};

/* Credentials of the process at the other end of a Unix socket. */
int ctl_peer_get(int fd, struct ctl_peer *out);
bool ctl_peer_in_group(const struct ctl_peer *peer, gid_t group);

/*
 * May @peer run @cmd? Reading (list, status, exports, version, ping) is
 * open to anyone who could connect; changing mappings needs root, the
 * daemon's own user, or the control group. On refusal, @why gets the
 * reason for the "not permitted: ..." reply.
 */
bool ctl_permitted(const struct ctl_policy *pol, const struct ctl_peer *peer,
		   enum ctl_cmd cmd, char *why, size_t whylen);

#endif /* NBDD_COMMON_CONTROL_H */
