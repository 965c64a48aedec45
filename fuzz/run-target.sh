#!/usr/bin/env bash
# Run one libFuzzer binary for a bounded time and print one summary line:
#   run-target.sh NAME BINARY SECONDS OUTDIR
# New corpus entries and crashes go under OUTDIR, never into the tree.
set -uo pipefail
name=$1 bin=$2 secs=$3 out=$4
cd "$(dirname "$0")"
work=$out/corpus/$name crashes=$out/crashes/$name log=$out/$name.log
mkdir -p "$work" "$crashes"
seeds=()
for d in corpus/$name regressions/$name; do
	[ -d "$d" ] && seeds+=("$d")
done
# -timeout: one input running this long is a hang, kept as a crash.
timeout --kill-after=30 $((secs + 120)) \
	"$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 \
	-max_len=65536 -print_final_stats=1 -artifact_prefix="$crashes/" \
	"$work" "${seeds[@]}" >"$log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n1)
if [ $rc -ne 0 ]; then
	echo "FUZZ FAIL $name (exit $rc) - log: $log"
	tail -n 60 "$log" | sed 's/^/    | /'
	ls "$crashes" | sed 's/^/    crash: /'
	exit 1
fi
printf 'FUZZ OK   %-10s %6ss  %10s execs  %7s exec/s  %s\n' \
	"$name" "$secs" "${execs:-?}" "${rate:-?}" "${cov:-}"
