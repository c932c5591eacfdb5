#!/usr/bin/env bash
# The language-model demo: reproduce the LAWA findings of Sanyal et al. on a small GPT.
#
#   Tools/demo-lm.sh [--dir DIR]
#
# Trains a byte-level GPT-style decoder (torch, CPU) on the docstrings of the CPython standard
# library at a high and a low peak learning rate (10x apart), pushing a snapshot every NU steps
# through the ckstore Python package; a `ckstore watch` per run evaluates every raw snapshot,
# every LAWA average (k=K) and, at the same steps, EMA and SWA; then prints the table, writes
# one SVG plot per learning rate, and says which of the paper's findings were reproduced.
# Without --dir, everything lives in a fresh temporary folder whose store is deleted at the end
# (logs, report and plots are kept); with --dir DIR the store is kept too.
# Sizes come from the environment (defaults in brackets): LM_STEPS [400], LM_EVERY (NU) [10],
# LM_K [6], LM_LR_HIGH [3e-3], LM_LR_LOW [3e-4], LM_WIDTH [192], LM_LAYERS [4], LM_HEADS [6],
# LM_CONTEXT [128], LM_BATCH [8], LM_EVAL_SEQS [16], LM_EMA_DECAY [0.7], LM_MAX_BYTES [all],
# LM_SEED [0]. With CKSTORE_BIN set, that binary is used and nothing is built.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
export PATH="/opt/swift/usr/bin:$PATH"

DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR="$2"; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo-lm.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
STEPS=${LM_STEPS:-400} EVERY=${LM_EVERY:-10} K=${LM_K:-6}
LR_HIGH=${LM_LR_HIGH:-3e-3} LR_LOW=${LM_LR_LOW:-3e-4}
WIDTH=${LM_WIDTH:-192} LAYERS=${LM_LAYERS:-4} HEADS=${LM_HEADS:-6} CONTEXT=${LM_CONTEXT:-128}
BATCH=${LM_BATCH:-8} EVAL_SEQS=${LM_EVAL_SEQS:-16} EMA_DECAY=${LM_EMA_DECAY:-0.7} SEED=${LM_SEED:-0}
LAST=$(( STEPS / EVERY * EVERY ))
LAWA_VARIANT="lawa-k$K-s$EVERY"
EMA_VARIANT="ema-d$(python3 -c "import sys; print(float(sys.argv[1]))" "$EMA_DECAY")"
T0=$SECONDS

# --- 1. prerequisites: torch, numpy, the ckstore binary -------------------------------------
python3 -c "import numpy" 2>/dev/null || { echo "demo-lm.sh: installing numpy"; python3 -m pip install -q numpy; }
python3 -c "import torch" 2>/dev/null || { echo "demo-lm.sh: installing torch (CPU)"; python3 -m pip install -q torch; }
if [ -z "${CKSTORE_BIN:-}" ]; then
    echo "demo-lm.sh: building ckstore (release; the first build takes a few minutes)…"
    BUILD_LOG="$(mktemp "${TMPDIR:-/tmp}/ckstore-build.XXXXXX")"
    if ! swift build -c release >"$BUILD_LOG" 2>&1; then
        tail -n 30 "$BUILD_LOG" >&2; echo "demo-lm.sh: build failed (full log: $BUILD_LOG)" >&2; exit 1
    fi
    rm -f "$BUILD_LOG"
    CKSTORE_BIN="$(swift build -c release --show-bin-path)/ckstore"
fi
BIN="$CKSTORE_BIN"
T_BUILT=$SECONDS

# --- 2. the corpus, the store, the paired processes -------------------------------------------
if [ -n "$DIR" ]; then
    mkdir -p "$DIR"; DIR="$(cd "$DIR" && pwd)"; KEEP=1
else
    DIR="$(mktemp -d "${TMPDIR:-/tmp}/ckstore-demo-lm.XXXXXX")"; KEEP=0
