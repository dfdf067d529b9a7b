"""Exponential moving average of the weights, through Lightning's ``WeightAveraging``.

Lightning's callback (the base of its ``EMAWeightAveraging``) keeps the average, swaps it in for validation, puts it in checkpoints as
``state_dict`` (the raw weights under ``current_model_state``, so resuming restores both) and
leaves it in the module when training ends. It swaps the raw weights back in its own
``on_validation_epoch_end``, which Lightning calls before the LightningModule's (the
evaluation loop's ``_on_evaluation_epoch_end``: callbacks, then the module): the module's
sampling hook would then score the raw weights. Here the average stays in until the
validation loop ends (``on_validation_end``, before any checkpoint callback saves), so every
validation metric and grid comes from the average. Under DDP every rank averages the same
synchronised weights, so the copies agree. Two things it lacks are added here:

- a decay warm-up, decay_n = min(decay, (1 + n)/(10 + n)) after n updates (the TensorFlow
  ``ExponentialMovingAverage(num_updates=...)`` rule that diffusers' ``EMAModel`` also uses):
  with a fixed decay of 0.9999 the average would hold the random initial weights for thousands
  of steps, and validation samples, early checkpoints and short runs would show them;
- an update x ← x + (1 − decay)(x_model − x), exact when the two agree, so constant buffers
  (the schedule) stay bit-equal and integer counters are copied rather than rounded.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import AveragedModel

from ddpm_lit.internals import weight_average


def ema_avg_fn(decay: float, warmup: bool = True):
    """``avg_fn(averaged, current, num_averaged) -> new averaged`` for ``torch.optim.swa_utils.AveragedModel``."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")

    @torch.no_grad()
    def update(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        if not averaged.is_floating_point():
            return current
        if not warmup:
            return averaged + (current - averaged) * (1 - decay)
        # a tensor on the parameters' device: no host sync per parameter
        n = num_averaged.to(averaged.device, torch.float64)
        weight = 1 - ((1 + n) / (10 + n)).clamp(max=decay)
        return averaged + (current - averaged) * weight.to(averaged.dtype)

    return update


def ema_multi_avg_fn(decay: float, warmup: bool = True):
    """The update of ``ema_avg_fn`` on a whole group of tensors at once (``AveragedModel``'s
    ``multi_avg_fn``, called per device and dtype): three ``torch._foreach_*`` kernels instead of
    a few per tensor, which on a small network cost more than the arithmetic. x + w(y − x) as
    there, so tensors equal in both stay bit-equal; integer tensors are copied.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not averaged:
            return
        if not averaged[0].is_floating_point():  # a group shares one dtype
            torch._foreach_copy_(averaged, current)
            return
        # the weight as a tensor on the tensors' device: no host sync
        n = torch.as_tensor(num_averaged).to(averaged[0].device, torch.float64)
        weight = 1 - (((1 + n) / (10 + n)).clamp(max=decay) if warmup else torch.full_like(n, decay))
        step = torch._foreach_sub(current, averaged)  # y − x
        torch._foreach_mul_(step, weight.to(averaged[0].dtype))
        torch._foreach_add_(averaged, step)

    return update


class EMA(WeightAveraging):
    """Lightning's ``WeightAveraging`` with the decay warm-up and exact update of ``ema_avg_fn``,
    updated as its ``EMAWeightAveraging`` is (every N optimizer steps from a given step on).

    Args:
        decay: the decay the warm-up rises to (0.9999 for long runs; ~0.995 for a few thousand steps).
        warmup: use min(decay, (1 + n)/(10 + n)); False: the fixed decay from the first update.
        update_every_n_steps: update after every N-th optimizer step.
        update_starting_at_step: first step that updates (None: the first).
        foreach: update all tensors of a device and dtype at once (``ema_multi_avg_fn``); False:
            one tensor at a time (``ema_avg_fn``), the same numbers more slowly.
        device, use_buffers: as in Lightning's callback (None: the module's device; average the
            buffers too).
    """

    def __init__(
        self,
        decay: float = 0.9999,
        warmup: bool = True,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        foreach: bool = True,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"callbacks.ema.decay must be in [0, 1], got {decay}")
        if update_every_n_steps < 1:
            raise ValueError(f"callbacks.ema.update_every_n_steps must be ≥ 1, got {update_every_n_steps}")
        # AveragedModel's own arguments, passed through Lightning's public **kwargs.
        self.average_kwargs: dict[str, Any] = (
            {"multi_avg_fn": ema_multi_avg_fn(decay, warmup)} if foreach else {"avg_fn": ema_avg_fn(decay, warmup)}
        )
        super().__init__(device=device, use_buffers=use_buffers, **self.average_kwargs)
        self.decay, self.warmup, self.use_buffers = decay, warmup, use_buffers
        self.update_every_n_steps, self.update_starting_at_step = update_every_n_steps, update_starting_at_step
        self._average_in_module = False

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """After optimizer step ``step_idx``: every ``update_every_n_steps``-th from ``update_starting_at_step``."""
        if step_idx is None:
            return False
        started = self.update_starting_at_step is None or step_idx >= self.update_starting_at_step
        return started and step_idx % self.update_every_n_steps == 0

    def averaged_model(self, module: torch.nn.Module, device: torch.device | None = None) -> AveragedModel:
        """An ``AveragedModel`` of ``module`` updated as this callback's (the benchmark's plain loop
        keeps one)."""
        return AveragedModel(module, device=device, use_buffers=self.use_buffers, **self.average_kwargs)

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_validation_epoch_start(trainer, pl_module)  # swaps the average in
        self._average_in_module = self.holds_average()

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Keep the average in the module: its own ``on_validation_epoch_end`` runs after this one."""

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._restore_raw_weights(trainer, pl_module)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        # A crash inside validation must not leave the average where the raw weights belong
        # (the on_exception ModelCheckpoint, a Checkpoint, runs after this callback).
        self._restore_raw_weights(trainer, pl_module)

    def _restore_raw_weights(self, trainer: Any, pl_module: Any) -> None:
        if self._average_in_module:
            super().on_validation_epoch_end(trainer, pl_module)  # the parent's swap back
            self._average_in_module = False

    def holds_average(self) -> bool:
        """Whether the callback has an average yet (it swaps one in for validation only then)."""
        return weight_average(self) is not None
