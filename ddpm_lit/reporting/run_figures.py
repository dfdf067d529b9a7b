"""The figures of one training run, from its files or its live module (see ddpm_lit.apps.run_figures)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
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
from ddpm_lit.generation.protocol import has_chain
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
from ddpm_lit.training.base import GenerativeModule, family_class
from ddpm_lit.training.loading import load_module, resolve_device

log = logging.getLogger(__name__)

FIGURES = figures_of("run_figures")  # the files of figures/, as ddpm_lit.catalogue lists them


def draw_final_samples(module: Any, run: Run, num: int, steps: int | None = None, seed: int = 0,
                       sampler: str | None = None) -> None:
    """Draw ``num`` samples with a fixed seed (every class in turn for a conditional model) with
    ``sampler`` (a name of ``core.samplers.SAMPLERS``; None: ancestral) and ``steps``, and save
    the run's final.png, final.npz (evaluate.py's layout) and trajectory.pt: the first 8 at x_T
    and after every tenth of the chain's steps."""
    labels = labels_for(module, num)
    chain = {"steps": steps, **({"sampler": sampler} if sampler else {})} if has_chain(module) else {}
    drawn = draw(module, num, seed=seed, labels=labels, progress=True, **chain)
    save_grid(to_unit_range(drawn.samples), run.final_grid)
    save_samples_npz(drawn.samples, run.final_samples, labels=drawn.labels)
    with atomic_write(run.trajectory) as f:
        torch.save({"frames": drawn.frames.half(), "timesteps": drawn.timesteps}, f)


def ssim_per_image(samples: torch.Tensor, test: torch.Tensor, train: torch.Tensor) -> dict[str, torch.Tensor]:
    """For images in [−1, 1]: SSIM of image i against test image i (the study's protocol) and
    against its most similar image of ``train``. Returns {"ssim": (N,), "nn_ssim": (N,)}."""
    a, b = to_unit_range(samples.float()), to_unit_range(test[: len(samples)].float())
    return {
        "ssim": paired_ssim(a, b),
        "nn_ssim": nearest_neighbour_ssim(a, to_unit_range(train.float())),
    }


class RunFigureInputs:
    """What the figures of one run are drawn from: its dir, config and family, the data's test
    images (the datamodule built from the run's config when none is given) and the final samples
    (drawn from the newest checkpoint, or ``ckpt_path``, when missing or with ``redraw``); each
    read once, when a figure first needs it."""

    def __init__(self, run: Run, config: dict[str, Any], model_class: type[GenerativeModule], module: Any | None,
                 datamodule: Any | None, ckpt_path: str | Path | None, num_samples: int, steps: int | None, seed: int,
                 redraw: bool, device: str, nn_reference_size: int) -> None:
        self.run, self.out, self.model_class = run, run.figures_dir, model_class
        self.cfg = OmegaConf.create(config)  # a node, so that data's ${paths.data_dir} & co. resolve
        self.module, self.ckpt_path, self.redraw, self.device = module, ckpt_path, redraw, device
        self.num_samples, self.steps, self.seed, self.nn_reference_size = num_samples, steps, seed, nn_reference_size
        self._datamodule = datamodule
        # schedule.name (schedule.schedule in run dirs of earlier versions)
        self.schedule = self.cfg.schedule.get("name", self.cfg.schedule.get("schedule"))
        self.num_timesteps = int(self.cfg.schedule.timesteps)

    @functools.cached_property
    def datamodule(self) -> Any:
        if self._datamodule is None:
            self._datamodule = instantiate(self.cfg.data, _convert_="all")
            self._datamodule.prepare_data()
        return self._datamodule

    @functools.cached_property
    def test(self) -> torch.Tensor:
        """2 × ``num_samples`` test images (N, C, H, W) in [−1, 1]."""
        return self.datamodule.reference_images("test", 2 * self.num_samples, seed=self.seed)

    @functools.cached_property
    def samples(self) -> Run:
        """The run, its final.npz and trajectory.pt drawn first when missing (or with ``redraw``)."""
        run = self.run
        if self.redraw or not run.final_samples.is_file() or not run.trajectory.is_file():
            module = self.module if self.module is not None else _load_newest(run, self.ckpt_path, self.device)
            draw_final_samples(module, run, self.num_samples, steps=self.steps, seed=self.seed)
        return run


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
    """Write the figures of ``run_dir`` that its model family lists (``run_figures`` of its class;
    see the module docstring); return {name: path}.

    ``module``/``datamodule``: the live objects at the end of training; otherwise the newest
    checkpoint (or ``ckpt_path``) and the run's data config (``.hydra/config.yaml``, or
    ``config``, a plain dict) are loaded.
    """
    run = Run(run_dir)
    tree = config if config is not None else run.load_config()
    model_class = type(module) if module is not None else model_class_of_config(tree, run)
    inputs = RunFigureInputs(run, tree, model_class, module, datamodule, ckpt_path, num_samples, steps, seed, redraw,
                             device, nn_reference_size)
    written: dict[str, Path] = {}
    for name, draw_figure in DRAWERS.items():
        if name in model_class.run_figures:
            path = draw_figure(inputs)
            if path is not None:
                written[name] = path
    for name, path in written.items():
        log.info("%s: %s", name, path)
    return written


