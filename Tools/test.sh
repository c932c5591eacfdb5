#!/usr/bin/env bash
# The test command: installs what is missing (as root), builds, and runs every test suite.
#   Tools/test.sh            all suites
# CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

# System libraries ckstore links against (and pkg-config, which SwiftPM uses to find them).
missing=()
for pkg in pkg-config liblz4-dev libsqlite3-dev libssl-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: missing system packages: ${missing[*]} (run as root or install them)" >&2
        exit 1
    fi
    echo "test.sh: installing ${missing[*]}"
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

# Python packages for the reference checks and the trainer hook tests (numpy-only code; the
# safetensors package is used to cross-check files, ml_dtypes for bfloat16/float8 arrays).
if ! python3 -c "import numpy, safetensors, ml_dtypes, pytest" 2>/dev/null; then
    echo "test.sh: installing Python test packages"
    python3 -m pip install -q numpy safetensors ml-dtypes pytest
fi

# Formatting (.swift-format): the tree must be clean; `swift format -i -r Sources Tests` fixes it.
swift format lint --strict -r Sources Tests

swift build --build-tests
swift test --skip-build
if [ -d Tests/python ]; then
    CKSTORE_BIN="$(swift build --show-bin-path)/ckstore" python3 -m pytest -q Tests/python Tests/reference
fi
