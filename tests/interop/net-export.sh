#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The network export as a user meets it: nbdd --listen ... --export
# NAME=SPEC, then ordinary NBD clients (nbdinfo, qemu-io) on a Unix socket
# and on loopback TCP. Names, sizes, read-only exports, data written and
# read back, NAME.conf backends from --config-dir, and `nbdctl exports`.
# (The handshake's corner cases have their own tests: hostile-*.sh.)
. "$(dirname "$0")/daemon-lib.sh"

command -v nbdinfo >/dev/null || fail "needs nbdinfo (libnbd-bin)"
command -v qemu-io >/dev/null || fail "needs qemu-io (qemu-utils)"
SOCK=$T/nbd.sock
uri() { echo "nbd+unix:///$1?socket=$SOCK"; }
info() { nbdinfo --json "$(uri "$1")"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)["exports"][0][sys.argv[1]])' "$1"; }

mkdir -p "$T/etc/backends.d"
printf 'backend = memory\nsize = 2M\ndescription = from a conf file\n' \
	>"$T/etc/backends.d/small.conf"
chmod 0644 "$T/etc/backends.d/small.conf"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_daemon --listen "unix:$SOCK" --listen "tcp:$PORT" \
	--config-dir "$T/etc" \
	--export disk=memory:size=64M --export-ro ro=memory:size=1M \
	--export small=small

# names and sizes
[ "$(info disk | field export-name)" = disk ] || fail "export name"
[ "$(info disk | field export-size)" = 67108864 ] || fail "export size: $(info disk)"
[ "$(info disk | field is_read_only)" = False ] || fail "disk is read-only"
[ "$(info ro | field is_read_only)" = True ] || fail "--export-ro is writable"
[ "$(info small | field export-size)" = 2097152 ] || fail "small.conf: $(info small)"
nbdinfo --list "nbd+unix:///?socket=$SOCK" >"$T/list"
for n in disk ro small; do
	grep -q "export=\"$n\"\|export: $n\|\"$n\"" "$T/list" || grep -qw "$n" "$T/list" ||
		fail "nbdinfo --list misses $n: $(cat "$T/list")"
done

# data: written, read back, over the Unix socket and over TCP
qemu-io -f raw -c 'write -P 0xa5 1M 2M' "$(uri disk)" >/dev/null
qemu-io -f raw -c 'read -P 0xa5 1M 2M' -c 'read -P 0 0 1M' "$(uri disk)" |
	grep -q 'read 2097152/2097152' || fail "read back over unix"
qemu-io -f raw -c 'read -P 0xa5 1M 2M' "nbd://127.0.0.1:$PORT/disk" |
	grep -q 'read 2097152/2097152' || fail "read back over tcp"
# a write to the read-only export fails, and changes nothing
if qemu-io -f raw -c 'write -P 0x11 0 4k' "$(uri ro)" >"$T/ro.out" 2>&1 &&
   ! grep -qi 'error\|denied\|read-only' "$T/ro.out"; then
	fail "wrote to a read-only export: $(cat "$T/ro.out")"
fi
qemu-io -f raw -r -c 'read -P 0 0 4k' "$(uri ro)" | grep -q 'read 4096/4096' ||
	fail "read-only export changed"

# what nbdctl says about them
ctl exports >"$T/exports"
grep -q "^listening on unix:$SOCK\$" "$T/exports" || fail "exports: $(cat "$T/exports")"
grep -q "^listening on tcp:$PORT\$" "$T/exports" || fail "exports: $(cat "$T/exports")"
grep -Eq '^disk +memory:size=64M +64\.0M +no$' "$T/exports" || fail "exports: $(cat "$T/exports")"
grep -Eq '^ro +memory:size=1M +1\.0M +yes$' "$T/exports" || fail "exports: $(cat "$T/exports")"
ctl --json exports | python3 -c '
import json, sys
d = json.load(sys.stdin)
x = {e["name"]: e for e in d["exports"]}
assert x["disk"]["size"] == 64 << 20 and not x["disk"]["readonly"], d
assert x["ro"]["readonly"] and x["small"]["backend"] == "memory", d
' || fail "exports --json"
stop_daemon
[ ! -e "$SOCK" ] || fail "the Unix listener's socket is left behind"

# without --listen there is no network export at all
start_daemon
[ "$(ctl exports)" = "no network exports (nbdd serves them with --listen and --export)" ] ||
	fail "exports without --listen: $(ctl exports)"
stop_daemon

# a bad export spec stops the start with the backend's reason
expect 1 "unknown backend 'nosuch'" "$NBDD_BIN" --control "$CTL" \
	--listen "unix:$SOCK" --export a=nosuch:x=1
[ ! -e "$CTL" ] || fail "a failed start left its control socket"
echo "ok"
