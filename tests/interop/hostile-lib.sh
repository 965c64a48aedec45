# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by tests/interop/hostile-*.sh (not executable: not a test itself).
#
# Starts one nbdd with a Unix listener and a control socket in a private
# directory, gives the Python client (hostile_nbd.py) the socket path, and
# at the end stops the daemon with SIGTERM and fails the test unless it
# exited cleanly: a crash, a sanitizer report (make check-asan) or a
# valgrind error (NBDD_VALGRIND=1) all fail the test that provoked them.
#
#   start_nbdd [nbdd options...]    --export/--max-clients/...
#   alive                           the daemon is still running
#   py <<'EOF' ... EOF              run Python with hostile_nbd importable
#   stop_nbdd                       SIGTERM, wait, check (also on EXIT)
set -euo pipefail

TOP=${NBDD_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
NBDD_BIN=${NBDD_BIN:-$TOP/${B:-build}/nbdd}
NBDCTL_BIN=${NBDCTL_BIN:-$TOP/${B:-build}/nbdctl}
T=$(mktemp -d "${TMPDIR:-/tmp}/nbdd-hostile.XXXXXX")
SOCK=$T/nbd.sock
CTL=$T/control.sock
LOG=$T/nbdd.log
VGLOG=$T/valgrind.log
export NBD_SOCK=$SOCK PYTHONPATH=$TOP/tests/interop${PYTHONPATH:+:$PYTHONPATH}
export PYTHONDONTWRITEBYTECODE=1
NBDD_PID=
# valgrind makes start-up and every request much slower
SLOW=1
[ "${NBDD_SANITIZED:-0}" = 1 ] && SLOW=3
[ "${NBDD_VALGRIND:-0}" = 1 ] && SLOW=10

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

show_logs() {
	[ -s "$LOG" ] && sed 's/^/    nbdd| /' "$LOG" | tail -n 80 >&2
	[ -s "$VGLOG" ] && sed 's/^/    vg| /' "$VGLOG" | tail -n 80 >&2
	return 0
}

# Start nbdd with exactly these options (and the control socket); wait
# until @wait_for (a socket path) exists.
start_nbdd_raw() {
	local wait_for=$1 i
	shift
	local cmd=("$NBDD_BIN" --control "$CTL" "$@")
	[ -x "$NBDD_BIN" ] || fail "no daemon at $NBDD_BIN"
	if [ "${NBDD_VALGRIND:-0}" = 1 ]; then
		cmd=(valgrind -q --error-exitcode=99 --leak-check=full
		     --errors-for-leak-kinds=definite --show-leak-kinds=definite
		     --log-file="$VGLOG" "${cmd[@]}")
	fi
	"${cmd[@]}" >"$LOG" 2>&1 &
	NBDD_PID=$!
	export NBDD_PID SLOW
	for ((i = 0; i < 100 * SLOW; i++)); do
		[ -S "$wait_for" ] && return 0
		kill -0 "$NBDD_PID" 2>/dev/null || {
			show_logs
			fail "nbdd exited at start-up"
		}
		sleep 0.1
	done
	show_logs
	fail "nbdd did not create $wait_for"
}

# The usual: a Unix listener at $SOCK, plus these options.
start_nbdd() {
	start_nbdd_raw "$SOCK" --listen "unix:$SOCK" "$@"
}

alive() {
	[ -n "$NBDD_PID" ] && kill -0 "$NBDD_PID" 2>/dev/null
}

py() {
	python3 - "$@"
}

# SIGTERM, wait (bounded), and insist on a clean exit and a clean log.
stop_nbdd() {
	local pid=$NBDD_PID rc i
	[ -n "$pid" ] || return 0
	NBDD_PID=
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid" && rc=0 || rc=$?
		show_logs
		echo "FAIL: nbdd died during the test (exit $rc)" >&2
		return 1
	fi
	kill -TERM "$pid"
	for ((i = 0; i < 100 * SLOW; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid"
		wait "$pid" || true
		show_logs
		echo "FAIL: nbdd did not exit within $((10 * SLOW))s of SIGTERM" >&2
		return 1
	fi
	wait "$pid" && rc=0 || rc=$?
	if [ $rc -ne 0 ] ||
	   grep -qE 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:' "$LOG" ||
	   { [ -s "$VGLOG" ] && grep -q '== ERROR SUMMARY: [1-9]' "$VGLOG"; }; then
		show_logs
		echo "FAIL: nbdd exited with status $rc or reported an error" >&2
		return 1
	fi
}

hostile_cleanup() {
	local rc=$?
	if [ -n "$NBDD_PID" ]; then
		if [ $rc -eq 0 ]; then
			stop_nbdd || rc=1
		else
			kill -KILL "$NBDD_PID" 2>/dev/null || true
			wait "$NBDD_PID" 2>/dev/null || true
			show_logs
		fi
	fi
	rm -rf "$T"
	exit $rc
}
trap hostile_cleanup EXIT

# Resident memory of the daemon in KiB (a 1 GiB claim must not show here).
rss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$NBDD_PID/status"
}
