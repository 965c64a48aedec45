#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The example plugin (examples/plugins/pattern.c, built as a third party
# would build it) served by nbdd and read by real clients, holding it to
# its documentation: "pattern:size=SIZE — a read-only disk whose every
# 8-byte word holds its own offset, big-endian". It has only pread, so it
# is read-only, all data, multi-conn (nothing changes), and neither flush
# nor cache is advertised. Its parameter errors reach the user verbatim.
. "$(dirname "$0")/client-lib.sh"
need nbdinfo nbdsh nbdcopy

PLUGIN=$EXAMPLES/pattern.so
[ -f "$PLUGIN" ] || fail "no $PLUGIN (make all builds it)"

# ---- bad specs stop the start with the plugin's own message
expect 1 "pattern: unknown parameter 'colour' (pattern takes size=SIZE)" \
	"$NBDD_BIN" --control "$CTL" --listen "unix:$SOCK" \
	--export p="$PLUGIN:size=1M,colour=red"
expect 1 "pattern: size=SIZE is required" \
	"$NBDD_BIN" --control "$CTL" --listen "unix:$SOCK" --export p="$PLUGIN"
expect 1 "pattern: 'lots' is not a size" \
	"$NBDD_BIN" --control "$CTL" --listen "unix:$SOCK" --export p="$PLUGIN:size=lots"

serve --export pat="$PLUGIN:size=1M" \
	--export odd="$PLUGIN:size=1001" \
	--export huge="$PLUGIN:size=1T"

# ---- what nbdinfo sees
info_json pat >"$T/pat.json"
python3 - "$T/pat.json" <<'EOF' || fail "nbdinfo pat: $(cat "$T/pat.json")"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
want = {"export-size": 1 << 20, "is_read_only": True, "is_rotational": False,
        "can_multi_conn": True, "can_df": True, "can_flush": False,
        "can_fua": False, "can_trim": False, "can_zero": False,
        "can_fast_zero": False, "can_cache": False,
        "block_size_minimum": 1, "block_size_preferred": 4096,
        "block_size_maximum": 32 << 20}
for k, v in want.items():
    assert e[k] == v, "%s is %r, want %r" % (k, e[k], v)
EOF
# No extents callback: one extent of data, end to end.
[ "$(map_json "$(uri huge)")" = "0 $((1 << 40)) 0" ] ||
	fail "map of the pattern: $(map_json "$(uri huge)")"

# ---- what it reads: every byte where the documentation says
cat >"$T/pattern.py" <<'EOF'
import random
import struct
import nbd
from nbdcheck import connect, expect_error, extents


def expected(offset, count):
    """The documented pattern: word w (at 8w) holds 8w, big-endian."""
    first = offset // 8
    words = b"".join(struct.pack(">Q", 8 * w)
                     for w in range(first, (offset + count + 7) // 8 + 1))
    skip = offset - 8 * first
    return words[skip:skip + count]


assert expected(0x1000, 8) == bytes.fromhex("0000000000001000")
rng = random.Random(8)
for name in ("pat", "odd", "huge"):
    h = connect(name, strict=0)
    size = h.get_size()
    for _ in range(200):
        count = rng.choice((1, 3, 7, 8, 9, 512, 4095, 65536, 300000))
        count = min(count, size)
        off = rng.randrange(0, size - count + 1)
        assert h.pread(count, off) == expected(off, count), (name, off, count)
    # The very end, with its last word cut short for odd sizes.
    assert h.pread(11, size - 11) == expected(size - 11, 11), name
    # Structured reads split into chunks cover the same bytes.
    n = min(200000, size - 4)
    assert h.pread_structured(n, 4, lambda *a: 0) == expected(4, n)
    n = min(4096, size)
    assert extents(h, n, size - n) == [(size - n, n, 0)]
    # Not advertised, so refused by nbdd (libnbd's checks are off).
    expect_error("EPERM", h.pwrite, b"x" * 8, 0)
    expect_error("EPERM", h.trim, 8, 0)
    expect_error("EPERM", h.zero, 8, 0)
    expect_error("EINVAL", h.flush)
    expect_error("EINVAL", h.cache, 8, 0)
    expect_error("EINVAL", h.pread, 8, size - 4)
    assert h.pread(8, 0) == bytes(8)
    h.shutdown()
print("pattern ok")
EOF
pyrun "$T/pattern.py"

# ---- four connections at once agree with one another (multi-conn)
bounded 60 nbdcopy --connections=4 --threads=4 "$(uri pat)" "$T/pat.img" ||
	fail "nbdcopy of the pattern"
python3 - "$T/pat.img" <<'EOF' || fail "nbdcopy's copy of the pattern differs"
import struct, sys
d = open(sys.argv[1], "rb").read()
assert len(d) == 1 << 20
assert d == b"".join(struct.pack(">Q", o) for o in range(0, 1 << 20, 8))
EOF

stop_daemon
echo ok
