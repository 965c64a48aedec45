/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* notify.c: readiness and status for systemd (sd_notify). */
#ifndef NBDD_DAEMON_NOTIFY_H
#define NBDD_DAEMON_NOTIFY_H

void notify_ready(unsigned mappings);
void notify_stopping(void);

#endif
