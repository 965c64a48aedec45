#!/usr/bin/env bash
# vm-timeout: 600
#
# Crash survival: ext4 on a file-backed /dev/nbdX under fio with crc32c
# verification while nbdd is SIGKILLed and started again 5 times, then
# stopped with SIGTERM (a `systemctl restart`) and started once more.
# Each new nbdd takes the device over from the state file; fio must see
# no error and no bad checksum, a file written before the first kill must
# read back the same, e2fsck must find the filesystem clean and the
# kernel must log no I/O error.
#
# Then the cases that cannot recover, which must fail cleanly: a memory
# mapping (its data died with the daemon) and a mapping whose dead-conn
# timeout ran out before the restart. Both are listed as failed with the
# reason, their I/O fails at once, and `nbdctl detach` releases them.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
need fio jq mkfs.ext4 e2fsck sha256sum
on_exit sh -c 'cp "$TMPDIR/nbdd.log" "$VM_ARTIFACTS/" 2>/dev/null || true'
STATE=$TMPDIR/state.json
KILLS=5

# A new daemon on the same control socket and state file; the old log
# is kept (spawn truncates its own). A request the kernel had sent to the
# killed daemon is resent when its request timeout fires: 10 s here
# rather than the kernel's 30 s, to keep the test short.
restart_nbdd() {
	[ -f "$TMPDIR/nbdd.log" ] && cat "$TMPDIR/nbdd.log" >>"$TMPDIR/nbdd-all.log"
	start_nbdd --state-file "$STATE" --timeout 10
}

mapping() { # device -> the JSON of its mapping
	nbdctl --json list | jq -c --arg d "$1" '.mappings[] | select(.device == $d)'
}

state_of() { mapping "$1" | jq -r .state; }

# ---- one file-backed filesystem under load ----
IMG=$TMPDIR/disk.img
truncate -s 256M "$IMG"
restart_nbdd
nbdd_attach "file:path=$IMG"
DEV=$NBD_DEV
[ "$(mapping "$DEV" | jq .dead_conn_timeout)" = 60 ] ||
	fail "a daemon mapping should default to a 60 s dead-conn timeout: $(mapping "$DEV")"
mkfs.ext4 -q -F "$DEV"
mount_dev "$DEV"
head -c $((8 << 20)) /dev/urandom >"$TMPDIR/before"
cp "$TMPDIR/before" "$MNT/before"
sync
SUM=$(sha256sum <"$TMPDIR/before")

fio_rounds_start "$MNT" crash
FIO=$FIO_PID
sleep 3

for ((i = 1; i <= KILLS; i++)); do
	kill -0 $FIO 2>/dev/null || fail "the fio rounds ended before kill $i"
	kill -KILL "$NBDD_PID"
	wait "$NBDD_PID" 2>/dev/null || true
	[ -e "/sys/block/${DEV#/dev/}/pid" ] || fail "$DEV lost its configuration when nbdd died"
	sleep 1
	restart_nbdd
	wait_until 60 "$DEV taken over (kill $i)" \
		sh -c "[ \"\$($NBDCTL_BIN --control $NBDD_CONTROL --json list | jq -r '.mappings[0].state')\" = connected ]"
	grep -q "taken over from the previous nbdd" "$TMPDIR/nbdd.log" ||
		fail "kill $i: no take-over logged: $(cat "$TMPDIR/nbdd.log")"
	log "kill $i: taken over by nbdd pid $NBDD_PID"
	sleep 3
done

# A graceful stop leaves the device to the next daemon, like a restart.
stop_nbdd TERM
grep -q "left to the next nbdd" "$TMPDIR/nbdd.log" || fail "SIGTERM did not hand $DEV over"
[ -e "$STATE" ] || fail "the state file went away with a hand-over"
restart_nbdd
wait_until 60 "$DEV taken over after SIGTERM" \
	sh -c "[ \"\$($NBDCTL_BIN --control $NBDD_CONTROL --json list | jq -r '.mappings[0].state')\" = connected ]"
log "SIGTERM and a new nbdd: taken over"
sleep 3

fio_rounds_stop crash $FIO 3

umount "$MNT"
blockdev --flushbufs "$DEV"
mount "$DEV" "$MNT"
[ "$(sha256sum <"$MNT/before")" = "$SUM" ] || fail "the file written before the first kill differs"
umount "$MNT"
e2fsck -fn "$DEV" >"$TMPDIR/e2fsck.log" 2>&1 || fail "e2fsck -fn $DEV: $(cat "$TMPDIR/e2fsck.log")"
log "after $KILLS kills and a SIGTERM: checksum matches, e2fsck clean"
json=$(nbdctl --json status "$DEV")
[ "$(echo "$json" | jq .mapping.recoveries)" -ge 1 ] || fail "status shows no recovery: $json"
nbdctl status "$DEV" | grep -q "recoveries:" || fail "nbdctl status does not show recoveries"
nbdd_detach "$DEV"

hits=$(test_dmesg | grep -E 'I/O error, dev nbd|Buffer I/O error|EXT4-fs error|BUG:|WARNING:|Oops|Call Trace' || true)
[ -z "$hits" ] || fail "kernel log has errors:
$hits"

# ---- what cannot be taken over fails cleanly ----
nbdd_attach memory:size=16M
MEMDEV=$NBD_DEV
truncate -s 16M "$TMPDIR/short.img"
nbdd_attach "file:path=$TMPDIR/short.img" --dead-conn-timeout 2
SHORT=$NBD_DEV
kill -KILL "$NBDD_PID"
wait "$NBDD_PID" 2>/dev/null || true
sleep 4 # past the 2 s dead-conn timeout
restart_nbdd
for d in "$MEMDEV" "$SHORT"; do
	wait_until 30 "$d listed as failed" sh -c "$NBDCTL_BIN --control $NBDD_CONTROL --json list | jq -e --arg d $d '.mappings[] | select(.device == \$d and .state == \"failed\")' >/dev/null"
done
mapping "$MEMDEV" | jq -r .error | grep -q "memory" || fail "memory mapping: $(mapping "$MEMDEV")"
mapping "$SHORT" | jq -r .error | grep -q "dead-conn timeout" || fail "timed-out mapping: $(mapping "$SHORT")"
nbdctl list | grep -q failed || fail "nbdctl list does not show failed: $(nbdctl list)"
grep -q "failed: .*nbdctl detach" "$TMPDIR/nbdd.log" || fail "no log line says why: $(cat "$TMPDIR/nbdd.log")"
# I/O fails at once: no 2 s wait per request any more.
start=$SECONDS
if timeout 20 dd if="$SHORT" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
	fail "a read from $SHORT succeeded with nobody serving it"
fi
[ $((SECONDS - start)) -lt 10 ] || fail "a read from the failed $SHORT took $((SECONDS - start)) s to fail"
log "failed mappings: listed with their reasons, I/O fails at once"
nbdd_detach "$MEMDEV"
nbdd_detach "$SHORT"
[ "$(nbdctl --json list | jq '.mappings | length')" = 0 ] || fail "mappings left: $(nbdctl list)"
stop_nbdd
[ ! -e "$STATE" ] || fail "state file left after the last clean exit"
log "detach releases failed mappings; clean exit"
