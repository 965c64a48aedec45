#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The rbd plugin (plugins/rbd) against a real one-node Ceph cluster
# (tests/ceph/cluster.sh, started here and stopped on any exit), driven by
# real clients: nbdinfo, qemu-img, nbdcopy, fio, nbdsh. What the clients
# write is checked in Ceph itself (rbd export, rbd du), not only through
# nbdd. A cluster that cannot start fails the test, with the reason.
. "$(dirname "$0")/client-lib.sh"
need nbdinfo nbdsh nbdcopy qemu-img fio rbd ceph-mon ceph-osd ceph-mgr

PLUGINS=$TOP/${B:-build}/plugins
[ -f "$PLUGINS/rbd.so" ] || fail "no $PLUGINS/rbd.so (make all builds it)"
# Under ASan, the __cxa_throw interceptor needs libstdc++ loaded when nbdd
# (a C program) starts; librados brings it in only later and would abort
# at its first exception.
if [ "${NBDD_SANITIZED:-0}" = 1 ]; then
	LD_PRELOAD=$(gcc -print-file-name=libstdc++.so.6)
	export LD_PRELOAD
fi
CLUSTER=$(cd "$(dirname "$0")/../ceph" && pwd)/cluster.sh
M=$((1024 * 1024))

# The cluster goes first, then what daemon-lib.sh cleans up.
rbd_cleanup() {
	local rc=$?
	"$CLUSTER" stop "$T/ceph" || true
	(exit $rc)
	daemon_cleanup
}
trap rbd_cleanup EXIT

t0=$SECONDS
"$CLUSTER" start "$T/ceph" $$ >/dev/null || fail "the Ceph cluster did not start"
eval "$("$CLUSTER" env "$T/ceph")"
echo "cluster up in $((SECONDS - t0)) s"
export CEPH_CONF
R="pool=$CEPH_POOL,conf=$CEPH_CONF,id=$CEPH_ID,keyring=$CEPH_KEYRING"

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
rbdc() { bounded 60 rbd --id "$CEPH_ID" --keyring "$CEPH_KEYRING" "$@"; }
used() { # image: bytes in use, from the object map (fast-diff)
	rbdc du --format json "$CEPH_POOL/$1" 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["images"][0]["used_size"])'
}

head -c $((48 * M)) /dev/urandom >"$T/src.raw"
head -c $((16 * M)) /dev/urandom >"$T/snap.raw"
rbdc create --size 48M "$CEPH_POOL/disk"
rbdc create --size 64M "$CEPH_POOL/parts"
rbdc create --size 64M "$CEPH_POOL/scratch"
rbdc import --no-progress "$T/snap.raw" "$CEPH_POOL/snapped"
rbdc snap create --no-progress "$CEPH_POOL/snapped@before"
# The head moves on; the snapshot must not.
rbdc bench --io-type write --io-size 4M --io-total 16M --io-pattern seq \
	"$CEPH_POOL/snapped" >/dev/null

# ---- open errors: one clear line, nbdd does not start
# (bounded: an open that wrongly succeeds would serve forever)
nbdd_with() { bounded 60 "$NBDD_BIN" --control "$CTL" --listen "unix:$SOCK" \
	--plugin-dir "$PLUGINS" --export "x=rbd:$1"; }
expect 1 "rbd: no image 'nope' in pool '$CEPH_POOL' (rbd ls lists them)" \
	nbdd_with "$R,image=nope"
expect 1 "rbd: pool 'nopool' does not exist" \
	nbdd_with "pool=nopool,image=disk,conf=$CEPH_CONF,keyring=$CEPH_KEYRING"
expect 1 "rbd: image 'snapped' in pool '$CEPH_POOL' has no snapshot 'nosuch'" \
	nbdd_with "$R,image=snapped,snap=nosuch"
expect 1 "rbd: no key for client.admin: give keyring=FILE" \
	nbdd_with "pool=$CEPH_POOL,image=disk,conf=$CEPH_CONF,keyring=$T/none"
expect 1 "rbd: pool=POOL and image=IMAGE are required" nbdd_with "$R"
expect 1 "rbd: cache must be on or off, not 'maybe'" \
	nbdd_with "$R,image=parts,cache=maybe"
# The image's own configuration applies at open, over ours: refused.
rbdc config image set "$CEPH_POOL/parts" rbd_cache true
expect 1 "rbd: the image configuration of $CEPH_POOL/parts turns rbd_cache on" \
	nbdd_with "$R,image=parts"
