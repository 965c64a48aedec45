#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The nbd backend (plugins/nbd, libnbd): other NBD servers (nbdkit,
# qemu-nbd, and nbdd itself over Unix and TCP) served again by nbdd and driven by real clients. What the
# remote can do is what nbdinfo sees through nbdd (size, block sizes,
# can_*, read-only, the block status map); the request flags reach the
# remote (nbdkit's log filter shows FUA, NO_HOLE, FAST_ZERO, cache,
# flush); data written with qemu-img, nbdcopy, nbdsh and fio (crc32c
# verify) is what the remote holds; 8 requests are in flight at once on
# one remote connection; multi-conn opens 4 connections, its absence 1; TLS (PSK) through an nbds+unix URI; a remote killed while
# 64 reads are in flight fails them with EIO at once and nbdd lives on;
# bad specs stop the start with a message naming the URI and libnbd's
# reason. A request the remote fails fails alone, with the remote's errno.
. "$(dirname "$0")/client-lib.sh"
need nbdkit nbdinfo nbdsh nbdcopy qemu-img qemu-nbd fio

PLUGINS=$TOP/${B:-build}/plugins
[ -f "$PLUGINS/nbd.so" ] || fail "no $PLUGINS/nbd.so (make all builds it)"
M=$((1024 * 1024))

# ---- remotes: nbdkit instances and a second nbdd, stopped at exit
REMOTES=()
stop_remotes() {
	local p
	for p in "${REMOTES[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
}
trap 'rc=$?; stop_remotes; (exit $rc); daemon_cleanup' EXIT

kit_uri() { echo "nbd+unix:///?socket=$T/$1.sock"; }

# Wait until a server answers on a Unix socket (bounded).
wait_serving() { # uri what
	local i
	for ((i = 0; i < 100 * SLOW; i++)); do
		nbdinfo --size "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "$2 does not answer on $1"
}

TLS_URI="nbds+unix://alice@/?socket=$T/tls.sock&tls-psk-file=$T/psk"

start_kit() { # name nbdkit-args...
	local name=$1 probe
	shift
	nbdkit --foreground --unix "$T/$name.sock" "$@" >"$T/$name.out" 2>&1 &
	REMOTES+=($!)
	eval "KIT_PID_$name=$!"
	probe=$(kit_uri "$name")
	[ "$name" = tls ] && probe=$TLS_URI
	wait_serving "$probe" "nbdkit $name"
}

start_kit mem memory 64M
start_kit small --filter=log --filter=blocksize-policy memory 16M \
	logfile="$T/small.log" blocksize-minimum=512 \
	blocksize-preferred=64K blocksize-maximum=1M
start_kit single --filter=log --filter=multi-conn memory 16M \
	logfile="$T/single.log" multi-conn-mode=disable
start_kit ro -r sparse-random 32M seed=7
start_kit sparse sparse-random 32M seed=11 percent=30 runlength=262144
start_kit slow --filter=delay memory 16M delay-read=500ms
start_kit victim memory 16M
truncate -s 16M "$T/again.img"
start_kit again file "$T/again.img"
start_kit err --filter=error memory 16M error-pwrite=ENOSPC \
	error-pwrite-rate=100% error-zero=EIO error-zero-rate=100%
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | sed 's/^/alice:/' >"$T/psk"
start_kit tls --tls=require --tls-psk="$T/psk" memory 16M
# qemu's server, on an image with data at 1M and 5M and holes elsewhere.
truncate -s 16M "$T/qemu.img"
head -c 65536 /dev/urandom | dd of="$T/qemu.img" bs=64K seek=16 conv=notrunc status=none
head -c 65536 /dev/urandom | dd of="$T/qemu.img" bs=64K seek=80 conv=notrunc status=none
qemu-nbd --socket="$T/qemu.sock" -f raw -x disk --persistent --shared=8 \
	"$T/qemu.img" >"$T/qemu.out" 2>&1 &
REMOTES+=($!)
wait_serving "nbd+unix:///disk?socket=$T/qemu.sock" "qemu-nbd"
# nbdd itself, on a Unix socket and on loopback TCP.
UP_CTL=$T/up.ctl UP_SOCK=$T/up.sock
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$NBDD_BIN" --control "$UP_CTL" --listen "unix:$UP_SOCK" --listen "tcp:$PORT" \
	--export m=memory:size=32M >"$T/up.log" 2>&1 &
