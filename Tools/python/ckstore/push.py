"""The background pusher: snapshots of a training run into a store without stalling training.

How a push works: :meth:`CheckpointPusher.push` (``Pusher`` is a short alias) flattens the state
dict, copies every tensor to host memory (numpy copies; torch tensors with one copy each, pinned
staging and ``non_blocking`` on CUDA) and returns a future at once. A background thread then
streams the safetensors bytes, tensor by tensor, straight into the standard input of
``ckstore put --run RUN --step N -`` (no temporary file, no second in-memory copy). At most
``max_in_flight`` pushes are pending; a further push blocks until one has finished. An error in
a background push is raised by the next ``push``/``maybe_push`` or by ``close`` (and by
``with``'s exit), never dropped.

Under ``torch.distributed`` only rank 0 pushes by default; see :mod:`ckstore.distributed`.
"""

from __future__ import annotations

import atexit
import numbers
import os
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

from . import safetensors_io
from .cli import error_text, find_binary, require_dirs, require_parts
from .distributed import Placement, part_name, resolve
from .errors import PushError
from .flatten import DEFAULT_EXACT_NAMES
from .host import flatten_and_materialize, host_copies
from .safetensors_io import HostTensor
from .torch_interop import metric_value

__all__ = ["CheckpointPusher", "Pusher", "PushStats", "format_metric"]

State = Union[Mapping[str, Any], Callable[[], Mapping[str, Any]]]


def format_metric(name: str, value: Any) -> str:
    """``NAME=VALUE`` for ``ckstore put --metric``/``ckstore metric``: torch tensors of any dtype
    (bf16, 0-d) and device via ``.item()``, numpy scalars, Python numbers."""
    return f"{name}={metric_value(value)!r}"


def _ms(seconds: float) -> str:
    """Thousandths with about three significant digits (``0.412``, ``94.1``, ``1234``)."""
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def _done(result: Any = None) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future


