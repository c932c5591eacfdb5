"""State dicts ⇄ flat ``{dotted name: tensor}`` files, with the structure kept in ``__metadata__``.

Flattening (:func:`flatten_state_dict`): mappings are walked by key and lists/tuples by index,
joined with dots: ``{"layer": {"0": {"weight": w}}}`` → ``layer.0.weight``,
``param_groups[0]["lr"]`` → ``param_groups.0.lr``. Tensors (numpy arrays, torch tensors, array
likes) are the file's tensors. Everything else is a *plain leaf* — Python/numpy scalars,
lists/tuples of plain numbers, ``str``, ``None`` — and is stored exactly in ``__metadata__``,
never as a tensor, so averaging (LAWA/SWA/EMA, which average float tensors) never touches it:
an averaged snapshot carries the newest input's values. This is how optimizer hyperparameters
(``lr``, ``betas``, ``params`` indices, ``foreach=None``) survive averaging unchanged.

Exact scalars: a 0-d tensor whose last name component is in ``exact_names`` (default
``("step",)``: torch optimizers keep ``state[i]["step"]`` as a float32 0-d tensor) is stored as a
plain leaf too, with its dtype, and comes back as a 0-d tensor of that dtype. So a LAWA of
optimizer states keeps ``step`` exact instead of averaging it.

The structure goes into one ``__metadata__`` entry, ``ckstore.tree``: JSON of the nested
containers, where each node is

* ``null`` — a tensor, stored under its dotted name;
* ``{"v": VALUE}`` — a plain leaf (JSON; ``NaN``/``Infinity`` as Python's json writes them),
  ``{"v": [..], "tuple": true}`` for a tuple, ``{"v": X, "dtype": "F32", "kind": "torch"}`` for
  an exact scalar (``kind`` ``"numpy"`` for a numpy 0-d array);
* ``{"d": [[KEY, NODE], ...]}`` — a mapping, in order; ``KEY`` is a JSON string or, for Python
  ``int`` keys (torch optimizer ``state``), a JSON integer; other key types become strings;
* ``{"l": [NODE, ...]}`` / ``{"t": [NODE, ...]}`` — a list / a tuple.

:func:`unflatten` uses it to rebuild exactly what was pushed (dict keys that contain dots stay
whole, so ``{"model": model.state_dict()}`` round-trips); without it, it splits names on dots.
"""

from __future__ import annotations

import json
import numbers
from typing import Any, Mapping

import numpy as np

from .torch_interop import is_torch_tensor, torch_dtype, torch_scalar_dtype_name

__all__ = ["flatten_state_dict", "unflatten", "TREE_KEY", "DEFAULT_EXACT_NAMES"]

TREE_KEY = "ckstore.tree"
"""The ``__metadata__`` key holding the structure (see the module docstring)."""

DEFAULT_EXACT_NAMES = ("step",)
"""Last name components of 0-d tensors stored exactly instead of as tensors (torch optimizers'
``step``)."""


def is_number(v: Any) -> bool:
    """A Python or numpy scalar number (``bool`` included; ``str``/``bytes`` excluded)."""
    return isinstance(v, (bool, numbers.Number, np.generic)) and not isinstance(v, (str, bytes))


