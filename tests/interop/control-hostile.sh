#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Whatever arrives on the control socket, the daemon answers with an
# error line or closes that one connection, and keeps serving everyone
# else: garbage, binary junk, lines over the 64 KiB cap, deep nesting,
# requests never finished, replies never read, too many clients, clients
# that vanish. `nbdctl list` must still work afterwards, and SIGTERM must
# still end it cleanly (and without sanitizer reports under check-asan).
. "$(dirname "$0")/daemon-lib.sh"

start_daemon --log-level info

# Pipelined requests get their replies in order, one line each.
out=$(raw_send '{"cmd":"ping"}\n{"cmd":"version"}\n{"cmd":"list"}\n' 3)
[ "$(echo "$out" | wc -l)" = 3 ] || fail "pipelined: $out"
echo "$out" | sed -n 2p | grep -q '"version":"0.1.0"' || fail "pipelined order: $out"

# Garbage of every kind: one error reply per line, the right errno.
out=$(raw_send 'hello\n\x00\xff\xfe\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n{"cmd":"attach","spec":17}\n{"cmd":"rm -rf"}\n{"cmd":"list"}\n' 6)
[ "$(echo "$out" | grep -c '"ok":false')" = 5 ] || fail "garbage replies: $out"
echo "$out" | sed -n 1p | grep -q '"errno":74' || fail "not JSON should be EBADMSG: $out"
echo "$out" | sed -n 4p | grep -q '"errno":22' || fail "wrong type should be EINVAL: $out"
echo "$out" | sed -n 5p | grep -q '"errno":95' || fail "unknown command should be EOPNOTSUPP: $out"
echo "$out" | sed -n 6p | grep -q '"ok":true' || fail "a good line after garbage: $out"

# Over the line cap, with and without a newline: one reply, then closed.
big=$(head -c 70000 /dev/zero | tr '\0' 'x')
out=$(raw_send "{\"cmd\":\"attach\",\"spec\":\"$big\"}\n{\"cmd\":\"ping\"}\n" 2)
[ "$(echo "$out" | wc -l)" = 1 ] || fail "oversized line: expected one reply, got: ${out:0:300}"
echo "$out" | grep -q 'longer than 65536 bytes' || fail "oversized line: ${out:0:300}"
out=$(raw_send "$big" 2)
echo "$out" | grep -q '"errno":90' || fail "oversized, no newline: ${out:0:300}"
ctl list >/dev/null || fail "no list after oversized lines"

# Many clients at once, slow ones, deaf ones and vanishing ones; the
# daemon answers nbdctl throughout.
python3 - "$CTL" "$NBDCTL_BIN" "$LOG" <<'PY'
import socket, subprocess, sys, time
ctl, nbdctl, log = sys.argv[1:4]

def conn():
    s = socket.socket(socket.AF_UNIX)
    s.connect(ctl)
    return s

def nbdctl_ok(what):
    t0 = time.time()
    r = subprocess.run([nbdctl, '--control', ctl, 'list'], capture_output=True,
                       timeout=10)
    if r.returncode != 0:
        sys.exit(f'nbdctl list failed {what}: {r.stderr!r}')
    if time.time() - t0 > 3:
        sys.exit(f'nbdctl list took {time.time() - t0:.1f}s {what}')

# a request started and never finished; one that never reads its replies
slow = conn()
slow.sendall(b'{"cmd":"li')
deaf = conn()
deaf.setblocking(False)
flood = b'{"cmd":"version"}\n' * 20000
sent = 0
end = time.time() + 3
while sent < len(flood) and time.time() < end:
    try:
        sent += deaf.send(flood[sent:sent + 65536])
    except BlockingIOError:
        time.sleep(0.01)
nbdctl_ok('with a slow and a deaf client')

# vanishing clients: mid-line, right after a request, with unread replies
for req in (b'{"cmd":"pi', b'{"cmd":"list"}\n', b'{"cmd":"ping"}\n' * 1000):
    s = conn()
    s.sendall(req)
    s.close()
s = conn()
s.sendall(b'{"cmd":"ping"}\n')
s.shutdown(socket.SHUT_WR)  # half-closed: the reply still comes
if b'"ok":true' not in s.recv(4096):
    sys.exit('no reply after shutdown(SHUT_WR)')
s.close()
nbdctl_ok('after vanishing clients')

# more clients than the daemon takes (64): the rest are told and closed
many = [conn() for _ in range(80)]
time.sleep(0.3)
refused = 0
for s in many:
    s.settimeout(0.05)
    try:
        if b'too many control clients' in s.recv(4096):
            refused += 1
    except socket.timeout:
        pass
if refused < 10:
    sys.exit(f'only {refused} of 80 clients were refused')
for s in many:
    s.close()
time.sleep(0.2)
nbdctl_ok('after too many clients')

# the unfinished request is answered with a timeout and closed (10 s)
slow.settimeout(15)
reply = slow.recv(4096)
if b'not completed within 10 s' not in reply:
    sys.exit(f'slow client got {reply!r}')
if slow.recv(4096) != b'':
    sys.exit('slow client not closed')
# the deaf one is dropped for not reading (10 s without progress)
end = time.time() + 15
while b'does not read its replies' not in open(log, 'rb').read():
    if time.time() > end:
        sys.exit('the deaf client was not dropped')
    time.sleep(0.2)
deaf.setblocking(True)
deaf.settimeout(5)
try:
    while deaf.recv(1 << 20):
        pass
except ConnectionResetError:
    pass
nbdctl_ok('at the end')
PY

grep -q 'did not finish its request in time' "$LOG" || fail "the slow client's timeout was not logged"
alive || fail "nbdd died"
ctl list >/dev/null
stop_daemon
echo "ok"
