"""The figures of one training run, from its files or its live module (see ddpm_lit.apps.run_figures)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ddpm_lit.catalogue import figures_of
from ddpm_lit.core.pixels import to_unit_range
from ddpm_lit.errors import DataError
from ddpm_lit.evaluation.metrics import nearest_neighbour_ssim
from ddpm_lit.evaluation.scorer import paired_ssim
from ddpm_lit.generation.files import load_samples_npz, save_grid, save_samples_npz
from ddpm_lit.generation.generate import draw, labels_for
from ddpm_lit.io import atomic_write
from ddpm_lit.reporting.figures import (
    forward_process_figure,
    loss_curves_figure,
    schedules_figure,
    ssim_histogram,
    trajectory_figure,
    two_mode_diffusion_figure,
)
from ddpm_lit.runs import Run
from ddpm_lit.training.base import family_of_class
from ddpm_lit.training.loading import load_module, resolve_device

log = logging.getLogger(__name__)

FIGURES = figures_of("run_figures")  # the files of figures/, as ddpm_lit.catalogue lists them


def draw_final_samples(module: Any, run: Run, num: int, steps: int | None = None, seed: int = 0) -> None:
    """Draw ``num`` samples with a fixed seed (every digit in turn for a conditional model) and
    save the run's final.png, final.npz (evaluate.py's layout) and trajectory.pt: the first 8 at
    x_T and every T/10 steps."""
    labels = labels_for(module, num)
    drawn = draw(module, num, seed=seed, labels=labels, steps=steps, progress=True)
    save_grid(to_unit_range(drawn.samples), run.final_grid)
    save_samples_npz(drawn.samples, run.final_samples, labels=drawn.labels)
    with atomic_write(run.trajectory) as f:
        torch.save({"frames": drawn.frames.half(), "timesteps": drawn.timesteps}, f)


def ssim_per_image(samples: torch.Tensor, test: torch.Tensor, train: torch.Tensor) -> dict[str, torch.Tensor]:
    """For images in [−1, 1]: SSIM of image i against test image i (the report's protocol) and
    against its most similar image of ``train``. Returns {"ssim": (N,), "nn_ssim": (N,)}."""
    a, b = to_unit_range(samples.float()), to_unit_range(test[: len(samples)].float())
    return {
        "ssim": paired_ssim(a, b),
        "nn_ssim": nearest_neighbour_ssim(a, to_unit_range(train.float())),
    }


def run_figures(
    run_dir: str | Path,
    module: Any | None = None,
    datamodule: Any | None = None,
    ckpt_path: str | Path | None = None,
    num_samples: int = 64,
    steps: int | None = None,
    seed: int = 0,
    redraw: bool = False,
    device: str = "auto",
    nn_reference_size: int = 1000,
    config: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the figures of ``run_dir`` (see the module docstring); return {name: path}.

    ``module``/``datamodule``: the live objects at the end of training; otherwise the newest
    checkpoint (or ``ckpt_path``) and the run's data config (``.hydra/config.yaml``, or
    ``config``: the composed config as a plain dict, interpolations as written) are loaded.
    """
    run = Run(run_dir)
    tree = config if config is not None else run.load_config()
    cfg = OmegaConf.create(tree)  # a node, so that data's ${paths.data_dir} & co. resolve
    out = run.figures_dir
    written: dict[str, Path] = {}
    # schedule.name (schedule.schedule in run dirs of earlier versions)
    schedule, T = cfg.schedule.get("name", cfg.schedule.get("schedule")), int(cfg.schedule.timesteps)
    family = family_of_config(tree)

    written.update(_loss_figure(run, out, family))
    if family == "ddpm":  # the figures of the diffusion process
        written.update(_process_figures(out, schedule, T))
    if datamodule is None:
        datamodule = instantiate(cfg.data, _convert_="all")
        datamodule.prepare_data()
    test = datamodule.reference_images("test", 2 * num_samples, seed=seed)
    if family == "ddpm":
        written["forward_process"] = forward_process_figure(
            test[0], out / "forward_process.png", timesteps=_timestep_fractions(T, (0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)),
            num_timesteps=T,
        )

    if redraw or not run.final_samples.is_file() or not run.trajectory.is_file():
        if module is None:
            module = _load_newest(run, ckpt_path, device)
        draw_final_samples(module, run, num_samples, steps=steps, seed=seed)

    written.update(_sample_figures(run, out, datamodule, test, num_samples, seed, nn_reference_size))
    for name, path in written.items():
        log.info("%s: %s", name, path)
    return written


def family_of_config(config: dict[str, Any]) -> str:
    """The model family a run's config (a plain dict) trains (``ddpm`` for configs of earlier versions)."""
    return family_of_class(str((config.get("model") or {}).get("_target_", ""))) or "ddpm"


# The losses each family's curves show: (training keys, validation keys).
LOSS_KEYS = {"gan": (("train/d_loss", "train/g_loss"), ())}


def _loss_figure(run: Run, out: Path, family: str) -> dict[str, Path]:
    """The loss curves of the run's CSV history."""
    train_keys, val_keys = LOSS_KEYS.get(family, (("train/loss",), ("val/loss",)))
    history = run.history()
    if any(key in row for row in history for key in train_keys + val_keys):
        path = loss_curves_figure(history, out / "loss_curves.png", title=f"Loss of {run.title}",
                                  train_keys=train_keys, val_keys=val_keys)
        return {"loss_curves": path}
    log.warning("%s has no CSV history of %s (csv/version_*/metrics.csv); no loss curves", run.path, ", ".join(train_keys))
    return {}


def _process_figures(out: Path, schedule: str, T: int) -> dict[str, Path]:
    """The schedules and the 1-D two-mode diffusion."""
    written: dict[str, Path] = {}
    written["schedules"] = schedules_figure(out / "schedules.png", timesteps=T)
    written["two_mode_diffusion"] = two_mode_diffusion_figure(
        out / "two_mode_diffusion.png", schedule=schedule, num_timesteps=T,
        timesteps=_timestep_fractions(T, (0, 0.05, 0.1, 0.2, 0.4)),
    )

    return written


def _sample_figures(run: Run, out: Path, datamodule: Any, test: torch.Tensor, num_samples: int, seed: int,
                    nn_reference_size: int) -> dict[str, Path]:
    """The trajectory and the SSIM histogram of the run's final samples, beside real test images."""
    written: dict[str, Path] = {}
    samples = load_samples_npz(run.final_samples, image_size=test.shape[-1])
    trajectory = torch.load(run.trajectory, weights_only=True)
    if len(trajectory["timesteps"]):  # a model without a reverse chain has none
        written["trajectory"] = trajectory_figure(trajectory["frames"].float(), trajectory["timesteps"],
                                                  out / "trajectory.png")

    n = min(len(samples), num_samples, len(test) // 2)
    train_ref = datamodule.reference_images("val", nn_reference_size, seed=seed)  # held-out training images
    per_image = {
        "samples": ssim_per_image(samples[:n], test[:n], train_ref),
        "real test images": ssim_per_image(test[n : 2 * n], test[:n], train_ref),
    }
    written["ssim_histogram"] = ssim_histogram(per_image, out / "ssim_histogram.png")
    return written


def _timestep_fractions(T: int, fractions: tuple[float, ...]) -> list[int]:
    """0-based chain indices at these fractions of T, and the last one (T = 1000: 0, 50, 100, …, 999)."""
    return sorted({min(T - 1, round(f * T)) for f in fractions} | {T - 1})


def _load_newest(run: Run, ckpt_path: str | Path | None, device: str) -> Any:
    path = Path(ckpt_path) if ckpt_path else run.newest_checkpoint()
    if path is None:
        raise DataError(f"{run.checkpoint_dir} has no last.ckpt to draw samples from (or pass --ckpt)")
    module, _ = load_module(path, resolve_device(device))
    return module
