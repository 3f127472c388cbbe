#!/bin/sh
# Run every libFuzzer target in BUILD for SECONDS each, with a corpus kept
# under BUILD/fuzz-corpus/<target>.  Usage: scripts/fuzz.sh BUILD SECONDS
set -eu
build=$1
secs=$2
status=0
for t in "$build"/tests/fuzz/fuzz_*; do
	case "$t" in *.p | *.log) continue ;; esac
	[ -f "$t" ] && [ -x "$t" ] || continue
	name=$(basename "$t")
	corpus="$build/fuzz-corpus/$name"
	mkdir -p "$corpus"
	echo "== $name ($secs s) =="
	"$t" -max_total_time="$secs" -print_final_stats=1 "$corpus" || status=1
done
exit $status
