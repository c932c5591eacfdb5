"""Averaging on read, checked bit for bit against the independent reference (Tests/reference/ckref.py).

Each test writes a few snapshots full of awkward values (NaN, ±Inf, subnormals, values whose
mean is an exact rounding tie, values near overflow), stores them with `ckstore put`, asks
`ckstore get` for an average, and compares every tensor's bytes with what ckref computes from
the same input files. EMA is compared within 1 ulp, as the contract allows.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
sys.path.insert(0, str(REFERENCE))
ckref = pytest.importorskip("ckref")

FLOAT_DTYPES = ["F64", "F32", "F16", "BF16"]
UINT = {"F64": np.uint64, "F32": np.uint32, "F16": np.uint16, "BF16": np.uint16}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]], metadata=None) -> None:
    """A minimal safetensors writer (tensors laid out in the given order)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, (_, _, data) in tensors.items():
            f.write(data)


def read_safetensors(path: Path):
    blob = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    data = blob[8 + n :]
    out = {k: (v["dtype"], v["shape"], data[v["data_offsets"][0] : v["data_offsets"][1]]) for k, v in header.items()}
    return out, meta, header


def special_values(dtype: str, rng: np.random.Generator, step: int) -> bytes:
    """Random values plus the hard cases, in `dtype`'s bytes, different at each step."""
    base = rng.normal(0, 1, 600) * (1 + step)
    specials = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0]
    if dtype == "F32":
        tiny = np.float32(1.4e-45)
        specials += [float(tiny), float(np.float32(1.1754942e-38)), 3.4028234e38, 1.0 + step * 2.0**-23]
    elif dtype == "F16":
        specials += [2.0**-24, 6.1e-5, 65504.0, 65000.0, 1.0 + step * 2.0**-10]
    elif dtype == "BF16":
        specials += [9.2e-41, 3.38e38, 1.0 + step * 2.0**-7, 2.0**-133]
    else:
        specials += [5e-324, 1.7976931348623157e308, 1.0 + step * 2.0**-52]
    values = np.concatenate([base, np.array(specials, dtype=np.float64)])
    return ckref.encode(dtype, values)


