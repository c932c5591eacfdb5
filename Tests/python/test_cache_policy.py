"""`cache_policy` through the CLI: second-hit (first request computed and not cached, second
cached, third served from the cache), always, never, a hostile value, a torn or corrupted
derived blob (recomputed with a warning), two processes asking for the same query at once, and a
read-only store (computes, caches nothing, writes nothing)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from cache_policy_support import NOBODY, store_outside_tmp, write_f32

RECIPE = ["--lawa", "k=2,stride=10", "--at", "20"]


def set_policy(store: str, value: str) -> None:
    """Writes `"cache_policy": VALUE` (VALUE as JSON text) into the store's config.json."""
    path = Path(store) / "config.json"
    config = json.loads(path.read_text())
    config["cache_policy"] = json.loads(value)
    path.write_text(json.dumps(config, indent=2))


def make_store(ckstore, tmp_path: Path, store: str, policy: str | None) -> None:
    ckstore("init")
    for step in (0, 10, 20):
        f = tmp_path / f"s{step}.safetensors"
        write_f32(f, step)
        ckstore("put", "--run", "r", "--step", str(step), str(f))
    if policy is not None:
        set_policy(store, json.dumps(policy))


def derived(ckstore) -> list[dict]:
    return json.loads(ckstore("ls", "--derived", "--json").stdout)["derived"]


def objects(store: str) -> set[Path]:
    return {p for p in (Path(store) / "objects").rglob("*") if p.is_file()}


def derived_digest(stderr: str) -> str | None:
    m = re.search(r"derived sha256:([0-9a-f]{12})", stderr)
    return m.group(1) if m else None


def test_second_hit_caches_on_the_second_request_and_serves_the_third(tmp_path, store, ckstore):
    make_store(ckstore, tmp_path, store, "second-hit")
    outs = [tmp_path / f"o{i}.safetensors" for i in range(3)]
    first = ckstore("get", *RECIPE, "-o", str(outs[0]))
    assert "computed" in first.stderr and derived_digest(first.stderr) is None
    assert derived(ckstore) == []
    second = ckstore("get", *RECIPE, "-o", str(outs[1]))
    assert "computed" in second.stderr and derived_digest(second.stderr) is not None
    assert [d["recipe"] for d in derived(ckstore)] == ["lawa run=r k=2 stride=10 at=20"]
    third = ckstore("get", *RECIPE, "-o", str(outs[2]))
    assert "from the cache" in third.stderr
    assert outs[0].read_bytes() == outs[1].read_bytes() == outs[2].read_bytes()
    assert (Path(store) / "cache-requests").stat().st_size <= 4096 * 32


def test_always_caches_the_first_request(tmp_path, store, ckstore):
    # An absent key means second-hit now: test_cache_requests_hostile.py checks it.
    make_store(ckstore, tmp_path, store, "always")
    first = ckstore("get", *RECIPE, "-o", str(tmp_path / "a"))
    assert derived_digest(first.stderr) is not None
    assert "from the cache" in ckstore("get", *RECIPE, "-o", str(tmp_path / "b")).stderr


def test_never_neither_stores_nor_serves(tmp_path, store, ckstore):
    make_store(ckstore, tmp_path, store, "never")
    for name in ("a", "b", "c"):
        proc = ckstore("get", *RECIPE, "-o", str(tmp_path / name))
        assert "computed" in proc.stderr and derived_digest(proc.stderr) is None
    assert derived(ckstore) == []
    assert not (Path(store) / "cache-requests").exists()


@pytest.mark.parametrize("value", ['"sometimes"', '"Second-Hit"', "true", "[]", '"always "'])
def test_a_hostile_value_is_one_clear_error_and_nothing_changes(tmp_path, store, ckstore, value):
    make_store(ckstore, tmp_path, store, None)
    set_policy(store, value)
    proc = ckstore("get", *RECIPE, "-o", str(tmp_path / "a"), check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckstore: error: ") and "config.json: cache_policy: " in lines[0]
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "remove"])
def test_a_torn_or_corrupted_derived_blob_is_recomputed_with_a_warning(tmp_path, store, ckstore, damage):
    make_store(ckstore, tmp_path, store, "second-hit")
    before = objects(store)
    ckstore("get", *RECIPE, "-o", str(tmp_path / "a"))
    assert objects(store) == before, "a first request under second-hit writes no blob"
    ckstore("get", *RECIPE, "-o", str(tmp_path / "b"))
    new_blobs = objects(store) - before
    assert new_blobs
    for blob in new_blobs:
        blob.chmod(0o644)
        if damage == "truncate":
            os.truncate(blob, blob.stat().st_size // 2)
        elif damage == "flip":
            data = bytearray(blob.read_bytes())
            data[len(data) // 2] ^= 0x01
            blob.write_bytes(bytes(data))
        else:
            blob.unlink()
    again = ckstore("get", *RECIPE, "-o", str(tmp_path / "c"))
    assert "ckstore: warning: dropped the cached result" in again.stderr and "recomputing" in again.stderr
    assert (tmp_path / "c").read_bytes() == (tmp_path / "a").read_bytes()
    served = ckstore("get", *RECIPE, "-o", str(tmp_path / "d"))
    assert "from the cache" in served.stderr and "warning" not in served.stderr
    assert (tmp_path / "d").read_bytes() == (tmp_path / "a").read_bytes()
    assert ckstore("fsck", check=False).returncode == 0


def test_two_processes_asking_at_once_both_answer_and_the_cache_stays_sound(tmp_path, store, ckstore, ckstore_bin):
    make_store(ckstore, tmp_path, store, "second-hit")
    expected = None
    for round_ in range(3):
        procs = [
            subprocess.Popen(
                [ckstore_bin, "--store", store, "get", *RECIPE, "-o", str(tmp_path / f"p{round_}-{i}")],
                stderr=subprocess.PIPE)
            for i in range(2)
        ]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
            assert b"warning" not in err
        for i in range(2):
            data = (tmp_path / f"p{round_}-{i}").read_bytes()
            expected = expected or data
            assert data == expected
    # Six requests: at least one of them found an earlier note and cached the result.
    assert [d["recipe"] for d in derived(ckstore)] == ["lawa run=r k=2 stride=10 at=20"]
    assert "from the cache" in ckstore("get", *RECIPE, "-o", str(tmp_path / "z")).stderr
    assert ckstore("fsck").returncode == 0


def test_a_read_only_store_computes_and_writes_nothing(ckstore_bin):
    with store_outside_tmp(ckstore_bin, "ckstore-cache-ro-") as (store, run):
        set_policy(str(store), '"second-hit"')
        before = sorted(str(p.relative_to(store)) for p in store.rglob("*"))
        outs = []
        for i in range(3):
            proc = run("get", *RECIPE, "-o", "-", user=NOBODY)
            if i == 0 and proc.returncode != 0 and b"Permission denied" in proc.stderr:
                pytest.skip(f"user nobody cannot run ckstore here: {proc.stderr!r}")
            assert proc.returncode == 0, proc.stderr
            assert b"computed" in proc.stderr and b"derived sha256" not in proc.stderr
            outs.append(proc.stdout)
        assert outs[0] == outs[1] == outs[2] and len(outs[0]) > 0
        assert sorted(str(p.relative_to(store)) for p in store.rglob("*")) == before
        assert not (store / "cache-requests").exists()
