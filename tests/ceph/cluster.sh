#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A real one-node Ceph cluster for the tests, as plain processes (no
# systemd): one monitor, one manager (without it PGs never report clean),
# one BlueStore OSD on a sparse file; cephx on, 127.0.0.1 only, every byte
# of state under DIR.
#
#   cluster.sh start DIR [OWNER_PID]   start it; print the ceph.conf path
#   cluster.sh stop DIR                kill its daemons, remove DIR
#   cluster.sh env DIR                 print CEPH_CONF=, CEPH_KEYRING=, ...
#   cluster.sh restart-osd DIR         stop the OSD, start it, wait for clean PGs
#
# CEPH_OSD_BLOCK=/dev/X puts BlueStore on that block device instead of
# DIR/osd-block, for a DIR whose filesystem has no O_DIRECT (tmpfs before
# Linux 6.6, as in tests/vm).
#
# start waits (bounded) until every PG is active+clean and the pool
# $CEPH_POOL (default "rbd") exists and is initialised for RBD. A daemon
# that fails makes start fail with the tail of that daemon's log: a test
# that needs Ceph never skips. With OWNER_PID, a watcher stops the cluster
# when that process ends, so a killed test leaves no daemons behind.
set -euo pipefail

POOL=${CEPH_POOL:-rbd}
LIMIT=${CEPH_START_LIMIT:-120} # seconds for the whole start

die() {
	echo "ceph cluster: $*" >&2
	exit 1
}

# The tail of a daemon's log, for the reason it failed.
log_tail() { # name
	local f=$D/log/$1.log
	[ -s "$f" ] || { echo "    (no log at $f)" >&2; return 0; }
	echo "---- last lines of $f" >&2
	tail -n 25 "$f" | sed 's/^/    | /' >&2
}

