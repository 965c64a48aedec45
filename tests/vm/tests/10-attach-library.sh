#!/usr/bin/env bash
# vm-timeout: 300
#
# libnbdd on its own, as a program links it: build/examples/attach calls
# nbdd_attach() (socketpairs + netlink CONNECT), the kernel shows the size,
# block size, identifier and number of sockets asked for, ext4 survives a
# round trip, discards reach the backend, a busy device is refused in
# words, and both ways of ending (SIGINT -> nbdd_detach(), and someone
# else's `nbd-client -d`) leave the device disconnected and the program
# exiting 0.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
need blkdiscard nbd-client
ATTACH=$B/examples/attach
need_file "$ATTACH" "the example program: make"

# Start attach; its device goes to DEV, its pid to APID.
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

# Wait for attach to exit by itself; fail unless with status 0.
wait_exit() { # pid name
	local rc=0
	wait_until 20 "$2 to exit" _gone "$1"
	wait "$1" || rc=$?
	[ $rc -eq 0 ] || fail "$2 exited with status $rc: $(tail -n 20 "$TMPDIR/$2.log")"
}
_gone() { ! kill -0 "$1" 2>/dev/null; }

expect_eq() { # what got want
	[ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

# ---- 1: a memory backend, 4 KiB blocks ----
start_attach mem -b 4096 memory:size=256M
expect_eq "$SYS/size" "$(cat "$SYS/size")" $((256 << 11))
expect_eq "logical block size" "$(cat "$SYS/queue/logical_block_size")" 4096
expect_eq "$SYS/pid" "$(cat "$SYS/pid")" "$APID"
if [ -e "$SYS/backend" ]; then
	expect_eq "$SYS/backend" "$(cat "$SYS/backend")" memory:size=256M
else
	log "$SYS/backend: absent (kernel before 5.14)"
fi

fs_roundtrip "$DEV" 16

[ "$(cat "$SYS/queue/discard_max_bytes")" -gt 0 ] ||
	fail "$DEV: discard is off although the backend trims"
blkdiscard -f "$DEV"
log "blkdiscard $DEV: done"
udevadm settle --timeout=30 # its close makes udev probe the disk again

# The device is ours: another attach of the same index is refused, in words.
index=${DEV#/dev/nbd}
if "$ATTACH" -i "$index" memory:size=1M >"$TMPDIR/busy.log" 2>&1; then
	fail "a second attach of $DEV succeeded"
fi
grep -q "device $DEV is already in use" "$TMPDIR/busy.log" ||
	fail "busy device: unexpected message: $(cat "$TMPDIR/busy.log")"
log "second attach of $DEV refused: $(tail -n 1 "$TMPDIR/busy.log")"

kill -INT "$APID"
wait_exit "$APID" mem
wait_for_disconnect "$DEV" 5
expect_eq "$SYS/size after detach" "$(cat "$SYS/size")" 0
grep -q 'trim [1-9]' "$TMPDIR/mem.log" || fail "no trim reached the backend: $(cat "$TMPDIR/mem.log")"
grep -q 'write [1-9]' "$TMPDIR/mem.log" || fail "no write reached the backend"
log "detached on SIGINT: $(grep -c 'connection' "$TMPDIR/mem.log") connection(s) reported"

# ---- 2: the program's own backend, two sockets, ended from outside ----
# Two sockets on purpose (the default is one, see include/nbdd/kernel.h):
# part 1 left an idle receive kworker behind, so the rescuer cannot end
# up holding both receive loops here.
start_attach own -c 2
expect_eq "$SYS/size" "$(cat "$SYS/size")" $((16 << 11))
expect_eq "logical block size" "$(cat "$SYS/queue/logical_block_size")" 512
expect_eq "hardware queues (one per socket)" "$(ls "$SYS/mq" | wc -l)" 2
head -c $((4 << 20)) /dev/urandom >"$TMPDIR/pattern"
dd if="$TMPDIR/pattern" of="$DEV" bs=1M oflag=direct status=none
dd if="$DEV" of="$TMPDIR/back" bs=1M count=4 iflag=direct status=none
cmp "$TMPDIR/back" "$TMPDIR/pattern" || fail "data read back from $DEV differs"
udevadm settle --timeout=30
log "4 MiB direct write + read back over 2 sockets: identical"

nbd-client -d "$DEV"
wait_exit "$APID" own
grep -q 'the device was disconnected' "$TMPDIR/own.log" ||
	fail "attach did not notice the disconnect: $(cat "$TMPDIR/own.log")"
wait_for_disconnect "$DEV" 5
log "disconnected from outside: attach noticed and exited 0"

check_dmesg_clean
