"""A PyTorch Lightning callback that pushes snapshots to ckstore.

    from ckstore.lightning import CKStoreLightningCallback
    trainer = lightning.pytorch.Trainer(..., callbacks=[CKStoreLightningCallback("my-run", every=100)])

Importing this module imports ``lightning.pytorch`` (or, failing that, ``pytorch_lightning``).
"""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the standalone package
    from pytorch_lightning.callbacks import Callback

from .push import CheckpointPusher

__all__ = ["CKStoreLightningCallback"]


class CKStoreLightningCallback(Callback):
    """Push ``pl_module.state_dict()`` at RUN@``trainer.global_step`` every ``every`` optimizer
    steps, with the batch's ``loss`` as a metric when the training step returned one.

    Every rank runs the callback; only rank 0 pushes (the pusher's default under
    torch.distributed). The pusher is created at ``setup`` (after the process group exists) and
    closed, raising any background error, at ``on_train_end``. Other keyword arguments go to
    :class:`ckstore.CheckpointPusher`.
    """

    def __init__(self, run: str, every: int, **pusher_kwargs: Any):
        if every < 1:
            raise ValueError("every must be a positive number of steps")
        self.run = run
        self.every = every
        self.pusher_kwargs = pusher_kwargs
        self.pusher: CheckpointPusher | None = None
        self._last = -1

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Create the pusher (once)."""
        if self.pusher is None:
            self.pusher = CheckpointPusher(self.run, interval=self.every, **self.pusher_kwargs)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Push when the global step is a new multiple of ``every``."""
        step = trainer.global_step
        if self.pusher is None or step == self._last or not self.pusher.should_push(step) or step == 0:
            return
        self._last = step
        metrics = {}
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and hasattr(loss, "numel") and loss.numel() == 1:
            metrics["loss"] = loss
        self.pusher.push(step, pl_module.state_dict, metrics)

    def on_train_end(self, trainer, pl_module) -> None:
        """Wait for the last push and raise any background error."""
        if self.pusher is not None:
            self.pusher.close()
            self.pusher = None
