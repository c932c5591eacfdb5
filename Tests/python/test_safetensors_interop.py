"""Interop with the reference safetensors implementation.

Files written by ``safetensors.numpy.save_file`` must come back byte for byte through
``ckstore put`` / ``ckstore get``, and ``safetensors.numpy.load_file`` must read the ``get``
output with identical arrays.

Run with ``CKSTORE_BIN`` pointing at the built binary (``$(swift build --show-bin-path)/ckstore``);
without it the repository's ``.build/debug/ckstore`` is used when present. The module is skipped
when numpy or safetensors is not importable.
"""

import hashlib
import json
import os
import pathlib
import struct
import subprocess

import pytest

np = pytest.importorskip("numpy")
st_numpy = pytest.importorskip("safetensors.numpy")
safetensors = pytest.importorskip("safetensors")

try:
    import ml_dtypes
except ImportError:  # bf16 cases are skipped
    ml_dtypes = None

REPO = pathlib.Path(__file__).resolve().parents[2]


def _binary():
    env = os.environ.get("CKSTORE_BIN")
    if env:
        return env
    for candidate in (REPO / ".build" / "debug" / "ckstore", REPO / ".build" / "release" / "ckstore"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


CKSTORE = _binary()
pytestmark = pytest.mark.skipif(CKSTORE is None, reason="ckstore binary not found: set CKSTORE_BIN")


def run_ckstore(store, *args, stdin=None):
    env = {k: v for k, v in os.environ.items() if k != "CKSTORE_DIR"}
    return subprocess.run(
        [CKSTORE, "--store", str(store), *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def small_chunk_store(tmp_path):
    assert os.path.isfile(CKSTORE) and os.access(CKSTORE, os.X_OK), f"CKSTORE_BIN={CKSTORE} is not an executable file"
    path = tmp_path / "store"
    r = run_ckstore(path, "init")
    assert r.returncode == 0, r.stderr
    config = path / "config.json"
    text = config.read_text()
    assert '"chunk_size": 4194304' in text
    config.write_text(text.replace('"chunk_size": 4194304', '"chunk_size": 4096'))
    return path


def _rng(seed):
    return np.random.default_rng(seed)


def _cases():
    cases = [
        ("f32", lambda: {"w": _rng(1).standard_normal((64, 80)).astype(np.float32), "b": np.arange(5, dtype=np.float32)}, None),
        ("f16", lambda: {"h": _rng(2).standard_normal((3000,)).astype(np.float16)}, None),
        ("int64", lambda: {"ids": _rng(3).integers(-(2**62), 2**62, size=(700,), dtype=np.int64), "one": np.array(7, dtype=np.int64)}, None),
        ("bool", lambda: {"mask": _rng(4).random((33, 17)) > 0.5}, None),
        (
            "mixed with metadata",
            lambda: {
                "emb": _rng(5).standard_normal((40, 50)).astype(np.float32),
                "scale": np.array(0.5, dtype=np.float64),
                "counts": np.arange(12, dtype=np.int32).reshape(3, 4),
                "flags": np.array([True, False, True]),
                "empty": np.zeros((0, 3), dtype=np.float32),
                "u8": np.arange(256, dtype=np.uint8),
            },
            {"format": "np", "note": "interop ✓", "step": "1000"},
        ),
    ]
    params = [pytest.param(*c, id=c[0]) for c in cases]
    params.append(
        pytest.param(
            "bf16",
            lambda: {"bf": _rng(6).standard_normal((4000,)).astype(ml_dtypes.bfloat16), "f": np.ones(3, dtype=np.float32)},
            None,
            id="bf16",
            marks=pytest.mark.skipif(ml_dtypes is None, reason="ml_dtypes is not installed"),
        )
    )
    return params


def _read_with_bf16(path):
    """Arrays of a safetensors file; BF16 tensors (which safetensors.numpy cannot load) are
    decoded from the header by hand with ml_dtypes."""
    raw = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    if all(v["dtype"] != "BF16" for v in header.values()):
        return st_numpy.load_file(str(path))
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = ml_dtypes.bfloat16 if info["dtype"] == "BF16" else {"F32": np.float32}[info["dtype"]]
        out[name] = np.frombuffer(raw[8 + n + begin : 8 + n + end], dtype=dtype).reshape(info["shape"])
    return out


@pytest.mark.parametrize("label,make,metadata", _cases())
def test_reference_file_round_trips_byte_exact_and_loads_identically(tmp_path, small_chunk_store, label, make, metadata):
    tensors = make()
    src = tmp_path / "in.safetensors"
    try:
        st_numpy.save_file(tensors, str(src), metadata=metadata)
    except Exception as exc:  # e.g. a safetensors without bf16 support
        pytest.skip(f"safetensors cannot write {label}: {exc}")
    original = src.read_bytes()

    put = run_ckstore(small_chunk_store, "put", "--run", "py", "--step", "1", str(src))
    assert put.returncode == 0, put.stderr
    lines = put.stdout.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sha256:") and len(lines[0]) == 71, put.stdout

    out = tmp_path / "out.safetensors"
    get = run_ckstore(small_chunk_store, "get", "py@1", "-o", str(out))
    assert get.returncode == 0, get.stderr
    restored = out.read_bytes()
    assert hashlib.sha256(restored).hexdigest() == hashlib.sha256(original).hexdigest()
    assert restored == original

    streamed = run_ckstore(small_chunk_store, "get", "py@latest", "-o", "-")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == original

    loaded = _read_with_bf16(out)
    assert sorted(loaded) == sorted(tensors)
    for name, array in tensors.items():
        got = loaded[name]
        assert got.dtype == array.dtype, name
        assert got.shape == array.shape, name
        assert got.tobytes() == array.tobytes(), name
        assert np.array_equal(got, array), name

    if metadata is not None:
        with safetensors.safe_open(str(out), framework="np") as f:
            assert f.metadata() == metadata


def test_stdin_put_of_a_reference_file_round_trips(tmp_path, small_chunk_store):
    tensors = {"x": _rng(7).standard_normal((100, 100)).astype(np.float32)}
    data = st_numpy.save(tensors, metadata={"via": "stdin"})
    put = run_ckstore(small_chunk_store, "put", "--run", "py", "--step", "2", "-", stdin=data)
    assert put.returncode == 0, put.stderr
    streamed = run_ckstore(small_chunk_store, "get", "py@2", "-o", "-")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == data
    loaded = st_numpy.load(streamed.stdout)
    assert np.array_equal(loaded["x"], tensors["x"])


def test_show_reports_the_reference_files_tensors(tmp_path, small_chunk_store):
    tensors = {"a": np.zeros((3, 5), dtype=np.float16), "b": np.ones((2,), dtype=np.int64)}
    src = tmp_path / "in.safetensors"
    st_numpy.save_file(tensors, str(src), metadata={"k": "v"})
    assert run_ckstore(small_chunk_store, "put", "--run", "py", "--step", "3", str(src)).returncode == 0
    show = run_ckstore(small_chunk_store, "show", "py@3", "--json")
    assert show.returncode == 0, show.stderr
    info = json.loads(show.stdout)
    assert info["metadata"] == {"k": "v"}
    assert info["logical_bytes"] == src.stat().st_size
    by_name = {t["name"]: t for t in info["tensors"]}
    assert by_name["a"]["dtype"] == "F16" and by_name["a"]["shape"] == [3, 5] and by_name["a"]["bytes"] == 30
    assert by_name["b"]["dtype"] == "I64" and by_name["b"]["shape"] == [2] and by_name["b"]["bytes"] == 16
