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

from ddpm_lit.launches import agreed, external_launch, slurm_step_name
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
    one of its own (``_new_dir``).

    The ranks of one torchrun or SLURM launch share one. Under SLURM it is the job step's own,
    ``slurm-<job>.<step>``, for a step of several tasks and for ``ckpt_path=last``: a requeued
    job's step gets it back and continues there (not in the folder's newest run, which may be
    another job's). torchrun's ranks take the one their rank 0 names (``launches.agreed``), so
    no rank makes a dir of its own."""
    step, launch = slurm_step_name(), external_launch()
    several = launch is not None and launch.world_size > 1
    if step is not None and (str(ckpt_path) == "last" or (ckpt_path is None and several)):
        path = Path(runs_dir) / step
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def name() -> str:
        resumed = Sweep(runs_dir).run_to_resume(ckpt_path)
        return str(resumed.path) if resumed is not None else _new_dir(runs_dir, timestamp)

    return agreed("run_dir", name)


def _rank_zero_only(value: Any) -> Any:
    """``value`` in rank 0 of a torchrun or SLURM launch (and outside one), None in its other
    ranks: ``hydra.output_subdir``, so that they write no config over rank 0's."""
    launch = external_launch()
    return value if launch is None or launch.rank == 0 else None


def _rank_suffix() -> str:
    """``_rank_<r>`` in rank r > 0 of a torchrun or SLURM launch, else "": the Hydra log file of
    each rank in the shared run dir (``train_rank_1.log``)."""
    launch = external_launch()
    return "" if launch is None or launch.rank == 0 else f"_rank_{launch.rank}"


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
        ("rank_zero_only", _rank_zero_only),
        ("rank_suffix", _rank_suffix),
        ("output_channels", _output_channels),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
