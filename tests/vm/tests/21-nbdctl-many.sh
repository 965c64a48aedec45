#!/usr/bin/env bash
# vm-timeout: 400
#
# The daemon's table of mappings over its life: 8 devices attached by
# name with no device given (the kernel picks), listed and recorded in
# the state file; one ended from outside (`nbd-client -d`) is noticed and
# dropped; `detach --all` releases the rest. Then SIGINT with devices
# attached: every one is flushed and disconnected (data written without
# fsync reaches the image), the daemon exits 0 and removes its state file.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
# Registered first, so it runs last: the daemon's whole log is kept.
on_exit sh -c 'cp "$TMPDIR/nbdd.log" "$VM_ARTIFACTS/" 2>/dev/null || true'
need jq nbd-client
start_nbdd --log-level debug
STATE=$TMPDIR/mappings.json

count() { nbdctl --json list | jq '.mappings | length'; }
connected() { [ -e "/sys/block/${1#/dev/}/pid" ]; }

# ---- eight at once ----
declare -a DEVS
for i in 0 1 2 3 4 5 6 7; do
	DEVS[i]=$(nbdctl attach --name "disk$i" "memory:size=$((16 + i))M")
	on_exit _lib_nbdd_detach "${DEVS[i]}"
done
for d in "${DEVS[@]}"; do wait_for_dev "$d"; done
[ "$(printf '%s\n' "${DEVS[@]}" | sort -u | wc -l)" = 8 ] || fail "devices not distinct: ${DEVS[*]}"
[ "$(count)" = 8 ] || fail "list shows $(count) mappings"
nbdctl list
for i in 0 1 2 3 4 5 6 7; do
	d=${DEVS[i]}
	[ "$(nbdctl --json status "disk$i" | jq -r .mapping.device)" = "$d" ] || fail "disk$i is not $d"
	[ "$(cat "/sys/block/${d#/dev/}/size")" = $(((16 + i) << 11)) ] || fail "$d size"
done
[ "$(jq '.mappings | length' "$STATE")" = 8 ] || fail "state file: $(cat "$STATE")"
[ "$(jq -r '.mappings[] | select(.name == "disk3") | .spec' "$STATE")" = memory:size=19M ] ||
	fail "state file lacks disk3's spec"
log "8 devices attached: ${DEVS[*]}"

# ---- ended from outside: noticed, dropped from the table ----
nbd-client -d "${DEVS[5]}"
wait_for_disconnect "${DEVS[5]}"
wait_until 20 "nbdd to drop ${DEVS[5]}" sh -c "[ \"\$($NBDCTL_BIN --control $NBDD_CONTROL --json list | jq '.mappings | length')\" = 7 ]"
grep -q "the kernel ended the mapping" "$TMPDIR/nbdd.log" || fail "the outside disconnect was not logged"
log "${DEVS[5]} disconnected by nbd-client -d: nbdd dropped it"

# ---- detach --all ----
udevadm settle --timeout=30 || true
nbdctl --json detach --all | jq -e '.detached | length == 7' >/dev/null || fail "detach --all"
for d in "${DEVS[@]}"; do wait_for_disconnect "$d"; done
[ "$(count)" = 0 ] || fail "list not empty after detach --all"
[ "$(jq '.mappings | length' "$STATE")" = 0 ] || fail "state file after detach --all"
log "detach --all: every device free"

# ---- SIGINT with devices attached: everything detached ----
IMG=$TMPDIR/disk.img
truncate -s 64M "$IMG"
A=$(nbdctl attach "file:path=$IMG")
B=$(nbdctl attach --connections 1 memory:size=32M)
wait_for_dev "$A"
wait_for_dev "$B"
head -c $((2 << 20)) /dev/urandom >"$TMPDIR/pattern"
# buffered, no fsync: the daemon's detach must flush it
dd if="$TMPDIR/pattern" of="$A" bs=1M status=none
udevadm settle --timeout=30 || true
stop_nbdd
for d in "$A" "$B"; do
	connected "$d" && fail "$d still connected after SIGINT"
done
head -c $((2 << 20)) "$IMG" >"$TMPDIR/back"
cmp "$TMPDIR/back" "$TMPDIR/pattern" || fail "data written before SIGINT is not in the image"
[ ! -e "$STATE" ] || fail "state file left after a clean exit"
[ ! -e "$NBDD_CONTROL" ] || fail "control socket left after a clean exit"
grep -q "detached" "$TMPDIR/nbdd.log" || fail "no detach logged at shutdown"
log "SIGINT: both devices flushed and disconnected, nbdd exited 0"
check_dmesg_clean
