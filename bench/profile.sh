#!/usr/bin/env bash
# Profile one server under one fio workload (network path), the evidence
# docs/performance.md quotes for what bounds a figure.
#
#   bench/profile.sh [SERVER [WORKLOAD [QD [CONNS [SECONDS]]]]]
#     SERVER   nbdd (default) | nbdkit
#     WORKLOAD randread (default) | randwrite | read | write  (4k; 1m if read/write)
#
# perf record -e cpu-clock -g (no hardware counters in these VMs) on the server's pid while fio runs, then the flat profile
# (self time) and the caller view of the top symbols, in
# bench/results/profile-SERVER-WORKLOAD-qdQD-cCONNS/. Needs linux-perf
# (scripts/deps.sh ensure bench) and B=build with nbdd built (-O2 -g).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-build}
[[ $B == /* ]] || B=$top/$B
server=${1:-nbdd} rw=${2:-randread} qd=${3:-32} conns=${4:-1} secs=${5:-5}
bs=4k
[[ $rw == rand* ]] || bs=1m
command -v perf >/dev/null || "$top/scripts/deps.sh" ensure bench
out=$top/bench/results/profile-$server-$rw-qd$qd-c$conns
mkdir -p "$out"
work=$(mktemp -d /tmp/nbdd-profile.XXXX)
sock=$work/s.sock
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

run() {
	show "$@"
	"$@"
}

show() {
	printf '$' | tee -a "$out/commands.sh"
	printf ' %q' "$@" | tee -a "$out/commands.sh"
	echo | tee -a "$out/commands.sh"
}
case $server in
nbdd) argv=("$B/nbdd" --control "$work/c.sock" --listen "unix:$sock" --export bench=memory:size=1G) ;;
nbdkit) argv=(nbdkit --foreground --unix "$sock" memory size=1G) ;;
*) echo "usage: $0 [nbdd|nbdkit] [randread|randwrite|read|write] [QD] [CONNS] [SECONDS]" >&2; exit 2 ;;
esac
show "${argv[@]}"
# Started directly (not through a function): $! must be the server itself.
"${argv[@]}" >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "server did not start" >&2; cat "$out/server.log" >&2; exit 1; }
uri="nbd+unix:///bench?socket=$sock"
run fio --name=prefill --ioengine=nbd --uri="$uri" --rw=write --bs=1m --iodepth=8 --size=512m \
	--output="$work/prefill.json" >/dev/null
show fio --name=p --ioengine=nbd --uri="$uri" --rw="$rw" --bs=$bs --iodepth="$qd" --numjobs="$conns" \
	--group_reporting --time_based --runtime=$((secs + 2)) --size=512m --norandommap --randrepeat=0 \
	--output-format=json --output="$out/fio.json"
fio --name=p --ioengine=nbd --uri="$uri" --rw="$rw" --bs=$bs --iodepth="$qd" --numjobs="$conns" \
	--group_reporting --time_based --runtime=$((secs + 2)) --size=512m --norandommap --randrepeat=0 \
	--output-format=json --output="$out/fio.json" >/dev/null &
fio_pid=$!
sleep 1
run perf record -e cpu-clock -F 2999 -g -p "$pid" -o "$out/perf.data" -- sleep "$secs" 2>"$out/perf-record.log"
wait $fio_pid
perf report -i "$out/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
	| grep -v '^$' >"$out/report-callers.txt" || true
perf report -i "$out/perf.data" --no-children --sort dso,symbol -g none --stdio 2>/dev/null \
	| grep -v '^#' | grep -v '^$' | head -40 >"$out/report-flat.txt" || true
python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); j = d["jobs"][0]
s = j["write"] if "write" in sys.argv[2] else j["read"]
print("fio: %.0f IOPS, %.0f MB/s" % (s["iops"], s["bw_bytes"] / 1e6))' "$out/fio.json" "$rw"
echo "flat profile (self time), $out/report-flat.txt:"
head -25 "$out/report-flat.txt"