REMOTES+=($!)
wait_serving "nbd+unix:///m?socket=$UP_SOCK" "the upstream nbdd"
wait_serving "nbd://127.0.0.1:$PORT/m" "the upstream nbdd on TCP"

# ---- bad specs stop the start, with the reason
nbdd_with() { # spec
	"$NBDD_BIN" --control "$CTL" --listen "unix:$SOCK" \
		--plugin-dir "$PLUGINS" --export x="$1"
}
expect 1 "nbd: unknown parameter 'colour' (nbd takes uri=, connections=; TLS settings go in the URI)" \
	nbdd_with "nbd:uri=$(kit_uri mem),colour=red"
expect 1 "nbd: uri=URI is required" nbdd_with "nbd:connections=2"
expect 1 "nbd: connections must be a number from 1 to 16, not '17'" \
	nbdd_with "nbd:uri=$(kit_uri mem),connections=17"
expect 1 "nbd: connections must be a number from 1 to 16, not '0'" \
	nbdd_with "nbd:uri=$(kit_uri mem),connections=0"
expect 1 "nbd: cannot connect to nbd+unix:///?socket=$T/nowhere.sock: nbd_connect_uri: connect: No such file or directory" \
	nbdd_with "nbd:uri=nbd+unix:///?socket=$T/nowhere.sock"
expect 1 "nbd: cannot connect to gopher://x/: nbd_connect_uri: unknown NBD URI scheme: gopher" \
	nbdd_with "nbd:uri=gopher://x/"
expect 1 "nbd: $(kit_uri single) does not advertise multi-conn, so connections=2 could show clients an inconsistent image: use connections=1" \
	nbdd_with "nbd:uri=$(kit_uri single),connections=2"

# Connections each logged remote has had so far (probes, bad specs).
connects() { grep -c ' Connect ' "$T/$1.log" || true; }
SMALL0=$(connects small) SINGLE0=$(connects single)
serve --plugin-dir "$PLUGINS" \
	--export mem="nbd:uri=$(kit_uri mem)" \
	--export small="nbd:uri=$(kit_uri small)" \
	--export small2="nbd:uri=$(kit_uri small),connections=2" \
	--export single="nbd:uri=$(kit_uri single)" \
	--export ro="nbd:uri=$(kit_uri ro)" \
	--export sparse="nbd:uri=$(kit_uri sparse)" \
	--export slow="nbd:uri=$(kit_uri slow),connections=1" \
	--export victim="nbd:uri=$(kit_uri victim)" \
	--export again="nbd:uri=$(kit_uri again)" \
	--export err="nbd:uri=$(kit_uri err)" \
	--export tls="nbd:uri=$TLS_URI" \
	--export chain="nbd:uri=nbd+unix:///m?socket=$UP_SOCK" \
	--export tcp="nbd:uri=nbd://127.0.0.1:$PORT/m" \
	--export qemu="nbd:uri=nbd+unix:///disk?socket=$T/qemu.sock"

# ---- multi-conn: 4 connections by default, 2 when asked, 1 without it
[ $(($(connects small) - SMALL0)) -eq 6 ] ||
	fail "small: $(($(connects small) - SMALL0)) connections, want 4 + 2"
[ $(($(connects single) - SINGLE0)) -eq 1 ] ||
	fail "single: $(($(connects single) - SINGLE0)) connections, want 1"

