#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# What nbdinfo (libnbd 1.14) learns in the handshake: export names and
# descriptions from NBD_OPT_LIST, sizes, read-only, block sizes and every
# transmission flag, for memory, file, read-only and O_DIRECT exports,
# each compared with what that backend's capabilities must produce
# (lib/export.c: export_eflags); and base:allocation maps (nbdinfo --map)
# of a file with a hole layout we made and of a memory disk after writes.
. "$(dirname "$0")/client-lib.sh"
need nbdinfo qemu-io truncate fallocate

K=1024
M=$((1024 * K))

# The file, laid out by hand (ext4/xfs/tmpfs blocks are <= 4 KiB, so these
# boundaries are exact): data [0,256K), hole [256K,384K) punched out of it,
# data [384K,1M), hole to 4M, data [4M,4M+64K), hole to the end at 8M.
make_layout() {
	local f=$1
	dd if=/dev/urandom of="$f" bs=1M count=1 conv=fsync status=none
	fallocate --punch-hole --offset $((256 * K)) --length $((128 * K)) "$f"
	dd if=/dev/urandom of="$f" bs=64K count=1 seek=64 conv=notrunc,fsync \
		status=none
	truncate -s 8M "$f"
}
LAYOUT="0 $((256 * K)) 0
$((256 * K)) $((128 * K)) 3
$((384 * K)) $((640 * K)) 0
$((1 * M)) $((3 * M)) 3
$((4 * M)) $((64 * K)) 0
$((4 * M + 64 * K)) $((4 * M - 64 * K)) 3"

# What the file backend reads from sysfs for the filesystem's device: a
# partition has no queue/ of its own, its disk's is one level up.
file_rotational() {
	local dev q
	dev=$(stat -c '%Hd:%Ld' "$1")
	for q in /sys/dev/block/"$dev"/queue /sys/dev/block/"$dev"/../queue; do
		if [ -r "$q/rotational" ]; then
			[ "$(cat "$q/rotational")" = 1 ] && echo true || echo false
			return
		fi
	done
	echo false
}

make_layout "$T/disk.img"
cp --sparse=always "$T/disk.img" "$T/ro.img"
mkdir -p "$T/etc/backends.d"
printf 'backend = memory\nsize = 2M\ndescription = scratch disk for the build farm\n' \
	>"$T/etc/backends.d/scratch.conf"
ROT=$(file_rotational "$T/disk.img")

serve --config-dir "$T/etc" \
	--export mem=memory:size=64M \
	--export file="file:path=$T/disk.img" \
	--export-ro ro=memory:size=1M \
	--export-ro rofile="file:path=$T/ro.img" \
	--export desc=scratch \
	--export direct="file:path=$T/disk.img,direct=on"

# ---- the list: names, descriptions, and the first export is the default
bounded 30 nbdinfo --list --json "$(uri "")" >"$T/list.json"
python3 - "$T/list.json" <<'EOF' || fail "nbdinfo --list --json: $(cat "$T/list.json")"
import json, sys
d = json.load(open(sys.argv[1]))
names = [e["export-name"] for e in d["exports"]]
assert names == ["mem", "file", "ro", "rofile", "desc", "direct"], names
x = {e["export-name"]: e for e in d["exports"]}
assert x["desc"]["description"] == "scratch disk for the build farm", x["desc"]
# No description was configured for the others: none is invented.
for n in names:
    assert n == "desc" or "description" not in x[n], x[n]
assert d["protocol"] == "newstyle-fixed" and d["structured"] is True, d
EOF
bounded 30 nbdinfo --list "$(uri "")" >"$T/list.txt"
for n in mem file ro rofile desc direct; do
	grep -q "^export=\"$n\":" "$T/list.txt" || fail "--list lacks $n: $(cat "$T/list.txt")"
done
grep -q 'description: scratch disk for the build farm' "$T/list.txt" ||
	fail "--list lacks the description: $(cat "$T/list.txt")"
[ "$(bounded 30 nbdinfo --size "$(uri "")")" = $((64 * M)) ] ||
	fail "the default export (empty name) is not the first one, mem"

