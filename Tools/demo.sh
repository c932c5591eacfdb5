#!/usr/bin/env bash
# The ckstore demo: train a small MLP (numpy) at a high and a low learning rate, push a snapshot
# every NU steps through the Python hook, let `ckstore watch` evaluate every raw snapshot and
# every LAWA average (k=6) while training runs, then compare raw and LAWA validation loss.
#
#   Tools/demo.sh [--dir DIR] [--steps N] [--every NU] [--k K] [--lr-high LR] [--lr-low LR]
#
# Without --dir, everything lives in a fresh temporary folder whose store is deleted at the end
# (the logs and SVG plots are kept there); with --dir DIR the store is kept too.
# On a fresh machine (as root) it installs what the build needs, then builds ckstore (release).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
export PATH="/opt/swift/usr/bin:$PATH"

DIR="" STEPS=1500 EVERY=50 K=6 LR_HIGH=0.1 LR_LOW=0.01
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR="$2"; shift 2 ;;
        --steps) STEPS="$2"; shift 2 ;;
        --every) EVERY="$2"; shift 2 ;;
        --k) K="$2"; shift 2 ;;
        --lr-high) LR_HIGH="$2"; shift 2 ;;
        --lr-low) LR_LOW="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
LAST=$(( STEPS / EVERY * EVERY ))

# --- 1. prerequisites and build ---------------------------------------------------------------
missing=()
for pkg in pkg-config liblz4-dev libsqlite3-dev libssl-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "demo.sh: missing system packages: ${missing[*]} (run as root or install them)" >&2
        exit 1
    fi
    echo "demo.sh: installing ${missing[*]}"
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi
python3 -c "import numpy" 2>/dev/null || { echo "demo.sh: installing numpy"; python3 -m pip install -q numpy; }

echo "demo.sh: building ckstore (release; the first build takes a few minutes)…"
BUILD_LOG="$(mktemp "${TMPDIR:-/tmp}/ckstore-build.XXXXXX")"
if ! swift build -c release >"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2; echo "demo.sh: build failed (full log: $BUILD_LOG)" >&2; exit 1
fi
tail -n 1 "$BUILD_LOG"; rm -f "$BUILD_LOG"
BIN="$(swift build -c release --show-bin-path)/ckstore"

# --- 2. the store and the paired processes --------------------------------------------------
if [ -n "$DIR" ]; then
    mkdir -p "$DIR"; DIR="$(cd "$DIR" && pwd)"; KEEP=1
else
    DIR="$(mktemp -d "${TMPDIR:-/tmp}/ckstore-demo.XXXXXX")"; KEEP=0
fi
export CKSTORE_DIR="$DIR/store" CKSTORE_BIN="$BIN"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1  # 4 processes share 2 cores

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$KEEP" = 0 ]; then rm -rf "$DIR/store"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN" init >/dev/null
# watch passes the values in the environment; the command refers to them (never pastes them in).
EVAL="python3 $(printf %q "$ROOT/Tools/demo/evaluate.py")"' "$CKSTORE_PATH" "$CKSTORE_RUN" "$CKSTORE_STEP" "$CKSTORE_VARIANT"'
echo "demo.sh: store $CKSTORE_DIR; $STEPS steps per run, a snapshot every $EVERY, LAWA k=$K"
T0=$SECONDS
declare -A train_pid
for spec in "mlp-lr-high:$LR_HIGH" "mlp-lr-low:$LR_LOW"; do
    run="${spec%%:*}" lr="${spec#*:}"
    python3 "$ROOT/Tools/demo/train_mlp.py" --run "$run" --lr "$lr" --steps "$STEPS" --every "$EVERY" \
        >"$DIR/train-$run.log" 2>&1 &
    train_pid[$run]=$!; pids+=($!)
    "$BIN" watch --run "$run" --lawa "k=$K,stride=$EVERY" --raw --until "$LAST" --idle-exit 60 --poll 1 \
        --exec "$EVAL" >"$DIR/watch-$run.log" 2>&1 &
    pids+=($!)
done
status=0
for run in "${!train_pid[@]}"; do
    if ! wait "${train_pid[$run]}"; then
        echo "demo.sh: training $run failed:" >&2; tail -n 5 "$DIR/train-$run.log" >&2; status=1
    fi
done
[ $status = 0 ] || exit 1
echo "demo.sh: training done in $(( SECONDS - T0 )) s; waiting for the watchers to evaluate the last steps…"
wait
echo "demo.sh: evaluation done in $(( SECONDS - T0 )) s"
if grep -q "error" "$DIR"/watch-*.log; then
    echo "demo.sh: the watchers reported errors:" >&2; grep -h "error" "$DIR"/watch-*.log | head -n 5 >&2
fi

# --- 3. the comparison --------------------------------------------------------------------------
echo
python3 "$ROOT/Tools/demo/report.py" --run mlp-lr-high --run mlp-lr-low --metric val_loss --out "$DIR"
echo
echo "time the training loop was blocked inside push vs the background ckstore put (CheckpointPusher.stats):"
for run in mlp-lr-high mlp-lr-low; do
    grep -h "^$run push: " "$DIR/train-$run.log" | sed 's/^/  /' || true
done
echo
if [ "$KEEP" = 1 ]; then
    echo "demo.sh: store, logs and plots in $DIR (total $(( SECONDS - T0 )) s)"
else
    echo "demo.sh: logs and plots in $DIR; the store was removed (keep it with --dir DIR) (total $(( SECONDS - T0 )) s)"
fi
