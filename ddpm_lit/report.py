"""Collect finished runs into a markdown table: ``python -m ddpm_lit.report DIR [DIR ...]``.

Each DIR is a run dir or any folder above run dirs (a sweep, ``outputs/``); every run
below it that wrote ``metrics.json`` becomes a row, with the overrides it was started with.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

COLUMNS = [
    ("params", "params (M)", lambda v: f"{v / 1e6:.2f}"),
    ("epochs", "epochs", lambda v: f"{int(v)}"),
    ("global_step", "steps", lambda v: f"{int(v)}"),
    ("fit_seconds", "fit (min)", lambda v: f"{v / 60:.1f}"),
    ("final_samples_seconds", "final grid (s)", lambda v: f"{v:.0f}"),
    ("train/loss", "train/loss", lambda v: f"{v:.4f}"),
    ("val/loss", "val/loss", lambda v: f"{v:.4f}"),
    ("val/ssim", "val/ssim", lambda v: f"{v:.3f}"),
    ("val/nn_ssim", "val/nn_ssim", lambda v: f"{v:.3f}"),
]


def find_runs(paths: list[Path]) -> list[Path]:
    runs = set()
    for path in paths:
        if (path / "metrics.json").is_file():
            runs.add(path)
        runs.update(p.parent for p in path.rglob("metrics.json") if (p.parent / ".hydra").is_dir())
    return sorted(runs)


def overrides(run: Path) -> str:
    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return ""
    keep = [o for o in OmegaConf.to_container(OmegaConf.load(path)) if not o.startswith(("paths.", "hydra"))]
    return " ".join(keep)


def table(runs: list[Path]) -> str:
    head = ["run", "overrides"] + [title for _, title, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        started_with = overrides(run)
        cells = [run.name, f"`{started_with}`" if started_with else ""]
        cells += [fmt(metrics[key]) if key in metrics else "–" for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    runs = find_runs(args.dirs)
    if not runs:
        raise SystemExit(f"no run with metrics.json under {', '.join(map(str, args.dirs))}")
    print(table(runs))


if __name__ == "__main__":
    main()
