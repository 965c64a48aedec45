#!/usr/bin/env bash
# vm-timeout: 300
#
# `make demo`: nbdd turns a 1 GiB in-memory backend into /dev/nbdX, which
# is then used like any disk: mkfs, mount, write, read back, detach.
#
# Needs root (modprobe, mount) and the kernel's nbd driver. When the running
# kernel has none (containers, some CI machines) the same script runs inside
# a small VM with Debian's kernel (tests/vm/run-vm), and says so.
#
# Environment: B (build directory, default build), NBDD_BIN, NBDCTL_BIN.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
NBDD_BIN=${NBDD_BIN:-$B/nbdd}
NBDCTL_BIN=${NBDCTL_BIN:-$B/nbdctl}
SPEC=memory:size=1G

# ---- narration ----

if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$PLAIN"; }
say() { printf '    %s\n' "$*"; }
# Show a command as a person would type it, then run it.
show() {
	printf '    # %s\n' "$*"
	"$@"
}
die() {
	printf '\ndemo: %s\n' "$*" >&2
	exit 1
}

# ---- state, undone at exit in reverse order if a step fails ----

WORK='' DAEMON_PID='' DEV='' MNT=''

cleanup() {
	local rc=$?
	set +e
	[ -n "$MNT" ] && mountpoint -q "$MNT" && umount "$MNT"
	[ -n "$DEV" ] && [ -e "/sys/block/${DEV#/dev/}/pid" ] && nbdctl detach "$DEV" >/dev/null 2>&1
	[ -n "$DAEMON_PID" ] && stop_daemon >/dev/null 2>&1
	[ -n "$WORK" ] && rm -rf "$WORK"
	[ $rc -eq 0 ] || echo "demo: failed (status $rc)" >&2
	exit $rc
}

nbdctl() { "$NBDCTL_BIN" --control "$WORK/control.sock" "$@"; }

# Poll COMMAND every 0.1 s for at most SECONDS.
wait_for() { # seconds command...
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

daemon_ready() {
	kill -0 "$DAEMON_PID" 2>/dev/null ||
		die "nbdd exited at start; its log:
$(cat "$WORK/nbdd.log")"
	[ -S "$WORK/control.sock" ]
}

dev_connected() { [ -e "/sys/block/${DEV#/dev/}/pid" ]; }
dev_gone() { ! dev_connected; }
pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# SIGTERM and wait (10 s at most) for a clean exit.
stop_daemon() {
	local pid=$DAEMON_PID rc=0
	DAEMON_PID=''
	kill -TERM "$pid" 2>/dev/null || true
	wait_for 10 pid_gone "$pid" || {
		kill -KILL "$pid" 2>/dev/null
		die "nbdd did not stop within 10 s of SIGTERM"
	}
	wait "$pid" || rc=$?
	[ $rc -eq 0 ] || die "nbdd exited with status $rc; its log:
$(cat "$WORK/nbdd.log")"
}

# ---- where to run ----

kernel_has_nbd() {
	[ -d /sys/module/nbd ] || modprobe nbd 2>/dev/null
}

run_in_vm() {
	step "This machine's kernel has no NBD driver"
	say "(no /sys/module/nbd, and modprobe nbd fails: a container, or a kernel"
	say "without modules). The demo runs inside a small VM instead: Debian's own"
	say "kernel under qemu, with this machine's files shared read-only, so the"
	say "same nbdd binaries run there. Booting takes about 10 s of emulation"
	say "on an idle machine, the whole demo about 30 s."
	exec "$TOP/tests/vm/run-vm" "$TOP/scripts/demo.sh"
}

preflight() {
	[ "$(id -u)" = 0 ] || die "run as root: it loads the nbd module and mounts a filesystem"
	[ -x "$NBDD_BIN" ] || die "no daemon at $NBDD_BIN: build it first (make)"
	[ -x "$NBDCTL_BIN" ] || die "no nbdctl at $NBDCTL_BIN: build it first (make)"
	command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 missing (scripts/deps.sh install)"
}

# ---- the demo ----

start_daemon() {
	step "Start the daemon"
	say "nbdd keeps the backends and hands the kernel one end of a socketpair"
	say "per device. It listens for nbdctl on a control socket; this demo uses"
	say "a private one (given to every nbdctl below with --control) so it"
	say "cannot disturb an nbdd already running here."
	printf '    # %s --control %s &\n' "$NBDD_BIN" "$WORK/control.sock"
	"$NBDD_BIN" --control "$WORK/control.sock" >"$WORK/nbdd.log" 2>&1 &
	DAEMON_PID=$!
	wait_for 10 daemon_ready || die "nbdd's control socket did not appear within 10 s"
	say "nbdd is running (pid $DAEMON_PID)."
}

attach() {
	step "Attach a 1 GiB in-memory backend"
	say "The kernel's nbd driver gets a new device; only the blocks written"
	say "will use memory."
	printf '    # nbdctl attach %s\n' "$SPEC"
	DEV=$(nbdctl attach "$SPEC")
	printf '    %s\n' "$DEV"
	case $DEV in /dev/nbd[0-9]*) ;; *) die "nbdctl attach printed '$DEV', not a device" ;; esac
	wait_for 10 dev_connected || die "$DEV did not come up within 10 s"
	say "$DEV is an ordinary block device of $(($(cat "/sys/block/${DEV#/dev/}/size") / 2048)) MiB:"
	printf '    # nbdctl list\n'
	nbdctl list | sed 's/^/    /'
}

use_disk() {
	local sum
	MNT=$WORK/mnt
	mkdir -p "$MNT"
	step "Make a filesystem on it and mount it"
	show mkfs.ext4 -q "$DEV"
	show mount "$DEV" "$MNT"
	df -h "$MNT" | sed 's/^/    /'

	step "Write a file, then read it back from the device"
	show cp "$0" "$MNT/demo.sh"
	show dd if=/dev/urandom of="$MNT/random.bin" bs=1M count=32 status=none
	sum=$(cat "$MNT/demo.sh" "$MNT/random.bin" | sha256sum)
	say "checksum written: ${sum%% *}"
	say "Unmount and mount again, so what is read comes from nbdd, not the page cache:"
	show umount "$MNT"
	show mount "$DEV" "$MNT"
	[ "$(cat "$MNT/demo.sh" "$MNT/random.bin" | sha256sum)" = "$sum" ] ||
		die "the data read back differs from what was written"
	say "checksum read:    ${sum%% *}  (the same)"
	show umount "$MNT"
}

detach() {
	step "Detach the device"
	show nbdctl detach "$DEV"
	wait_for 10 dev_gone || die "$DEV is still connected 10 s after detach"
	say "$DEV is free again; the backend's memory is released."
	DEV=''
}

main() {
	# VM_TEST_NAME: already inside the VM (the harness sets it).
	if [ -z "${VM_TEST_NAME:-}" ] && ! kernel_has_nbd; then
		run_in_vm
	fi
	preflight
	kernel_has_nbd || die "the nbd driver is not available (modprobe nbd failed)"
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/nbdd-demo.XXXXXX")
	trap cleanup EXIT
	start_daemon
	attach
	use_disk
	detach
	step "Stop the daemon"
	printf '    # kill -TERM %s\n' "$DAEMON_PID"
	stop_daemon
	say "nbdd exited cleanly."
	step "Done: nbdd served a block device that ext4 used like any disk."
}

main "$@"
