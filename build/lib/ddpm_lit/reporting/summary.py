"""A table and comparison plots of finished runs (``python -m ddpm_lit.report``), for the runs
under one or more folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from ddpm_lit.reporting.figures import plt, read_history, save_figure
from ddpm_lit.reporting.sweeps import (
    COLUMNS,
    by_epoch,
    config_differences,
    optuna_best,
)


def _cell(value: Any) -> str:
    return "–" if value is None else f"`{value}`" if isinstance(value, str) else str(value)


def table(runs: list[Path]) -> str:
    differ, configs = config_differences(runs)
    head = ["run"] + differ + [title for _, title, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run, config in zip(runs, configs):
        metrics = json.loads((run / "metrics.json").read_text())
        cells = [run.name] + [_cell(config.get(k)) for k in differ]
        cells += [fmt(metrics[key]) if key in metrics else "–" for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label(run: Path, config: dict[str, Any], differ: list[str]) -> str:
    settings = ", ".join(f"{k.split('.')[-1]}={config.get(k)}" for k in differ[:3])
    return f"{run.name}: {settings}" if settings else run.name


def comparison_plots(runs: list[Path], out_dir: Path) -> list[Path]:
    """report_loss.png (train and val loss per epoch) and, when logged, report_val_fid.png."""
    differ, configs = config_differences(runs)
    histories = [read_history(run) for run in runs]
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
    written.append(save_figure(fig, out_dir / "report_loss.png"))
    if any(by_epoch(h, "val/fid")[1] for h in histories):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for run, config, history in zip(runs, configs, histories):
            epochs, values = by_epoch(history, "val/fid")
            if values:
                ax.plot(epochs, values, "o-", markersize=3, label=_label(run, config, differ))
        ax.set_title("val/fid per epoch (classifier FID of the validation samples)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("val/fid")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        written.append(save_figure(fig, out_dir / "report_val_fid.png"))
    else:
        plt.close("all")
    return written


def markdown(runs: list[Path], plots: list[Path], out_dir: Path) -> str:
    lines = [f"# Runs under `{out_dir}`", "", table(runs), ""]
    result = optuna_best(out_dir)
    if result is not None:
        lines += [f"Optuna's best: {result.get('best_value')} with `{result.get('best_params')}`", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"
