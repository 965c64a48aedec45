# Helpers for the tests in tests/vm/tests/, which run as root inside the VM
# (see tests/vm/README.md). Source it first thing:
#
#   #!/usr/bin/env bash
#   # vm-timeout: 300
#   . "$NBDD_TOP/tests/vm/lib.sh"
#
# It turns on `set -euo pipefail`, reports the command that failed, and
# undoes at exit whatever the helpers set up, last first (on_exit). Every
# wait is bounded. Scratch files go to $TMPDIR, a directory of this test
# on the guest's tmpfs; VM_ARTIFACTS is kept on the host.
#
# Environment from the harness: NBDD_TOP, B, NBDD_BIN, NBDCTL_BIN,
# VM_TEST_NAME, TMPDIR, VM_ARTIFACTS.

set -Eeuo pipefail
shopt -s inherit_errexit

: "${NBDD_TOP:?run this inside the VM: tests/vm/run-vm or tests/vm/run-suite}"
: "${TMPDIR:=/tmp}" "${VM_TEST_NAME:=$(basename "$0" .sh)}"
export TMPDIR
B=${B:-$NBDD_TOP/build}
NBDD_BIN=${NBDD_BIN:-$B/nbdd}
NBDCTL_BIN=${NBDCTL_BIN:-$B/nbdctl}

# ---- reporting ----

log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# set -e ends the test at the first failing command; say which one.
_lib_on_err() { # status line command
	echo "error: line $2: '$3' exited with status $1" >&2
}
trap '_lib_on_err $? $LINENO "$BASH_COMMAND"' ERR

# A test that needs something missing fails and says what; it never skips.
need() { # command...
	local c
	for c; do
		command -v "$c" >/dev/null ||
			fail "needs '$c', which is missing (scripts/deps.sh install)"
	done
}

need_file() { # path [what it is]
	[ -e "$1" ] || fail "needs $1${2:+ ($2)}, which is missing"
}

# ---- cleanup ----

_lib_cleanups=()

# Run COMMAND ARGS... when the test exits, however it exits; cleanups run
# last registered first, and their failures are reported but do not change
# the test's status.
on_exit() {
	_lib_cleanups+=("$(printf '%q ' "$@")")
}

