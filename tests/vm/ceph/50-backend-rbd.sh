#!/usr/bin/env bash
# vm-timeout: 900
#
# The rbd backend on the real driver: a one-node Ceph cluster started in
# the VM (tests/ceph/cluster.sh, BlueStore on a loop device: the guest's
# tmpfs has no O_DIRECT), an image attached with nbdctl carries ext4 (mkfs,
# mount, files, e2fsck), fio verifies blocks on the raw device, a discard
# of the device frees the space in Ceph (rbd du), nbdctl resize grows
# the image and the device together, and an image grown with rbd resize
# grows its device. Faults under load: fio verifying on the mounted ext4
# while the OSD is stopped and started, and while nbdd is SIGKILLed and
# started again: no fio error, no kernel I/O error, e2fsck clean.
#
# Its own directory: the cluster needs a bigger VM (3 GiB) than the
# suite's. `tests/run ceph-vm` (part of make check) or `make
# check-ceph-vm` runs it: about 2 minutes to a clean cluster under TCG,
# 3.5 in all.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
need ceph-mon ceph-mgr ceph-osd rbd losetup fio blkdiscard mkfs.ext4 jq
need_file "$B/plugins/rbd.so" "the rbd backend plugin: make"
on_exit sh -c 'cp -r "$TMPDIR/nbdd.log" "$TMPDIR/ceph/log" "$VM_ARTIFACTS/" 2>/dev/null || true'
CLUSTER=$NBDD_TOP/tests/ceph/cluster.sh
M=$((1024 * 1024))

modprobe loop 2>/dev/null || true
truncate -s 10G "$TMPDIR/osd.img"
LOOP=$(losetup --find --show "$TMPDIR/osd.img") || fail "no loop device for the OSD"
on_exit losetup -d "$LOOP"

t0=$SECONDS
on_exit "$CLUSTER" stop "$TMPDIR/ceph"
CEPH_OSD_BLOCK=$LOOP CEPH_START_LIMIT=600 "$CLUSTER" start "$TMPDIR/ceph" >/dev/null ||
	fail "the Ceph cluster did not start"
log "Ceph cluster up in $((SECONDS - t0)) s"
eval "$("$CLUSTER" env "$TMPDIR/ceph")"
export CEPH_CONF

used() { # bytes the image uses in Ceph (object map)
	rbd du --format json "$CEPH_POOL/vm" 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["images"][0]["used_size"])'
}

rbd create --size 128M "$CEPH_POOL/vm"
start_nbdd --plugin-dir "$B/plugins"
nbdd_attach "$B/plugins/rbd.so:pool=$CEPH_POOL,image=vm,conf=$CEPH_CONF,id=$CEPH_ID,keyring=$CEPH_KEYRING"
DEV=$NBD_DEV
[ "$(blockdev --getsize64 "$DEV")" = $((128 * M)) ] ||
	fail "$DEV has $(blockdev --getsize64 "$DEV") bytes, want 128 MiB"
