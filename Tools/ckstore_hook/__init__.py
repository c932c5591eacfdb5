"""ckstore_hook: push training checkpoints into a ckstore store without stalling training.

Usage::

    import sys; sys.path.insert(0, "Tools")      # or put Tools/ on PYTHONPATH
    from ckstore_hook import CheckpointPusher, load, record_metric

    with CheckpointPusher("my-run", store="/data/ckstore", interval=1000) as pusher:
        for step in range(1, n_steps + 1):
            train_step()
            pusher.maybe_push(step, model_state, metrics={"loss": loss})
    # leaving the block waits for the last push and raises any background error

    avg = load(lawa=(6, 1000), at=70000, run="my-run", store="/data/ckstore")
    record_metric("my-run", 70000, variant="lawa-k6-s1000", store="/data/ckstore", val_loss=1.23)

How a push works: :meth:`CheckpointPusher.push` (``Pusher`` is a short alias) copies every
tensor to host memory (numpy copies; torch tensors via ``.detach().to("cpu", copy=True)``) and
returns a future at once. A background
thread then streams the safetensors bytes, tensor by tensor, straight into the standard input
of ``ckstore put --run RUN --step N -`` (no temporary file, no second in-memory copy). At most
``max_in_flight`` pushes are pending; a further push blocks until one has finished. An error in
a background push is raised by the next ``push``/``maybe_push`` or by ``close`` (and by
``with``'s exit), never dropped.

Timing: :attr:`CheckpointPusher.stats` returns a :class:`PushStats` with the number of pushes,
the total and the longest time the training loop spent *inside* ``push``/``maybe_push`` (from
call to return: the host copy plus any back-pressure wait), the total and mean time of the
background ``ckstore put`` processes (from process start to exit), and the bytes pushed.
``str(pusher.stats)`` is a one-line summary::

    push: 30 pushes, blocked 0.0123 s total (0.41 ms/push, max 1.2 ms); background put 2.81 s total (94 ms/put); 136 MB

State dicts: values may be numpy arrays, torch tensors, Python/numpy scalars (stored as 0-d
tensors: ``int`` → I64, ``float`` → F64, ``bool`` → BOOL) and nested containers, which are
flattened with dotted names: ``{"layer": {"0": {"weight": w}}}`` becomes ``layer.0.weight``;
lists and tuples are flattened by index (``param_groups.0.lr``), except that a list/tuple of
plain numbers becomes one 1-d tensor (``betas`` → F64 ``[2]``). ``str`` and ``None`` leaves
(e.g. ``foreach=None`` in a torch optimizer's param_groups) are not tensors: they are kept in
the file's ``__metadata__`` under their dotted name, JSON-encoded. Two paths that flatten to
the same name are an error.

The ckstore binary is ``binary=`` if given, else ``$CKSTORE_BIN``, else ``ckstore`` on PATH.
The store is ``store=`` if given (passed as ``--store``), else whatever ckstore defaults to
(``$CKSTORE_DIR``, then ``./.ckstore``). ``ckstore put`` creates a missing store only at an
explicit location (``store=`` or ``$CKSTORE_DIR``); the ``./.ckstore`` default must have been
created with ``ckstore init``.
"""

from __future__ import annotations

import atexit
import json
import numbers
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from . import safetensors_io
from .safetensors_io import HostTensor, host_tensor

__all__ = [
    "CheckpointPusher",
    "Pusher",
    "PushStats",
    "PushError",
    "CKStoreError",
    "load",
    "record_metric",
    "flatten_state_dict",
    "find_binary",
    "safetensors_io",
]


