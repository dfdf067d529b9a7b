"""``sample(cfg)``: draw images from a checkpoint into a PNG grid and ``samples.npz``.

The run dir gets ``samples.png`` (the grid), ``samples.npz`` (``arr_0`` uint8 (N, 28, 28, 1),
the layout ``evaluate.py samples_path=`` reads; ``arr_1`` the digits of a conditional model),
``trajectory.png`` (the first samples along the reverse chain) and ``sample.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ddpm_lit.config.sampling import check_sampling, sampling_kwargs
from ddpm_lit.core.pixels import to_unit_range
from ddpm_lit.errors import ConfigError
from ddpm_lit.generation.files import save_grid, save_samples_npz
from ddpm_lit.generation.generate import draw
from ddpm_lit.runs import Run
from ddpm_lit.training.loading import guidance_used, load_module, resolve_device

log = logging.getLogger(__name__)


def parse_digits(digits: Any, n: int, num_classes: int) -> torch.Tensor:
    """``digits`` of the config as (n,) labels: null cycles 0…9; one digit repeats; a list is
    repeated to n in order (``[3, 7]`` → 3, 7, 3, 7, …)."""
    if digits is None:
        values = list(range(num_classes))
    elif isinstance(digits, int) and not isinstance(digits, bool):
        values = [digits]
    elif isinstance(digits, (list, tuple, ListConfig)) and len(digits) > 0:
        values = list(digits)
    else:
        raise ConfigError(f"digits must be null, a digit or a list of digits, got {digits!r}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < num_classes for d in values):
        raise ConfigError(f"digits must be integers in [0, {num_classes - 1}], got {list(values)!r}")
    return torch.tensor(values, dtype=torch.long).repeat(-(-n // len(values)))[:n]


def sample(cfg: DictConfig) -> dict[str, Any]:
    """Draw ``cfg.n`` images from ``cfg.ckpt_path``; write the files listed above; return sample.json's content."""
    if cfg.get("ckpt_path") is None:
        raise ConfigError("give the checkpoint to sample from: ckpt_path=<run dir>/checkpoints/last.ckpt")
    for key, low in (("n", 1), ("batch_size", 1), ("nrow", 1), ("trajectory", 0), ("seed", 0)):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{key} must be an integer ≥ {low}, got {value!r}")
    check_sampling(cfg)
    device = resolve_device(cfg.device)
    module, ema = load_module(cfg.ckpt_path, device)
    if module.num_classes is None and (cfg.get("digits") is not None or cfg.get("guidance_scale") is not None):
        raise ConfigError(f"digits and guidance_scale need a class-conditional model; {cfg.ckpt_path} is an "
                          f"unconditional {getattr(module, 'family', 'model')}")
    check_sampling(cfg, module)
    labels = None
    options = sampling_kwargs(cfg, module)
    if module.num_classes is not None:
        labels = parse_digits(cfg.get("digits"), cfg.n, module.num_classes)
        options["guidance_scale"] = cfg.get("guidance_scale")

    out = Path(cfg.paths.output_dir)
    start = time.perf_counter()
    drawn = draw(module, cfg.n, seed=cfg.seed, trajectory=min(cfg.trajectory, cfg.n), labels=labels,
                 batch_size=cfg.batch_size, progress=True, **options)
    seconds = time.perf_counter() - start
    save_grid(to_unit_range(drawn.samples), out / "samples.png", nrow=cfg.nrow)
    save_samples_npz(drawn.samples, out / "samples.npz", labels=labels)
    has_trajectory = bool(cfg.trajectory and drawn.timesteps)  # a one-pass model has no chain to show
    if has_trajectory:
        from ddpm_lit.reporting.figures import (
            trajectory_figure,  # matplotlib, only when there is a figure to draw
        )

        trajectory_figure(drawn.frames, drawn.timesteps, out / "trajectory.png")
    info = {
        "ckpt_path": str(cfg.ckpt_path),
        "ema_weights": ema,
        "n": cfg.n,
        "seed": cfg.seed,
        "family": getattr(module, "family", None),
        "dataset": getattr(module, "trained_on", None),  # evaluate.py samples_path= scores against this set
        "sampler": OmegaConf.to_container(cfg.sampler) if options else None,
        "digits": labels.tolist() if labels is not None else None,
        "guidance_scale": guidance_used(module, cfg.get("guidance_scale")),
        "device": str(device),
        "seconds": seconds,
        "files": ["samples.png", "samples.npz"] + (["trajectory.png"] if has_trajectory else []),
    }
    Run(out).write_sample_record(info)
    log.info("%d samples in %.1f s written to %s", cfg.n, seconds, out)
    return info