@dataclass(frozen=True)
class PushStats:
    """How long pushes took, from :attr:`CheckpointPusher.stats` (a consistent snapshot).

    ``pushes``: calls of ``push``/``maybe_push``/``push_dir`` that started a push.
    ``blocked_total``/``blocked_max``: seconds the caller spent inside those calls, from call to
    return — building the state (a ``maybe_push`` callable), the copy to host memory plus any
    back-pressure wait for a free slot. ``puts``: background ``ckstore put`` processes that
    have exited (successfully or not); ``put_total``/``put_max``: their seconds from process
    start to exit. ``bytes``: safetensors bytes streamed into successful puts. Once every push
    has finished (after ``wait()`` or ``close()``), ``puts`` equals ``pushes`` unless ckstore
    could not be started.
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
    ``interval``: the step interval of :meth:`should_push`/:meth:`maybe_push`. ``max_in_flight``:
    how many pushes may be pending at once; a further push blocks until one finishes
    (back-pressure bounds the host memory held by copies). ``metadata``: extra ``__metadata__``
    entries (strings; keys starting with ``ckstore.`` are reserved) written into every file. ``force``: pass ``--force`` (replace different
    content at RUN@STEP). ``exact_names``: last name components of 0-d tensors kept exact
    rather than averaged (default ``("step",)``, see :mod:`ckstore.flatten`).

    Distributed (see :mod:`ckstore.distributed`): with ``torch.distributed`` initialized and no
    rank arguments, only rank 0 pushes and the other ranks' pushes return a completed future
    (result None). ``world_size > 1`` (with ``rank``, else the process group's rank) or
    ``per_rank=True`` makes each rank push its own part; this needs ``ckstore put --parts``.

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
        *,
        rank: int | None = None,
        world_size: int | None = None,
        per_rank: bool = False,
        exact_names: tuple[str, ...] = DEFAULT_EXACT_NAMES,
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
        reserved = [k for k in self.metadata if str(k).startswith("ckstore.")]
        if reserved:
            raise ValueError(f"metadata keys starting with 'ckstore.' are reserved: {', '.join(map(str, reserved))}")
        self.force = force
        self.exact_names = tuple(exact_names)
        self.placement: Placement = resolve(rank, world_size, per_rank)
        if self.placement.mode == "parts":
            require_parts(self.binary, f"per-rank pushes (world_size {self.placement.world_size})")
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self._stats = PushStats()
        _live_pushers.add(self)

    # -- public API -------------------------------------------------------------------------

    @property
    def rank(self) -> int:
        """This process's rank (0 without torch.distributed)."""
        return self.placement.rank

    @property
    def world_size(self) -> int:
        """The number of ranks (1 without torch.distributed)."""
        return self.placement.world_size

    @property
    def stats(self) -> PushStats:
        """Timing so far: pushes, seconds blocked inside push/maybe_push (total, max), seconds
        of the background puts (total, mean), bytes pushed. See :class:`PushStats`."""
        with self._lock:
            return self._stats

    def should_push(self, step: int) -> bool:
        """Whether :meth:`maybe_push` pushes at ``step`` (``step`` a multiple of ``interval``).
        The same on every rank, so ranks can agree on collectives around a push."""
        if self.interval is None:
            raise ValueError("should_push/maybe_push need CheckpointPusher(interval=...)")
        return step % self.interval == 0

    def push(self, step: int, state_dict: State, metrics: Mapping[str, Any] | None = None) -> Future:
        """Snapshot ``state_dict`` as RUN@``step`` (with optional ``metrics``) in the background.

        ``state_dict`` may be a callable returning the state. Copies the tensors to host memory
        and returns a ``concurrent.futures.Future`` whose ``result()`` is the snapshot digest
        (``"sha256:…"``; in parts mode the part's digest, or the snapshot's for the part that
        completes it; None on ranks that do not push). Blocks first while ``max_in_flight``
        pushes are pending. Raises the error of an earlier failed push.
        """
        return self._timed_push(time.perf_counter(), step, state_dict, metrics)

    def maybe_push(self, step: int, state_dict: State, metrics: Mapping[str, Any] | None = None) -> Future | None:
        """Push when :meth:`should_push` says so; return the future, else None.

        ``state_dict`` (and ``metrics``) may be callables: they are only called on push steps,
        so an expensive state (an all-gather under FSDP) is built only when needed. Raises the
        error of an earlier failed push even when this step is not pushed.
        """
        started = time.perf_counter()
        if not self.should_push(step):
            self._raise_pending()
            return None
        return self._timed_push(started, step, state_dict, metrics)

    def push_dir(self, step: int, path: str | os.PathLike, metrics: Mapping[str, Any] | None = None) -> Future:
        """Push an existing checkpoint directory (e.g. what ``save_pretrained`` wrote) as the
        snapshot RUN@``step``, in the background (``ckstore put --run RUN --step N DIR``).

        The directory must stay unchanged until the returned future is done. Only rank 0 pushes
        under torch.distributed; the others get a completed future (result None). Needs a
        ckstore with directory snapshots (issue 11): :class:`UnsupportedByBinary` otherwise.
        """
        started = time.perf_counter()
        self._check_step(step)
        self._raise_pending()
        if self.placement.rank != 0:
            return _done()
        require_dirs(self.binary, "push_dir")
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise NotADirectoryError(f"push_dir: {path} is not a directory")
        metric_args = [format_metric(k, v) for k, v in _call(metrics).items()]
        cmd = self._put_command(step, metric_args) + [path]
        future = self._start(step, cmd, None, None)
        self._count_blocked(started)
        return future

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

    def _check_step(self, step: int) -> None:
        if self._closed:
            raise RuntimeError("push on a closed CheckpointPusher")
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"step must be a non-negative integer, not {step!r}")

    def _count_blocked(self, started: float) -> None:
        blocked = time.perf_counter() - started
        with self._lock:
            st = self._stats
            self._stats = PushStats(st.pushes + 1, st.blocked_total + blocked, max(st.blocked_max, blocked),
                                    st.puts, st.put_total, st.put_max, st.bytes)

    def _timed_push(self, started: float, step: int, state_dict: State,
                    metrics: Mapping[str, Any] | None) -> Future:
        self._check_step(step)
        self._raise_pending()
        state = _call(state_dict)
        tensors, extra = flatten_and_materialize(state, self.placement.materialize_mode, self.exact_names)
        if not self.placement.pushes:
            return _done()  # a rank other than 0 in rank0 mode: the collectives above ran, nothing to put
        metric_args = [format_metric(k, v) for k, v in _call(metrics).items()]
        meta = {**extra, **self.metadata, "ckstore.run": self.run, "ckstore.step": str(int(step))}
        if self.placement.mode == "parts":
            meta["ckstore.rank"] = str(self.placement.rank)
            meta["ckstore.world_size"] = str(self.placement.world_size)
            if self.placement.rank != 0:
                metric_args = []  # metrics are recorded once, by rank 0's part
        self._slots.acquire()
        try:
            self._raise_pending()
            host = host_copies(tensors)
        except BaseException:
            self._slots.release()
            raise
        cmd = self._put_command(step, metric_args)
        if self.placement.mode == "parts":
            cmd += ["--parts", str(self.placement.world_size),
                    "--path", part_name(self.placement.rank, self.placement.world_size)]
        cmd.append("-")
        future = self._start(step, cmd, host, meta, slot_taken=True)
        self._count_blocked(started)
        return future

    def _put_command(self, step: int, metric_args: list[str]) -> list[str]:
        cmd = [self.binary]
        if self.store is not None:
            cmd += ["--store", os.fspath(self.store)]
        cmd += ["put", "--run", self.run, "--step", str(int(step))]
        for m in metric_args:
            cmd += ["--metric", m]
        if self.force:
            cmd.append("--force")
        return cmd

    def _start(self, step: int, cmd: list[str], tensors: list[tuple[str, HostTensor]] | None,
               meta: dict[str, str] | None, slot_taken: bool = False) -> Future:
        if not slot_taken:
            self._slots.acquire()
        future: Future = Future()
        future.set_running_or_notify_cancel()
        # Not a daemon thread: an interpreter exiting without close() still finishes the push
        # (a killed `ckstore put` would store nothing); _report_at_exit then prints any error.
        thread = threading.Thread(target=self._worker, args=(int(step), cmd, tensors, meta, future),
                                  name=f"ckstore-push-{self.run}@{step}")
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return future

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

    def _worker(self, step: int, cmd: list[str], tensors: list[tuple[str, HostTensor]] | None,
                meta: dict[str, str] | None, future: Future) -> None:
        try:
            digest = self._put(step, cmd, tensors, meta)
        except BaseException as e:  # noqa: BLE001
            with self._lock:
                self._errors.append(e)
            future.set_exception(e)
        else:
            future.set_result(digest)
        finally:
            if tensors is not None:
                tensors.clear()
            with self._lock:
                self._threads.discard(threading.current_thread())
            self._slots.release()

    def _put(self, step: int, cmd: list[str], tensors: list[tuple[str, HostTensor]] | None,
             meta: dict[str, str] | None) -> str:
        with tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if tensors is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=err)
            write_error: OSError | None = None
            written = 0
            if tensors is not None:
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
            raise PushError(f"ckstore put {self.run}@{step} failed (exit {rc}): {error_text(stderr)}",
                            step, rc, stderr)
        if write_error is not None:
            raise PushError(f"ckstore put {self.run}@{step}: writing to ckstore failed: {write_error}", step, rc, stderr)
        digests = [line.split()[-1] for line in out.decode("utf-8", "replace").splitlines()
                   if line.split() and line.split()[-1].startswith("sha256:")]
        if not digests:
            raise PushError(f"ckstore put {self.run}@{step}: unexpected output {out!r}", step, rc, stderr)
        return digests[-1]


def _call(value: Any) -> Any:
    """``value()`` when callable, ``{}`` for None, else ``value``."""
    if value is None:
        return {}
    return value() if callable(value) else value


Pusher = CheckpointPusher  # short alias

_live_pushers: "weakref.WeakSet[CheckpointPusher]" = weakref.WeakSet()


@atexit.register
def _report_at_exit() -> None:
    """At interpreter exit, print background push errors nobody collected (never drop them)."""
    for pusher in list(_live_pushers):
        try:
            pusher.wait()
        except Exception as e:  # noqa: BLE001
            print(f"ckstore: a background push failed and was never collected: {e}", file=sys.stderr)
