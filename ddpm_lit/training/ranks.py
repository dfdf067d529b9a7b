"""The processes of a command that draws images on several devices: Lightning Fabric's DDP launch.

``python sample.py devices=2`` (or ``evaluate.py``) starts the other ranks as Lightning's
``Trainer`` does (the same command line, re-run, in the same Hydra run folder); under
``torchrun`` the ranks are the ones it started. On a CPU the ranks talk over gloo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Ranks:
    """This process's place among the ranks, and the collective calls the draw needs."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    fabric: Any = None

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Each rank's equally shaped ``tensor`` stacked: (world_size, ...)."""
        if self.fabric is None:
            return tensor.unsqueeze(0)
        return self.fabric.all_gather(tensor)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        return obj if self.fabric is None else self.fabric.broadcast(obj, src=0)

    def barrier(self) -> None:
        if self.fabric is not None:
            self.fabric.barrier()


def launch_ranks(devices: int, device: torch.device) -> Ranks:
    """One rank on ``device`` when ``devices`` is 1 and no launcher started this process;
    otherwise Fabric's DDP over ``devices`` processes (CUDA devices when ``device`` is CUDA)."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if devices == 1 and not launched:
        return Ranks(device=device)
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator="cuda" if device.type == "cuda" else "cpu", devices=devices, strategy="ddp")
    fabric.launch()
    return Ranks(fabric.global_rank, fabric.world_size, fabric.device, fabric)
