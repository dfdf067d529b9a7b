"""Checkpoints that survive a kill, and finding what a resumed run continues from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

# What the last_checkpoint and on_exception ModelCheckpoints write; ``ckpt_path=last``
# continues from the newest of them, as Lightning's own "last" does.
RESUME_PATTERNS = ("last*.ckpt", "on_exception.ckpt")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with a save that is atomic on the checkpoint's own file system.

    Lightning stages a checkpoint in the system temp dir and moves it into place. When that
    dir is on another file system (a node's local /tmp, checkpoints on a cluster's shared
    disk), the move is a copy, and a job killed during it leaves a truncated file under the
    checkpoint's name. Here the bytes go to a hidden file beside the target, are flushed to
    disk, and ``os.replace`` swaps it in: a reader finds the old checkpoint or the new one,
    never part of one. Remote paths (``s3://`` …) keep Lightning's own save.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def newest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest ``last*.ckpt`` or ``on_exception.ckpt`` in ``checkpoint_dir`` (None: none)."""
    found = [p for pattern in RESUME_PATTERNS for p in Path(checkpoint_dir).glob(pattern) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def run_dir_to_resume(ckpt_path: str | None, runs_dir: str | Path) -> Path | None:
    """The run dir that ``ckpt_path`` continues, so that a resumed run writes where it began.

    ``last``: the run under ``runs_dir`` whose newest checkpoint is the most recent.
    A path ``<run>/checkpoints/<name>.ckpt`` of a Hydra run: ``<run>``. Otherwise None
    (a checkpoint from elsewhere starts a new run dir).
    """
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        runs = [(ckpt, run) for run in Path(runs_dir).glob("*") if (ckpt := newest_checkpoint(run / "checkpoints"))]
        return max(runs, key=lambda pair: pair[0].stat().st_mtime)[1] if runs else None
    path = Path(ckpt_path).absolute()
    if path.parent.name == "checkpoints" and (path.parent.parent / ".hydra").is_dir():
        return path.parent.parent
    return None


def wandb_run_id(save_dir: str | Path) -> str | None:
    """The id of the newest W&B run under ``<save_dir>/wandb`` (folders ``[offline-]run-<time>-<id>``)."""
    runs = [p for p in Path(save_dir, "wandb").glob("*run-*-*") if p.is_dir()]
    return max(runs, key=lambda p: p.stat().st_mtime).name.rsplit("-", 1)[1] if runs else None
