"""What a folder of runs holds: its run dirs, the settings in which they differ, their final metrics.

Shared by the markdown report (report.py) and the HTML pages (dashboard.py). A run dir is a
folder with ``.hydra/config.yaml``; a finished run also has ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ddpm_lit.errors import first_line
from ddpm_lit.reporting.figures import metric_by_step
from ddpm_lit.runs import flatten

log = logging.getLogger(__name__)

# (metrics.json key, column title, format)
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
IGNORED = ("paths.", "hydra.", "logger.", "ckpt_path", "tags", "task_name", "report_html")


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file()


def find_runs(paths: list[Path], finished_only: bool = True) -> list[Path]:
    """The run dirs at or below ``paths``, sweep jobs in numeric order: a folder below with
    ``.hydra/config.yaml`` (and ``metrics.json`` when ``finished_only``); a given path itself
    counts with ``metrics.json`` alone (a run of ``train(cfg)`` called from Python has no ``.hydra``)."""
    runs = set()
    for path in paths:
        if (path / "metrics.json").is_file():
            runs.add(path)
        runs.update(p.parent.parent for p in path.rglob(".hydra/config.yaml")
                    if not finished_only or (p.parent.parent / "metrics.json").is_file())
    return sorted(runs, key=_run_order)


def _run_order(run: Path) -> tuple[str, int, str]:
    """Sweep jobs (folders 0, 1, …, 10) in numeric order."""
    return (str(run.parent), int(run.name) if run.name.isdigit() else -1, run.name)


def read_yaml(path: Path) -> Any:
    """The YAML file at ``path`` as plain lists and dicts (interpolations as written); None when it
    is missing or does not parse (cut short by a kill, not YAML, not text)."""
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as err:  # noqa: BLE001 - OSError, UnicodeDecodeError, yaml's and OmegaConf's errors
        if path.exists():
            log.warning("%s does not parse: %s", path, first_line(err))
        return None


def run_config(run: Path) -> dict[str, Any]:
    """The run's composed config as dotted keys (interpolations unresolved); {} without one."""
    config = read_yaml(run / ".hydra" / "config.yaml")
    if not isinstance(config, dict):
        return {}
    return {k: v for k, v in flatten(config).items() if not k.startswith(IGNORED)}


def config_differences(runs: list[Path]) -> tuple[list[str], list[dict[str, Any]]]:
    """The keys whose values differ between ``runs`` (sorted) and every run's config."""
    configs = [run_config(run) for run in runs]
    keys = sorted({k for c in configs for k in c})
    missing = object()
    differ = [k for k in keys if len({json.dumps(c.get(k, missing), default=str) for c in configs}) > 1]
    return differ, configs


def read_metrics(run: Path) -> dict[str, Any]:
    """The run's metrics.json, {} when it has none or it does not parse (a run still going or killed)."""
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def by_epoch(history: list[dict[str, float]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of ``key``, the last row of each epoch (a resumed run repeats some)."""
    epochs, values = metric_by_step(history, key, index="epoch")
    return [int(e) for e in epochs], values


def optuna_best(sweep: Path) -> dict[str, Any] | None:
    """Optuna's ``optimization_results.yaml`` of a sweep dir (best_params, best_value), None without one."""
    result = read_yaml(sweep / "optimization_results.yaml")
    # a multi-objective study writes `solutions` instead: no single best to show
    return result if isinstance(result, dict) and "best_value" in result else None
