"""Callbacks that subprocess tests add to a real `python train.py` run with `+callbacks.<name>._target_=probes.<Class>`
(the tests put this folder on PYTHONPATH)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch


class SigtermAtStep(L.Callback):
    """Send this process a real SIGTERM (or ``signal_name``) once ``step`` optimizer steps are done (mid-epoch)."""

    def __init__(self, step: int, signal_name: str = "SIGTERM") -> None:
        self.step = step
        self.signum = signal.Signals[signal_name]
        self.sent = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


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


class DDPProbe(L.Callback):
    """Write what this rank saw to ``<out>/rank_<global_rank>.json``: its share of the training
    data, its own (unreduced) losses, the logged (reduced) metrics, and fingerprints of the raw and
    EMA weights, so that a test can compare the ranks of a DDP run."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.record: dict[str, Any] = {"epochs": []}

    def _epoch(self, trainer: L.Trainer) -> dict[str, Any]:
        epochs = self.record["epochs"]
        while len(epochs) <= trainer.current_epoch:
            epochs.append({"train_indices": [], "train_losses": [], "val_losses": [], "val_sizes": []})
        return epochs[trainer.current_epoch]

    @staticmethod
    def _fingerprint(tensors: Any) -> dict[str, Any]:
        flat = torch.cat([t.detach().reshape(-1).double().cpu() for t in tensors])
        raw = b"".join(t.detach().float().cpu().numpy().tobytes() for t in tensors)
        return {"sha256": hashlib.sha256(raw).hexdigest(), "sum": float(flat.sum()), "head": flat[:4].tolist()}

    @staticmethod
    def _ema(trainer: L.Trainer) -> torch.nn.Module | None:
        for cb in trainer.callbacks:
            if getattr(cb, "_average_model", None) is not None:
                return cb._average_model.module
        return None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        sampler = loader.sampler  # under DDP, Lightning's DistributedSamplerWrapper of EpochShuffle (iterating it draws an epoch)
        # Iterating it draws an epoch from the EpochShuffle inside it (Lightning's wrapper keeps it as
        # dataset._sampler), which would move the run's training order on by one: put it back, so
        # that a run with this probe trains as one without it (a resumed run is compared with one).
        inner = getattr(getattr(sampler, "dataset", None), "_sampler", sampler)
        position = getattr(inner, "position", None)
        positions = [int(i) for i in sampler]  # the fit loop set this epoch on the sampler before this hook
        if position is not None:
            inner.position = position
        split = getattr(loader.dataset, "indices", None)  # random_split's Subset: positions -> dataset indices
        self.record.update(world_size=trainer.world_size, global_rank=trainer.global_rank,
                           sampler=type(sampler).__name__, pid=os.getpid(),
                           train_split=sorted(int(i) for i in split) if split is not None else None)
        self._epoch(trainer)["train_indices"] = [int(split[i]) for i in positions] if split is not None else positions

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._epoch(trainer)["train_losses"].append([float(loss), int(batch[0].shape[0])])

    @torch.no_grad()
    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking:
            return
        # validation_step's loss, recomputed on this rank's batch with the same t and ε
        gen = torch.Generator().manual_seed(pl_module.hparams.val_seed + batch_idx)
        labels = pl_module._batch_labels(batch)
        loss = pl_module.diffusion.loss(pl_module._denoiser(labels), batch[0], generator=gen)
        epoch = self._epoch(trainer)
        epoch["val_losses"].append(float(loss))
        epoch["val_sizes"].append(int(batch[0].shape[0]))
        epoch["val_training_mode"] = pl_module.training

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._epoch(trainer)["logged_val_loss"] = float(trainer.callback_metrics["val/loss"])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = self._epoch(trainer)
        logged = trainer.callback_metrics.get("train/loss_epoch")  # none in an epoch resumed at its end
        epoch["logged_train_loss_epoch"] = None if logged is None else float(logged)
        ema = self._ema(trainer)
        epoch["raw_weights"] = self._fingerprint(list(pl_module.parameters()))
        epoch["ema_weights"] = self._fingerprint(list(ema.parameters())) if ema is not None else None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # EMAWeightAveraging has copied the average into the module by now
        self.record["end_weights"] = self._fingerprint(list(pl_module.parameters()))
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank_{trainer.global_rank}.json").write_text(json.dumps(self.record))
