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
from hydra.core.hydra_config import HydraConfig

from ddpm_lit.errors import ConfigError


@dataclass
class Ranks:
    """This process's place among the ranks, and the collective calls the draw needs."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    fabric: Any = None
    threads: int | None = None  # the CPU threads before Fabric divided them between the ranks

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

    def finish(self) -> None:
        """After the last collective: rank 0 works alone from here, on all the CPU threads."""
        if self.threads is not None and self.is_zero:
            torch.set_num_threads(self.threads)


def in_multirun() -> bool:
    """Whether this process is a job of a Hydra ``--multirun``: ranks started by rerunning its
    command line would restart the whole sweep."""
    return HydraConfig.initialized() and getattr(HydraConfig.get().mode, "name", None) == "MULTIRUN"


def launch_ranks(devices: int, device: torch.device) -> Ranks:
    """One rank on ``device`` when ``devices`` is 1 and no launcher started this process;
    otherwise Fabric's DDP over ``devices`` processes (CUDA devices when ``device`` is CUDA), or
    over the processes ``torchrun`` started (its ``WORLD_SIZE``, whatever ``devices`` says).

    Fabric divides the CPU threads between the ranks of one machine; ``Ranks.finish`` gives rank
    0 all of them back for what it does alone after the draw (scoring, the likelihood bound)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launched = world > 1 and "LOCAL_RANK" in os.environ
    if devices == 1 and not launched:
        return Ranks(device=device)
    from lightning.fabric import Fabric  # here: the commands' config errors are told before Lightning loads

    if not launched and in_multirun():
        raise ConfigError(f"devices={devices} cannot run inside a local --multirun (each rank reruns the command "
                          "line, so would restart the sweep); run the jobs one at a time, or under torchrun")
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world)) if launched else devices
    threads = torch.get_num_threads()
    fabric = Fabric(accelerator="cuda" if device.type == "cuda" else "cpu", devices=per_node,
                    num_nodes=max(world // per_node, 1) if launched else 1, strategy="ddp")
    fabric.launch()
    return Ranks(fabric.global_rank, fabric.world_size, fabric.device, fabric, threads)
