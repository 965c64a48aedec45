#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# nbdctl's failures: one clear line on stderr, exit 1 for a failure and 2
# for bad usage. With no daemon it says how to start one; the daemon's
# own reasons (an unknown backend, a bad spec) reach the user unchanged.
. "$(dirname "$0")/daemon-lib.sh"

# ---- no daemon ----
expect 1 "nbdd is not running" ctl list
expect 1 "systemctl start nbdd" ctl attach memory:size=1M
NBDD_CONTROL=$T/elsewhere.sock expect 1 "$T/elsewhere.sock" "$NBDCTL_BIN" ping
: >"$T/not-a-socket"
expect 1 "cannot connect to nbdd" "$NBDCTL_BIN" --control "$T/not-a-socket" list

# ---- usage errors need no daemon ----
expect 2 "unknown command 'frobnicate'" ctl frobnicate
expect 2 "which backend" ctl attach
expect 2 "the spec is empty" ctl attach ""
expect 2 "--control: empty path" "$NBDCTL_BIN" --control "" list
expect 2 "is not a device" ctl attach memory:size=1M /dev/sda
expect 2 "unexpected argument" ctl attach memory:size=1M /dev/nbd0 extra
expect 2 "--connections x" ctl attach --connections x memory:size=1M
expect 2 "--timeout -1" ctl attach --timeout -1 memory:size=1M
expect 2 "--block-size lots" ctl attach --block-size lots memory:size=1M
expect 2 "--name 'a b'" ctl attach --name 'a b' memory:size=1M
expect 2 "which device" ctl detach
expect 2 "--all takes no device" ctl detach --all /dev/nbd0
expect 2 "is not an nbd device" ctl detach /dev/sda
expect 2 "neither /dev/nbdN nor a mapping name" ctl status 'bad name'
expect 2 "unexpected argument" ctl list extra
expect 2 "only for detach" ctl status --all
expect 2 "its new size" ctl resize /dev/nbd0
expect 2 "'lots' is not a size" ctl resize /dev/nbd0 lots
expect 2 "'0' is not a size" ctl resize /dev/nbd0 0
expect 2 "is not an nbd device" ctl resize /dev/sda 1G
expect 2 "8E is too big" ctl resize /dev/nbd0 8E
expect 2 "99999999999999999999 is too big" ctl resize /dev/nbd0 99999999999999999999
expect 2 "its new size" ctl resize --allow-shrink /dev/nbd0
rc=0; ctl >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "nbdctl without a command exited $rc, want 2"
rc=0; ctl attach --bogus x >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "an unknown option exited $rc, want 2"
ctl --help | grep -q '^  attach ' || fail "nbdctl --help lists no attach"
ctl attach --help | grep -q -- '--dead-conn-timeout' || fail "attach --help"
[ "$(ctl --version)" = "nbdctl 0.1.0" ] || fail "nbdctl --version"

# ---- the daemon's answers ----
start_daemon
expect 1 "unknown backend 'nosuch'" ctl attach nosuch:size=1M
expect 1 "no /etc/nbdd/backends.d/nosuch.conf" ctl attach nosuch
expect 1 "size 'lots'" ctl attach memory:size=lots
expect 1 "name 'nbd3' is reserved for /dev/nbd3" ctl attach --name nbd3 memory:size=1M
expect 1 "/dev/nbd5 is not attached by nbdd" ctl detach /dev/nbd5
expect 1 "no mapping named 'scratch'" ctl detach scratch
expect 1 "no mapping named 'scratch'" ctl status scratch
expect 1 "/dev/nbd0 is not attached by nbdd" ctl status /dev/nbd0
expect 1 "no mapping named 'scratch'" ctl resize scratch 1G
expect 1 "/dev/nbd2 is not attached by nbdd" ctl resize /dev/nbd2 1G
# a relative plugin path is made absolute before it reaches the daemon
expect 1 "$T/no-such-plugin.so" bash -c "cd '$T' && '$NBDCTL_BIN' --control '$CTL' attach ./no-such-plugin.so:x=1"
# with no nbd driver in this kernel an attach still fails in one line
if [ ! -d /sys/module/nbd ]; then
	expect 1 "" ctl attach memory:size=1M
fi
ctl detach --all || fail "detach --all with nothing attached"
[ "$(ctl --json detach --all | python3 -c 'import json,sys; print(json.load(sys.stdin)["detached"])')" = "[]" ] ||
	fail "detach --all --json"
[ -z "$(ctl list)" ] || fail "failed attaches left entries: $(ctl list)"
stop_daemon
echo "ok"
