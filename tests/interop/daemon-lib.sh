# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by the daemon and nbdctl tests in tests/interop/ (not executable:
# not a test itself). Every test gets a private directory ($T, world-
# traversable so that tests running commands as `nobody` can reach the
# socket), its own control socket ($CTL) and cleanup on any exit.
#
#   start_daemon [nbdd options...]   nbdd --control $CTL ...; waits for it
#   stop_daemon                      SIGTERM, wait (bounded), insist on exit 0
#   ctl ARGS...                      nbdctl --control $CTL ARGS...
#   expect RC 'TEXT' CMD...          CMD exits RC and prints exactly one
#                                    stderr line containing TEXT
#   raw_send 'BYTES' N               send to the control socket, print N replies
set -euo pipefail

TOP=${NBDD_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
NBDD_BIN=${NBDD_BIN:-$TOP/${B:-build}/nbdd}
NBDCTL_BIN=${NBDCTL_BIN:-$TOP/${B:-build}/nbdctl}
T=$(mktemp -d "${TMPDIR:-/tmp}/nbdd-test.XXXXXX")
chmod 0755 "$T"
CTL=$T/control.sock
LOG=$T/nbdd.log
DAEMON_PID=
SLOW=1
[ "${NBDD_SANITIZED:-0}" = 1 ] && SLOW=3
# NBDD_VALGRIND=1 runs the daemon under valgrind (tests/interop/hostile-
# valgrind.sh does); an error makes it exit 99, which stop_daemon fails on.
VALGRIND=()
if [ "${NBDD_VALGRIND:-0}" = 1 ]; then
	VALGRIND=(valgrind -q --error-exitcode=99 --leak-check=full
		  --errors-for-leak-kinds=definite)
	SLOW=10
fi

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

show_log() {
	[ -s "$LOG" ] && sed 's/^/    nbdd| /' "$LOG" | tail -n 60 >&2
	return 0
}

daemon_cleanup() {
	local rc=$?
	if [ -n "$DAEMON_PID" ]; then
		kill -KILL "$DAEMON_PID" 2>/dev/null || true
		wait "$DAEMON_PID" 2>/dev/null || true
		[ $rc -eq 0 ] || show_log
	fi
	rm -rf "$T"
	exit $rc
}
trap daemon_cleanup EXIT

start_daemon() {
	local i
	[ -x "$NBDD_BIN" ] || fail "no daemon at $NBDD_BIN"
	"${VALGRIND[@]}" "$NBDD_BIN" --control "$CTL" "$@" >>"$LOG" 2>&1 &
	DAEMON_PID=$!
	for ((i = 0; i < 100 * SLOW; i++)); do
		[ -S "$CTL" ] && "$NBDCTL_BIN" --control "$CTL" ping 2>/dev/null &&
			return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || {
			wait "$DAEMON_PID" || true
			DAEMON_PID=
			show_log
			fail "nbdd exited at start-up: $*"
		}
		sleep 0.1
	done
	show_log
	fail "nbdd did not answer on $CTL"
}

alive() {
	[ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null
}

stop_daemon() {
	local pid=$DAEMON_PID rc i
	[ -n "$pid" ] || return 0
	alive || { show_log; fail "nbdd died during the test"; }
	kill -TERM "$pid"
	for ((i = 0; i < 100 * SLOW; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		show_log
		fail "nbdd did not exit within $((10 * SLOW)) s of SIGTERM"
	fi
	DAEMON_PID=
	wait "$pid" && rc=0 || rc=$?
	if [ $rc -ne 0 ] ||
	   grep -qE 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:' "$LOG"; then
		show_log
		fail "nbdd exited with status $rc or reported an error"
	fi
}

ctl() {
	"$NBDCTL_BIN" --control "$CTL" "$@"
}

# expect RC TEXT CMD...: exit status RC, one line on stderr containing TEXT.
expect() {
	local want=$1 text=$2 rc=0 lines
	shift 2
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	lines=$(wc -l <"$T/err")
	if [ "$rc" -ne "$want" ] || [ "$lines" -ne 1 ] ||
	   ! grep -qF -- "$text" "$T/err"; then
		echo "command: $*" >&2
		echo "exit $rc (want $want); stderr ($lines lines, want 1 with '$text'):" >&2
		sed 's/^/    | /' "$T/err" >&2
		fail "unexpected result"
	fi
}

# Send raw bytes (Python escapes allowed: \n, \x00) on a new control
# connection and print the replies, until N lines came, EOF, or 5 s.
raw_send() { # bytes N
	python3 - "$CTL" "$1" "$2" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode().decode('unicode_escape').encode('latin-1'))
want, buf, end = int(sys.argv[3]), b'', time.time() + 5
try:
    while buf.count(b'\n') < want and time.time() < end:
        s.settimeout(max(end - time.time(), 0.01))
        d = s.recv(65536)
        if not d:
            break
        buf += d
except (socket.timeout, ConnectionResetError):
    pass
sys.stdout.write(buf.decode('utf-8', 'replace'))
EOF
}
