"""A loss or gradient that turns NaN or infinite stops the run at that step, or skips the step."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from ddpm_lit.errors import TrainingDiverged
from ddpm_lit.runs import newest_checkpoint

ACTIONS = ("stop", "skip")


class NonFiniteGuard(L.Callback):
    """Check every optimizer step's loss and gradients before the step is taken.

    ``action="stop"``: raise ``TrainingDiverged`` naming the step, the batch's timesteps (of a
    diffusion model) and the last good checkpoint. The NaN is found before ``optimizer.step``,
    BatchNorm's running statistics are put back as they were before the batch, and the
    checkpoint writer refuses non-finite weights: the weights, the EMA and every checkpoint on
    disk are those of the step before. ``action="skip"``: drop the step's gradients (the
    optimizer leaves a weight without a gradient as it is), count it in ``train/skipped_steps``
    and go on; more than ``max_skips`` in a run stops it as ``stop`` does.
    """

    def __init__(self, action: Literal["stop", "skip"] = "stop", max_skips: int = 20) -> None:
        if action not in ACTIONS:
            raise ValueError(f"callbacks.nonfinite.action must be one of {', '.join(ACTIONS)}, got {action!r}")
        self.action, self.max_skips = action, max_skips
        self.skipped = 0
        self._loss: float | None = None
        self._statistics: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        # The forward pass updates BatchNorm's running statistics before the loss is known: kept
        # here (a few numbers per channel) so that a step found non-finite leaves no trace.
        self._statistics = [(b, b.detach().clone()) for m in pl_module.modules()
                            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                            for b in (m.running_mean, m.running_var) if b is not None]

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self._loss = float(loss.detach())

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        loss_bad = self._loss is not None and not math.isfinite(self._loss)
        # One fused norm of all the gradients, one device sync: a NaN or inf anywhere makes it non-finite.
        if not loss_bad and (not params or bool(torch.isfinite(torch.nn.utils.get_total_norm([p.grad for p in params])))):
            return
        bad = sum(not bool(torch.isfinite(p.grad).all()) for p in params)
        if not loss_bad and not bad:
            return  # finite gradients whose norm overflowed: not this guard's business
        what = f"loss {self._loss}" if loss_bad else f"gradient in {bad} tensor(s) (loss {self._loss})"
        for buffer, before in self._statistics:
            buffer.copy_(before)
        if self.action == "skip" and self.skipped < self.max_skips:
            self.skipped += 1
            for p in params:
                p.grad = None
            pl_module.log("train/skipped_steps", float(self.skipped), on_step=True, on_epoch=False)
            return
        raise TrainingDiverged(self.describe(trainer, pl_module, what))

    def describe(self, trainer: L.Trainer, pl_module: L.LightningModule, what: str) -> str:
        timesteps = getattr(pl_module, "last_timesteps", None)
        at = f"step {trainer.global_step} (epoch {trainer.current_epoch})"
        if timesteps is not None:
            t = sorted(int(v) for v in timesteps.flatten().tolist())
            at += f", timesteps in the batch {t[:8]}{' …' if len(t) > 8 else ''} of {len(t)}"
        dirs = {cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath}
        found = [c for c in (newest_checkpoint(d) for d in dirs) if c is not None]
        good = f"the last good checkpoint is {max(found, key=lambda c: c.stat().st_mtime)}" if found else "no checkpoint yet"
        skipped = f" after {self.skipped} skipped step(s)" if self.skipped else ""
        return (f"non-finite {what} at {at}{skipped}; the step was not taken and {good}. Lower the learning rate or "
                "clip gradients (trainer.gradient_clip_val), or skip such steps: callbacks.nonfinite.action=skip")

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
