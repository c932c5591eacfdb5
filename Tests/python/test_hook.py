"""Tests of Tools/ckstore against the real ckstore binary (see conftest.py)."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest

import ckstore
from ckstore import CKStoreError, Pusher, PushError, flatten_state_dict, load, record_metric
from ckstore import safetensors_io

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None


def sample_state() -> dict:
    """A state dict with every common dtype, a 0-d tensor, an empty tensor and nesting."""
    rng = np.random.default_rng(0)
    state = {
        "f64": rng.standard_normal((3, 4)),
        "f32": rng.standard_normal((5, 7)).astype(np.float32),
        "f16": rng.standard_normal(9).astype(np.float16),
        "i64": np.arange(-5, 5, dtype=np.int64),
        "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
        "i8": np.array([-128, 0, 127], dtype=np.int8),
        "u8": np.arange(10, dtype=np.uint8),
        "bool": np.array([[True, False], [False, True]]),
        "scalar0d": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "nested": {"layer": {"0": {"weight": np.ones((2, 2), np.float32)}}},
        "py_int": 7,
        "py_float": 0.125,
    }
    if ml_dtypes is not None:
        state["bf16"] = rng.standard_normal((4, 3)).astype(ml_dtypes.bfloat16)
    return state


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    assert a.shape == b.shape
    assert a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------------------------
# Round trips


def test_round_trip_all_dtypes(ckstore_bin, store, ckstore):
    state = sample_state()
    with Pusher("rt", store=store, binary=ckstore_bin) as pusher:
        digest = pusher.push(100, state, metrics={"loss": 0.5}).result()
    assert digest.startswith("sha256:") and len(digest) == 7 + 64

    got = load("rt@100", store=store, binary=ckstore_bin)
    expected = {
        **{k: v for k, v in state.items() if isinstance(v, np.ndarray)},
        "nested.layer.0.weight": state["nested"]["layer"]["0"]["weight"],
    }
    assert set(got) == set(expected)
    for name, arr in expected.items():
        assert_same(got[name], arr)
    assert got["scalar0d"].shape == ()

    # the digest is the snapshot's, and the metric was recorded with it
    listing = json.loads(ckstore("ls", "--run", "rt", "--json").stdout)
    snap = listing["snapshots"][0]
    assert snap["step"] == 100 and snap["digest"] == digest
    assert {"variant": "raw", "name": "loss", "value": 0.5} in snap["metrics"]

    # metadata written by the hook; plain Python values come back with the structure
    nested, meta = load("rt@100", store=store, binary=ckstore_bin, with_metadata=True, nested=True)
    assert meta["ckstore.run"] == "rt" and meta["ckstore.step"] == "100"
    assert nested["py_int"] == 7 and type(nested["py_int"]) is int
    assert nested["py_float"] == 0.125 and type(nested["py_float"]) is float
    assert_same(nested["nested"]["layer"]["0"]["weight"], state["nested"]["layer"]["0"]["weight"])


def test_get_parses_with_reference_safetensors(ckstore_bin, store, ckstore, tmp_path):
    st = pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    state = {k: v for k, v in sample_state().items() if isinstance(v, np.ndarray) and k != "bf16"}
    with Pusher("ref", store=store, binary=ckstore_bin) as pusher:
        pusher.push(1, state)
        pusher.push(2, sample_state())  # with bf16 when ml_dtypes is installed
    out = tmp_path / "one.safetensors"
    ckstore("get", "ref@1", "-o", str(out))
    loaded = load_file(str(out))
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert_same(loaded[k], v)

    # safetensors.numpy cannot build bf16 arrays, but the reference parser must accept the file
    out2 = tmp_path / "two.safetensors"
    ckstore("get", "ref@2", "-o", str(out2))
    with st.safe_open(str(out2), framework="numpy") as f:
        assert f.metadata()["ckstore.step"] == "2"
        for key in f.keys():
            if f.get_slice(key).get_dtype() == "BF16":
                assert key == "bf16" and f.get_slice(key).get_shape() == [4, 3]
            else:
                assert_same(f.get_tensor(key), load("ref@2", store=store, binary=ckstore_bin)[key])


def test_safetensors_io_matches_reference_writer():
    st_numpy = pytest.importorskip("safetensors.numpy")
    state = {k: v for k, v in sample_state().items() if isinstance(v, np.ndarray) and k != "bf16"}
    ours = io.BytesIO()
    tensors = [(k, safetensors_io.host_tensor(v)) for k, v in state.items()]
    n = safetensors_io.write(ours, tensors, {"a": "b"})
    assert n == len(ours.getvalue())
    assert (8 + int.from_bytes(ours.getvalue()[:8], "little")) % 8 == 0  # data section aligned
    theirs = st_numpy.load(ours.getvalue())
    for k, v in state.items():
        assert_same(theirs[k], v)
    back = safetensors_io.parse(st_numpy.save(state, metadata={"x": "y"}), with_metadata=True)
    assert back[1] == {"x": "y"}
    for k, v in state.items():
        assert_same(back[0][k], v)


def test_bf16_without_ml_dtypes_widens_to_float32(monkeypatch):
    bits = np.array([0x3FC0, 0xC000, 0x0000], dtype=np.uint16)  # 1.5, -2.0, 0.0 in bfloat16
    buf = io.BytesIO()
    safetensors_io.write(buf, [("w", safetensors_io.HostTensor("BF16", (3,), bits))])
    monkeypatch.delitem(safetensors_io._NAME_TO_NUMPY, "BF16", raising=False)
    got = safetensors_io.parse(buf.getvalue())["w"]
    assert got.dtype == np.float32 and got.tolist() == [1.5, -2.0, 0.0]


def test_load_query_lawa(ckstore_bin, store):
    with Pusher("q", store=store, binary=ckstore_bin, interval=10) as pusher:
        for step in range(0, 41):
            pusher.maybe_push(step, {"w": np.full(4, step, dtype=np.float32), "n": np.array(step, np.int64),
                                         "lr": 0.1 * step})
    avg = load(lawa=(3, 10), at=40, run="q", store=store, binary=ckstore_bin)
    assert avg["w"].dtype == np.float32
    np.testing.assert_array_equal(avg["w"], np.full(4, 30.0, dtype=np.float32))  # mean of 20, 30, 40
    assert avg["n"] == 40  # integer tensors are copied from the newest input
    # a plain float is never averaged: the average carries the newest input's value
    assert load(lawa=(3, 10), at=40, run="q", store=store, binary=ckstore_bin, nested=True)["lr"] == 4.0
    same = load(lawa="k=3,stride=10", at=40, run="q", store=store, binary=ckstore_bin)
    np.testing.assert_array_equal(same["w"], avg["w"])
    with pytest.raises(CKStoreError):
        load(lawa=(3, 10), at=15, run="q", store=store, binary=ckstore_bin)  # windows not stored


def test_maybe_push_interval(ckstore_bin, store, ckstore):
    with Pusher("mp", store=store, binary=ckstore_bin, interval=5) as pusher:
        handles = [pusher.maybe_push(s, {"w": np.zeros(2, np.float32) + s}) for s in range(1, 13)]
    assert [h is not None for h in handles] == [s % 5 == 0 for s in range(1, 13)]
    listing = json.loads(ckstore("ls", "--run", "mp", "--json").stdout)
    assert [s["step"] for s in listing["snapshots"]] == [5, 10]


# --------------------------------------------------------------------------------------------
# Asynchrony, copies and back-pressure


def test_push_returns_before_put_finishes_and_copies(slow_bin, ckstore_bin, store):
    w = np.arange(1000, dtype=np.float32)
    pusher = Pusher("async", store=store, binary=slow_bin(1.0))
    t0 = time.monotonic()
    handle = pusher.push(1, {"w": w, "opt": {"m": w * 2}})
    elapsed = time.monotonic() - t0
    assert elapsed < 0.5, f"push blocked for {elapsed:.2f} s"
    assert not handle.done()
    w[:] = -1  # training goes on and overwrites the parameters in place
    pusher.close()
    assert time.monotonic() - t0 >= 1.0
    got = load("async@1", store=store, binary=ckstore_bin)
    np.testing.assert_array_equal(got["w"], np.arange(1000, dtype=np.float32))
    np.testing.assert_array_equal(got["opt.m"], np.arange(1000, dtype=np.float32) * 2)


def test_back_pressure_max_in_flight_1(slow_bin, store):
    sleep = 0.5
    with Pusher("bp", store=store, binary=slow_bin(sleep), max_in_flight=1) as pusher:
        t0 = time.monotonic()
        first = pusher.push(1, {"w": np.zeros(3, np.float32)})
        assert time.monotonic() - t0 < sleep / 2
        second = pusher.push(2, {"w": np.ones(3, np.float32)})
        blocked = time.monotonic() - t0
        assert first.done() and first.result().startswith("sha256:")
        assert blocked >= sleep * 0.9, f"second push returned after {blocked:.2f} s"
        assert not second.done()
    assert second.result().startswith("sha256:")


def test_max_in_flight_2_allows_two_pending(slow_bin, store):
    with Pusher("bp2", store=store, binary=slow_bin(0.5), max_in_flight=2) as pusher:
        t0 = time.monotonic()
        a = pusher.push(1, {"w": np.zeros(3, np.float32)})
        b = pusher.push(2, {"w": np.ones(3, np.float32)})
        assert time.monotonic() - t0 < 0.25
        assert not a.done() and not b.done()
    assert a.result() != b.result()


# --------------------------------------------------------------------------------------------
# Errors


def test_conflict_raised_at_next_push(ckstore_bin, store):
    with Pusher("c", store=store, binary=ckstore_bin) as pusher:
        pusher.push(5, {"w": np.zeros(4, np.float32)})
    pusher = Pusher("c", store=store, binary=ckstore_bin)
    bad = pusher.push(5, {"w": np.ones(4, np.float32)})  # different content at the same step
    with pytest.raises(PushError) as info:
        bad.result(timeout=30)
    with pytest.raises(PushError) as at_push:
        pusher.push(6, {"w": np.ones(4, np.float32)})
    assert at_push.value is info.value
    assert "already holds" in str(at_push.value) and "c@5" in str(at_push.value)
    assert at_push.value.step == 5 and at_push.value.returncode == 1
    # reported once: the pusher goes on working afterwards
    assert pusher.push(6, {"w": np.ones(4, np.float32)}).result().startswith("sha256:")
    pusher.close()


def test_identical_put_at_same_step_is_fine(ckstore_bin, store):
    with Pusher("same", store=store, binary=ckstore_bin) as pusher:
        a = pusher.push(5, {"w": np.zeros(4, np.float32)})
        b = pusher.push(5, {"w": np.zeros(4, np.float32)})
    assert a.result() == b.result()


def test_bad_run_name_raised_at_close(ckstore_bin, store):
    pusher = Pusher("bad@name", store=store, binary=ckstore_bin)
    pusher.push(1, {"w": np.zeros(1 << 18, np.float32)})  # 1 MiB: ckstore exits before reading it
    with pytest.raises(PushError, match="invalid run name"):
        pusher.close()


def test_context_manager_reraises_background_error(ckstore_bin, store):
    with pytest.raises(PushError, match="invalid run name"):
        with Pusher("has space", store=store, binary=ckstore_bin) as pusher:
            pusher.push(1, {"w": np.zeros(3)})


def test_body_exception_not_masked(ckstore_bin, store):
    with pytest.raises(KeyError):
        with Pusher("has space", store=store, binary=ckstore_bin) as pusher:
            pusher.push(1, {"w": np.zeros(3)})
            raise KeyError("training crashed")


def test_error_raised_by_maybe_push_on_skipped_step(ckstore_bin, store):
    pusher = Pusher("x y", store=store, binary=ckstore_bin, interval=10)
    pusher.maybe_push(10, {"w": np.zeros(3)}).exception(timeout=30)
    with pytest.raises(PushError):
        pusher.maybe_push(11, {"w": np.zeros(3)})
    pusher.close()


def test_missing_binary_reported(store, tmp_path):
    pusher = Pusher("r", store=store, binary=str(tmp_path / "no-such-ckstore"))
    pusher.push(1, {"w": np.zeros(3)})
    with pytest.raises(FileNotFoundError):
        pusher.close()


def test_unstorable_value_raises_synchronously(ckstore_bin, store):
    with Pusher("u", store=store, binary=ckstore_bin) as pusher:
        with pytest.raises(TypeError, match="weird"):
            pusher.push(1, {"weird": object()})
        with pytest.raises(TypeError):
            pusher.push(1, {"s": np.array(["text"])})
        # the slot taken by the failed push was released
        assert pusher.push(1, {"ok": np.zeros(2)}).result().startswith("sha256:")


# --------------------------------------------------------------------------------------------
# Flattening


def test_flatten_nested_state_dict():
    w = np.ones(3, np.float32)
    optimizer = {
        "state": {0: {"exp_avg": w, "step": np.array(10.0, np.float32)}, 1: {"exp_avg": w}},
        "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1], "foreach": None, "name": "main"}],
    }
    state = {"model": {"layer": {"0": {"weight": w}}}, "optimizer": optimizer}
    leaves, meta = flatten_state_dict(state)
    # tensors only; the 0-d "step" and every plain value live in __metadata__ (never averaged)
    assert set(leaves) == {"model.layer.0.weight", "optimizer.state.0.exp_avg", "optimizer.state.1.exp_avg"}
    assert set(meta) == {"ckstore.tree"}
    back = ckstore.unflatten(leaves, meta)
    assert back["optimizer"]["param_groups"] == [
        {"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1], "foreach": None, "name": "main"}]
    assert list(back["optimizer"]["state"]) == [0, 1]  # int keys stay ints
    step = back["optimizer"]["state"][0]["step"]
    assert isinstance(step, np.ndarray) and step.dtype == np.float32 and step == 10.0
    assert back["model"]["layer"]["0"]["weight"] is w


def test_flatten_collision_is_an_error():
    with pytest.raises(ValueError, match="a.b"):
        flatten_state_dict({"a.b": np.zeros(1), "a": {"b": np.zeros(1)}})


def test_nested_push_round_trip(ckstore_bin, store):
    state = {"model": {"fc1": {"weight": np.eye(3, dtype=np.float32), "bias": np.zeros(3, np.float32)}},
             "optimizer": {"state": {0: {"momentum_buffer": np.ones(3)}}, "param_groups": [{"lr": 0.01}]},
             "epoch": 3}
    with Pusher("nest", store=store, binary=ckstore_bin) as pusher:
        pusher.push(3, state)
    got = load("nest@3", store=store, binary=ckstore_bin)
    assert set(got) == {"model.fc1.weight", "model.fc1.bias", "optimizer.state.0.momentum_buffer"}
    nested = load("nest@3", store=store, binary=ckstore_bin, nested=True)
    assert nested["epoch"] == 3 and nested["optimizer"]["param_groups"] == [{"lr": 0.01}]
    assert list(nested["optimizer"]["state"]) == [0]
    assert_same(nested["model"]["fc1"]["weight"], state["model"]["fc1"]["weight"])


# --------------------------------------------------------------------------------------------
# Metrics


def test_record_metric(ckstore_bin, store, ckstore, has_command):
    if not has_command("metric"):
        pytest.skip("this ckstore build has no 'metric' command yet")
    with Pusher("m", store=store, binary=ckstore_bin) as pusher:
        pusher.push(10, {"w": np.zeros(2, np.float32)})
    record_metric("m", 10, store=store, binary=ckstore_bin, val_loss=0.75)
    record_metric("m", 10, variant="lawa-k6-s10", store=store, binary=ckstore_bin, metrics={"val/acc": 0.5})
    record_metric("m", 15, store=store, binary=ckstore_bin, val_loss=0.25)  # no snapshot at 15
    listing = json.loads(ckstore("ls", "--run", "m", "--json").stdout)
    metrics = listing["metrics"]
    assert {"variant": "raw", "name": "val_loss", "value": 0.75} in listing["snapshots"][0]["metrics"]
    assert any(m["variant"] == "lawa-k6-s10" and m["name"] == "val/acc" and m["value"] == 0.5 for m in metrics)
    # the metric at a step without a snapshot is listed too ("step" is optional in the JSON)
    assert any(m.get("step", 15) == 15 and m["name"] == "val_loss" and m["value"] == 0.25 for m in metrics)
    assert "15" in ckstore("ls", "--run", "m").stdout.decode().split("without a snapshot")[-1]
    with pytest.raises(CKStoreError):
        record_metric("bad@run", 1, store=store, binary=ckstore_bin, x=1.0)


# --------------------------------------------------------------------------------------------
# torch (only when installed)


def test_torch_tensors(ckstore_bin, store):
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(4, 3)
    state = {
        "model": model.state_dict(),
        "bf16": torch.arange(6, dtype=torch.float32).reshape(2, 3).to(torch.bfloat16),
        "f16": torch.linspace(0, 1, 5, dtype=torch.float16),
        "strided": torch.arange(12, dtype=torch.int64).reshape(3, 4).t(),  # non-contiguous
        "flag": torch.tensor(True),
    }
    original = model.weight.detach().clone()
    with Pusher("torch", store=store, binary=ckstore_bin) as pusher:
        pusher.push(1, state)
        with torch.no_grad():
            model.weight.add_(1.0)  # mutating after push must not change the snapshot
    got = load("torch@1", store=store, binary=ckstore_bin)
    np.testing.assert_array_equal(got["model.weight"], original.numpy())
    np.testing.assert_array_equal(got["strided"], state["strided"].numpy())
    assert got["f16"].dtype == np.float16
    bf = got["bf16"].astype(np.float32)
    np.testing.assert_array_equal(bf, state["bf16"].float().numpy())
    assert got["flag"].dtype == np.bool_ and bool(got["flag"])


def test_module_exports_docstrings():
    for name in ckstore.__all__:
        obj = getattr(ckstore, name)
        assert obj.__doc__, f"{name} lacks a docstring"
