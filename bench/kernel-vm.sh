#!/usr/bin/env bash
# vm-timeout: 2400
#
# Kernel path of the benchmark; runs as root INSIDE the VM:
#   tests/vm/run-vm --mem 4G bench/kernel-vm.sh [RUNTIME [REPEAT [DEVICES [MAPPINGS [POLL]]]]]
# (bench/run does this). DEVICES, comma-separated, from:
#   nbdd      nbdctl attach memory:size=1G (the daemon's default sockets)
#   nbdkit    nbdkit memory 1G + nbd-client -unix (netlink), as many sockets
#   qemu-nbd  qemu-nbd -c on a tmpfs file (ioctl interface, one connection)
#   brd       the kernel's ramdisk: the ceiling
#   loop      a loop device on a tmpfs file
# fio (libaio, direct) runs every workload on every device in turn, order
# rotating, so the emulator's speed falls on all alike. Each result is one
# line "BENCH-JSON {...}" on stdout; everything else is for a person.
# Then nbdd's RSS with MAPPINGS (64) attached mappings; 0 skips it.
# POLL: nbdd --poll-max-us (default 0: off, as nbdd).
# (Arguments, not environment: run-vm passes no environment to the guest.)
. "$NBDD_TOP/tests/vm/lib.sh"

runtime=${1:-5}
repeat=${2:-1}
devices=${3:-nbdd,nbdkit,qemu-nbd,brd,loop}
mappings=${4:-64}
poll=${5:-0}
size_mb=1024
ws=128M # the working set each fio run covers, prefilled once

need_kernel_nbd
need fio nbd-client python3 jq

# nbdd's memory: the daemon and its mapping processes, as PSS (their
# shared libraries counted once between them, not once each).
nbdd_pss() {
	local pid kb=0 v
	for pid in "$NBDD_PID" $(pgrep -P "$NBDD_PID"); do
		v=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null) || continue
		kb=$((kb + ${v:-0}))
	done
	echo "$kb"
}


want() { [[ ",$devices," == *",$1,"* ]]; }
# Print a command so it can be repeated, then run it.
run() {
	printf '$' >&2
	printf ' %q' "$@" >&2
	printf '\n' >&2
	"$@"
}
json() { python3 "$NBDD_TOP/bench/benchlib.py" "$@"; }

# Server CPU in seconds: utime+stime(+children) of the process, all threads.
cpu_s() { # pid
	local f
	# (no process substitution: the guest has no /dev/fd)
	# shellcheck disable=SC2207
	f=($(sed 's/^.*) //' "/proc/$1/stat")) || { echo 0; return; }
	echo "scale=3; (${f[11]} + ${f[12]} + ${f[13]} + ${f[14]}) / $(getconf CLK_TCK)" | bc
}

free_nbd() {
	local d
	for d in /sys/block/nbd*; do
		[ -e "$d/pid" ] && continue
		[[ " ${used_devs[*]} " == *" /dev/${d##*/} "* ]] && continue
		echo "/dev/${d##*/}"
		return
	done
	fail "no free nbd device"
}

cpus=$(nproc)
# nbd-client gets as many sockets as nbdctl gave nbdd's mapping (read back
# from `nbdctl list`); 1 when nbdd is not measured (nbdctl's default).
conns=1
declare -A DEV PID
used_devs=()
log "kernel $(uname -r), $cpus vCPUs (TCG), fio $(fio --version)"

if want nbdd; then
	need_file "$NBDD_BIN" "the daemon: make"
	start_nbdd --poll-max-us "$poll"
	log "\$ $NBDD_BIN --control $NBDD_CONTROL --poll-max-us $poll"
	log "\$ $NBDCTL_BIN --control $NBDD_CONTROL attach memory:size=${size_mb}M"
	nbdd_attach "memory:size=${size_mb}M"
	# The mapping's own process serves it (and spends the CPU).
	DEV[nbdd]=$NBD_DEV PID[nbdd]=$(nbdctl --json status "$NBD_DEV" | jq -r .mapping.pid)
	used_devs+=("$NBD_DEV")
	echo "BENCH-JSON $(json env nbdd_rss_1_mapping_kb="$(nbdd_pss)")"
	conns=$(nbdctl list | awk -v d="$NBD_DEV" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "CONNS") c = i }
		$1 == d && c { print $c }')
	[[ $conns =~ ^[0-9]+$ ]] || conns=1
	log "nbdd's mapping has $conns socket(s)"
fi
echo "BENCH-JSON $(json env kernel="$(uname -r)" cpus="$cpus" connections="$conns" \
	runtime="$runtime" repeat="$repeat" working_set="$ws")"
if want nbdkit; then
	need nbdkit
	sock=$TMPDIR/nbdkit.sock
	log "\$ nbdkit --foreground --unix $sock memory ${size_mb}M"
	spawn nbdkit nbdkit --foreground --unix "$sock" memory "${size_mb}M"
	PID[nbdkit]=$SPAWNED_PID
	wait_until 20 "nbdkit's socket" test -S "$sock"
	dev=$(free_nbd)
	# The same number of sockets as nbdd's mapping.
	run nbd-client -unix "$sock" "$dev" -b 4096 -C "$conns"
	on_exit _lib_nbd_client_detach "$dev"
	wait_for_dev "$dev"
	DEV[nbdkit]=$dev
	used_devs+=("$dev")
