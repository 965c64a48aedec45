#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# fio's nbd engine (libnbd) hammering memory and file exports: random
# 4 KiB reads and writes, 32 in flight per job, two jobs on disjoint
# halves, every block written with a crc32c header that later reads
# check. Passing means: fio exits 0, reports no error, and did both reads
# and writes. That the same options really catch bad data is shown first:
# the run fails when blocks are overwritten behind fio's back, and a
# verify-only pass fails on a corrupted image. Last, the memory export
# again with the daemon polling its sockets (--poll-max-us).
. "$(dirname "$0")/client-lib.sh"
need fio qemu-io

M=$((1024 * 1024))
# Two jobs, each on its own 16 MiB: they must not verify each other's
# blocks, which would be a race in the test, not in nbdd.
FIO_JOB=(--bs=4k --iodepth=32 --numjobs=2 --size=16M
	 --offset_increment=16M --verify=crc32c --verify_fatal=1
	 --group_reporting --output-format=json --verify_state_save=0)

run_fio() { # uri runtime out [extra fio options...]; exit status of fio
	local u=$1 secs=$2 out=$3
	shift 3
	# --uri belongs to the nbd engine: it must come after --ioengine.
	# Run in $T: whatever fio leaves in its directory goes with it.
	(cd "$T" && bounded $((secs + 60)) fio --name=verify --ioengine=nbd \
		--uri="$u" "${FIO_JOB[@]}" --output="$out.json" "$@" \
		>"$out.log" 2>&1)
}

# fio's own account of a finished run: no error, reads and writes done.
check_report() { # out
	python3 - "$1.json" <<'EOF' || fail "fio report: $(cat "$1.log")"
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
# error is the first errno fio met (EILSEQ, 84, for a failed verify).
assert j["error"] == 0, "fio error %d" % j["error"]
r, w = j["read"]["total_ios"], j["write"]["total_ios"]
for d in ("read", "write"):
    assert j[d]["short_ios"] == 0 and j[d]["drop_ios"] == 0, (d, j[d])
assert r > 1000 and w > 1000, "reads %d, writes %d" % (r, w)
print("%s: %d reads, %d writes, 0 errors" % (sys.argv[1], r, w))
EOF
}

truncate -s 32M "$T/disk.img"
serve --export mem=memory:size=32M --export file="file:path=$T/disk.img" \
	--export control=memory:size=32M

# ---- the checks can fail: blocks overwritten while fio runs (should the
# test fail meanwhile, the exit trap kills nbdd and fio stops with it)
rc=0
run_fio "$(uri control)" 4 "$T/corrupt" --rw=randrw --runtime=4 --time_based &
FIO=$!
sleep 1
for _ in 1 2 3 4 5 6 7 8; do
	bounded 30 qemu-io -f raw -c "write -P 0x66 0 32M" "$(uri control)" >/dev/null
	sleep 0.2
done
wait $FIO || rc=$?
[ $rc -ne 0 ] || fail "fio did not notice blocks overwritten under it: $(tail "$T/corrupt.log")"
grep -q 'verify: bad magic header 6666' "$T/corrupt.log" ||
	fail "fio failed, but not on verification: $(tail "$T/corrupt.log")"

# ---- and deterministically: write, corrupt one block, verify only
run_fio "$(uri control)" 0 "$T/write" --rw=write --do_verify=0 ||
	fail "sequential write pass: $(cat "$T/write.log")"
run_fio "$(uri control)" 0 "$T/vonly" --rw=write --verify_only ||
	fail "verify-only of an intact image failed: $(cat "$T/vonly.log")"
bounded 30 qemu-io -f raw -c "write -P 0x66 $((20 * M)) 512" "$(uri control)" >/dev/null
if run_fio "$(uri control)" 0 "$T/vbad" --rw=write --verify_only; then
	fail "verify-only passed over a corrupted block"
fi
grep -q "offset $((20 * M))" "$T/vbad.log" || fail "$(cat "$T/vbad.log")"

# ---- the real runs
for e in mem file; do
	run_fio "$(uri "$e")" 10 "$T/$e" --rw=randrw --runtime=10 --time_based ||
		fail "fio on $e: exit $?: $(tail -n 30 "$T/$e.log")"
	check_report "$T/$e"
done
stop_daemon

# ---- once more with the reader polling before it sleeps (--poll-max-us)
serve --export mem=memory:size=32M --poll-max-us 32
run_fio "$(uri mem)" 5 "$T/poll" --rw=randrw --runtime=5 --time_based ||
	fail "fio on mem with polling: exit $?: $(tail -n 30 "$T/poll.log")"
check_report "$T/poll"
stop_daemon
echo ok
