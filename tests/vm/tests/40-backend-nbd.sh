#!/usr/bin/env bash
# vm-timeout: 300
#
# The nbd backend (plugins/nbd) on the real driver: nbdkit's memory plugin
# on a Unix socket, attached through nbdd with nbdctl as
# nbd:uri=nbd+unix:///?socket=..., carries an ext4 filesystem (mkfs,
# mount, files written, unmounted, e2fsck clean); after the detach, the
# image nbdcopy reads from nbdkit directly is byte for byte what the
# device held, and its files (read with debugfs) have their checksums.
# Then a remote killed under an attached device: reads fail with an I/O
# error at once (no hang), nbdd lives on, and the device detaches.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
on_exit sh -c 'cp "$TMPDIR/nbdd.log" "$VM_ARTIFACTS/" 2>/dev/null || true'
need nbdkit nbdcopy mkfs.ext4 e2fsck debugfs sha256sum
need_file "$B/plugins/nbd.so" "the nbd backend plugin: make"

start_nbdkit_memory 128M
start_nbdd --plugin-dir "$B/plugins"
URI="nbd+unix:///?socket=$NBDKIT_SOCK"
nbdd_attach "nbd:uri=$URI"
DEV=$NBD_DEV
[ "$(cat "/sys/block/${DEV#/dev/}/size")" -eq $((128 << 11)) ] ||
	fail "$DEV has $(cat "/sys/block/${DEV#/dev/}/size") sectors, want 128 MiB"
nbdctl list | grep -E "^$DEV +[^ ]+ +nbd:uri=" || fail "list: $(nbdctl list)"

log "mkfs.ext4 $DEV"
mkfs.ext4 -q -F "$DEV"
mount_dev "$DEV"
for i in 1 2 3 4; do
	head -c $((i << 20)) /dev/urandom >"$TMPDIR/f$i"
	cp "$TMPDIR/f$i" "$MNT/f$i"
done
sync
umount "$MNT"
blockdev --flushbufs "$DEV"
mount "$DEV" "$MNT"
for i in 1 2 3 4; do
	cmp "$TMPDIR/f$i" "$MNT/f$i" || fail "f$i read back from $DEV differs"
done
umount "$MNT"
e2fsck -fn "$DEV" >"$TMPDIR/e2fsck.log" 2>&1 ||
	fail "e2fsck -fn $DEV: $(cat "$TMPDIR/e2fsck.log")"
log "files read back through the device, e2fsck clean"
dd if="$DEV" of="$TMPDIR/dev.img" bs=1M iflag=direct status=none
udevadm settle --timeout=30 || true
nbdd_detach "$DEV"

# What nbdkit holds, read without nbdd.
nbdcopy "$URI" "$TMPDIR/kit.img"
cmp "$TMPDIR/dev.img" "$TMPDIR/kit.img" ||
	fail "nbdkit's image is not what $DEV held"
for i in 1 2 3 4; do
	debugfs -R "dump /f$i $TMPDIR/back$i" "$TMPDIR/kit.img" >/dev/null 2>&1
	[ "$(sha256sum <"$TMPDIR/back$i")" = "$(sha256sum <"$TMPDIR/f$i")" ] ||
		fail "f$i in nbdkit's image differs"
done
e2fsck -fn "$TMPDIR/kit.img" >"$TMPDIR/e2fsck.log" 2>&1 ||
	fail "e2fsck of nbdkit's image: $(cat "$TMPDIR/e2fsck.log")"
log "nbdkit holds the filesystem: image identical, files intact"

check_dmesg_clean

# ---- the remote dies under an attached device ----
spawn victim nbdkit --foreground --unix "$TMPDIR/victim.sock" memory 64M
VICTIM=$SPAWNED_PID
wait_until 20 "the victim's socket" test -S "$TMPDIR/victim.sock"
nbdd_attach "nbd:uri=nbd+unix:///?socket=$TMPDIR/victim.sock"
DEV=$NBD_DEV
dd if="$TMPDIR/f1" of="$DEV" bs=1M oflag=direct status=none
cmp -n $((1 << 20)) "$TMPDIR/f1" "$DEV" || fail "$DEV: data read back differs"
kill -KILL "$VICTIM"
rc=0
timeout 60 dd if="$DEV" of=/dev/null bs=4k count=1 skip=100 iflag=direct \
	status=none 2>"$TMPDIR/dd.err" || rc=$?
[ $rc -ne 124 ] || fail "a read from $DEV hung after its remote died"
[ $rc -ne 0 ] || fail "a read from $DEV succeeded after its remote died"
grep -q 'Input/output error' "$TMPDIR/dd.err" || fail "dd: $(cat "$TMPDIR/dd.err")"
kill -0 "$NBDD_PID" || fail "nbdd died with the remote"
grep -q "connection [1-4] to nbd+unix:///?socket=$TMPDIR/victim.sock is lost" \
	"$TMPDIR/nbdd.log" || fail "no log line on the lost remote: $(tail -n 5 "$TMPDIR/nbdd.log")"
log "remote killed: $(cat "$TMPDIR/dd.err")"
nbdd_detach "$DEV"
stop_nbdd
# I/O errors on that device were the point; nothing worse may show.
hits=$(test_dmesg | grep -E 'BUG:|WARNING:|Oops|Call Trace|blocked for more than' || true)
[ -z "$hits" ] || fail "kernel log: $hits"
