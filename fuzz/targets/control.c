/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control protocol (common/): what a local user sends to the daemon's
 * control socket. The input is a byte stream cut into lines by the same
 * framing the daemon uses (ctl_linebuf over a pipe, fed in chunks), and
 * each line goes through ctl_request_parse(). Whatever it accepts must be
 * within the documented bounds and survive encode -> parse unchanged
 * (what nbdctl sends is exactly what the daemon validates). Lines are
 * also parsed as daemon replies (nbdctl's side), device paths and names.
 *
 * Input: [knobs 1] then the stream.
 * knobs bits 0-2: line cap 64 << n (bit 3 set: CTL_MAX_LINE)
 *       bits 4-7: write chunk 1 << n bytes
 */
#include <stdint.h>

#include "../fuzz.h"
#include "../../common/control.h"

int fuzz_one(const uint8_t *data, size_t size);

#define CONTROL_MIN(a, b) ((a) < (b) ? (a) : (b))

static void control_same(const struct ctl_request *a,
			 const struct ctl_request *b)
{
	FUZZ_CHECK(a->cmd == b->cmd && a->index == b->index &&
		   a->all == b->all && a->connections == b->connections &&
		   a->readonly == b->readonly &&
		   a->block_size == b->block_size &&
		   a->timeout == b->timeout &&
		   a->dead_conn_timeout == b->dead_conn_timeout &&
		   a->size == b->size && a->allow_shrink == b->allow_shrink);
	FUZZ_CHECK(!a->spec == !b->spec && (!a->spec || !strcmp(a->spec, b->spec)));
	FUZZ_CHECK(!a->name == !b->name && (!a->name || !strcmp(a->name, b->name)));
}

static void control_request(const char *line, size_t len)
{
	struct ctl_request r, again;
	char err[512], err2[512];
	json_object *o;
	char *enc;
	size_t elen;
	int ret;

	memset(err, 0x55, sizeof(err));
	ret = ctl_request_parse(line, len, &r, err, sizeof(err));
	if (ret < 0) {
		FUZZ_CHECK(ret == -EBADMSG || ret == -EINVAL ||
			   ret == -EOPNOTSUPP || ret == -EMSGSIZE ||
			   ret == -ENOMEM);
		/* a message for a person, bounded whatever was echoed */
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) && err[0]);
		FUZZ_CHECK(r.root == NULL);
		return;
	}
	FUZZ_CHECK((unsigned)r.cmd < CTL__COUNT);
	FUZZ_CHECK(r.index >= -1 && r.index <= CTL_MAX_DEVICE_INDEX);
	FUZZ_CHECK(!r.name || ctl_name_valid(r.name));
	FUZZ_CHECK(!r.spec || (r.spec[0] && strlen(r.spec) <= CTL_MAX_SPEC));
	FUZZ_CHECK(r.connections <= CTL_MAX_CONNECTIONS);
	FUZZ_CHECK(r.cmd != CTL_ATTACH || r.spec);
	if (r.cmd == CTL_DETACH || r.cmd == CTL_STATUS)
		FUZZ_CHECK((r.index >= 0) + (r.name != NULL) + r.all == 1);
	if (r.cmd == CTL_RESIZE)
		FUZZ_CHECK((r.index >= 0) + (r.name != NULL) == 1 && !r.all &&
			   r.size > 0 && r.size <= INT64_MAX);

	o = ctl_request_encode(&r);
	FUZZ_CHECK(o != NULL);
	enc = ctl_encode_line(o, &elen);
	FUZZ_CHECK(enc && elen > 0 && enc[elen - 1] == '\n');
	FUZZ_CHECK(memchr(enc, '\n', elen - 1) == NULL);
	ret = ctl_request_parse(enc, elen - 1, &again, err2, sizeof(err2));
	if (ret < 0)
		fprintf(stderr, "re-parse of '%s' failed: %s\n", enc, err2);
	FUZZ_CHECK(ret == 0);
	control_same(&r, &again);
	ctl_request_clear(&again);
	free(enc);
	json_object_put(o);
	ctl_request_clear(&r);
}

static void control_other(const char *line, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(CTL_MAX_DEPTH);
	json_object *o;
	const char *msg;
	int idx = -1, ret;

	FUZZ_CHECK(tok != NULL);
	o = json_tokener_parse_ex(tok, line, (int)len);
	json_tokener_free(tok);
	if (o) {
		ret = ctl_reply_status(o, &msg);
		FUZZ_CHECK(ret <= 0 && ret > -4096);
		FUZZ_CHECK(ret == 0 || msg != NULL);
		json_object_put(o);
	}
	if (ctl_parse_device(line, &idx) == 0)
		FUZZ_CHECK(idx >= 0 && idx <= CTL_MAX_DEVICE_INDEX);
	idx = -1;
	if (ctl_name_is_default(line, &idx))
		FUZZ_CHECK(idx >= 0 && idx <= CTL_MAX_DEVICE_INDEX);
	if (ctl_name_valid(line))
		FUZZ_CHECK(strlen(line) >= 1 && strlen(line) <= CTL_MAX_NAME);
	FUZZ_CHECK(ctl_cmd_from_name(line) <= CTL__COUNT);
}

int fuzz_one(const uint8_t *data, size_t size)
{
	struct ctl_linebuf lb;
	size_t max, chunk, sent = 0;
	int p[2], ret, lines = 0;
	uint8_t knobs;
	ssize_t n;

	if (size < 1)
		return 0;
	knobs = data[0];
	data++;
	size--;
	max = knobs & 8 ? CTL_MAX_LINE : (size_t)64 << (knobs & 7);
	chunk = (size_t)1 << (knobs >> 4);
	FUZZ_CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
	ctl_linebuf_init(&lb, max);
	for (;;) {
		char *line;
		size_t len;

		if (sent < size) {
			n = write(p[1], data + sent, CONTROL_MIN(chunk, size - sent));
			FUZZ_CHECK(n > 0 || errno == EAGAIN);
			if (n > 0)
				sent += (size_t)n;
			if (sent == size) {
				close(p[1]);
				p[1] = -1;
			}
		} else if (p[1] >= 0) {
			close(p[1]);
			p[1] = -1;
		}
		n = ctl_linebuf_fill(&lb, p[0]);
		FUZZ_CHECK(n >= 0 || n == -EAGAIN || n == -ENOBUFS);
		while ((ret = ctl_linebuf_next(&lb, &line, &len)) == 1) {
			FUZZ_CHECK(len <= max && line[len] == '\0');
			FUZZ_CHECK(memchr(line, '\n', len) == NULL);
			control_request(line, len);
			control_other(line, len);
			lines++;
		}
		/* a line over the cap: the daemon answers once and closes */
		if (ret == -EMSGSIZE || n == 0 || n == -ENOBUFS)
			break;
		FUZZ_CHECK(ret == 0);
	}
	FUZZ_CHECK(lines <= (int)size);
	ctl_linebuf_free(&lb);
	close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	return 0;
}
