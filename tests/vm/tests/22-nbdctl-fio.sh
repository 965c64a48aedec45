#!/usr/bin/env bash
# vm-timeout: 400
#
# Several connections under load: a memory backend attached with
# --connections 4 (4 sockets, 4 hardware queues) and a file backend with
# 2, each driven by fio randrw with crc32c verification. fio must find no
# mismatch, and nbdctl status must show 4 (2) live connections, traffic
# and not a single error. The daemon polls its sockets here
# (--poll-max-us; the other tests run without), so that path sees the
# kernel's load and verification too.
. "$NBDD_TOP/tests/vm/lib.sh"

need_kernel_nbd
# Registered first, so it runs last: the daemon's whole log is kept.
on_exit sh -c 'cp "$TMPDIR/nbdd.log" "$VM_ARTIFACTS/" 2>/dev/null || true'
need jq fio
start_nbdd --poll-max-us 50

run_fio() { # dev name
	fio --name="$2" --filename="$1" --direct=1 --ioengine=libaio \
		--rw=randrw --bs=4k --iodepth=16 --numjobs=4 --size=8M \
		--offset_increment=8M --verify=crc32c --verify_fatal=1 \
		--do_verify=1 --group_reporting --output="$TMPDIR/$2.fio" ||
		fail "fio on $1: $(tail -n 30 "$TMPDIR/$2.fio")"
	grep -q 'err= 0' "$TMPDIR/$2.fio" || fail "fio reported errors: $(cat "$TMPDIR/$2.fio")"
}

check_status() { # dev conns
	local s
	s=$(nbdctl --json status "$1")
	[ "$(echo "$s" | jq .mapping.connections)" = "$2" ] || fail "$1: connections: $s"
	[ "$(echo "$s" | jq .mapping.live)" = "$2" ] || fail "$1: live: $s"
	[ "$(echo "$s" | jq '[.mapping.totals.ops[].errors] | add')" = 0 ] || fail "$1: errors: $s"
	[ "$(echo "$s" | jq .mapping.totals.ops.write.requests)" -gt 1000 ] || fail "$1: writes: $s"
	[ "$(echo "$s" | jq .mapping.totals.ops.read.requests)" -gt 1000 ] || fail "$1: reads: $s"
	[ "$(echo "$s" | jq .mapping.totals.in_flight)" = 0 ] || fail "$1: in flight when idle: $s"
	log "$1: $(echo "$s" | jq -c '[.mapping.connection_stats[] | .ops.read.requests + .ops.write.requests]') requests per connection"
}

# The kernel reads each socket in a work item on a reclaim workqueue;
# with no idle kworker, its rescuer may run them one after another and
# leave a socket unread (include/nbdd/kernel.h). A one-socket mapping
# first leaves a receive kworker behind, as any real system has.
nbdd_attach memory:size=1M
nbdd_detach "$NBD_DEV"

nbdd_attach memory:size=64M --connections 4
MEM=$NBD_DEV
# one hardware queue per socket, as far as there are CPUs for them
queues=$(ls "/sys/block/${MEM#/dev/}/mq" | wc -l)
[ "$queues" = "$(( $(nproc) < 4 ? $(nproc) : 4 ))" ] || fail "$MEM has $queues hardware queues"
# The mapping's own process serves it, and polls as the daemon was told.
mp=$(pgrep -f -- '--serve-mapping' | head -n 1)
[ -n "$mp" ] || fail "no mapping process for $MEM"
args=$(tr '\0' '\n' < "/proc/$mp/cmdline")
if [ "$(echo "$args" | sed -n 2p)" != --serve-mapping ] ||
	[ "$(echo "$args" | tail -n 1)" != 50 ]; then
	fail "mapping process $mp was not given the daemon's --poll-max-us: $(tr '\0' ' ' < "/proc/$mp/cmdline")"
fi
run_fio "$MEM" mem
check_status "$MEM" 4
nbdctl status "$MEM"

IMG=$TMPDIR/disk.img
truncate -s 64M "$IMG"
nbdd_attach "file:path=$IMG" --connections 2
FILE=$NBD_DEV
run_fio "$FILE" file
check_status "$FILE" 2

udevadm settle --timeout=30 || true
nbdd_detach "$MEM"
nbdd_detach "$FILE"
stop_nbdd
check_dmesg_clean
