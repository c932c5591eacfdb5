"""Imports the ckstore Python package for the language-model demo.

``from ckstore_import import ckstore`` gives the installed ``ckstore`` package.
"""

from __future__ import annotations

import sys
from pathlib import Path

# --- TEMPORARY FALLBACK (drop once the `ckstore` package from Tools/python is merged) --------
# Until then, use Tools/python/ckstore from this checkout, else the older Tools/ckstore_hook
# module (same public API: CheckpointPusher, load, record_metric, find_binary).
try:
    import ckstore
except ImportError:
    _tools = Path(__file__).resolve().parents[1]
    if (_tools / "python" / "ckstore" / "__init__.py").exists():
        sys.path.insert(0, str(_tools / "python"))
        import ckstore
    else:
        sys.path.insert(0, str(_tools))
        import ckstore_hook as ckstore
# --- end of TEMPORARY FALLBACK ----------------------------------------------------------------

__all__ = ["ckstore"]
