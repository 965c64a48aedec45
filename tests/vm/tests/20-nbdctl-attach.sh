#!/usr/bin/env bash
# vm-timeout: 400
#
# nbdctl against the real driver: memory and file backends attached
# through the daemon; list (text and --json) and status say what the
# kernel sees; the counters move with reads, writes, flushes (sync) and
# discards (blkdiscard, fstrim), which punch holes in the image file;
# a read-only attach refuses writes and leaves the data alone; with no
# device the kernel picks a free one; a busy device (ours or another
# tool's) is refused in one line; file data survives detach + re-attach
# and is the image the host reads.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
# Registered first, so it runs last: the daemon's whole log is kept.
on_exit sh -c 'cp "$TMPDIR/nbdd.log" "$VM_ARTIFACTS/" 2>/dev/null || true'
need jq blkdiscard fstrim nbdkit nbd-client mkfs.ext4
start_nbdd

expect_eq() { # what got want
	[ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}
# A close after writing makes udev probe the device again; a detach in
# the middle of that probe fails its reads (I/O errors in the kernel log).
detach() { # /dev/nbdX
	udevadm settle --timeout=30 || true
	nbdd_detach "$1"
}
# A field of `nbdctl --json status DEV`, by jq path.
stat_of() { # dev jq-path
	nbdctl --json status "$1" | jq -r ".mapping$2"
}
# One line on stderr and exit 1: what a refused nbdctl must look like.
expect_refused() { # text nbdctl-args...
	local text=$1 rc=0
	shift
	nbdctl "$@" >"$TMPDIR/out" 2>"$TMPDIR/err" || rc=$?
	[ $rc -eq 1 ] && [ "$(wc -l <"$TMPDIR/err")" -eq 1 ] &&
		grep -qF -- "$text" "$TMPDIR/err" ||
		fail "nbdctl $*: exit $rc, stderr: $(cat "$TMPDIR/err") (want '$text')"
	log "refused as expected: $(cat "$TMPDIR/err")"
}

# ---- a memory backend on a device we name ----
nbdd_attach memory:size=256M /dev/nbd2
MEM=$NBD_DEV
expect_eq "device" "$MEM" /dev/nbd2
expect_eq "size" "$(cat /sys/block/nbd2/size)" $((256 << 11))
nbdctl list >"$TMPDIR/list"
cat "$TMPDIR/list"
grep -Eq '^DEVICE +NAME +BACKEND +SIZE +CONNS +RO +STATE$' "$TMPDIR/list" || fail "list header"
grep -Eq '^/dev/nbd2 +nbd2 +memory:size=256M +256\.0M +[0-9]+ +no +connected$' "$TMPDIR/list" ||
	fail "list row"
expect_eq "list --json size" "$(nbdctl --json list | jq '.mappings[0].size')" $((256 << 20))
expect_eq "list --json backend" "$(nbdctl --json list | jq -r '.mappings[0].backend')" memory

# counters: direct writes and reads, then a flush through fsync
dd if=/dev/urandom of="$TMPDIR/pattern" bs=1M count=4 status=none
dd if="$TMPDIR/pattern" of="$MEM" bs=1M oflag=direct status=none
dd if="$MEM" of="$TMPDIR/back" bs=1M count=4 iflag=direct status=none
cmp "$TMPDIR/pattern" "$TMPDIR/back" || fail "memory: data read back differs"
[ "$(stat_of "$MEM" .totals.ops.write.bytes)" -ge $((4 << 20)) ] ||
	fail "status: write bytes $(stat_of "$MEM" .totals.ops.write.bytes)"
[ "$(stat_of "$MEM" .totals.ops.read.requests)" -gt 0 ] || fail "status: no reads counted"
flushes=$(stat_of "$MEM" .totals.ops.flush.requests)
dd if=/dev/zero of="$MEM" bs=4k count=1 conv=fsync status=none
sync
[ "$(stat_of "$MEM" .totals.ops.flush.requests)" -gt "$flushes" ] ||
	fail "fsync sent no flush: $(nbdctl --json status "$MEM")"
expect_eq "errors" "$(nbdctl --json status "$MEM" | jq '[.mapping.totals.ops[].errors] | add')" 0
nbdctl status "$MEM" | tee "$TMPDIR/status"
grep -q '^  state: *connected$' "$TMPDIR/status" || fail "status text: state"
grep -Eq '^total +flush +[1-9]' "$TMPDIR/status" || fail "status text: flush row"

# ---- busy devices are refused ----
expect_refused "/dev/nbd2 is already attached" attach memory:size=1M /dev/nbd2
start_nbdkit_memory 16M
nbd_client_attach "$NBDKIT_SOCK" /dev/nbd5
expect_refused "nbd5" attach memory:size=1M /dev/nbd5
nbd_client_detach /dev/nbd5
[ -z "$(nbdctl list | grep nbd5 || true)" ] || fail "a refused attach left an entry"

# ---- no device given: the kernel picks a free one ----
PICKED=$(nbdctl attach --name scratch memory:size=16M)
on_exit _lib_nbdd_detach "$PICKED"
wait_for_dev "$PICKED"
[ "$PICKED" != /dev/nbd2 ] || fail "picked a busy device"
expect_eq "name" "$(stat_of scratch .device)" "$PICKED"
udevadm settle --timeout=30 || true
nbdctl detach scratch
wait_for_disconnect "$PICKED"
log "kernel picked $PICKED; detached by name"

# ---- a file backend: discards punch holes, data survives re-attach ----
IMG=$TMPDIR/disk.img
truncate -s 128M "$IMG"
nbdd_attach "file:path=$IMG"
FILE=$NBD_DEV
dd if="$TMPDIR/pattern" of="$FILE" bs=1M seek=8 oflag=direct status=none
dd if="$TMPDIR/pattern" of="$FILE" bs=1M seek=32 oflag=direct status=none
sync
before=$(stat -c %b "$IMG")
[ "$before" -ge $((8 << 11)) ] || fail "image has $before blocks after 8 MiB written"
blkdiscard -f -o $((32 << 20)) -l $((4 << 20)) "$FILE"
udevadm settle --timeout=30
after=$(stat -c %b "$IMG")
[ "$after" -le $((before - (3 << 11))) ] || fail "blkdiscard punched no hole: $before -> $after blocks"
[ "$(stat_of "$FILE" .totals.ops.trim.requests)" -gt 0 ] || fail "no trim counted"
log "blkdiscard: image blocks $before -> $after"

detach "$FILE"
dd if="$IMG" of="$TMPDIR/back" bs=1M skip=8 count=4 status=none
cmp "$TMPDIR/back" "$TMPDIR/pattern" ||
	fail "the image on the host does not hold what was written"
dd if="$IMG" of="$TMPDIR/back" bs=1M skip=32 count=4 status=none
head -c $((4 << 20)) /dev/zero >"$TMPDIR/zero"
cmp "$TMPDIR/back" "$TMPDIR/zero" || fail "discarded range does not read as zeroes"
nbdd_attach "file:path=$IMG"
FILE=$NBD_DEV
dd if="$FILE" of="$TMPDIR/back" bs=1M skip=8 count=4 iflag=direct status=none
cmp "$TMPDIR/back" "$TMPDIR/pattern" || fail "data lost across detach/re-attach"
log "file data survived detach and re-attach"

# fstrim on a mounted ext4: freed blocks go back as holes in the image
mkfs.ext4 -q -F -E nodiscard "$FILE"
mount_dev "$FILE"
dd if=/dev/urandom of="$MNT/big" bs=1M count=16 status=none
sync
before=$(stat -c %b "$IMG")
rm "$MNT/big"
sync
fstrim "$MNT"
after=$(stat -c %b "$IMG")
[ "$after" -lt $((before - (8 << 11))) ] || fail "fstrim punched no holes: $before -> $after blocks"
umount "$MNT"
log "fstrim: image blocks $before -> $after"
detach "$FILE"

# ---- read-only: writes fail, the data stays ----
sum=$(sha256sum <"$IMG")
nbdd_attach "file:path=$IMG" --read-only
RO=$NBD_DEV
expect_eq "$RO ro" "$(cat "/sys/block/${RO#/dev/}/ro")" 1
nbdctl list | grep -Eq "^$RO .* yes +connected\$" || fail "list does not say read-only"
if dd if=/dev/zero of="$RO" bs=4k count=1 oflag=direct status=none 2>"$TMPDIR/ro.err"; then
	fail "a write to a read-only device succeeded"
fi
log "write refused: $(cat "$TMPDIR/ro.err")"
dd if="$RO" of=/dev/null bs=1M count=4 iflag=direct status=none
detach "$RO"
expect_eq "image after the read-only attach" "$(sha256sum <"$IMG")" "$sum"

# ---- detach --all while a mapping is still being attached: the others
# go, and the reply names the one left instead of claiming all went ----
cat >"$TMPDIR/slow.c" <<'C'
#include <errno.h>
#include <unistd.h>
#include <nbdd/backend.h>
static int o(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	sleep(6);
	nbdd_backend_error("slow backend: gave up");
	return -EIO;
}
static int s(void *h, uint64_t *size) { *size = 1 << 20; return 0; }
static int r(void *h, void *b, size_t n, uint64_t off, uint32_t f) { return 0; }
static const struct nbdd_backend slow = {
	NBDD_BACKEND_HEADER, .name = "slow", .open = o, .get_size = s, .pread = r,
};
NBDD_BACKEND_REGISTER(slow)
C
cc -shared -fPIC -I"$NBDD_TOP/include" -o "$TMPDIR/slow.so" "$TMPDIR/slow.c"
nbdctl attach --name slowpoke "$TMPDIR/slow.so" >"$TMPDIR/slow.out" 2>&1 &
slow=$!
slow_attaching() {
	nbdctl --json list | grep -E '"state": *"attaching"' >/dev/null ||
		{ ! kill -0 "$slow" 2>/dev/null &&
		  fail "the slow attach ended early: $(cat "$TMPDIR/slow.out"); list: $(nbdctl --json list)"; }
}
wait_until 20 "slowpoke attaching" slow_attaching
if nbdctl detach --all 2>"$TMPDIR/all.err"; then
	fail "detach --all succeeded while 'slowpoke' was still attaching"
fi
grep "detached 1; 'slowpoke' is still being attached" "$TMPDIR/all.err" >/dev/null ||
	fail "detach --all: $(cat "$TMPDIR/all.err")"
wait_for_disconnect "$MEM"
wait "$slow" || true
[ -z "$(nbdctl list)" ] || fail "list not empty: $(nbdctl list)"
stop_nbdd
check_dmesg_clean
