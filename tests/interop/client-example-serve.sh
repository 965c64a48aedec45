#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# examples/programs/serve: a program that defines its own backend (a
# sparse RAM disk of 512-byte sectors) and serves it with libnbdd, driven
# by nbdinfo, nbdsh and qemu-io. It must behave as its comments say:
# 512-byte alignment enforced for it, holes for unwritten blocks, zero
# emulated (and FAST_ZERO refused), no flush, multi-conn, and a clean
# exit on SIGINT or SIGTERM, with clients connected or not.
. "$(dirname "$0")/client-lib.sh"
need nbdinfo nbdsh qemu-io

SERVE=$EXAMPLES/serve
[ -x "$SERVE" ] || fail "no $SERVE (make all builds it)"
M=$((1024 * 1024))

# Start it the way daemon-lib starts nbdd, so its cleanup and
# stop_daemon (SIGTERM, exit 0, no sanitizer report) apply to it too.
start_serve() { # size
	local i
	rm -f "$SOCK"
	"$SERVE" "$SOCK" "$1" >>"$LOG" 2>&1 &
	DAEMON_PID=$!
	for ((i = 0; i < 100 * SLOW; i++)); do
		[ -S "$SOCK" ] && return 0
		alive || { DAEMON_PID=; show_log; fail "serve exited at start-up"; }
		sleep 0.1
	done
	fail "serve did not listen on $SOCK"
}

# ---- usage and a bad size: told, not served
expect 2 "usage: serve SOCKET [SIZE]" "$SERVE"
expect 1 "sectors: the size must be a non-zero multiple of 512" "$SERVE" "$SOCK" 1000
[ ! -e "$SOCK" ] || fail "a failed start left $SOCK"

start_serve 8M
grep -q "serve: export 'sectors' on unix:$SOCK" "$LOG" || fail "no start-up line: $(cat "$LOG")"

# ---- what a client is told
bounded 30 nbdinfo --list --json "$(uri "")" >"$T/list.json"
python3 - "$T/list.json" <<'EOF' || fail "nbdinfo: $(cat "$T/list.json")"
import json, sys
(e,) = json.load(open(sys.argv[1]))["exports"]
want = {"export-name": "sectors",
        "description": "examples/programs/serve.c: RAM, 512-byte sectors",
        "export-size": 8 << 20, "is_read_only": False,
        "is_rotational": False, "can_multi_conn": True, "can_df": True,
        "can_trim": True, "can_flush": False, "can_fua": False,
        "can_cache": False,
        # zero is emulated with pwrite; FAST_ZERO is advertised, and
        # refused per request (below)
        "can_zero": True, "can_fast_zero": True,
        "block_size_minimum": 512, "block_size_preferred": 4096,
        "block_size_maximum": 32 << 20, "contexts": ["base:allocation"]}
for k, v in want.items():
    assert e.get(k) == v, "%s is %r, want %r" % (k, e.get(k), v)
EOF
[ "$(map_json "$(uri sectors)")" = "0 $((8 * M)) 3" ] ||
	fail "a fresh disk is not one hole: $(map_json "$(uri sectors)")"

# ---- qemu-io writes, and a second connection reads it back
bounded 30 qemu-io -f raw -c 'write -P 7 1M 1M' "$(uri sectors)" >/dev/null
bounded 30 qemu-io -f raw -c 'read -P 7 1M 1M' -c 'read -P 0 0 1M' "$(uri sectors)" \
	>"$T/qio.out" 2>&1 || fail "qemu-io read back: $(cat "$T/qio.out")"
