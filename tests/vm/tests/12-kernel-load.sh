#!/usr/bin/env bash
# vm-timeout: 240
#
# nbdd_kernel_prepare() loads the driver with libkmod: with nbd unloaded,
# a blacklist in modprobe.d is respected and said so, and without it the
# first attach loads the module with NBDD_NBDS_MAX devices and works.
# The harness's own setup (nbds_max=16, udev has seen the devices) is
# restored at the end for the tests that follow.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
need rmmod modprobe
ATTACH=$B/examples/attach
need_file "$ATTACH" "the example program: make"
BLACKLIST=/etc/modprobe.d/nbdd-test-blacklist.conf

unload() {
	local i
	for ((i = 0; i < 50; i++)); do
		[ -d /sys/module/nbd ] || return 0
		rmmod nbd 2>/dev/null || sleep 0.2 # udev may hold a device a moment
	done
	[ ! -d /sys/module/nbd ]
}

restore() {
	unload || true
	modprobe nbd nbds_max=16
	udevadm trigger --action=add --subsystem-match=block
	udevadm settle --timeout=30
}

_gone() { ! kill -0 "$1" 2>/dev/null; }

udevadm settle --timeout=30
on_exit restore
unload || fail "cannot unload nbd: $(grep '^nbd ' /proc/modules)"
log "nbd unloaded"

# An administrator's blacklist wins over an automatic load.
echo "blacklist nbd" >"$BLACKLIST"
on_exit rm -f "$BLACKLIST"
if "$ATTACH" memory:size=16M >"$TMPDIR/blacklisted.log" 2>&1; then
	fail "attach loaded a blacklisted nbd"
fi
grep -q "the nbd module cannot be loaded: it is blacklisted.*remove the blacklist" \
	"$TMPDIR/blacklisted.log" ||
	fail "blacklisted: unexpected message: $(cat "$TMPDIR/blacklisted.log")"
[ ! -d /sys/module/nbd ] || fail "nbd got loaded despite the blacklist"
log "blacklisted: $(tail -n 1 "$TMPDIR/blacklisted.log")"
rm -f "$BLACKLIST"

# The first attach loads it, with the device count asked for.
spawn attach env NBDD_NBDS_MAX=4 "$ATTACH" memory:size=16M
wait_until 30 "attach to print its device" grep -q '^/dev/nbd' "$TMPDIR/attach.log"
DEV=$(grep -m1 '^/dev/nbd' "$TMPDIR/attach.log")
wait_for_dev "$DEV"
[ "$(cat /sys/module/nbd/parameters/nbds_max)" = 4 ] ||
	fail "nbds_max is $(cat /sys/module/nbd/parameters/nbds_max), not 4"
log "attach loaded nbd (nbds_max=4) and attached $DEV"
head -c $((1 << 20)) /dev/urandom >"$TMPDIR/pattern"
dd if="$TMPDIR/pattern" of="$DEV" bs=1M oflag=direct status=none
dd if="$DEV" of="$TMPDIR/back" bs=1M count=1 iflag=direct status=none
cmp "$TMPDIR/back" "$TMPDIR/pattern" || fail "data read back from $DEV differs"
udevadm settle --timeout=30
kill -INT "$SPAWNED_PID"
wait_until 20 "attach to exit" _gone "$SPAWNED_PID"
wait "$SPAWNED_PID" || fail "attach exited with status $?: $(cat "$TMPDIR/attach.log")"
wait_for_disconnect "$DEV" 5
check_dmesg_clean
