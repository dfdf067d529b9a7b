"""Self-contained HTML pages of a run and of a sweep, ``report.html``, readable offline.

``python -m ddpm_lit.report dirs=<run dir or sweep dir> html=true`` writes them (train.py writes the run's
own at its end, and a multirun the sweep's). One file each: the charts are Vega-Lite, whose
JavaScript (vl-convert's bundle of Vega, Vega-Lite and vega-embed) is inlined with the data and
every image, so the page opens by double-click with nothing fetched from any host.

Run page: status, final metrics, a chart per logged series of the CSV history (zoom with the wheel,
pan by dragging, hover for values; log scale and smoothing for all), the validation grids of every
epoch on a slider, the final grid, trajectory and figures, evaluate.py's scores of the run, the
checkpoints, and the composed config with the keys the command line set highlighted. Sweep page:
a sortable table of the jobs (settings that differ, final metrics), every job's curves on one chart
with a toggle per job, each differing setting against the objective, Optuna's best, links to the
jobs' pages. What a run lacks (a crashed run, a half-written CSV) is said, not fatal.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import vl_convert
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from ddpm_lit.errors import DataError, UserError, first_line
from ddpm_lit.io import write_text
from ddpm_lit.reporting.figures import metric_by_step, read_history_rows
from ddpm_lit.reporting.sweeps import (
    COLUMNS,
    config_differences,
    find_runs,
    is_run_dir,
    optuna_best,
    read_metrics,
    read_yaml,
)
from ddpm_lit.runs import flatten
from ddpm_lit.training.checkpointing import read_checkpoint

log = logging.getLogger(__name__)

PAGE = "report.html"
MAX_POINTS = 1500  # per series; longer ones are averaged in buckets
MAX_SCATTER = 12  # settings drawn against the objective on a sweep page
GRID_BYTES = 2_500_000  # the epoch grids of one page; more epochs are thinned evenly to fit
# Tableau 10, the jobs' colours on the sweep page (legend swatches and chart lines alike).
PALETTE = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
           "#bab0ac"]
FIGURES = {  # run_figures' and evaluate's files, in the order a reader wants them
    "loss_curves": "Loss curves", "trajectory": "Denoising trajectory", "ssim_histogram": "SSIM of the samples",
    "nearest_training": "Nearest training images", "forward_process": "Forward process", "schedules": "Schedules",
    "two_mode_diffusion": "A two-mode density diffusing", "bound_terms": "Terms of the variational bound",
    "grid": "Samples",
}


class NotARunError(UserError):
    """The path is neither a run dir nor a folder holding runs."""


@dataclass
class Picture:
    caption: str
    uri: str
    name: str = ""


@dataclass
class Chart:
    """One panel: a line per series over ``x`` (step or epoch)."""

    id: str
    title: str
    x: str
    series: list[dict[str, Any]] = field(default_factory=list)  # {name, x: [...], y: [...]}
    smooth: bool = False
    note: str = ""


# ---------------------------------------------------------------------------------------------------------------
# Reading a run


def image_uri(path: Path) -> str | None:
    """The PNG at ``path`` as a data URI, recompressed (grey when its channels agree); None if unreadable."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGB", "RGBA"):
                rgb = image.convert("RGB")
                r, g, b = rgb.split()
                if r.tobytes() == g.tobytes() == b.tobytes():
                    image = r
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=True)
    except Exception as err:  # noqa: BLE001 - truncated, not an image, gone, a decompression bomb
        log.warning("%s left out of the page: %s", path, first_line(err))
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thin(xs: Sequence[float], ys: Sequence[float], limit: int = MAX_POINTS) -> tuple[list[float], list[float], int]:
    """At most ``limit`` points: the means of consecutive buckets of k values (x: the bucket's last), and k."""
    k = max(1, -(-len(xs) // limit))
    if k == 1:
        return list(xs), list(ys), 1
    out_x, out_y = [], []
    for start in range(0, len(xs), k):
        bucket = [y for y in ys[start:start + k] if _finite(y) is not None]  # a NaN blanks no bucket
        out_x.append(xs[start:start + k][-1])
        out_y.append(sum(bucket) / len(bucket) if bucket else float("nan"))
    return out_x, out_y, k


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


def history_series(history: list[dict[str, float]]) -> dict[str, tuple[str, list[float], list[float]]]:
    """key → (x column, xs, ys) for every logged series: by epoch when the key is logged once an
    epoch, otherwise by step; the last row of a step or epoch that a resumed run logged twice."""
    keys = sorted({k for row in history for k in row} - {"epoch", "step"})
    return {key: (index, *metric_by_step(history, key, index=index)) for key in keys
            for index in [index_of(history, key)]}


def index_of(history: list[dict[str, float]], key: str) -> str:
    """``epoch`` when every row of ``key`` has an epoch and all rows of an epoch one step (a resumed
    run repeats it), else ``step``."""
    rows = [row for row in history if key in row]
    steps_of_epoch: dict[float, set[float | None]] = {}
    for row in rows:
        steps_of_epoch.setdefault(row.get("epoch", float("nan")), set()).add(row.get("step"))
    per_epoch = all("epoch" in row for row in rows) and all(len(s) == 1 for s in steps_of_epoch.values())
    return "epoch" if per_epoch else "step"


def chart_series(name: str, xs: list[float], ys: list[float]) -> tuple[dict[str, Any], int]:
    """A chart's series (at most MAX_POINTS, JSON-safe) and how many logged values a point averages."""
    xs, ys, k = thin(xs, ys)
    return {"name": name, "x": xs, "y": [_finite(y) for y in ys]}, k


def _chart_order(key: str) -> tuple[int, str]:
    return ({"train": 0, "val": 1}.get(key.split("/")[0], 2), key)


def run_charts(history: list[dict[str, float]]) -> list[Chart]:
    charts = []
    for n, (key, (index, xs, ys)) in enumerate(sorted(history_series(history).items(), key=lambda kv: _chart_order(kv[0]))):
        series, k = chart_series(key, xs, ys)
        charts.append(Chart(id=f"chart-{n}", title=key, x=index, series=[series], smooth=smoothed(key, index, [series]),
                            note=f"means of {k} logged values a point" if k > 1 else ""))
    return charts


def overridden_keys(run: Path, flat_config: dict[str, Any]) -> dict[str, str]:
    """Config key → the command-line override that set it: ``a.b=v`` sets ``a.b``; a group choice
    ``g=o`` sets the keys of ``<conf>/g/o.yaml`` (at the root for ``@package _global_``, as
    experiments are; the ``override /x: y`` of its defaults in turn), or, without the file, every key under ``g.``."""
    overrides = read_yaml(run / ".hydra" / "overrides.yaml")
    conf_dir = _conf_dir(run)
    marked: dict[str, str] = {}

    def mark(prefix: str, reason: str) -> None:
        for key in flat_config:
            if key == prefix or key.startswith(prefix + "."):
                marked[key] = reason  # a later override wins, as in Hydra

    def group(name: str, option: str, reason: str, depth: int = 0) -> None:
        path = conf_dir / name / f"{option}.yaml" if conf_dir is not None else None
        if path is None or not path.is_file() or depth > 4:
            mark(name.replace("/", "."), reason)
            return
        text = path.read_text()
        content = read_yaml(path)
        content = content if isinstance(content, dict) else {}
        root = "" if re.search(r"^#\s*@package\s+_global_", text, re.M) else name.replace("/", ".") + "."
        for entry in content.pop("defaults", []) or []:
            if isinstance(entry, dict):
                for sub, sub_option in entry.items():
                    if sub.startswith("override /") and isinstance(sub_option, str):
                        group(sub.removeprefix("override /").strip(), sub_option, reason, depth + 1)
        for key in flatten(content):
            mark(root + key, reason)
        mark(name.replace("/", "."), reason)

    for override in overrides if isinstance(overrides, list) else []:
        key, _, value = str(override).lstrip("+~").partition("=")
        if key in flat_config or "." in key or conf_dir is None or not (conf_dir / key).is_dir():
            mark(key, override)
        else:
            group(key, value, override)
    return marked


def _conf_dir(run: Path) -> Path | None:
    """The config folder the run was composed from (hydra.yaml's config source of the app)."""
    hydra = read_yaml(run / ".hydra" / "hydra.yaml")
    sources = _get(hydra, "hydra", "runtime", "config_sources")
    for source in sources if isinstance(sources, list) else []:
        if isinstance(source, dict) and source.get("schema") == "file" and source.get("provider") == "main":
            if Path(str(source.get("path"))).is_dir():
                return Path(str(source["path"]))
    return None


def _get(tree: Any, *keys: str) -> Any:
    """``tree[k1][k2]...``, None where a level is missing or not a dict."""
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def config_rows(run: Path, config: DictConfig | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The composed config (``.hydra/config.yaml``, else ``config``) as rows (key, value, set by
    which override) and the overrides."""
    saved = read_yaml(run / ".hydra" / "config.yaml")
    if not isinstance(saved, dict) and config is None:
        return [], []
    flat = flatten(saved if isinstance(saved, dict) else OmegaConf.to_container(config, resolve=False))
    marked = overridden_keys(run, flat)
    overrides = read_yaml(run / ".hydra" / "overrides.yaml")
    overrides = [str(o) for o in overrides] if isinstance(overrides, list) else []
    rows = [{"key": k, "value": json.dumps(v, default=str), "set_by": marked.get(k, "")} for k, v in flat.items()]
    return rows, overrides


def checkpoints(run: Path) -> list[dict[str, Any]]:
    """Every checkpoint of the run with its size, epoch and step (or why it does not load)."""
    rows = []
    for path in sorted((run / "checkpoints").glob("*.ckpt")):
        try:
            stat = path.stat()
        except FileNotFoundError:  # replaced by the live run since it was listed
            continue
        row: dict[str, Any] = {"name": path.name, "size": f"{stat.st_size / 1e6:.1f} MB",
                               "saved": datetime.fromtimestamp(stat.st_mtime).strftime("%Y-%m-%d %H:%M:%S"),
                               "epoch": None, "step": None, "problem": ""}
        try:
            checkpoint = read_checkpoint(path)
            row.update(epoch=checkpoint.get("epoch"), step=checkpoint.get("global_step"))
        except DataError as err:
            row["problem"] = str(err)
        rows.append(row)
    return rows


def evaluations(run: Path) -> list[dict[str, Any]]:
    """evaluate.py's run dirs that scored a checkpoint or samples file of ``run`` (looked for in the
    ``evaluate`` folder beside the run's task folder): their metrics and figures."""
    run = run.resolve()
    found = []
    for above in list(run.parents)[:4]:
        evaluate_dir = above / "evaluate"
        if not evaluate_dir.is_dir():
            continue
        for config_file in sorted(evaluate_dir.rglob(".hydra/config.yaml")):
            eval_dir = config_file.parent.parent
            if not _scored(eval_dir, run):
                continue
            metrics = read_metrics(eval_dir)
            pictures = pictures_of(sorted(eval_dir.glob("*.png")))
            found.append({"name": eval_dir.name, "path": str(eval_dir),
                          "metrics": {k: v for k, v in flatten(metrics).items() if isinstance(v, (int, float, str))},
                          "pictures": pictures})
    return found


def _scored(eval_dir: Path, run: Path) -> bool:
    config = read_yaml(eval_dir / ".hydra" / "config.yaml")
    cwd = _get(read_yaml(eval_dir / ".hydra" / "hydra.yaml"), "hydra", "runtime", "cwd")
    if not isinstance(config, dict) or not isinstance(cwd, str):  # not evaluate.py's, or half-written
        return False
    for key in ("ckpt_path", "samples_path"):
        value = config.get(key)
        if isinstance(value, str) and value:
            path = Path(value) if Path(value).is_absolute() else Path(cwd) / value
            if path.resolve().is_relative_to(run):
                return True
    return False


def _figure_order(path: Path) -> tuple[int, str]:
    """The figures a reader wants first (FIGURES' order), then the others by name."""
    order = list(FIGURES)
    return (order.index(path.stem) if path.stem in order else len(order), path.stem)


def pictures_of(paths: list[Path]) -> list[Picture]:
    """The PNGs that decode, captioned (FIGURES' captions, else the file's stem)."""
    return [Picture(FIGURES.get(p.stem, p.stem), uri, p.name) for p in paths if (uri := image_uri(p)) is not None]


def epoch_grids(run: Path, budget: int = GRID_BYTES) -> tuple[list[dict[str, Any]], int]:
    """The validation grids ``samples/epoch_NNN.png`` as [{epoch, uri}], thinned evenly (first and
    last kept) to about ``budget`` bytes of data URIs, and how many there were. The first grid that
    decodes, drawn by the least trained network, is the noisiest and largest: its size sets how many fit."""
    paths = sorted(p for p in (run / "samples").glob("epoch_*.png") if re.fullmatch(r"epoch_\d+", p.stem))
    total = len(paths)
    encoded: dict[Path, str | None] = {}  # each grid encoded once
    for path in paths:  # up to the first that decodes
        encoded[path] = image_uri(path)
        if encoded[path] is not None:
            break
    first = next((uri for uri in encoded.values() if uri is not None), None)
    keep = max(2, budget // len(first)) if first is not None else 0
    if keep < total:
        step = (total - 1) / max(1, keep - 1)
        paths = [paths[round(i * step)] for i in range(keep)] if keep else []
    grids = []
    for path in paths:
        uri = encoded[path] if path in encoded else image_uri(path)
        if uri is not None:
            grids.append({"epoch": int(path.stem.removeprefix("epoch_")), "uri": uri})
    return grids, total


def _log_tail(run: Path, lines: int = 25) -> str:
    logs = sorted(run.glob("*.log"))
    if not logs:
        return ""
    try:
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_page_data(run: Path, config: DictConfig | None = None) -> dict[str, Any]:
    """Everything the run page shows, and notes on what the run lacks."""
    missing = []
    metrics = read_metrics(run)
    history, skipped = read_history_rows(run)
    if not history:
        missing.append("no CSV history (csv/version_*/metrics.csv): no charts")
    if skipped:
        missing.append(f"{skipped} row(s) of the CSV history unreadable (a write cut short) and left out")
    grids, total_grids = epoch_grids(run)
    if not total_grids:
        missing.append("no validation sample grids (samples/epoch_*.png) yet")
    final = image_uri(run / "samples" / "final.png") if (run / "samples" / "final.png").is_file() else None
    if final is None:
        missing.append("no final samples (samples/final.png)")
    figures = pictures_of(sorted((run / "figures").glob("*.png"), key=_figure_order))
    if not figures:
        missing.append("no figures (figures/*.png)")
    ckpts = checkpoints(run)
    if not ckpts:
        missing.append("no checkpoint (checkpoints/*.ckpt)")
    rows, overrides = config_rows(run, config)
    if not rows:
        missing.append("no readable config (.hydra/config.yaml)")
    finished = bool(metrics)
    return {
        "title": f"{run.parent.name}/{run.name}",
        "path": str(run.resolve()),
        "finished": finished,
        "status": "finished" if finished else "not finished: no metrics.json (still running, or stopped before its end)",
        "log_tail": "" if finished else _log_tail(run),
        "metrics": {k: v for k, v in sorted(metrics.items())},
        "charts": run_charts(history),
        "grids": grids, "total_grids": total_grids,
        "final": final,
        "figures": figures,
        "evaluations": evaluations(run),
        "checkpoints": ckpts,
        "config": rows, "overrides": overrides,
        "missing": missing,
    }


# ---------------------------------------------------------------------------------------------------------------
# Reading a sweep


def objective_of(configs: list[dict[str, Any]]) -> str:
    """The metric the sweep optimised (its ``optimized_metric``), else val/loss."""
    named = {c.get("optimized_metric") for c in configs} - {None}
    return str(next(iter(named))) if len(named) == 1 else "val/loss"


def _axis_value(value: Any) -> float | str:
    """A setting as a chart's x: numbers as numbers, strings as they are, anything else as JSON."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value) is not None:
        return value
    return value if isinstance(value, str) else json.dumps(value, default=str)


def smoothed(key: str, index: str, series: list[dict[str, Any]]) -> bool:
    """Smoothing is for noisy per-step series of more than 20 points; a learning rate
    (LearningRateMonitor's lr-*) is a schedule."""
    return index == "step" and not key.startswith("lr-") and max(len(s["x"]) for s in series) > 20


def sweep_page_data(sweep: Path) -> dict[str, Any]:
    runs = sweep_jobs(sweep)
    differ, configs = config_differences(runs)
    objective = objective_of(configs)
    jobs, histories = [], []
    for n, (run, config) in enumerate(zip(runs, configs)):
        metrics = read_metrics(run)
        name = str(run.relative_to(sweep))
        page = run / PAGE
        jobs.append({
            "name": name, "color": PALETTE[n % len(PALETTE)], "finished": bool(metrics),
            "link": str(page.relative_to(sweep)) if page.is_file() else "",
            "settings": [json.dumps(config.get(k), default=str) if k in config else "–" for k in differ],
            "setting_values": {k: config.get(k) for k in differ},
            "metrics": [fmt(metrics[key]) if isinstance(metrics.get(key), (int, float)) else "–"
                        for key, _, fmt in COLUMNS],
            "objective": _finite(metrics[objective]) if isinstance(metrics.get(objective), (int, float)) else None,
        })
        histories.append((name, read_history_rows(run)[0]))
    keys = sorted({k for _, h in histories for row in h for k in row} - {"epoch", "step"}, key=_chart_order)
    charts = []
    for key in keys:
        logging_jobs = [(name, h) for name, h in histories if any(key in row for row in h)]
        # per epoch only when every job logged it once an epoch: one x axis for all jobs' lines
        index = "epoch" if all(index_of(h, key) == "epoch" for _, h in logging_jobs) else "step"
        series = [chart_series(name, *metric_by_step(h, key, index=index))[0] for name, h in logging_jobs]
        charts.append(Chart(id=f"chart-{len(charts)}", title=key, x=index, series=series,
                            smooth=smoothed(key, index, series)))
    scatter = [{"id": f"scatter-{n}", "setting": key,
                "points": [{"job": j["name"], "value": _axis_value(j["setting_values"].get(key)),
                            "objective": j["objective"]} for j in jobs if j["objective"] is not None]}
               for n, key in enumerate(differ[:MAX_SCATTER])]
    return {
        "title": str(sweep.name), "path": str(sweep.resolve()),
        "jobs": jobs, "differ": differ, "columns": [title for _, title, _ in COLUMNS],
        "objective": objective, "objective_column": objective not in {key for key, _, _ in COLUMNS}, "charts": charts, "scatter": scatter,
        "settings_left_out": max(0, len(differ) - MAX_SCATTER),
        "optuna": optuna_best(sweep),
        "missing": [] if runs else ["no runs yet"],
    }


# ---------------------------------------------------------------------------------------------------------------
# Writing the pages


@functools.cache
def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one script that sets ``window.vegaEmbed`` (vl-convert's bundle)."""
    return vl_convert.javascript_bundle().replace("</script", "<\\/script")


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("ddpm_lit.reporting", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["number"] = _number
    return env


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–" if value is None else str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _script_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">."""
    text = json.dumps(data, default=_plain, allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _plain(value: Any) -> Any:
    if isinstance(value, (Chart, Picture)):
        return value.__dict__
    return str(value)


def render(kind: str, data: dict[str, Any]) -> str:
    """The page (``kind``: run or sweep) of ``data``, with its script, style and images inline."""
    env = _templates()
    page_data = {"kind": kind, "charts": data["charts"], "palette": PALETTE}
    if kind == "sweep":
        page_data.update(jobs=[{"name": j["name"], "color": j["color"]} for j in data["jobs"]],
                         scatter=data["scatter"], objective=data["objective"])
    else:
        page_data.update(grids=[g["epoch"] for g in data["grids"]])
    return env.get_template(f"{kind}.html.j2").render(
        data=data, page_json=_script_json(page_data),
        style=env.loader.get_source(env, "dashboard.css")[0],
        script=env.loader.get_source(env, "dashboard.js")[0],
        bundle=javascript_bundle(),
        written=datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
    )


def looks_like_run(path: Path) -> bool:
    """A run dir: ``.hydra/config.yaml``, or (``train(cfg)`` called from Python writes no ``.hydra``)
    ``metrics.json``, a CSV history or checkpoints."""
    return is_run_dir(path) or (path / "metrics.json").is_file() or (path / "csv").is_dir() or \
        (path / "checkpoints").is_dir()


def write_run_page(run: str | Path, config: DictConfig | None = None) -> Path:
    """``<run>/report.html``. ``config``: the run's, for a run dir without ``.hydra`` (``train(cfg)``
    called from Python); NotARunError for a folder that holds nothing of a run."""
    run = Path(run)
    if not looks_like_run(run) and config is None:
        raise NotARunError(f"{run} is not a run dir (no .hydra/config.yaml, metrics.json, csv/ or checkpoints/)")
    return write_text(run / PAGE, render("run", run_page_data(run, config)))


def sweep_jobs(sweep: Path) -> list[Path]:
    """The run dirs below ``sweep`` (finished or not), sweep jobs in numeric order."""
    return [r for r in find_runs([sweep], finished_only=False) if r != sweep]


def write_sweep_page(sweep: str | Path) -> Path:
    """``<sweep>/report.html`` and the page of every job that has none yet (a job whose page
    fails is logged and left without one; the sweep's page is still written)."""
    sweep = Path(sweep)
    jobs = sweep_jobs(sweep)
    if not jobs:
        raise NotARunError(f"{sweep} holds no run dirs (folders with .hydra/config.yaml)")
    for job in jobs:
        if not (job / PAGE).is_file():
            write_page_quietly(job)
    return write_text(sweep / PAGE, render("sweep", sweep_page_data(sweep)))


def write_page_quietly(run: Path, config: DictConfig | None = None) -> Path | None:
    """``write_run_page``, logging instead of raising: the page must not end a run that trained."""
    try:
        path = write_run_page(run, config)
    except Exception as err:  # noqa: BLE001 - a page is a view; the run's files are what count
        log.warning("no %s written for %s: %s", PAGE, run, err)
        return None
    log.info("run page: %s", path)
    return path


class SweepPage(Callback):
    """Hydra callback (``hydra.callbacks`` of conf/hydra/train.yaml): the sweep page when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        try:
            log.info("sweep page: %s", write_sweep_page(sweep))
        except Exception as err:  # noqa: BLE001 - the jobs ran; the page can be written later
            log.warning("no %s written for %s: %s (python -m ddpm_lit.report dirs=%s html=true)", PAGE, sweep, err, sweep)


def run_of(path: str | Path) -> Path | None:
    """The run dir a checkpoint or samples file lies in (``<run>/checkpoints/last.ckpt``,
    ``<run>/samples/final.npz``), None for a file elsewhere."""
    for above in list(Path(path).resolve().parents)[:2]:
        if is_run_dir(above):
            return above
    return None


def write_page(path: str | Path) -> Path:
    """The run page of a run dir, the sweep page of a folder holding runs."""
    path = Path(path)
    if not path.is_dir():
        raise NotARunError(f"{path} is not a folder")
    return write_run_page(path) if looks_like_run(path) else write_sweep_page(path)
