/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Readiness and status for systemd (Type=notify): READY=1 once every
 * socket listens, STATUS= a line `systemctl status` shows, STOPPING=1
 * when shutdown begins. libsystemd's sd_notify() does nothing when
 * $NOTIFY_SOCKET is unset, so nbdd runs the same outside systemd.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "daemon.h"
#include "notify.h"

static void notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void notify(const char *fmt, ...)
{
	va_list ap;
	char *msg;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0)
		return;
	/* 0: not under systemd. A failure only costs systemd's view. */
	r = sd_notify(0, msg);
	if (r < 0)
		log_debug("sd_notify(%s): %s", msg, strerror(-r));
	free(msg);
}

void notify_ready(unsigned mappings)
{
	notify("READY=1\nSTATUS=serving %u device%s", mappings,
	       mappings == 1 ? "" : "s");
}

void notify_stopping(void)
{
	notify("STOPPING=1\nSTATUS=detaching every device");
}
