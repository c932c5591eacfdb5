#!/usr/bin/env bash
# Builds the libFuzzer target for the safetensors header parser and the JSON parser/serializer:
#   Tools/fuzz/build.sh            -> Tools/fuzz/.build/fuzz-safetensors
# The target is compiled together with Sources/CKStore/Safetensors/*.swift into one module
# (internal API is reachable), with libFuzzer and AddressSanitizer. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/opt/swift/usr/bin:$PATH"
out="${FUZZ_BUILD_DIR:-Tools/fuzz/.build}"
mkdir -p "$out"
# The parser has no dependencies beyond the standard library: DType, JSON, the error type, the
# header parser and its encoder are the whole closure.
sources=(Sources/CKStore/Safetensors/*.swift Tools/fuzz/FuzzSafetensors.swift)
swiftc -sanitize=fuzzer,address -parse-as-library -O -g -use-ld=lld \
    -module-name CKStoreFuzz \
    "${sources[@]}" \
    -o "$out/fuzz-safetensors"
echo "built $out/fuzz-safetensors"
