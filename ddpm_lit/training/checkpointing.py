"""Checkpoints that survive a kill, and finding what a resumed run continues from."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from ddpm_lit.errors import DataError, TrainingDiverged, first_line
from ddpm_lit.io import atomic_write


def read_checkpoint(path: str | Path, mmap: bool = True) -> dict[str, Any]:
    """A checkpoint of train.py, loaded with ``torch.load(weights_only=True)``: tensors, numbers,
    strings and containers, never code (ddpm_lit's checkpoints need no other global; a pickle
    that names one is refused unread). ``mmap``: map the tensors instead of reading them.

    A missing, truncated or foreign file, one that would run code, or a torch file that is not a
    checkpoint of train.py raises a ``DataError`` naming the file and what is wrong with it.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a checkpoint: an exported model (export.py) holds the weights "
                        "alone, which sample.py and evaluate.py take; training resumes from a .ckpt of train.py")
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError:
        try:
            names = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or "unknown objects"
        except Exception:
            names = "objects it cannot vouch for"
        raise DataError(f"{path} was refused unread: its pickle calls {names}, which a checkpoint of ddpm_lit "
                        "never holds and which could run code; load only checkpoints you trust") from None
    except Exception as e:  # truncated, not a zip, not a torch file at all
        raise DataError(f"{path} is not a readable checkpoint (truncated, or not written by torch.save): "
                        f"{first_line(e)}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise DataError(f"{path} is a torch file but not a checkpoint of train.py (no state_dict or hyper_parameters)")
    return ckpt


def nonfinite_weights(checkpoint: dict[str, Any]) -> list[str]:
    """The names of the floating-point weights of a checkpoint (its ``state_dict`` and, with an
    EMA, ``current_model_state``) that hold a NaN or an infinity."""
    return [f"{key}.{name}" for key in ("state_dict", "current_model_state")
            for name, value in (checkpoint.get(key) or {}).items()
            if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all())]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with a save that is atomic on the checkpoint's own file system.

    Lightning stages a checkpoint in the system temp dir and moves it into place. When that
    dir is on another file system (a node's local /tmp, checkpoints on a cluster's shared
    disk), the move is a copy, and a job killed during it leaves a truncated file under the
    checkpoint's name. Here the bytes go to a hidden file beside the target, are flushed to
    disk, and ``os.replace`` swaps it in: a reader finds the old checkpoint or the new one,
    never part of one. Remote paths (``s3://`` …) keep Lightning's own save. Weights with a NaN
    or an infinity are never written (``TrainingDiverged``), so they cannot replace a good file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        nonfinite = nonfinite_weights(checkpoint)
        if nonfinite:
            raise TrainingDiverged(f"not writing {path}: its weights hold NaN or inf ({', '.join(nonfinite[:3])}"
                                   f"{' …' if len(nonfinite) > 3 else ''}); the checkpoints already there are kept")
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path, fsync=True) as f:
            torch.save(checkpoint, f)


class StopAtMaxSteps(L.Callback):
    """Training that reaches ``max_steps`` stops as a wall-clock or early stop does, through
    ``trainer.should_stop``: Lightning then validates once more before leaving the epoch, so the
    final metrics, samples and the checkpoints saved at validation (``last.ckpt``) hold the
    final weights. Without it, a run that ends on ``max_steps`` mid-epoch keeps the weights
    of its last validation in ``last.ckpt``."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True