# ---- what nbdinfo sees through nbdd is the remote's
nbdinfo_json() { bounded 30 nbdinfo --json "$1"; }
for pair in mem:mem small:small ro:ro single:single qemu:qemu; do
	remote=$(kit_uri "${pair%%:*}")
	[ "${pair%%:*}" = qemu ] && remote="nbd+unix:///disk?socket=$T/qemu.sock"
	nbdinfo_json "$remote" >"$T/remote.json"
	nbdinfo_json "$(uri "${pair##*:}")" >"$T/ours.json"
	python3 - "$T/remote.json" "$T/ours.json" "$pair" <<'EOF' ||
import json, sys
remote = json.load(open(sys.argv[1]))["exports"][0]
ours = json.load(open(sys.argv[2]))["exports"][0]
keys = ["export-size", "is_read_only", "is_rotational", "can_flush",
        "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_cache"]
if sys.argv[3] in ("small:small", "qemu:qemu"):
    keys += ["block_size_minimum", "block_size_preferred",
             "block_size_maximum"]
for k in keys:
    assert ours.get(k) == remote.get(k), \
        "%s: %s is %r through nbdd, %r on the remote" % (
            sys.argv[3], k, ours.get(k), remote.get(k))
# One connection, or a multi-conn remote: one consistent image.
assert ours["can_multi_conn"] is True, ours
print(sys.argv[3], "matches:", ", ".join(
    "%s=%s" % (k, ours.get(k)) for k in keys))
EOF
		fail "nbdinfo through nbdd differs from the remote ($pair)"
done

# ---- block status: the map through nbdd is the remote's
map_json "$(kit_uri sparse)" >"$T/map.remote"
map_json "$(uri sparse)" >"$T/map.ours"
[ "$(wc -l <"$T/map.remote")" -gt 10 ] || fail "sparse-random gave a trivial map"
cmp -s "$T/map.remote" "$T/map.ours" ||
	fail "maps differ: $(diff "$T/map.remote" "$T/map.ours" | head)"
map_json "nbd+unix:///disk?socket=$T/qemu.sock" >"$T/map.remote"
map_json "$(uri qemu)" >"$T/map.ours"
cmp -s "$T/map.remote" "$T/map.ours" ||
	fail "qemu-nbd maps differ: $(diff "$T/map.remote" "$T/map.ours" | head)"
[ "$(bounded 60 nbdcopy "$(uri qemu)" - | sha256sum)" = "$(sha256sum <"$T/qemu.img")" ] ||
	fail "qemu-nbd's image read through nbdd differs"
grep -q ' 3$' "$T/map.ours" || fail "no hole+zero extent in $(head "$T/map.ours")"

# ---- flags reach the remote; errors of one request are that request's
cat >"$T/flags.py" <<'EOF'
import os
import nbd
from nbdcheck import connect, expect_error, extents

h = connect("small")
assert h.get_block_size(nbd.SIZE_MINIMUM) == 512
h.pwrite(b"\xab" * 4096, 0, nbd.CMD_FLAG_FUA)
h.zero(4096, 8192, nbd.CMD_FLAG_NO_HOLE)
h.zero(4096, 16384)
h.zero(4096, 24576, nbd.CMD_FLAG_FAST_ZERO)
h.trim(4096, 32768, nbd.CMD_FLAG_FUA)
h.cache(4096, 0)
h.flush()
assert h.pread(4096, 0) == b"\xab" * 4096
# The remote refuses an unaligned request (its minimum is 512): nbdd
# checks block sizes first, so that one is refused here with EINVAL.
h.set_strict_mode(0)
expect_error("EINVAL", h.pread, 100, 1)
h.shutdown()

# The remote fails one request: that request fails, with its errno, and
# the connection goes on.
h = connect("err")
for _ in range(3):
    expect_error("ENOSPC", h.pwrite, b"x" * 4096, 0)
    expect_error("EIO", h.zero, 4096, 0)
    assert h.pread(4096, 0) == bytes(4096)
h.shutdown()

# A read-only remote: writes are refused, reads come through.
h = connect("ro", strict=0)
expect_error("EPERM", h.pwrite, b"x" * 512, 0)
r = nbd.NBD()
r.connect_uri("nbd+unix:///?socket=%s/ro.sock" % os.environ["T"])
assert h.pread(1 << 20, 1 << 20) == r.pread(1 << 20, 1 << 20)
print("flags ok")
EOF
T=$T pyrun "$T/flags.py"
log=$(cut -d' ' -f3- "$T/small.log")
grep -q "export 'err': nbd: pwrite failed: pwrite of 4096 bytes at 0: the server replied: No space left on device" "$LOG" ||
	fail "no log line for the remote's ENOSPC: $(grep err "$LOG" | tail -n 3)"
for want in "Write id=[0-9]+ offset=0x0 count=0x1000 fua=1" \
	"Zero id=[0-9]+ offset=0x2000 count=0x1000 trim=0 fua=0 fast=0" \
	"Zero id=[0-9]+ offset=0x4000 count=0x1000 trim=1 fua=0 fast=0" \
	"Zero id=[0-9]+ offset=0x6000 count=0x1000 trim=1 fua=0 fast=1" \
	"Trim id=[0-9]+ offset=0x8000 count=0x1000 fua=1" \
	"Cache id=[0-9]+ offset=0x0 count=0x1000" "Flush id=[0-9]+"; do
	grep -Eq "$want" <<<"$log" || fail "the remote never saw '$want'"
done

# ---- data: qemu-img, nbdcopy, fio through nbdd; the remote holds it
head -c $((24 * M)) /dev/urandom >"$T/src"
truncate -s $((32 * M)) "$T/src" # and 8 MiB of zeroes
bounded 60 qemu-img convert -n -f raw -O raw "$T/src" "$(uri chain)" ||
	fail "qemu-img convert into the chain"
bounded 60 qemu-img convert -f raw -O raw "nbd+unix:///m?socket=$UP_SOCK" "$T/back" ||
	fail "qemu-img convert out of the upstream nbdd"
cmp "$T/src" "$T/back" || fail "upstream nbdd does not hold what went through the chain"
[ "$(map_json "$(uri chain)")" = "$(map_json "nbd+unix:///m?socket=$UP_SOCK")" ] ||
	fail "the chain's map is not the upstream's"
[ "$(bounded 60 nbdcopy "$(uri tcp)" - | sha256sum)" = "$(sha256sum <"$T/src")" ] ||
	fail "reading the upstream nbdd over TCP differs"

truncate -s $((64 * M)) "$T/src"
bounded 60 nbdcopy --connections=4 "$T/src" "$(uri mem)" || fail "nbdcopy into mem"
bounded 60 nbdcopy "$(kit_uri mem)" "$T/back" || fail "nbdcopy out of nbdkit"
cmp "$T/src" "$T/back" || fail "nbdkit does not hold what nbdcopy wrote through nbdd"
[ "$(sha256sum <"$T/src")" = "$(bounded 60 nbdcopy "$(uri mem)" - | sha256sum)" ] ||
	fail "reading back through nbdd differs"

(cd "$T" && bounded 60 fio --name=verify --ioengine=nbd --uri="$(uri mem)" \
	--rw=randrw --bs=4k --iodepth=32 --numjobs=2 --size=16M \
	--offset_increment=16M --verify=crc32c --verify_fatal=1 \
	--verify_state_save=0 --runtime=4 --time_based --group_reporting \
	--output-format=json --output="$T/fio.json" >"$T/fio.log" 2>&1) ||
	fail "fio through nbdd: $(tail "$T/fio.log")"
python3 - "$T/fio.json" <<'EOF' || fail "fio report"
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
assert j["error"] == 0, j["error"]
r, w = j["read"]["total_ios"], j["write"]["total_ios"]
assert r > 1000 and w > 1000, (r, w)
print("fio: %d reads, %d writes verified" % (r, w))
EOF

# ---- requests share one libnbd connection in flight: 8 reads that
# take the remote 0.5 s each finish together, not one after another
cat >"$T/slow.py" <<'EOF'
import time
import nbd
from nbdcheck import connect

h = connect("slow")
bufs = [nbd.Buffer(4096) for _ in range(8)]
start = time.monotonic()
cookies = [h.aio_pread(b, 4096 * i) for i, b in enumerate(bufs)]
while h.aio_in_flight() > 0:
    h.poll(-1)
took = time.monotonic() - start
for c in cookies:
    h.aio_command_completed(c)
assert took < 2.5, "8 reads of 0.5 s each took %.2f s: serialised" % took
print("8 delayed reads on one remote connection took %.2f s" % took)
EOF
pyrun "$T/slow.py"

# ---- TLS (PSK) to a remote that requires it
cat >"$T/tls.py" <<'EOF'
import os
import nbd
from nbdcheck import connect

h = connect("tls")
h.pwrite(b"secret" * 100, 4096)
r = nbd.NBD()
r.set_tls(nbd.TLS_REQUIRE)
r.set_tls_username("alice")
r.set_tls_psk_file(os.environ["T"] + "/psk")
r.connect_uri("nbd+unix:///?socket=%s/tls.sock" % os.environ["T"])
assert r.get_tls_negotiated()
assert r.pread(600, 4096) == b"secret" * 100
print("tls ok")
EOF
T=$T pyrun "$T/tls.py"

# ---- the remote dies with 64 reads in flight: EIO for what did not
# make it, promptly; nbdd lives on and serves its other exports
cat >"$T/victim.py" <<'EOF'
import os, signal, time
import nbd
from nbdcheck import connect, expect_error

h = connect("victim")
h.pwrite(b"v" * 65536, 0)
bufs = [nbd.Buffer(65536) for _ in range(64)]
cookies = [h.aio_pread(b, 0) for b in bufs]
os.kill(int(os.environ["VICTIM"]), signal.SIGKILL)
start = time.monotonic()
while h.aio_in_flight() > 0:
    h.poll(-1)
failed = 0
for c in cookies:
    try:
        h.aio_command_completed(c)
    except nbd.Error as e:
        assert e.errno == "EIO", e
        failed += 1
expect_error("EIO", h.pread, 512, 0)
expect_error("EIO", h.pwrite, b"x" * 512, 0)
print("%d of 64 reads failed with EIO; drained in %.2f s"
      % (failed, time.monotonic() - start))
h.shutdown()
EOF
VICTIM=$KIT_PID_victim T=$T pyrun "$T/victim.py"
grep -q "nbd: pread failed: pread of 512 bytes at 0: connection [1-4] to $(kit_uri victim) is lost (" "$LOG" ||
	fail "no clear log line about the lost remote: $(grep victim "$LOG" | tail -n 3)"
alive || fail "nbdd died with its remote"
[ "$(bounded 30 nbdinfo --size "$(uri mem)")" = $((64 * M)) ] ||
	fail "the other exports stopped working"

# ---- a remote that comes back is connected again by a later request,
# if it has the same size
nbdsh_again() { # python: run with h on export "again"; exit status
	bounded 30 nbdsh -u "$(uri again)" -c "$1" >"$T/again.out" 2>&1
}
nbdsh_again 'h.pwrite(b"A" * 65536, 65536)' || fail "write to again: $(cat "$T/again.out")"
# Poll with requests, each of which must fail with EIO, until the log
# has one more line matching ERE (bounded).
fail_until_logged() { # ere what
	local before i
	before=$(grep -Ec "$1" "$LOG" || true)
	for ((i = 0; i < 50 * SLOW; i++)); do
		! nbdsh_again 'h.pread(512, 0)' || fail "$2: a read succeeded"
		grep -q 'Input/output error' "$T/again.out" || fail "$2: $(cat "$T/again.out")"
		[ "$(grep -Ec "$1" "$LOG" || true)" -gt "$before" ] && return 0
		sleep 0.2
	done
	fail "$2: the log never said '$1': $(grep again "$LOG" | tail -n 3)"
}
LOST="export 'again': nbd: pread failed: pread of 512 bytes at 0: connection [1-4] to .* is lost \(connecting again:"
restart_again() { # size
	kill -KILL "$KIT_PID_again"
	wait "$KIT_PID_again" 2>/dev/null || true
	fail_until_logged "$LOST nbd_connect_uri: connect: Connection refused\)" \
		"remote down"
	rm -f "$T/again.sock"
	truncate -s "$1" "$T/again.img"
	start_kit again file "$T/again.img"
}
restart_again 32M
fail_until_logged "$LOST it came back with another size\)" "size changed"
restart_again 16M
for ((i = 0; i < 50 * SLOW; i++)); do
	nbdsh_again 'assert h.pread(65536, 65536) == b"A" * 65536' && break
	sleep 0.2
done
[ $i -lt $((50 * SLOW)) ] ||
	fail "no request got through after the remote came back: $(cat "$T/again.out")"

stop_daemon
echo ok
