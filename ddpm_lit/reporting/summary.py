"""A table and comparison plots of finished runs (``python -m ddpm_lit.summarize``), for the runs
under one or more folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from ddpm_lit.reporting.figures import by_epoch, plt, save_figure
from ddpm_lit.reporting.tables import optuna_best_note, runs_table
from ddpm_lit.runs import Run, Sweep, differing_settings


def _label(run: Run, config: dict[str, Any], differ: list[str]) -> str:
    settings = ", ".join(f"{k.split('.')[-1]}={config.get(k)}" for k in differ[:3])
    return f"{run.name}: {settings}" if settings else run.name


def comparison_plots(runs: list[Run], out_dir: Path) -> list[Path]:
    """runs_loss.png (train and val loss per epoch) and, when logged, runs_val_classifier_fid.png."""
    differ, configs = differing_settings(runs)
    histories = [run.history() for run in runs]
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("train/loss_epoch", "val/loss")):
        for run, config, history in zip(runs, configs, histories):
            epochs, values = by_epoch(history, key)
            if values:
                ax.plot(epochs, values, "o-", markersize=3, label=_label(run, config, differ))
        ax.set_title(f"{key} per epoch")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    written.append(save_figure(fig, out_dir / "runs_loss.png"))
    if any(by_epoch(h, "val/classifier_fid")[1] for h in histories):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for run, config, history in zip(runs, configs, histories):
            epochs, values = by_epoch(history, "val/classifier_fid")
            if values:
                ax.plot(epochs, values, "o-", markersize=3, label=_label(run, config, differ))
        ax.set_title("val/classifier_fid per epoch (classifier FID of the validation samples)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("val/classifier_fid")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        written.append(save_figure(fig, out_dir / "runs_val_classifier_fid.png"))
    else:
        plt.close("all")
    return written


def markdown(runs: list[Run], plots: list[Path], out_dir: Path) -> str:
    """runs.md: the runs table (``tables.runs_table``), Optuna's best when ``out_dir`` is its sweep, the plots."""
    lines = [f"# Runs under `{out_dir}`", "", runs_table(runs), ""]
    result = Sweep(out_dir).optuna_best()
    if result is not None:
        lines += [f"Optuna's best: {result.get('best_value')} with `{result.get('best_params')}`{optuna_best_note(result)}", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"
