#!/usr/bin/env bash
# Builds the libFuzzer target for the safetensors header parser and the JSON parser/serializer:
#   Tools/fuzz/build.sh            -> Tools/fuzz/.build/fuzz-safetensors
# The target is compiled together with Sources/CKStore/Safetensors/*.swift into one module
# (internal API is reachable), with libFuzzer and AddressSanitizer. Not part of CI.
# The parser is built with the release configuration's optimization and checking flags (-O:
# overflow and bounds checks on, as in Package.swift's release build, never -Ounchecked), so a
# finding here is a finding in the shipped binary; on AVX2 machines also its -target-cpu.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/opt/swift/usr/bin:$PATH"
out="${FUZZ_BUILD_DIR:-Tools/fuzz/.build}"
mkdir -p "$out"
# The parser has no dependencies beyond the standard library: DType, JSON, the error type, the
# header parser and its encoder are the whole closure.
sources=(Sources/CKStore/Safetensors/*.swift Tools/fuzz/FuzzSafetensors.swift)
release_flags=(-O)
if [ -z "${CKSTORE_PORTABLE:-}" ] && [ "$(uname -m)" = x86_64 ] && grep -q ' avx2 ' /proc/cpuinfo 2>/dev/null; then
    release_flags+=(-target-cpu haswell)
fi
swiftc -sanitize=fuzzer,address -parse-as-library "${release_flags[@]}" -g -use-ld=lld \
    -module-name CKStoreFuzz \
    "${sources[@]}" \
    -o "$out/fuzz-safetensors"
echo "built $out/fuzz-safetensors"
