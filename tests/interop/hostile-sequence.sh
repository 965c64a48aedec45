#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Messages out of order (CVE-2011-1925, CVE-2013-7441, CVE-2017-9524,
# CVE-2021-3716): transmission requests before any negotiation, requests
# after NBD_CMD_DISC and after NBD_OPT_ABORT, a wrong request magic, and
# bytes injected right after STARTTLS. Nothing written out of order lands
# in the export, the bytes after STARTTLS are parsed as options (never as
# TLS, never as requests), a failed negotiation ends only that connection.
. "$(dirname "$0")/hostile-lib.sh"

start_nbdd --export disk=memory:size=16M --handshake-timeout 30
py <<'EOF'
import struct
from hostile_nbd import *

EVIL = b"\x66" * 4096
EVIL_OFF = 0

def wreq(off, data, cookie=66):
    return struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, cookie, off,
                       len(data)) + data

def untouched(path):
    c = Conn(path); c.connect_export()
    err, got = c.read(EVIL_OFF, len(EVIL))
    check(err == 0 and got != EVIL, "an out-of-order write landed")
    c.disconnect()

def test(path):
    prime(path)

    # a write request instead of the client flags
    c = Conn(path)
    c.recv_exact(18)
    c.send_rude(wreq(EVIL_OFF, EVIL))
    check(c.closed_within(5), "request before negotiation: kept open")
    c.close()
    # a write request instead of the first option
    c = Conn(path); c.greeting()
    c.send_rude(wreq(EVIL_OFF, EVIL))
    check(c.closed_within(5), "request in place of an option: kept open")
    c.close()
    untouched(path)

    # after NBD_OPT_ABORT: acknowledged (or not), then nothing is served
    c = Conn(path); c.greeting()
    c.option(OPT_ABORT)
    c.send_rude(wreq(EVIL_OFF, EVIL))
    try:
        o, t, d = c.reply()
        check(o == OPT_ABORT and t == REP_ACK, "ABORT answered with %x" % t)
    except EOFError:
        pass
    check(c.closed_within(5), "ABORT: connection kept open")
    c.close()
    untouched(path)

    # after NBD_CMD_DISC: the write that follows is never applied
    c = Conn(path); c.connect_export()
    c.send_rude(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_DISC, 1, 0, 0) +
                wreq(EVIL_OFF, EVIL))
    check(c.closed_within(5), "DISC: connection kept open")
    c.close()
    untouched(path)

    # a bad request magic in transmission ends that connection only
    c = Conn(path); c.connect_export()
    c.send_rude(struct.pack(">IHHQQI", 0x12345678, 0, CMD_WRITE, 1, 0,
                            4096) + EVIL)
    check(c.closed_within(5), "bad request magic: kept open")
    c.close()
    untouched(path)

    # STARTTLS (no TLS configured): refused, and the bytes sent in the same
    # packet are the next options, not a TLS record and not leaked anywhere
    c = Conn(path); c.greeting()
    c.send(struct.pack(">QII", IHAVEOPT, OPT_STARTTLS, 0) +
           struct.pack(">QII", IHAVEOPT, OPT_LIST, 0))
    o, t, d = c.reply()
    check(o == OPT_STARTTLS and t in (REP_ERR_POLICY, REP_ERR_UNSUP),
          "STARTTLS answered %x" % t)
    names = [d for t, d in c.replies_until_final(OPT_LIST) if t == REP_SERVER]
    check(len(names) == 1, "LIST after STARTTLS gave %d names" % len(names))
    t, size, eflags = c.go("disk")
    check(t == REP_ACK and size == 16 << 20, "GO after STARTTLS failed")
    err, got = c.read(PRIME_OFF, len(PRIME))
    check(err == 0 and got == PRIME, "read after STARTTLS")
    c.disconnect()
    # a TLS ClientHello right after STARTTLS is a bad option magic: closed
    c = Conn(path); c.greeting()
    hello = bytes.fromhex("160301020001000200") + b"\0" * 512
    c.send_rude(struct.pack(">QII", IHAVEOPT, OPT_STARTTLS, 0) + hello)
    o, t, d = c.reply()
    check(t & REP_ERR, "STARTTLS accepted without TLS")
    check(c.closed_within(5), "TLS record after STARTTLS: kept open")
    c.close()
    # STARTTLS with a payload is invalid, and the payload is skipped
    c = Conn(path); c.greeting()
    c.option(OPT_STARTTLS, b"junk")
    o, t, d = c.reply()
    check(t & REP_ERR, "STARTTLS with data accepted")
    t, size, eflags = c.go("disk")
    check(t == REP_ACK, "GO after STARTTLS with data failed")
    c.disconnect()

    # NBD_OPT_EXPORT_NAME of an unknown export: closed, no error reply
    c = Conn(path); c.greeting()
    c.option(OPT_EXPORT_NAME, b"nope")
    check(c.closed_within(5), "unknown EXPORT_NAME: kept open")
    c.close()

    untouched(path)
    verify(path)

main(test)
EOF
stop_nbdd