fi
export CKSTORE_DIR="$DIR/store" CKSTORE_BIN="$BIN"
# Each process uses one thread: two trainers and two evaluators share the two cores.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$KEEP" = 0 ]; then rm -rf "$DIR/store"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$ROOT/Tools/demo_lm/corpus.py" "$DIR/data" ${LM_MAX_BYTES:+--max-bytes "$LM_MAX_BYTES"}
"$BIN" init >/dev/null
# watch passes the values in the environment; the command refers to them (never pastes them in).
EVAL="python3 $(printf %q "$ROOT/Tools/demo_lm/evaluate.py")"' "$CKSTORE_PATH" "$CKSTORE_RUN" "$CKSTORE_STEP" "$CKSTORE_VARIANT"'
EVAL+=" --data $(printf %q "$DIR/data") --heads $(printf %q "$HEADS") --context $(printf %q "$CONTEXT")"
EVAL+=" --sequences $(printf %q "$EVAL_SEQS") --ema-decay $(printf %q "$EMA_DECAY")"
echo "demo-lm.sh: store $CKSTORE_DIR; $STEPS steps per run, a snapshot every $EVERY, LAWA k=$K, EMA decay $EMA_DECAY"
T_TRAIN=$SECONDS
declare -A train_pid
for spec in "lm-lr-high:$LR_HIGH" "lm-lr-low:$LR_LOW"; do
    run="${spec%%:*}" lr="${spec#*:}"
    python3 "$ROOT/Tools/demo_lm/train.py" --run "$run" --lr "$lr" --data "$DIR/data" --steps "$STEPS" \
        --every "$EVERY" --width "$WIDTH" --layers "$LAYERS" --heads "$HEADS" --context "$CONTEXT" \
        --batch "$BATCH" --seed "$SEED" --summary "$DIR/train-$run.json" >"$DIR/train-$run.log" 2>&1 &
    train_pid[$run]=$!; pids+=($!)
    "$BIN" watch --run "$run" --lawa "k=$K,stride=$EVERY" --raw --until "$LAST" --idle-exit 300 --poll 1 \
        --exec "$EVAL" >"$DIR/watch-$run.log" 2>&1 &
    pids+=($!)
done
status=0
for run in lm-lr-high lm-lr-low; do
    if ! wait "${train_pid[$run]}"; then
        echo "demo-lm.sh: training $run failed:" >&2; tail -n 5 "$DIR/train-$run.log" >&2; status=1
    fi
done
[ $status = 0 ] || exit 1
T_TRAINED=$SECONDS
echo "demo-lm.sh: training done in $(( T_TRAINED - T_TRAIN )) s; waiting for the evaluators to finish the last steps…"
wait
T_EVALUATED=$SECONDS
if grep -q "error" "$DIR"/watch-*.log; then
    echo "demo-lm.sh: the watchers reported errors:" >&2; grep -h "error" "$DIR"/watch-*.log | head -n 5 >&2
    status=1
fi

# --- 3. the report ----------------------------------------------------------------------------
echo
python3 "$ROOT/Tools/demo_lm/report.py" --high lm-lr-high --low lm-lr-low --lawa "$LAWA_VARIANT" \
    --ema "$EMA_VARIANT" --swa swa --out "$DIR" | tee "$DIR/report.txt"
echo
{
    echo "timing (this machine: 2 cores, shared with other work while it ran):"
    for run in lm-lr-high lm-lr-low; do
        grep -h "^$run: done\|^$run push:" "$DIR/train-$run.log" | sed 's/^/  /' || true
    done
    echo "  build $(( T_BUILT - T0 )) s, training $(( T_TRAINED - T_TRAIN )) s, evaluation finished" \
         "$(( T_EVALUATED - T_TRAINED )) s after training, total $(( SECONDS - T0 )) s"
} | tee -a "$DIR/report.txt"
if [ "$KEEP" = 1 ]; then
    echo "demo-lm.sh: store, logs, report and plots in $DIR"
else
    echo "demo-lm.sh: logs, report and plots in $DIR; the store was removed (keep it with --dir DIR)"
fi
exit $status
