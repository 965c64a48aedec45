#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Option-phase lies (CVE-2017-15118, -15119, CVE-2022-26495/26496,
# CVE-2020-10761, CVE-2019-14851): strings longer than their option, 4 GiB
# option lengths, names past 4096 bytes, info lists past the cap, too many
# options, INFO then GO. Each is refused without a crash, without reading
# past the option, without echoing more than 4096 bytes, without growing the
# daemon; then a polite client still finds the data it stored before.
. "$(dirname "$0")/hostile-lib.sh"

# a long deadline, so a server waiting for bytes that never come is
# told apart from one that refused at once
start_nbdd --export disk=memory:size=64M --export other=memory:size=1M \
	--handshake-timeout 30
py <<'EOF'
import struct
from hostile_nbd import *

def name_infos(name, infos=(), name_len=None):
    n = name if isinstance(name, bytes) else name.encode()
    return (struct.pack(">I", len(n) if name_len is None else name_len) + n +
            struct.pack(">H", len(infos)) +
            b"".join(struct.pack(">H", i) for i in infos))

def still_negotiating(c):
    """The connection still takes options: LIST answers with both exports."""
    c.option(OPT_LIST)
    names = []
    for t, d in c.replies_until_final(OPT_LIST):
        check(t in (REP_SERVER, REP_ACK), "LIST failed: %x" % t)
        if t == REP_SERVER:
            names.append(d[4:4 + struct.unpack(">I", d[:4])[0]])
    check(sorted(names) == [b"disk", b"other"], "LIST gave %r" % names)

def error_reply(c, opt, what):
    replies = c.replies_until_final(opt)
    t, d = replies[-1]
    check(t & REP_ERR, "%s: not refused (reply %x)" % (what, t))
    # CVE-2020-10761: an error message never echoes client data past 4 KiB
    check(len(d) <= 4096, "%s: %d-byte error message" % (what, len(d)))
    return t

