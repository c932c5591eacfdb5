"""Crash safety: a put killed at any moment loses nothing that was acknowledged.

docs/FORMAT.md, "Write ordering (crash safety)": blobs are written to temporary files, linked
into place and fsynced before the single SQLite transaction that names them, and the digest is
printed only after that commit. So a put killed at any point leaves either nothing (plus orphan
blobs and temporary files, which fsck reports as notes and gc removes) or the whole snapshot,
and never damages what earlier puts acknowledged.

SIGKILL tests the ordering against process death (the page cache survives); it does not
simulate power loss, which would need a VM or a fault-injecting file system.

Longer runs: CKSTORE_STRESS_ITERATIONS=200 CKSTORE_STRESS_SEED=7 pytest test_crash_safety.py -s
(see reliability_support.py).
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from reliability_support import (
    CK,
    acknowledged_digest,
    assert_reads_back,
    env_int,
    object_files,
    stress_seed,
    temporary_files,
    write_safetensors,
)

RUN = "crash"
MiB = 1 << 20
SAMPLE_ABOVE = 24  # more acknowledged snapshots than this are read back by sample between kills

# The crash loop's store: 1 MiB chunks, so that a 64 MiB put writes ~70 blobs and a random kill
# lands among blob writes rather than only before or after them. Float tensors are stored
# without a shuffle filter: the filters cost ~7x the put time in a debug build (what CI runs)
# and are irrelevant to the write ordering; LZ4 still compresses the tiled tensor (codec 1
# blobs) and the I32 tensor still goes through byte-shuffle, so every blob kind is written.
CRASH_CONFIG = {"chunk_size": 1 * MiB, "compression": {"float_filter": "none"}}


class SnapshotMaker:
    """~64 MiB safetensors files with distinct content per index: three 16 MiB noise tensors
    (incompressible: stored raw), a 16 MiB tiled tensor (LZ4 compresses it), a 256 KiB I32
    tensor. Distinct indices share no chunk."""

    def __init__(self, seed: int, folder: Path):
        rng = np.random.default_rng(seed)
        self.noise = [rng.standard_normal(4 * MiB, dtype=np.float32) for _ in range(3)]
        self.block = rng.standard_normal(8192, dtype=np.float32)  # 32 KiB: within LZ4's 64 KiB window
        self.ints = np.arange(64 * 1024, dtype=np.int32)
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def tiled(self, f: np.float32) -> np.ndarray:
        """16 MiB of a repeated 32 KiB block (LZ4 compresses it), one element changed per
        MiB so that its chunks differ."""
        out = np.tile(self.block + f, 512)
        out[:: MiB // 4] = np.arange(16, dtype=np.float32) + f * 100
        return out

    def write(self, index: int) -> tuple[Path, str]:
        f = np.float32(index)
        tensors = {
            "blocks.0.attn.weight": self.noise[0] + f,
            "blocks.0.mlp.weight": self.noise[1] * f,
            "blocks.1.mlp.weight": self.noise[2] - f,
            "embed.weight": self.tiled(f),
            "position": self.ints + np.int32(index),
        }
        path = self.folder / f"snap-{index}.safetensors"
        return path, write_safetensors(path, tensors, {"index": str(index)})


class Expected:
    """The snapshots the store must hold: step → (digest, source SHA-256)."""

    def __init__(self):
        self.snapshots: dict[int, tuple[str, str]] = {}

    def add(self, step: int, digest: str, sha: str, why: str) -> None:
        assert step not in self.snapshots, f"step {step} recorded twice ({why})"
        self.snapshots[step] = (digest, sha)

    def check_listing(self, ck: CK, context: str) -> None:
        listed = ck.steps(RUN)
        want = {step: digest for step, (digest, _) in self.snapshots.items()}
        lost = sorted(set(want) - set(listed))
        extra = sorted(set(listed) - set(want))
        changed = sorted(s for s in set(want) & set(listed) if want[s] != listed[s])
        assert not lost and not extra and not changed, (
            f"{context}: snapshot listing is wrong: lost {lost}, unexpected {extra}, different digest {changed}")

    def check_bytes(self, ck: CK, context: str, rng: random.Random | None = None) -> None:
        """Every snapshot reads back byte-exact. With `rng`, when there are more than
        SAMPLE_ABOVE (only in long runs: the default run never gets there), the newest half of
        that many and a random half of the others, so that a long run stays linear in time."""
        steps = sorted(self.snapshots)
        if rng is not None and len(steps) > SAMPLE_ABOVE:
            half = SAMPLE_ABOVE // 2
            steps = sorted(rng.sample(steps[:-half], half) + steps[-half:])
        for step in steps:
            assert_reads_back(ck, f"{RUN}@{step}", self.snapshots[step][1], context)


def settle_killed_put(ck: CK, step: int, digest_printed: str | None, sha: str, expected: Expected, context: str) -> str:
    """After a put of RUN@step was killed: it is absent (get exits 1) or complete and
    byte-exact. Returns "absent" or "complete"."""
    listed = ck.steps(RUN)
    if step not in listed:
        result = ck.run("get", f"{RUN}@{step}", "-o", os.devnull, check=False)
        assert result.returncode == 1, f"{context}: killed put of {RUN}@{step} is not listed, but get does not say not-found:\n{result.describe()}"
        return "absent"
    if digest_printed is not None:
        assert listed[step] == digest_printed, f"{context}: {RUN}@{step} is {listed[step]}, the killed put printed {digest_printed}"
    assert_reads_back(ck, f"{RUN}@{step}", sha, f"{context}: killed put that committed")
    expected.add(step, listed[step], sha, context)
    return "complete"


def test_killed_puts_lose_nothing_acknowledged(ckstore_bin, tmp_path):
    """Promise 1. A loop of SIGKILLed 64 MiB puts, sometimes beside a concurrent put (to another
    step) or gc, themselves killed or let finish. After every kill: fsck exits 0, every
    acknowledged snapshot reads back byte-exact, the killed one is absent or complete and
    byte-exact, nothing else appeared. At the end gc leaves no orphan and fsck --full passes.
    (Runs long enough to keep more than SAMPLE_ABOVE snapshots read back a sample of them between
    kills, and all of them at the end.)"""
    seed = stress_seed()
    iterations = env_int("CKSTORE_STRESS_ITERATIONS", 20)
    rng = random.Random(seed)
    ck = CK(ckstore_bin, str(tmp_path / "store"))
    ck.init(CRASH_CONFIG)
    maker = SnapshotMaker(seed, tmp_path / "files")
    expected = Expected()
    index = 0

    def next_file() -> tuple[Path, str]:
        nonlocal index
        index += 1
        return maker.write(index)

    # The time scale of the kill delays: the median duration of the latest undisturbed puts,
    # starting with two calibration puts (the first acknowledged snapshots). It keeps adapting,
    # since the machine's load (and so the put duration) changes during the run.
    durations: list[float] = []

    def put_estimate() -> float:
        recent = sorted(durations[-5:])
        return recent[len(recent) // 2]

    for step in (0, 1):
        path, sha = next_file()
        result = ck.run("put", "--run", RUN, "--step", str(step), str(path))
        durations.append(result.seconds)
        expected.add(step, acknowledged_digest(result), sha, "calibration put")
        path.unlink()

    outcomes: Counter[str] = Counter()
    scenarios: Counter[str] = Counter()
    kill_fractions: list[float] = []  # kill delay / estimated duration, for kills before the commit
    left_files = 0  # kills of a put running alone after which it had left blob or temporary files
    verify_seconds = 0.0
    started_loop = time.monotonic()
    try:
        for i in range(1, iterations + 1):
            scenario = rng.choices(["alone", "put", "gc"], weights=[2, 1, 1])[0]
            scenarios[scenario] += 1
            step, other_step = 1000 + i, 5000 + i
            path, sha = next_file()
            other_path, other_sha = next_file() if scenario == "put" else (None, None)
            files_before = object_files(ck.store)
            # Two puts share the 2 cores: each takes up to twice as long.
            scale = put_estimate() * {"alone": 1.0, "put": 2.0, "gc": 1.2}[scenario]
            kill_at = rng.uniform(0.0, 1.05) * scale
            context = f"seed {seed}, iteration {i} ({scenario}, kill at {kill_at:.3f} s of ~{scale:.2f} s)"

            # The other process starts a little after the put, so that the put usually holds
            # the store lock first (a gc started first simply makes the put wait).
            target = ck.start("put", "--run", RUN, "--step", str(step), str(path))
            t0 = target.started
            other = None
            other_kill_at = None
            if scenario == "put":
                time.sleep(rng.uniform(0.0, 0.3) * scale)
                other = ck.start("put", "--run", RUN, "--step", str(other_step), str(other_path))
            elif scenario == "gc":
                time.sleep(rng.uniform(0.0, 0.5) * scale)
                other = ck.start("gc")
            if other is not None and rng.random() < 0.5:
                other_kill_at = rng.uniform(0.0, 1.1) * scale
            events = sorted([(kill_at, target)] + ([(other_kill_at, other)] if other_kill_at is not None else []),
                            key=lambda e: e[0])
            for at, proc in events:
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                proc.kill()  # no-op when it has exited already
            result = target.wait()
            other_result = other.wait() if other is not None else None
            # Killed means died of the SIGKILL (a process may exit just before the signal).
            killed = {id(p) for p, r in ((target, result), (other, other_result)) if r is not None and r.returncode == -9}
            context += f"; put {'killed' if id(target) in killed else 'exited ' + str(result.returncode)}"

            # The store is consistent: fsck exits 0 (orphans and temporary files are notes).
            ck.fsck()

            # The killed put: absent, or complete and byte-exact.
            if id(target) in killed:
                state = settle_killed_put(ck, step, result.text.strip() or None, sha, expected, context)
                outcomes[state] += 1
                if state == "absent":
                    kill_fractions.append(kill_at / scale)
                    if scenario == "alone" and object_files(ck.store) - files_before:
                        left_files += 1
                    if rng.random() < 0.2:
                        # Retrying the killed put works, over whatever it left behind.
                        retry = ck.run("put", "--run", RUN, "--step", str(step), str(path))
                        expected.add(step, acknowledged_digest(retry), sha, f"{context}: retry")
                        outcomes["retried"] += 1
                        durations.append(retry.seconds)
            else:
                # The put finished before the kill: it must have succeeded.
                expected.add(step, acknowledged_digest(require_ok(result, context)), sha, context)
                outcomes["finished before kill"] += 1
                if scenario == "alone":
                    durations.append(result.seconds)

            if other_result is not None:
                if other_result.args[0] == "put":
                    if id(other) in killed:
                        state = settle_killed_put(ck, other_step, other_result.text.strip() or None, other_sha, expected,
                                                  context + " (other put)")
                        outcomes["other put killed, " + state] += 1
                    else:
                        expected.add(other_step, acknowledged_digest(require_ok(other_result, context + " (other put)")),
                                     other_sha, context + " (other put)")
                elif id(other) not in killed:
                    require_ok(other_result, context + " (concurrent gc)")

            # Nothing acknowledged is lost, nothing unexpected appeared, everything reads back.
            t = time.monotonic()
            expected.check_listing(ck, context)
            expected.check_bytes(ck, context, rng)
            verify_seconds += time.monotonic() - t
            for p in (path, other_path):
                if p is not None:
                    p.unlink()

        # gc removes every orphan and temporary file; the store is then fully consistent.
        ck.run("gc")
        stats = ck.stats()
        assert stats["orphan_bytes"] == 0 and stats["orphan_blobs"] == 0, f"gc left orphans: {stats}"
        assert temporary_files(ck.store) == [], f"gc left temporary files: {temporary_files(ck.store)[:5]}"
        ck.fsck(full=True)
        expected.check_listing(ck, "after the final gc")
        expected.check_bytes(ck, "after the final gc")
    finally:
        spread = ", ".join(f"{f:.2f}" for f in sorted(kill_fractions))
        summary = (f"crash loop (seed {seed}, {iterations} iterations in {time.monotonic() - started_loop:.1f} s, "
                   f"{verify_seconds:.1f} s of it reading back; put ~{put_estimate():.2f} s): "
                   f"scenarios {dict(scenarios)}, outcomes {dict(outcomes)}, "
                   f"kills before the commit at fractions of the put duration [{spread}], "
                   f"of which a lone put had left blob files: {left_files}; "
                   f"{len(expected.snapshots)} snapshots kept")
        print(summary)
    # The kills must actually land mid-put for the test to mean anything.
    assert outcomes["absent"] >= iterations // 4, f"too few kills landed before the commit: {summary}"
    assert left_files >= min(2, iterations // 10), f"too few kills landed among blob writes: {summary}"
    shutil.rmtree(tmp_path)  # hundreds of MB; kept when the test fails, to look at the store


def require_ok(result, context: str):
    assert result.returncode == 0, f"{context}:\n{result.describe()}"
    return result


def test_put_over_damaged_leftover_blobs(ckstore_bin, tmp_path):
    """Write ordering step 2: a blob file already at its final name without a chunk row (the
    leftover of a put interrupted after link, e.g. by power loss before the data reached the
    disk) is checked: a valid one is kept, a damaged one (truncated, emptied, flipped byte) is
    replaced. The snapshot then reads back byte-exact and fsck --full passes."""
    ck = CK(ckstore_bin, str(tmp_path / "store"))
    ck.init({"chunk_size": 65536})
    rng = np.random.default_rng(3)
    tensors = {
        "w": rng.standard_normal(64 * 1024, dtype=np.float32),
        "tiled": np.tile(rng.standard_normal(1024, dtype=np.float32), 64),
        "ids": np.arange(32 * 1024, dtype=np.int64),
    }
    path = tmp_path / "x.safetensors"
    sha = write_safetensors(path, tensors)
    digest = acknowledged_digest(ck.run("put", "--run", "r", "--step", "1", str(path)))
    objects = Path(ck.store) / "objects"
    blobs = sorted(p for p in objects.glob("*/*") if ".tmp-" not in p.name)
    assert len(blobs) >= 8, blobs
    saved = {p: p.read_bytes() for p in blobs}
    ck.run("rm", "r@1")
    assert not any(p.exists() for p in blobs), "rm left the snapshot's blobs"

    # Put the files back as orphans, damaging some of them.
    damaged = {}
    for k, (p, data) in enumerate(saved.items()):
        if k % 4 == 0:
            data = data[: len(data) // 2]  # truncated
        elif k % 4 == 1:
            data = b""  # empty
        elif k % 4 == 2:
            data = bytearray(data)
            data[-1] ^= 0x40  # one flipped payload bit: XXH64 catches it
            data = bytes(data)
        if data != saved[p]:
            damaged[p] = data
        p.write_bytes(data)
        p.chmod(0o444)
    assert damaged
    fsck = ck.fsck()  # orphans (damaged or not) are notes, not problems
    assert "orphan" in fsck.text, fsck.describe()

    again = acknowledged_digest(ck.run("put", "--run", "r", "--step", "1", str(path)))
    assert again == digest
    for p in blobs:
        assert p.read_bytes() == saved[p], f"{p.name} was not restored by the put"
    assert_reads_back(ck, "r@1", sha)
    ck.fsck(full=True)
    stats = ck.stats()
    assert stats["orphan_blobs"] == 0, stats