[ "$(cat "/sys/block/${DEV#/dev/}/queue/discard_max_bytes")" -gt 0 ] ||
	fail "$DEV does not take discards"

fs_roundtrip "$DEV" 8

log "faults under load: fio verifies on ext4 while the OSD restarts, then while nbdd is SIGKILLed"
mount_dev "$DEV"
fio_rounds_start "$MNT" faults
sleep 10
t=$SECONDS
CEPH_START_LIMIT=300 "$CLUSTER" restart-osd "$TMPDIR/ceph" || fail "the OSD did not come back"
log "OSD stopped and back, PGs clean, in $((SECONDS - t)) s"
sleep 10
kill -KILL "$NBDD_PID"
wait "$NBDD_PID" 2>/dev/null || true
t=$SECONDS
start_nbdd --plugin-dir "$B/plugins"
wait_until 120 "the new nbdd to take $DEV over" sh -c \
	"'$NBDCTL_BIN' --control '$NBDD_CONTROL' --json status $DEV | jq -e '.mapping.state == \"connected\"' >/dev/null"
log "nbdd SIGKILLed; its successor serves $DEV after $((SECONDS - t)) s"
sleep 10
fio_rounds_stop faults "$FIO_PID" 3
umount "$MNT"
e2fsck -fn "$DEV" >"$TMPDIR/e2fsck.log" 2>&1 || fail "e2fsck after the faults: $(cat "$TMPDIR/e2fsck.log")"
hits=$(test_dmesg | grep -E 'I/O error, dev nbd|Buffer I/O error|EXT4-fs (error|warning)|BUG:|WARNING:|Oops|Call Trace' || true)
[ -z "$hits" ] || fail "the faults reached the kernel as errors: $hits"
log "faults: no fio error, e2fsck clean, no I/O error in the kernel log"

log "fio verify on $DEV"
fio --name=verify --filename="$DEV" --direct=1 --ioengine=libaio \
	--rw=randwrite --bs=4k --iodepth=8 --size=16M --verify=crc32c \
	--verify_fatal=1 --verify_state_save=0 --output-format=json \
	--output="$TMPDIR/fio.json" >"$TMPDIR/fio.log" 2>&1 ||
	fail "fio: $(cat "$TMPDIR/fio.log" "$TMPDIR/fio.json")"
python3 - "$TMPDIR/fio.json" <<'EOF' || fail "fio report: $(cat "$TMPDIR/fio.json")"
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
w, r = j["write"]["total_ios"], j["read"]["total_ios"]
assert j["error"] == 0 and w == 4096 and r == 4096, (j["error"], w, r)
print("fio: %d writes, %d verified reads" % (w, r))
EOF

log "discard: whole objects written, then discarded through the device"
blkdiscard "$DEV"
dd if=/dev/urandom of="$DEV" bs=1M count=32 oflag=direct status=none
blockdev --flushbufs "$DEV"
before=$(used)
blkdiscard -o 0 -l $((24 * M)) "$DEV"
after=$(used)
log "rbd du: $before bytes before the discard, $after after"
[ "$before" = $((32 * M)) ] && [ "$after" = $((8 * M)) ] ||
	fail "rbd du: $before bytes before the discard, $after after (want 32 MiB, 8 MiB)"

log "nbdctl resize: the image grows, and the device with it"
nbdctl resize "$DEV" 192M >/dev/null
[ "$(blockdev --getsize64 "$DEV")" = $((192 * M)) ] ||
	fail "$DEV has $(blockdev --getsize64 "$DEV") bytes after the resize"
isize=$(rbd info --format json "$CEPH_POOL/vm" | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')
[ "$isize" = $((192 * M)) ] || fail "the image has $isize bytes after the resize"
dd if=/dev/urandom of="$TMPDIR/tail" bs=1M count=1 status=none
dd if="$TMPDIR/tail" of="$DEV" bs=1M seek=191 oflag=direct status=none
dd if="$DEV" of="$TMPDIR/tail.back" bs=1M skip=191 iflag=direct status=none
cmp "$TMPDIR/tail.back" "$TMPDIR/tail" ||
	fail "the last MiB of the grown device does not read back"

log "rbd resize (outside nbdd): the device follows"
rbd resize --size 256M "$CEPH_POOL/vm" >/dev/null 2>&1 || fail "rbd resize failed"
wait_until 20 "$DEV to grow to 256 MiB" sh -c "[ \$(blockdev --getsize64 $DEV) = $((256 * M)) ]"
[ "$(nbdctl --json list | jq ".mappings[] | select(.device == \"$DEV\") | .size")" = $((256 * M)) ] ||
	fail "nbdctl list: $(nbdctl --json list)"
grep -q "size changed outside nbdd" "$TMPDIR/nbdd.log" || fail "nbdd did not log the resize from outside"

nbdd_detach "$DEV"
stop_nbdd
# The SIGKILL above drops connections on purpose; nothing may fail.
hits=$(test_dmesg | grep -E 'I/O error, dev nbd|Buffer I/O error|EXT4-fs (error|warning)|BUG:|WARNING:|Oops|Call Trace' || true)
[ -z "$hits" ] || fail "kernel log has errors: $hits"
log "total $((SECONDS - t0)) s"