_lib_run_cleanups() {
	local rc=$? i
	trap - ERR
	set +e
	for ((i = ${#_lib_cleanups[@]} - 1; i >= 0; i--)); do
		eval "${_lib_cleanups[i]}" || echo "cleanup failed: ${_lib_cleanups[i]}" >&2
	done
	[ $rc -eq 0 ] && echo "PASS: $VM_TEST_NAME" || echo "FAIL: $VM_TEST_NAME (status $rc)" >&2
	exit $rc
}
trap _lib_run_cleanups EXIT
# A signal (the harness's time limit) must run the cleanups too.
trap 'exit 143' TERM
trap 'exit 130' INT

# ---- waiting ----

# Poll COMMAND every 0.1 s until it succeeds; fail after SECONDS. Its
# stdout is dropped, its stderr kept (a `fail` inside it must be seen).
wait_until() { # seconds description command...
	local limit=$1 what=$2 deadline
	shift 2
	deadline=$((SECONDS + limit))
	until "$@" >/dev/null; do
		[ $SECONDS -lt $deadline ] || fail "timed out after ${limit}s waiting for $what"
		sleep 0.1
	done
}

_lib_dev_ready() { # /dev/nbdX
	local sys=/sys/block/${1#/dev/}
	[ -b "$1" ] && [ -e "$sys/pid" ] && [ "$(cat "$sys/size" 2>/dev/null || echo 0)" -gt 0 ]
}

# Wait until an nbd device is connected with a non-zero size and udev has
# handled its events (so nothing probes it behind the test's back).
wait_for_dev() { # /dev/nbdX [seconds]
	wait_until "${2:-20}" "$1 to be connected" _lib_dev_ready "$1"
	udevadm settle --timeout=30 || true
}

_lib_dev_gone() { [ ! -e "/sys/block/${1#/dev/}/pid" ]; }

# Wait until an nbd device is no longer connected.
wait_for_disconnect() { # /dev/nbdX [seconds]
	wait_until "${2:-20}" "$1 to disconnect" _lib_dev_gone "$1"
}

# ---- processes ----

# Start COMMAND in the background with its output in $TMPDIR/NAME.log; the
# pid goes to SPAWNED_PID. At exit it is stopped (stop_pid) if still running.
# SPAWN_STOP_SIGNAL: what stops it at exit (default TERM).
spawn() { # name command...
	local name=$1
	shift
	"$@" >"$TMPDIR/$name.log" 2>&1 &
	SPAWNED_PID=$!
	on_exit _lib_stop_at_exit "$SPAWNED_PID" "$name" "${SPAWN_STOP_SIGNAL:-TERM}"
	log "started $name (pid $SPAWNED_PID): $*"
}

# At exit the status no longer matters: the test checked it, or failed.
_lib_stop_at_exit() { stop_pid "$@" || true; }

# SIGTERM (or SIGNAL), then SIGKILL after 10 s. Returns the process's
# exit status (0 if it had already been reaped).
stop_pid() { # pid [name] [signal]
	local pid=$1 i rc=0
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || rc=$?; return $rc; }
	kill -"${3:-TERM}" "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "${2:-pid $pid} ignored SIG${3:-TERM} for 10 s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || rc=$?
	return $rc
}

# ---- the kernel ----

# The nbd driver is loaded (the harness did `modprobe nbd nbds_max=16`).
need_kernel_nbd() {
	[ -d /sys/module/nbd ] || fail "the kernel has no nbd driver (/sys/module/nbd)"
	need_file /dev/nbd0 "the first nbd device"
}

# Kernel messages since this test began (the harness marks the start;
# without the mark, all of them).
test_dmesg() {
	local mark="nbdd-vm: begin $VM_TEST_NAME"
	# Not grep -q: it would stop reading at the match, dmesg would die of
	# SIGPIPE on a long log, and pipefail would take the whole log instead.
	if dmesg | grep -F "$mark" >/dev/null; then
		dmesg | sed -n "/$mark\$/,\$p"
	else
		dmesg
	fi
}

# Fail if the kernel logged I/O errors on an nbd device, nbd connection
# trouble, filesystem errors or a kernel warning since the test began.
# EXTRA_ERE adds patterns; a test that provokes errors on purpose checks
# its own expectations instead.
check_dmesg_clean() { # [extra-ERE]
	local bad='I/O error, dev nbd|Buffer I/O error on dev nbd|nbd[0-9]+: .*(fail|[Ee]rror|timed out|Dead conn|Unexpected|Double reply|invalid)|EXT4-fs error|BUG:|WARNING:|Oops|Call Trace|blocked for more than'
	local hits
	hits=$(test_dmesg | grep -E "$bad${1:+|$1}" || true)
	[ -z "$hits" ] || fail "kernel log has errors:
$hits"
}

# ---- peer tools: nbdkit + nbd-client (the baseline nbdd mirrors) ----

# Serve nbdkit's memory plugin on a Unix socket; its path goes to NBDKIT_SOCK.
start_nbdkit_memory() { # size
	need nbdkit
	NBDKIT_SOCK=$TMPDIR/nbdkit.sock
	spawn nbdkit nbdkit --foreground --unix "$NBDKIT_SOCK" memory "$1"
	wait_until 20 "nbdkit's socket" test -S "$NBDKIT_SOCK"
}

# Connect DEV to a Unix socket with nbd-client (netlink mode); disconnected
# at exit if the test did not do it.
nbd_client_attach() { # socket /dev/nbdX
	need nbd-client
	nbd-client -unix "$1" "$2" -b 4096
	on_exit _lib_nbd_client_detach "$2"
	wait_for_dev "$2"
}

_lib_nbd_client_detach() {
	_lib_dev_gone "$1" || nbd-client -d "$1"
}

nbd_client_detach() { # /dev/nbdX
	nbd-client -d "$1"
	wait_for_disconnect "$1"
}

# ---- nbdd (CLI: nbdd --control SOCK [...]; nbdctl [--control SOCK] ...) ----

# Start the daemon in the foreground on a private control socket (in
# NBDD_CONTROL); its pid is NBDD_PID, its log $TMPDIR/nbdd.log (a
# restarted one appends). SIGINT stops it at exit: it detaches everything.
start_nbdd() { # [extra nbdd arguments]
	need_file "$NBDD_BIN" "the daemon: make"
	NBDD_CONTROL=$TMPDIR/nbdd.sock
	SPAWN_STOP_SIGNAL=INT spawn nbdd "$NBDD_BIN" --control "$NBDD_CONTROL" "$@"
	NBDD_PID=$SPAWNED_PID
	wait_until 20 "nbdd's control socket" _lib_nbdd_up
}

_lib_nbdd_up() {
	kill -0 "$NBDD_PID" 2>/dev/null || fail "nbdd exited at start: $(tail -n 20 "$TMPDIR/nbdd.log")"
	[ -S "$NBDD_CONTROL" ]
}

# Stop the daemon (SIGINT: detach everything; stop_nbdd TERM: leave the
# devices to the next one) and fail unless it exits cleanly within 10 s.
stop_nbdd() { # [signal]
	local rc=0
	stop_pid "$NBDD_PID" nbdd "${1:-INT}" || rc=$?
	[ $rc -eq 0 ] || fail "nbdd exited with status $rc; its log:
$(tail -n 20 "$TMPDIR/nbdd.log")"
}

nbdctl() {
	need_file "$NBDCTL_BIN" "the CLI: make"
	"$NBDCTL_BIN" --control "$NBDD_CONTROL" "$@"
}

# Attach SPEC through the daemon; the device goes to NBD_DEV, is waited
# for, and is detached at exit if the test did not do it.
nbdd_attach() { # spec [/dev/nbdX]
	NBD_DEV=$(nbdctl attach "$@")
	case $NBD_DEV in
	/dev/nbd[0-9]*) ;;
	*) fail "nbdctl attach $* printed '$NBD_DEV', not a device" ;;
	esac
	on_exit _lib_nbdd_detach "$NBD_DEV"
	wait_for_dev "$NBD_DEV"
	log "nbdctl attach $*: $NBD_DEV"
}

_lib_nbdd_detach() {
	_lib_dev_gone "$1" || nbdctl detach "$1"
}

nbdd_detach() { # /dev/nbdX
	nbdctl detach "$1"
	wait_for_disconnect "$1"
	log "nbdctl detach $1: done"
}

# ---- workloads ----

# Mount DEV on a fresh directory (in MNT); unmounted at exit.
mount_dev() { # /dev/nbdX
	MNT=$(mktemp -d "$TMPDIR/mnt.XXXX")
	mount "$1" "$MNT"
	on_exit _lib_umount "$MNT"
}

_lib_umount() { ! mountpoint -q "$1" || umount "$1"; }

# Verified random writes in DIR as back-to-back 5 s fio rounds (each
# checked as it goes, verify_backlog, and at its end) until
# fio_rounds_stop NAME; its pid is FIO_PID. Any fio error is kept.
fio_rounds_start() { # dir name
	local dir=$1 name=$2
	need fio
	rm -f "$TMPDIR/$name.stop" "$TMPDIR/$name.errors"
	(
		n=0
		while [ ! -e "$TMPDIR/$name.stop" ]; do
			n=$((n + 1))
			fio --name="$name" --directory="$dir" --ioengine=libaio --direct=1 \
				--rw=randwrite --bs=4k --iodepth=8 --numjobs=2 --size=24M \
				--time_based --runtime=5 --verify=crc32c --verify_backlog=64 \
				--verify_fatal=1 --do_verify=1 --group_reporting \
				--output="$TMPDIR/$name.$n" >/dev/null 2>&1 ||
				echo "round $n: fio exited with $?" >>"$TMPDIR/$name.errors"
			grep -q 'err= 0' "$TMPDIR/$name.$n" ||
				echo "round $n: $(cat "$TMPDIR/$name.$n")" >>"$TMPDIR/$name.errors"
		done
		echo "$n" >"$TMPDIR/$name.rounds"
	) &
	FIO_PID=$!
	on_exit sh -c "touch $TMPDIR/$name.stop; kill $FIO_PID 2>/dev/null || true"
}

# Let the running round finish; fail on any fio error or fewer than MIN
# rounds. FIO_ROUNDS: how many ran.
fio_rounds_stop() { # name pid [min]
	local name=$1 pid=$2
	touch "$TMPDIR/$name.stop"
	wait_until 120 "fio ($name) to finish" sh -c "! kill -0 $pid 2>/dev/null"
	wait "$pid" 2>/dev/null || true
	[ ! -s "$TMPDIR/$name.errors" ] || fail "fio ($name): $(cat "$TMPDIR/$name.errors")"
	FIO_ROUNDS=$(cat "$TMPDIR/$name.rounds")
	[ "$FIO_ROUNDS" -ge "${3:-1}" ] || fail "fio ($name): only $FIO_ROUNDS rounds ran"
	log "fio ($name): $FIO_ROUNDS verified rounds, no error; last: $(grep -m1 'write:' "$TMPDIR/$name.$FIO_ROUNDS" | sed 's/^ *//')"
}

# The filesystem round trip every attach test does: mkfs.ext4, mount, write
# MB of random data, unmount (so the read back comes from the device, not
# the page cache), mount again, compare checksums, unmount, e2fsck -fn.
fs_roundtrip() { # /dev/nbdX [MB]
	local dev=$1 mb=${2:-16} sum
	need mkfs.ext4 e2fsck sha256sum
	log "mkfs.ext4 $dev"
	mkfs.ext4 -q -F "$dev"
	mount_dev "$dev"
	log "write ${mb} MiB to $MNT/data"
	head -c "$((mb << 20))" /dev/urandom >"$TMPDIR/data"
	cp "$TMPDIR/data" "$MNT/data"
	sum=$(sha256sum <"$TMPDIR/data")
	umount "$MNT"
	blockdev --flushbufs "$dev"
	mount "$dev" "$MNT"
	[ "$(sha256sum <"$MNT/data")" = "$sum" ] || fail "data read back from $dev differs"
	log "read back from the device: checksum matches"
	umount "$MNT"
	e2fsck -fn "$dev" >"$TMPDIR/e2fsck.log" 2>&1 ||
		fail "e2fsck -fn $dev: $(cat "$TMPDIR/e2fsck.log")"
	log "e2fsck -fn $dev: clean"
	rm -f "$TMPDIR/data"
}
