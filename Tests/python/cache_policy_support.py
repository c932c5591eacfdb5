"""Helpers for tests about caching itself: since `second-hit` became the default cache policy,
a first query is cached only in a store whose config.json says `always`."""

from __future__ import annotations

import json
from pathlib import Path


def cache_first_requests(store: str | Path) -> None:
    """Sets `"cache_policy": "always"` in `<store>/config.json` (the store must exist)."""
    path = Path(store) / "config.json"
    config = json.loads(path.read_text())
    config["cache_policy"] = "always"
    path.write_text(json.dumps(config, indent=2) + "\n")
