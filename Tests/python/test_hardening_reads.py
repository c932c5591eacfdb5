"""Hardening of the read paths (issue 9): consistent reads racing ``put --force`` (item 13),
cached averages checked against their query (item 11) and repaired when damaged (item 17, for
``get`` and ``watch``), ``--mean`` weights that overflow (item 10), and metrics that follow the
content they were measured on (item 12).

Knob: ``CKSTORE_STRESS_RACE_SECONDS`` (default 10) is the duration of the put --force race.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from reliability_support import CK, env_float, write_safetensors
from cache_policy_support import cache_first_requests

LAWA = ("--lawa", "k=2,stride=10")


def tensors(seed: int, n: int = 4096) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a.weight": rng.standard_normal(n).astype(np.float32), "b.bias": rng.standard_normal(n // 4).astype(np.float32)}


def setup_run(ck: CK, tmp: Path, steps=(0, 10, 20), run: str = "r") -> dict[int, Path]:
    files = {}
    for s in steps:
        f = tmp / f"{run}-{s}.safetensors"
        write_safetensors(f, tensors(1000 + s))
        ck.run("put", "--run", run, "--step", str(s), str(f))
        files[s] = f
    return files


def get_bytes(ck: CK, *args: str) -> bytes:
    return ck.run("get", *args, "-o", "-").stdout


def db(store: str) -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(store, "ckstore.db"))


def derived_blobs(store: str, recipe: str) -> list[str]:
    """The blob hashes (hex) of the derived snapshot cached for `recipe`."""
    with db(store) as c:
        rows = c.execute(
            "SELECT DISTINCT hex(c.hash) FROM derived d JOIN tensor_chunks tc ON tc.manifest_id = d.manifest_id "
            "JOIN chunks c ON c.id = tc.chunk_id WHERE d.recipe = ?", (recipe,)).fetchall()
    return [r[0].lower() for r in rows]


def blob_file(store: str, hexname: str) -> Path:
    return Path(store) / "objects" / hexname[:2] / hexname


def derived_recipes(store: str) -> list[str]:
    with db(store) as c:
        return [r[0] for r in c.execute("SELECT recipe FROM derived ORDER BY recipe")]


def damage(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    else:
        os.chmod(path, 0o644)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x5A  # same size, wrong bytes
        path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------
# Item 13: readers racing put --force


def test_readers_racing_put_force_never_see_a_false_not_found(ckstore_bin, tmp_path):
    store = str(tmp_path / "store")
    ck = CK(ckstore_bin, store)
    setup_run(ck, tmp_path, steps=(0, 10))
    versions = []
    for v, seed in enumerate((7, 8)):
        f = tmp_path / f"v{v}.safetensors"
        write_safetensors(f, tensors(seed))
        versions.append(f)
    valid_plain, valid_lawa = set(), set()
    for f in versions:
        ck.run("put", "--run", "r", "--step", "20", "--force", str(f))
        valid_plain.add(f.read_bytes())
        valid_lawa.add(get_bytes(ck, *LAWA, "--at", "20", "--no-cache"))
    assert get_bytes(ck, "r@20") in valid_plain and len(valid_plain) == 2 and len(valid_lawa) == 2

    duration = env_float("CKSTORE_STRESS_RACE_SECONDS", 10.0)
    deadline = time.monotonic() + duration
    failures: list[str] = []
    counts = {"put": 0, "plain": 0, "lawa": 0, "lawa-nocache": 0}
    lock = threading.Lock()

    def writer():
        i = 0
        while time.monotonic() < deadline:
            r = ck.run("put", "--run", "r", "--step", "20", "--force", "--quiet", str(versions[i % 2]), check=False)
            with lock:
                counts["put"] += 1
                if r.returncode != 0:
                    failures.append(r.describe())
            i += 1

    def reader(kind: str, args: tuple[str, ...], valid: set[bytes]):
        while time.monotonic() < deadline:
            r = ck.run("get", *args, "-o", "-", "--quiet", check=False)
            with lock:
                counts[kind] += 1
                if r.returncode != 0:
                    failures.append(r.describe())
                elif r.stdout not in valid:
                    failures.append(f"{kind}: output ({len(r.stdout)} bytes) is none of the valid contents")

    threads = [threading.Thread(target=writer),
               threading.Thread(target=reader, args=("plain", ("r@20",), valid_plain)),
               threading.Thread(target=reader, args=("lawa", (*LAWA, "--at", "20"), valid_lawa)),
               threading.Thread(target=reader, args=("lawa-nocache", (*LAWA, "--at", "20", "--no-cache"), valid_lawa))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 120)
    print(f"put --force race, {duration:.0f} s: {counts}, {len(failures)} failures")
    not_found = [f for f in failures if "does not exist" in f or "exited 1" in f]
    assert not failures, f"{len(failures)} failures ({len(not_found)} not-found) in {counts}:\n" + "\n".join(failures[:5])
    assert counts["put"] >= 5 and min(counts["plain"], counts["lawa"], counts["lawa-nocache"]) >= 5, counts
    ck.fsck()


# ---------------------------------------------------------------------------------------------
# Item 10: --mean weights


def test_overflowing_or_invalid_mean_weights_are_bad_input_and_cache_nothing(ckstore_bin, tmp_path):
    store = str(tmp_path / "store")
    ck = CK(ckstore_bin, store)
    setup_run(ck, tmp_path, steps=(0, 10))
    cases = {
        "1e308,1e308": "weight 2",  # each finite, the sum overflows: was an all-zero model, exit 0
        "1,inf": "weight 2",
        "nan,1": "weight 1",
        "-1,2": "weight 1",
        "0,0": "all be zero",
    }
    for weights, named in cases.items():
        r = ck.run("get", "--mean", "r@0,r@10", "--weights", weights, "-o", str(tmp_path / "out.safetensors"), check=False)
        assert r.returncode == 1, f"--weights {weights}: {r.describe()}"
        assert named in r.stderr and r.stderr.startswith("ckstore: error:"), f"--weights {weights}: {r.stderr}"
        assert not (tmp_path / "out.safetensors").exists()
    assert derived_recipes(store) == []
    # Large but summable weights still work (only the ratio matters).
    out = get_bytes(ck, "--mean", "r@0,r@10", "--weights", "1e307,1e307")
    assert out == get_bytes(ck, "--mean", "r@0,r@10", "--weights", "1,1", "--no-cache")


# ---------------------------------------------------------------------------------------------
# Item 11: a cached average is checked against its query


def test_cached_average_pointing_at_another_recipe_is_dropped_and_recomputed(ckstore_bin, tmp_path):
    store = str(tmp_path / "store")
    ck = CK(ckstore_bin, store)
    setup_run(ck, tmp_path)
    cache_first_requests(store)  # a test of the cache itself
    expected20 = get_bytes(ck, *LAWA, "--at", "20", "--no-cache")
    get_bytes(ck, *LAWA, "--at", "20")
    get_bytes(ck, *LAWA, "--at", "10")
    r20, r10 = "lawa run=r k=2 stride=10 at=20", "lawa run=r k=2 stride=10 at=10"
    with db(store) as c:
        c.execute("UPDATE derived SET manifest_id = (SELECT manifest_id FROM derived WHERE recipe = ?) WHERE recipe = ?", (r10, r20))
    fsck = ck.run("fsck", check=False)
    assert fsck.returncode == 3, fsck.describe()
    assert r20 in fsck.text + fsck.stderr and "ckstore.recipe" in fsck.text + fsck.stderr, fsck.describe()

    r = ck.run("get", *LAWA, "--at", "20", "-o", "-")
    assert r.stdout == expected20, "served the other recipe's cached result"
    assert "dropped the cached result" in r.stderr and "ckstore.recipe" in r.stderr, r.stderr
    assert "from the cache" not in r.stderr
    again = ck.run("get", *LAWA, "--at", "20", "-o", "-")
    assert again.stdout == expected20 and "from the cache" in again.stderr and "dropped" not in again.stderr
    ck.fsck()


def test_cached_average_whose_own_metadata_names_another_recipe_is_not_served(ckstore_bin, tmp_path):
    store = str(tmp_path / "store")
    ck = CK(ckstore_bin, store)
    setup_run(ck, tmp_path)
    cache_first_requests(store)  # a test of the cache itself
    expected = get_bytes(ck, *LAWA, "--at", "20", "--no-cache")
    get_bytes(ck, *LAWA, "--at", "20")
    # Rewrite the cached result's own metadata: its manifest header now names other inputs.
    with db(store) as c:
        (header,) = c.execute(
            "SELECT m.header FROM derived d JOIN manifests m ON m.id = d.manifest_id").fetchone()
        meta = json.loads(bytes(header))
        meta["__metadata__"]["ckstore.recipe"] = "lawa run=r k=2 stride=10 at=10"
        forged = json.dumps(meta, separators=(",", ":")).encode()
        c.execute("UPDATE manifests SET header = ? WHERE id = (SELECT manifest_id FROM derived)", (forged,))
    r = ck.run("get", *LAWA, "--at", "20", "-o", "-")
    assert r.stdout == expected and "dropped the cached result" in r.stderr, r.stderr


# ---------------------------------------------------------------------------------------------
# Item 17 (cache part): a damaged cached average is dropped and recomputed


def test_damaged_cached_average_is_recomputed_by_get(ckstore_bin, tmp_path):
    store = str(tmp_path / "store")
    ck = CK(ckstore_bin, store)
    setup_run(ck, tmp_path)
    cache_first_requests(store)  # a test of the cache itself
    expected = get_bytes(ck, *LAWA, "--at", "20", "--no-cache")
    recipe = "lawa run=r k=2 stride=10 at=20"
    for how in ("missing", "corrupt"):
        for target in ("file", "stdout"):
            get_bytes(ck, *LAWA, "--at", "20")  # cached
            blobs = derived_blobs(store, recipe)
            assert blobs
            damage(blob_file(store, blobs[0]), how)
            out = tmp_path / "avg.safetensors"
            if target == "file":
                r = ck.run("get", *LAWA, "--at", "20", "-o", str(out), check=False)
                data = out.read_bytes() if out.exists() else b""
            else:
                r = ck.run("get", *LAWA, "--at", "20", "-o", "-", check=False)
                data = r.stdout
            assert r.returncode == 0, f"{how} blob, {target}: {r.describe()}"
            assert data == expected, f"{how} blob, {target}: wrong output"
            assert "dropped the cached result" in r.stderr and blobs[0] in r.stderr, r.stderr
            # The recomputation repaired the cache: the next call is served from it, silently.
            again = ck.run("get", *LAWA, "--at", "20", "-o", "-")
            assert again.stdout == expected and "from the cache" in again.stderr and "dropped" not in again.stderr, again.stderr
            ck.fsck(full=True)
            if out.exists():
                out.unlink()


def test_damaged_cached_average_is_recomputed_by_watch(ckstore_bin, tmp_path):
    store = str(tmp_path / "store")
    ck = CK(ckstore_bin, store)
    setup_run(ck, tmp_path)
    cache_first_requests(store)  # a test of the cache itself
    expected = get_bytes(ck, *LAWA, "--at", "20", "--no-cache")
    get_bytes(ck, *LAWA, "--at", "20")
    blobs = derived_blobs(store, "lawa run=r k=2 stride=10 at=20")
    damage(blob_file(store, blobs[0]), "missing")
    outdir = tmp_path / "evaluated"
    outdir.mkdir()
    r = ck.run("watch", "--run", "r", *LAWA, "--from", "20", "--until", "20", "--poll", "0.1", "--idle-exit", "20",
               "--exec", f"cp {{path}} {outdir}/avg-{{step}}.safetensors", timeout=120, check=False)
    assert r.returncode == 0, r.describe()
    assert "error" not in r.stderr, r.stderr
    assert "dropped the cached result" in r.stderr, r.stderr
    produced = outdir / "avg-20.safetensors"
    assert produced.exists(), f"watch skipped step 20:\n{r.describe()}"
    assert produced.read_bytes() == expected
    ck.fsck(full=True)


# ---------------------------------------------------------------------------------------------
# Item 12: metrics belong to the content they were measured on


def metrics_at(ck: CK, run: str) -> dict[tuple[int, str, str], float]:
    listing = ck.json("ls", "--run", run)
    result = {}
    for s in listing["snapshots"]:
        for m in s["metrics"]:
            result[(s["step"], m.get("variant", "raw"), m["name"])] = m["value"]
    for m in listing.get("metrics", []):
        result[(m["step"], m.get("variant", "raw"), m["name"])] = m["value"]
    return result


def test_metrics_are_dropped_when_their_content_is_replaced_or_removed(ckstore_bin, tmp_path):
    store = str(tmp_path / "store")
    ck = CK(ckstore_bin, store)
    setup_run(ck, tmp_path, steps=(0, 10, 20, 30))
    ck.run("metric", "r@10", "val_loss=2.5", "acc=0.5")
    ck.run("metric", "r@20", "val_loss=2.0", "--variant", "lawa-k2-s10")  # inputs 10, 20: stale after 10 changes
    ck.run("metric", "r@30", "val_loss=1.9", "--variant", "lawa-k2-s10")  # inputs 20, 30: unaffected
    ck.run("metric", "r@30", "val_loss=1.8", "--variant", "swa")  # all steps ≤ 30: stale
    ck.run("metric", "r@20", "val_loss=2.1")  # raw metric of another step: unaffected
    other = tmp_path / "other.safetensors"
    write_safetensors(other, tensors(99))
    r = ck.run("put", "--run", "r", "--step", "10", "--force", str(other))
    assert "dropped 4 metric(s) measured on the old content" in r.stderr, r.stderr
    left = metrics_at(ck, "r")
    assert left == {(30, "lawa-k2-s10", "val_loss"): 1.9, (20, "raw", "val_loss"): 2.1}, left

    # rm + put: the metrics of the removed content do not come back with the new content.
    ck.run("metric", "r@10", "val_loss=3.5")
    r = ck.run("rm", "r@10")
    assert "dropped 1 metric(s) measured on the removed content" in r.text, r.describe()
    ck.run("put", "--run", "r", "--step", "10", str(tmp_path / "r-10.safetensors"))
    assert (10, "raw", "val_loss") not in metrics_at(ck, "r")

    # Identical content (no change) keeps them; put --metric on a replacement records the new value.
    ck.run("metric", "r@10", "val_loss=3.0")
    ck.run("put", "--run", "r", "--step", "10", str(tmp_path / "r-10.safetensors"))
    assert metrics_at(ck, "r")[(10, "raw", "val_loss")] == 3.0
    ck.run("put", "--run", "r", "--step", "10", "--force", "--metric", "val_loss=4.0", str(other))
    assert metrics_at(ck, "r")[(10, "raw", "val_loss")] == 4.0


def test_repaired_cache_blob_written_with_other_settings_keeps_its_row_consistent(ckstore_bin, tmp_path):
    """A damaged cached blob is rewritten with the store's current settings; when those give
    another file size, the surviving chunk row is corrected, so the repair holds."""
    store = str(tmp_path / "store")
    ck = CK(ckstore_bin, store)
    ck.init()
    setup_run(ck, tmp_path)
    cache_first_requests(store)  # a test of the cache itself
    expected = get_bytes(ck, *LAWA, "--at", "20", "--no-cache")
    get_bytes(ck, *LAWA, "--at", "20")  # cached with derived_compression "none"
    blob = derived_blobs(store, "lawa run=r k=2 stride=10 at=20")[0]
    before = blob_file(store, blob).stat().st_size
    config = Path(store) / "config.json"
    config.write_text(config.read_text().replace('"derived_compression": "none"', '"derived_compression": "lz4"'))
    blob_file(store, blob).unlink()
    r = ck.run("get", *LAWA, "--at", "20", "-o", "-")
    assert r.stdout == expected and "dropped the cached result" in r.stderr, r.stderr
    assert blob_file(store, blob).stat().st_size != before, "the scenario needs a different stored size"
    again = ck.run("get", *LAWA, "--at", "20", "-o", "-")
    assert again.stdout == expected and "from the cache" in again.stderr and "dropped" not in again.stderr, again.stderr
    ck.fsck(full=True)
