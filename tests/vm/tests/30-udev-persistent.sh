#!/usr/bin/env bash
# vm-timeout: 300
#
# udev/ and persistent mappings against the real driver and a real udev:
# unconnected devices are not for systemd and never probed, an attached
# named mapping gets /dev/disk/by-nbd/NAME (partitions too), and
# attach --persistent / attach-configured / detach --persistent keep
# NAME.conf in step, requires= included. Also `systemd-analyze verify`
# on the units as `make install` writes them.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
need udevadm systemd-analyze blockdev python3 mkfs.ext4

# The rules and units as installed (the guest's / is a tmpfs overlay).
make -s -C "$NBDD_TOP" B="$B" install DESTDIR=/ PREFIX=/usr/local >/dev/null
rules=$(pkg-config --variable=udevdir udev)/rules.d
units=$(pkg-config --variable=systemdsystemunitdir systemd)
need_file "$rules/59-nbdd.rules"
need_file "$units/nbdd.service"
udevadm control --reload

log "systemd-analyze verify"
out=$(systemd-analyze verify --man=no "$units/nbdd.service" "$units/nbdd-attach.service" 2>&1) ||
	fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complains: $out"

log "an unconnected device: not ready for systemd, not probed"
out=$(udevadm test --action=add /sys/block/nbd9 2>&1)
grep -q '^SYSTEMD_READY=0$' <<<"$out" || fail "nbd9 not SYSTEMD_READY=0: $out"
grep -q '^UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG=1$' <<<"$out" || fail "nbd9 would be probed"
! grep -q 'ID_FS_TYPE' <<<"$out" || fail "blkid ran on an unconnected device"
# A change event on all of them (what a udevadm trigger at boot does).
udevadm trigger --action=change --subsystem-match=block --sysname-match='nbd*'
udevadm settle --timeout=30

export NBDD_MAPPINGS_DIR=$TMPDIR/mappings.d
start_nbdd

log "attach --persistent: the file, the stable name"
dev=$(nbdctl attach --persistent --name data --connections 2 memory:size=64M /dev/nbd3)
[ "$dev" = /dev/nbd3 ] || fail "attached $dev"
on_exit _lib_nbdd_detach "$dev"
wait_for_dev "$dev"
[ "$(cat /sys/block/nbd3/backend)" = data ] || fail "backend identifier: $(cat /sys/block/nbd3/backend)"
wait_until 10 /dev/disk/by-nbd/data test -L /dev/disk/by-nbd/data
[ "$(readlink -f /dev/disk/by-nbd/data)" = /dev/nbd3 ] || fail "by-nbd/data -> $(readlink -f /dev/disk/by-nbd/data)"
conf=$NBDD_MAPPINGS_DIR/data.conf
grep -qx 'spec = memory:size=64M' "$conf" || fail "conf: $(cat "$conf")"
grep -qx 'device = /dev/nbd3' "$conf" || fail "conf: $(cat "$conf")"
grep -qx 'connections = 2' "$conf" || fail "conf: $(cat "$conf")"

log "a partition: by-nbd/data-part1"
# An MBR with one Linux partition from 1 MiB (no partitioning tool here).
python3 - /dev/nbd3 <<'PY'
import struct, sys
mbr = bytearray(512)
mbr[446:462] = struct.pack('<B3sB3sII', 0, b'\0\0\0', 0x83, b'\0\0\0', 2048, 64 * 2048 - 2048)
mbr[510:512] = b'\x55\xaa'
with open(sys.argv[1], 'r+b') as f:
    f.write(mbr)
PY
# Closing the written device makes udev (its inotify watch) rescan the
# partitions itself, holding the device meanwhile: let it finish, and
# ask the kernel only if it did not.
udevadm settle --timeout=30
if [ ! -e /sys/block/nbd3/nbd3p1 ]; then
	wait_until 10 "the partition table re-read" blockdev --rereadpt /dev/nbd3
fi
udevadm settle --timeout=30
wait_until 10 by-nbd/data-part1 test -L /dev/disk/by-nbd/data-part1
mkfs.ext4 -q /dev/disk/by-nbd/data-part1
udevadm settle --timeout=30
[ "$(readlink -f /dev/disk/by-nbd/data-part1)" = /dev/nbd3p1 ] || fail "part1 link"

log "attach-configured: the detached mapping comes back, requires= waits"
nbdctl detach /dev/nbd3
udevadm settle --timeout=30
wait_until 10 "by-nbd/data to go" test ! -e /dev/disk/by-nbd/data
printf 'spec = memory:size=16M\nrequires = %s\n' "$TMPDIR/flag" >"$NBDD_MAPPINGS_DIR/later.conf"
out=$(nbdctl attach-configured)
grep -qx 'data: /dev/nbd3' <<<"$out" || fail "attach-configured: $out"
grep -qx "later: waiting for $TMPDIR/flag" <<<"$out" || fail "attach-configured: $out"
touch "$TMPDIR/flag"
out=$(nbdctl attach-configured)
grep -q '^later: /dev/nbd' <<<"$out" || fail "attach-configured with requires= met: $out"
! grep -q '^data:' <<<"$out" || fail "attached data twice: $out"
later=$(nbdctl list | awk '$2 == "later" {print $1}')
on_exit _lib_nbdd_detach "$later"
wait_for_dev /dev/nbd3
wait_until 10 by-nbd/later test -L /dev/disk/by-nbd/later

log "detach --persistent: device and file go; a bad file fails alone"
nbdctl detach --persistent later
[ ! -e "$NBDD_MAPPINGS_DIR/later.conf" ] || fail "later.conf still there"
printf 'spec = memory:size=1M\nbogus = 1\n' >"$NBDD_MAPPINGS_DIR/bad.conf"
if nbdctl attach-configured >"$TMPDIR/ac.out" 2>&1; then
	fail "attach-configured ignored bad.conf"
fi
grep -q "unknown key 'bogus'" "$TMPDIR/ac.out" || fail "$(cat "$TMPDIR/ac.out")"
rm "$NBDD_MAPPINGS_DIR/bad.conf"
nbdctl detach --persistent data
[ ! -e "$conf" ] || fail "data.conf still there"
udevadm settle --timeout=30

stop_nbdd
check_dmesg_clean