# ---- per export: size, read-only, flags and block sizes
# Expected values follow the backends' capabilities through export.c:
#  memory: everything, native; not rotational.
#  file: everything (zero and fast zero are advertised whenever writable;
#   FAST is answered ENOTSUP where the filesystem cannot), rotational as
#   sysfs says; direct=on raises the minimum block size to the O_DIRECT
#   alignment.
#  read-only: the write side (trim, zero, fast zero, FUA) is gone, flush
#   and cache stay, and one unchanging image is always multi-conn.
check_export() { # name size ro rot cache flush fua trim zero fastzero
	info_json "$1" >"$T/$1.json"
	python3 - "$T/$1.json" "$@" <<'EOF' || fail "export $1: $(cat "$T/$1.json")"
import json, sys
f, name, size, ro, rot, cache, flush, fua, trim, zero, fast = sys.argv[1:]
e = json.load(open(f))["exports"][0]
b = lambda s: s == "true"
want = {
    "export-name": name, "export-size": int(size), "is_read_only": b(ro),
    "is_rotational": b(rot), "can_cache": b(cache), "can_flush": b(flush),
    "can_fua": b(fua), "can_trim": b(trim), "can_zero": b(zero),
    "can_fast_zero": b(fast), "can_multi_conn": True, "can_df": True,
    "contexts": ["base:allocation"],
}
for k, v in want.items():
    assert e.get(k) == v, "%s: %s is %r, want %r" % (name, k, e.get(k), v)
if name != "direct":
    assert (e["block_size_minimum"], e["block_size_preferred"],
            e["block_size_maximum"]) == (1, 4096, 32 << 20), e
EOF
}
#            name   size      ro    rot   cache flush fua   trim  zero  fast
check_export mem    $((64*M)) false false true  true  true  true  true  true
check_export file   $((8*M))  false "$ROT" true true  true  true  true  true
check_export ro     $((1*M))  true  false true  true  false false false false
check_export rofile $((8*M))  true  "$ROT" true true  false false false false
check_export desc   $((2*M))  false false true  true  true  true  true  true
check_export direct $((8*M))  false "$ROT" true true  true  true  true  true
# O_DIRECT: the minimum is the file's alignment (statx, else 4096), a
# power of two of at least a sector; preferred is at least a page.
python3 - "$T/direct.json" <<'EOF' || fail "direct=on block sizes: $(cat "$T/direct.json")"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
lo, pref, hi = (e["block_size_" + k] for k in ("minimum", "preferred", "maximum"))
assert lo in (512, 1024, 2048, 4096), lo
assert pref == max(lo, 4096) and hi == 32 << 20, e
EOF

# nbdinfo's --can/--is answer by exit status (0 yes, 2 no): the same flags
# seen through another code path of the client.
can() { # want(0|2) what export
	local rc=0
	bounded 30 nbdinfo "$2" "$3" "$(uri "$4")" || rc=$?
	[ "$rc" = "$1" ] || fail "nbdinfo $2 $3 on $4: exit $rc, want $1"
}
can 0 --can trim mem
can 2 --can trim ro
can 0 --is read-only ro
can 2 --is read-only mem
can 0 --can multi-conn rofile
can 2 --can fua rofile

# ---- maps: the file's hole layout, exactly
map_json "$(uri file)" >"$T/file.map"
[ "$(cat "$T/file.map")" = "$LAYOUT" ] ||
	fail "file map: got
$(cat "$T/file.map")
want
$LAYOUT"
# Read-only and O_DIRECT exports of a file report the same holes.
map_json "$(uri rofile)" >"$T/rofile.map"
[ "$(cat "$T/rofile.map")" = "$LAYOUT" ] || fail "rofile map: $(cat "$T/rofile.map")"
map_json "$(uri direct)" >"$T/direct.map"
[ "$(cat "$T/direct.map")" = "$LAYOUT" ] || fail "direct map: $(cat "$T/direct.map")"

# ---- maps: a memory disk, before and after writes. It allocates 64 KiB
# chunks (lib/backends/memory.c), so a write makes its whole chunk data.
expect_map() { # export want
	map_json "$(uri "$1")" >"$T/map"
	[ "$(cat "$T/map")" = "$2" ] || fail "$1 map: got
$(cat "$T/map")
want
$2"
}
expect_map mem "0 $((64 * M)) 3"
qio() { bounded 30 qemu-io -f raw "$@" "$(uri mem)" >"$T/qio.out" ||
	fail "qemu-io $*: $(cat "$T/qio.out")"; }
# 4K inside chunk 3; 100K from 1M+10K spans chunks 16 and 17.
qio -c "write -P 0x11 $((192 * K)) 4k" -c "write -P 0x22 $((1 * M + 10 * K)) 100k"
expect_map mem "0 $((192 * K)) 3
$((192 * K)) $((64 * K)) 0
$((256 * K)) $((768 * K)) 3
$((1 * M)) $((128 * K)) 0
$((1 * M + 128 * K)) $((63 * M - 128 * K)) 3"
# Trim of chunk 3 and write-zeroes that may unmap (-u) chunk 16 free them:
# the map must show holes again, merged with their neighbours.
qio -c "discard $((192 * K)) 64k" -c "write -z -u $((1 * M)) 64k"
expect_map mem "0 $((1 * M + 64 * K)) 3
$((1 * M + 64 * K)) $((64 * K)) 0
$((1 * M + 128 * K)) $((63 * M - 128 * K)) 3"
# Zero gives a whole chunk back even without -u (NO_HOLE: nbdd-backends(7)
# says RAM cannot be kept "provisioned"); a partial chunk stays data.
qio -c "write -P 0x33 0 128k" -c "write -z 0 64k" -c "write -z 64k 4k" \
	-c "read -P 0 0 68k" -c "read -P 0x33 68k 60k"
expect_map mem "0 $((64 * K)) 3
$((64 * K)) $((64 * K)) 0
$((128 * K)) $((1 * M - 64 * K)) 3
$((1 * M + 64 * K)) $((64 * K)) 0
$((1 * M + 128 * K)) $((63 * M - 128 * K)) 3"

stop_daemon
echo ok
