#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# What the daemon exposes: without --listen it listens on nothing but its
# control socket; "tcp:PORT" binds 127.0.0.1 only (never 0.0.0.0 or ::),
# and a client there is served.
. "$(dirname "$0")/hostile-lib.sh"

# Listening sockets of the daemon, one "netid local-address" per line.
listening() {
	ss -Hlpn -A inet,unix 2>/dev/null |
		awk -v pid="pid=$NBDD_PID," 'index($0, pid) { print $1, $5 }'
}

start_nbdd_raw "$CTL" --export disk=memory:size=1M
sleep 0.5
socks=$(listening)
echo "without --listen:"; echo "$socks"
[ -n "$socks" ] || fail "ss shows no socket for pid $NBDD_PID (not even control)"
others=$(echo "$socks" | grep -vF " $CTL" || true)
[ -z "$others" ] || fail "listening without --listen: $others"
stop_nbdd

# a free port on the loopback interface
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_nbdd_raw "$CTL" --listen "tcp:$port" --export disk=memory:size=1M
for ((i = 0; i < 50 * SLOW; i++)); do
	socks=$(listening | grep -E "^tcp " || true)
	[ -n "$socks" ] && break
	sleep 0.1
done
echo "with --listen tcp:$port:"; echo "$socks"
[ "$socks" = "tcp 127.0.0.1:$port" ] || fail "tcp:$port listens on: $socks"
py "$port" <<'EOF'
import socket, struct, sys
from hostile_nbd import *

port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
magic, opt = struct.unpack(">QQ", s.recv(16, socket.MSG_WAITALL))
check(magic == NBDMAGIC and opt == IHAVEOPT, "no NBD greeting on tcp")
s.close()
# not reachable through any other local address
for fam, addr in ((socket.AF_INET6, "::1"),):
    try:
        t = socket.socket(fam)
        t.settimeout(2)
        t.connect((addr, port))
        raise Fail("tcp:PORT is reachable at %s" % addr)
    except ConnectionRefusedError:
        pass
    except OSError:
        pass  # no IPv6 loopback here
log("ok")
EOF
stop_nbdd