rbdc config image rm "$CEPH_POOL/parts" rbd_cache
ceph-authtool --create-keyring "$T/wrong.keyring" --gen-key -n client.admin >/dev/null
expect 1 "rbd: the monitors refused client.admin: wrong key in the keyring" \
	nbdd_with "pool=$CEPH_POOL,image=disk,conf=$CEPH_CONF,keyring=$T/wrong.keyring"
# No monitor where the configuration says: bounded by connect_timeout.
sed "s/^mon host = .*/mon host = [v2:127.0.0.1:$(free_port)]/" "$CEPH_CONF" >"$T/nomon.conf"
t=$SECONDS
expect 1 "rbd: no answer from the monitors (mon_host in the Ceph configuration) within connect_timeout=2 s" \
	nbdd_with "pool=$CEPH_POOL,image=disk,conf=$T/nomon.conf,keyring=$CEPH_KEYRING,connect_timeout=2"
[ $((SECONDS - t)) -lt 20 ] || fail "giving up on the monitors took $((SECONDS - t)) s"

serve --plugin-dir "$PLUGINS" \
	--export disk="rbd:$R,image=disk" \
	--export parts="rbd:$R,image=parts" \
	--export scratch="rbd:$R,image=scratch,exclusive=on" \
	--export snap="rbd:$R,image=snapped,snap=before" \
	--export impatient="rbd:$R,image=snapped,snap=before,timeout=3"

# ---- what nbdinfo sees
for e in disk snap; do info_json $e >"$T/$e.json"; done
python3 - "$T/disk.json" "$T/snap.json" <<'EOF' || fail "nbdinfo: $(cat "$T"/*.json)"
import json, sys
d = json.load(open(sys.argv[1]))["exports"][0]
s = json.load(open(sys.argv[2]))["exports"][0]
want = {"export-size": 48 << 20, "is_read_only": False, "can_flush": True,
        "can_fua": True, "can_trim": True, "can_zero": True,
        "can_multi_conn": True, "can_cache": False}
for k, v in want.items():
    assert d[k] == v, "disk: %s is %r, want %r" % (k, d[k], v)
want = {"export-size": 16 << 20, "is_read_only": True, "can_trim": False,
        "can_zero": False, "can_multi_conn": True}
for k, v in want.items():
    assert s[k] == v, "snap: %s is %r, want %r" % (k, s[k], v)
EOF

# ---- qemu-img round trip; what reached Ceph is what was written
digest() { sha256sum | cut -d' ' -f1; }
want=$(digest <"$T/src.raw")
bounded 120 qemu-img convert -n -W -m 8 -f raw -O raw "$T/src.raw" "$(uri disk)" ||
	fail "qemu-img convert into rbd"
bounded 120 qemu-img convert -f raw -O raw "$(uri disk)" "$T/back.raw" ||
	fail "qemu-img convert out of rbd"
[ "$(digest <"$T/back.raw")" = "$want" ] || fail "qemu-img round trip differs"
[ "$(rbdc export --no-progress "$CEPH_POOL/disk" - | digest)" = "$want" ] ||
	fail "rbd export of what qemu-img wrote differs"

# ---- nbdcopy, four connections each way (multi-conn)
bounded 120 nbdcopy --connections=4 "$(uri disk)" "$T/copy.raw" || fail "nbdcopy out"
[ "$(digest <"$T/copy.raw")" = "$want" ] || fail "nbdcopy's copy differs"
bounded 120 nbdcopy --connections=4 "$T/snap.raw" "$(uri disk)" || fail "nbdcopy in"
head -c $((16 * M)) "$T/snap.raw" >"$T/want.raw"
tail -c +$((16 * M + 1)) "$T/src.raw" >>"$T/want.raw"
[ "$(rbdc export --no-progress "$CEPH_POOL/disk" - | digest)" = "$(digest <"$T/want.raw")" ] ||
	fail "rbd export after nbdcopy differs"

# ---- fio with crc32c verification, many requests in flight
(cd "$T" && bounded 120 fio --name=verify --ioengine=nbd --uri="$(uri disk)" \
	--rw=randrw --bs=4k --iodepth=16 --numjobs=2 --size=16M \
	--offset_increment=16M --verify=crc32c --verify_fatal=1 \
	--runtime=8 --time_based --group_reporting --output-format=json \
	--verify_state_save=0 --output="$T/fio.json" >"$T/fio.log" 2>&1) ||
	fail "fio: $(cat "$T/fio.log" "$T/fio.json")"