def test(path):
    prime(path)

    # a name whose length says 1000 inside an 8-byte option
    c = Conn(path); c.greeting()
    for opt in (OPT_INFO, OPT_GO):
        c.option(opt, name_infos(b"disk", name_len=1000))
        t = error_reply(c, opt, "name length > option length")
        check(t == REP_ERR_INVALID, "expected ERR_INVALID, got %x" % t)
    # info count larger than what is left of the option
    c.option(OPT_GO, struct.pack(">I", 4) + b"disk" + struct.pack(">H", 100))
    check(error_reply(c, OPT_GO, "info count") == REP_ERR_INVALID,
          "short info list not INVALID")
    # a name length that wraps when 4 or 6 is added to it
    for wrap in (0xFFFFFFFF, 0xFFFFFFFC, 0xFFFFFFFA):
        c.option(OPT_GO, struct.pack(">I", wrap) + b"disk\0\0")
        error_reply(c, OPT_GO, "wrapping name length %x" % wrap)
    # meta context query longer than its option
    c.option(OPT_STRUCTURED_REPLY)
    c.replies_until_final(OPT_STRUCTURED_REPLY)
    c.option(OPT_SET_META_CONTEXT, struct.pack(">I", 4) + b"disk" +
             struct.pack(">II", 1, 5000) + b"base:allocation")
    error_reply(c, OPT_SET_META_CONTEXT, "query length > option length")
    c.option(OPT_LIST_META_CONTEXT, struct.pack(">I", 4) + b"disk" +
             struct.pack(">I", 0xFFFFFFFF))
    error_reply(c, OPT_LIST_META_CONTEXT, "query count past the option")
    still_negotiating(c)
    c.close()

    # export names past the 4096-byte string limit, lengths consistent
    c = Conn(path); c.greeting()
    for n in (4097, 60000):
        c.option(OPT_GO, name_infos(b"d" * n))
        error_reply(c, OPT_GO, "%d-byte export name" % n)
    # a 4096-byte name is legal: unknown export, not a broken connection
    c.option(OPT_INFO, name_infos(b"x" * 4096))
    check(error_reply(c, OPT_INFO, "4096-byte name") == REP_ERR_UNKNOWN,
          "4096-byte unknown name not ERR_UNKNOWN")
    # an unknown option is answered and skipped
    c.option(0x7777, b"z" * 3000)
    check(error_reply(c, 0x7777, "unknown option") == REP_ERR_UNSUP,
          "unknown option not ERR_UNSUP")
    still_negotiating(c)
    c.close()

    # info requests past the cap (32 is plenty; 40 is refused)
    c = Conn(path); c.greeting()
    c.option(OPT_INFO, name_infos("disk", [INFO_NAME] * 40))
    error_reply(c, OPT_INFO, "40 info requests")
    c.option(OPT_INFO, name_infos("disk", [INFO_NAME] * 32))
    check(c.replies_until_final(OPT_INFO)[-1][0] == REP_ACK,
          "32 info requests refused")
    # INFO then GO of another export: GO wins, not INFO's export
    c.option(OPT_INFO, name_infos("other"))
    c.replies_until_final(OPT_INFO)
    t, size, eflags = c.go("disk")
    check(t == REP_ACK and size == 64 << 20,
          "GO after INFO served size %r" % size)
    err, got = c.read(PRIME_OFF, len(PRIME))
    check(err == 0 and got == PRIME, "GO after INFO: wrong export")
    c.disconnect()

    # a 4 GiB option: never read into memory; refused, then closed
    c = Conn(path); c.greeting()
    c.option_header(OPT_INFO, 0xFFFFFFFF)
    c.send_rude(b"\0" * 65536)
    check(c.closed_within(5), "4 GiB option: connection kept open")
    c.close()
    # options past 64 KiB are drained without being held, and refused;
    # up to 1 MiB the connection goes on, past it the server hangs up
    c = Conn(path); c.greeting()
    for opt in (0x7777, OPT_GO, OPT_SET_META_CONTEXT):
        c.option(opt, b"\xff" * (64 * 1024 + 1))
        check(error_reply(c, opt, "64 KiB + 1 option") == REP_ERR_TOO_BIG,
              "64 KiB + 1 option not TOO_BIG")
    c.option(0x7777, b"\0" * (1 << 20))
    check(error_reply(c, 0x7777, "1 MiB option") == REP_ERR_TOO_BIG,
          "1 MiB option not TOO_BIG")
    still_negotiating(c)
    c.option_header(0x7777, (1 << 20) + 1)
    check(c.closed_within(5), "1 MiB + 1 option: kept open")
    c.close()
    # NBD_OPT_EXPORT_NAME with an oversized name ends the connection
    c = Conn(path); c.greeting()
    c.send_rude(struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, 5000) +
                b"e" * 5000)
    check(c.closed_within(5), "oversized EXPORT_NAME: kept open")
    c.close()

    # endless options before GO: the connection is ended, not served forever
    c = Conn(path); c.greeting()
    sent = 0
    try:
        for sent in range(1, 2001):
            c.option(OPT_LIST)
            c.replies_until_final(OPT_LIST)
    except (EOFError, OSError):
        pass
    check(sent < 2000, "2000 options before GO were all answered")
    c.close()

    # a wrong option magic ends the connection
    c = Conn(path); c.greeting()
    c.send_rude(b"IHAVEOPX" + struct.pack(">II", OPT_LIST, 0))
    check(c.closed_within(5), "bad option magic: kept open")
    c.close()

    verify(path)
    verify(path, "disk")

main(test)
EOF
alive || fail "nbdd died"
rss=$(rss_kb)
# a 4 GiB or 64 KiB option must not have been buffered (ASan adds ~100 MiB)
[ "$rss" -lt 600000 ] || fail "daemon RSS is ${rss} KiB after the attacks"
stop_nbdd
