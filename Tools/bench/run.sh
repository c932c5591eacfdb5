#!/usr/bin/env bash
# The benchmark command: installs what is missing, then runs Tools/bench/run.py.
#   Tools/bench/run.sh [--scale 1] [--runs 3] [--only G,… | --skip G,…] [--large] [--cold]
#                      [--filters none,byteshuffle,bitshuffle,hybrid] [--keep DIR] [--json PATH]
#                      [--ckstore BIN]
# Groups: lawa (§1), device (§2), sweep (§3), large (§4, opt-in), filters (§5), tiny.
# Quick mode (a few minutes): --scale 0.1 --runs 1. `run.sh --help` lists every option.
# Without --ckstore or $CKSTORE_BIN it uses .build/release/ckstore (building it if missing).
# As root it installs GNU time (apt) when missing; numpy, safetensors and ml-dtypes
# come from pip.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export PATH="/opt/swift/usr/bin:$PATH"

apt_install() {   # apt_install PACKAGE: install one Debian package as root
    if [ "$(id -u)" -ne 0 ]; then echo "run.sh: $1 is missing (apt-get install $1)" >&2; exit 1; fi
    apt-get install -y -q "$1" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$1" >/dev/null; }
}
[ -x /usr/bin/time ] || apt_install time    # peak RSS and CPU time of every command
if ! python3 -c "import numpy, safetensors, ml_dtypes" 2>/dev/null; then
    python3 -m pip install -q numpy safetensors ml-dtypes
fi
case " $* " in
    *" --ckstore "*|*" --ckstore="*|*" -h "*|*" --help "*) ;;
    *) if [ -z "${CKSTORE_BIN:-}" ] && [ ! -x "$repo/.build/release/ckstore" ]; then
           (cd "$repo" && swift build -c release)
       fi ;;
esac
exec python3 "$here/run.py" "$@"
