#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Out-of-range requests (CVE-2005-3534, CVE-2011-0530, CVE-2025-47711/47712):
# offsets past the end, offset + length wrapping near 2^64, 4 GiB lengths,
# oversized payloads (33 MiB, and a client that says 1 GiB), and block status around the 4 GiB boundary of a
# 5 GiB export, in simple, structured and extended modes. Every bad
# request gets an error and the stream stays in sync; nothing outside the
# export is touched; block status never calls written data a zero hole.
. "$(dirname "$0")/hostile-lib.sh"

start_nbdd --export disk=memory:size=5G
py <<'EOF'
import os, struct
from hostile_nbd import *

SIZE = 5 << 30
G4 = 1 << 32
EDGE = pattern(8192, 9)         # written across the 4 GiB boundary
TAIL = pattern(4096, 77)        # the last 4 KiB of the export

def in_sync(c, cookie):
    """After a refused request the connection still serves correctly."""
    err, got = c.read(G4 - 4096, 8192, cookie=cookie)
    check(err == 0, "read after a refused request failed: %d" % err)
    check(got == EDGE, "read after a refused request: wrong data")

def refused(c, cmd, off, length, cookie, data=b"", flags=0):
    c.request(cmd, off, length, flags, cookie, data)
    err, _ = c.result(cookie)
    check(err in (EINVAL, ENOSPC, EOVERFLOW),
          "cmd %d off=%#x len=%#x: error %d, not refused" %
          (cmd, off, length, err))

def bad_ranges(c):
    m64 = 2**64
    cases = [(CMD_READ, m64 - 512, 1024), (CMD_READ, m64 - 1, 1),
             (CMD_READ, SIZE, 512), (CMD_READ, SIZE - 512, 1024),
             (CMD_READ, 0, 0xFFFFFFFF), (CMD_READ, G4, 0xFFFFF000),
             (CMD_TRIM, m64 - 4096, 8192), (CMD_TRIM, SIZE - 4096, 8192),
             (CMD_WRITE_ZEROES, m64 - 4096, 4096),
             (CMD_WRITE_ZEROES, 2**63, 2**32 - 4096),
             (CMD_CACHE, m64 - 512, 512)]
    if c.structured:
        cases += [(CMD_BLOCK_STATUS, m64 - 4096, 8192),
                  (CMD_BLOCK_STATUS, SIZE, 1)]
    if c.extended:
        cases += [(CMD_READ, 0, 2**63), (CMD_TRIM, 4096, m64 - 4096),
                  (CMD_WRITE_ZEROES, 0, m64 - 1),
                  (CMD_BLOCK_STATUS, 1, m64 - 1)]
    cookie = 100
    for cmd, off, length in cases:
        refused(c, cmd, off, length, cookie)
        cookie += 1
    in_sync(c, cookie)
    # writes past the end, and across 2^64, with their payload: drained
    refused(c, CMD_WRITE, m64 - 2048, 4096, 200, b"w" * 4096)
    refused(c, CMD_WRITE, SIZE - 2048, 4096, 201, b"w" * 4096)
    in_sync(c, 202)
    # a payload above the 32 MiB limit: refused and drained (or, extended,
    # the connection is ended, as the spec recommends)
    big = 33 << 20
    try:
        c.request(CMD_WRITE, 0, big, 0, 203, b"\0" * big)
        err, _ = c.result(203)
        check(err in (EINVAL, EOVERFLOW, ENOSPC), "33 MiB write not refused")
        in_sync(c, 204)
        return True
    except (EOFError, ConnectionResetError, BrokenPipeError):
        check(c.extended, "33 MiB write ended a non-extended connection")
        return False

def rss_kb():
    with open("/proc/%s/status" % os.environ["NBDD_PID"]) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def gib_write(c, cookie):
    """A client that says "1 GiB write": never buffered. Compact headers:
    refused, the gigabyte drained, the stream in sync. Extended headers:
    the connection ends before any of it is read."""
    c.request(CMD_WRITE, 0, 1 << 30, F_PAYLOAD_LEN if c.extended else 0,
              cookie)
    if c.extended:
        check(c.closed_within(5), "1 GiB extended payload: kept open")
        return
    before = peak = rss_kb()
    chunk = bytes(1 << 20)
    for i in range(1024):
        c.send(chunk)
        if i % 32 == 0:
            peak = max(peak, rss_kb())
    err, _ = c.result(cookie)
    check(err == EINVAL, "1 GiB write: error %d" % err)
    log("1 GiB write: daemon RSS %d -> peak %d KiB" % (before, peak))
    check(peak - before < 128 * 1024, "1 GiB write grew the daemon by %d KiB"
          % (peak - before))
    in_sync(c, cookie + 1)

