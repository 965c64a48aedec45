#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# nbdcopy with four connections (it only opens them when the export
# advertises multi-conn) in every direction: local file -> memory export
# -> file export -> local file, each copy checked by checksum, and each
# sparse: the holes of the source reappear in the memory export, in the
# exported file and in the local copy, because nbdd reports them in
# base:allocation and honours zero requests that may trim.
. "$(dirname "$0")/client-lib.sh"
need nbdcopy nbdinfo sha256sum

K=1024
M=$((1024 * K))
SIZE=$((64 * M))

# Data at [0,4M), [10M,10M+128K), [33M,40M); holes elsewhere.
truncate -s $SIZE "$T/src.img"
dd if=/dev/urandom of="$T/src.img" bs=64K count=64 conv=notrunc status=none
dd if=/dev/urandom of="$T/src.img" bs=64K count=2 seek=160 conv=notrunc status=none
dd if=/dev/urandom of="$T/src.img" bs=64K count=112 seek=528 conv=notrunc status=none
LAYOUT="0 $((4 * M)) 0
$((4 * M)) $((6 * M)) 3
$((10 * M)) $((128 * K)) 0
$((10 * M + 128 * K)) $((23 * M - 128 * K)) 3
$((33 * M)) $((7 * M)) 0
$((40 * M)) $((24 * M)) 3"
SUM=$(sha256sum <"$T/src.img")
# The file destination starts as junk: zeroes must really be written.
dd if=/dev/zero bs=1M count=64 status=none | tr '\0' '\252' >"$T/dst.img"

# The data ranges of a local file, as SEEK_DATA/SEEK_HOLE see them, in
# the form of nbdinfo --map (offset length type).
file_layout() {
	python3 - "$1" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size, at = os.fstat(fd).st_size, 0
while at < size:
    try:
        data = os.lseek(fd, at, os.SEEK_DATA)
    except OSError:
        data = size
    if data > at:
        print(at, data - at, 3)
        at = data
        continue
    hole = os.lseek(fd, at, os.SEEK_HOLE)
    print(at, hole - at, 0)
    at = hole
EOF
}

# Clients that reached transmission on export $1, from nbdd's info log.
sessions() {
	grep -c "client entering transmission with export '$1'" "$LOG" || true
}

copy4() { # source destination export-whose-clients-to-count
	local before
	before=$(sessions "$3")
	bounded 120 nbdcopy --connections=4 --threads=4 "$1" "$2" ||
		fail "nbdcopy --connections=4 $1 $2"
	# Four connections, not a silent fallback to one (nbdcopy opens no
	# more connections than threads, hence --threads).
	[ $(($(sessions "$3") - before)) -eq 4 ] ||
		fail "nbdcopy opened $(($(sessions "$3") - before)) connections to $3, want 4"
}

check_sum() { # what, then the bytes on stdin
	local got
	got=$(sha256sum)
	[ "$got" = "$SUM" ] || fail "$1: checksum $got, want $SUM"
}

[ "$(file_layout "$T/src.img")" = "$LAYOUT" ] ||
	fail "this filesystem did not keep the source sparse: $(file_layout "$T/src.img")"

serve --log-level info \
	--export mem=memory:size=$SIZE \
	--export file="file:path=$T/dst.img" \
	--export-ro src="file:path=$T/src.img"

# local -> memory
copy4 "$T/src.img" "$(uri mem)" mem
bounded 60 nbdcopy "$(uri mem)" - | check_sum "local -> memory"
[ "$(map_json "$(uri mem)")" = "$LAYOUT" ] ||
	fail "memory export after a sparse copy: $(map_json "$(uri mem)")"

# memory -> file (over junk)
copy4 "$(uri mem)" "$(uri file)" file
check_sum "memory -> file" <"$T/dst.img"
[ "$(file_layout "$T/dst.img")" = "$LAYOUT" ] ||
	fail "the exported file after a sparse copy: $(file_layout "$T/dst.img")"
[ "$(map_json "$(uri file)")" = "$LAYOUT" ] || fail "file export map"

# file (read-only export) -> local
copy4 "$(uri src)" "$T/out.img" src
check_sum "read-only file export -> local" <"$T/out.img"
[ "$(file_layout "$T/out.img")" = "$LAYOUT" ] ||
	fail "the local copy is not sparse: $(file_layout "$T/out.img")"

# And a copy that the checksum must catch: one byte changed on the way.
bounded 60 nbdcopy "$T/src.img" "$(uri mem)"
bounded 30 qemu-io -f raw -c "write -P 0x58 $((50 * M)) 1" "$(uri mem)" >/dev/null
if [ "$(bounded 60 nbdcopy "$(uri mem)" - | sha256sum)" = "$SUM" ]; then
	fail "a changed byte did not change the checksum"
fi

stop_daemon
echo ok
