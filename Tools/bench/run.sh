#!/usr/bin/env bash
# The benchmark command: installs what is missing, then runs Tools/bench/run.py.
#   Tools/bench/run.sh [--scale 1] [--runs 3] [--keep DIR] [--json PATH] [--ckstore BIN] [--skip …]
# Without --ckstore or $CKSTORE_BIN it uses .build/release/ckstore (building it if missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export PATH="/opt/swift/usr/bin:$PATH"

if ! command -v lz4 >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then echo "run.sh: lz4 is missing (apt-get install lz4)" >&2; exit 1; fi
    apt-get install -y -q lz4 >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q lz4 >/dev/null; }
fi
if ! python3 -c "import numpy, safetensors, ml_dtypes" 2>/dev/null; then
    python3 -m pip install -q numpy safetensors ml-dtypes
fi
case " $* " in
    *" --ckstore "*|*" --ckstore="*) ;;
    *) if [ -z "${CKSTORE_BIN:-}" ] && [ ! -x "$repo/.build/release/ckstore" ]; then
           (cd "$repo" && swift build -c release)
       fi ;;
esac
exec python3 "$here/run.py" "$@"
