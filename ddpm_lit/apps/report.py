"""Collect finished runs into a markdown table and comparison plots:
``python -m ddpm_lit.report DIR [DIR ...]``; with ``--html``, a self-contained page of a run or a
sweep (dashboard.py).

Each DIR is a run dir or any folder above run dirs (a sweep, ``outputs/``); every run below
it that wrote ``metrics.json`` becomes a row. The table shows the settings in which the runs
differ (from each run's ``.hydra/config.yaml``) and their final metrics; the plots show
loss and val/fid per epoch, a line per run (from each run's CSV history). With one DIR,
``report.md``, ``report_loss.png`` and ``report_val_fid.png`` are written into it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from ddpm_lit.apps.dashboard import write_page
from ddpm_lit.apps.figures import plt, read_history, save_figure
from ddpm_lit.apps.sweeps import COLUMNS, by_epoch, config_differences, find_runs, optuna_best
from ddpm_lit.errors import exit_on_user_error
from ddpm_lit.io import write_text

__all__ = ["by_epoch", "comparison_plots", "config_differences", "find_runs", "main", "markdown", "table"]


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--html", action="store_true",
                        help="write DIR/report.html instead: the run page of a run dir (also of a run that crashed or "
                             "is still going), the sweep page of a folder holding runs (and the page of each job that "
                             "has none); self-contained, opens offline")
    args = parser.parse_args(argv)
    if args.html:
        for path in args.dirs:
            print(f"written: {exit_on_user_error(write_page, path)}")
        return
    runs = find_runs(args.dirs)
    if not runs:
        print(f"error: no run with metrics.json under {', '.join(map(str, args.dirs))}", file=sys.stderr)
        raise SystemExit(2)
    if len(args.dirs) == 1 and args.dirs[0].is_dir():
        out_dir = args.dirs[0]
        plots = comparison_plots(runs, out_dir)
        write_text(out_dir / "report.md", markdown(runs, plots, out_dir))
        print(markdown(runs, plots, out_dir), end="")
        print(f"written: {out_dir / 'report.md'}, " + ", ".join(str(p) for p in plots))
    else:
        print(table(runs))


if __name__ == "__main__":
    main()
