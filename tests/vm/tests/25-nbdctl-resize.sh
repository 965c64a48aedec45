#!/usr/bin/env bash
# vm-timeout: 300
#
# nbdctl resize on the real driver: a file backend carrying a mounted
# ext4 grows from 64 to 128 MiB (the image file grows, the kernel sees the
# new size at once, resize2fs grows the mounted filesystem into it and the
# new space holds data); the new size survives a SIGKILL of nbdd (the
# successor adopts the device as it now is), while a null backend, sized
# by its spec, comes back at that size and its device with it. Shrinking needs
# --allow-shrink, and then the device ends where the backend now ends.
# Sizes that are not whole blocks, read-only mappings and backends that
# cannot resize are refused with a message, the device unchanged.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
on_exit sh -c 'cp "$TMPDIR/nbdd.log" "$VM_ARTIFACTS/" 2>/dev/null || true'
need mkfs.ext4 resize2fs e2fsck blockdev jq losetup cmp
M=$((1024 * 1024))
start_nbdd

dev_size() { blockdev --getsize64 "$1"; }
expect_refusal() { # pattern nbdctl-args...
	local pattern=$1 out
	shift
	if out=$(nbdctl "$@" 2>&1); then
		fail "nbdctl $* succeeded: $out"
	fi
	echo "$out" | grep -q -- "$pattern" || fail "nbdctl $*: '$out' does not say '$pattern'"
	log "nbdctl $*: refused: $out"
}

# ---- grow a mounted filesystem ----
IMG=$TMPDIR/disk.img
truncate -s 64M "$IMG"
nbdd_attach "file:path=$IMG" --name grow
DEV=$NBD_DEV
mkfs.ext4 -q -F "$DEV"
mount_dev "$DEV"
head -c $((40 * M)) /dev/urandom >"$TMPDIR/a"
cp "$TMPDIR/a" "$MNT/a"
sync

out=$(nbdctl resize grow 128M)
log "nbdctl resize grow 128M: $out"
[ "$out" = "grow: 128.0M" ] || fail "nbdctl resize printed '$out'"
[ "$(dev_size "$DEV")" = $((128 * M)) ] || fail "$DEV has $(dev_size "$DEV") bytes after the resize"
[ "$(stat -c %s "$IMG")" = $((128 * M)) ] || fail "the image has $(stat -c %s "$IMG") bytes"
[ "$(nbdctl --json status grow | jq .mapping.size)" = $((128 * M)) ] ||
	fail "nbdctl status: $(nbdctl --json status grow)"
# Not grep -q: under pipefail test_dmesg would die of SIGPIPE (lib.sh).
test_dmesg | grep "${DEV#/dev/}: detected capacity change from 131072 to 262144" >/dev/null ||
	fail "the kernel did not log the capacity change"

resize2fs "$DEV" >"$TMPDIR/resize2fs.log" 2>&1 || fail "resize2fs: $(cat "$TMPDIR/resize2fs.log")"
blocks=$(df --output=size -B1M "$MNT" | tail -n1)
[ "$blocks" -gt 100 ] || fail "ext4 on $DEV has $blocks MiB after resize2fs"
log "ext4 grown online to $blocks MiB"
head -c $((60 * M)) /dev/urandom >"$TMPDIR/b"
cp "$TMPDIR/b" "$MNT/b" || fail "60 MiB more do not fit on the grown filesystem"
sync

# A backend sized by its spec (null) comes back at that size after a
# crash: the device must follow it, not keep a size nothing serves.
nbdd_attach null:size=64M --name nul
NUL=$NBD_DEV
nbdctl resize nul 128M >/dev/null
[ "$(dev_size "$NUL")" = $((128 * M)) ] || fail "$NUL did not grow"

# The successor of a killed nbdd serves the device at its new size.
kill -KILL "$NBDD_PID"
wait "$NBDD_PID" 2>/dev/null || true
start_nbdd
wait_until 30 "the new nbdd to adopt $DEV" sh -c \
	"'$NBDCTL_BIN' --control '$NBDD_CONTROL' --json status grow | jq -e '.mapping.state == \"connected\"' >/dev/null"
[ "$(dev_size "$DEV")" = $((128 * M)) ] || fail "$DEV has $(dev_size "$DEV") bytes after the restart"
wait_until 30 "$NUL back at its spec's 64 MiB" sh -c "[ \$(blockdev --getsize64 $NUL) = $((64 * M)) ]"
dd if="$NUL" of=/dev/null bs=4k skip=$((64 * M / 4096 - 1)) count=1 iflag=direct status=none ||
	fail "the last block of $NUL cannot be read after the restart"
