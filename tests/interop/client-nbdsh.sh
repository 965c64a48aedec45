#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# libnbd's Python bindings (nbdsh) drive every command and flag the
# exports advertise, and the errors a client can provoke:
#  - read/write (FUA), flush, trim, cache, write-zeroes with and without
#    NO_HOLE and FAST_ZERO, block status with and without REQ_ONE, reads
#    with DF and as hole/data chunks, on a memory and a file export, with
#    what each must leave behind (holes in memory, holes in the file);
#  - structured replies turned off: simple replies, and DF and block
#    status then refused;
#  - errors: past the end (EINVAL/ENOSPC), writes to a read-only export
#    (EPERM), misaligned requests where a minimum block size was agreed
#    (EINVAL), and the connection still works after each;
#  - hundreds of requests in flight, and replies out of order from the
#    file backend's worker pool;
#  - the handshake in libnbd's opt mode: LIST, LIST_META_CONTEXT, INFO
#    (unknown export, then known ones), GO on the default export.
# libnbd is told not to check requests itself (set_strict_mode) wherever
# the point is what the server answers to a bad one.
. "$(dirname "$0")/client-lib.sh"
need nbdsh

dd if=/dev/urandom of="$T/disk.img" bs=1M count=32 status=none
truncate -s 8M "$T/direct.img"
export FILE_IMG=$T/disk.img
serve --export mem=memory:size=64M \
	--export file="file:path=$T/disk.img" \
	--export-ro ro=memory:size=1M \
	--export direct="file:path=$T/direct.img,direct=on"

cat >"$T/commands.py" <<'EOF'
# Every command and flag, on memory and on a file, with their effects.
import os
import nbd
from nbdcheck import connect, expect_error, extents, read_chunks

K, M = 1 << 10, 1 << 20
HOLE = nbd.STATE_HOLE | nbd.STATE_ZERO
FILE = os.environ["FILE_IMG"]


def file_has_hole(off, length):
    """The backing file has no data in [off, off + length)."""
    fd = os.open(FILE, os.O_RDONLY)
    try:
        return os.lseek(fd, off, os.SEEK_DATA) >= off + length
    except OSError:  # ENXIO: only hole up to the end
        return True
    finally:
        os.close(fd)


def common(h, name):
    flags = (h.can_flush(), h.can_fua(), h.can_trim(), h.can_zero(),
             h.can_fast_zero(), h.can_cache(), h.can_df(),
             h.can_multi_conn(), h.can_meta_context("base:allocation"))
    assert all(flags), (name, flags)
    assert h.get_structured_replies_negotiated()

    data = os.urandom(192 * K)
    h.pwrite(data, 1 * M)
    assert h.pread(len(data), 1 * M) == data, name
    h.pwrite(b"\x5a" * 4096, 3 * M, nbd.CMD_FLAG_FUA)
    assert h.pread(4096, 3 * M) == b"\x5a" * 4096, name
    h.flush()
    h.cache(1 * M, 0)
    h.cache(4096, h.get_size() - 4096)

    # Unaligned, odd-sized I/O reaches the right bytes.
    h.pwrite(b"odd", 1 * M + 7)
    assert h.pread(5, 1 * M + 6) == data[6:7] + b"odd" + data[10:11], name

    # DF: the whole read in one data chunk, whatever lies underneath.
    h.trim(64 * K, 2 * M)
    got, chunks = read_chunks(h, 256 * K, 2 * M - 64 * K, nbd.CMD_FLAG_DF)
    assert chunks == [(2 * M - 64 * K, 256 * K, nbd.READ_DATA)], chunks
    assert got == h.pread(256 * K, 2 * M - 64 * K), name

    # REQ_ONE: exactly one extent, from the offset asked, no longer
    # than asked, agreeing with the full answer.
    full = extents(h, 4 * M, 0)
    one = extents(h, 4 * M, 0, nbd.CMD_FLAG_REQ_ONE)
    assert len(one) == 1 and one[0][0] == 0 and one[0][1] <= full[0][1] \
        and one[0][2] == full[0][2], (one, full)
    mid = extents(h, 64 * K, 2 * M + 4 * K, nbd.CMD_FLAG_REQ_ONE)
    assert len(mid) == 1 and mid[0][1] <= 64 * K and mid[0][2] & nbd.STATE_ZERO, mid

    # Write-zeroes in every flavour reads back as zeroes.
    for flags in (0, nbd.CMD_FLAG_NO_HOLE, nbd.CMD_FLAG_FUA,
                  nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA):
        h.pwrite(b"\xee" * (64 * K), 4 * M)
        h.zero(64 * K, 4 * M, flags)
        assert h.pread(64 * K, 4 * M) == bytes(64 * K), (name, flags)
    h.trim(64 * K, 4 * M, nbd.CMD_FLAG_FUA)
    return data


