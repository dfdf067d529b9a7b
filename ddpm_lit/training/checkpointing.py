"""Checkpoints that survive a kill, and finding what a resumed run continues from."""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from ddpm_lit.io import atomic_write


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
        with atomic_write(path, fsync=True) as f:
            torch.save(checkpoint, f)