python3 - "$T/fio.json" <<'EOF' || fail "fio report: $(cat "$T/fio.json")"
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
r, w = j["read"]["total_ios"], j["write"]["total_ios"]
assert j["error"] == 0 and r > 500 and w > 500, (j["error"], r, w)
print("fio: %d reads, %d writes verified" % (r, w))
EOF

# ---- block status: holes where nothing was written
cat >"$T/parts.py" <<'EOF'
import os
from nbdcheck import connect, extents
M = 1 << 20
h = connect("parts")
h.pwrite(os.urandom(4 * M), 0)
h.pwrite(os.urandom(4 * M), 32 * M)
h.pwrite(os.urandom(4096), 60 * M)
h.flush()
h.shutdown()
EOF
pyrun "$T/parts.py"
map=$(map_json "$(uri parts)" | tr '\n' ' ')
# Objects are 4 MiB: the 4 KiB write at 60 MiB allocates [60M, 64M).
[ "$map" = "0 $((4 * M)) 0 $((4 * M)) $((28 * M)) 3 $((32 * M)) $((4 * M)) 0 $((36 * M)) $((24 * M)) 3 $((60 * M)) $((4 * M)) 0 " ] ||
	fail "nbdinfo --map of parts: $map"

# ---- discard reaches Ceph: rbd du shrinks
cat >"$T/fill.py" <<'EOF'
import os
from nbdcheck import connect
h = connect("scratch")
h.pwrite(os.urandom(32 << 20), 0)
h.flush()
h.shutdown()
EOF
cat >"$T/trim.py" <<'EOF'
from nbdcheck import connect
h = connect("scratch")
h.trim(24 << 20, 0)
h.flush()
h.shutdown()
EOF
pyrun "$T/fill.py"
before=$(used scratch)
pyrun "$T/trim.py"
after=$(used scratch)
[ "$before" = $((32 * M)) ] && [ "$after" = $((8 * M)) ] ||
	fail "rbd du of scratch: $before bytes before the discard, $after after (want 32 MiB, 8 MiB)"
# Zeroes: with NO_HOLE written out (thick), else deallocated.
cat >"$T/zero.py" <<'EOF'
import nbd
from nbdcheck import connect
h = connect("scratch")
h.zero(4 << 20, 32 << 20, nbd.CMD_FLAG_NO_HOLE)
h.zero(8 << 20, 24 << 20)
h.flush()
assert h.pread(12 << 20, 24 << 20) == bytes(12 << 20)
h.shutdown()
EOF
pyrun "$T/zero.py"
[ "$(used scratch)" = $((4 * M)) ] ||
	fail "rbd du of scratch after zeroing: $(used scratch) bytes, want 4 MiB"
[ "$(map_json "$(uri scratch)" | tr '\n' ' ')" = "0 $((32 * M)) 3 $((32 * M)) $((4 * M)) 0 $((36 * M)) $((28 * M)) 3 " ] ||
	fail "nbdinfo --map of scratch after zeroing: $(map_json "$(uri scratch)")"

# ---- exclusive=on: nbdd holds the lock, another exclusive client is refused
expect 1 "rbd: exclusive=on: image $CEPH_POOL/scratch is locked by another client" \
	"$NBDD_BIN" --control "$T/ctl2" --listen "unix:$T/sock2" \
	--plugin-dir "$PLUGINS" --export "x=rbd:$R,image=scratch,exclusive=on"