def memory():
    h = connect("mem")
    common(h, "mem")
    # Trim and zero free whole 64 KiB chunks: holes, reading zeroes.
    h.pwrite(b"\x01" * (128 * K), 8 * M)
    h.trim(64 * K, 8 * M)
    assert h.pread(64 * K, 8 * M) == bytes(64 * K)
    assert extents(h, 128 * K, 8 * M) == [(8 * M, 64 * K, HOLE),
                                          (8 * M + 64 * K, 64 * K, 0)]
    h.zero(64 * K, 8 * M + 64 * K)
    assert extents(h, 128 * K, 8 * M) == [(8 * M, 128 * K, HOLE)]
    # NO_HOLE over a written chunk: it must read zeroes (whether the chunk
    # stays allocated is the backend's choice, see nbdd-backends(7)); over
    # part of a chunk, the rest of the chunk keeps its data.
    h.pwrite(b"\x02" * (128 * K), 9 * M)
    h.zero(64 * K, 9 * M, nbd.CMD_FLAG_NO_HOLE)
    h.zero(4 * K, 9 * M + 64 * K, nbd.CMD_FLAG_NO_HOLE)
    assert h.pread(128 * K, 9 * M) == bytes(68 * K) + b"\x02" * (60 * K)
    assert extents(h, 64 * K, 9 * M + 64 * K) == [(9 * M + 64 * K, 64 * K, 0)]
    # FAST_ZERO is native here: it must succeed, not say ENOTSUP.
    h.pwrite(b"\x03" * (64 * K), 11 * M)
    h.zero(64 * K, 11 * M, nbd.CMD_FLAG_FAST_ZERO)
    assert h.pread(64 * K, 11 * M) == bytes(64 * K)
    h.zero(64 * K, 11 * M, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)
    # A large read without DF arrives as hole and data chunks that follow
    # the extents: [8M, 9M+64K) is hole, [9M+64K, 9M+128K) data.
    got, chunks = read_chunks(h, 1 * M + 128 * K, 8 * M)
    assert got == bytes(len(got) - 60 * K) + b"\x02" * (60 * K)
    assert extents(h, 1 * M + 128 * K, 8 * M) == [
        (8 * M, 1 * M + 64 * K, HOLE), (9 * M + 64 * K, 64 * K, 0)]
    assert sorted(chunks) == [(8 * M, 1 * M + 64 * K, nbd.READ_HOLE),
                              (9 * M + 64 * K, 64 * K, nbd.READ_DATA)], chunks
    h.shutdown()


