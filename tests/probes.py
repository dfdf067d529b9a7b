"""Callbacks that subprocess tests add to a real `python train.py` run with `+callbacks.<name>._target_=probes.<Class>`
(the tests put this folder on PYTHONPATH)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch


class SigtermAtStep(L.Callback):
    """Send this process a real SIGTERM once ``step`` optimizer steps are done (mid-epoch)."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.sent = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


class RecordResume(L.Callback):
    """Write the step counter and EMA count at the start and end of fit to ``<out>/resume_<pid>.json``."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.record: dict[str, Any] = {}

    def _ema_count(self, trainer: L.Trainer) -> int | None:
        for cb in trainer.callbacks:
            if hasattr(cb, "_average_model") and cb._average_model is not None:
                return int(cb._average_model.n_averaged)
        return None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record.update(start_step=trainer.global_step, start_epoch=trainer.current_epoch,
                           start_ema=self._ema_count(trainer),
                           start_lr=trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record.update(end_step=trainer.global_step, end_ema=self._ema_count(trainer))
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"resume_{os.getpid()}.json").write_text(json.dumps(self.record))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.record.update(stopped_step=trainer.global_step, stopped_ema=self._ema_count(trainer),
                           exception=type(exception).__name__)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"resume_{os.getpid()}.json").write_text(json.dumps(self.record))
