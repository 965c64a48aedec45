#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Too many clients (--max-clients 3): the fourth is turned away without
# disturbing the three, and a freed slot is usable again at once.
. "$(dirname "$0")/hostile-lib.sh"

start_nbdd --export disk=memory:size=16M --max-clients 3 --handshake-timeout 5
py <<'EOF'
import time
from hostile_nbd import *

def served(path):
    """True if a new client gets through GO and a read (a refused one is
    closed at once; the timeout only bounds a loaded machine)."""
    try:
        c = Conn(path, timeout=15)
        c.connect_export()
        err, got = c.read(PRIME_OFF, len(PRIME))
        c.disconnect()
        return err == 0 and got == PRIME
    except (Fail, EOFError, OSError):
        return False

def test(path):
    prime(path)
    held = []
    for i in range(3):
        c = Conn(path); c.connect_export()
        held.append(c)
    check(not served(path), "a fourth client was served with --max-clients 3")
    # the refused one left nothing behind: still exactly three slots taken
    for i, c in enumerate(held):
        err, got = c.read(PRIME_OFF, len(PRIME), cookie=10 + i)
        check(err == 0 and got == PRIME, "client %d broken by the fourth" % i)
    check(not served(path), "still three clients: a fourth was served")
    held.pop().disconnect()
    end = time.monotonic() + 20
    ok = False
    while not ok and time.monotonic() < end:
        ok = served(path)
        if not ok:
            time.sleep(0.2)
    check(ok, "a freed slot was not given to a new client")
    # a client still negotiating holds a slot too: two running + one
    # in the handshake fill the three
    check(len(held) == 2, "expected two held clients")
    # (the client served above frees its slot a moment after it left)
    end = time.monotonic() + 20
    while True:
        try:
            c1 = Conn(path); c1.greeting()
            break
        except (EOFError, OSError):
            check(time.monotonic() < end, "no slot for a third client")
            time.sleep(0.2)
    check(not served(path), "negotiating clients not counted against the cap")
    c1.close()
    for c in held:
        c.disconnect()
    end = time.monotonic() + 20
    while not served(path):
        check(time.monotonic() < end, "slots not released")
        time.sleep(0.2)

main(test)
EOF
stop_nbdd
