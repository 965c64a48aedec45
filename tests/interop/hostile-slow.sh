#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Slow and half-open clients (CVE-2024-7409): the handshake deadline
# (--handshake-timeout 4) closes a silent client, a client that trickles a
# byte at a time (the deadline is for the whole negotiation, not per read)
# and a horde of idle connections, while other clients are still served at
# once; a half-closed client is dropped at once; a client that finished
# negotiating is not subject to the deadline.
. "$(dirname "$0")/hostile-lib.sh"

# Bounds are generous (a loaded CI machine), yet each tells the promise
# from its failure: "at once" versus "at the deadline", "at the deadline"
# versus "never".
start_nbdd --export disk=memory:size=16M --handshake-timeout 4
py <<'EOF'
import os, socket, struct, threading, time
from hostile_nbd import *

PID = int(os.environ["NBDD_PID"])
SLOW = int(os.environ["SLOW"])
DEADLINE = 4.0

def fds():
    return len(os.listdir("/proc/%d/fd" % PID))

def still_open(c):
    return not c.closed_within(0.05)

def test(path):
    prime(path)

    # silent clients, before and after the greeting: others are served
    # while they wait, and they are closed at the deadline
    t_conn = time.monotonic()
    silent = Conn(path)
    greeted = Conn(path); greeted.greeting()
    verify(path)
    check(still_open(silent) and still_open(greeted),
          "a polite client was served only after the silent ones were gone")
    check(silent.closed_within(DEADLINE + 10 * SLOW),
          "a silent client was never closed")
    took = time.monotonic() - t_conn
    check(took >= DEADLINE - 0.5, "silent client closed after %.2fs, "
          "before the deadline" % took)
    check(greeted.closed_within(5 * SLOW), "a greeted client outlived "
          "the deadline")
    silent.close(); greeted.close()

    # a trickle: one byte of a long option every 0.3 s keeps every read
    # short, but not the whole negotiation
    c = Conn(path); c.greeting()
    msg = struct.pack(">QII", IHAVEOPT, OPT_LIST, 200) + b"x" * 200
    t0 = time.monotonic()
    closed = False
    for b in msg:
        try:
            c.send(bytes([b]))
        except OSError:
            closed = True
            break
        if c.closed_within(0.3):
            closed = True
            break
        if time.monotonic() - t0 > DEADLINE + 10 * SLOW:
            break
    took = time.monotonic() - t0
    check(closed, "a trickling client was never closed")
    check(took < DEADLINE + 10 * SLOW, "trickle closed only after %.1fs" % took)
    c.close()

    # half-open: flags sent, then SHUT_WR: dropped now, not at the deadline
    c = Conn(path); c.greeting()
    c.s.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    check(c.closed_within(DEADLINE + 5), "half-open client never closed")
    took = time.monotonic() - t0
    check(took < DEADLINE * 0.75, "half-open client held %.1fs" % took)
    c.close()

    # a horde of idle connections: the daemon does not keep a descriptor
    # for each beyond its cap on clients in negotiation, everyone is
    # released by the deadline, and afterwards clients are served
    base = fds()
    horde = []
    for i in range(200):
        try:
            horde.append(Conn(path, timeout=2))
        except OSError:
            break
    time.sleep(0.5 * SLOW)
    during = fds()
    log("fds: %d before, %d with 200 idle clients" % (base, during))
    check(during - base <= 64 + 8, "%d descriptors for idle clients" %
          (during - base))
    t0 = time.monotonic()
    for h in horde:
        h.closed_within(max(0.1, 5 * DEADLINE + 5 * SLOW -
                            (time.monotonic() - t0)))
    for h in horde:
        h.close()
    end = time.monotonic() + 5 * SLOW
    while fds() > base + 2 and time.monotonic() < end:
        time.sleep(0.1)
    check(fds() <= base + 2, "descriptors not released: %d > %d" %
          (fds(), base))
    verify(path)

    # negotiated clients are not on the handshake clock
    c = Conn(path); c.connect_export()
    time.sleep(DEADLINE + 1.5)
    err, got = c.read(PRIME_OFF, len(PRIME))
    check(err == 0 and got == PRIME, "an idle negotiated client was cut")
    c.disconnect()

main(test)
EOF
stop_nbdd
