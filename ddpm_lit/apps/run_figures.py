"""The study's figures of one training run: ``python -m ddpm_lit.run_figures run_dir=<run dir>``
(conf/run_figures.yaml).

Writes ``<run dir>/figures/``:
  loss_curves.png          train/loss per step and val/loss per epoch (the study's Fig. 4.1)
  trajectory.png           8 samples along the reverse chain, every T/10 steps (Fig. 4.5)
  ssim_histogram.png       per-sample SSIM against test images, beside real test images (Fig. 4.6)
  forward_process.png      one test digit noised to several t, linear and cosine (Figs. 1.1–1.5)
  schedules.png            ᾱ_t and the signal-to-noise ratio of both schedules
  two_mode_diffusion.png   a 1-D two-mode density diffusing to N(0, 1) under the run's schedule (Fig. 1.6)

The samples come from ``samples/final.npz`` and ``samples/trajectory.pt``, which training
writes at its end; when they are missing (or with ``redraw=true``) they are drawn from the run's
newest checkpoint and saved there. train.py calls ``run_figures`` after fitting and logs the
figures to W&B.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from ddpm_lit.config.schema import flag, integer, required
from ddpm_lit.reporting.run_figures import run_figures


@dataclass(frozen=True)
class FiguresSettings:
    """conf/run_figures.yaml, checked."""

    run_dir: Path
    ckpt_path: Path | None
    num_samples: int
    steps: int | None
    seed: int
    redraw: bool
    device: str

    @classmethod
    def parse(cls, cfg: DictConfig) -> FiguresSettings:
        required(cfg, "run_dir", "the run whose figures to draw: run_dir=outputs/train/runs/<run>")
        steps = None if cfg.get("steps") is None else integer(cfg, "steps", 1)
        return cls(run_dir=Path(cfg.run_dir), ckpt_path=None if cfg.get("ckpt_path") is None else Path(cfg.ckpt_path),
                   num_samples=integer(cfg, "num_samples", 2), steps=steps, seed=integer(cfg, "seed", 0),
                   redraw=flag(cfg, "redraw"), device=str(cfg.device))


def figures(cfg: DictConfig) -> dict[str, Path]:
    """``python -m ddpm_lit.run_figures``: the config checked at the door, then ``run_figures``."""
    s = FiguresSettings.parse(cfg)
    return run_figures(s.run_dir, ckpt_path=s.ckpt_path, num_samples=s.num_samples, steps=s.steps, seed=s.seed,
                       redraw=s.redraw, device=s.device)
