#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# nbdd starts in the foreground, answers, and on SIGTERM (or SIGINT)
# exits 0 having removed its control socket, state file and pid file.
# A second daemon on the same socket fails without disturbing the first;
# a socket left by a killed daemon is taken over.
. "$(dirname "$0")/daemon-lib.sh"

# --help and --version need no socket; bad usage exits 2 with one line.
"$NBDD_BIN" --help | grep -q -- '--control PATH' || fail "nbdd --help"
[ "$("$NBDD_BIN" --version)" = "nbdd 0.1.0" ] || fail "nbdd --version"
expect 2 "--log-level loud" "$NBDD_BIN" --control "$CTL" --log-level loud
expect 2 "expected a number" "$NBDD_BIN" --control "$CTL" --max-clients 0
expect 2 "expected a number" "$NBDD_BIN" --control "$CTL" --handshake-timeout x
expect 2 "expected microseconds from 0 to 1000" "$NBDD_BIN" --control "$CTL" --poll-max-us 1001
expect 2 "expected microseconds" "$NBDD_BIN" --control "$CTL" --poll-max-us -5
expect 2 "expected NAME=SPEC" "$NBDD_BIN" --control "$CTL" --listen "unix:$T/n" --export memory
expect 2 "unexpected argument" "$NBDD_BIN" --control "$CTL" extra
expect 2 "--control: empty value" "$NBDD_BIN" --control ""
expect 2 "--pidfile: empty value" "$NBDD_BIN" --control "$CTL" --pidfile=
expect 2 "too long" "$NBDD_BIN" --control "$T/$(printf 'x%.0s' {1..120})"
[ ! -e "$CTL" ] || fail "a refused start left $CTL behind"

start_daemon --pidfile "$T/nbdd.pid" --log-level info
[ "$(cat "$T/nbdd.pid")" = "$DAEMON_PID" ] || fail "pid file has the wrong pid"
[ "$(stat -c %a "$CTL")" = 660 ] || fail "control socket mode $(stat -c %a "$CTL"), want 660"
[ -f "$T/mappings.json" ] || fail "no state file next to the control socket"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["mappings"] == [] and d["pid"] == int(sys.argv[2])' \
	"$T/mappings.json" "$DAEMON_PID" || fail "state file content"
ctl version | grep -q '^nbdd 0.1.0 (control protocol 1)$' || fail "nbdctl version"
[ -z "$(ctl list)" ] || fail "list of nothing printed something"
[ "$(ctl --json list | python3 -c 'import json,sys; print(json.load(sys.stdin)["mappings"])')" = "[]" ] ||
	fail "list --json"

# A second daemon: refused, and the first keeps its socket.
expect 1 "already running" "$NBDD_BIN" --control "$CTL"
ctl ping || fail "the first daemon stopped answering after a second one tried"

# SIGHUP: logged, state rewritten, daemon carries on.
rm "$T/mappings.json"
kill -HUP "$DAEMON_PID"
for ((i = 0; i < 50; i++)); do [ -f "$T/mappings.json" ] && break; sleep 0.1; done
[ -f "$T/mappings.json" ] || fail "SIGHUP did not rewrite the state file"
ctl ping || fail "no answer after SIGHUP"

stop_daemon
for f in "$CTL" "$T/mappings.json" "$T/nbdd.pid"; do
	[ ! -e "$f" ] || fail "$f is still there after SIGTERM"
done
grep -q 'shutting down' "$LOG" || fail "no shutdown message in the log"

# SIGINT does the same.
start_daemon
kill -INT "$DAEMON_PID"
for ((i = 0; i < 100; i++)); do alive || break; sleep 0.1; done
alive && fail "SIGINT did not stop nbdd"
wait "$DAEMON_PID" || fail "nbdd exited $? on SIGINT"
DAEMON_PID=

# A daemon killed outright leaves its socket; the next one takes it over.
start_daemon
{ kill -KILL "$DAEMON_PID"; wait "$DAEMON_PID"; } 2>/dev/null || true
DAEMON_PID=
[ -S "$CTL" ] || fail "expected a stale socket after SIGKILL"
expect 1 "nbdd is not running" ctl list
start_daemon
grep -q 'stale control socket' "$LOG" || fail "stale socket not reported"
stop_daemon

# Journal prefixes when stderr is the journal (JOURNAL_STREAM matches).
exec 3>"$T/journal.log"
JOURNAL_STREAM=$(stat -L -c '%d:%i' /proc/self/fd/3) \
	"$NBDD_BIN" --control "$CTL" --log-level info 2>&3 &
DAEMON_PID=$!
for ((i = 0; i < 100; i++)); do ctl ping 2>/dev/null && break; sleep 0.1; done
LOG=$T/journal.log stop_daemon
exec 3>&-
grep -q '^<5>nbdd 0.1.0 ready' "$T/journal.log" || fail "no <5> prefix: $(cat "$T/journal.log")"
grep -q '^<6>control socket' "$T/journal.log" || fail "no <6> prefix"
# systemd's readiness protocol: READY=1 once it answers, STOPPING=1 at the end.
python3 - "$T/notify.sock" "$T/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
with open(sys.argv[2], "w") as log:
    for _ in range(2):
        log.write(s.recv(4096).decode() + "\n")
        log.flush()
PY
notify_pid=$!
for ((i = 0; i < 50; i++)); do [ -S "$T/notify.sock" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$T/notify.sock start_daemon
stop_daemon
wait "$notify_pid" || fail "no readiness notifications"
# Each message starts with its state change; STATUS= lines follow it.
[ "$(grep -E '^(READY|STOPPING)=' "$T/notify.log")" = "READY=1
STOPPING=1" ] || fail "notifications: $(cat "$T/notify.log")"
grep -q '^STATUS=serving 0 devices$' "$T/notify.log" || fail "no STATUS=: $(cat "$T/notify.log")"
echo "ok"
