#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Clients that vanish mid-request or stop reading: a write header and no
# payload, half a payload, a burst of 32 MiB reads whose replies nobody
# reads. On the inline (memory) and the worker-pool (file) paths: the
# partial write is never applied, replies for a client that hung up are
# dropped rather than blocking anything, a client that stops reading does
# not hold up others, and every descriptor is released.
. "$(dirname "$0")/hostile-lib.sh"

truncate -s 64M "$T/img"
start_nbdd --export mem=memory:size=64M --export file=file:path="$T/img"
py <<'EOF'
import os, socket, struct, time
from hostile_nbd import *

PID = int(os.environ["NBDD_PID"])
SLOW = int(os.environ["SLOW"])
CUT_OFF = 8 << 20

def fds():
    return len(os.listdir("/proc/%d/fd" % PID))

def settle(base, what):
    end = time.monotonic() + 10 * SLOW
    while fds() > base and time.monotonic() < end:
        time.sleep(0.1)
    check(fds() <= base, "%s: %d descriptors left over" % (what, fds() - base))

def cut_writes(path, name):
    for sent in (0, 1, 2048, 4095):
        c = Conn(path); c.connect_export(name)
        c.send(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, 5, CUT_OFF,
                           4096) + b"\x99" * sent)
        c.close()
    # the header itself cut short
    c = Conn(path); c.connect_export(name)
    c.send(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, 5, CUT_OFF,
                       4096)[:17])
    c.close()

def unread_replies(path, name):
    """32 MiB reads pipelined, replies never read, then gone."""
    c = Conn(path); c.connect_export(name)
    for i in range(16):
        c.request(CMD_READ, 0, 32 << 20, cookie=i)
    c.s.shutdown(socket.SHUT_RDWR)
    c.close()
    # the same, then abort with a reset (SO_LINGER 0)
    c = Conn(path); c.connect_export(name)
    for i in range(16):
        c.request(CMD_READ, 0, 32 << 20, cookie=i)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                   struct.pack("ii", 1, 0))
    c.close()

def stalled_reader(path, name):
    """A client that stops reading does not hold up another one."""
    c = Conn(path); c.connect_export(name)
    for i in range(8):
        c.request(CMD_READ, 0, 32 << 20, cookie=i)
    time.sleep(0.3)
    t0 = time.monotonic()
    verify(path, name)
    # Held up would mean forever (the stalled client never reads); the
    # bound is generous so a loaded CI machine cannot fail it by itself.
    check(time.monotonic() - t0 < 20 * SLOW,
          "a stalled reader held up another client")
    c.close()

def test(path):
    for name in ("mem", "file"):
        prime(path, name)
    base = fds()
    for name in ("mem", "file"):
        cut_writes(path, name)
        unread_replies(path, name)
        stalled_reader(path, name)
        settle(base, name)
        verify(path, name)
        c = Conn(path); c.connect_export(name)
        err, got = c.read(CUT_OFF, 4096)
        check(err == 0 and got == bytes(4096),
              "%s: a write cut short was applied" % name)
        c.disconnect()
    settle(base, "end")

main(test)
EOF
stop_nbdd
# the file export kept what was flushed to it
cmp -n 65536 -i 0:1048576 <(python3 -c '
import sys; sys.path.insert(0, "'"$TOP"'/tests/interop")
from hostile_nbd import PRIME; sys.stdout.buffer.write(PRIME)') "$T/img" ||
	fail "the file export lost its data"
