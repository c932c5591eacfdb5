"""The ckstore package with torch (CPU): pushing every torch dtype, loading as torch tensors,
model and optimizer round trips, exact optimizer scalars under averaging, metrics, hostile
input. Tools/test.sh installs torch, so in CI these run; without torch they skip."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ckstore  # noqa: E402
from ckstore import Pusher, load  # noqa: E402

F8 = [dt for dt in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, dt)]


def push_one(store, binary, run, step, state, **kwargs):
    with Pusher(run, store=store, binary=binary, **kwargs) as pusher:
        return pusher.push(step, state).result()


def bits(t):
    """The raw bytes of a CPU tensor (exact comparison for any dtype, NaN included)."""
    t = t.detach().contiguous().cpu()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.dim() else t.reshape(1).view(torch.uint8).numpy().tobytes()


def assert_identical(a, b):
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    assert tuple(a.shape) == tuple(b.shape)
    assert bits(a) == bits(b)


# --------------------------------------------------------------------------------------------
# dtypes, layouts, zero-copy loading


def every_dtype_state():
    g = torch.Generator().manual_seed(0)
    state = {
        "f32": torch.randn(5, 7, generator=g),
        "f64": torch.randn(3, dtype=torch.float64, generator=g),
        "f16": torch.randn(4, 4, generator=g).half(),
        "bf16": torch.randn(3, 5, generator=g).bfloat16(),
        "bf16_odd": torch.randn(3, generator=g).bfloat16(),  # 6 bytes: what follows is misaligned
        "f32_after_odd": torch.randn(2, 3, generator=g),
        "i64": torch.arange(-4, 4),
        "i32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "u8": torch.arange(9, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "zero_d": torch.tensor(2.5, dtype=torch.bfloat16),
        "empty": torch.zeros(0, 4),
        "strided": torch.arange(12.0).reshape(3, 4).t(),  # non-contiguous
        "sliced": torch.arange(20.0).reshape(4, 5)[1:3, ::2],  # non-contiguous with an offset
    }
    for name in F8:
        state[name] = torch.randn(4, 4, generator=g).to(getattr(torch, name))
    return state


def test_every_dtype_round_trips_as_torch(ckstore_bin, store):
    state = every_dtype_state()
    push_one(store, ckstore_bin, "dt", 1, state)
    got = load("dt@1", store=store, binary=ckstore_bin, framework="torch")
    assert list(got) == list(state)
    for name, t in state.items():
        assert_identical(got[name], t)
    assert got["bf16"].dtype == torch.bfloat16 and got["zero_d"].shape == ()


def test_fp8_names_match_the_swift_side(ckstore_bin, store, ckstore):
    if not F8:
        pytest.skip("this torch has no float8 dtypes")
    state = {name: torch.ones(2, 2).to(getattr(torch, name)) for name in F8}
    push_one(store, ckstore_bin, "f8", 1, state)
    shown = ckstore("show", "f8@1").stdout.decode()
    assert "F8_E4M3" in shown and "F8_E5M2" in shown
    # numpy path (ml_dtypes) reads the same bits
    arrays = load("f8@1", store=store, binary=ckstore_bin)
    for name in F8:
        assert arrays[name].tobytes() == bits(state[name])


def test_torch_load_is_zero_copy_when_aligned(ckstore_bin, store):
    state = {"a": torch.randn(64, 64), "b": torch.randn(32).bfloat16(), "c": torch.randn(16, 16)}
    push_one(store, ckstore_bin, "zc", 1, state)
    got = load("zc@1", store=store, binary=ckstore_bin, framework="torch")
    # every tensor is a view of one buffer: the downloaded file
    storages = {t.untyped_storage().data_ptr() for t in got.values()}
    assert len(storages) == 1
    file_size = got["a"].untyped_storage().nbytes()
    assert file_size >= sum(t.numel() * t.element_size() for t in state.values())
    for name, t in state.items():
        assert_identical(got[name], t)
    got["a"][0, 0] = 123.0  # writable, and independent of the store
    again = load("zc@1", store=store, binary=ckstore_bin, framework="torch")
    assert_identical(again["a"], state["a"])


def test_tensor_mutated_after_push_does_not_change_the_snapshot(slow_bin, store):
    w = torch.zeros(1000)
    with Pusher("mut", store=store, binary=slow_bin(0.5)) as pusher:
        pusher.push(1, {"w": w})
        w.add_(1.0)  # the put is still running
    assert load("mut@1", store=store, binary=slow_bin(0), framework="torch")["w"].sum().item() == 0.0


def test_tied_weights_are_stored_once(ckstore_bin, store, ckstore):
    emb = torch.nn.Embedding(512, 256)
    head = torch.nn.Linear(256, 512, bias=False)
    head.weight = emb.weight  # tied, as in GPT-2
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    state = model.state_dict()
    assert state["emb.weight"].data_ptr() == state["head.weight"].data_ptr()
    push_one(store, ckstore_bin, "tied", 1, state)
    stats = json.loads(ckstore("stats", "--json").stdout)
    one = 512 * 256 * 4
    assert stats["logical_bytes"] >= 2 * one
    assert stats["unique_raw_bytes"] == one  # the second copy deduplicates to the first's chunks
    got = load("tied@1", store=store, binary=ckstore_bin, framework="torch")
    fresh = torch.nn.ModuleDict({"emb": torch.nn.Embedding(512, 256), "head": torch.nn.Linear(256, 512, bias=False)})
    fresh.load_state_dict(got)
    assert torch.equal(fresh["head"].weight, emb.weight)


def test_bf16_and_zero_d_metrics(ckstore_bin, store, ckstore):
    with Pusher("met", store=store, binary=ckstore_bin) as pusher:
        pusher.push(1, {"w": torch.zeros(2)}, metrics={"loss": torch.tensor(0.5, dtype=torch.bfloat16),
                                                       "acc": torch.tensor([0.25]),
                                                       "lr": np.float32(0.125)})
        with pytest.raises(ValueError, match="one number"):
            pusher.push(2, {"w": torch.zeros(2)}, metrics={"bad": torch.zeros(3)})
    snap = json.loads(ckstore("ls", "--run", "met", "--json").stdout)["snapshots"][0]
    values = {m["name"]: m["value"] for m in snap["metrics"]}
    assert values == {"loss": 0.5, "acc": 0.25, "lr": 0.125}


def test_requires_grad_parameters_push(ckstore_bin, store):
    p = torch.nn.Parameter(torch.randn(3, 3))
    push_one(store, ckstore_bin, "grad", 1, {"p": p})
    assert torch.equal(load("grad@1", store=store, binary=ckstore_bin, framework="torch")["p"], p.detach())


# --------------------------------------------------------------------------------------------
# Models and optimizers


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.GELU(),
                                       torch.nn.Linear(16, 4))
        self.register_buffer("counter", torch.tensor(3, dtype=torch.int64))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_round_trip_identical_outputs(ckstore_bin, store, dtype):
    torch.manual_seed(1)
    model = Tiny().to(dtype)
    x = torch.randn(5, 8).to(dtype)
    expected = model(x)
    push_one(store, ckstore_bin, "model", 7, model.state_dict())
    torch.manual_seed(2)
    fresh = Tiny().to(dtype)
    assert not torch.equal(fresh(x), expected)
    state = load("model@7", store=store, binary=ckstore_bin, framework="torch")
    assert state["net.0.weight"].dtype == dtype
    fresh.load_state_dict(state)
    assert torch.equal(fresh(x), expected)
    assert fresh.counter.item() == 3


def train(model, opt, steps, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 8, generator=g)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss


def test_optimizer_state_round_trip(ckstore_bin, store):
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    train(model, opt, 5, seed=1)
    push_one(store, ckstore_bin, "opt", 5, {"model": model.state_dict(), "optimizer": opt.state_dict()})

    back = load("opt@5", store=store, binary=ckstore_bin, framework="torch", nested=True)
    assert set(back) == {"model", "optimizer"}
    assert list(back["model"]) == list(model.state_dict())  # dotted keys stay whole
    saved = opt.state_dict()
    assert back["optimizer"]["param_groups"] == saved["param_groups"]  # lr, betas (a tuple), params, None flags
    step = back["optimizer"]["state"][0]["step"]
    assert step.dtype == saved["state"][0]["step"].dtype and step.item() == 5.0

    fresh = Tiny()
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.5)
    fresh.load_state_dict(back["model"])
    fresh_opt.load_state_dict(back["optimizer"])
    # continuing from the restored state is bit-identical to continuing the original
    train(model, opt, 3, seed=2)
    train(fresh, fresh_opt, 3, seed=2)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_lawa_over_optimizer_states_keeps_step_and_hyperparameters_exact(ckstore_bin, store):
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    states = {}
    with Pusher("lawa-opt", store=store, binary=ckstore_bin, interval=10) as pusher:
        for step in range(1, 31):
            train(model, opt, 1, seed=step)
            if pusher.should_push(step):
                sched.step()
                states[step] = {k: v.clone() for k, v in opt.state_dict()["state"][0].items()}
            pusher.maybe_push(step, lambda: {"model": model.state_dict(), "optimizer": opt.state_dict()})
    avg = load(lawa=(3, 10), at=30, run="lawa-opt", store=store, binary=ckstore_bin, framework="torch", nested=True)
    st = avg["optimizer"]["state"][0]
    assert st["step"].dtype == torch.float32 and st["step"].item() == 30.0  # not (10+20+30)/3
    assert avg["optimizer"]["param_groups"][0]["lr"] == opt.param_groups[0]["lr"]  # newest, not averaged
    mean = (states[10]["exp_avg"].double() + states[20]["exp_avg"].double() + states[30]["exp_avg"].double()) / 3
    assert torch.allclose(st["exp_avg"].double(), mean, rtol=0, atol=1e-7)  # tensors are averaged
    assert avg["model"]["counter"].item() == 3  # integer buffers are copied


def test_maybe_push_calls_the_state_function_only_on_push_steps(ckstore_bin, store):
    calls = []

    def state_fn():
        calls.append(True)
        return {"w": torch.full((2,), float(len(calls)))}

    with Pusher("lazy", store=store, binary=ckstore_bin, interval=4) as pusher:
        results = [pusher.maybe_push(step, state_fn, metrics=lambda: {"loss": torch.tensor(1.0)})
                   for step in range(1, 13)]
        assert [pusher.should_push(s) for s in (3, 4, 8, 9)] == [False, True, True, False]
    assert len(calls) == 3
    assert [r is not None for r in results] == [s % 4 == 0 for s in range(1, 13)]
    assert load("lazy@12", store=store, binary=ckstore_bin, framework="torch")["w"].tolist() == [3.0, 3.0]


# --------------------------------------------------------------------------------------------
# Hostile input and errors


def test_hostile_names_and_values(ckstore_bin, store):
    with Pusher("bad", store=store, binary=ckstore_bin) as pusher:
        with pytest.raises(ValueError, match="same name"):
            pusher.push(1, {"a.b": torch.zeros(1), "a": {"b": torch.zeros(1)}})
        with pytest.raises(ValueError, match="reserved"):
            pusher.push(1, {"__metadata__": torch.zeros(1)})
        with pytest.raises(TypeError, match="complex"):
            pusher.push(1, {"c": torch.zeros(2, dtype=torch.complex128)})
        with pytest.raises(TypeError, match="x"):
            pusher.push(1, {"x": object()})
        assert pusher.push(1, {"ok": torch.zeros(1)}).result().startswith("sha256:")
    with pytest.raises(ValueError, match="reserved"):
        Pusher("bad", store=store, binary=ckstore_bin, metadata={"ckstore.tree": "{}"})


def test_unflatten_rejects_a_hostile_tree():
    t = {"w": torch.zeros(1)}
    for tree in ["not json", "[1, 2]", '{"d": [["w", 5]]}', '{"d": [[["x"], null]]}', "[" * 100000 + "]" * 100000,
                 '{"d": [["w", null], ["v", null]]}', '{"d": []}']:
        with pytest.raises(ValueError, match="unflatten"):
            ckstore.unflatten(t, {"ckstore.tree": tree})
    # without a tree: dotted split, conflicts refused
    assert ckstore.unflatten({"a.b": 1, "a.c": 2}) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(ValueError, match="prefix"):
        ckstore.unflatten({"a": 1, "a.b": 2})


def test_torch_parse_rejects_bad_offsets():
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}).encode()
    buf = bytearray(struct.pack("<Q", len(header)) + header + bytes(16))
    from ckstore.load import parse_torch
    with pytest.raises(ValueError, match="data_offsets"):
        parse_torch(buf)


def test_missing_binary_says_how_to_build(monkeypatch, tmp_path):
    monkeypatch.delenv("CKSTORE_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="swift build"):
        Pusher("r")
    with pytest.raises(FileNotFoundError, match="CKSTORE_BIN"):
        load("r@1")


def test_parts_need_a_binary_with_parts(ckstore_bin, store):
    if ckstore.put_supports_parts(ckstore_bin):
        pytest.skip("this ckstore has put --parts: covered by the distributed tests")
    with pytest.raises(ckstore.UnsupportedByBinary, match="--parts"):
        Pusher("p", store=store, binary=ckstore_bin, rank=0, world_size=2)


def test_push_dir_needs_a_binary_that_stores_directories(ckstore_bin, store, tmp_path):
    if ckstore.put_supports_dirs(ckstore_bin):
        pytest.skip("this ckstore's put takes a directory: covered by test_torch_distributed.py::test_push_dir")
    with Pusher("p", store=store, binary=ckstore_bin) as pusher:
        with pytest.raises(ckstore.UnsupportedByBinary, match="push_dir"):
            pusher.push_dir(1, tmp_path)


def test_rank_arguments_are_checked(ckstore_bin, store):
    with pytest.raises(ValueError, match="rank 2"):
        Pusher("p", store=store, binary=ckstore_bin, rank=2, world_size=2)
    with pytest.raises(ValueError, match="per_rank"):
        Pusher("p", store=store, binary=ckstore_bin, per_rank=True)
    single = Pusher("p", store=store, binary=ckstore_bin, rank=0, world_size=1)
    assert single.placement.mode == "single" and single.placement.pushes
    single.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_tensors_push_through_pinned_staging(ckstore_bin, store):  # pragma: no cover - GPU only
    state = {"w": torch.randn(256, 256, device="cuda"), "b": torch.randn(64, device="cuda").bfloat16(),
             "t": torch.randn(8, 4, device="cuda").t()}
    push_one(store, ckstore_bin, "cuda", 1, state)
    got = load("cuda@1", store=store, binary=ckstore_bin, framework="torch", device="cuda")
    for name, t in state.items():
        assert got[name].device.type == "cuda"
        assert_identical(got[name].cpu(), t.cpu())
