"""``sample(cfg)``: draw images from a checkpoint into a PNG grid and ``samples.npz``.

The run dir gets ``samples.png`` (the grid), ``samples.npz`` (``arr_0`` uint8 (N, 28, 28, 1),
the layout ``evaluate.py samples_path=`` reads; ``arr_1`` the classes of a conditional model),
``trajectory.png`` (the first samples along the reverse chain) and ``sample.json``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from omegaconf import DictConfig

from ddpm_lit.config.sampling import check_sampling, draw_over_ranks, plan_for, sampling_kwargs
from ddpm_lit.config.schema import SampleSettings
from ddpm_lit.core.pixels import to_unit_range
from ddpm_lit.errors import ConfigError
from ddpm_lit.generation.files import save_grid, save_samples_npz
from ddpm_lit.runs import Run
from ddpm_lit.training.loading import guidance_used, load_module, resolve_device
from ddpm_lit.training.ranks import launch_ranks

log = logging.getLogger(__name__)


def parse_classes(classes: Any, n: int, num_classes: int) -> torch.Tensor:
    """``classes`` of the config as (n,) labels: null cycles 0…K−1; one class repeats; a list is
    repeated to n in order (``[3, 7]`` → 3, 7, 3, 7, …)."""
    if classes is None:
        values = list(range(num_classes))
    elif isinstance(classes, int) and not isinstance(classes, bool):
        values = [classes]
    elif isinstance(classes, (list, tuple)) and len(classes) > 0:
        values = list(classes)
    else:
        raise ConfigError(f"classes must be null, a class index or a list of them, got {classes!r}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < num_classes for d in values):
        raise ConfigError(f"classes must be integers in [0, {num_classes - 1}], got {list(values)!r}")
    return torch.tensor(values, dtype=torch.long).repeat(-(-n // len(values)))[:n]


def _nfe_per_s(module: Any, s: SampleSettings, seconds: float) -> float:
    """Network evaluations per second of the whole draw, planning and compiling included."""
    steps = s.sampler.steps if sampling_kwargs(s.sampler, module) else None
    num_timesteps = getattr(module, "num_timesteps", None)
    evals = module.evaluations_per_image(steps, guidance_used(module, s.guidance_scale), num_timesteps=num_timesteps)
    return round(s.n * evals / seconds, 1)


def sample(cfg: DictConfig) -> dict[str, Any]:
    """``python sample.py``: the config checked at the door, then ``draw_samples``."""
    return draw_samples(SampleSettings.parse(cfg))


def draw_samples(s: SampleSettings) -> dict[str, Any]:
    """Draw ``s.n`` images from ``s.ckpt_path`` (over ``s.devices`` ranks); write the files listed
    above (rank 0); return sample.json's content (an empty dict on the other ranks)."""
    ranks = launch_ranks(s.devices, resolve_device(s.device))
    device = ranks.device
    module, ema = load_module(s.ckpt_path, device)
    if module.num_classes is None and (s.classes is not None or s.guidance_scale is not None):
        raise ConfigError(f"classes and guidance_scale need a class-conditional model; {s.ckpt_path} is an "
                          f"unconditional {module.family}")
    check_sampling(s.sampler, s.guidance_scale, module, s.ckpt_path)
    labels = None
    if module.num_classes is not None:
        labels = parse_classes(s.classes, s.n, module.num_classes)

    out = s.output_dir
    start = time.perf_counter()
    plan = plan_for(s.speed, module, s.n, s.sampler.steps, guidance_used(module, s.guidance_scale), ranks)
    drawn = draw_over_ranks(s.sampler, plan, s.guidance_scale, module, s.n, s.seed, labels, ranks,
                            trajectory=min(s.trajectory, s.n))
    seconds = time.perf_counter() - start
    if not ranks.is_zero:
        return {}
    save_grid(to_unit_range(drawn.samples), out / "samples.png", nrow=s.nrow)
    save_samples_npz(drawn.samples, out / "samples.npz", labels=labels)
    has_trajectory = bool(s.trajectory and drawn.timesteps)  # a one-pass model has no chain to show
    if has_trajectory:
        from ddpm_lit.reporting.figures import trajectory_figure  # matplotlib, only when there is a figure to draw

        trajectory_figure(drawn.frames, drawn.timesteps, out / "trajectory.png")
    info = {
        "ckpt_path": s.ckpt_path,
        "ema_weights": ema,
        "n": s.n,
        "seed": s.seed,
        "family": module.family,
        "dataset": module.trained_on,  # evaluate.py samples_path= scores against this set
        "sampler": s.sampler.record() if sampling_kwargs(s.sampler, module) else None,
        "speed": plan.record(),
        "ranks": ranks.world_size,
        "classes": labels.tolist() if labels is not None else None,
        "guidance_scale": guidance_used(module, s.guidance_scale),
        "device": str(device),
        "seconds": seconds,  # planning and compiling included
        "nfe_per_s": _nfe_per_s(module, s, seconds),
        "files": ["samples.png", "samples.npz"] + (["trajectory.png"] if has_trajectory else []),
    }
    Run(out).write_sample_record(info)
    log.info("%d samples in %.1f s written to %s", s.n, seconds, out)
    return info
