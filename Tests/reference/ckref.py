#!/usr/bin/env python3
"""Independent reference for ckstore's checkpoint-averaging numerics.

This file re-implements, without sharing code or tables with the Swift sources, the numerics
contract of ckstore's averaging (LAWA / SWA / weighted mean / EMA):

* every input element is decoded to float64 (exactly; all supported formats embed in float64);
* the accumulation is done in float64, element-wise, in ascending step order (the order the
  inputs are given):
    - uniform mean:   acc = x_0; acc += x_1; ...; acc /= float(K)
    - weighted mean:  w_i = weights[i] / s with s = w_0; s += w_1; ... (plain left-to-right
                      float64 sum, NOT Python's built-in sum(), which is compensated since 3.12);
                      acc = w_0*x_0; acc += w_i*x_i   (product rounded, then added: no FMA)
    - EMA (decay D):  e = x_0; e = D*e + (1.0 - D)*x_i for each later input (no FMA)
* the float64 result is rounded ONCE to the tensor dtype (round to nearest, ties to even);
  F64 output is the accumulator itself.

Encoding rules (float64 -> dtype), all decided from the float64 value in a single rounding:

  F32, F16, BF16, F8_E5M2 (IEEE-like, have Inf):
      overflow -> +-Inf, NaN -> the canonical quiet NaN with the input's sign
      (F32 0x7FC00000, F16 0x7E00, BF16 0x7FC0, F8_E5M2 0x7E; sign bit or'ed in).
  F8_E4M3 (= ml_dtypes float8_e4m3fn; no Inf, NaN = 0x7F/0xFF, max 448):
      NaN, +-Inf and overflow (|x| >= 464 after rounding) -> sign | 0x7F.
  F8_E4M3FNUZ / F8_E5M2FNUZ (no Inf, no -0, single NaN 0x80):
      NaN, +-Inf, overflow -> 0x80; a result that rounds to zero is +0 (0x00) whatever its sign.
  F8_E8M0 (= float8_e8m0fnu: 2^(c-127), c = 0..254, 0xFF = NaN, unsigned, no zero):
      NaN, +-Inf, zero, negative -> 0xFF; positive values below 2^-127 -> 0x00 (saturate);
      ties between two powers of two (1.5 * 2^k) round UP (there is no significand digit that
      could be "even"; this is what ml_dtypes does); rounding up past 2^127 -> 0xFF.
  C64: two F32 lanes (real, imaginary), each handled as F32.

Decoding rules (dtype -> float64):
  F32/F16/BF16 NaN -> quiet float64 NaN with the same sign and the payload bits moved to the top
      of the float64 fraction, quiet bit set (IEEE widening, what the hardware does for f32).
  All F8 NaNs -> the canonical float64 NaN 0x7FF8000000000000 with the code's sign bit; for the
      FNUZ types the single NaN 0x80 decodes to 0xFFF8000000000000 (as ml_dtypes does).

NaN signs: a NaN input keeps its sign; a NaN made by the arithmetic (Inf - Inf) has the
hardware's default sign (negative on x86-64); when two NaNs of different signs meet in one
addition, the survivor depends on operand order (numpy's and the compiler's). Comparisons are
bit-exact whenever the NaN inputs of one element position share a sign.

Where this deliberately differs from ml_dtypes / numpy (ml_dtypes 0.6.0, numpy 2.4):
  * ml_dtypes converts float64 -> bfloat16 / float8 by first rounding to float32 (double
    rounding); e.g. 1 + 2^-8 + 2^-40 -> bf16 gives 0x3F80 in ml_dtypes, 0x3F81 here, and
    positive float64 values below float32's range become E8M0 NaN there (0x00 here). On
    float32-representable inputs the two agree bit for bit (test_ckref.py checks it), except
    one ml_dtypes quirk: E8M0 of a float32 subnormal in (2^-127, 2^-126) is always 2^-126
    there, even for 1.0625 * 2^-127, whose nearest value 2^-127 (0x00) is what we give.
  * numpy float64 -> float16 rounds directly (agrees) but keeps NaN payloads (here canonical);
    numpy float16 -> float64 keeps signalling NaNs signalling (here the quiet bit is set).

CLI:
  python3 ckref.py lawa|mean|swa|ema OUT.safetensors IN1.safetensors IN2.safetensors ...
                   [--weights w1 w2 ...] [--decay D]
  Float tensors are averaged, integer/bool tensors are copied from the last input.
  F4 / F6 tensors are rejected (packed layouts; not averaged).
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
from fractions import Fraction

import numpy as np

# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------

# kind: 'ieee' (Inf + NaN, all-ones exponent reserved), 'fn' (no Inf, NaN = all ones),
#       'fnuz' (no Inf, no -0, NaN = 0x80), 'e8m0' (exponent only, unsigned)
FORMATS = {
    "F32": dict(width=4, ebits=8, mbits=23, bias=127, kind="ieee"),
    "F16": dict(width=2, ebits=5, mbits=10, bias=15, kind="ieee"),
    "BF16": dict(width=2, ebits=8, mbits=7, bias=127, kind="ieee"),
    "F8_E5M2": dict(width=1, ebits=5, mbits=2, bias=15, kind="ieee"),
    "F8_E4M3": dict(width=1, ebits=4, mbits=3, bias=7, kind="fn"),
    "F8_E4M3FNUZ": dict(width=1, ebits=4, mbits=3, bias=8, kind="fnuz"),
    "F8_E5M2FNUZ": dict(width=1, ebits=5, mbits=2, bias=16, kind="fnuz"),
    "F8_E8M0": dict(width=1, ebits=8, mbits=0, bias=127, kind="e8m0"),
}
FLOAT_DTYPES = set(FORMATS) | {"F64", "C64"}
COPIED_DTYPES = {"BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64"}
PACKED_DTYPES = {"F4", "F6_E2M3", "F6_E3M2"}
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}

_F64_QNAN = 0x7FF8000000000000
_SIGN64 = 1 << 63


def _fmt(dtype: str) -> dict:
    if dtype not in FORMATS:
        raise ValueError(f"not a rounding target: {dtype}")
    return FORMATS[dtype]


def _bits_to_f64(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def _f64_to_bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


# ---------------------------------------------------------------------------------------------
# Scalar decode (exact, Python ints)
# ---------------------------------------------------------------------------------------------


def decode_code(dtype: str, code: int) -> int:
    """Decode one element code of `dtype` to the bit pattern of the float64 value."""
    f = _fmt(dtype)
    e, m, bias, kind = f["ebits"], f["mbits"], f["bias"], f["kind"]
    if kind == "e8m0":
        if code == 0xFF:
            return _F64_QNAN
        return _f64_to_bits(math.ldexp(1.0, code - bias))
    total = 1 + e + m
    sign = (code >> (total - 1)) & 1
    mag = code & ((1 << (total - 1)) - 1)
    expf = mag >> m
    mant = mag & ((1 << m) - 1)
    sbit = _SIGN64 if sign else 0
    if kind == "fnuz":
        if code == 0x80:
            return _SIGN64 | _F64_QNAN
    elif kind == "fn":
        if mag == (1 << (total - 1)) - 1:
            return sbit | _F64_QNAN
    else:  # ieee
        if expf == (1 << e) - 1:
            if mant == 0:
                return sbit | 0x7FF0000000000000
            if dtype.startswith("F8"):
                return sbit | _F64_QNAN
            # keep the payload at the top of the fraction, set the quiet bit
            return sbit | 0x7FF0000000000000 | (1 << 51) | (mant << (52 - m))
    if expf == 0:
        value = math.ldexp(float(mant), 1 - bias - m)  # exact: < 2^m fits in a float
    else:
        value = math.ldexp(float((1 << m) | mant), expf - bias - m)
    return sbit | _f64_to_bits(value)


_DECODE_TABLES: dict[str, np.ndarray] = {}


def _decode_table(dtype: str) -> np.ndarray:
    if dtype not in _DECODE_TABLES:
        n = 1 << (8 * _fmt(dtype)["width"])
        t = np.array([decode_code(dtype, c) for c in range(n)], dtype=np.uint64)
        _DECODE_TABLES[dtype] = t
    return _DECODE_TABLES[dtype]


def decode(dtype_str: str, raw_bytes: bytes) -> np.ndarray:
    """Little-endian raw bytes of a tensor -> float64 array (C64: 2 lanes per element)."""
    if dtype_str == "F64":
        return np.frombuffer(raw_bytes, dtype="<f8").astype(np.float64)
    if dtype_str in ("F32", "C64"):
        # float32 -> float64 widening is exact; NaN: quiet bit set, payload kept, sign kept
        return np.frombuffer(raw_bytes, dtype="<f4").astype(np.float64)
    f = _fmt(dtype_str)
    codes = np.frombuffer(raw_bytes, dtype=np.dtype(UINT[f["width"]]).newbyteorder("<"))
    return _decode_table(dtype_str)[codes.astype(np.int64)].view(np.float64)


# ---------------------------------------------------------------------------------------------
# Scalar encode oracle (exact rational arithmetic; slow, used to test the vectorised encoder)
# ---------------------------------------------------------------------------------------------


def encode_scalar_exact(dtype: str, x: float) -> int:
    """Round one float64 to `dtype` using Fraction arithmetic and round-half-even."""
    if dtype == "C64":
        dtype = "F32"
    f = _fmt(dtype)
    e, m, bias, kind = f["ebits"], f["mbits"], f["bias"], f["kind"]
    total = 1 + e + m
    neg = math.copysign(1.0, x) < 0
    if kind == "e8m0":
        if math.isnan(x) or math.isinf(x) or x <= 0:
            return 0xFF
        fx = Fraction(x)
        # largest k with 2^k <= x
        k = math.frexp(x)[1] - 1
        if k < -127:
            return 0x00
        lo = Fraction(2) ** k
        # ties (x == 1.5 * 2^k) round up
        c = k + 127 + (1 if fx >= lo * Fraction(3, 2) else 0)
        return 0xFF if c > 254 else c
    sbit = (1 << (total - 1)) if neg else 0
    emin = 1 - bias
    if kind == "ieee":
        inf_code = ((1 << e) - 1) << m
        if math.isnan(x):
            return sbit | inf_code | (1 << (m - 1))
        if math.isinf(x):
            return sbit | inf_code
    elif kind == "fn":
        if math.isnan(x) or math.isinf(x):
            return sbit | ((1 << (total - 1)) - 1)
    else:  # fnuz
        if math.isnan(x) or math.isinf(x):
            return 0x80
    ax = Fraction(abs(x))
    if ax == 0:
        q_code = 0
    else:
        exp_lead = math.frexp(abs(x))[1] - 1  # 2^exp_lead <= |x| < 2^(exp_lead+1)
        eff = max(exp_lead, emin)
        quantum = Fraction(2) ** (eff - m)
        q = round(ax / quantum)  # Fraction.__round__: half to even
        q_code = ((eff - emin) << m) + q
    if kind == "ieee":
        if q_code >= inf_code:
            return sbit | inf_code
        return sbit | q_code
    if kind == "fn":
        if q_code >= (1 << (total - 1)) - 1:
            return sbit | ((1 << (total - 1)) - 1)
        return sbit | q_code
    # fnuz
    if q_code > 0x7F:
        return 0x80
    if q_code == 0:
        return 0x00
    return sbit | q_code


# ---------------------------------------------------------------------------------------------
# Vectorised encode (numpy uint64 integer arithmetic)
# ---------------------------------------------------------------------------------------------


def _round_codes(x: np.ndarray, m: int, emin: int) -> np.ndarray:
    """|x| (finite) rounded half-even to the grid of a format with m fraction bits and minimum
    normal exponent emin; returns the magnitude code ((eff-emin) << m) + q as int64 (may exceed
    the format's largest finite code, which the caller maps to Inf/NaN)."""
    bits = x.view(np.uint64)
    a = bits & np.uint64(0x7FFFFFFFFFFFFFFF)
    efield = (a >> np.uint64(52)).astype(np.int64)
    frac = a & np.uint64((1 << 52) - 1)
    sig = np.where(efield > 0, frac | np.uint64(1 << 52), frac)  # value = sig * 2^(E - 52)
    e_unb = np.maximum(efield, 1) - 1023
    eff = np.maximum(e_unb, emin)
    # q = RNE(sig / 2^r), r = (eff - m) - (E - 52) >= 52 - m >= 29 for all formats here
    r = (eff - m) - (e_unb - 52)
    r = np.minimum(r, 60)  # sig < 2^53: any r >= 55 gives 0 with no tie, 60 is the same
    ru = r.astype(np.uint64)
    q = sig >> ru
    rem = sig & ((np.uint64(1) << ru) - np.uint64(1))
    half = np.uint64(1) << (ru - np.uint64(1))
    up = (rem > half) | ((rem == half) & ((q & np.uint64(1)) == np.uint64(1)))
    q = q + up.astype(np.uint64)
    return ((eff - emin) << m) + q.astype(np.int64)


def _encode_codes(dtype: str, x: np.ndarray) -> np.ndarray:
    f = _fmt(dtype)
    e, m, bias, kind = f["ebits"], f["mbits"], f["bias"], f["kind"]
    total = 1 + e + m
    x = np.ascontiguousarray(x, dtype=np.float64)
    bits = x.view(np.uint64)
    neg = (bits >> np.uint64(63)).astype(np.int64)
    nan = np.isnan(x)
    inf = np.isinf(x)
    finite = ~(nan | inf)
    xs = np.where(finite, x, 0.0)
    if kind == "e8m0":
        a = np.abs(xs)
        efield = (a.view(np.uint64) >> np.uint64(52)).astype(np.int64)
        frac = a.view(np.uint64) & np.uint64((1 << 52) - 1)
        # values >= 1.5 * 2^k (top fraction bit set) round up; ties go up
        up = (frac >> np.uint64(51)).astype(np.int64)
        c = efield - 1023 + 127 + up
        c = np.where(efield == 0, -1, c)  # float64 subnormals are far below 2^-127
        c = np.maximum(c, 0)
        c = np.where(c > 254, 0xFF, c)
        bad = nan | inf | (x <= 0) | (neg == 1)
        return np.where(bad, 0xFF, c)
    emin = 1 - bias
    q = _round_codes(xs, m, emin)
    sbit = neg << (total - 1)
    if kind == "ieee":
        inf_code = ((1 << e) - 1) << m
        q = np.minimum(q, inf_code)
        q = np.where(inf, inf_code, q)
        q = np.where(nan, inf_code | (1 << (m - 1)), q)
        return sbit | q
    if kind == "fn":
        nan_code = (1 << (total - 1)) - 1
        q = np.minimum(q, nan_code)
        q = np.where(nan | inf, nan_code, q)
        return sbit | q
    # fnuz
    out = np.where(q == 0, 0, sbit | q)
    return np.where(nan | inf | (q > 0x7F), 0x80, out)


def encode(dtype_str: str, float64_array) -> bytes:
    """float64 values -> little-endian raw bytes of `dtype_str` (single RNE rounding)."""
    x = np.ascontiguousarray(np.asarray(float64_array, dtype=np.float64).ravel())
    if dtype_str == "F64":
        return x.astype("<f8").tobytes()
    if dtype_str == "C64":
        dtype_str = "F32"
    f = _fmt(dtype_str)
    codes = _encode_codes(dtype_str, x)
    return codes.astype(np.dtype(UINT[f["width"]]).newbyteorder("<")).tobytes()


# ---------------------------------------------------------------------------------------------
# Averages (float64, fixed operation order)
# ---------------------------------------------------------------------------------------------


def mean(list_of_arrays_f64):
    arrays = [np.asarray(a, dtype=np.float64) for a in list_of_arrays_f64]
    if not arrays:
        raise ValueError("mean of nothing")
    acc = arrays[0].copy()
    with np.errstate(all="ignore"):  # Inf/NaN arithmetic is part of the contract
        for a in arrays[1:]:
            acc += a
        acc /= float(len(arrays))
    return acc


def normalized_weights(weights):
    ws = [float(w) for w in weights]
    s = ws[0]
    for w in ws[1:]:
        s = s + w
    return [w / s for w in ws]


def weighted_mean(arrays, weights):
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    if len(arrays) != len(weights) or not arrays:
        raise ValueError("need one weight per array")
    wn = normalized_weights(weights)
    with np.errstate(all="ignore"):
        acc = wn[0] * arrays[0]
        for w, a in zip(wn[1:], arrays[1:]):
            acc += w * a
    return acc


def ema(arrays, decay):
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    if not arrays:
        raise ValueError("ema of nothing")
    d = float(decay)
    one_minus = 1.0 - d
    e = arrays[0].copy()
    with np.errstate(all="ignore"):
        for a in arrays[1:]:
            e = d * e + one_minus * a
    return e


# ---------------------------------------------------------------------------------------------
# safetensors I/O (own tiny parser: 8-byte LE header length, JSON header, data)
# ---------------------------------------------------------------------------------------------


def read_safetensors(path):
    with open(path, "rb") as fh:
        blob = fh.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        tensors[name] = (info["dtype"], list(info["shape"]), blob[base + lo : base + hi])
    return tensors


def write_safetensors(path, tensors):
    header = {}
    offset = 0
    datas = []
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        datas.append(raw)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(hb)))
        fh.write(hb)
        for raw in datas:
            fh.write(raw)