def file():
    h = connect("file")
    common(h, "file")
    assert file_has_hole(2 * M, 64 * K), "trim left no hole in the file"
    # Trim punches a hole in the file, and the export reports it.
    assert not file_has_hole(16 * M, 64 * K)
    h.trim(64 * K, 16 * M)
    assert h.pread(64 * K, 16 * M) == bytes(64 * K)
    assert file_has_hole(16 * M, 64 * K), "trim left no hole in the file"
    assert extents(h, 64 * K, 16 * M) == [(16 * M, 64 * K, HOLE)]
    # Zero that may trim does the same.
    h.zero(64 * K, 17 * M)
    assert file_has_hole(17 * M, 64 * K), "zero left no hole in the file"
    # FAST_ZERO is advertised; the file may still answer ENOTSUP, and
    # then must not have touched the data.
    before = h.pread(64 * K, 18 * M)
    try:
        h.zero(64 * K, 18 * M, nbd.CMD_FLAG_FAST_ZERO)
        assert h.pread(64 * K, 18 * M) == bytes(64 * K)
    except nbd.Error as e:
        assert e.errno == "ENOTSUP", e
        assert h.pread(64 * K, 18 * M) == before
    # What the export says is what the file holds.
    with open(FILE, "rb") as f:
        f.seek(1 * M)
        assert f.read(192 * K) == h.pread(192 * K, 1 * M)
    # Every other 4K block of [20M, 28M) punched: one 8 MiB read spans
    # 2048 extents, more than nbdd looks up for one read (1024; it sends
    # the rest as data), and must still be exactly the file's bytes.
    for off in range(20 * M, 28 * M, 8 * K):
        h.trim(4 * K, off)
    got, chunks = read_chunks(h, 8 * M, 20 * M)
    with open(FILE, "rb") as f:
        f.seek(20 * M)
        assert got == f.read(8 * M)
    assert any(c[2] == nbd.READ_HOLE for c in chunks), chunks[:4]
    ext = extents(h, 8 * M, 20 * M)
    # Block status may stop early (nbdd caps a reply's extents), but what
    # it reports alternates exactly.
    assert len(ext) > 1024, len(ext)
    for i, (off, length, flags) in enumerate(ext):
        assert (off, length, flags) == (20 * M + i * 4 * K, 4 * K,
                                        0 if i % 2 else HOLE), (i, ext[i])
    h.shutdown()


memory()
file()
print("commands ok")
EOF

cat >"$T/errors.py" <<'EOF'
# Bad requests get the spec's error, and the connection carries on.
import nbd
from nbdcheck import connect, expect_error, extents

K, M = 1 << 10, 1 << 20


def past_the_end(name):
    # STRICT off: libnbd would refuse these itself, and we want the server.
    h = connect(name, strict=0)
    size = h.get_size()
    expect_error("EINVAL", h.pread, 4096, size)
    expect_error("EINVAL", h.pread, 8192, size - 4096)
    expect_error("EINVAL", h.pread, 1, 1 << 62)
    expect_error("ENOSPC", h.pwrite, b"x" * 4096, size)
    expect_error("ENOSPC", h.zero, 8192, size - 4096)
    expect_error("EINVAL", h.trim, 8192, size - 4096)
    expect_error("EINVAL", h.cache, 8192, size - 4096)
    expect_error("EINVAL", extents, h, 8192, size + 4096)
    # Zero-length requests: nbdd refuses them (wire.c).
    expect_error("EINVAL", h.pread, 0, 0)
    # Nothing was written past the end or at its edge, and the
    # connection still serves requests.
    h.pwrite(b"y" * 4096, size - 4096)
    assert h.pread(4096, size - 4096) == b"y" * 4096
    assert not h.aio_is_dead() and h.aio_is_ready()
    h.shutdown()


def read_only():
    h = connect("ro", strict=0)
    assert h.is_read_only() and not h.can_trim() and not h.can_zero()
    before = h.pread(64 * K, 0)
    expect_error("EPERM", h.pwrite, b"w" * 4096, 0)
    # FUA is not advertised on a read-only export: either error is right.
    try:
        h.pwrite(b"w" * 4096, 0, nbd.CMD_FLAG_FUA)
        raise AssertionError("FUA write to a read-only export succeeded")
    except nbd.Error as e:
        assert e.errno in ("EPERM", "EINVAL"), e
    expect_error("EPERM", h.trim, 4096, 0)
    expect_error("EPERM", h.zero, 4096, 0)
    assert h.pread(64 * K, 0) == before
    h.flush()  # advertised: nothing to make durable, and no error
    h.cache(4096, 0)
    h.shutdown()


