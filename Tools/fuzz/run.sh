#!/usr/bin/env bash
# Runs the safetensors/JSON fuzz target for SECONDS (default 600) on one core:
#   Tools/fuzz/run.sh [SECONDS] [extra libFuzzer flags...]
# New inputs that increase coverage go to Tools/fuzz/.build/corpus (the checked-in seed corpus
# Tools/fuzz/corpus is only read); crashes, timeouts and out-of-memory inputs are written to
# Tools/fuzz/.build/artifacts/; libFuzzer's log is Tools/fuzz/.build/fuzz-0.log, and its final
# statistics are printed at the end. Exits non-zero when the fuzzer found a problem.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
seconds="${1:-600}"
shift || true
out="${FUZZ_BUILD_DIR:-$root/Tools/fuzz/.build}"
[ -x "$out/fuzz-safetensors" ] || "$root/Tools/fuzz/build.sh"
mkdir -p "$out/corpus" "$out/artifacts"
cd "$out"   # -jobs writes fuzz-<job>.log into the current directory
# ASan: abort on the first report. libFuzzer: -max_len 16 KiB keeps executions fast while
# allowing multi-tensor headers; -timeout flags any input taking over 10 s (a hang);
# -rss_limit_mb flags absurd allocations; -use_value_profile guides past integer comparisons.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
status=0
"$out/fuzz-safetensors" \
    -max_total_time="$seconds" -jobs=1 -workers=1 \
    -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -use_value_profile=1 \
    -dict="$root/Tools/fuzz/safetensors.dict" \
    -artifact_prefix="$out/artifacts/" \
    "$@" \
    "$out/corpus" "$root/Tools/fuzz/corpus" || status=$?
grep -E '^(#[0-9]+.*(DONE|pulse)|stat::|Done )' fuzz-0.log | tail -12
ls "$out/artifacts" | sed 's/^/artifact: /'
exit $status