class CKStoreError(RuntimeError):
    """A ckstore command failed. ``returncode`` is its exit status, ``stderr`` its error output."""

    def __init__(self, message: str, returncode: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class PushError(CKStoreError):
    """A background push failed (``step`` says which one)."""

    def __init__(self, message: str, step: int, returncode: int | None = None, stderr: str = ""):
        super().__init__(message, returncode, stderr)
        self.step = step


def find_binary(binary: str | os.PathLike | None = None) -> str:
    """Return the ckstore executable: ``binary`` if given, else ``$CKSTORE_BIN``, else
    ``ckstore`` found on PATH. Raises ``FileNotFoundError`` when none is found."""
    if binary is not None:
        return os.fspath(binary)
    env = os.environ.get("CKSTORE_BIN")
    if env:
        return env
    found = shutil.which("ckstore")
    if found:
        return found
    raise FileNotFoundError("ckstore binary not found: pass binary=..., set CKSTORE_BIN or put ckstore on PATH")


def _base_command(binary, store) -> list[str]:
    cmd = [find_binary(binary)]
    if store is not None:
        cmd += ["--store", os.fspath(store)]
    return cmd


def _error_text(stderr: str) -> str:
    """The most useful part of ckstore's stderr: its 'error:' lines, else the last line."""
    lines = [l for l in stderr.splitlines() if l.strip()]
    errors = [l for l in lines if "error" in l.lower()]
    return " | ".join(errors or lines[-1:]) or "(no error output)"


# ---------------------------------------------------------------------------------------------
# State-dict flattening and host copies


def _is_torch_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _torch_to_host(t) -> HostTensor:
    """Copy a torch tensor to a contiguous CPU numpy array (one device→host copy)."""
    import torch

    cpu = t.detach().to("cpu", copy=True)
    if not cpu.is_contiguous():
        cpu = cpu.contiguous()
    shape = tuple(int(d) for d in cpu.shape)
    if cpu.dtype == torch.bfloat16:
        arr = cpu.view(torch.int16).numpy().view(np.uint16)
        return HostTensor("BF16", shape, arr)
    float8 = {
        "float8_e4m3fn": "F8_E4M3",
        "float8_e5m2": "F8_E5M2",
        "float8_e4m3fnuz": "F8_E4M3FNUZ",
        "float8_e5m2fnuz": "F8_E5M2FNUZ",
        "float8_e8m0fnu": "F8_E8M0",
    }
    name = str(cpu.dtype).removeprefix("torch.")
    if name in float8:
        return HostTensor(float8[name], shape, cpu.view(torch.uint8).numpy())
    arr = cpu.numpy()  # shares memory with the fresh CPU copy: no second copy
    if sys.byteorder == "big":  # pragma: no cover
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return HostTensor(safetensors_io.dtype_name(arr.dtype), shape, arr)


def _is_number(v: Any) -> bool:
    return isinstance(v, (bool, numbers.Number, np.generic)) and not isinstance(v, (str, bytes))


def _scalar_array(v: Any) -> np.ndarray:
    if isinstance(v, np.generic):
        return np.asarray(v)
    if isinstance(v, bool):
        return np.asarray(v, dtype=np.bool_)
    if isinstance(v, numbers.Integral):
        return np.asarray(v, dtype=np.int64)
    if isinstance(v, numbers.Real):
        return np.asarray(v, dtype=np.float64)
    if isinstance(v, numbers.Complex):
        return np.asarray(v, dtype=np.complex64)
    raise TypeError(f"unsupported scalar {v!r}")


def flatten_state_dict(state: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any], dict[str, str]]:
    """Flatten a (possibly nested) state dict into dotted names.

    Returns ``(leaves, metadata)``: ``leaves`` maps each dotted name to an array-like leaf
    (numpy array, torch tensor or scalar, not yet copied); ``metadata`` maps the dotted names
    of ``str``/``None`` leaves to their JSON encoding. Mappings are flattened by key and
    lists/tuples by index, except that a list/tuple made only of numbers becomes one leaf
    (a 1-d array). Raises ``ValueError`` when two paths produce the same name and
    ``TypeError`` for values that cannot be stored.
    """
    leaves: dict[str, Any] = {}
    metadata: dict[str, str] = {}

    def put(name: str, value: Any) -> None:
        if name in leaves or name in metadata:
            raise ValueError(f"state dict: two entries flatten to the same name {name!r}")
        if not name:
            raise ValueError("state dict: a non-container value needs a name")
        leaves[name] = value

    def visit(name: str, value: Any) -> None:
        if isinstance(value, np.ndarray) or _is_torch_tensor(value):
            put(name, value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                key = str(k)
                visit(f"{name}.{key}" if name else key, v)
        elif isinstance(value, (list, tuple)):
            if value and all(_is_number(v) for v in value):
                put(name, np.asarray(value))
            elif not value:
                if name in leaves or name in metadata:
                    raise ValueError(f"state dict: two entries flatten to the same name {name!r}")
                metadata[name] = "[]"
            else:
                for i, v in enumerate(value):
                    visit(f"{name}.{i}" if name else str(i), v)
        elif value is None or isinstance(value, str):
            if name in leaves or name in metadata:
                raise ValueError(f"state dict: two entries flatten to the same name {name!r}")
            metadata[name] = json.dumps(value)
        elif _is_number(value):
            put(name, value)
        elif hasattr(value, "__array__"):
            put(name, value)
        else:
            raise TypeError(f"state dict entry {name!r}: cannot store a {type(value).__name__}")

    visit(prefix, state)
    return leaves, metadata


def _to_host(name: str, value: Any) -> HostTensor:
    """Copy one leaf to host memory as a HostTensor."""
    if _is_torch_tensor(value):
        return _torch_to_host(value)
    if _is_number(value) and not isinstance(value, np.ndarray):
        return host_tensor(_scalar_array(value))
    try:
        return host_tensor(np.asarray(value))
    except TypeError as e:
        raise TypeError(f"state dict entry {name!r}: {e}") from None


def snapshot_to_host(state: Mapping[str, Any]) -> tuple[list[tuple[str, HostTensor]], dict[str, str]]:
    """Flatten ``state`` and copy every tensor to host memory; returns ``(tensors, metadata)``.

    After this returns, the caller's arrays/tensors may change without affecting the result.
    """
    leaves, metadata = flatten_state_dict(state)
    return [(name, _to_host(name, v)) for name, v in leaves.items()], metadata


# ---------------------------------------------------------------------------------------------
# The pusher


def _format_metric(name: str, value: Any) -> str:
    if isinstance(value, (np.ndarray, np.generic)) or _is_torch_tensor(value):
        value = float(np.asarray(value if not _is_torch_tensor(value) else value.detach().cpu()).reshape(()))
    return f"{name}={float(value)!r}"


def _ms(seconds: float) -> str:
    """Thousandths with about three significant digits (``0.412``, ``94.1``, ``1234``)."""
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


@dataclass(frozen=True)
class PushStats:
    """How long pushes took, from :attr:`CheckpointPusher.stats` (a consistent snapshot).

    ``pushes``: calls of ``push``/``maybe_push`` that started a push (successfully copied the
    state and handed it to the background). ``blocked_total``/``blocked_max``: seconds the
    caller spent inside those calls, from call to return — the copy to host memory plus any
    back-pressure wait for a free slot. ``puts``: background ``ckstore put`` processes that
    have exited (successfully or not); ``put_total``/``put_max``: their seconds from process
    start to exit (streaming the file in, storing it, committing). ``bytes``: safetensors bytes
    streamed into successful puts. Once every push has finished (after ``wait()`` or
    ``close()``), ``puts`` equals ``pushes`` unless ckstore could not be started.
    """

    pushes: int = 0
    blocked_total: float = 0.0
    blocked_max: float = 0.0
    puts: int = 0
    put_total: float = 0.0
    put_max: float = 0.0
    bytes: int = 0

    @property
    def blocked_mean(self) -> float:
        """Mean seconds spent inside one push (0 when there was none)."""
        return self.blocked_total / self.pushes if self.pushes else 0.0

    @property
    def put_mean(self) -> float:
        """Mean seconds of one background put (0 when none has finished)."""
        return self.put_total / self.puts if self.puts else 0.0

    def __str__(self) -> str:
        return (f"push: {self.pushes} pushes, blocked {self.blocked_total:.4f} s total "
                f"({_ms(self.blocked_mean)} ms/push, max {_ms(self.blocked_max)} ms); "
                f"background put {self.put_total:.2f} s total ({_ms(self.put_mean)} ms/put); "
                f"{_ms(self.bytes / 1e9)} MB")


class CheckpointPusher:
    """Pushes snapshots of a training run into a ckstore store in the background.

    ``run``: the run name. ``store``: the store path (``--store``; default: ckstore's own
    default). ``binary``: the ckstore executable (default: ``$CKSTORE_BIN``, then PATH).
    ``interval``: the step interval of :meth:`maybe_push`. ``max_in_flight``: how many pushes
    may be pending at once; a further push blocks until one finishes (back-pressure bounds the
    host memory held by copies). ``metadata``: extra ``__metadata__`` entries (strings) written
    into every file. ``force``: pass ``--force`` (replace different content at RUN@STEP).

    Use as a context manager, or call :meth:`close` at the end. :attr:`stats` tells how long
    the caller was blocked in pushes compared to how long the background puts took.
    """

    def __init__(
        self,
        run: str,
        store: str | os.PathLike | None = None,
        binary: str | os.PathLike | None = None,
        interval: int | None = None,
        max_in_flight: int = 1,
        metadata: Mapping[str, str] | None = None,
        force: bool = False,
    ):
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if interval is not None and interval < 1:
            raise ValueError("interval must be a positive number of steps")
        self.run = run
        self.store = store
        self.binary = find_binary(binary)
        self.interval = interval
        self.max_in_flight = max_in_flight
        self.metadata = dict(metadata or {})
        self.force = force
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self._stats = PushStats()
        _live_pushers.add(self)

    # -- public API -------------------------------------------------------------------------

    @property
    def stats(self) -> PushStats:
        """Timing so far: pushes, seconds blocked inside push/maybe_push (total, max), seconds
        of the background puts (total, mean), bytes pushed. See :class:`PushStats`."""
        with self._lock:
            return self._stats

    def push(self, step: int, state_dict: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> Future:
        """Snapshot ``state_dict`` as RUN@``step`` (with optional ``metrics``) in the background.

        Copies the tensors to host memory and returns a ``concurrent.futures.Future`` whose
        ``result()`` is the snapshot digest (``"sha256:…"``). Blocks first while
        ``max_in_flight`` pushes are pending. Raises the error of an earlier failed push.
        """
        return self._timed_push(time.perf_counter(), step, state_dict, metrics)

    def _timed_push(self, started: float, step: int, state_dict: Mapping[str, Any],
                    metrics: Mapping[str, Any] | None) -> Future:
        future = self._push(step, state_dict, metrics)
        blocked = time.perf_counter() - started
        with self._lock:
            st = self._stats
            self._stats = PushStats(st.pushes + 1, st.blocked_total + blocked, max(st.blocked_max, blocked),
                                    st.puts, st.put_total, st.put_max, st.bytes)
        return future

    def _push(self, step: int, state_dict: Mapping[str, Any], metrics: Mapping[str, Any] | None) -> Future:
        if self._closed:
            raise RuntimeError("push on a closed CheckpointPusher")
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"step must be a non-negative integer, not {step!r}")
        self._raise_pending()
        self._slots.acquire()
        try:
            self._raise_pending()
            tensors, extra = snapshot_to_host(state_dict)
            metric_args = [_format_metric(k, v) for k, v in (metrics or {}).items()]
        except BaseException:
            self._slots.release()
            raise
        meta = {**extra, **self.metadata, "ckstore.run": self.run, "ckstore.step": str(int(step))}
        future: Future = Future()
        future.set_running_or_notify_cancel()
        # Not a daemon thread: an interpreter exiting without close() still finishes the push
        # (a killed `ckstore put` would store nothing); _report_at_exit then prints any error.
        thread = threading.Thread(
            target=self._worker, args=(int(step), tensors, meta, metric_args, future),
            name=f"ckstore-push-{self.run}@{step}")
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return future

    def maybe_push(self, step: int, state_dict: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> Future | None:
        """Push when ``step`` is a multiple of ``interval``; return the future, else None.

        Raises the error of an earlier failed push even when this step is not pushed.
        """
        started = time.perf_counter()
        if self.interval is None:
            raise ValueError("maybe_push needs CheckpointPusher(interval=...)")
        if step % self.interval != 0:
            self._raise_pending()
            return None
        return self._timed_push(started, step, state_dict, metrics)

    def wait(self) -> None:
        """Wait until every pending push has finished, then raise the first error, if any."""
        while True:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                break
            for t in threads:
                t.join()
        self._raise_pending()

    def close(self) -> None:
        """Wait for pending pushes and raise the first background error, if any. Idempotent."""
        try:
            self.wait()
        finally:
            self._closed = True

    def __enter__(self) -> "CheckpointPusher":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
            return
        # The body raised: still wait for the pushes, and do not hide the body's exception.
        try:
            self.close()
        except Exception as background:  # noqa: BLE001
            if hasattr(exc, "add_note"):
                exc.add_note(f"also, a background ckstore push failed: {background}")

    # -- internals --------------------------------------------------------------------------

    def _raise_pending(self) -> None:
        with self._lock:
            if not self._errors:
                return
            first, rest = self._errors[0], self._errors[1:]
            self._errors.clear()
        if rest and hasattr(first, "add_note"):
            for e in rest:
                first.add_note(f"another push failed too: {e}")
        raise first

    def _worker(self, step: int, tensors: list[tuple[str, HostTensor]], meta: dict[str, str],
                metric_args: list[str], future: Future) -> None:
        try:
            digest = self._put(step, tensors, meta, metric_args)
        except BaseException as e:  # noqa: BLE001
            tensors.clear()
            with self._lock:
                self._errors.append(e)
            future.set_exception(e)
        else:
            tensors.clear()
            future.set_result(digest)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
            self._slots.release()

    def _put(self, step: int, tensors: list[tuple[str, HostTensor]], meta: dict[str, str],
             metric_args: list[str]) -> str:
        cmd = _base_command(self.binary, self.store) + ["put", "--run", self.run, "--step", str(step)]
        for m in metric_args:
            cmd += ["--metric", m]
        if self.force:
            cmd.append("--force")
        cmd.append("-")
        with tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
            write_error: OSError | None = None
            written = 0
            try:
                written = safetensors_io.write(proc.stdin, tensors, meta)
            except OSError as e:  # BrokenPipeError: ckstore exited early; its stderr says why
                write_error = e
            try:
                proc.stdin.close()
            except OSError:
                pass
            out = proc.stdout.read()
            proc.stdout.close()
            rc = proc.wait()
            took = time.perf_counter() - started
            ok = rc == 0 and write_error is None
            with self._lock:
                st = self._stats
                self._stats = PushStats(st.pushes, st.blocked_total, st.blocked_max, st.puts + 1,
                                        st.put_total + took, max(st.put_max, took), st.bytes + (written if ok else 0))
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
        if rc != 0:
            raise PushError(f"ckstore put {self.run}@{step} failed (exit {rc}): {_error_text(stderr)}",
                            step, rc, stderr)
        if write_error is not None:
            raise PushError(f"ckstore put {self.run}@{step}: writing to ckstore failed: {write_error}", step, rc, stderr)
        digest = out.decode().strip().splitlines()[-1] if out.strip() else ""
        if not digest.startswith("sha256:"):
            raise PushError(f"ckstore put {self.run}@{step}: unexpected output {out!r}", step, rc, stderr)
        return digest


Pusher = CheckpointPusher  # short alias

_live_pushers: "weakref.WeakSet[CheckpointPusher]" = weakref.WeakSet()


@atexit.register
def _report_at_exit() -> None:
    """At interpreter exit, print background push errors nobody collected (never drop them)."""
    for pusher in list(_live_pushers):
        try:
            pusher.wait()
        except Exception as e:  # noqa: BLE001
            print(f"ckstore_hook: a background push failed and was never collected: {e}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Reading and metrics


def _query_args(lawa, swa, ema, mean, weights, at, run) -> list[str]:
    def spec(value, keys) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping):
            return ",".join(f"{k}={v}" for k, v in value.items())
        if isinstance(value, (tuple, list)):
            return ",".join(f"{k}={v}" for k, v in zip(keys, value) if v is not None)
        if isinstance(value, numbers.Real):
            return f"{keys[0]}={value}"
        raise TypeError(f"cannot express {value!r} as a query option")

    args: list[str] = []
    if run is not None:
        args += ["--run", run]
    if lawa is not None:
        args += ["--lawa", spec(lawa, ("k", "stride"))]
    if swa is not None:
        args += ["--swa", spec(swa, ("start", "stride"))]
    if ema is not None:
        args += ["--ema", spec(ema, ("decay", "start", "stride"))]
    if mean is not None:
        args += ["--mean", mean if isinstance(mean, str) else ",".join(mean)]
    if weights is not None:
        args += ["--weights", weights if isinstance(weights, str) else ",".join(str(w) for w in weights)]
    if at is not None:
        args += ["--at", str(int(at))]
    return args


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        raise CKStoreError(f"{what} failed (exit {proc.returncode}): {_error_text(stderr)}", proc.returncode, stderr)
    return proc


def load(
    ref: str | None = None,
    *,
    run: str | None = None,
    at: int | None = None,
    lawa: Any = None,
    swa: Any = None,
    ema: Any = None,
    mean: Sequence[str] | str | None = None,
    weights: Sequence[float] | str | None = None,
    store: str | os.PathLike | None = None,
    binary: str | os.PathLike | None = None,
    no_cache: bool = False,
    with_metadata: bool = False,
):
    """Read a stored snapshot, or the result of an averaging query, as numpy arrays.

    ``load("run@70000")`` (or ``"run@latest"``, ``"sha256:…"``, a digest prefix) returns the
    snapshot; ``load(lawa=(6, 1000), at=70000, run="r")`` the LAWA average of the 6 snapshots
    70000, 69000, …, 65000. Query options: ``lawa=(K, NU)`` or ``"k=K,stride=NU"``;
    ``swa=(START, NU)``/dict/str; ``ema=DECAY``/``(DECAY, START, NU)``/dict/str;
    ``mean=[REF, …]`` with optional ``weights``. Runs ``ckstore get … -o -`` and parses its
    output in memory. Returns ``{name: ndarray}`` (flattened names as pushed), or
    ``(tensors, metadata)`` with ``with_metadata=True``. BF16 tensors come back as
    ``ml_dtypes.bfloat16`` when ml_dtypes is installed, else widened (exactly) to float32; see
    :mod:`ckstore_hook.safetensors_io`. Raises :class:`CKStoreError` when ckstore fails.
    """
    query = _query_args(lawa, swa, ema, mean, weights, at, None)
    if ref is not None and query:
        raise ValueError("give either a REF or query options, not both")
    if ref is None and not query:
        raise ValueError("give a REF (RUN@STEP, …) or a query (lawa=, swa=, ema=, mean=)")
    cmd = _base_command(binary, store) + ["get"]
    if ref is not None:
        if run is not None:
            raise ValueError("run= applies to queries; write the REF as RUN@STEP")
        cmd += [ref]
        what = f"ckstore get {ref}"
    else:
        cmd += _query_args(lawa, swa, ema, mean, weights, at, run) + (["--no-cache"] if no_cache else [])
        what = "ckstore get " + " ".join(query)
    cmd += ["-o", "-", "--quiet"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        chunks = bytearray()
        while True:
            block = proc.stdout.read(1 << 20)
            if not block:
                break
            chunks += block
        proc.stdout.close()
        rc = proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if rc != 0:
        raise CKStoreError(f"{what} failed (exit {rc}): {_error_text(stderr)}", rc, stderr)
    return safetensors_io.parse(chunks, with_metadata=with_metadata)


def record_metric(
    run: str,
    step: int,
    variant: str = "raw",
    *,
    store: str | os.PathLike | None = None,
    binary: str | os.PathLike | None = None,
    metrics: Mapping[str, Any] | None = None,
    **values: Any,
) -> None:
    """Record metric values for RUN@STEP: ``ckstore metric RUN@STEP NAME=VALUE… --variant V``.

    Values come from keyword arguments (``val_loss=0.3``) and/or ``metrics`` (for names that are
    not Python identifiers). ``variant`` defaults to ``"raw"``; averaged evaluations use e.g.
    ``"lawa-k6-s1000"``. Raises :class:`CKStoreError` when ckstore fails.
    """
    all_values = {**(metrics or {}), **values}
    if not all_values:
        raise ValueError("record_metric needs at least one NAME=VALUE")
    cmd = _base_command(binary, store) + ["metric", f"{run}@{int(step)}"]
    cmd += [_format_metric(k, v) for k, v in all_values.items()]
    cmd += ["--variant", variant]
    _run(cmd, f"ckstore metric {run}@{step}")