def _plain(v: Any) -> Any:
    """A plain leaf as a JSON-encodable Python value."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, complex):
        raise TypeError("complex scalars cannot be stored as plain values")
    return v


def _is_tensor(value: Any) -> bool:
    return isinstance(value, np.ndarray) or is_torch_tensor(value)


def flatten_state_dict(state: Mapping[str, Any], prefix: str = "",
                       exact_names: tuple[str, ...] | frozenset[str] = DEFAULT_EXACT_NAMES
                       ) -> tuple[dict[str, Any], dict[str, str]]:
    """Flatten a (possibly nested) state dict into dotted tensor names.

    Returns ``(tensors, metadata)``: ``tensors`` maps each dotted name to a tensor leaf (numpy
    array, torch tensor or array-like, not yet copied); ``metadata`` is ``{"ckstore.tree": JSON}``
    describing the containers and holding every plain leaf (see the module docstring). Raises
    ``ValueError`` when two paths produce the same name and ``TypeError`` for values that
    cannot be stored.
    """
    tensors: dict[str, Any] = {}
    names: set[str] = set()
    exact = frozenset(exact_names)

    def claim(name: str) -> None:
        if not name:
            raise ValueError("state dict: a non-container value needs a name")
        if name in names:
            raise ValueError(f"state dict: two entries flatten to the same name {name!r}")
        if name == "__metadata__":
            raise ValueError("state dict: '__metadata__' is reserved by safetensors and cannot name a tensor")
        names.add(name)

    def join(name: str, key: Any) -> str:
        return f"{name}.{key}" if name else str(key)

    def visit(name: str, value: Any) -> Any:
        if _is_tensor(value):
            if name.rsplit(".", 1)[-1] in exact and tuple(value.shape) == ():
                claim(name)
                if is_torch_tensor(value):
                    return {"v": value.detach().cpu().item(), "dtype": torch_scalar_dtype_name(value),
                            "kind": "torch"}
                from .safetensors_io import dtype_name
                return {"v": value.item(), "dtype": dtype_name(value.dtype), "kind": "numpy"}
            claim(name)
            tensors[name] = value
            return None
        if isinstance(value, Mapping):
            items = []
            for k, v in value.items():
                key = k if isinstance(k, (str, int)) and not isinstance(k, bool) else str(k)
                items.append([key, visit(join(name, key), v)])
            return {"d": items}
        if isinstance(value, (list, tuple)):
            if all(is_number(v) for v in value):  # includes the empty list
                claim(name)
                node = {"v": [_plain(v) for v in value]}
                if isinstance(value, tuple):
                    node["tuple"] = True
                return node
            kind = "t" if isinstance(value, tuple) else "l"
            return {kind: [visit(join(name, i), v) for i, v in enumerate(value)]}
        if value is None or isinstance(value, str) or is_number(value):
            claim(name)
            try:
                return {"v": _plain(value)}
            except TypeError as e:
                raise TypeError(f"state dict entry {name!r}: {e}") from None
        if hasattr(value, "__array__"):
            claim(name)
            tensors[name] = value
            return None
        raise TypeError(f"state dict entry {name!r}: cannot store a {type(value).__name__}")

    tree = visit(prefix, state)
    return tensors, {TREE_KEY: json.dumps(tree, separators=(",", ":"), allow_nan=True)}


def _restore_plain(node: dict, framework: str) -> Any:
    value = node["v"]
    if "dtype" in node:  # an exact scalar: a 0-d tensor of its dtype
        if framework == "torch":
            import torch
            return torch.tensor(value, dtype=torch_dtype(node["dtype"]))
        from .safetensors_io import numpy_dtype
        dt = numpy_dtype(node["dtype"])
        return np.asarray(value, dtype=dt if dt is not None else np.float64)
    if node.get("tuple"):
        return tuple(value)
    return value


def unflatten(state: Mapping[str, Any], metadata: Mapping[str, str] | None = None, *,
              framework: str = "numpy") -> Any:
    """Turn a flat ``{dotted name: tensor}`` dict back into the nested structure it came from.

    With ``metadata`` holding ``ckstore.tree`` (what :func:`ckstore.load` returns with
    ``with_metadata=True`` for a pushed snapshot, averaged or not), the result is exactly what
    was pushed: the same containers and keys (int keys stay ints, keys with dots stay whole),
    plain leaves restored, exact scalars (``step``) as 0-d tensors of their dtype (torch tensors
    when ``framework="torch"``, else numpy arrays).
    Without it, names are split on dots into nested dicts (``"a.b.c"`` → ``{"a": {"b": {"c":
    …}}}``). Raises ``ValueError`` when a name is both a leaf and a container, or when the tensors
    do not match the tree.
    """
    tree_json = (metadata or {}).get(TREE_KEY)
    if tree_json is None:
        return _split_on_dots(state)
    try:
        tree = json.loads(tree_json)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"unflatten: {TREE_KEY} is not valid JSON: {e}") from None
    used: set[str] = set()

    def join(name: str, key: Any) -> str:
        return f"{name}.{key}" if name else str(key)

    def build(name: str, node: Any) -> Any:
        if node is None:
            if name not in state:
                raise ValueError(f"unflatten: tensor {name!r} is in the structure but not in the tensors")
            used.add(name)
            return state[name]
        if not isinstance(node, dict):
            raise ValueError(f"unflatten: bad structure node at {name!r}: {node!r}")
        if "v" in node:
            return _restore_plain(node, framework)
        if "d" in node:
            return {key: build(join(name, key), child) for key, child in node["d"]}
        if "l" in node:
            return [build(join(name, i), child) for i, child in enumerate(node["l"])]
        if "t" in node:
            return tuple(build(join(name, i), child) for i, child in enumerate(node["t"]))
        raise ValueError(f"unflatten: unknown structure node at {name!r}: {node!r}")

    try:
        result = build("", tree)
    except (TypeError, KeyError, AttributeError, RecursionError) as e:
        raise ValueError(f"unflatten: malformed {TREE_KEY}: {type(e).__name__}: {e}") from None
    extra = [n for n in state if n not in used]
    if extra:
        raise ValueError(f"unflatten: tensors not in the structure: {', '.join(sorted(extra)[:5])}"
                         + (" …" if len(extra) > 5 else ""))
    return result


def _split_on_dots(state: Mapping[str, Any]) -> dict:
    root: dict = {}
    for name, value in state.items():
        parts = name.split(".")
        node = root
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"unflatten: {'.'.join(parts[:i + 1])!r} is a tensor and a prefix of {name!r}")
            node = child
        if parts[-1] in node:
            raise ValueError(f"unflatten: {name!r} is a tensor and a prefix of other names")
        node[parts[-1]] = value
    return root