ceph_cli() { # args... — the admin CLI, never waiting forever
	timeout 30 ceph -c "$D/ceph.conf" --connect-timeout 20 "$@"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_conf() { # port
	cat >"$D/ceph.conf" <<EOF
[global]
fsid = $(cat /proc/sys/kernel/random/uuid)
mon host = [v2:127.0.0.1:$1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $D/\$name.keyring
run dir = $D/run
# \$pid: many clients of one name (client.admin) run at once.
admin socket = $D/run/\$name.\$pid.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
crash dir = $D/crash
# One OSD: pools of one replica, placed on any OSD, few PGs, no autoscaler
# (it would split or merge PGs while a test runs).
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool delete = true
# The host's disk filling up is not this cluster's health.
mon data avail warn = 1
mon data avail crit = 0

[mon]
mon data = $D/mon
mon cluster log file = $D/log/cluster.log

[mgr]
mgr data = $D/mgr

[osd]
osd data = $D/osd
osd objectstore = bluestore
bluestore block path = ${CEPH_OSD_BLOCK:-$D/osd-block}
bluestore block create = $([ -n "${CEPH_OSD_BLOCK:-}" ] && echo false || echo true)
bluestore block size = 10737418240
bluestore fsck on mkfs = false
bluestore fsck on mount = false
# Small: a test machine, not a storage server.
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = 67108864
osd op num shards = 1
osd op num threads per shard = 2
EOF
}

# Wait (bounded by the start deadline) until "$@" succeeds, failing with
# the log of daemon $1 if it died.
wait_for() { # daemon-name what cmd...
	local name=$1 what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		daemon_alive "$name" || { log_tail "$name"; die "$name died while waiting for $what"; }
		[ $SECONDS -lt $DEADLINE ] || { log_tail "$name"; die "no $what within ${LIMIT}s"; }
		sleep 0.5
	done
}

daemon_alive() { # name
	local pid
	pid=$(cat "$D/run/$1.daemon-pid" 2>/dev/null) || return 1
	kill -0 "$pid" 2>/dev/null
}

# Run a daemon in the foreground (-f: no fork, so we know its pid), in the
# background of this script; it outlives us until `stop`.
run_daemon() { # name binary args...
	local name=$1
	shift
	"$@" -c "$D/ceph.conf" -f </dev/null >>"$D/log/$name.stdout" 2>&1 &
	echo $! >"$D/run/$name.daemon-pid"
}

# Every key, with its caps, goes into the monitor's keyring before its
# mkfs, which seeds the auth database from it: no `ceph auth` round trips
# (each `ceph` command is a Python start, slow under emulation).
make_keys() {
	key mon. "$D/mon..keyring" --cap mon 'allow *'
	key client.admin "$D/client.admin.keyring" --cap mon 'allow *' \
		--cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *'
	key mgr.x "$D/mgr.x.keyring" --cap mon 'allow profile mgr' \
		--cap osd 'allow *' --cap mds 'allow *'
	key osd.0 "$D/osd.0.keyring" --cap mon 'allow profile osd' \
		--cap osd 'allow *' --cap mgr 'allow profile osd'
	for k in client.admin mgr.x osd.0; do
		ceph-authtool "$D/mon..keyring" --import-keyring "$D/$k.keyring" >/dev/null
	done
}

key() { # entity file caps...
	local name=$1 file=$2
	shift 2
	ceph-authtool --create-keyring "$file" --gen-key -n "$name" "$@" >/dev/null
}

start_mon() {
	make_keys
	monmaptool --create --fsid "$(sed -n 's/^fsid = //p' "$D/ceph.conf")" \
		--addv a "[v2:127.0.0.1:$PORT]" "$D/monmap" >/dev/null
	ceph-mon -c "$D/ceph.conf" --mkfs -i a --monmap "$D/monmap" \
		--keyring "$D/mon..keyring" >>"$D/log/mon.a.stdout" 2>&1 ||
		{ log_tail mon.a; die "ceph-mon --mkfs failed"; }
	run_daemon mon.a ceph-mon -i a
}

start_osd() {
	local uuid id
	uuid=$(cat /proc/sys/kernel/random/uuid)
	mkdir -p "$D/osd"
	# The first `ceph` command: it waits for the monitor to answer.
	id=$(ceph_cli osd create "$uuid" 2>"$D/log/ceph-cli.log") ||
		{ log_tail mon.a; die "the monitor did not answer: $(tail -n 3 "$D/log/ceph-cli.log")"; }
	[ "$id" = 0 ] || die "ceph osd create gave id '$id', not 0"
	ceph-osd -c "$D/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" \
		>>"$D/log/osd.0.stdout" 2>&1 ||
		{ log_tail osd.0; die "ceph-osd --mkfs failed (BlueStore on ${CEPH_OSD_BLOCK:-$D/osd-block})"; }
	run_daemon osd.0 ceph-osd -i 0
}

# Every PG active+clean: "9 pgs: 9 active+clean; ...". A PG whose OSD is
# down is not.
all_clean() {
	ceph_cli pg stat | grep -qE '^([0-9]+) pgs: \1 active\+clean;'
}

osd_up() { # count: "1 osds: 1 up (since 5s), 1 in ..."
	ceph_cli osd stat | grep -qE "^[0-9]+ osds: $1 up"
}

mgr_available() {
	ceph_cli mgr stat | grep -q '"available": *true'
}

step() { # what: how long the start has taken so far, to stderr
	echo "ceph cluster: $1 after $((SECONDS - START)) s" >&2
}

start() {
	START=$SECONDS
	[ -n "${D:-}" ] || die "usage: $0 start DIR [OWNER_PID]"
	[ ! -e "$D" ] || [ -z "$(ls -A "$D")" ] || die "$D exists and is not empty"
	for c in ceph ceph-mon ceph-mgr ceph-osd ceph-authtool monmaptool rbd; do
		command -v "$c" >/dev/null ||
			die "needs $c (ceph-mon, ceph-mgr, ceph-osd, ceph-common: scripts/deps.sh)"
	done
	mkdir -p "$D/run" "$D/log" "$D/crash"
	D=$(cd "$D" && pwd)
	DEADLINE=$((SECONDS + LIMIT))
	# A start that fails, however, leaves nothing running.
	STARTING=1
	trap '[ "$STARTING" = 0 ] || stop' EXIT
	PORT=$(free_port)
	write_conf "$PORT"
	start_mon
	mkdir -p "$D/mgr"
	run_daemon mgr.x ceph-mgr -i x
	start_osd
	step "osd.0 made"
	wait_for mgr.x "an available manager" mgr_available
	ceph_cli osd pool create "$POOL" 8 8 >/dev/null 2>&1 ||
		die "cannot create pool $POOL"
	timeout 60 rbd -c "$D/ceph.conf" pool init "$POOL" ||
		die "rbd pool init $POOL failed"
	wait_for osd.0 "PGs active+clean" all_clean
	step "PGs active+clean"
	health=$(ceph_cli health) || true
	[ "$health" = HEALTH_OK ] || echo "ceph cluster: clean, but: $health" >&2
	cat >"$D/env" <<EOF
CEPH_CONF=$D/ceph.conf
CEPH_KEYRING=$D/client.admin.keyring
CEPH_ID=admin
CEPH_POOL=$POOL
CEPH_START_SECONDS=$((SECONDS - START))
EOF
	if [ -n "${OWNER:-}" ]; then
		# setsid: the watcher is not in the caller's process group, so
		# a timeout killing the group still leaves it to clean up.
		setsid "$0" watch "$D" "$OWNER" </dev/null >/dev/null 2>&1 &
		echo $! >"$D/run/watcher.pid"
	fi
	STARTING=0
	echo "$D/ceph.conf"
}

# Stop the OSD as an operator would (SIGTERM, waited for), then start it
# again and wait until every PG is active+clean: clients meanwhile wait.
restart_osd() {
	local pid i
	[ -d "${D:-}" ] || die "usage: $0 restart-osd DIR"
	D=$(cd "$D" && pwd)
	START=$SECONDS
	DEADLINE=$((SECONDS + LIMIT))
	pid=$(cat "$D/run/osd.0.daemon-pid") || die "no osd.0 in $D"
	kill -TERM "$pid" 2>/dev/null || die "osd.0 (pid $pid) is not running"
	for ((i = 0; i < 600; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	! kill -0 "$pid" 2>/dev/null || die "osd.0 did not stop within 60 s"
	# Seen down first, or the old "clean" would end the wait below at once.
	wait_for mon.a "osd.0 marked down" osd_up 0
	step "osd.0 stopped"
	run_daemon osd.0 ceph-osd -i 0
	wait_for osd.0 "osd.0 up again" osd_up 1
	wait_for osd.0 "PGs active+clean" all_clean
	step "osd.0 back, PGs active+clean"
}

stop() {
	local f pid pids=() i alive
	[ -d "${D:-}" ] || return 0
	# The watcher (and its tail) is a process group of its own.
	pid=$(cat "$D/run/watcher.pid" 2>/dev/null) || pid=
	[ -z "$pid" ] || [ "$pid" = $$ ] || kill -TERM -- "-$pid" 2>/dev/null || true
	# Nothing here is worth a clean shutdown: SIGKILL, then wait (bounded)
	# until they are gone so that none writes into what we remove.
	for f in "$D"/run/*.daemon-pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		# Only ours: a pid recycled since is left alone.
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$D/ceph.conf" ||
			continue
		kill -KILL "$pid" 2>/dev/null && pids+=("$pid")
	done
	for ((i = 0; i < 100; i++)); do
		alive=0
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	rm -rf "$D"
}

D=${2:-}
OWNER=${3:-}
case "${1:-}" in
start) start ;;
stop) stop ;;
restart-osd) restart_osd ;;
env) cat "$D/env" ;;
# Internal: wait for OWNER to end, then stop the cluster if still there.
watch) tail --pid="$OWNER" -f /dev/null; stop ;;
*) die "usage: $0 start|stop|restart-osd|env DIR" ;;
esac
