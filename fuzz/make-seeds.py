#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write the seed corpus: small valid (and a few almost valid) inputs for
every fuzz target, in the layout each fuzz/targets/NAME.c documents.

    fuzz/make-seeds.py            rewrite fuzz/corpus/*/
    fuzz/make-seeds.py --check    exit 1 if the tree's corpus is stale

Seeds are named after what they exercise, so a replay failure in
tests/unit/test_fuzz_regressions.c says which message broke.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- NBD encoding (doc/proto.md) ----
IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513
EXT_REQ_MAGIC = 0x21E41C71

OPT = dict(EXPORT_NAME=1, ABORT=2, LIST=3, PEEK_EXPORT=4, STARTTLS=5,
           INFO=6, GO=7, STRUCTURED_REPLY=8, LIST_META_CONTEXT=9,
           SET_META_CONTEXT=10, EXTENDED_HEADERS=11)
CMD = dict(READ=0, WRITE=1, DISC=2, FLUSH=3, TRIM=4, CACHE=5,
           WRITE_ZEROES=6, BLOCK_STATUS=7, RESIZE=8)
F_FUA, F_NO_HOLE, F_DF, F_REQ_ONE, F_FAST_ZERO, F_PAYLOAD_LEN = (
    1, 2, 4, 8, 16, 32)
INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 0, 1, 2, 3
C_FIXED_NEWSTYLE, C_NO_ZEROES = 1, 2

# transmission flags
HAS_FLAGS, READ_ONLY, SEND_FLUSH, SEND_FUA = 1, 2, 4, 8
SEND_TRIM, SEND_WRITE_ZEROES, SEND_DF, SEND_CACHE = 32, 64, 128, 1024
SEND_FAST_ZERO = 2048
ALL_FLAGS = (HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_TRIM |
             SEND_WRITE_ZEROES | SEND_DF | SEND_CACHE | SEND_FAST_ZERO)


def option(opt, data=b""):
    if isinstance(opt, str):
        opt = OPT[opt]
    return struct.pack(">QII", IHAVEOPT, opt, len(data)) + data


def name_and_infos(name, infos=()):
    """The payload of NBD_OPT_INFO / NBD_OPT_GO."""
    n = name.encode()
    return (struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos)) +
            b"".join(struct.pack(">H", i) for i in infos))


def meta(name, queries):
    n = name.encode()
    out = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        q = q.encode()
        out += struct.pack(">I", len(q)) + q
    return out


def request(cmd, offset=0, length=0, flags=0, cookie=1, data=b"",
            extended=False):
    if isinstance(cmd, str):
        cmd = CMD[cmd]
    if extended:
        return struct.pack(">IHHQQQ", EXT_REQ_MAGIC, flags, cmd, cookie,
                           offset, length) + data
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, offset,
                       length) + data


def write(offset, data, extended=False, flags=0, cookie=2):
    if extended:
        flags |= F_PAYLOAD_LEN
    return request("WRITE", offset, len(data), flags, cookie, data, extended)


def session(ext=False):
    """A short life of a disk: write, read back, flush, trim, zero, status."""
    s = write(4096, b"\xab" * 512, ext)
    s += request("READ", 4096, 512, cookie=3, extended=ext)
    s += request("READ", 0, 65536, cookie=4, extended=ext)
    s += request("FLUSH", cookie=5, extended=ext)
    s += request("TRIM", 0, 4096, cookie=6, extended=ext)
    s += request("WRITE_ZEROES", 8192, 4096, F_NO_HOLE, 7, extended=ext)
    s += request("WRITE_ZEROES", 8192, 4096, F_FAST_ZERO, 8, extended=ext)
    s += request("CACHE", 0, 4096, cookie=9, extended=ext)
    s += request("BLOCK_STATUS", 0, 1 << 20, cookie=10, extended=ext)
    s += request("BLOCK_STATUS", 0, 1 << 20, F_REQ_ONE, 11, extended=ext)
    s += request("READ", 0, 512, F_DF, 12, extended=ext)
    s += write(0, b"\xee" * 512, ext, F_FUA, 13)
    return s


def hostile(ext=False):
    """Requests that must all be refused, and the stream kept in sync."""
    s = request("READ", 2**64 - 512, 1024, cookie=20, extended=ext)
    s += request("READ", 1 << 20, 1, cookie=21, extended=ext)
    s += request("READ", 0, 2**32 - 1 if not ext else 2**64 - 1, cookie=22,
                 extended=ext)
    s += request("BLOCK_STATUS", 2**32 - 4096, 8192, cookie=23, extended=ext)
    s += request("WRITE", 2**63, 16, cookie=24, data=b"x" * 16,
                 flags=F_PAYLOAD_LEN if ext else 0, extended=ext)
    s += request(99, 0, 0, cookie=25, extended=ext)
    s += request("RESIZE", 0, 0, cookie=26, extended=ext)
    s += request("READ", 1, 511, cookie=27, extended=ext)
    s += request("READ", 0, 512, cookie=28, extended=ext)
    return s


def seeds_wire():
    def params(mode, size=1 << 20, eflags=ALL_FLAGS, log_min=0, maxp=0):
        return struct.pack(">BQHBI", mode, size, eflags, log_min, maxp)
    out = {}
    out["simple-session"] = params(0) + session()
    out["structured-session"] = params(5) + session()
    out["extended-session"] = params(7) + session(True)
    out["simple-hostile"] = params(0) + hostile()
    out["extended-hostile"] = params(7) + hostile(True)
    out["readonly"] = params(5, eflags=ALL_FLAGS | READ_ONLY) + session()
    out["min-block-4k"] = params(5, log_min=12) + session()
    out["size-near-2p64"] = (params(7, size=2**64 - 4096) +
                             request("READ", 2**64 - 8192, 4096, extended=True) +
                             request("TRIM", 2**64 - 4096, 4096, extended=True) +
                             request("TRIM", 2**64 - 4096, 8192, extended=True))
    out["small-max-payload"] = params(1, maxp=4096) + request("READ", 0, 8192)
    out["payload-len-block-status"] = params(7) + request(
        "BLOCK_STATUS", 0, 16, F_PAYLOAD_LEN, extended=True,
        data=struct.pack(">QQ", 0, 4096))
    out["disc"] = params(0) + request("DISC")
    out["replies"] = bytes([0x80]) + bytes(range(64))
    return out


def seeds_xmit():
    out = {}
    for mode, name in ((0, "kernel"), (1, "network-simple"),
                       (6, "structured"), (7, "extended")):
        ext = (mode & 3) == 3
        for variant, extra in ((0, ""), (8, "-workers"), (0x48, "-async"),
                               (0x10, "-readonly"), (0x20, "-minblock")):
            out[name + extra + "-session"] = (bytes([mode | variant]) +
                                             session(ext) +
                                             request("DISC", extended=ext))
        out[name + "-hostile"] = bytes([mode]) + hostile(ext)
    # a large write that runs past the receive buffer, then a cut
    out["big-write-cut"] = bytes([1]) + request("WRITE", 0, 300000,
                                                data=b"\x01" * 1000)
    out["bad-magic"] = bytes([0]) + b"\x00" * 28
    return out


def greeting(flags=C_FIXED_NEWSTYLE | C_NO_ZEROES):
    return struct.pack(">I", flags)


def seeds_handshake():
    out = {}
    go = option("GO", name_and_infos("disk", [INFO_BLOCK_SIZE]))
    out["go-default"] = greeting() + option("GO", name_and_infos("")) + \
        session() + request("DISC")
    out["structured-meta-go"] = (
        greeting() + option("STRUCTURED_REPLY") +
        option("LIST_META_CONTEXT", meta("disk", [])) +
        option("SET_META_CONTEXT", meta("disk", ["base:allocation"])) +
        go + session() + request("DISC"))
    out["extended-go"] = (
        greeting() + option("EXTENDED_HEADERS") +
        option("SET_META_CONTEXT", meta("disk", ["base:"])) + go +
        session(True) + request("DISC", extended=True))
    out["list-info-abort"] = (
        greeting() + option("LIST") +
        option("INFO", name_and_infos("ro", [INFO_NAME, INFO_DESCRIPTION,
                                             INFO_BLOCK_SIZE, INFO_EXPORT])) +
        option("INFO", name_and_infos("nope")) + option("ABORT"))
    out["export-name-oldstyle"] = greeting(C_FIXED_NEWSTYLE) + option(
        "EXPORT_NAME", b"disk") + session()
    out["blk-go-aligned"] = (greeting() + option("GO", name_and_infos(
        "blk", [INFO_BLOCK_SIZE])) + request("READ", 512, 4096) +
        request("READ", 1, 1) + request("DISC"))
    out["starttls-injected"] = (greeting() + option("STARTTLS") +
                                option("GO", name_and_infos("disk")) +
                                request("READ", 0, 512))
    out["unknown-option"] = greeting() + option(200, b"xyz") + option(
        "PEEK_EXPORT") + option("ABORT")
    # lengths that lie: the name is longer than the option
    out["name-overrun"] = greeting() + struct.pack(
        ">QIII", IHAVEOPT, OPT["GO"], 8, 1000) + b"disk"
    out["option-4g"] = greeting() + struct.pack(">QII", IHAVEOPT, OPT["INFO"],
                                                0xFFFFFFFF) + b"\0" * 64
    out["info-list-over-cap"] = greeting() + option(
        "INFO", name_and_infos("disk", [INFO_NAME] * 40))
    out["meta-overrun"] = greeting() + option("STRUCTURED_REPLY") + option(
        "SET_META_CONTEXT",
        struct.pack(">I", 4) + b"disk" + struct.pack(">II", 1, 5000) + b"base")
    out["no-fixed-newstyle"] = greeting(0) + option("LIST")
    out["bad-magic"] = greeting() + b"IHAVEOPX" + b"\0" * 8
    return out


def seeds_control():
    def knobs(cap_log=3, full=True, chunk_log=12):
        return bytes([(cap_log & 7) | (8 if full else 0) | (chunk_log << 4)])
    reqs = [
        '{"cmd":"attach","spec":"memory:size=1G","name":"scratch",'
        '"connections":2,"readonly":true,"block_size":4096,"timeout":30,'
        '"dead_conn_timeout":5,"device":"/dev/nbd3"}',
        '{"cmd":"attach","spec":"file:path=/srv/a.img","device":null,'
        '"name":null}',
        '{"cmd":"detach","device":"/dev/nbd0"}',
        '{"cmd":"detach","name":"nbd7"}',
        '{"cmd":"detach","all":true}',
        '{"cmd":"list"}', '{"cmd":"status","name":"scratch"}',
        '{"cmd":"exports"}', '{"cmd":"version"}', '{"cmd":"ping"}',
    ]
    bad = [
        '{"cmd":"attach","spec":"memory:size=1G","readonyl":true}',
        '{"cmd":"detach","device":"/dev/nbd01"}',
        '{"cmd":"detach","name":"a","all":true}',
        '{"cmd":"attach","spec":"x","connections":18446744073709551616}',
        '{"cmd":"attach","spec":"x","timeout":-1}',
        '{"cmd":"attach","spec":"a\\u0000b"}',
        '{"cmd":"nope"}', '[1,2]', '{"cmd":"ping"} trailing',
        '{"cmd":' + '[' * 20 + ']' * 20 + '}', '{"cmd":"ping"',
        '{"ok":true}', '{"ok":false,"error":"no such device","errno":19}',
        '{"ok":false,"errno":99999}', '/dev/nbd12', 'nbd3',
    ]
    out = {}
    out["requests"] = knobs() + "\n".join(reqs).encode() + b"\n"
    out["requests-crlf-1byte"] = knobs(chunk_log=0) + \
        "\r\n".join(reqs).encode() + b"\r\n"
    out["bad"] = knobs() + "\n".join(bad).encode() + b"\n"
    out["over-cap"] = knobs(cap_log=0, full=False, chunk_log=5) + \
        b'{"cmd":"ping"}\n' + b"x" * 100 + b"\n" + b'{"cmd":"list"}\n'
    for i, r in enumerate(reqs):
        out["one-%d" % i] = knobs() + r.encode() + b"\n"
    out["one-resize"] = knobs() + (
        b'{"cmd":"resize","device":"/dev/nbd2","size":21474836480,'
        b'"allow_shrink":true}\n')
    out["one-resize-name"] = knobs() + b'{"cmd":"resize","name":"vm","size":4096}\n'
    return out


def seeds_spec():
    conf = (b"# a disk\nbackend = file:path=/srv/disk.img,direct=on\n"
            b"description = \"Build \\\"cache\\\"\"\nreadonly = yes\n"
            b"cache = writeback\n")
    out = {
        "memory": b"memory:size=1G",
        "file-quoted": b'file:path="/srv/a,b.img",direct=on',
        "escapes": b"file:path=/srv/a\\,b\\\\c.img",
        "plugin": b"/usr/lib/nbdd/x.so:a=1,b=2,c=",
        "null": b"null:size=1.5G",
        "size-units": b"64KiB",
        "size-frac": b"1.25T",
        "conf": b"fz\0" + conf,
        "conf-override": b"fz:cache=none,extra=1\0" + conf,
        "conf-crlf": b"fz\0" + conf.replace(b"\n", b"\r\n"),
        "conf-names-name": b"fz\0backend = fz\n",
        "conf-no-backend": b"fz\0readonly = maybe\n",
        "conf-dup": b"fz\0backend = memory:size=1M\nsize = 2M\n",
        "bad-trailing-comma": b"memory:size=1G,",
        "bad-dup": b"memory:size=1G,size=2G",
        "bad-escape": b"file:path=a\\b",
        "bad-name": b"../etc/passwd",
    }
    return out


SEEDS = {
    "wire": seeds_wire,
    "xmit": seeds_xmit,
    "handshake": seeds_handshake,
    "control": seeds_control,
    "spec": seeds_spec,
}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for target, make in SEEDS.items():
        if not os.path.exists(os.path.join(HERE, "targets", target + ".c")):
            continue
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        want = make()
        for name, data in want.items():
            p = os.path.join(d, name)
            have = open(p, "rb").read() if os.path.exists(p) else None
            if have != data:
                stale.append(p)
                if not check:
                    with open(p, "wb") as f:
                        f.write(data)
        for name in os.listdir(d):
            if name not in want:
                stale.append(os.path.join(d, name))
                if not check:
                    os.unlink(os.path.join(d, name))
    if check and stale:
        print("stale seeds:", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
