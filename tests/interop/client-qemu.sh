#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# qemu's NBD client (qemu-img 7.2, qemu-io) against memory and file
# exports: a qcow2 image converted into the export over junk and compared
# back (so every zero area must really have been zeroed), converted out
# again, `qemu-img info` and `qemu-img map` over NBD, and qemu-io's
# write/read/zero/discard/flush with pattern checks. Each comparison is
# also shown to fail when one byte differs.
. "$(dirname "$0")/client-lib.sh"
need qemu-img qemu-io

K=1024
M=$((1024 * K))
SIZE=$((32 * M))

# The source: random data at [0,1M), [5M,8M) and [20M,20M+64K), zeroes
# elsewhere; as qcow2, only those ranges are allocated.
make_source() {
	truncate -s $SIZE "$T/src.raw"
	dd if=/dev/urandom of="$T/src.raw" bs=64K count=16 conv=notrunc status=none
	dd if=/dev/urandom of="$T/src.raw" bs=64K count=48 seek=80 conv=notrunc status=none
	dd if=/dev/urandom of="$T/src.raw" bs=64K count=1 seek=320 conv=notrunc status=none
	bounded 60 qemu-img convert -q -f raw -O qcow2 "$T/src.raw" "$T/src.qcow2"
}
DATA_RANGES="0 $((1 * M))
$((5 * M)) $((3 * M))
$((20 * M)) $((64 * K))"

qio() { # uri qemu-io-args...: run, and fail with its output unless it succeeds
	local u=$1
	shift
	bounded 60 qemu-io -f raw "$@" "$u" >"$T/qio.out" 2>&1 ||
		fail "qemu-io $* $u: $(cat "$T/qio.out")"
	if grep -q 'failed\|error' "$T/qio.out"; then
		fail "qemu-io $* $u: $(cat "$T/qio.out")"
	fi
}

# qemu-img compare: 0 identical, 1 different, anything else is an error.
compare() { # want fmt1 img1 img2
	local rc=0
	bounded 60 qemu-img compare -f "$2" -F raw "$3" "$4" >"$T/cmp.out" 2>&1 || rc=$?
	[ $rc = "$1" ] || fail "qemu-img compare $3 $4: exit $rc, want $1: $(cat "$T/cmp.out")"
}

# "start length" of every range qemu-img map calls data.
data_ranges() {
	bounded 60 qemu-img map -f raw --output=json "$1" | python3 -c '
import json, sys
out = []
for e in json.load(sys.stdin):
    if e["data"]:
        if out and out[-1][0] + out[-1][1] == e["start"]:
            out[-1][1] += e["length"]
        else:
            out.append([e["start"], e["length"]])
for s, l in out:
    print(s, l)'
}

convert_and_compare() { # export
	local u
	u=$(uri "$1")
	# Junk first: convert -n may not assume the target reads zeroes.
	qio "$u" -c "write -P 0xff 0 $SIZE"
	# -W -m 16: sixteen coroutines writing out of order, as fast as can be.
	bounded 120 qemu-img convert -n -W -m 16 -f qcow2 -O raw "$T/src.qcow2" "$u" ||
		fail "qemu-img convert into $1"
	compare 0 qcow2 "$T/src.qcow2" "$u"
	# The comparison can fail: one byte in a zero area.
	qio "$u" -c "write -P 0x01 $((30 * M)) 1"
	compare 1 qcow2 "$T/src.qcow2" "$u"
	grep -q "Content mismatch at offset $((30 * M))!" "$T/cmp.out" ||
		fail "compare: $(cat "$T/cmp.out")"
	qio "$u" -c "write -z -u $((30 * M)) 64k"
	compare 0 qcow2 "$T/src.qcow2" "$u"
	# And back out into a new local image.
	rm -f "$T/out.qcow2"
	bounded 120 qemu-img convert -f raw -O qcow2 "$u" "$T/out.qcow2" ||
		fail "qemu-img convert out of $1"
	compare 0 qcow2 "$T/out.qcow2" "$T/src.raw"
}

make_source
# The file target starts as junk too, and the size is taken from it.
dd if=/dev/zero bs=1M count=32 status=none | tr '\0' '\377' >"$T/target.img"
serve --export mem=memory:size=$SIZE --export file="file:path=$T/target.img"

convert_and_compare mem
convert_and_compare file
# What the file export acknowledged is in the file itself.
compare 0 qcow2 "$T/src.qcow2" "$T/target.img"

# ---- qemu-img info and map over NBD
for e in mem file; do
	bounded 30 qemu-img info --output=json "$(uri "$e")" >"$T/info.json"
	python3 - "$T/info.json" $SIZE <<'EOF' || fail "qemu-img info $e: $(cat "$T/info.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["virtual-size"] == int(sys.argv[2]) and d["format"] == "raw", d
EOF
	# convert writes zero areas as zeroes that may be unmapped, so both
	# backends report data exactly where the source has it (memory in
	# 64 KiB chunks, which these ranges are made of).
	got=$(data_ranges "$(uri "$e")")
	[ "$got" = "$DATA_RANGES" ] || fail "qemu-img map $e: got
$got
want
$DATA_RANGES"
done

# ---- qemu-io: patterns, FUA, zero, discard, flush, async writes
u=$(uri mem)
qio "$u" -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M'
qio "$u" -c 'write -f -P 0xcd 1M 64k' -c 'flush' -c 'read -P 0xcd 1M 64k'
qio "$u" -c 'write -z 1M 32k' -c 'read -P 0 1M 32k' -c 'read -P 0xcd 1056k 32k'
qio "$u" -c 'discard 0 1M' -c 'read -P 0 0 1M'
qio "$u" -c 'aio_write -P 0x5e 2M 4k' -c 'aio_write -P 0x5f 2052k 4k' \
	-c 'aio_flush' -c 'read -P 0x5e 2M 4k' -c 'read -P 0x5f 2052k 4k'
qio "$u" -c 'write -P 0x77 3000001 12345' -c 'read -P 0x77 3000001 12345' \
	-c 'read -P 0 2999999 2'
# The pattern check can fail, and then qemu-io says so and exits non-zero.
if bounded 30 qemu-io -f raw -c 'read -P 0xab 2M 4k' "$u" >"$T/qio.out" 2>&1; then
	fail "a wrong pattern was not noticed: $(cat "$T/qio.out")"
fi
grep -q 'Pattern verification failed' "$T/qio.out" || fail "$(cat "$T/qio.out")"

stop_daemon
echo ok