def structured_off():
    h = connect("mem", meta=False, strict=0,
                request_structured_replies=False)
    assert not h.get_structured_replies_negotiated()
    # DF means nothing without structured replies: not advertised.
    assert not h.can_df() and not h.can_meta_context("base:allocation")
    h.pwrite(b"s" * (128 * K), 20 * M, nbd.CMD_FLAG_FUA)
    assert h.pread(128 * K, 20 * M) == b"s" * (128 * K)
    h.trim(64 * K, 20 * M)
    h.zero(4096, 20 * M + 64 * K, nbd.CMD_FLAG_NO_HOLE)
    h.flush()
    h.cache(4096, 0)
    # A large read over a hole: simple replies carry plain data.
    assert h.pread(256 * K, 21 * M) == bytes(256 * K)
    assert h.pread(128 * K, 20 * M) == bytes(68 * K) + b"s" * (60 * K)
    expect_error("EINVAL", h.pread, 4096, 0, nbd.CMD_FLAG_DF)
    expect_error("EINVAL", extents, h, 4096, 0)
    assert h.pread(4, 20 * M + 127 * K) == b"ssss"
    h.shutdown()


def no_meta_context():
    # Structured replies but no base:allocation: block status is refused.
    h = connect("mem", meta=False, strict=0)
    assert h.get_structured_replies_negotiated() and h.can_df()
    expect_error("EINVAL", extents, h, 4096, 0)
    h.pread(4096, 0)
    h.shutdown()


