"""Collect finished runs into a markdown table and comparison plots:
``python -m ddpm_lit.apps.report DIR [DIR ...]``.

Each DIR is a run dir or any folder above run dirs (a sweep, ``outputs/``); every run below
it that wrote ``metrics.json`` becomes a row. The table shows the settings in which the runs
differ (from each run's ``.hydra/config.yaml``) and their final metrics; the plots show
loss and val/fid per epoch, a line per run (from each run's CSV history). With one DIR,
``report.md``, ``report_loss.png`` and ``report_val_fid.png`` are written into it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator
from omegaconf import OmegaConf

from ddpm_lit.apps.figures import metric_by_step, plt, read_history, save_figure
from ddpm_lit.io import write_text
from ddpm_lit.runs import flatten, load_run_config

COLUMNS = [
    ("params", "params (M)", lambda v: f"{v / 1e6:.2f}"),
    ("epochs", "epochs", lambda v: f"{int(v)}"),
    ("global_step", "steps", lambda v: f"{int(v)}"),
    ("fit_seconds", "fit (min)", lambda v: f"{v / 60:.1f}"),
    ("final_samples_seconds", "final samples (s)", lambda v: f"{v:.0f}"),
    ("train/loss_epoch", "train/loss", lambda v: f"{v:.4f}"),
    ("val/loss", "val/loss", lambda v: f"{v:.4f}"),
    ("val/fid", "val/fid", lambda v: f"{v:.2f}"),
    ("val/ssim", "val/ssim", lambda v: f"{v:.3f}"),
    ("val/nn_ssim", "val/nn_ssim", lambda v: f"{v:.3f}"),
]

# Settings that name where a run wrote things or how it was started, not what it trained.
IGNORED = ("paths.", "hydra.", "logger.", "ckpt_path", "tags", "task_name")


def find_runs(paths: list[Path]) -> list[Path]:
    runs = set()
    for path in paths:
        if (path / "metrics.json").is_file():
            runs.add(path)
        runs.update(p.parent for p in path.rglob("metrics.json") if (p.parent / ".hydra").is_dir())
    return sorted(runs, key=_run_order)


def _run_order(run: Path) -> tuple[str, int, str]:
    """Sweep jobs (folders 0, 1, …, 10) in numeric order."""
    return (str(run.parent), int(run.name) if run.name.isdigit() else -1, run.name)


def run_config(run: Path) -> dict[str, Any]:
    """The run's composed config as dotted keys (interpolations unresolved); {} without one."""
    if not (run / ".hydra" / "config.yaml").is_file():
        return {}
    flat = flatten(OmegaConf.to_container(load_run_config(run), resolve=False))
    return {k: v for k, v in flat.items() if not k.startswith(IGNORED)}


def config_differences(runs: list[Path]) -> tuple[list[str], list[dict[str, Any]]]:
    """The keys whose values differ between ``runs`` (sorted) and every run's config."""
    configs = [run_config(run) for run in runs]
    keys = sorted({k for c in configs for k in c})
    missing = object()
    differ = [k for k in keys if len({json.dumps(c.get(k, missing), default=str) for c in configs}) > 1]
    return differ, configs


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


def by_epoch(history: list[dict[str, float]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of ``key``, the last row of each epoch (a resumed run repeats some)."""
    epochs, values = metric_by_step(history, key, index="epoch")
    return [int(e) for e in epochs], values


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
        ax.set_title("val/fid per epoch (MNIST-FID of the validation samples)")
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
    best = out_dir / "optimization_results.yaml"
    if best.is_file():  # an Optuna sweep
        result = OmegaConf.to_container(OmegaConf.load(best))
        lines += [f"Optuna's best: {result.get('best_value')} with `{result.get('best_params')}`", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    runs = find_runs(args.dirs)
    if not runs:
        raise SystemExit(f"no run with metrics.json under {', '.join(map(str, args.dirs))}")
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
