"""What a run writes when its fit ends, as Lightning callbacks listed in ``conf/callbacks/default.yaml``:
the final samples, ``metrics.json``, the run's figures and its page.

They run in ``on_fit_end``, which Lightning calls after the training loop's ``on_train_end``
(where the EMA callback copies the average into the module) and after the strategy's teardown
(which leaves the module on the CPU): the samples are drawn from the average, on the device the
run trained on. Rank 0 alone writes; ``fast_dev_run`` writes nothing but the page. In the
order of the config (Lightning keeps the order of callbacks other than checkpoints): samples,
metrics, figures, page.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L

from ddpm_lit.reporting.pages import write_page_quietly
from ddpm_lit.core.samplers import SAMPLERS
from ddpm_lit.reporting.run_figures import draw_final_samples, run_figures
from ddpm_lit.runs import Run
from ddpm_lit.training.loggers import log_figures

log = logging.getLogger(__name__)


def _writes(trainer: L.Trainer) -> bool:
    """Rank 0 of a fit that trained for real (not ``fast_dev_run``)."""
    return trainer.is_global_zero and not trainer.fast_dev_run


class FitTimer(L.Callback):
    """The fit's wall-clock seconds, from ``on_fit_start`` to ``on_fit_end`` (sanity check and
    validation included), and the first whole epoch's (its batches and its validation pass),
    for ``metrics.json`` and the run's last words beside the start-up estimate."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.seconds: float | None = None
        self.epoch_started: float | None = None
        self.epoch_batches = 0
        self.first_epoch_seconds: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_started, self.epoch_batches = time.perf_counter(), 0

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.epoch_batches += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning validates after the epoch's last batch, before this hook: the pass is counted.
        # A resumed run's first epoch, or one a step bound cut, saw fewer batches: not a whole one.
        whole = self.epoch_started is not None and self.epoch_batches >= trainer.num_training_batches
        if whole and self.first_epoch_seconds is None:
            self.first_epoch_seconds = time.perf_counter() - self.epoch_started
        self.epoch_started = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.started is not None:
            self.seconds = time.perf_counter() - self.started


class FinalSamples(L.Callback):
    """``num`` samples drawn with ``sampler`` (None: ancestral) in ``steps`` steps (null: all T)
    and a fixed ``seed`` into ``<out_dir>/samples/``: final.png, final.npz (evaluate.py's layout)
    and trajectory.pt."""

    def __init__(self, out_dir: str, num: int = 64, steps: int | None = None, seed: int = 0,
                 sampler: str | None = None) -> None:
        if not isinstance(num, int) or isinstance(num, bool) or num < 0:
            raise ValueError(f"final_samples.num must be an integer ≥ 0, got {num!r}")
        if sampler is not None and sampler not in SAMPLERS:
            raise ValueError(f"final_samples.sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        self.out_dir, self.num, self.steps, self.seed, self.sampler = Path(out_dir), num, steps, seed, sampler
        self.seconds: float | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.num == 0 or not _writes(trainer):
            return
        pl_module.to(trainer.strategy.root_device)  # the strategy's teardown left it on the CPU
        start = time.perf_counter()
        draw_final_samples(pl_module, Run(self.out_dir), num=self.num, steps=self.steps, seed=self.seed,
                           sampler=self.sampler)
        self.seconds = time.perf_counter() - start
        log.info("samples written to %s", self.out_dir / "samples")


class MetricsFile(L.Callback):
    """``<out_dir>/metrics.json``: the last value of every scalar the run logged, the fit's
    seconds, epochs, steps and parameter count, and the final samples' seconds. ``metrics``
    holds them for ``train(cfg)`` to return (a sweeper minimises one of them)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.metrics: dict[str, float] = {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        metrics.update(
            epochs=trainer.current_epoch,  # Lightning's count at the end; a partial last epoch counts
            global_step=trainer.global_step,
            params=sum(p.numel() for p in pl_module.parameters()),
        )
        for callback in trainer.callbacks:
            if isinstance(callback, FitTimer) and callback.seconds is not None:
                metrics["fit_seconds"] = callback.seconds
                if callback.first_epoch_seconds is not None:
                    metrics["first_epoch_seconds"] = callback.first_epoch_seconds
            if isinstance(callback, FinalSamples) and callback.seconds is not None:
                metrics["final_samples_seconds"] = callback.seconds
        self.metrics = metrics
        if trainer.is_global_zero:
            Run(self.out_dir).write_metrics(metrics)


class RunFigures(L.Callback):
    """The run's figures (``reporting.run_figures``) from the final samples, logged to W&B."""

    def __init__(self, out_dir: str, num_samples: int = 64, seed: int = 0) -> None:
        self.out_dir, self.num_samples, self.seed = Path(out_dir), num_samples, seed

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.num_samples == 0 or not _writes(trainer):
            return
        figures = run_figures(self.out_dir, module=pl_module, datamodule=trainer.datamodule,
                              num_samples=self.num_samples, seed=self.seed)
        log_figures(trainer.loggers, figures)


class RunPage(L.Callback):
    """The run's page (``page.html``), also when the fit fails or is stopped."""

    def __init__(self, out_dir: str, enabled: bool = True) -> None:
        self.out_dir, self.enabled = Path(out_dir), enabled

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled and trainer.is_global_zero:
            write_page_quietly(self.out_dir)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_fit_end(trainer, pl_module)


def fit_metrics(callbacks: list[Any]) -> dict[str, float]:
    """What the ``MetricsFile`` among ``callbacks`` collected ({} without one)."""
    return next((cb.metrics for cb in callbacks if isinstance(cb, MetricsFile)), {})