fi
if want qemu-nbd; then
	need qemu-nbd
	truncate -s "${size_mb}M" "$TMPDIR/qemu.img"
	dev=$(free_nbd)
	# -c serves in the foreground through the ioctl interface (NBD_DO_IT),
	# one socket; the file is on tmpfs, so the page cache is the memory.
	log "\$ qemu-nbd -c $dev -f raw --cache=writeback --aio=threads $TMPDIR/qemu.img"
	spawn qemu-nbd qemu-nbd -c "$dev" -f raw --cache=writeback --aio=threads "$TMPDIR/qemu.img"
	on_exit _lib_nbd_client_detach "$dev"
	wait_for_dev "$dev"
	# -c daemonizes (unless -v): the server is whoever sits in NBD_DO_IT.
	PID[qemu-nbd]=$(awk '/^Tgid/ {print $2}' "/proc/$(cat "/sys/block/${dev#/dev/}/pid")/status")
	DEV[qemu-nbd]=$dev
	used_devs+=("$dev")
fi
if want brd; then
	run modprobe brd rd_nr=1 rd_size=$((size_mb * 1024))
	on_exit rmmod brd
	wait_until 20 /dev/ram0 test -b /dev/ram0
	DEV[brd]=/dev/ram0
fi
if want loop; then
	truncate -s "${size_mb}M" "$TMPDIR/loop.img"
	[ -e /dev/loop-control ] || run modprobe loop
	dev=$(run losetup -f --show "$TMPDIR/loop.img")
	on_exit losetup -d "$dev"
	DEV[loop]=$dev
fi

names=()
for n in nbdd nbdkit qemu-nbd brd loop; do
	[ -n "${DEV[$n]:-}" ] && names+=("$n")
done
[ ${#names[@]} -gt 0 ] || fail "no device to measure"
udevadm settle --timeout=30 || true

for n in "${names[@]}"; do
	log "prefill $n (${DEV[$n]}): $ws"
	run fio --name=prefill --ioengine=libaio --direct=1 --filename="${DEV[$n]}" \
		--rw=write --bs=1m --iodepth=8 --size=$ws --output-format=json \
		--output="$TMPDIR/prefill.json" >/dev/null
done

# workload rw bs qd
workloads=(
	"4k-randread randread 4k 1"
	"4k-randread randread 4k 32"
	"4k-randwrite randwrite 4k 1"
	"4k-randwrite randwrite 4k 32"
	"1M-read read 1m 4"
	"1M-write write 1m 4"
)
cell=0
for ((rep = 0; rep < repeat; rep++)); do
	for w in "${workloads[@]}"; do
		read -r wl rw bs qd <<<"$w"
		k=$(((cell + rep) % ${#names[@]}))
		order=("${names[@]:k}" "${names[@]:0:k}")
		cell=$((cell + 1))
		log "-- $wl QD$qd (repeat $((rep + 1))/$repeat)"
		for n in "${order[@]}"; do
			out=$TMPDIR/$n-$wl-$qd-$rep.json
			extra=()
			[[ $rw == rand* ]] && extra=(--norandommap --randrepeat=0)
			c0=0
			[ -n "${PID[$n]:-}" ] && c0=$(cpu_s "${PID[$n]}")
			run fio --name="$wl" --ioengine=libaio --direct=1 --filename="${DEV[$n]}" \
				--rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs=1 \
				--time_based --runtime="$runtime" --size=$ws "${extra[@]}" \
				--output-format=json --output="$out" >/dev/null
			c1=0
			[ -n "${PID[$n]:-}" ] && c1=$(cpu_s "${PID[$n]}")
			srv=$(echo "$c1 - $c0" | bc)
			[ -n "${PID[$n]:-}" ] || srv=
			line=$(json fio "$out" "$rw" server="$n" device="${DEV[$n]}" workload="$wl" \
				qd="$qd" conns=1 repeat="$rep" srv_cpu_s="$srv")
			echo "BENCH-JSON $line"
			python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("  -> %-8s %10.0f IOPS %8.0f MB/s  lat %.1f/%.1f us  srv %s us/IO" % (d["server"], d["iops"], d["MBps"], d["lat_mean_us"], d["lat_p99_us"], "%.2f" % d["srv_cpu_us_per_io"] if d.get("srv_cpu_us_per_io") is not None else "-"))' "$line"
		done
	done
done

# ---- nbdd's RSS with many mappings ----
if want nbdd && [ "$mappings" -gt 0 ]; then
	nbdd_detach "${DEV[nbdd]}"
	sleep 1
	rss0=$(nbdd_pss)
	log "nbdd RSS with no mapping: $rss0 KiB; attaching $mappings × memory:size=64M"
	attached=()
	t0=$SECONDS
	for ((i = 0; i < mappings; i++)); do
		dev=$(nbdctl attach memory:size=64M) || { log "attach $((i + 1)) failed"; break; }
		attached+=("$dev")
		on_exit _lib_nbdd_detach "$dev"
	done
	for dev in "${attached[@]}"; do wait_for_dev "$dev" 60; done
	sleep 1
	rss=$(nbdd_pss)
	thr=$(( $(ls -d /proc/"$NBDD_PID"/task/* | wc -l) + $(for p in $(pgrep -P "$NBDD_PID"); do ls -d /proc/"$p"/task/*; done | wc -l) ))
	log "nbdd PSS (daemon + mapping processes) with ${#attached[@]} mappings: $rss KiB, $thr threads ($((SECONDS - t0)) s to attach)"
	echo "BENCH-JSON $(json env kind=mappings mappings="${#attached[@]}" rss_kb="$rss" \
		rss_none_kb="$rss0" threads="$thr" attach_seconds=$((SECONDS - t0)))"
	for dev in "${attached[@]}"; do
		nbdctl detach "$dev" >/dev/null || log "nbdctl detach $dev failed"
	done
	for dev in "${attached[@]}"; do wait_for_disconnect "$dev" 60; done
fi
check_dmesg_clean