grep -q "came back with another size" "$TMPDIR/nbdd.log" || fail "nbdd did not log why $NUL shrank"
nbdd_detach "$NUL"
umount "$MNT"
blockdev --flushbufs "$DEV"
mount "$DEV" "$MNT"
cmp "$TMPDIR/a" "$MNT/a" || fail "file a differs after resize and restart"
cmp "$TMPDIR/b" "$MNT/b" || fail "file b (in the grown space) differs"
umount "$MNT"
e2fsck -fn "$DEV" >"$TMPDIR/e2fsck.log" 2>&1 || fail "e2fsck: $(cat "$TMPDIR/e2fsck.log")"
log "after resize, resize2fs and a SIGKILL of nbdd: data intact, e2fsck clean"

# ---- what is refused ----
expect_refusal "allow-shrink" resize grow 64M
[ "$(dev_size "$DEV")" = $((128 * M)) ] || fail "a refused shrink changed $DEV"
expect_refusal "block size" resize grow $((128 * M + 100))
expect_refusal "not a size" resize grow lots
expect_refusal "no mapping named" resize nosuch 1G
nbdd_detach "$DEV"

nbdd_attach memory:size=32M --read-only
expect_refusal "read-only" resize "$NBD_DEV" 64M
nbdd_detach "$NBD_DEV"

# A file backend on a block device cannot change that device's size.
modprobe loop 2>/dev/null || true
truncate -s 32M "$TMPDIR/loop.img"
LOOP=$(losetup --find --show "$TMPDIR/loop.img") || fail "no loop device"
on_exit losetup -d "$LOOP"
nbdd_attach "file:path=$LOOP"
changes=$(test_dmesg | grep -c "${NBD_DEV#/dev/}: detected capacity change" || true)
expect_refusal "cannot resize file:path=$LOOP" resize "$NBD_DEV" 64M
# Refused before the device moves: a shrink must not flap its size.
expect_refusal "cannot resize file:path=$LOOP" resize --allow-shrink "$NBD_DEV" 16M
[ "$(dev_size "$NBD_DEV")" = $((32 * M)) ] || fail "a refused resize changed $NBD_DEV"
[ "$(test_dmesg | grep -c "${NBD_DEV#/dev/}: detected capacity change")" = "$changes" ] ||
	fail "a refused resize changed the size of $NBD_DEV for a while"
nbdd_detach "$NBD_DEV"

# ---- shrink ----
nbdd_attach memory:size=64M
DEV=$NBD_DEV
head -c $((32 * M)) /dev/urandom >"$TMPDIR/c"
dd if="$TMPDIR/c" of="$DEV" bs=1M oflag=direct status=none
out=$(nbdctl --json resize "$DEV" 32M --allow-shrink)
[ "$(echo "$out" | jq .size)" = $((32 * M)) ] || fail "nbdctl --json resize: $out"
[ "$(dev_size "$DEV")" = $((32 * M)) ] || fail "$DEV has $(dev_size "$DEV") bytes after shrinking"
cmp "$TMPDIR/c" "$DEV" || fail "the first 32 MiB changed when $DEV shrank"
if dd if="$DEV" of=/dev/null bs=1M skip=40 count=1 iflag=direct status=none 2>/dev/null &&
	[ "$(dd if="$DEV" bs=1M skip=40 count=1 iflag=direct status=none 2>/dev/null | wc -c)" -gt 0 ]; then
	fail "$DEV still reads beyond its new end"
fi
nbdctl resize "$DEV" 48M >/dev/null
[ "$(dev_size "$DEV")" = $((48 * M)) ] || fail "$DEV did not grow again"
# The memory backend drops what lies beyond a shrink: growing back reads zeroes.
[ "$(dd if="$DEV" bs=1M skip=32 count=16 iflag=direct status=none | tr -d '\0' | wc -c)" = 0 ] ||
	fail "the space regained after a shrink is not zero"
nbdd_detach "$DEV"
grep -q "resized from" "$TMPDIR/nbdd.log" || fail "nbdd did not log the resizes"
# The SIGKILL above drops a connection on purpose; nothing may fail.
hits=$(test_dmesg | grep -E 'I/O error, dev nbd|Buffer I/O error|EXT4-fs (error|warning)|BUG:|WARNING:|Oops|Call Trace' || true)
[ -z "$hits" ] || fail "kernel log has errors: $hits"
log "resize: grow under a mounted ext4, shrink, refusals: as expected"
