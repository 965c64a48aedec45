#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Who may do what on the control socket. The socket is 0660, owned by
# root and the --control-group. Anyone who can connect may read (list,
# status, exports, version); attach, detach and resize need root (or the daemon's
# own user) or membership in the control group, checked with SO_PEERCRED
# and SO_PEERGROUPS. A refusal is one line: "not permitted: ...", errno 1.
. "$(dirname "$0")/daemon-lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root (runs commands as nobody with setpriv)"
command -v setpriv >/dev/null || fail "needs setpriv (util-linux)"

as_nobody() { # [setpriv group options] -- command...
	local opts=()
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	setpriv --reuid=65534 "${opts[@]}" "$@"
}
nobody_ctl() { as_nobody --regid=65534 --clear-groups -- "$NBDCTL_BIN" --control "$CTL" "$@"; }

# ---- no control group: root only ----
expect 1 "--control-group nosuchgroup" "$NBDD_BIN" --control "$CTL" --control-group nosuchgroup
start_daemon
[ "$(stat -c '%a %U %G' "$CTL")" = "660 root root" ] || fail "socket is $(stat -c '%a %U %G' "$CTL")"
expect 1 "Permission denied" nobody_ctl list
expect 1 "--control-group" nobody_ctl list

# Opened up by the administrator: reading works, changing does not.
chmod 0666 "$CTL"
nobody_ctl list >/dev/null || fail "nobody may not list"
nobody_ctl exports >/dev/null || fail "nobody may not see exports"
nobody_ctl version >/dev/null || fail "nobody may not ask the version"
expect 1 "no mapping named 'x'" nobody_ctl status x
expect 1 "not permitted: attach needs root" nobody_ctl attach memory:size=1M
expect 1 "not permitted: detach needs root" nobody_ctl detach --all
expect 1 "not permitted: detach" nobody_ctl detach /dev/nbd0
expect 1 "not permitted: resize needs root" nobody_ctl resize /dev/nbd0 1G
out=$(as_nobody --regid=65534 --clear-groups -- /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b"{\"cmd\":\"attach\",\"spec\":\"memory:size=1M\"}\n")
print(s.recv(4096).decode().strip())' "$CTL")
echo "$out" | grep -q '"errno":1}' || fail "refusal errno: $out"
grep -q 'refused attach from uid 65534' "$LOG" || fail "refusal not logged"
ctl list >/dev/null || fail "root may not list"
stop_daemon

# ---- a control group (nogroup, gid 65534) ----
start_daemon --control-group nogroup
[ "$(stat -c '%a %U %G' "$CTL")" = "660 root nogroup" ] || fail "socket is $(stat -c '%a %U %G' "$CTL")"
# a member by primary group gets past the check (the backend is unknown)
expect 1 "unknown backend 'nosuch'" nobody_ctl attach nosuch
# a member by supplementary group too (SO_PEERGROUPS)
expect 1 "unknown backend 'nosuch'" \
	as_nobody --regid=1 --groups=65534 -- "$NBDCTL_BIN" --control "$CTL" attach nosuch
nobody_ctl detach --all || fail "a member may not detach"
# not a member: cannot even connect, and refused if the socket is opened up
expect 1 "Permission denied" \
	as_nobody --regid=1 --clear-groups -- "$NBDCTL_BIN" --control "$CTL" list
chmod 0666 "$CTL"
expect 1 "not permitted: attach needs root or membership in group 'nogroup'" \
	as_nobody --regid=1 --clear-groups -- "$NBDCTL_BIN" --control "$CTL" attach nosuch
stop_daemon
echo "ok"
