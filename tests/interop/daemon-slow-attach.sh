#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A backend that takes its time to open (a plugin whose open() sleeps
# longer than the control socket's write deadline) must not hold up the
# daemon: `list` answers at once and shows the mapping as attaching,
# other clients are served, and the slow request still gets its reply
# (the backend's own reason) however long it took. SIGTERM during such
# an attach waits for it and exits 0.
. "$(dirname "$0")/daemon-lib.sh"

command -v cc >/dev/null || fail "needs a C compiler (build-essential)"
cat >"$T/slow.c" <<'C'
#include <errno.h>
#include <unistd.h>
#include <nbdd/backend.h>
static int slow_open(const struct nbdd_param *p, size_t n, int ro, void **h)
{
	sleep(15);
	nbdd_backend_error("slow backend: gave up after 15 s");
	return -EIO;
}
static void slow_close(void *h) {}
static int slow_size(void *h, uint64_t *s) { *s = 1 << 20; return 0; }
static int slow_pread(void *h, void *b, size_t n, uint64_t o, uint32_t f)
{
	return 0;
}
static const struct nbdd_backend slow = {
	NBDD_BACKEND_HEADER, .name = "slow", .open = slow_open,
	.close = slow_close, .get_size = slow_size, .pread = slow_pread,
};
NBDD_BACKEND_REGISTER(slow)
C
cc -shared -fPIC -I"$TOP/include" -o "$T/slow.so" "$T/slow.c"

start_daemon
ctl attach --name slowpoke "$T/slow.so" >"$T/attach.out" 2>"$T/attach.err" &
attach_pid=$!
for ((i = 0; i < 50; i++)); do
	ctl --json list | grep -q '"state":"attaching"' && break
	sleep 0.1
done
ctl --json list | python3 -c '
import json, sys
m = json.load(sys.stdin)["mappings"]
assert len(m) == 1 and m[0]["name"] == "slowpoke" and m[0]["state"] == "attaching", m
' || fail "list during a slow attach: $(ctl --json list)"
ctl list | grep -Eq '^- +slowpoke +.*slow\.so +- +0 +no +attaching$' || fail "list text: $(ctl list)"
expect 1 "'slowpoke' is still being attached" ctl detach slowpoke
# --all leaves it too, and says so instead of "nothing to detach"
expect 1 "'slowpoke' is still being attached: try again in a moment" ctl detach --all
expect 1 "a mapping named 'slowpoke' already exists" ctl attach --name slowpoke memory:size=1M
kill -0 "$attach_pid" 2>/dev/null || fail "the daemon was held up by the slow attach"

rc=0
wait "$attach_pid" || rc=$?
[ $rc -eq 1 ] || fail "slow attach exited $rc: $(cat "$T/attach.err")"
grep -q 'slow backend: gave up after 15 s' "$T/attach.err" ||
	fail "the slow attach's reply: $(cat "$T/attach.err")"
[ -z "$(ctl list)" ] || fail "a failed attach left an entry"

# SIGTERM in the middle of a slow attach: it finishes, then a clean exit.
ctl attach "$T/slow.so" >/dev/null 2>&1 &
attach_pid=$!
for ((i = 0; i < 50; i++)); do
	ctl --json list | grep -q '"state":"attaching"' && break
	sleep 0.1
done
kill -TERM "$DAEMON_PID"
for ((i = 0; i < 200; i++)); do alive || break; sleep 0.1; done
alive && fail "nbdd did not exit within 20 s of SIGTERM during an attach"
rc=0
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=
[ $rc -eq 0 ] || { show_log; fail "nbdd exited $rc"; }
wait "$attach_pid" || true
[ ! -e "$CTL" ] || fail "control socket left behind"
echo "ok"
