#!/bin/bash
# Tree-averaging benchmarks (issue 11), as quoted in the closing note:
#   1. LAWA k=6 over a 4-rank tree vs one file of the same tensors (GPT-2 small, float32, 6
#      snapshots of 498 MB), three runs each, alternating, --no-cache;
#   2. peak RSS of LAWA k=6 over a 4-file tree of 2 GB per snapshot (synthetic float32).
# Each run is /usr/bin/time -v; the line printed gives wall time and maximum RSS, with the load
# average (the machine may be shared). Usage: Tools/bench/tree_average.sh CKSTORE_BIN [WORKDIR]
# (build with `swift build -c release`). Everything is written under WORKDIR (default
# /tmp/ckstore-tree-bench, about 20 GB at the peak) and removed at the end.
set -euo pipefail
BIN=$1
W=${2:-/tmp/ckstore-tree-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT

timed() { # label command…
    local label=$1
    shift
    /usr/bin/time -v "$@" 2>"$W/time.txt" >/dev/null
    echo "$label: $(grep Elapsed "$W/time.txt" | awk '{print $NF}') wall, max RSS $(grep 'Maximum resident' "$W/time.txt" | awk '{print $NF}') kB, load $(cut -d' ' -f1-3 /proc/loadavg)"
}

# 1. Tree vs file.
python3 "$HERE/generate.py" --out "$W/one" --steps 6 --dtype f32
python3 "$HERE/tree_data.py" split "$W/one" "$W/ranks" --ranks 4
S=$W/store1
"$BIN" --store "$S" init >/dev/null
for f in "$W"/one/step*.safetensors; do
    s=$(basename "$f" .safetensors)
    n=$((10#${s#step}))
    "$BIN" --store "$S" put --run one --step "$n" "$f" >/dev/null
    "$BIN" --store "$S" put --run ranks --step "$n" "$W/ranks/$s" >/dev/null
done
rm -rf "$W/one" "$W/ranks"
for i in 1 2 3; do
    rm -f "$W/out.safetensors"
    timed "one file, run $i" "$BIN" --store "$S" get --run one --lawa k=6,stride=1000 --at 5000 --no-cache -o "$W/out.safetensors"
    rm -rf "$W/out"
    timed "4-rank tree, run $i" "$BIN" --store "$S" get --run ranks --lawa k=6,stride=1000 --at 5000 --no-cache -o "$W/out"
done
rm -rf "$S" "$W/out" "$W/out.safetensors"

# 2. 4 × 512 MB files per snapshot, 6 snapshots (12 GB read).
S=$W/store2
"$BIN" --store "$S" init >/dev/null
for n in 0 1000 2000 3000 4000 5000; do
    python3 "$HERE/tree_data.py" synth "$W/src" --bytes 2e9 --ranks 4 --tensors 8 --seed "$n"
    "$BIN" --store "$S" put --run big --step "$n" "$W/src" >/dev/null
    rm -rf "$W/src"
done
for i in 1 2 3; do
    rm -rf "$W/out"
    timed "2 GB tree, run $i" "$BIN" --store "$S" get --run big --lawa k=6,stride=1000 --at 5000 --no-cache -o "$W/out"
done