def model_class_of_config(config: dict[str, Any], run: Run) -> type[GenerativeModule]:
    """The model family's class a run's config (a plain dict) trains (its ``model._target_``)."""
    target = str((config.get("model") or {}).get("_target_", ""))
    model_class = family_class(target)
    if model_class is None:
        raise DataError(f"{run.path}: model._target_={target or None} is not a model family of ddpm_lit")
    return model_class


def _loss_curves(inputs: RunFigureInputs) -> Path | None:
    """The loss curves of the run's CSV history: the family's ``loss_keys``."""
    run = inputs.run
    train_keys, val_keys = inputs.model_class.loss_keys
    history = run.history()
    if any(key in row for row in history for key in train_keys + val_keys):
        return loss_curves_figure(history, inputs.out / "loss_curves.png", title=f"Loss of {run.title}",
                                  train_keys=train_keys, val_keys=val_keys)
    log.warning("%s has no CSV history of %s (csv/version_*/metrics.csv); no loss curves", run.path, ", ".join(train_keys))
    return None


def _schedules(inputs: RunFigureInputs) -> Path:
    """ᾱ_t and the signal-to-noise ratio of both schedules."""
    return schedules_figure(inputs.out / "schedules.png", timesteps=inputs.num_timesteps)


def _two_mode_diffusion(inputs: RunFigureInputs) -> Path:
    """The 1-D two-mode density diffusing under the run's schedule."""
    T = inputs.num_timesteps
    return two_mode_diffusion_figure(
        inputs.out / "two_mode_diffusion.png", schedule=inputs.schedule, num_timesteps=T,
        timesteps=_timestep_fractions(T, (0, 0.05, 0.1, 0.2, 0.4)),
    )


def _forward_process(inputs: RunFigureInputs) -> Path:
    """One test image noised to several t."""
    T = inputs.num_timesteps
    return forward_process_figure(
        inputs.test[0], inputs.out / "forward_process.png",
        timesteps=_timestep_fractions(T, (0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)), num_timesteps=T,
    )


def _trajectory(inputs: RunFigureInputs) -> Path | None:
    """The final samples along the reverse chain (none for a model that drew without one)."""
    trajectory = torch.load(inputs.samples.trajectory, weights_only=True)
    if not len(trajectory["timesteps"]):
        return None
    return trajectory_figure(trajectory["frames"].float(), trajectory["timesteps"], inputs.out / "trajectory.png")


def _ssim_histogram(inputs: RunFigureInputs) -> Path:
    """The SSIM histogram of the run's final samples, beside real test images."""
    test = inputs.test
    samples = load_samples_npz(inputs.samples.final_samples, image_size=test.shape[-1])
    n = min(len(samples), inputs.num_samples, len(test) // 2)
    # held-out training images
    train_ref = inputs.datamodule.reference_images("val", inputs.nn_reference_size, seed=inputs.seed)
    per_image = {
        "samples": ssim_per_image(samples[:n], test[:n], train_ref),
        "real test images": ssim_per_image(test[n : 2 * n], test[:n], train_ref),
    }
    return ssim_histogram(per_image, inputs.out / "ssim_histogram.png")


# How each figure of FIGURES is drawn, in the order they are drawn: a family's ``run_figures``
# names those of its runs.
DRAWERS: dict[str, Callable[[RunFigureInputs], Path | None]] = {
    "loss_curves": _loss_curves,
    "schedules": _schedules,
    "two_mode_diffusion": _two_mode_diffusion,
    "forward_process": _forward_process,
    "trajectory": _trajectory,
    "ssim_histogram": _ssim_histogram,
}


def _timestep_fractions(T: int, fractions: tuple[float, ...]) -> list[int]:
    """0-based chain indices at these fractions of T, and the last one (T = 1000: 0, 50, 100, …, 999)."""
    return sorted({min(T - 1, round(f * T)) for f in fractions} | {T - 1})


def _load_newest(run: Run, ckpt_path: str | Path | None, device: str) -> Any:
    path = Path(ckpt_path) if ckpt_path else run.newest_checkpoint()
    if path is None:
        raise DataError(f"{run.checkpoint_dir} has no last.ckpt to draw samples from (or give ckpt_path=)")
    module, _ = load_module(path, resolve_device(device))
    return module
