"""Deprecated alias of the ``ckstore`` package (Tools/python/ckstore): use ``import ckstore``.

Kept so scripts written against the old ``Tools/ckstore_hook`` still run: it puts Tools/python
on ``sys.path`` when ``ckstore`` is not installed and re-exports its public names.
"""

from __future__ import annotations

import os
import sys

try:
    import ckstore as _ckstore
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
    import ckstore as _ckstore

from ckstore import *  # noqa: F401,F403,E402
from ckstore import safetensors_io  # noqa: F401,E402

__all__ = list(_ckstore.__all__)
