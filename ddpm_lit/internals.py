"""Every use of another library's private API, one function each.

Each relies on a detail that the library may change in any release; tests/test_internals.py
checks each against the installed version and fails, naming the function, when one changes.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.strategies.launchers.subprocess_script import (
    _SubprocessScriptLauncher,
)
from torch.optim.swa_utils import AveragedModel
from torchmetrics.image.fid import FrechetInceptionDistance


class PrecomputedFeatures(torch.nn.Identity):
    """Passes features through, so torchmetrics' FID and KID take features extracted once
    (their ``feature`` argument: a module with ``num_features``)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def fid_from_sufficient_statistics(real: dict[str, torch.Tensor], fake: dict[str, torch.Tensor]) -> float:
    """torchmetrics' FID of two feature sets given by their sums (D,), Σ f fᵀ (D, D) and counts,
    e.g. cached on disk: the metric's states are filled in, as ``update`` would leave them,
    because torchmetrics has no public way to start from statistics."""
    fid = FrechetInceptionDistance(feature=PrecomputedFeatures(real["sum"].numel()), sync_on_compute=False)
    for prefix, stats in (("real", real), ("fake", fake)):
        setattr(fid, f"{prefix}_features_sum", stats["sum"].double())
        setattr(fid, f"{prefix}_features_cov_sum", stats["cov_sum"].double())
        setattr(fid, f"{prefix}_features_num_samples", stats["n"].long())
    fid.orig_dtype = torch.float32  # update() records the input's dtype; compute() returns it
    fid._update_count = 1  # compute() warns and returns 0-size results before any update()
    return float(fid.compute())


def training_batches_done(trainer: L.Trainer) -> int:
    """The training batches the trainer has finished in its current epoch (its fit loop's batch
    progress; Lightning has no public count within an epoch)."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.completed)


def set_logging_step(trainer: L.Trainer, step: int) -> None:
    """Set the step the trainer's loggers write next: the count of training batches that stepped
    (its epoch loop's ``_batches_that_stepped``, which a resumed run restores one short when
    the checkpoint was saved at a validation in the middle of an epoch)."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = int(step)


def logging_step(trainer: L.Trainer) -> int:
    """The step the trainer's loggers write next (see ``set_logging_step``)."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def weight_average(callback: WeightAveraging) -> AveragedModel | None:
    """The average a ``WeightAveraging`` callback keeps (None before fitting has set it up)."""
    return callback._average_model


def reruns_command_line(strategy: Strategy) -> bool:
    """Whether the strategy starts its other processes by running the command line again
    (DDP on one machine: Lightning's subprocess-script launcher)."""
    return isinstance(strategy.launcher, _SubprocessScriptLauncher)


def syncs_batchnorm(strategy: Strategy) -> bool:
    """Whether a parallel strategy converts BatchNorm layers to SyncBatchNorm (``sync_batchnorm=True``)."""
    return getattr(strategy, "_layer_sync", None) is not None


def wandb_offline(logger: WandbLogger) -> bool:
    """Whether the logger was built with ``offline=True``, before its run exists."""
    return bool(logger._offline)


def drop_anonymous_wandb_init(logger: WandbLogger) -> None:
    """Remove the ``anonymous=None`` that the logger always hands to ``wandb.init``, which W&B
    answers with "The anonymous setting has no effect"."""
    if logger._wandb_init.get("anonymous", False) is None:
        del logger._wandb_init["anonymous"]


def process_group_store() -> torch.distributed.Store | None:
    """The store the default process group rendezvoused through (hosted by rank 0, whatever
    launched the ranks: SLURM, Lightning's own launcher, torchrun); None before the group exists.
    torch has no public accessor for it."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    return torch.distributed.distributed_c10d._get_default_store()