# ---- librbd's cache is off, even where the configuration file turns it on
# (it would acknowledge writes a crashed nbdd cannot recover), unless the
# spec says cache=on; read back from the client's admin socket
cache_seen() { # name extra-spec
	local dir=$T/cache-$1 pid asok="" i
	mkdir -p "$dir"
	{ cat "$CEPH_CONF"
	  printf '[client.%s]\nrbd cache = true\nadmin socket = %s/$pid.asok\n' \
		"$CEPH_ID" "$dir"; } >"$dir/ceph.conf"
	"$NBDD_BIN" --control "$dir/ctl" --listen "unix:$dir/sock" \
		--plugin-dir "$PLUGINS" --export "x=rbd:pool=$CEPH_POOL,image=parts,conf=$dir/ceph.conf,id=$CEPH_ID,keyring=$CEPH_KEYRING$2" \
		>"$dir/log" 2>&1 &
	pid=$!
	for i in $(seq 150); do
		asok=$(ls "$dir"/*.asok 2>/dev/null | head -n 1)
		[ -n "$asok" ] && [ -S "$dir/sock" ] && break
		sleep 0.2
	done
	[ -n "$asok" ] || fail "no admin socket from nbdd ($1): $(cat "$dir/log")"
	bounded 30 ceph --admin-daemon "$asok" config get rbd_cache |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["rbd_cache"])'
	kill "$pid"
	wait "$pid" || true
}
seen=$(cache_seen default "")
[ "$seen" = false ] || fail "rbd_cache is '$seen' inside nbdd by default, want false"
seen=$(cache_seen on ",cache=on")
[ "$seen" = true ] || fail "rbd_cache is '$seen' inside nbdd with cache=on, want true"

# ---- the snapshot: its own bytes, read-only
[ "$(bounded 60 nbdcopy "$(uri snap)" - | digest)" = "$(digest <"$T/snap.raw")" ] ||
	fail "the snapshot does not read as it was taken"
cat >"$T/snap.py" <<'EOF'
from nbdcheck import connect, expect_error
h = connect("snap", strict=0)
expect_error("EPERM", h.pwrite, b"x" * 512, 0)
expect_error("EPERM", h.trim, 4096, 0)
h.shutdown()
EOF
pyrun "$T/snap.py"
[ "$(rbdc export --no-progress "$CEPH_POOL/snapped@before" - | digest)" = "$(digest <"$T/snap.raw")" ] ||
	fail "the snapshot changed"

# ---- timeout=3: an OSD that stops answering fails the request in time,
# and the same request works once it is back
OSD=$(cat "$T/ceph/run/osd.0.daemon-pid")
cat >"$T/timeout.py" <<'EOF'
import os, signal, sys, time
from nbdcheck import connect, expect_error
osd = int(sys.argv[1])
want = open(sys.argv[2], "rb").read(4096)
h = connect("impatient")
os.kill(osd, signal.SIGSTOP)
try:
    t = time.monotonic()
    expect_error("EIO", h.pread, 4096, 0)
    took = time.monotonic() - t
finally:
    os.kill(osd, signal.SIGCONT)
assert 2.5 < took < 20, "the read failed after %.1f s, want about 3" % took
assert h.pread(4096, 0) == want
h.shutdown()
print("timeout: failed after %.1f s, then read" % took)
EOF
PYTHONPATH=$T/py bounded 60 nbdsh -n -c "import sys; sys.argv = ['timeout.py', '$OSD', '$T/snap.raw']; exec(open('$T/timeout.py').read())" ||
	fail "timeout=3 with the OSD stopped (see above)"
grep -q "read of 4096 bytes at 0 on $CEPH_POOL/snapped@before: Connection timed out" "$LOG" ||
	fail "the timed-out read's reason is not in the log"

# ---- no timeout (Ceph's default): requests wait for a stopped OSD and
# complete, with the right data, once it is back
cat >"$T/resume.py" <<'EOF'
import os, signal, sys, threading, time
from nbdcheck import connect
osd = int(sys.argv[1])
want = open(sys.argv[2], "rb").read(8192)
h = connect("snap", strict=0)
os.kill(osd, signal.SIGSTOP)
threading.Timer(3, os.kill, (osd, signal.SIGCONT)).start()
t = time.monotonic()
try:
    got = h.pread(8192, 1 << 20)
finally:
    os.kill(osd, signal.SIGCONT)
took = time.monotonic() - t
assert got == want, "the read after the OSD came back returned other data"
assert took > 2.5, "the read finished after %.1f s, while the OSD was stopped" % took
h.shutdown()
print("resume: the read waited %.1f s for the OSD and completed" % took)
EOF
dd if="$T/snap.raw" bs=1M skip=1 count=1 status=none >"$T/snap.1M"
PYTHONPATH=$T/py bounded 60 nbdsh -n -c "import sys; sys.argv = ['resume.py', '$OSD', '$T/snap.1M']; exec(open('$T/resume.py').read())" ||
	fail "a read with the OSD stopped for 3 s (see above)"

stop_daemon
grep -q "write of 512 bytes at 0 on $CEPH_POOL/snapped" "$LOG" && fail "a refused write reached librbd"
echo "ok (total $((SECONDS - t0)) s)"
