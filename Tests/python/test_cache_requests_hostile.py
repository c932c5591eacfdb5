"""`second-hit`, the default cache policy, and its request log `<store>/cache-requests` under
hostile conditions, through the CLI: the default itself (a new store and a config.json without
the key), a log that is garbage, truncated, a symbolic link (to a file outside the store, or
dangling), a directory, or not writable by the user running ckstore; several processes asking
for a new recipe at once (one cache write at most); `gc` and the log; `sweep` under each policy.

Whatever happens to the log, the query is answered with the right bytes and exits 0: the log
is only an optimisation. A log that cannot be used counts every request as a repeat (cached,
as with `always`); a symbolic link is never followed nor replaced.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from cache_policy_support import NOBODY, store_outside_tmp, write_f32

RECIPE = ["--run", "r", "--lawa", "k=2,stride=10", "--at", "20"]


def make_store(ckstore, tmp_path: Path, steps=(0, 10, 20)) -> None:
    """A store with the default configuration holding run r at `steps`."""
    ckstore("init")
    for step in steps:
        f = tmp_path / f"s{step}.safetensors"
        write_f32(f, step)
        ckstore("put", "--run", "r", "--step", str(step), str(f))


def log_path(store: str) -> Path:
    return Path(store) / "cache-requests"


def derived(ckstore) -> list[str]:
    return [d["recipe"] for d in json.loads(ckstore("ls", "--derived", "--json").stdout)["derived"]]


def cached_now(stderr: str) -> bool:
    """Whether this `get` computed its result and stored it (a cache write)."""
    return "computed" in stderr and re.search(r"derived sha256:[0-9a-f]{12}", stderr) is not None


def reference(ckstore, tmp_path: Path) -> bytes:
    out = tmp_path / "reference.safetensors"
    ckstore("get", *RECIPE, "--no-cache", "-o", str(out))
    return out.read_bytes()


def test_a_new_store_defaults_to_second_hit(tmp_path, store, ckstore):
    make_store(ckstore, tmp_path)
    assert json.loads((Path(store) / "config.json").read_text())["cache_policy"] == "second-hit"
    outs = [tmp_path / f"o{i}" for i in range(3)]
    first = ckstore("get", *RECIPE, "-o", str(outs[0]))
    assert "computed" in first.stderr and not cached_now(first.stderr)
    assert derived(ckstore) == []
    assert cached_now(ckstore("get", *RECIPE, "-o", str(outs[1])).stderr)
    assert "from the cache" in ckstore("get", *RECIPE, "-o", str(outs[2])).stderr
    assert outs[0].read_bytes() == outs[1].read_bytes() == outs[2].read_bytes()


def test_a_config_without_the_key_gets_second_hit(tmp_path, store, ckstore):
    make_store(ckstore, tmp_path)
    path = Path(store) / "config.json"
    config = json.loads(path.read_text())
    del config["cache_policy"]
    path.write_text(json.dumps(config, indent=2))
    assert not cached_now(ckstore("get", *RECIPE, "-o", str(tmp_path / "a")).stderr)
    assert cached_now(ckstore("get", *RECIPE, "-o", str(tmp_path / "b")).stderr)


LOG_CONTENTS = {
    "empty": lambda: b"",
    "7-bytes": lambda: b"\x07" * 7,
    "random-full": lambda: os.urandom(4096 * 32),
    "oversized": lambda: b"\xff" * (4096 * 32 + 999),
}


@pytest.mark.parametrize("kind", list(LOG_CONTENTS))
def test_a_garbage_or_truncated_log_only_delays_caching(tmp_path, store, ckstore, kind):
    content = LOG_CONTENTS[kind]()
    make_store(ckstore, tmp_path)
    expected = reference(ckstore, tmp_path)
    log_path(store).write_bytes(content)
    first = ckstore("get", *RECIPE, "-o", str(tmp_path / "a"))
    assert not cached_now(first.stderr) and (tmp_path / "a").read_bytes() == expected
    assert cached_now(ckstore("get", *RECIPE, "-o", str(tmp_path / "b")).stderr)
    assert (tmp_path / "b").read_bytes() == expected
    assert log_path(store).stat().st_size <= max(len(content), 4096 * 32), "the log does not grow"
    assert ckstore("fsck").returncode == 0


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlinked_log_is_not_followed_and_the_query_is_answered(tmp_path, store, ckstore, dangling):
    make_store(ckstore, tmp_path)
    expected = reference(ckstore, tmp_path)
    outside = tmp_path / "outside-the-store"
    if not dangling:
        outside.write_bytes(b"not a log")
    log_path(store).symlink_to(outside)
    first = ckstore("get", *RECIPE, "-o", str(tmp_path / "a"))
    assert (tmp_path / "a").read_bytes() == expected
    # The log cannot be used: every request counts as a repeat, so the result is cached.
    assert cached_now(first.stderr)
    assert "from the cache" in ckstore("get", *RECIPE, "-o", str(tmp_path / "b")).stderr
    if dangling:
        assert not outside.exists(), "the link was followed and its target created"
    else:
        assert outside.read_bytes() == b"not a log"
    assert log_path(store).is_symlink(), "the link is left in place (refused, not replaced)"
    assert ckstore("fsck").returncode == 0


def test_a_directory_in_place_of_the_log_is_left_alone(tmp_path, store, ckstore):
    make_store(ckstore, tmp_path)
    expected = reference(ckstore, tmp_path)
    log_path(store).mkdir()
    (log_path(store) / "inside").write_bytes(b"x")
    first = ckstore("get", *RECIPE, "-o", str(tmp_path / "a"))
    assert cached_now(first.stderr) and (tmp_path / "a").read_bytes() == expected
    assert (log_path(store) / "inside").read_bytes() == b"x"


def test_a_log_the_user_cannot_write_still_answers(ckstore_bin):
    with store_outside_tmp(ckstore_bin, "ckstore-cache-log-ro-") as (store, run):
        expected = run("get", *RECIPE, "--no-cache", "-o", "-").stdout
        # The store belongs to nobody; the log to root, mode 0644: nobody can read it, not write it.
        log = store / "cache-requests"
        log.write_bytes(b"")
        subprocess.run(["chown", "-R", "65534:65534", str(store)], check=True)
        os.chown(log, 0, 0)
        log.chmod(0o644)
        first = run("get", *RECIPE, "-o", "-", user=NOBODY)
        if first.returncode != 0 and b"Permission denied" in first.stderr:
            pytest.skip(f"user nobody cannot run ckstore here: {first.stderr!r}")
        assert first.returncode == 0, first.stderr
        assert first.stdout == expected
        assert cached_now(first.stderr.decode()), "an unwritable log counts as a repeat"
        second = run("get", *RECIPE, "-o", "-", user=NOBODY)
        assert second.returncode == 0 and b"from the cache" in second.stderr and second.stdout == expected
        assert log.read_bytes() == b""


def test_concurrent_first_requests_write_the_cache_at_most_once(tmp_path, store, ckstore, ckstore_bin):
    make_store(ckstore, tmp_path)
    expected = reference(ckstore, tmp_path)
    writes = 0
    for round_ in range(3):
        procs = [
            subprocess.Popen([ckstore_bin, "--store", store, "get", *RECIPE, "-o", str(tmp_path / f"p{round_}-{i}")],
                             stderr=subprocess.PIPE)
            for i in range(6)
        ]
        for i, p in enumerate(procs):
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
            assert b"warning" not in err, err.decode()
            writes += cached_now(err.decode())
            assert (tmp_path / f"p{round_}-{i}").read_bytes() == expected
        assert writes <= 1, f"round {round_}: {writes} processes stored the same result"
    # Eighteen requests: the recipe is cached by now (or by the next request), exactly once.
    last = ckstore("get", *RECIPE, "-o", str(tmp_path / "z"))
    writes += cached_now(last.stderr)
    assert writes == 1
    assert derived(ckstore) == ["lawa run=r k=2 stride=10 at=20"]
    assert log_path(store).stat().st_size <= 4096 * 32
    assert ckstore("fsck").returncode == 0


def test_gc_keeps_the_log(tmp_path, store, ckstore):
    make_store(ckstore, tmp_path)
    ckstore("get", *RECIPE, "-o", str(tmp_path / "a"))
    assert cached_now(ckstore("get", *RECIPE, "-o", str(tmp_path / "b")).stderr)
    before = log_path(store).read_bytes()
    ckstore("gc")
    assert derived(ckstore) == [], "plain gc drops cached results"
    assert log_path(store).read_bytes() == before, "gc leaves the request log"
    # The recipe was asked for before: its next request caches it again.
    assert cached_now(ckstore("get", *RECIPE, "-o", str(tmp_path / "c")).stderr)
    # A deleted log forgets every request: caching starts again from a first request.
    ckstore("gc")
    log_path(store).unlink()
    assert not cached_now(ckstore("get", *RECIPE, "-o", str(tmp_path / "d")).stderr)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "d").read_bytes()


SWEEP = ["sweep", "--run", "r", "--lawa", "k=2,3", "--stride", "10", "--at", "20"]
PAIRS = ["lawa run=r k=2 stride=10 at=20", "lawa run=r k=3 stride=10 at=20"]


def set_policy(store: str, policy: str) -> None:
    path = Path(store) / "config.json"
    config = json.loads(path.read_text())
    config["cache_policy"] = policy
    path.write_text(json.dumps(config, indent=2))


def test_a_sweep_with_exec_counts_each_pair_as_one_request(tmp_path, store, ckstore):
    make_store(ckstore, tmp_path)
    run = SWEEP + ["--exec", "true"]
    first = ckstore(*run)
    assert first.stderr.count("computed from") == 2 and "cached as derived" not in first.stderr
    assert derived(ckstore) == []
    second = ckstore(*run)
    assert second.stderr.count("cached as derived sha256:") == 2
    assert sorted(derived(ckstore)) == PAIRS
    assert ckstore(*run).stderr.count("from the cache") == 2
    # A get after one sweep is that pair's second request (a fresh log: gc keeps the notes).
    ckstore("gc")
    log_path(store).unlink()
    ckstore(*run)
    assert derived(ckstore) == []
    assert cached_now(ckstore("get", *RECIPE, "-o", str(tmp_path / "a")).stderr)


def test_a_sweep_without_exec_fills_the_cache_and_never_refuses_it(tmp_path, store, ckstore):
    make_store(ckstore, tmp_path)
    ckstore(*SWEEP)
    assert sorted(derived(ckstore)) == PAIRS
    assert "from the cache" in ckstore("get", *RECIPE, "-o", str(tmp_path / "a")).stderr
    ckstore("gc")
    set_policy(store, "never")
    refused = ckstore(*SWEEP, check=False)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckstore: error: ") and "cache_policy is never" in lines[0]
    ran = ckstore(*SWEEP, "--exec", "true")
    assert ran.stderr.count("computed from") == 2 and "cached as" not in ran.stderr
    assert derived(ckstore) == []


def test_never_ignores_an_existing_entry_in_a_sweep(tmp_path, store, ckstore):
    make_store(ckstore, tmp_path)
    ckstore(*SWEEP)
    assert sorted(derived(ckstore)) == PAIRS
    set_policy(store, "never")
    log_path(store).unlink(missing_ok=True)
    ran = ckstore(*SWEEP, "--exec", "true")
    assert ran.stderr.count("computed from") == 2 and "from the cache" not in ran.stderr
    dry = ckstore(*SWEEP, "--dry-run").stdout.decode()
    assert "2 to compute, 0 cached" in dry
    assert not log_path(store).exists(), "never writes no note"
