# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by tests/interop/client-*.sh (not executable: not a test itself).
# Real NBD clients (libnbd's nbdinfo/nbdsh/nbdcopy, qemu-img/qemu-io, fio)
# against a network export on a Unix socket. Builds on daemon-lib.sh ($T,
# $LOG, start_daemon, stop_daemon, fail, cleanup on exit) and adds:
#
#   need CMD...            fail unless every client is installed
#   serve ARGS...          start_daemon --listen unix:$SOCK ARGS...
#   uri NAME               nbd+unix:///NAME?socket=$SOCK
#   info_json NAME         nbdinfo --json for one export
#   map_json URI           nbdinfo --map --json, as "offset length type" lines
#   pyrun FILE             run a Python file under nbdsh (libnbd's Python),
#                          with nbdcheck.py (helpers below) importable
#   bounded SECONDS CMD... CMD under a time limit (scaled for sanitizers)
#
# Every client call goes through a time limit: a server that stops
# answering fails the test in bounded time instead of hanging the suite.
. "$(dirname "${BASH_SOURCE[0]}")/daemon-lib.sh"

SOCK=$T/nbd.sock
EXAMPLES=$TOP/${B:-build}/examples
export SOCK

bounded() { # seconds cmd...
	local s=$1
	shift
	timeout --kill-after=5 $((s * SLOW)) "$@"
}

need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || fail "needs $c (scripts/deps.sh)"
	done
}

serve() {
	start_daemon --listen "unix:$SOCK" "$@"
	[ -S "$SOCK" ] || fail "nbdd is up but $SOCK is not a socket"
}

uri() { echo "nbd+unix:///$1?socket=$SOCK"; }

info_json() { bounded 30 nbdinfo --json "$(uri "$1")"; }

# "offset length type" per extent, type as base:allocation's bits
# (0 data, 1 hole, 2 zero, 3 hole+zero).
map_json() {
	bounded 60 nbdinfo --map --json "$1" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    print(e["offset"], e["length"], e["type"])'
}

# A python3 that can import libnbd's bindings. Debian installs them for
# /usr/bin/python3; a python3 earlier in PATH (pyenv, venv) would make
# nbdsh, which runs "python3 -m nbd", fail. Put the right one first.
use_libnbd_python() {
	local p
	for p in $(type -ap python3) /usr/bin/python3; do
		if "$p" -c 'import nbd' 2>/dev/null; then
			mkdir -p "$T/bin"
			ln -sf "$p" "$T/bin/python3"
			export PATH=$T/bin:$PATH
			return 0
		fi
	done
	fail "needs libnbd's Python bindings (python3-libnbd, for nbdsh)"
}

# Run a Python test file under nbdsh; its assertion failures fail the test.
pyrun() {
	PYTHONPATH=$T/py bounded "${PY_LIMIT:-120}" nbdsh -n \
		-c "import runpy; runpy.run_path('$1', run_name='__main__')" ||
		fail "$(basename "$1") failed (see above)"
}

# Helpers shared by the Python test files: connect with options, expect an
# NBD error by errno, and collect block-status extents and read chunks.
write_nbdcheck() {
	mkdir -p "$T/py"
	cat >"$T/py/nbdcheck.py" <<'EOF'
import os
import nbd

SOCK = os.environ["SOCK"]


def connect(name, meta=True, strict=None, **settings):
    """A handle on export @name; settings are set_*() calls before GO."""
    h = nbd.NBD()
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    for key, value in settings.items():
        getattr(h, "set_" + key)(value)
    h.connect_uri("nbd+unix:///%s?socket=%s" % (name, SOCK))
    if strict is not None:
        h.set_strict_mode(strict)
    return h


def expect_error(errname, fn, *args, **kw):
    """fn(...) must raise nbd.Error with errno @errname ("EINVAL"...)."""
    try:
        fn(*args, **kw)
    except nbd.Error as e:
        assert e.errno == errname, "%s: wanted %s, got %s (%s)" % (
            getattr(fn, "__name__", fn), errname, e.errno, e)
        return e
    raise AssertionError("%s%r succeeded; wanted %s" % (
        getattr(fn, "__name__", fn), args, errname))


def extents(h, count, offset, flags=0):
    """block_status as [(offset, length, flags)], checked for contiguity."""
    got = []

    def cb(meta, off, entries, err):
        assert meta == nbd.CONTEXT_BASE_ALLOCATION, meta
        assert off == offset, (off, offset)
        got.append(list(entries))
        return 0

    h.block_status(count, offset, cb, flags)
    assert len(got) == 1, "one base:allocation chunk, got %d" % len(got)
    e, out, at = got[0], [], offset
    for i in range(0, len(e), 2):
        out.append((at, e[i], e[i + 1]))
        at += e[i]
    return out


def read_chunks(h, count, offset, flags=0):
    """pread_structured: (data, [(offset, length, status)]), checked to
    cover [offset, offset + count) exactly once."""
    chunks = []

    def cb(buf, off, status, err):
        assert err.value == 0, err
        chunks.append((off, len(buf), status))
        return 0

    data = h.pread_structured(count, offset, cb, flags)
    covered = sorted(chunks)
    at = offset
    for off, length, _ in covered:
        assert off == at, "chunks leave a gap or overlap: %r" % covered
        at += length
    assert at == offset + count, "chunks stop short: %r" % covered
    return bytes(data), chunks
EOF
}

use_libnbd_python
write_nbdcheck
