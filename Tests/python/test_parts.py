"""Parts (issue 11, "Parts: each rank pushes its own file"): `put --parts TOTAL --path REL` adds one
file to a pending snapshot that becomes visible, atomically and exactly once, when TOTAL distinct
paths are in. Hostile input first: bad REL, bad TOTAL, conflicts, a complete step; then
concurrency (4 processes, random order), a SIGKILL of one part's put mid-run, gc --pending and
pending_grace, ls --pending, and invisibility to get/ls/lawa with the "incomplete" message.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from safetensors_bytes import floats, safetensors


def rank_file(rank: int, step: int = 0, n: int = 256) -> bytes:
    return safetensors({f"layer.{rank}.weight": ("F32", [n], floats(n, 1000 * step + rank))})


def rank_path(rank: int, world: int) -> str:
    return f"rank-{rank:05d}-of-{world:05d}.safetensors"


def write_ranks(tmp_path: Path, world: int, step: int = 0) -> list[Path]:
    paths = []
    for r in range(world):
        p = tmp_path / f"s{step}-r{r}.safetensors"
        p.write_bytes(rank_file(r, step))
        paths.append(p)
    return paths


def put_part(ckstore, run: str, step: int, total: int, rel: str, src: str, *extra: str, check: bool = True, input=None):
    return ckstore("put", "--run", run, "--step", str(step), "--parts", str(total), "--path", rel, *extra, src,
                   check=check, input=input)


def digests(proc) -> list[str]:
    return proc.stdout.decode().split()


def pending(ckstore) -> list[dict]:
    return json.loads(ckstore("ls", "--pending", "--json").stdout)["pending"]


@pytest.fixture
def one_file(tmp_path: Path, ckstore) -> Path:
    """A store (created by a first put) and a small safetensors file."""
    p = tmp_path / "one.safetensors"
    p.write_bytes(rank_file(0))
    ckstore("put", "--run", "base", "--step", "0", str(p))
    return p


# --- hostile input ------------------------------------------------------------------------------

@pytest.mark.parametrize("rel", ["..", "../x", "a/../b", "/abs", "", "a//b", "a/", "./a", "a/./b"])
def test_unclean_paths_are_usage_errors_and_change_nothing(ckstore, one_file, rel):
    # (A NUL byte cannot pass through argv; PendingMetadataContractTests covers it.)
    r = put_part(ckstore, "r", 1, 2, rel, str(one_file), check=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("ckstore: error: put: --path")
    assert "not a clean relative path" in r.stderr
    assert pending(ckstore) == []


@pytest.mark.parametrize("total", ["0", "-1", "100001", "99999999999999999999999", "3.5", "x"])
def test_bad_totals_are_usage_errors(ckstore, one_file, total):
    r = ckstore("put", "--run", "r", "--step", "1", "--parts", total, "--path", "a.safetensors", str(one_file), check=False)
    assert r.returncode == 2, r.stderr
    assert "--parts" in r.stderr
    assert pending(ckstore) == []


def test_parts_without_path_and_path_without_parts_are_usage_errors(ckstore, one_file):
    r = ckstore("put", "--run", "r", "--step", "1", "--parts", "2", str(one_file), check=False)
    assert r.returncode == 2 and "--parts needs --path" in r.stderr
    r = ckstore("put", "--run", "r", "--step", "1", "--path", "a.safetensors", str(one_file), check=False)
    assert r.returncode == 2 and "--path is only used with --parts" in r.stderr
    r = ckstore("put", "--run", "r", "--step", "1", "--parts", "2", "--path", "a", "--metric", "loss=1", str(one_file), check=False)
    assert r.returncode == 2 and "--metric" in r.stderr
    assert pending(ckstore) == []


def test_total_mismatch_is_exit_1_and_keeps_the_pending_snapshot(ckstore, tmp_path, one_file):
    a, b = write_ranks(tmp_path, 2)
    first = put_part(ckstore, "r", 7, 2, rank_path(0, 2), str(a))
    r = put_part(ckstore, "r", 7, 3, rank_path(1, 2), str(b), check=False)
    assert r.returncode == 1
    assert "r@7 is pending with --parts 2" in r.stderr and "not --parts 3" in r.stderr
    [p] = pending(ckstore)
    assert p["total"] == 2 and [x["path"] for x in p["parts"]] == [rank_path(0, 2)]
    assert p["parts"][0]["digest"] == digests(first)[0]


def test_identical_reput_is_a_noop_and_a_conflicting_part_needs_force(ckstore, tmp_path, one_file):
    a, b, c = write_ranks(tmp_path, 3)
    d1 = digests(put_part(ckstore, "r", 1, 3, "x.safetensors", str(a)))
    again = put_part(ckstore, "r", 1, 3, "x.safetensors", str(a))
    assert digests(again) == d1 and "unchanged" in again.stderr
    r = put_part(ckstore, "r", 1, 3, "x.safetensors", str(b), check=False)
    assert r.returncode == 1 and "part 'x.safetensors' already holds" in r.stderr and "--force" in r.stderr
    assert [x["digest"] for x in pending(ckstore)[0]["parts"]] == d1
    forced = put_part(ckstore, "r", 1, 3, "x.safetensors", str(b), "--force")
    assert "replaced" in forced.stderr
    assert [x["digest"] for x in pending(ckstore)[0]["parts"]] == digests(forced)


def test_a_directory_as_a_part_is_refused(ckstore, tmp_path, one_file):
    r = put_part(ckstore, "r", 1, 2, "d", str(tmp_path), check=False)
    assert r.returncode == 1 and "is a directory" in r.stderr
    assert pending(ckstore) == []


def test_parts_of_a_complete_step_conflict_unless_force_which_replaces_on_completion(ckstore, tmp_path, one_file):
    a, b = write_ranks(tmp_path, 2, step=1)
    put_part(ckstore, "r", 5, 2, rank_path(0, 2), str(a))
    done = put_part(ckstore, "r", 5, 2, rank_path(1, 2), str(b))
    part_digest, snapshot = digests(done)
    # A retried put of a part the snapshot holds is a no-op naming the snapshot (exit 0).
    retried = put_part(ckstore, "r", 5, 2, rank_path(1, 2), str(b))
    assert digests(retried) == [part_digest, snapshot]
    # Other content for the complete step: refused, nothing pending.
    a2, b2 = write_ranks(tmp_path, 2, step=2)
    r = put_part(ckstore, "r", 5, 2, rank_path(0, 2), str(a2), check=False)
    assert r.returncode == 1 and "already a complete snapshot" in r.stderr and "--force" in r.stderr
    assert pending(ckstore) == []
    # --force: pending replacement; the old snapshot stays visible until the new set completes.
    put_part(ckstore, "r", 5, 2, rank_path(0, 2), str(a2), "--force")
    assert pending(ckstore)[0]["replaces"] is True
    ls = json.loads(ckstore("ls", "--run", "r", "--json").stdout)
    assert [s["digest"] for s in ls["snapshots"]] == [snapshot]
    new = put_part(ckstore, "r", 5, 2, rank_path(1, 2), str(b2))
    assert len(digests(new)) == 2 and digests(new)[1] != snapshot
    assert "replaced" in new.stderr
    ls = json.loads(ckstore("ls", "--run", "r", "--json").stdout)
    assert [s["digest"] for s in ls["snapshots"]] == [digests(new)[1]]
    out = tmp_path / "out"
    ckstore("get", "r@5", "-o", str(out))
    assert (out / rank_path(0, 2)).read_bytes() == a2.read_bytes()
    assert (out / rank_path(1, 2)).read_bytes() == b2.read_bytes()


# --- completion, concurrency, crash safety ------------------------------------------------------

def test_completion_prints_both_digests_and_the_tree_is_byte_exact(ckstore, tmp_path, one_file):
    files = write_ranks(tmp_path, 3)
    cfg = json.dumps({"world_size": 3}).encode()
    outs = []
    for r, f in enumerate(files):
        outs.append(put_part(ckstore, "r", 100, 4, rank_path(r, 3), str(f)))
    assert all(len(digests(o)) == 1 for o in outs)
    last = put_part(ckstore, "r", 100, 4, "meta/config.json", "-", input=cfg)  # opaque part from a pipe
    part, snap = digests(last)
    assert "snapshot complete (4 parts)" in last.stderr
    j = json.loads(ckstore("ls", "--run", "r", "--json").stdout)
    assert [s["digest"] for s in j["snapshots"]] == [snap]
    out = tmp_path / "tree"
    ckstore("get", "r@100", "-o", str(out))
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    want = {rank_path(r, 3): f.read_bytes() for r, f in enumerate(files)} | {"meta/config.json": cfg}
    assert got == want
    # Each part's printed digest is the file's digest within the tree.
    show = json.loads(ckstore("show", "r@100", "--json").stdout)
    assert part in json.dumps(show)
    assert pending(ckstore) == []


def test_json_output_names_the_part_and_the_completed_snapshot(ckstore, tmp_path, one_file):
    a, b = write_ranks(tmp_path, 2, step=3)
    first = json.loads(put_part(ckstore, "j", 1, 2, rank_path(0, 2), str(a), "--json").stdout)
    assert first["part"] == "added" and first["present"] == 1 and first["total"] == 2
    assert first["complete"] is False and first["snapshot"] is None and first["path"] == rank_path(0, 2)
    last = json.loads(put_part(ckstore, "j", 1, 2, rank_path(1, 2), str(b), "--json").stdout)
    assert last["complete"] is True and last["snapshot"]["outcome"] == "created"
    snaps = json.loads(ckstore("ls", "--run", "j", "--json").stdout)["snapshots"]
    assert [s["digest"] for s in snaps] == [last["snapshot"]["digest"]]
    assert last["digest"] != last["snapshot"]["digest"]


def test_four_concurrent_processes_in_random_order_complete_exactly_once(ckstore_bin, store, ckstore, tmp_path, one_file):
    world = 4
    for step in range(3):
        files = write_ranks(tmp_path, world, step)
        order = list(range(world))
        random.Random(step).shuffle(order)
        procs = []
        for r in order:
            procs.append(subprocess.Popen(
                [ckstore_bin, "--store", store, "put", "--run", "ddp", "--step", str(step), "--parts", str(world),
                 "--path", rank_path(r, world), str(files[r])], stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            time.sleep(random.Random(step * 10 + r).uniform(0, 0.02))
        results = [(p.wait(timeout=120), p.stdout.read().decode().split(), p.stderr.read().decode()) for p in procs]
        assert all(rc == 0 for rc, _, _ in results), results
        completing = [out for _, out, _ in results if len(out) == 2]
        assert len(completing) == 1, results
        j = json.loads(ckstore("ls", "--run", "ddp", "--json").stdout)
        assert [s["digest"] for s in j["snapshots"] if s["step"] == step] == [completing[0][1]]
    assert pending(ckstore) == []
    assert ckstore("fsck").returncode == 0


def test_sigkill_of_one_part_put_loses_no_acknowledged_part(ckstore_bin, store, ckstore, tmp_path, one_file):
    world = 4
    files = write_ranks(tmp_path, world)
    big = tmp_path / "big.safetensors"
    big.write_bytes(safetensors({"layer.3.weight": ("F32", [8 << 20], random.Random(3).randbytes(32 << 20))}))
    files[3] = big
    acknowledged = {}
    for r in (1, 0, 2):
        acknowledged[rank_path(r, world)] = digests(put_part(ckstore, "run", 9, world, rank_path(r, world), str(files[r])))[0]
    killed_mid_put = 0
    for attempt in range(4):
        p = subprocess.Popen([ckstore_bin, "--store", store, "put", "--run", "run", "--step", "9", "--parts", str(world),
                              "--path", rank_path(3, world), str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.05 + 0.1 * attempt)
        p.send_signal(signal.SIGKILL)
        rc = p.wait(timeout=60)
        if rc != -signal.SIGKILL:
            break  # the put finished before the kill: it completed the snapshot
        killed_mid_put += 1
        [pend] = pending(ckstore)
        assert {x["path"]: x["digest"] for x in pend["parts"]} == acknowledged
        assert ckstore("get", "run@9", "-o", str(tmp_path / "nope"), check=False).returncode != 0
    assert killed_mid_put >= 1, "no kill landed inside the put (machine too fast for the timing)"
    # The re-pushed part completes the snapshot; every part is byte-exact.
    if pending(ckstore):
        done = put_part(ckstore, "run", 9, world, rank_path(3, world), str(big))
        assert len(digests(done)) == 2
    out = tmp_path / "out"
    ckstore("get", "run@9", "-o", str(out))
    for r in range(world):
        assert (out / rank_path(r, world)).read_bytes() == files[r].read_bytes()
    assert ckstore("fsck").returncode == 0
    ckstore("gc")
    assert ckstore("fsck", "--full").returncode == 0


# --- visibility, ls --pending, gc ---------------------------------------------------------------

def test_pending_is_invisible_to_get_ls_and_lawa_says_which_step_is_incomplete(ckstore, tmp_path, one_file):
    for step in (10, 20):
        p = tmp_path / f"full{step}.safetensors"
        p.write_bytes(rank_file(0, step))
        ckstore("put", "--run", "r", "--step", str(step), str(p))
    files = write_ranks(tmp_path, 8, step=30)
    for r in (0, 3, 5):
        put_part(ckstore, "r", 30, 8, rank_path(r, 8), str(files[r]))
    j = json.loads(ckstore("ls", "--run", "r", "--json").stdout)
    assert [s["step"] for s in j["snapshots"]] == [10, 20]
    g = ckstore("get", "r@30", "-o", str(tmp_path / "x"), check=False)
    assert g.returncode == 1 and not (tmp_path / "x").exists()
    assert "r@30 is not a snapshot yet: 3 of 8 parts" in g.stderr
    latest = ckstore("show", "r@latest", "--json")
    assert "30" not in json.dumps(json.loads(latest.stdout).get("ref", ""))
    lawa = ckstore("get", "--run", "r", "--lawa", "k=3,stride=10", "--at", "30", "-o", str(tmp_path / "l.safetensors"), check=False)
    assert lawa.returncode == 1
    assert "step 30 is incomplete: 3 of 8 parts" in lawa.stderr
    assert rank_path(3, 8) in lawa.stderr  # present
    assert rank_path(7, 8) in lawa.stderr  # inferred missing
    assert not (tmp_path / "l.safetensors").exists()


def test_ls_pending_lists_parts_and_age(ckstore, tmp_path, one_file):
    files = write_ranks(tmp_path, 2)
    put_part(ckstore, "r", 1, 3, rank_path(1, 3), str(files[1]))
    put_part(ckstore, "r", 1, 3, rank_path(0, 3), str(files[0]))
    put_part(ckstore, "q", 2, 2, "a.bin", "-", input=b"\x00\x01opaque")
    j = pending(ckstore)
    assert [(p["run"], p["step"], p["present"], p["total"]) for p in j] == [("q", 2, 1, 2), ("r", 1, 2, 3)]
    assert [x["path"] for x in j[1]["parts"]] == [rank_path(0, 3), rank_path(1, 3)]  # sorted by path
    assert j[0]["parts"][0]["kind"] == "bytes" and j[0]["parts"][0]["size"] == 8
    assert 0 <= j[1]["age_seconds"] < 600
    runs = ckstore("ls")
    assert "2 pending snapshot(s) not listed" in runs.stderr and b"r@1" not in runs.stdout
    text = ckstore("ls", "--pending").stdout.decode()
    assert "r@1" in text and "2/3" in text and rank_path(1, 3) in text
    only = json.loads(ckstore("ls", "--pending", "--run", "q", "--json").stdout)["pending"]
    assert [p["ref"] for p in only] == ["q@2"]


def test_gc_keeps_young_pending_and_gc_pending_removes_it_and_its_blobs(ckstore, store, tmp_path, one_file):
    files = write_ranks(tmp_path, 2, step=5)  # content no snapshot shares
    put_part(ckstore, "r", 1, 2, rank_path(0, 2), str(files[0]))
    before = sum(1 for _ in Path(store, "objects").rglob("*") if _.is_file())
    ckstore("gc")
    assert len(pending(ckstore)) == 1, "younger than pending_grace: kept"
    assert ckstore("fsck").returncode == 0
    dry = json.loads(ckstore("gc", "--pending", "--dry-run", "--json").stdout)
    assert dry["removed_pending"] == ["r@1"] and len(pending(ckstore)) == 1
    out = json.loads(ckstore("gc", "--pending", "--json").stdout)
    assert out["removed_pending"] == ["r@1"] and out["removed_files"] >= 1
    assert pending(ckstore) == []
    after = sum(1 for _ in Path(store, "objects").rglob("*") if _.is_file())
    assert after < before
    assert ckstore("fsck", "--full").returncode == 0


def test_pending_grace_from_config(ckstore, store, tmp_path, one_file):
    cfg = Path(store, "config.json")
    conf = json.loads(cfg.read_text())
    conf["pending_grace"] = "1s"
    cfg.write_text(json.dumps(conf))
    files = write_ranks(tmp_path, 2)
    put_part(ckstore, "old", 1, 2, rank_path(0, 2), str(files[0]))
    time.sleep(1.5)
    put_part(ckstore, "young", 1, 2, rank_path(0, 2), str(files[1]))
    out = json.loads(ckstore("gc", "--json").stdout)
    assert out["removed_pending"] == ["old@1"]
    assert [p["ref"] for p in pending(ckstore)] == ["young@1"]
    for bad in ("-1", "\"24x\"", "\"h\"", "true"):
        conf["pending_grace"] = json.loads(bad)
        cfg.write_text(json.dumps(conf))
        r = ckstore("ls", "--pending", check=False)
        assert r.returncode == 1 and "pending_grace" in r.stderr


def test_rm_of_a_pending_step_removes_its_parts(ckstore, tmp_path, one_file):
    files = write_ranks(tmp_path, 2)
    put_part(ckstore, "r", 3, 2, rank_path(0, 2), str(files[0]))
    out = json.loads(ckstore("rm", "r@3", "--json").stdout)
    assert out["removed_pending"] == ["r@3"]
    assert pending(ckstore) == []
    r = ckstore("rm", "r@3", check=False)
    assert r.returncode != 0


# --- PostgreSQL metadata ------------------------------------------------------------------------

PG_URL = os.environ.get("CKSTORE_TEST_PG_URL", "")


@pytest.mark.skipif(not PG_URL, reason="CKSTORE_TEST_PG_URL is not set (Tools/services/postgres.sh; Tools/test.sh exports it)")
def test_postgres_four_concurrent_ranks_complete_exactly_once_and_gc_pending(ckstore_bin, tmp_path):
    import uuid
    sep = "&" if "?" in PG_URL else "?"
    store = f"{PG_URL}{sep}schema=py_parts_{uuid.uuid4().hex}&blobs=file://{tmp_path / 'blobs'}"

    def run(*args, check=True):
        proc = subprocess.run([ckstore_bin, "--store", store, *args], capture_output=True)
        if check:
            assert proc.returncode == 0, (args, proc.stderr)
        return proc

    run("init")
    world = 4
    for step in range(3):
        files = write_ranks(tmp_path, world, step)
        order = list(range(world))
        random.Random(step).shuffle(order)
        procs = [subprocess.Popen([ckstore_bin, "--store", store, "put", "--run", "pg", "--step", str(step), "--parts",
                                   str(world), "--path", rank_path(r, world), str(files[r])],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in order]
        results = [(p.wait(timeout=120), p.stdout.read().decode().split(), p.stderr.read().decode()) for p in procs]
        assert all(rc == 0 for rc, _, _ in results), results
        completing = [out for _, out, _ in results if len(out) == 2]
        assert len(completing) == 1, results
        snaps = json.loads(run("ls", "--run", "pg", "--json").stdout)["snapshots"]
        assert [s["digest"] for s in snaps if s["step"] == step] == [completing[0][1]]
    extra = write_ranks(tmp_path, 2, step=9)
    p = subprocess.run([ckstore_bin, "--store", store, "put", "--run", "pg", "--step", "9", "--parts", "2", "--path",
                        rank_path(0, 2), str(extra[0])], capture_output=True)
    assert p.returncode == 0, p.stderr
    assert [x["ref"] for x in json.loads(run("ls", "--pending", "--json").stdout)["pending"]] == ["pg@9"]
    lawa = run("get", "--run", "pg", "--lawa", "k=2,stride=7", "--at", "9", "-o", str(tmp_path / "l"), check=False)
    assert lawa.returncode == 1 and b"step 9 is incomplete: 1 of 2 parts" in lawa.stderr
    out = json.loads(run("gc", "--pending", "--json").stdout)
    assert out["removed_pending"] == ["pg@9"] and out["removed_files"] >= 1
    assert run("fsck", "--full").returncode == 0


def test_watch_does_not_see_a_pending_step(ckstore_bin, store, ckstore, tmp_path, one_file):
    for step in (0, 10):
        p = tmp_path / f"w{step}.safetensors"
        p.write_bytes(rank_file(0, step))
        ckstore("put", "--run", "w", "--step", str(step), str(p))
    files = write_ranks(tmp_path, 2, step=20)
    put_part(ckstore, "w", 20, 2, rank_path(0, 2), str(files[0]))
    log = tmp_path / "watch.log"
    proc = subprocess.run([ckstore_bin, "--store", store, "watch", "--run", "w", "--lawa", "k=2,stride=10", "--poll", "0.1",
                           "--idle-exit", "1", "--exec", f"echo {{step}} >> '{log}'"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().split() == ["10"], "the window at 20 needs a pending step: watch does not run it"
    assert "20" not in proc.stdout


def test_concurrent_ranks_with_one_killed_mid_put_complete_once_after_its_repush(ckstore_bin, store, ckstore, tmp_path, one_file):
    """The issue's scenario in one run: 4 processes in random order, one SIGKILLed inside its put."""
    world = 4
    files = write_ranks(tmp_path, world, step=7)
    victim = random.Random(11).randrange(world)
    big = tmp_path / "victim.safetensors"
    big.write_bytes(safetensors({f"layer.{victim}.weight": ("F32", [8 << 20], random.Random(5).randbytes(32 << 20))}))
    files[victim] = big
    order = list(range(world))
    random.Random(12).shuffle(order)
    procs = {}
    for r in order:
        procs[r] = subprocess.Popen([ckstore_bin, "--store", store, "put", "--run", "mix", "--step", "7", "--parts", str(world),
                                     "--path", rank_path(r, world), str(files[r])], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.08)
    procs[victim].send_signal(signal.SIGKILL)
    results = {r: (p.wait(timeout=120), p.stdout.read().decode().split()) for r, p in procs.items()}
    others = [r for r in range(world) if r != victim]
    assert all(results[r][0] == 0 for r in others), results
    if results[victim][0] == -signal.SIGKILL:
        # The others are acknowledged and pending; the snapshot is not visible.
        [pend] = pending(ckstore)
        assert {x["path"]: x["digest"] for x in pend["parts"]} == {rank_path(r, world): results[r][1][0] for r in others}
        assert all(len(results[r][1]) == 1 for r in others)
        again = put_part(ckstore, "mix", 7, world, rank_path(victim, world), str(big))
        assert len(digests(again)) == 2
    else:
        # The kill came too late: the victim's put finished; exactly one put completed it.
        assert sum(len(out) == 2 for _, out in results.values()) == 1, results
    assert pending(ckstore) == []
    out = tmp_path / "out"
    ckstore("get", "mix@7", "-o", str(out))
    for r in range(world):
        assert (out / rank_path(r, world)).read_bytes() == files[r].read_bytes()
    ckstore("gc")
    assert ckstore("fsck", "--full").returncode == 0
