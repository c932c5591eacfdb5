"""Several "hosts" sharing one distributed store (PostgreSQL metadata + S3 blobs, issue 10).

test_two_trainers_an_evaluator_and_gc: for CKSTORE_MULTIHOST_SECONDS (default 30) s, separate
processes — each with its own working directory and no shared local file, reaching the store only
through its ``postgres://…?blobs=s3://…`` URL, every ckstore command on its own connections —
act as two trainers pushing snapshots of two runs, an evaluator computing LAWA averages of the
newest complete windows, and a gc loop applying ``--keep-last`` retention. Then: every snapshot a
put acknowledged (printed a digest for) is listed with that digest and reads back byte-exact,
unless the retention the test applied removed it (and it removed only what ``--keep-last`` allows);
every LAWA the evaluator got is bit-exact against the numpy reference computed from its own
regenerated copies of the inputs; no command hung (every one has a timeout); fsck --full is clean.

test_gc_on_another_host_waits_for_a_paused_put_that_matched_a_blob: the put is streamed through
stdin (no test hook in the binary is needed, see test_concurrency.py) and paused after its
header and a tensor that is another snapshot's chunk; gc and rm of that snapshot run from other
processes with their own connections. The blob must survive.

The roles run this file as a script: ``python3 test_multihost.py ROLE JSON``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from backends import (  # noqa: E402,F401  (fixtures)
    assert_matches_reference,
    dist_store,
    reference_lawa,
    snapshot_tensors,
    write_snapshot,
)

STRIDE = 10
K = 3
KEEP_LAST = 6
COMMAND_TIMEOUT = 90


def duration() -> float:
    value = os.environ.get("CKSTORE_MULTIHOST_SECONDS", "").strip()
    return float(value) if value else 30.0


# ---------------------------------------------------------------------------------------------
# Roles (each runs in its own process and working directory)


def ck(binary: str, location: str, *args: str) -> dict:
    """Runs one ckstore command from the current folder; never hangs (timeout)."""
    started = time.monotonic()
    try:
        proc = subprocess.run([binary, "--store", location, *args], capture_output=True, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"args": list(args), "rc": "timeout", "stderr": f"no answer within {COMMAND_TIMEOUT} s", "stdout": b""}
    return {"args": list(args), "rc": proc.returncode, "stderr": proc.stderr.decode("utf-8", "replace"),
            "stdout": proc.stdout, "seconds": time.monotonic() - started}


def brief(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "stdout"}


def role_trainer(cfg: dict) -> dict:
    acknowledged, failures = [], []
    step = 0
    while time.time() < cfg["deadline"]:
        data = write_snapshot("snapshot.safetensors", cfg["run"], step)
        result = ck(cfg["binary"], cfg["location"], "put", "--run", cfg["run"], "--step", str(step), "snapshot.safetensors")
        if result["rc"] == 0:
            acknowledged.append({"step": step, "digest": result["stdout"].decode().strip(),
                                 "sha256": hashlib.sha256(data).hexdigest()})
        else:
            failures.append(brief(result))
        step += STRIDE
    return {"acknowledged": acknowledged, "failures": failures}


def role_evaluator(cfg: dict) -> dict:
    ok, cached, pruned, errors, mismatches = 0, 0, 0, [], []
    done: set[tuple[str, int]] = set()
    while time.time() < cfg["deadline"]:
        progressed = False
        for run in cfg["runs"]:
            listed = ck(cfg["binary"], cfg["location"], "ls", "--run", run, "--json")
            if listed["rc"] != 0:
                if "does not exist" not in listed["stderr"]:
                    errors.append(brief(listed))
                continue
            steps = {s["step"] for s in json.loads(listed["stdout"])["snapshots"]}
            complete = [s for s in steps if all(s - i * STRIDE in steps for i in range(K))]
            if not complete:
                continue
            at = max(complete)
            result = ck(cfg["binary"], cfg["location"], "get", "--run", run, "--lawa", f"k={K},stride={STRIDE}",
                        "--at", str(at), "-o", "lawa.safetensors")
            if result["rc"] == 1 and re.search(r"missing \d+ of \d+ inputs|needs \d+ inputs|does not exist|not found",
                                               result["stderr"]):
                pruned += 1  # retention removed an input between ls and get (exit 1, never 3)
                continue
            if result["rc"] != 0:
                errors.append(brief(result))
                continue
            progressed = True
            cached += "from the cache" in result["stderr"]
            inputs = []
            for i in reversed(range(K)):
                path = f"input-{i}.safetensors"
                write_snapshot(path, run, at - i * STRIDE)  # regenerated here: no file shared with a trainer
                inputs.append(path)
            try:
                assert_matches_reference(Path("lawa.safetensors").read_bytes(), reference_lawa(inputs), f"{run} LAWA at {at}")
                ok += 1
                done.add((run, at))
            except AssertionError as e:
                mismatches.append(str(e))
        if not progressed:
            time.sleep(0.2)
    return {"ok": ok, "windows": len(done), "cached": cached, "pruned": pruned, "errors": errors, "mismatches": mismatches}


def role_gc(cfg: dict) -> dict:
    removed, errors, rounds = [], [], 0
    while time.time() < cfg["deadline"]:
        for run in cfg["runs"]:
            result = ck(cfg["binary"], cfg["location"], "gc", "--run", run, "--keep-last", str(KEEP_LAST), "--json")
            if result["rc"] == 0:
                removed += [[s["run"], s["step"]] for s in json.loads(result["stdout"])["removed_snapshots"]]
            elif not (result["rc"] == 1 and "does not exist" in result["stderr"]):
                errors.append(brief(result))
        result = ck(cfg["binary"], cfg["location"], "gc")  # orphans and cached averages
        if result["rc"] != 0:
            errors.append(brief(result))
        rounds += 1
        time.sleep(0.5)
    return {"removed": removed, "errors": errors, "rounds": rounds}


ROLES = {"trainer": role_trainer, "evaluator": role_evaluator, "gc": role_gc}


def start_role(role: str, host_dir: Path, cfg: dict) -> subprocess.Popen:
    host_dir.mkdir()
    # Only the store URL and the server settings travel between hosts: the environment is the
    # test's (credentials), the working directory is the host's own.
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), role, json.dumps(cfg)], cwd=str(host_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish_role(name: str, proc: subprocess.Popen, timeout: float) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{name} did not finish within {timeout:.0f} s (hang): {err.decode(errors='replace')[-2000:]}")
    assert proc.returncode == 0, f"{name} crashed (exit {proc.returncode}):\n{err.decode(errors='replace')[-3000:]}"
    return json.loads(out.decode().strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Tests


def test_two_trainers_an_evaluator_and_gc(dist_store, tmp_path):
    store = dist_store
    store.run("init")
    seconds = duration()
    runs = ["run-a", "run-b"]
    deadline = time.time() + seconds
    base = {"binary": store.binary, "location": store.location, "deadline": deadline, "runs": runs}
    procs = {
        "trainer run-a": start_role("trainer", tmp_path / "host-a", {**base, "run": "run-a"}),
        "trainer run-b": start_role("trainer", tmp_path / "host-b", {**base, "run": "run-b"}),
        "evaluator": start_role("evaluator", tmp_path / "host-eval", base),
        "gc": start_role("gc", tmp_path / "host-gc", base),
    }
    results = {name: finish_role(name, proc, seconds + 2 * COMMAND_TIMEOUT) for name, proc in procs.items()}

    gc = results["gc"]
    assert not gc["errors"], f"gc failed: {gc['errors'][:3]}"
    removed = {(r, s) for r, s in gc["removed"]}
    summary = []
    for run in runs:
        trainer = results[f"trainer {run}"]
        assert not trainer["failures"], f"{run}: puts failed: {trainer['failures'][:3]}"
        acked = {a["step"]: a for a in trainer["acknowledged"]}
        assert len(acked) >= 3, f"{run}: only {len(acked)} puts in {seconds} s"
        final = store.steps(run)
        newest = sorted(acked)[-KEEP_LAST:]
        for step, ack in acked.items():
            if (run, step) in removed:
                assert step not in final, f"{run}@{step}: gc reported it removed, yet it is listed"
                assert step not in newest, f"{run}@{step}: removed although among the newest {KEEP_LAST}"
                continue
            assert final.get(step) == ack["digest"], \
                f"acknowledged {run}@{step} = {ack['digest']} lost: listed {final.get(step)}"
        assert set(final) == set(acked) - {s for r, s in removed if r == run}, (run, sorted(final), sorted(acked))
        for step in final:
            data = store.get_bytes(f"{run}@{step}")
            assert hashlib.sha256(data).hexdigest() == acked[step]["sha256"], f"{run}@{step} reads back different bytes"
        summary.append(f"{run}: {len(acked)} acknowledged, {len(final)} kept")

    ev = results["evaluator"]
    assert not ev["mismatches"], f"LAWA not bit-exact: {ev['mismatches'][:3]}"
    assert not ev["errors"], f"evaluator commands failed: {ev['errors'][:3]}"
    assert ev["ok"] >= 2, f"the evaluator verified only {ev['ok']} LAWA averages in {seconds} s: {ev}"

    store.assert_fsck_clean("--full")
    store.run("gc")
    store.assert_fsck_clean(orphans=0)
    print(f"multi-host {seconds:.0f} s: {'; '.join(summary)}; gc rounds {gc['rounds']}, removed {len(removed)}; "
          f"LAWA verified {ev['ok']} ({ev['windows']} windows, {ev['cached']} from the cache, {ev['pruned']} pruned "
          "between ls and get)", file=sys.stderr)


def test_gc_on_another_host_waits_for_a_paused_put_that_matched_a_blob(dist_store, tmp_path):
    import socket

    store = dist_store
    store.run("init")
    host_a, host_b, host_c = (tmp_path / n for n in ("host-a", "host-b", "host-c"))
    for d in (host_a, host_b, host_c):
        d.mkdir()
    write_snapshot(host_a / "a.st", "r", 1)
    store.run("put", "--run", "a", "--step", "1", "a.st", cwd=host_a)
    keys_a = set(store.blob_keys())
    # B shares A's first tensor ("emb", the run's embedding) and differs in the others.
    b = write_snapshot(host_b / "b.st", "r", 2)
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8:8 + n])
    first_end = 8 + n + header["emb"]["data_offsets"][1]
    assert header["emb"]["data_offsets"][0] == 0
    put = subprocess.Popen(store.command(["put", "--run", "b", "--step", "1", "-"]), cwd=str(host_b),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rm = gc = None
    try:
        put.stdin.write(b[:first_end])
        put.stdin.flush()
        time.sleep(1.5)  # hashed the shared tensor and found A's chunk row
        assert put.poll() is None, put.stderr.read().decode()
        quick = store.run("gc", "--wait", "1", check=False, cwd=host_c)
        assert quick.returncode == 1 and f"pid {put.pid}" in quick.stderr, \
            f"gc on another host did not wait for the put holding the store lock:\n{quick.describe()}"
        assert socket.gethostname() in quick.stderr, quick.describe()
        rm = subprocess.Popen(store.command(["rm", "a@1"]), cwd=str(host_c), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        gc = subprocess.Popen(store.command(["gc"]), cwd=str(host_c), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)
        assert rm.poll() is None and gc.poll() is None, "rm/gc ran while a put on another host held the store lock"
        put.stdin.write(b[first_end:])
        put.stdin.close()
        assert put.wait(60) == 0, put.stderr.read().decode()
        summary = put.stderr.read().decode()
        hits = re.search(r"(\d+) dedup hits?", summary)
        assert hits and int(hits.group(1)) >= 1, f"B found no dedup hit on A's chunk: {summary}"
        assert rm.wait(60) == 0, rm.stderr.read().decode()
        assert gc.wait(60) == 0, gc.stderr.read().decode()
    finally:
        for p in (put, rm, gc):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert store.steps("a") == {}
    assert store.get_bytes("b@1") == b, "B lost the blob it had matched"
    shared = keys_a & set(store.blob_keys())
    assert shared, "the shared chunk's object was deleted"
    store.assert_fsck_clean("--full", orphans=0)


if __name__ == "__main__":
    role, config = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(ROLES[role](config)))
