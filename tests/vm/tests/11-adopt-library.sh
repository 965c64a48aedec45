#!/usr/bin/env bash
# vm-timeout: 300
#
# Surviving the server through the library: with a dead-conn timeout the
# kernel holds /dev/nbdX when its server dies (kill -9) and a new process
# takes it over with nbdd_mapping_adopt() (RECONFIGURE): a read issued in
# the gap waits and then completes, data written before the crash reads
# back, a device whose server is alive is not taken from it, and a
# graceful hand-over (-k: nbdd_mapping_abandon()) works the same way.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
ATTACH=$B/examples/attach
need_file "$ATTACH" "the example program: make"
IMG=$TMPDIR/disk.img
SPEC=file:path=$IMG

start_attach() { # name args...
	local name=$1
	shift
	spawn "$name" "$ATTACH" "$@"
	APID=$SPAWNED_PID
	wait_until 30 "$name to print its device" grep -q '^/dev/nbd' "$TMPDIR/$name.log"
	DEV=$(grep -m1 '^/dev/nbd' "$TMPDIR/$name.log")
	SYS=/sys/block/${DEV#/dev/}
	wait_for_dev "$DEV"
	log "$name: $DEV (pid $APID)"
}

wait_exit() { # pid name
	local rc=0
	wait_until 20 "$2 to exit" _gone "$1"
	wait "$1" || rc=$?
	[ $rc -eq 0 ] || fail "$2 exited with status $rc: $(tail -n 20 "$TMPDIR/$2.log")"
}
_gone() { ! kill -0 "$1" 2>/dev/null; }

read_back() { # what
	dd if="$DEV" of="$TMPDIR/back" bs=1M skip=1 count=4 iflag=direct status=none
	cmp "$TMPDIR/back" "$TMPDIR/pattern" || fail "$1: data differs"
}

truncate -s 64M "$IMG"
start_attach first -d 60 -k "$SPEC"
index=${DEV#/dev/nbd}
head -c $((4 << 20)) /dev/urandom >"$TMPDIR/pattern"
dd if="$TMPDIR/pattern" of="$DEV" bs=1M seek=1 oflag=direct conv=fsync status=none
udevadm settle --timeout=30

# A live server keeps its device: the kernel takes no socket from us.
if "$ATTACH" -a "$index" "$SPEC" >"$TMPDIR/busy.log" 2>&1; then
	fail "adopted $DEV from a live server"
fi
grep -q "kept its old sockets" "$TMPDIR/busy.log" ||
	fail "adopting a live device: unexpected message: $(cat "$TMPDIR/busy.log")"
log "adopting from a live server refused: $(tail -n 1 "$TMPDIR/busy.log")"

# The server crashes: the device stays, and I/O waits for a successor.
kill -KILL "$APID"
wait "$APID" 2>/dev/null || true
[ -e "$SYS/pid" ] || fail "$DEV lost its configuration when the server died"
dd if="$DEV" of="$TMPDIR/gap" bs=1M skip=1 count=4 iflag=direct status=none &
reader=$!
sleep 2
kill -0 "$reader" 2>/dev/null || fail "a read completed while $DEV had no server"
log "server killed; a read is waiting"

start_attach second -a "$index" -k "$SPEC"
wait_until 30 "the waiting read" _gone "$reader"
wait "$reader" || fail "the read issued while $DEV had no server failed"
cmp "$TMPDIR/gap" "$TMPDIR/pattern" || fail "the read issued in the gap got other data"
read_back "after the crash"
log "adopted by a new process: the waiting read completed, data intact"

# Graceful hand-over: the second leaves the device to a third.
kill -TERM "$APID"
wait_exit "$APID" second
grep -q "left $DEV to a successor" "$TMPDIR/second.log" ||
	fail "second did not leave $DEV: $(cat "$TMPDIR/second.log")"
start_attach third -a "$index" "$SPEC"
read_back "after the hand-over"
kill -INT "$APID"
wait_exit "$APID" third
wait_for_disconnect "$DEV" 5
log "hand-over and final detach: done"

# Dead sockets are logged by design ("Receive control failed", and "Dead
# connection, failed to find a fallback" before the driver waits for a
# successor); what matters is that no I/O failed.
hits=$(test_dmesg | grep -E 'I/O error, dev nbd|Buffer I/O error|BUG:|WARNING:|Oops|Call Trace' || true)
[ -z "$hits" ] || fail "kernel log has errors:
$hits"
