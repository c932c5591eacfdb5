"""A ckstore store driven through the CLI, and the numpy baseline."""

from __future__ import annotations

import json
import os
import shutil
import sys

from .data import STRIDE, step_of
from .env import HERE
from .measure import output, timed


class Store:
    """A fresh store at `path` (removed first); config overrides are written into config.json."""

    def __init__(self, ckstore: str, path: str, **config):
        self.bin, self.path = ckstore, path
        shutil.rmtree(path, ignore_errors=True)
        output([ckstore, "--store", path, "init"])
        if config:
            self.configure(**config)

    @property
    def config(self) -> dict:
        """The store's config.json."""
        return json.load(open(os.path.join(self.path, "config.json")))

    def configure(self, float_filter: str | None = None, **top) -> None:
        """Set compression.float_filter and/or top-level keys (e.g. cache_policy)."""
        cfg = self.config
        if float_filter is not None:
            cfg.setdefault("compression", {})["float_filter"] = float_filter
        cfg.update(top)
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)

    def cmd(self, *args) -> list[str]:
        """argv of `ckstore --store PATH args…`."""
        return [self.bin, "--store", self.path, *args]

    def put(self, path: str, run: str = "bench", step: int | None = None, **kw) -> dict:
        """Timed `put --quiet`."""
        step = step_of(path) if step is None else step
        return timed(self.cmd("put", "--quiet", "--run", run, "--step", str(step), path), **kw)

    def stats(self) -> dict:
        """`stats --json`."""
        return json.loads(output(self.cmd("stats", "--json")))

    def lawa_cmd(self, k: int, at: int, out: str, *extra: str, run: str = "bench") -> list[str]:
        """argv of the default command `get --lawa k=K,stride=1000 --at S -o OUT` (+ extra)."""
        return self.cmd("get", "--quiet", "--run", run, "--lawa", f"k={k},stride={STRIDE}",
                        "--at", str(at), "-o", out, *extra)

    def drop_derived(self) -> None:
        """Drop the derived cache (`gc`) and the second-hit request log: the next request is a
        first request again."""
        output(self.cmd("gc"))
        try:
            os.remove(os.path.join(self.path, "cache-requests"))
        except FileNotFoundError:
            pass

    def remove(self) -> None:
        """Delete the store."""
        shutil.rmtree(self.path, ignore_errors=True)


def numpy_lawa_cmd(inputs: list[str], out: str) -> list[str]:
    """argv of Tools/bench/numpy_lawa.py (the baseline users write today)."""
    return [sys.executable, os.path.join(HERE, "numpy_lawa.py"), "-o", out, *inputs]
