"""A Hugging Face ``transformers`` Trainer callback that pushes snapshots to ckstore.

    from ckstore.hf import CKStoreTrainerCallback
    trainer = Trainer(..., callbacks=[CKStoreTrainerCallback("my-run", every=100)])

Importing this module imports transformers.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

from .push import CheckpointPusher

__all__ = ["CKStoreTrainerCallback"]


class CKStoreTrainerCallback(TrainerCallback):
    """Push the model's state dict at RUN@``global_step``.

    ``every=N``: after every N-th optimizer step (``on_step_end``); ``every=None``: whenever the
    Trainer saves a checkpoint (``on_save``), or, with ``save_dir=True``, the checkpoint
    directory the Trainer just wrote (``push_dir``, waiting for it so the Trainer's checkpoint
    rotation cannot delete the directory mid-put; needs ckstore directory snapshots). The
    latest logged ``loss`` goes along as a metric. Under torch.distributed every rank calls the
    callback and only rank 0 pushes (the pusher's default). The pusher is closed, and any
    background error raised, at ``on_train_end``. Other keyword arguments go to
    :class:`ckstore.CheckpointPusher`.
    """

    def __init__(self, run: str, every: int | None = None, *, save_dir: bool = False, **pusher_kwargs: Any):
        if every is not None and every < 1:
            raise ValueError("every must be a positive number of steps")
        self.run = run
        self.every = every
        self.save_dir = save_dir
        self.pusher_kwargs = pusher_kwargs
        self.pusher: CheckpointPusher | None = None

    def _pusher(self) -> CheckpointPusher:
        if self.pusher is None:  # created lazily: torch.distributed is initialized by then
            self.pusher = CheckpointPusher(self.run, **self.pusher_kwargs)
        return self.pusher

    @staticmethod
    def _metrics(state) -> dict[str, float]:
        for entry in reversed(state.log_history):
            if "loss" in entry:
                return {"loss": float(entry["loss"])}
        return {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        """Push every ``every`` steps (when ``every`` is set)."""
        if self.every is not None and model is not None and state.global_step % self.every == 0:
            self._pusher().push(state.global_step, model.state_dict, self._metrics(state))

    def on_save(self, args, state, control, model=None, **kwargs):
        """Push at each Trainer save (when ``every`` is None)."""
        if self.every is not None:
            return
        if self.save_dir:
            path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            self._pusher().push_dir(state.global_step, path, self._metrics(state)).result()
        elif model is not None:
            self._pusher().push(state.global_step, model.state_dict, self._metrics(state))

    def on_train_end(self, args, state, control, **kwargs):
        """Wait for the last push and raise any background error."""
        if self.pusher is not None:
            self.pusher.close()
            self.pusher = None
