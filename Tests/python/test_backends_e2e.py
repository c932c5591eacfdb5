"""End to end through the CLI on the distributed configuration: PostgreSQL metadata and S3 blobs,
``ckstore --store 'postgres://user@host:port/db?blobs=s3://bucket/prefix' …`` (issue 10).

Each test gets a fresh database and bucket (backends.py, :func:`dist_store`) and skips loudly when
the live servers are not configured (Tools/test.sh as root starts them) or the binary has no
such backend yet.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from backends import (  # noqa: F401  (fixtures)
    assert_matches_reference,
    dist_store,
    dist_store_factory,
    reference_lawa,
    write_snapshot,
)


def put(store, run: str, step: int, path: Path, *extra: str, check: bool = True):
    return store.run("put", "--run", run, "--step", str(step), *extra, str(path), check=check)


def digest_of(result) -> str:
    text = result.text.strip()
    assert text.startswith("sha256:") and len(text) == 71, result.describe()
    return text


def test_put_get_idempotent_conflict_force_ls_show(dist_store, tmp_path):
    store = dist_store
    store.run("init")
    assert store.s3.bucket_exists(store.bucket), "init did not create the bucket"
    data1 = write_snapshot(tmp_path / "s1.st", "r", 1)
    data2 = write_snapshot(tmp_path / "s2.st", "r", 2)

    first = put(store, "r", 1, tmp_path / "s1.st")
    d1 = digest_of(first)
    assert store.get_bytes("r@1") == data1  # byte-exact through S3
    keys_after_first = set(store.blob_keys())
    assert keys_after_first, "put wrote no blob object to the bucket"

    again = put(store, "r", 1, tmp_path / "s1.st")
    assert digest_of(again) == d1 and "unchanged" in again.stderr, again.describe()
    assert set(store.blob_keys()) == keys_after_first, "an idempotent re-put uploaded blobs"

    conflict = put(store, "r", 1, tmp_path / "s2.st", check=False)
    assert conflict.returncode == 1 and "--force" in conflict.stderr, conflict.describe()
    assert store.get_bytes("r@1") == data1, "a refused put changed the snapshot"

    forced = put(store, "r", 1, tmp_path / "s2.st", "--force")
    assert digest_of(forced) != d1
    assert store.get_bytes("r@1") == data2
    # The embedding is shared: the forced put found it as a dedup hit.
    assert "dedup hit" in forced.stderr and " 0 dedup hits" not in forced.stderr, forced.describe()

    put(store, "r", 2, tmp_path / "s2.st")
    put(store, "other", 5, tmp_path / "s1.st")
    runs = store.json("ls")
    listed = json.dumps(runs)
    assert '"r"' in listed and '"other"' in listed, listed
    assert store.steps("r") == {1: digest_of(forced), 2: digest_of(forced)}
    assert store.steps("other") == {5: d1}
    shown = store.json("show", "r@2")
    text = json.dumps(shown)
    for name in ("emb", "layer.w", "layer.b", "step"):
        assert f'"{name}"' in text, f"show r@2 does not list tensor {name}: {text[:500]}"
    plain = store.run("show", "other@5")
    assert "layer.w" in plain.text and "F16" in plain.text, plain.describe()
    store.assert_fsck_clean("--full")


def test_lawa_k3_bit_exact_cached_gc_keep_policies_rm(dist_store, tmp_path):
    store = dist_store
    store.run("init")
    files = {}
    for step in range(0, 70, 10):
        files[step] = tmp_path / f"s{step}.st"
        write_snapshot(files[step], "r", step)
        put(store, "r", step, files[step])

    out = tmp_path / "lawa.st"
    first = store.run("get", "--run", "r", "--lawa", "k=3,stride=10", "--at", "60", "-o", str(out))
    assert "computed from 3 inputs" in first.stderr, first.describe()
    expected = reference_lawa([files[40], files[50], files[60]])
    assert_matches_reference(out.read_bytes(), expected, "LAWA k=3 at 60")
    computed = out.read_bytes()
    second = store.run("get", "--run", "r", "--lawa", "k=3,stride=10", "--at", "60", "-o", str(out))
    assert "from the cache" in second.stderr, second.describe()
    assert out.read_bytes() == computed
    derived = store.json("ls", "--derived")
    assert "lawa" in json.dumps(derived), derived

    # --keep-last 2 on top of --keep-lawa k=3: the union is 40, 50, 60 (and the newest two).
    dry = store.json("gc", "--keep-last", "2", "--keep-lawa", "k=3,stride=10", "--dry-run")
    assert sorted(s["step"] for s in dry["removed_snapshots"]) == [0, 10, 20, 30], dry
    assert sorted(store.steps("r")) == [0, 10, 20, 30, 40, 50, 60], "--dry-run changed the store"
    keys_before = set(store.blob_keys())
    report = store.json("gc", "--keep-last", "2", "--keep-lawa", "k=3,stride=10", "--keep-derived")
    assert sorted(s["step"] for s in report["removed_snapshots"]) == [0, 10, 20, 30], report
    assert sorted(store.steps("r")) == [40, 50, 60]
    keys_after = set(store.blob_keys())
    assert keys_after < keys_before, "gc deleted no S3 object for the removed snapshots"
    assert report["removed_files"] == len(keys_before - keys_after), (report, len(keys_before - keys_after))
    for step in (40, 50, 60):
        assert store.get_bytes(f"r@{step}") == files[step].read_bytes()
    again = store.run("get", "--run", "r", "--lawa", "k=3,stride=10", "--at", "60", "-o", str(out))
    assert "from the cache" in again.stderr and out.read_bytes() == computed, again.describe()

    # --keep-last 1 alone: only 60 stays; plain gc then drops the cached average too.
    store.json("gc", "--keep-last", "1", "--keep-derived")
    assert sorted(store.steps("r")) == [60]
    store.run("gc")
    assert "lawa" not in json.dumps(store.json("ls", "--derived"))

    # rm: the last snapshot of a run, then its blobs are gone from the bucket.
    store.run("rm", "r@60")
    assert store.steps("r") == {}
    missing = store.run("get", "r@60", "-o", str(out), check=False)
    assert missing.returncode == 1, missing.describe()
    store.run("gc")
    assert store.blob_keys() == [], f"blobs left after removing every snapshot: {store.blob_keys()[:5]}"
    store.assert_fsck_clean(orphans=0)


def test_fsck_names_the_snapshot_of_a_deleted_s3_object_and_reput_repairs(dist_store, tmp_path):
    store = dist_store
    store.run("init")
    a = write_snapshot(tmp_path / "a.st", "r", 1)
    put(store, "r", 1, tmp_path / "a.st")
    keys_a = set(store.blob_keys())
    b = write_snapshot(tmp_path / "b.st", "r", 2)
    put(store, "r", 2, tmp_path / "b.st")
    only_b = sorted(set(store.blob_keys()) - keys_a)
    assert only_b, "snapshot r@2 shares every blob with r@1: the generator must change a tensor"
    store.assert_fsck_clean()
    store.assert_fsck_clean("--full")

    store.s3.delete_object(store.bucket, only_b[0])  # damage behind ckstore's back
    result, report = store.fsck_json()
    assert result.returncode == 3, f"fsck did not report the deleted object:\n{result.describe()}"
    damaged = [(s["run"], s["step"]) for d in report["damaged_snapshots"] for s in d["snapshots"]]
    assert damaged == [("r", 2)], report["damaged_snapshots"]
    assert report["damaged_snapshots"][0]["missing_blobs"] >= 1, report
    human = store.run("fsck", check=False)
    assert human.returncode == 3 and "r@2" in human.text + human.stderr, human.describe()
    broken = store.run("get", "r@2", "-o", str(tmp_path / "out.st"), check=False)
    assert broken.returncode == 3 and not (tmp_path / "out.st").exists(), broken.describe()
    assert store.get_bytes("r@1") == a, "the undamaged snapshot must still read back"

    repaired = put(store, "r", 2, tmp_path / "b.st")  # re-put rewrites the missing blob
    assert repaired.returncode == 0
    assert only_b[0] in store.blob_keys()
    store.assert_fsck_clean("--full")
    assert store.get_bytes("r@2") == b


def test_watch_exec_two_lawa_steps_then_metric_and_ls(dist_store, tmp_path):
    store = dist_store
    store.run("init")
    outdir = tmp_path / "evaluated"
    outdir.mkdir()
    # The evaluator copies each average and records a metric for its step and variant.
    cmd = (f'cp "{{path}}" "{outdir}/lawa-{{step}}.st" && '
           f'"{store.binary}" --store "$CKSTORE_LOCATION" metric "{{run}}@{{step}}" val_loss=0.{{step}} --variant "{{variant}}"')
    import subprocess

    watch = subprocess.Popen(
        store.command(["watch", "--run", "r", "--lawa", "k=3,stride=10", "--exec", cmd, "--until", "30",
                       "--poll", "0.1", "--idle-exit", "60"]),
        cwd=str(store.workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "CKSTORE_LOCATION": store.location})
    try:
        files = {}
        for step in (0, 10, 20, 30):
            files[step] = tmp_path / f"s{step}.st"
            write_snapshot(files[step], "r", step)
            put(store, "r", step, files[step])
            time.sleep(0.2)
        out, err = watch.communicate(timeout=90)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    assert watch.returncode == 0, f"watch exited {watch.returncode}:\n{err.decode(errors='replace')}\n{out.decode(errors='replace')}"
    produced = sorted(p.name for p in outdir.iterdir())
    assert produced == ["lawa-20.st", "lawa-30.st"], (produced, err.decode(errors="replace"))
    for step in (20, 30):
        expected = reference_lawa([files[step - 20], files[step - 10], files[step]])
        assert_matches_reference((outdir / f"lawa-{step}.st").read_bytes(), expected, f"watch LAWA at {step}")

    store.run("metric", "r@30", "val_loss=0.25")
    listing = store.json("ls", "--run", "r")
    text = json.dumps(listing)
    assert "lawa-k3-s10" in text and "val_loss" in text and "0.25" in text, text
    assert sorted(s["step"] for s in listing["snapshots"]) == [0, 10, 20, 30]
    store.assert_fsck_clean()


def test_copy_local_to_distributed_and_back(dist_store, tmp_path, ckstore_bin):
    import subprocess

    def local(store_dir: Path, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([ckstore_bin, "--store", str(store_dir), *args], capture_output=True)
        assert proc.returncode == 0, f"ckstore {' '.join(args)}: {proc.stderr.decode(errors='replace')}"
        return proc

    src = tmp_path / "src-store"
    originals = {}
    for step in (1, 2, 3):
        originals[step] = write_snapshot(tmp_path / f"s{step}.st", "train", step)
        local(src, "put", "--run", "train", "--step", str(step), str(tmp_path / f"s{step}.st"))
    local(src, "metric", "train@3", "loss=0.5")

    pushed = json.loads(subprocess.run([ckstore_bin, "copy", "--from", str(src), "--to", dist_store.location, "--json"],
                                       capture_output=True, check=True, cwd=str(dist_store.workdir)).stdout)
    assert pushed["snapshots_copied"] == 3 and pushed["blobs_copied"] >= 4, pushed
    assert len(dist_store.blob_keys()) == pushed["blobs_copied"]
    for step, data in originals.items():
        assert dist_store.get_bytes(f"train@{step}") == data
    dist_store.assert_fsck_clean("--full")
    again = json.loads(subprocess.run([ckstore_bin, "copy", "--from", str(src), "--to", dist_store.location, "--json"],
                                      capture_output=True, check=True).stdout)
    assert again["snapshots_unchanged"] == 3 and again["blobs_copied"] == 0 and again["snapshots_copied"] == 0, again

    back = tmp_path / "back-store"
    pulled = json.loads(subprocess.run([ckstore_bin, "copy", "--from", dist_store.location, "--to", str(back),
                                        "--run", "train", "--json"], capture_output=True, check=True).stdout)
    assert pulled["snapshots_copied"] == 3 and pulled["blobs_copied"] == pushed["blobs_copied"], pulled
    for step, data in originals.items():
        assert local(back, "get", f"train@{step}", "-o", "-").stdout == data
    assert "0.5" in local(back, "ls", "--run", "train", "--json").stdout.decode()
    local(back, "fsck", "--full")
    # Both directions agree on every digest.
    src_ls = json.loads(local(src, "ls", "--run", "train", "--json").stdout)["snapshots"]
    back_ls = json.loads(local(back, "ls", "--run", "train", "--json").stdout)["snapshots"]
    assert [s["digest"] for s in src_ls] == [s["digest"] for s in back_ls]
    print(f"copy round trip: {pushed['blobs_copied']} blobs pushed, 0 on the second push", file=sys.stderr)