def average_files(mode, inputs, weights=None, decay=None):
    loaded = [read_safetensors(p) for p in inputs]
    names = set(loaded[0])
    for t in loaded[1:]:
        if set(t) != names:
            raise ValueError("inputs hold different tensor names")
    out = {}
    for name in names:
        dtype, shape, _ = loaded[-1][name]
        for t in loaded:
            if t[name][0] != dtype or t[name][1] != shape:
                raise ValueError(f"{name}: dtype/shape differ between inputs")
        if dtype in COPIED_DTYPES:
            out[name] = (dtype, shape, loaded[-1][name][2])
            continue
        if dtype in PACKED_DTYPES or dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name}: dtype {dtype} is not averaged")
        xs = [decode(dtype, t[name][2]) for t in loaded]
        if mode == "ema":
            acc = ema(xs, decay)
        elif weights is not None:
            acc = weighted_mean(xs, weights)
        else:
            acc = mean(xs)
        out[name] = (dtype, shape, encode(dtype, acc))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="ckstore averaging reference")
    p.add_argument("mode", choices=["lawa", "mean", "swa", "ema"])
    p.add_argument("out")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--weights", nargs="+", type=float)
    p.add_argument("--decay", type=float)
    a = p.parse_args(argv)
    if a.mode == "ema" and a.decay is None:
        p.error("ema needs --decay")
    if a.weights is not None and len(a.weights) != len(a.inputs):
        p.error("need one weight per input")
    weights = a.weights if a.mode in ("mean", "swa") else None
    try:
        out = average_files(a.mode, a.inputs, weights=weights, decay=a.decay)
    except ValueError as exc:
        print(f"ckref: {exc}", file=sys.stderr)
        return 2
    write_safetensors(a.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