[ "$(map_json "$(uri sectors)")" = "0 $M 3
$M $M 0
$((2 * M)) $((6 * M)) 3" ] || fail "map after a write: $(map_json "$(uri sectors)")"

cat >"$T/serve.py" <<'EOF'
import os
import time
import nbd
from nbdcheck import connect, expect_error, extents

K = 1024
HOLE = nbd.STATE_HOLE | nbd.STATE_ZERO
B = 4 * K                     # the backend's allocation unit
h = connect("sectors", strict=0)
other = connect("sectors")    # multi-conn: it sees h's writes at once

h.pwrite(b"\x11" * (2 * B), 3 * B)
assert other.pread(2 * B, 3 * B) == b"\x11" * (2 * B)
assert extents(h, 8 * B, 0) == [(0, 3 * B, HOLE), (3 * B, 2 * B, 0),
                                (5 * B, 3 * B, HOLE)]
assert extents(h, 8 * B, 0, nbd.CMD_FLAG_REQ_ONE) == [(0, 3 * B, HOLE)]
assert extents(h, 8 * B, 3 * B + 512, nbd.CMD_FLAG_REQ_ONE) == \
    [(3 * B + 512, 2 * B - 512, 0)]

# 512-byte sectors: nbdd refuses what is misaligned, the data is intact.
expect_error("EINVAL", h.pread, 100, 1)
expect_error("EINVAL", h.pread, 512, 3 * B + 1)
expect_error("EINVAL", h.pwrite, b"x" * 512, 3 * B + 256)
expect_error("EINVAL", h.trim, 256, 3 * B)
assert h.pread(2 * B, 3 * B) == b"\x11" * (2 * B)
h.pwrite(b"\x22" * 512, 3 * B + 1024)  # one sector, mid-block
assert h.pread(1536, 3 * B) == b"\x11" * 1024 + b"\x22" * 512

# Trim: a whole block becomes a hole, part of one reads zeroes.
h.trim(B, 4 * B)
h.trim(1024, 3 * B)
assert h.pread(2 * B, 3 * B) == bytes(1024) + b"\x22" * 512 + \
    b"\x11" * (B - 1536) + bytes(B)
assert extents(h, 8 * B, 0) == [(0, 3 * B, HOLE), (3 * B, B, 0),
                                (4 * B, 4 * B, HOLE)]

# Zero is emulated by writing zeroes; "fast" zero is refused untouched.
h.pwrite(b"\x33" * B, 6 * B)
expect_error("ENOTSUP", h.zero, B, 6 * B, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(B, 6 * B) == b"\x33" * B
h.zero(B, 6 * B)
assert h.pread(B, 6 * B) == bytes(B)

# No flush and no FUA: not advertised, so refused.
expect_error("EINVAL", h.flush)
expect_error("EINVAL", h.pwrite, b"y" * 512, 0, nbd.CMD_FLAG_FUA)
expect_error("EINVAL", h.cache, 512, 0)
expect_error("EINVAL", h.pread, 512, 8 << 20)

# Requests in flight on both connections at once.
blocks = {i: os.urandom(512) for i in range(0, 2048, 3)}
errors = []


def done(err):
    if err.value:
        errors.append(err.value)
    return 1  # retire the command


for i, d in blocks.items():
    (h if i % 2 else other).aio_pwrite(
        nbd.Buffer.from_bytearray(bytearray(d)), i * 512, done)
end = time.monotonic() + 60
for c in (h, other):
    while c.aio_in_flight():
        assert time.monotonic() < end, "requests still in flight"
        c.poll(1000)
assert not errors, errors
for i, d in blocks.items():
    assert (other if i % 2 else h).pread(512, i * 512) == d, i

# A client that will not hear of block sizes cannot use this export.
try:
    connect("sectors", request_block_size=False)
except nbd.Error as e:
    assert "block size" in str(e), e
else:
    raise AssertionError("GO without NBD_INFO_BLOCK_SIZE was accepted")
h.shutdown()
other.shutdown()
print("serve ok")
EOF
pyrun "$T/serve.py"

# ---- SIGINT: exit 0, socket removed
kill -INT "$DAEMON_PID"
for ((i = 0; i < 100 * SLOW; i++)); do
	alive || break
	sleep 0.1
done
alive && fail "serve still runs 10 s after SIGINT"
rc=0
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=
[ $rc = 0 ] || { show_log; fail "serve exited $rc after SIGINT"; }
grep -q 'serve: Interrupt: stopping' "$LOG" || fail "$(cat "$LOG")"
[ ! -e "$SOCK" ] || fail "serve left its socket behind"

# ---- SIGTERM with a client connected: it is disconnected, serve exits 0
start_serve 1M
cat >"$T/idle.py" <<'EOF'
import time
import nbd
from nbdcheck import connect
h = connect("sectors")
h.pwrite(b"z" * 512, 0)
open(__file__ + ".ready", "w").close()
end = time.monotonic() + 30
try:
    while time.monotonic() < end:   # until the server hangs up
        h.pread(512, 0)
        time.sleep(0.05)
except nbd.Error:
    print("disconnected by the server")
else:
    raise AssertionError("still connected after 30 s")
EOF
PY_LIMIT=60 pyrun "$T/idle.py" >"$T/idle.out" 2>&1 &
IDLE=$!
for ((i = 0; i < 100 * SLOW; i++)); do
	[ -e "$T/idle.py.ready" ] && break
	sleep 0.1
done
[ -e "$T/idle.py.ready" ] || fail "the idle client never connected"
stop_daemon
wait $IDLE || fail "idle client: $(cat "$T/idle.out")"
grep -q "disconnected by the server" "$T/idle.out" || fail "$(cat "$T/idle.out")"
[ ! -e "$SOCK" ] || fail "serve left its socket behind"
echo ok
