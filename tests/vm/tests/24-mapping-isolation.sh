#!/usr/bin/env bash
# vm-timeout: 500
#
# One mapping's server dying does not disturb another: two ext4
# filesystems on file-backed devices, each under verified fio rounds;
# the process serving the second is SIGKILLed 3 times (a backend that
# crashes or is killed). Each time the daemon starts a new one that takes
# the device over. Both fios must see no error, both filesystems must be
# clean, the first mapping must keep its process and never need a
# recovery, and must keep serving requests while the second recovers.
# Then a server that dies as soon as it starts, again and again, is given
# up on: the mapping is failed, with the reason, and detach releases it.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
need jq mkfs.ext4 e2fsck
on_exit sh -c 'cp "$TMPDIR/nbdd.log" "$VM_ARTIFACTS/" 2>/dev/null || true'
KILLS=3

field() { # device jq-expression
	nbdctl --json status "$1" | jq -r ".mapping | $2"
}

writes() { field "$1" '.totals.ops.write.requests'; }

start_nbdd --timeout 10

new_fs() { # name -> DEV, MNT
	truncate -s 128M "$TMPDIR/$1.img"
	nbdd_attach "file:path=$TMPDIR/$1.img" --name "$1"
	DEV=$NBD_DEV
	mkfs.ext4 -q -F "$DEV"
	mount_dev "$DEV"
}

new_fs steady
A=$DEV A_MNT=$MNT
new_fs victim
B=$DEV B_MNT=$MNT
A_PID=$(field "$A" .pid)
[ "$A_PID" -gt 0 ] && [ "$A_PID" != "$NBDD_PID" ] ||
	fail "$A is not served by a process of its own (pid $A_PID, nbdd $NBDD_PID)"

fio_rounds_start "$A_MNT" steady
FA=$FIO_PID
fio_rounds_start "$B_MNT" victim
FB=$FIO_PID
sleep 3

for ((i = 1; i <= KILLS; i++)); do
	old=$(field "$B" .pid)
	before=$(writes "$A")
	kill -KILL "$old"
	wait_until 60 "$B recovered ($i)" sh -c \
		"[ \"\$($NBDCTL_BIN --control $NBDD_CONTROL --json status $B | jq -r '.mapping | \"\\(.state) \\(.recoveries)\"')\" = 'connected $i' ]"
	new=$(field "$B" .pid)
	[ "$new" != "$old" ] || fail "$B: still pid $old after it was killed"
	after=$(writes "$A")
	[ "$after" -gt "$before" ] || fail "$A served no write while $B recovered ($before -> $after)"
	log "kill $i: $B server $old -> $new; $A served $((after - before)) writes meanwhile"
	sleep 3
done
grep -q "killed by signal 9" "$TMPDIR/nbdd.log" || fail "the log does not say how the server ended"

fio_rounds_stop steady $FA 2
fio_rounds_stop victim $FB 2
[ "$(field "$A" .pid)" = "$A_PID" ] || fail "$A changed its server process"
[ "$(field "$A" .recoveries)" = 0 ] || fail "$A was recovered: $(nbdctl --json status "$A")"
[ "$(field "$A" '[.totals.ops[].errors] | add')" = 0 ] || fail "$A: errors: $(nbdctl --json status "$A")"
for m in "$A_MNT" "$B_MNT"; do umount "$m"; done
for d in "$A" "$B"; do
	e2fsck -fn "$d" >"$TMPDIR/e2fsck.log" 2>&1 || fail "e2fsck -fn $d: $(cat "$TMPDIR/e2fsck.log")"
done
log "both filesystems clean; $A never disturbed"
hits=$(test_dmesg | grep -E 'I/O error, dev nbd|Buffer I/O error|EXT4-fs error|BUG:|WARNING:|Oops|Call Trace' || true)
[ -z "$hits" ] || fail "kernel log has errors:
$hits"

# ---- a server that cannot live ----
# Every new server of B is killed the moment it appears: after a few the
# daemon stops trying and fails the mapping.
for ((i = 0; i < 120; i++)); do
	state=$(field "$B" .state)
	[ "$state" = failed ] && break
	pid=$(field "$B" .pid)
	[ "$pid" != null ] && kill -KILL "$pid" 2>/dev/null
	sleep 0.5
done
[ "$(field "$B" .state)" = failed ] || fail "$B: never given up on: $(nbdctl --json status "$B")"
field "$B" .error | grep -q "ended .* times in a row" || fail "$B: reason: $(field "$B" .error)"
if timeout 20 dd if="$B" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
	fail "a read from the failed $B succeeded"
fi
nbdd_detach "$B"
[ "$(field "$A" .state)" = connected ] || fail "$A: $(nbdctl --json status "$A")"
nbdd_detach "$A"
stop_nbdd
log "a server that keeps dying: the mapping failed with its reason, detach released it"
