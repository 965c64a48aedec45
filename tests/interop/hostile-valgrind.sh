#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The daemon's longer interop tests again, with nbdd under valgrind
# (memcheck: invalid accesses, uninitialised reads, definite leaks). Each
# test's own stop step fails on valgrind's exit status 99. Under
# `make check-asan` the daemon is an ASan build, which valgrind cannot run:
# then this test only says so.
#
# Left out: control-hostile.sh, whose deadlines are real time and not
# meant to stretch with a 20x slower daemon.
set -uo pipefail
cd "$(dirname "$0")"

if [ "${NBDD_SANITIZED:-0}" = 1 ]; then
	echo "skipped: the daemon is a sanitizer build; valgrind runs in make check"
	exit 0
fi
command -v valgrind >/dev/null || { echo "FAIL: valgrind is not installed (scripts/deps.sh)"; exit 1; }

tests=(hostile-sequence hostile-options hostile-ranges hostile-vanish
       hostile-clients hostile-exposure hostile-slow
       daemon-lifecycle net-export nbdctl-errors control-permissions)
failed=()
for t in "${tests[@]}"; do
	[ -x "$t.sh" ] || { echo "FAIL: $t.sh is missing"; failed+=("$t"); continue; }
	start=$SECONDS
	if NBDD_VALGRIND=1 timeout --kill-after=10 300 "./$t.sh" >"${TMPDIR:-/tmp}/valgrind-$t.$$.log" 2>&1; then
		printf 'ok   %-24s %4ds\n' "$t" $((SECONDS - start))
	else
		printf 'FAIL %-24s %4ds\n' "$t" $((SECONDS - start))
		sed 's/^/    | /' "${TMPDIR:-/tmp}/valgrind-$t.$$.log" | tail -n 40
		failed+=("$t")
	fi
	rm -f "${TMPDIR:-/tmp}/valgrind-$t.$$.log"
done
[ ${#failed[@]} -eq 0 ] || { echo "under valgrind, failed: ${failed[*]}"; exit 1; }
