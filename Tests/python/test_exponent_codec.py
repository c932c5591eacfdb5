"""Blob codec 2 (Huffman-coded exponent planes, `compression.float_entropy: "huffman"`) through
the CLI: float weights are stored smaller than with LZ4 and read back bit-identical (get,
fsck --full, an average); a damaged codec-2 blob is an integrity error (exit 3) naming the blob
and a byte offset; a store without the setting never writes codec 2; a bad value is refused."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest


def write_tensors(path: Path, tensors: dict[str, tuple[str, bytes, list[int]]]) -> None:
    """A safetensors file of (dtype, bytes, shape) tensors in the given order."""
    header: dict = {}
    data = b""
    for name, (dtype, raw, shape) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def weights(seed: int, n: int = 300_000) -> dict[str, tuple[str, bytes, list[int]]]:
    """Weight-like F32 and BF16 tensors, an Adam-like second moment, a constant and a periodic tensor."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(n) * 0.02).astype("<f4")
    v = (rng.standard_normal(n) * 1e-4).astype("<f4") ** 2
    bf16 = (w.view("<u4") >> 16).astype("<u2")
    return {
        "w": ("F32", w.tobytes(), [n]),
        "w.exp_avg_sq": ("F32", v.tobytes(), [n]),
        "w_bf16": ("BF16", bf16.tobytes(), [n]),
        "ln": ("F32", np.ones(256, "<f4").tobytes(), [256]),
        "periodic": ("F32", np.tile(rng.standard_normal(13).astype("<f4"), 400).tobytes(), [5200]),
    }


def set_entropy(store: str, value) -> None:
    path = Path(store) / "config.json"
    config = json.loads(path.read_text())
    config["compression"]["float_entropy"] = value
    path.write_text(json.dumps(config))


def blob_codecs(store: str) -> dict[Path, int]:
    """Codec byte (header offset 5) of every blob file."""
    return {p: p.read_bytes()[5] for p in (Path(store) / "objects").rglob("*") if p.is_file() and len(p.name) == 64}


def ratio(ckstore) -> float:
    return json.loads(ckstore("stats", "--json").stdout)["compression_ratio"]


@pytest.fixture
def huffman_store(ckstore, store: str, tmp_path: Path):
    ckstore("init")
    set_entropy(store, "huffman")
    files = []
    for step in (0, 10):
        f = tmp_path / f"s{step}.safetensors"
        write_tensors(f, weights(step))
        ckstore("put", "--run", "r", "--step", str(step), str(f))
        files.append(f)
    return files


def test_weights_take_codec_2_and_read_back_bit_identical(ckstore, store, huffman_store, tmp_path):
    codecs = blob_codecs(store)
    assert 2 in codecs.values(), codecs
    assert 1 in codecs.values(), "a tensor of repeats stays with LZ4"
    for step, f in zip((0, 10), huffman_store):
        out = tmp_path / f"out{step}.safetensors"
        ckstore("get", f"r@{step}", "-o", str(out))
        assert out.read_bytes() == f.read_bytes()
    ckstore("fsck", "--full")
    out = tmp_path / "avg.safetensors"
    ckstore("get", "--lawa", "k=2,stride=10", "--at", "10", "--no-cache", "-o", str(out))
    hdr_len = struct.unpack("<Q", out.read_bytes()[:8])[0]
    header = json.loads(out.read_bytes()[8 : 8 + hdr_len])
    a, b = header["w"]["data_offsets"]
    got = np.frombuffer(out.read_bytes()[8 + hdr_len + a : 8 + hdr_len + b], "<f4")
    w0 = np.frombuffer(weights(0)["w"][1], "<f4").astype(np.float64)
    w1 = np.frombuffer(weights(10)["w"][1], "<f4").astype(np.float64)
    assert np.allclose(got, (w0 + w1) / 2, rtol=0, atol=1e-7)


def test_codec_2_stores_smaller_than_lz4(ckstore, ckstore_bin, huffman_store, tmp_path):
    import subprocess

    plain = str(tmp_path / "plain")
    run = lambda *a: subprocess.run([ckstore_bin, "--store", plain, *a], capture_output=True, check=True)  # noqa: E731
    run("init")
    for step, f in zip((0, 10), huffman_store):
        run("put", "--run", "r", "--step", str(step), str(f))
    assert set(blob_codecs(plain).values()) <= {0, 1}, "float_entropy defaults to none"
    plain_ratio = json.loads(run("stats", "--json").stdout)["compression_ratio"]
    huff_ratio = ratio(ckstore)
    assert huff_ratio < plain_ratio - 0.02, (huff_ratio, plain_ratio)


def test_a_damaged_codec_2_blob_is_an_integrity_error_with_an_offset(ckstore, store, huffman_store, tmp_path):
    victim = next(p for p, c in blob_codecs(store).items() if c == 2)
    data = bytearray(victim.read_bytes())
    data[64 + 200] ^= 0x5A
    victim.write_bytes(bytes(data))
    proc = ckstore("get", "r@0", "-o", str(tmp_path / "x.safetensors"), check=False)
    if proc.returncode == 0:  # the victim belongs to step 10
        proc = ckstore("get", "r@10", "-o", str(tmp_path / "x.safetensors"), check=False)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("ckstore: error:") and victim.name[:12] in proc.stderr and "byte 64" in proc.stderr
    fsck = ckstore("fsck", "--full", check=False)
    assert fsck.returncode == 3 and victim.name[:12] in fsck.stdout.decode() + fsck.stderr


@pytest.mark.parametrize("value", ['"zstd"', "true", "1"])
def test_a_bad_float_entropy_value_is_refused(ckstore, store, tmp_path, value):
    ckstore("init")
    set_entropy(store, json.loads(value))
    f = tmp_path / "s.safetensors"
    write_tensors(f, weights(1, 1000))
    proc = ckstore("put", "--run", "r", "--step", "0", str(f), check=False)
    assert proc.returncode == 1 and "compression.float_entropy" in proc.stderr, proc.stderr
    assert not blob_codecs(store)
