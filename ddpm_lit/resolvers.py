"""OmegaConf resolvers used by conf/, registered when ``ddpm_lit`` is imported.

Resolvers used in ``hydra.sweep.dir`` must not depend on Hydra's runtime config: Hydra's
sweepers resolve it (it uses ``paths.log_dir``) before any job, and so before
``${hydra:...}`` can be resolved. Those of the W&B logger are resolved inside a job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ddpm_lit.runs import Sweep


def _wandb_offline() -> bool:
    """W&B stays offline unless the user sets WANDB_MODE=online."""
    return os.environ.get("WANDB_MODE", "offline") != "online"


def _is_multirun(mode: Any) -> bool:
    return getattr(mode, "name", str(mode)) == "MULTIRUN"


def _sweep_group(mode: Any, sweep_dir: str) -> str | None:
    """In a ``--multirun``: the sweep's folder name, the W&B group of all its jobs (None otherwise)."""
    return Path(str(sweep_dir)).name if _is_multirun(mode) else None


def _sweep_job_name(mode: Any, override_dirname: str) -> str | None:
    """In a ``--multirun``: the job's overrides (``model.lr=0.001,schedule=cosine``), its W&B run name."""
    return (override_dirname or None) if _is_multirun(mode) else None


_CLAIMED: dict[tuple[str, str], str] = {}


def _new_dir(parent: str, name: str) -> str:
    """``<parent>/<name>``, created here and now so that no other process can have it: when a run
    started in the same second (Hydra's ``${now:}`` has one-second resolution) holds it already,
    ``<name>_2``, ``<name>_3``, …. The same process asking again gets the same dir."""
    key = (str(parent), str(name))
    if key not in _CLAIMED:
        Path(parent).mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            candidate = Path(parent) / (name if n == 1 else f"{name}_{n}")
            try:
                candidate.mkdir()  # atomic: exactly one process creates it
            except FileExistsError:
                continue
            _CLAIMED[key] = str(candidate)
            break
        else:
            raise RuntimeError(f"{parent} holds 10,000 run dirs named {name}; use another hydra.run.dir")
    return _CLAIMED[key]


def _run_dir(ckpt_path: str | None, runs_dir: str, timestamp: str) -> str:
    """``hydra.run.dir`` of train.py: the dir of the run that ``ckpt_path`` continues, else a new
    one of its own (``_new_dir``)."""
    resumed = Sweep(runs_dir).run_to_resume(ckpt_path)
    return str(resumed.path) if resumed is not None else _new_dir(runs_dir, timestamp)


def _output_channels(variance: str, in_channels: int) -> int:
    """``model.net.out_channels``: a learned variance adds a second set of output channels
    (the rule of ``GaussianDiffusion.output_channels_factor``, which a test holds it to)."""
    return int(in_channels) * (2 if variance == "learned" else 1)


def register() -> None:
    for name, fn in (
        ("cwd", os.getcwd),
        ("wandb_offline", _wandb_offline),
        ("sweep_group", _sweep_group),
        ("sweep_job_name", _sweep_job_name),
        ("run_dir", _run_dir),
        ("output_channels", _output_channels),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
