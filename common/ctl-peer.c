/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who is on the other end of the control socket, and what they may do.
 *
 * The kernel vouches for the credentials (SO_PEERCRED, SO_PEERGROUPS:
 * taken at connect() time), so a client cannot claim to be someone else.
 * The decision itself is a pure function for the unit tests.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "control.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

int ctl_peer_get(int fd, struct ctl_peer *out)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	memset(out, 0, sizeof(*out));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	out->pid = cred.pid;
	out->uid = cred.uid;
	out->gid = cred.gid;
	/*
	 * Without the supplementary groups (kernels before 4.13, or more
	 * than we have room for) only the primary group counts: the safe
	 * direction to err in.
	 */
	len = sizeof(out->groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, out->groups, &len) == 0)
		out->ngroups = (int)(len / sizeof(gid_t));
	else
		out->ngroups = 0;
	return 0;
}

bool ctl_peer_in_group(const struct ctl_peer *peer, gid_t group)
{
	int i;

	if (peer->gid == group)
		return true;
	for (i = 0; i < peer->ngroups && i < CTL_MAX_GROUPS; i++)
		if (peer->groups[i] == group)
			return true;
	return false;
}

bool ctl_permitted(const struct ctl_policy *pol, const struct ctl_peer *peer,
		   enum ctl_cmd cmd, char *why, size_t whylen)
{
	if (!ctl_cmd_mutates(cmd))
		return true;
	if (peer->uid == 0 || peer->uid == pol->owner)
		return true;
	if (pol->has_group && ctl_peer_in_group(peer, pol->group))
		return true;
	if (pol->has_group)
		snprintf(why, whylen,
			 "not permitted: %s needs root or membership in "
			 "group '%s' (uid %u is neither)",
			 ctl_cmd_name(cmd),
			 pol->group_name ? pol->group_name : "?",
			 (unsigned)peer->uid);
	else
		snprintf(why, whylen,
			 "not permitted: %s needs root (uid %u is not; "
			 "nbdd --control-group GROUP lets a group in)",
			 ctl_cmd_name(cmd), (unsigned)peer->uid);
	return false;
}
