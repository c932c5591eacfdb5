#!/usr/bin/env bash
# The test command: installs what is missing (as root), builds, and runs every test suite.
#   Tools/test.sh            all suites
# CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

# System libraries ckstore links against (and pkg-config, which SwiftPM uses to find them).
missing=()
for pkg in pkg-config liblz4-dev libsqlite3-dev libssl-dev libpq-dev libcurl4-openssl-dev; do
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
# Building the ckstore package (Tools/python) offline in the install test needs a setuptools with
# bdist_wheel built in (70.1+) or the wheel package.
if ! python3 -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('setuptools.command.bdist_wheel') or u.find_spec('wheel')))" 2>/dev/null; then
    echo "test.sh: installing setuptools (with bdist_wheel) for the package install test"
    python3 -m pip install -q "setuptools>=70.1"
fi
# torch (CPU) for the package's torch tests (Tests/python/test_torch*.py), so they run in CI rather
# than skip: the CPU-only wheel index first (a much smaller download), then the default index.
if ! python3 -c "import torch" 2>/dev/null; then
    echo "test.sh: installing torch (CPU)"
    python3 -m pip install -q --retries 0 --timeout 30 torch --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
        || python3 -m pip install -q torch
fi

# Live backends for the PostgreSQL and S3 suites: as root (CI), install and start a throwaway
# PostgreSQL and a single-node Ceph RADOS Gateway (Tools/services/), export their connection
# settings (CKSTORE_TEST_PG_URL and PGPASSWORD; AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION), and stop them on exit. Suites whose backend is not
# configured skip, saying why. CKSTORE_TEST_SERVICES=0 skips starting them.
loud_warning() {
    printf '\n%s\n' "################################################################################" >&2
    printf 'test.sh: WARNING: %s\n' "$@" >&2
    printf '%s\n\n' "################################################################################" >&2
}
if [ "$(id -u)" -eq 0 ] && [ "${CKSTORE_TEST_SERVICES:-1}" != 0 ]; then
    services_dir=$(mktemp -d "${TMPDIR:-/tmp}/ckstore-test-services.XXXXXX")
    chmod 755 "$services_dir" # the PostgreSQL server runs as the `postgres` user
    export CKSTORE_PG_DIR="$services_dir/postgres" CKSTORE_CEPH_DIR="$services_dir/ceph"
    stop_services() {
        Tools/services/ceph.sh stop >/dev/null 2>&1 || true
        Tools/services/postgres.sh stop >/dev/null 2>&1 || true
        rm -rf "$services_dir"
    }
    trap stop_services EXIT
    # Each service: "install" fails (status 3) only when the packages cannot be installed; then
    # warn loudly and go on without it. A service that is installed but does not start fails the run.
    for service in postgres ceph; do
        if Tools/services/$service.sh install; then
            Tools/services/$service.sh start >"$services_dir/$service.out" || {
                cat "$services_dir/$service.out" >&2
                echo "test.sh: error: $service is installed but did not start (its log tail is above)" >&2
                exit 1
            }
            head -1 "$services_dir/$service.out"
            # shellcheck disable=SC1090
            . "$services_dir/${service}/env"
            # The S3 client's live suite runs when CKSTORE_TEST_S3 is set.
            if [ "$service" = ceph ]; then export CKSTORE_TEST_S3=1; fi
        else
            loud_warning "cannot install the $service packages: the $service backend suites will be SKIPPED"
        fi
    done
elif [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: not root: backend suites run only where CKSTORE_TEST_PG_URL / AWS_ENDPOINT_URL are set (Tools/services/ starts servers)"
fi

# Backend boundaries (issue 10): each C library is imported by its own target only — sqlite3 by
# CKStoreSQLite, libpq by CKStorePostgres, libcurl by CKStoreS3 — so the core and the CLI reach
# every backend through the protocols.
check_imports() { # module allowed-folder
    local bad
    bad=$(grep -rlE "^[[:space:]]*(@[a-zA-Z_]+[[:space:]]+)*import[[:space:]]+$1\b" Sources Tests | grep -v "^$2/" || true)
    if [ -n "$bad" ]; then
        echo "test.sh: error: $1 is imported outside $2: $bad" >&2
        exit 1
    fi
}
check_imports CSQLite Sources/CKStoreSQLite
check_imports CPostgres Sources/CKStorePostgres
check_imports CCurl Sources/CKStoreS3

# Formatting (.swift-format): the tree must be clean; `swift format -i -r Sources Tests` fixes it.
swift format lint --strict -r Sources Tests

# The fuzz target compiles Sources/CKStore/Safetensors/ alone (Tools/fuzz/build.sh): keep it
# self-contained (a type-check is a few seconds; the fuzzer itself is not part of CI).
swiftc -typecheck -parse-as-library Sources/CKStore/Safetensors/*.swift Tools/fuzz/FuzzSafetensors.swift

swift build --build-tests
swift test --skip-build
if [ -d Tests/python ]; then
    CKSTORE_BIN="$(swift build --show-bin-path)/ckstore" python3 -m pytest -q Tests/python Tests/reference
fi