def extents(payload, extended):
    """[(length, flags)] of one base:allocation block status chunk."""
    ctx = struct.unpack(">I", payload[:4])[0]
    out = []
    if extended:
        count = struct.unpack(">I", payload[4:8])[0]
        body = payload[8:]
        check(len(body) == 16 * count, "bad BLOCK_STATUS_EXT length")
        for i in range(count):
            out.append(struct.unpack(">QQ", body[16 * i:16 * i + 16]))
    else:
        body = payload[4:]
        check(len(body) % 8 == 0, "bad BLOCK_STATUS length")
        for i in range(0, len(body), 8):
            out.append(struct.unpack(">II", body[i:i + 8]))
    return ctx, out

def block_status(c, off, length, cookie, flags=0):
    c.request(CMD_BLOCK_STATUS, off, length, flags, cookie)
    ext = None
    while True:
        fl, typ, ck, payload = c.chunk()
        check(ck == cookie, "block status: wrong cookie")
        check(not typ & 0x8000, "block status %#x+%#x failed: %r" %
              (off, length, payload[:8]))
        if typ in (REPLY_TYPE_BLOCK_STATUS, REPLY_TYPE_BLOCK_STATUS_EXT):
            check(ext is None, "two block status chunks for one context")
            check((typ == REPLY_TYPE_BLOCK_STATUS_EXT) == c.extended,
                  "block status chunk type %d in this mode" % typ)
            _, ext = extents(payload, c.extended)
        if fl & 1:
            break
    check(ext, "block status without descriptors")
    total = 0
    for n, f in ext:
        check(n > 0, "a zero-length extent")
        total += n
    # the spec: all but the last lie inside the request; with REQ_ONE,
    # one extent, no longer than the request
    check(total - ext[-1][0] < length,
          "extents before the last cover %d of a %d-byte request" %
          (total - ext[-1][0], length))
    if flags & F_REQ_ONE:
        check(len(ext) == 1 and total <= length,
              "REQ_ONE: %d extents, %d bytes" % (len(ext), total))
    # extents past the end of the export are never reported
    check(off + total <= SIZE, "extents run past the end of the export")
    return ext

def no_zero_over(ext, off, data_off, data_len):
    """Written data is never described as reading as zeroes."""
    pos = off
    for n, f in ext:
        if pos < data_off + data_len and data_off < pos + n:
            check(not f & 2, "extent at %#x+%#x is ZERO over written data"
                  % (pos, n))
        pos += n

def test(path):
    prime(path)
    c = Conn(path); c.connect_export()
    check(c.write(G4 - 4096, EDGE) == 0, "write across 4 GiB failed")
    check(c.write(SIZE - 4096, TAIL) == 0, "write of the last block failed")
    err, got = c.read(G4 - 4096, 8192)
    check(err == 0 and got == EDGE, "read across 4 GiB: wrong data")
    bad_ranges(c)
    gib_write(c, 250)
    c.disconnect()

    c = Conn(path); c.connect_export(structured=True)
    bad_ranges(c)
    for off, length in ((G4 - 8192, 16384), (0, 0xFFFFFFFF),
                        (G4 - 4096, 4096), (G4, 4096),
                        (1 << 30, 0xFFFFF000), (SIZE - 4096, 4096)):
        ext = block_status(c, off, length, 300)
        no_zero_over(ext, off, G4 - 4096, 8192)
        no_zero_over(ext, off, SIZE - 4096, 4096)
        check(sum(n for n, f in ext) <= 0xFFFFFFFF,
              "32-bit block status covers more than 4 GiB")
    block_status(c, G4 - 8192, 16384, 301, F_REQ_ONE)
    block_status(c, 0, 0xFFFFFFFF, 302, F_REQ_ONE)
    c.disconnect()

    c = Conn(path); c.connect_export(extended=True)
    survived = bad_ranges(c)
    if not survived:
        c.close()
        c = Conn(path); c.connect_export(extended=True)
    for off, length in ((0, SIZE), (G4 - 8192, 16384), (4096, SIZE - 4096)):
        ext = block_status(c, off, length, 400)
        no_zero_over(ext, off, G4 - 4096, 8192)
        no_zero_over(ext, off, SIZE - 4096, 4096)
    err, got = c.read(SIZE - 4096, 4096)
    check(err == 0 and got == TAIL, "the last block changed")
    gib_write(c, 450)
    c.close()
    verify(path)

main(test)
EOF
stop_nbdd