def misaligned():
    h = connect("direct", strict=0)
    assert h.get_request_block_size()
    lo = h.get_block_size(nbd.SIZE_MINIMUM)
    assert lo >= 512, lo
    h.pwrite(b"a" * lo, 0)
    expect_error("EINVAL", h.pread, 100, 1)
    expect_error("EINVAL", h.pread, lo + 1, 0)
    expect_error("EINVAL", h.pwrite, b"b" * lo, 1)
    expect_error("EINVAL", h.pwrite, b"b" * (lo // 2), 0)
    expect_error("EINVAL", h.zero, lo // 2, lo)
    expect_error("EINVAL", h.trim, lo, lo // 2)
    assert h.pread(lo, 0) == b"a" * lo  # the refused writes did nothing
    h.pwrite(b"c" * lo, lo)
    assert h.pread(2 * lo, 0) == b"a" * lo + b"c" * lo
    h.shutdown()
    # A client that does not ask for block sizes cannot use this export:
    # nbdd answers NBD_REP_ERR_BLOCK_SIZE_REQD rather than serve requests
    # its backend was promised it would never see.
    try:
        connect("direct", request_block_size=False)
    except nbd.Error as e:
        assert "block size" in str(e), e
    else:
        raise AssertionError("GO without NBD_INFO_BLOCK_SIZE was accepted")


for name in ("mem", "file"):
    past_the_end(name)
read_only()
structured_off()
no_meta_context()
misaligned()
print("errors ok")
EOF

cat >"$T/inflight.py" <<'EOF'
# Many requests in flight; replies may come back in any order.
import os
import random
import time
import nbd
from nbdcheck import connect

K, M = 1 << 10, 1 << 20
DEADLINE = 60


def drain(h):
    end = time.monotonic() + DEADLINE
    while h.aio_in_flight():
        assert time.monotonic() < end, "requests still in flight"
        h.poll(1000)


def many(name, n=256):
    """n writes of distinct 4K blocks in flight, then n reads of them."""
    h = connect(name)
    rng = random.Random(name)
    offsets = rng.sample(range(0, 16 * M // 4096), n)
    blocks = {o: os.urandom(4096) for o in offsets}
    errors, seen = [], []

    def done(tag):
        def cb(err):
            if err.value:
                errors.append((tag, err.value))
            seen.append(tag)
            return 1  # retire the command
        return cb

    for i, o in enumerate(offsets):
        flags = nbd.CMD_FLAG_FUA if i % 16 == 0 else 0
        h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(blocks[o])),
                     o * 4096, done(("w", o)), flags)
    peak = h.aio_in_flight()
    drain(h)
    bufs = {}
    for o in offsets:
        bufs[o] = nbd.Buffer(4096)
        h.aio_pread(bufs[o], o * 4096, done(("r", o)))
    peak = max(peak, h.aio_in_flight())
    h.aio_flush(done(("flush", 0)))
    drain(h)
    assert not errors, errors
    assert len(seen) == 2 * n + 1, len(seen)
    for o in offsets:
        assert bufs[o].to_bytearray() == blocks[o], "%s: block %d" % (name, o)
    assert peak > n // 2, "only %d requests were ever in flight" % peak
    h.shutdown()


def out_of_order():
    """A 32 MiB read queued before 64 small ones on the file backend's
    worker pool: some small one is answered first."""
    h = connect("file")
    for attempt in range(5):
        order = []

        def done(tag):
            def cb(err):
                assert err.value == 0, (tag, err.value)
                order.append(tag)
                return 1
            return cb

        big = nbd.Buffer(32 * M)
        small = [nbd.Buffer(4096) for _ in range(64)]
        h.aio_pread(big, 0, done("big"))
        for i, b in enumerate(small):
            h.aio_pread(b, i * 4096 + 1, done(i))
        drain(h)
        assert len(order) == 65
        whole = big.to_bytearray()
        for i, b in enumerate(small):
            assert b.to_bytearray() == whole[i * 4096 + 1:(i + 1) * 4096 + 1]
        if order[0] != "big":
            print("out of order on attempt %d: %r" % (attempt, order[:4]))
            h.shutdown()
            return
    raise AssertionError("replies always came in request order: %r" % order[:4])


many("mem")
many("file")
out_of_order()
print("inflight ok")
EOF

cat >"$T/handshake.py" <<'EOF'
# The option haggling as libnbd's opt mode drives it, before any GO.
import nbd
from nbdcheck import SOCK

h = nbd.NBD()
h.set_opt_mode(True)
h.set_full_info(True)
h.connect_uri("nbd+unix:///?socket=%s" % SOCK)
seen = []
assert h.opt_list(lambda name, desc: seen.append(name) or 0) == 4
assert seen == ["mem", "file", "ro", "direct"], seen
contexts = []
# No query: every context the server has.
assert h.opt_list_meta_context(lambda c: contexts.append(c) or 0) == 1
assert contexts == ["base:allocation"], contexts
h.add_meta_context("qemu:dirty-bitmap:x")
assert h.opt_list_meta_context(lambda c: 0) == 0  # not one we have
h.add_meta_context("base:allocation")
assert h.opt_list_meta_context(lambda c: 0) == 1
h.clear_meta_contexts()
h.add_meta_context("base:")  # the namespace's wildcard
assert h.opt_list_meta_context(lambda c: 0) == 1
# INFO on an unknown export fails and leaves the handshake usable.
h.set_export_name("nosuch")
try:
    h.opt_info()
    raise AssertionError("INFO on an unknown export succeeded")
except nbd.Error as e:
    assert e.errno == "ENOENT", e
for name, size, ro in (("ro", 1 << 20, True), ("mem", 64 << 20, False)):
    h.set_export_name(name)
    h.opt_info()
    assert (h.get_size(), h.is_read_only()) == (size, ro), name
    assert h.get_canonical_export_name() == name
# GO on the empty name reaches the default (first) export, by its name.
h.set_export_name("")
h.clear_meta_contexts()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.opt_go()
assert h.get_size() == 64 << 20 and h.get_canonical_export_name() == "mem"
assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.pread(4096, 0)
h.shutdown()
print("handshake ok")
EOF

pyrun "$T/handshake.py"
pyrun "$T/commands.py"
pyrun "$T/errors.py"
pyrun "$T/inflight.py"
stop_daemon
echo ok
