/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One validated, permitted request -> its reply. Reading commands answer
 * at once on the loop thread; attach, detach and resize answer later
 * (NULL here) through the worker.
 */
#include <errno.h>

#include "daemon.h"

static json_object *cmd_version(void)
{
	json_object *o = ctl_reply_ok();

	if (o) {
		json_object_object_add(
			o, "version", json_object_new_string(NBDD_VERSION_STRING));
		json_object_object_add(o, "protocol",
				       json_object_new_int(CTL_PROTOCOL_VERSION));
	}
	return o;
}

json_object *command_run(const struct ctl_request *req, uint64_t client_id)
{
	switch (req->cmd) {
	case CTL_ATTACH:
		return mappings_attach(req, client_id);
	case CTL_DETACH:
		return mappings_detach(req, client_id);
	case CTL_LIST:
		return mappings_list();
	case CTL_STATUS:
		return mappings_status(req);
	case CTL_RESIZE:
		return mappings_resize(req, client_id);
	case CTL_EXPORTS:
		return exports_list();
	case CTL_VERSION:
		return cmd_version();
	case CTL_PING:
		return ctl_reply_ok();
	case CTL__COUNT:
		break;
	}
	return ctl_reply_error(-EOPNOTSUPP, "unknown command");
}
