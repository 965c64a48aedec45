/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Control replies: building them (daemon) and checking them (nbdctl). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

json_object *ctl_reply_ok(void)
{
	json_object *o = json_object_new_object();

	if (o && json_object_object_add(o, "ok",
					json_object_new_boolean(true)) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* The message stays one line whatever a backend put into it. */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20)
			*s = ' ';
}

json_object *ctl_reply_error(int err, const char *fmt, ...)
{
	json_object *o = json_object_new_object();
	char msg[1024];
	va_list ap;

	if (!o)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	one_line(msg);
	if (err < 0)
		err = -err;
	if (err == 0)
		err = EIO;
	if (json_object_object_add(o, "ok", json_object_new_boolean(false)) ||
	    json_object_object_add(o, "error", json_object_new_string(msg)) ||
	    json_object_object_add(o, "errno", json_object_new_int(err))) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

int ctl_reply_status(json_object *reply, const char **msg)
{
	json_object *ok, *e;
	int64_t err;

	*msg = NULL;
	if (!json_object_is_type(reply, json_type_object) ||
	    !json_object_object_get_ex(reply, "ok", &ok) ||
	    !json_object_is_type(ok, json_type_boolean)) {
		*msg = "the daemon's reply is not a control reply";
		return -EPROTO;
	}
	if (json_object_get_boolean(ok))
		return 0;
	if (json_object_object_get_ex(reply, "error", &e) &&
	    json_object_is_type(e, json_type_string))
		*msg = json_object_get_string(e);
	else
		*msg = "the daemon reported an error without a message";
	err = EPROTO;
	if (json_object_object_get_ex(reply, "errno", &e) &&
	    json_object_is_type(e, json_type_int)) {
		int64_t v = json_object_get_int64(e);

		if (v > 0 && v < 4096)
			err = v;
	}
	return -(int)err;
}

char *ctl_encode_line(json_object *o, size_t *len)
{
	const char *s;
	size_t n;
	char *line;

	s = json_object_to_json_string_length(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	if (!s)
		return NULL;
	line = malloc(n + 2);
	if (!line)
		return NULL;
	memcpy(line, s, n);
	line[n] = '\n';
	line[n + 1] = '\0';
	*len = n + 1;
	return line;
}