@pytest.fixture
def snapshots(tmp_path, ckstore):
    """Six snapshots (steps 0, 10, …, 50) of one run, one tensor per float dtype plus an int."""
    rng = np.random.default_rng(1234)
    paths = []
    for i in range(6):
        step = i * 10
        tensors = {}
        for dtype in FLOAT_DTYPES:
            data = special_values(dtype, rng, i)
            width = np.dtype(UINT[dtype]).itemsize
            tensors[f"t.{dtype.lower()}"] = (dtype, [len(data) // width], data)
        tensors["counter"] = ("I64", [2], np.array([step, -step], dtype="<i8").tobytes())
        path = tmp_path / f"s{step}.safetensors"
        write_safetensors(path, tensors, metadata={"step": str(step)})
        ckstore("put", "--run", "r", "--step", str(step), str(path))
        paths.append(path)
    return paths


def compare_exact(out_path: Path, expected: dict, tensors=None):
    got, meta, _ = read_safetensors(out_path)
    for name, (dtype, shape, data) in expected.items():
        assert got[name][0] == dtype and got[name][1] == shape, name
        assert got[name][2] == data, f"tensor {name} ({dtype}) differs from the reference"
    return meta


def test_lawa_is_bit_exact_for_every_float_dtype(tmp_path, snapshots, ckstore):
    out = tmp_path / "lawa.safetensors"
    ckstore("get", "--lawa", "k=4,stride=10", "--at", "50", "-o", str(out))
    expected = ckref.average_files("lawa", [str(p) for p in snapshots[2:]])
    meta = compare_exact(out, expected)
    assert meta["ckstore.recipe"] == "lawa run=r k=4 stride=10 at=50"
    assert len(meta["ckstore.inputs"].split(",")) == 4
    assert meta["step"] == "50"  # the newest input's metadata is kept


def test_integer_tensors_are_copied_from_the_newest_input(tmp_path, snapshots, ckstore):
    out = tmp_path / "lawa.safetensors"
    proc = ckstore("get", "--lawa", "k=3,stride=10", "--at", "30", "-o", str(out))
    got, _, _ = read_safetensors(out)
    assert np.frombuffer(got["counter"][2], dtype="<i8").tolist() == [30, -30]
    assert "counter" in proc.stderr  # the summary names the copied tensor


def test_swa_with_stride_is_bit_exact(tmp_path, snapshots, ckstore):
    out = tmp_path / "swa.safetensors"
    ckstore("get", "--swa", "start=10,stride=20", "--at", "50", "-o", str(out))
    chosen = [snapshots[1], snapshots[3], snapshots[5]]  # steps 10, 30, 50
    compare_exact(out, ckref.average_files("swa", [str(p) for p in chosen]))


def test_weighted_mean_is_bit_exact(tmp_path, snapshots, ckstore):
    out = tmp_path / "mean.safetensors"
    ckstore("get", "--mean", "r@0,r@20,r@40", "--weights", "1,2,5", "-o", str(out))
    chosen = [str(snapshots[0]), str(snapshots[2]), str(snapshots[4])]
    compare_exact(out, ckref.average_files("mean", chosen, weights=[1.0, 2.0, 5.0]))


def test_unweighted_mean_equals_lawa_over_the_same_inputs(tmp_path, snapshots, ckstore):
    lawa = tmp_path / "lawa.safetensors"
    mean = tmp_path / "mean.safetensors"
    ckstore("get", "--lawa", "k=2,stride=20", "--at", "40", "-o", str(lawa))
    ckstore("get", "--mean", "r@20,r@40", "-o", str(mean))
    a, _, _ = read_safetensors(lawa)
    b, _, _ = read_safetensors(mean)
    assert {k: v[2] for k, v in a.items()} == {k: v[2] for k, v in b.items()}


def test_ema_within_one_ulp(tmp_path, snapshots, ckstore):
    out = tmp_path / "ema.safetensors"
    ckstore("get", "--ema", "decay=0.7", "--at", "50", "-o", str(out))
    expected = ckref.average_files("ema", [str(p) for p in snapshots], decay=0.7)
    got, _, _ = read_safetensors(out)
    for name, (dtype, _, data) in expected.items():
        if dtype not in UINT:
            assert got[name][2] == data
            continue
        a = np.frombuffer(got[name][2], dtype=UINT[dtype]).astype(np.int64)
        b = np.frombuffer(data, dtype=UINT[dtype]).astype(np.int64)
        nan_a = ckref.decode(dtype, got[name][2])
        nan_b = ckref.decode(dtype, data)
        assert np.array_equal(np.isnan(nan_a), np.isnan(nan_b)), name
        finite = ~np.isnan(nan_b)
        assert np.all(np.abs(a[finite] - b[finite]) <= 1), f"{name}: EMA differs by more than 1 ulp"


def test_rounding_ties_go_to_even(tmp_path, ckstore):
    # Two inputs whose mean lies exactly halfway between two representable values.
    cases = {
        "F32": ([1.0, 3.0], [1.0 + 2.0**-23, 3.0 + 2.0**-22]),
        "F16": ([1.0, 1.0 + 2.0**-9], [1.0 + 2.0**-10, 1.0 + 3 * 2.0**-10]),
        "BF16": ([1.0, 1.0 + 2.0**-6], [1.0 + 2.0**-7, 1.0 + 3 * 2.0**-7]),
    }
    files = []
    for i in range(2):
        tensors = {f"x.{d}": (d, [2], ckref.encode(d, np.array(v[i]))) for d, v in cases.items()}
        path = tmp_path / f"tie{i}.safetensors"
        write_safetensors(path, tensors)
        ckstore("put", "--run", "ties", "--step", str(i), str(path))
        files.append(str(path))
    out = tmp_path / "tie.safetensors"
    ckstore("get", "--run", "ties", "--lawa", "k=2,stride=1", "--at", "1", "-o", str(out))
    got, _, _ = read_safetensors(out)
    for d, (lo, hi) in cases.items():
        values = ckref.decode(d, got[f"x.{d}"][2])
        # (1 + (1+u))/2 = 1 + u/2 is a tie between 1 and 1+u: even is 1.
        assert values[0] == lo[0], f"{d}: tie did not round to even"
    compare_exact(out, ckref.average_files("lawa", files))


def test_output_is_byte_identical_every_time_and_cached(tmp_path, snapshots, ckstore):
    a, b, c, d = (tmp_path / f"{name}.safetensors" for name in "abcd")
    # The default cache policy (second-hit): computed, computed and cached, served from the cache.
    first = ckstore("get", "--lawa", "k=3,stride=10", "--at", "50", "-o", str(a))
    second = ckstore("get", "--lawa", "k=3,stride=10", "--at", "50", "-o", str(b))
    third = ckstore("get", "--lawa", "k=3,stride=10", "--at", "50", "-o", str(c))
    fourth = ckstore("get", "--lawa", "k=3,stride=10", "--at", "50", "--no-cache", "-o", str(d))
    assert a.read_bytes() == b.read_bytes() == c.read_bytes() == d.read_bytes()
    assert "computed" in first.stderr and "derived sha256" not in first.stderr
    assert "computed" in second.stderr and "derived sha256" in second.stderr
    assert "from the cache" in third.stderr and "computed" in fourth.stderr
    derived = json.loads(ckstore("ls", "--derived", "--json").stdout)["derived"]
    assert [d["recipe"] for d in derived] == ["lawa run=r k=3 stride=10 at=50"]


def test_cache_follows_a_forced_replacement_of_an_input(tmp_path, snapshots, ckstore):
    before = tmp_path / "before.safetensors"
    after = tmp_path / "after.safetensors"
    ckstore("get", "--lawa", "k=2,stride=10", "--at", "50", "-o", str(before))
    ckstore("put", "--run", "r", "--step", "50", "--force", str(snapshots[0]))
    proc = ckstore("get", "--lawa", "k=2,stride=10", "--at", "50", "-o", str(after))
    assert "computed" in proc.stderr
    compare_exact(after, ckref.average_files("lawa", [str(snapshots[4]), str(snapshots[0])]))
    assert before.read_bytes() != after.read_bytes()


def test_missing_lawa_inputs_are_listed_with_the_nearest_steps(snapshots, ckstore):
    proc = ckstore("get", "--lawa", "k=3,stride=15", "--at", "50", "-o", "/dev/null", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("ckstore: error:") and proc.stderr.count("\n") == 1
    assert "35 (nearest stored: 30" in proc.stderr or "35 (nearest stored: 40" in proc.stderr
    assert "20 (nearest stored: 20)" not in proc.stderr


def test_window_below_step_zero_is_a_usage_error(snapshots, ckstore):
    proc = ckstore("get", "--lawa", "k=7,stride=10", "--at", "50", "-o", "/dev/null", check=False)
    assert proc.returncode == 2 and "below step 0" in proc.stderr


def test_run_is_required_when_the_store_holds_several(tmp_path, snapshots, ckstore):
    ckstore("put", "--run", "other", "--step", "0", str(snapshots[0]))
    proc = ckstore("get", "--lawa", "k=2,stride=10", "--at", "50", "-o", "/dev/null", check=False)
    assert proc.returncode == 2 and "other" in proc.stderr and "r" in proc.stderr


def test_inputs_with_different_shapes_name_the_tensor_and_both_steps(tmp_path, snapshots, ckstore):
    tensors = {"t.f32": ("F32", [2], np.zeros(2, "<f4").tobytes())}
    path = tmp_path / "odd.safetensors"
    write_safetensors(path, tensors)
    ckstore("put", "--run", "r", "--step", "60", str(path))
    proc = ckstore("get", "--lawa", "k=2,stride=10", "--at", "60", "-o", "/dev/null", check=False)
    assert proc.returncode == 1
    assert "r@50" in proc.stderr and "r@60" in proc.stderr


def test_show_lists_the_inputs_without_reading_them(snapshots, ckstore):
    plan = json.loads(ckstore("show", "--lawa", "k=3,stride=10", "--at", "50", "--json").stdout)
    assert [i["step"] for i in plan["inputs"]] == [30, 40, 50]
    assert plan["copied_tensors"] == ["counter"]
    assert plan["cached"] is None
    listed = json.loads(ckstore("ls", "--lawa", "k=3,stride=10", "--at", "50", "--json").stdout)
    assert [i["ref"] for i in listed["inputs"]] == ["r@30", "r@40", "r@50"]
