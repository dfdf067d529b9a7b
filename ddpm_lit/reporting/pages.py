"""Self-contained HTML pages of a run and of a sweep, ``page.html``, readable offline.

``python -m ddpm_lit.summarize dirs=<run dir or sweep dir> html=true`` writes them (train.py writes the run's
own at its end, and a multirun the sweep's). One file each: the charts are Vega-Lite, whose
JavaScript (vl-convert's bundle of Vega, Vega-Lite and vega-embed) is inlined with the data and
every image, so the page opens by double-click with nothing fetched from any host.

Run page: status, final metrics, a chart per logged series of the CSV history (zoom with the wheel,
pan by dragging, hover for values; log scale and smoothing for all), the validation grids of every
epoch on a slider, the final grid, trajectory and figures, evaluate.py's scores of the run, the
checkpoints, and the composed config with the keys the command line set highlighted (Hydra's saved
overrides and group choices). Sweep page: a sortable table of the jobs (settings that differ, final
metrics), the best job by the objective's direction (the metric catalogue's), every job's curves on
one chart with a toggle per job, each differing setting against the objective, Optuna's best, links
to the jobs' pages. What a run lacks (a crashed run, a half-written CSV) is said, not fatal.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import vl_convert
from PIL import Image

from ddpm_lit.catalogue import CAPTIONS, figure_order, find
from ddpm_lit.errors import DataError, UserError, first_line
from ddpm_lit.io import write_text
from ddpm_lit.reporting.figures import metric_by_step
from ddpm_lit.reporting.tables import RUN_COLUMNS, optuna_best_note
from ddpm_lit.runs import PAGE, Run, Sweep, differing_settings, flatten
from ddpm_lit.training.checkpointing import read_checkpoint

log = logging.getLogger(__name__)

MAX_POINTS = 1500  # per series; longer ones are averaged in buckets
MAX_SCATTER = 12  # settings drawn against the objective on a sweep page
GRID_BYTES = 2_500_000  # the epoch grids of one page; more epochs are thinned evenly to fit
# Tableau 10, the jobs' colours on the sweep page (legend swatches and chart lines alike).
PALETTE = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
           "#bab0ac"]


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


def config_rows(run: Run, config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The composed config (``.hydra/config.yaml``, else ``config``: a plain dict, interpolations
    as written) as rows: key, value, and the command-line override that set it (``Run.set_by``)."""
    flat = flatten(run.config() or config or {})
    marked = run.set_by(flat)
    return [{"key": k, "value": json.dumps(v, default=str), "set_by": marked.get(k, "")} for k, v in flat.items()]


def checkpoints(run: Run) -> list[dict[str, Any]]:
    """Every checkpoint of the run with its size, epoch and step (or why it does not load)."""
    rows = []
    for found in run.checkpoints():
        row: dict[str, Any] = {"name": found.path.name, "size": f"{found.size / 1e6:.1f} MB", "saved": found.saved,
                               "epoch": None, "step": None, "problem": ""}
        try:
            checkpoint = read_checkpoint(found.path)
            row.update(epoch=checkpoint.get("epoch"), step=checkpoint.get("global_step"))
        except DataError as err:
            row["problem"] = str(err)
        rows.append(row)
    return rows


def evaluations(run: Run) -> list[dict[str, Any]]:
    """evaluate.py's runs that scored a checkpoint or samples file of ``run`` (``Run.evaluations``):
    their metrics and figures."""
    return [{"name": found.name, "path": str(found.path),
             "metrics": {k: v for k, v in flatten(found.metrics()).items() if isinstance(v, (int, float, str))},
             "pictures": pictures_of(sorted(found.path.glob("*.png")))} for found in run.evaluations()]


def pictures_of(paths: list[Path]) -> list[Picture]:
    """The PNGs that decode, captioned (the figure catalogue's captions, else the file's stem)."""
    return [Picture(CAPTIONS.get(p.stem, p.stem), uri, p.name) for p in paths if (uri := image_uri(p)) is not None]


def epoch_grids(run: Run, budget: int = GRID_BYTES) -> tuple[list[dict[str, Any]], int]:
    """The validation grids ``samples/epoch_NNN.png`` as [{epoch, uri}], thinned evenly (first and
    last kept) to about ``budget`` bytes of data URIs, and how many there were. The first grid that
    decodes, drawn by the least trained network, is the noisiest and largest: its size sets how many fit."""
    grids = run.epoch_grids()
    total = len(grids)
    encoded: dict[Path, str | None] = {}  # each grid encoded once
    for _, path in grids:  # up to the first that decodes
        encoded[path] = image_uri(path)
        if encoded[path] is not None:
            break
    first = next((uri for uri in encoded.values() if uri is not None), None)
    keep = max(2, budget // len(first)) if first is not None else 0
    if keep < total:
        step = (total - 1) / max(1, keep - 1)
        grids = [grids[round(i * step)] for i in range(keep)] if keep else []
    shown = []
    for epoch, path in grids:
        uri = encoded[path] if path in encoded else image_uri(path)
        if uri is not None:
            shown.append({"epoch": epoch, "uri": uri})
    return shown, total


def run_page_data(run: Run, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the run page shows, and notes on what the run lacks."""
    missing = []
    metrics = run.metrics()
    history, skipped = run.read_history()
    if not history:
        missing.append("no CSV history (csv/version_*/metrics.csv): no charts")
    if skipped:
        missing.append(f"{skipped} row(s) of the CSV history unreadable (a write cut short) and left out")
    grids, total_grids = epoch_grids(run)
    if not total_grids:
        missing.append("no validation sample grids (samples/epoch_*.png) yet")
    final = image_uri(run.final_grid) if run.final_grid.is_file() else None
    if final is None:
        missing.append("no final samples (samples/final.png)")
    figures = pictures_of(sorted(run.figures(), key=lambda p: figure_order(p.stem)))
    if not figures:
        missing.append("no figures (figures/*.png)")
    ckpts = checkpoints(run)
    if not ckpts:
        missing.append("no checkpoint (checkpoints/*.ckpt)")
    rows = config_rows(run, config)
    if not rows:
        missing.append("no readable config (.hydra/config.yaml)")
    finished = bool(metrics)
    return {
        "title": run.title,
        "path": str(run.path.resolve()),
        "finished": finished,
        "status": "finished" if finished else "not finished: no metrics.json (still running, or stopped before its end)",
        "log_tail": "" if finished else run.log_tail(),
        "metrics": {k: v for k, v in sorted(metrics.items())},
        "charts": run_charts(history),
        "grids": grids, "total_grids": total_grids,
        "final": final,
        "figures": figures,
        "evaluations": evaluations(run),
        "checkpoints": ckpts,
        "config": rows, "overrides": run.overrides(),
        "choices": [f"{group}={option}" for group, option in run.group_choices().items()],
        "missing": missing,
    }


# ---------------------------------------------------------------------------------------------------------------
# Reading a sweep


def objective_of(configs: list[dict[str, Any]]) -> str:
    """The metric the sweep optimised (its ``optimized_metric``), else val/loss."""
    named = {c.get("optimized_metric") for c in configs} - {None}
    return str(next(iter(named))) if len(named) == 1 else "val/loss"


def best_job(jobs: list[dict[str, Any]], objective: str) -> str | None:
    """The job whose objective is best by the catalogue's direction of ``objective`` (lower or
    higher); None for a metric without a direction or the catalogue's entry, or without values."""
    metric = find(objective)
    return metric.best({j["name"]: j["objective"] for j in jobs}) if metric is not None else None


def _axis_value(value: Any) -> float | str:
    """A setting as a chart's x: numbers as numbers, strings as they are, anything else as JSON."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value) is not None:
        return value
    return value if isinstance(value, str) else json.dumps(value, default=str)


def smoothed(key: str, index: str, series: list[dict[str, Any]]) -> bool:
    """Smoothing is for noisy per-step series of more than 20 points; a learning rate
    (LearningRateMonitor's lr-*) is a schedule."""
    return index == "step" and not key.startswith("lr-") and max(len(s["x"]) for s in series) > 20


def _job(n: int, run: Run, sweep: Sweep, config: dict[str, Any], differ: list[str], objective: str) -> dict[str, Any]:
    """A row of the jobs table: the job's settings that differ and its final metrics (``RUN_COLUMNS``)."""
    metrics = run.metrics()
    return {
        "name": str(run.path.relative_to(sweep.path)), "color": PALETTE[n % len(PALETTE)], "finished": bool(metrics),
        "link": str(run.page.relative_to(sweep.path)) if run.page.is_file() else "",
        "settings": [json.dumps(config.get(k), default=str) if k in config else "–" for k in differ],
        "setting_values": {k: config.get(k) for k in differ},
        "metrics": [m.show(metrics[m.key]) if isinstance(metrics.get(m.key), (int, float)) else "–" for m in RUN_COLUMNS],
        "objective": _finite(metrics[objective]) if isinstance(metrics.get(objective), (int, float)) else None,
    }


def sweep_charts(histories: list[tuple[str, list[dict[str, float]]]]) -> list[Chart]:
    """A chart per logged series, a line per job that logged it."""
    keys = sorted({k for _, h in histories for row in h for k in row} - {"epoch", "step"}, key=_chart_order)
    charts = []
    for key in keys:
        logging_jobs = [(name, h) for name, h in histories if any(key in row for row in h)]
        # per epoch only when every job logged it once an epoch: one x axis for all jobs' lines
        index = "epoch" if all(index_of(h, key) == "epoch" for _, h in logging_jobs) else "step"
        series = [chart_series(name, *metric_by_step(h, key, index=index))[0] for name, h in logging_jobs]
        charts.append(Chart(id=f"chart-{len(charts)}", title=key, x=index, series=series,
                            smooth=smoothed(key, index, series)))
    return charts


def sweep_page_data(sweep: Sweep) -> dict[str, Any]:
    runs = sweep.runs()
    differ, configs = differing_settings(runs)
    objective = objective_of(configs)
    jobs = [_job(n, run, sweep, config, differ, objective) for n, (run, config) in enumerate(zip(runs, configs))]
    charts = sweep_charts([(job["name"], run.history()) for job, run in zip(jobs, runs)])
    scatter = [{"id": f"scatter-{n}", "setting": key,
                "points": [{"job": j["name"], "value": _axis_value(j["setting_values"].get(key)),
                            "objective": j["objective"]} for j in jobs if j["objective"] is not None]}
               for n, key in enumerate(differ[:MAX_SCATTER])]
    metric = find(objective)
    optuna = sweep.optuna_best()
    return {
        "title": sweep.name, "path": str(sweep.path.resolve()),
        "jobs": jobs, "differ": differ, "columns": [m.label() for m in RUN_COLUMNS],
        "objective": objective, "objective_column": objective not in {m.key for m in RUN_COLUMNS},
        "better": metric.better if metric is not None else None, "best": best_job(jobs, objective),
        "charts": charts, "scatter": scatter,
        "settings_left_out": max(0, len(differ) - MAX_SCATTER),
        "optuna": optuna, "optuna_note": optuna_best_note(optuna) if optuna else "",
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
    env.filters["better"] = better
    return env


def better(key: str) -> str:
    """Which way the metric of ``key`` (``val/classifier_fid``, or an evaluation's ``samples.fid``) is better,
    in words from the metric catalogue; "" for one without a direction."""
    metric = find(key) or find(key.rsplit(".", 1)[-1])
    return f"{metric.better} is better" if metric is not None and metric.better else ""


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


def write_run_page(run: str | Path, config: dict[str, Any] | None = None) -> Path:
    """``<run>/page.html``. ``config``: the run's composed config as a plain dict, for a run dir
    without ``.hydra`` (``train(cfg)`` called from Python); NotARunError for a folder that holds nothing of a run."""
    run = Run(run)
    if not run.looks_like_run() and config is None:
        raise NotARunError(f"{run.path} is not a run dir (no .hydra/config.yaml, metrics.json, csv/ or checkpoints/)")
    return write_text(run.page, render("run", run_page_data(run, config)))


def write_sweep_page(sweep: str | Path) -> Path:
    """``<sweep>/page.html`` and the page of every job that has none yet (a job whose page
    fails is logged and left without one; the sweep's page is still written)."""
    sweep = Sweep(sweep)
    jobs = sweep.runs()
    if not jobs:
        raise NotARunError(f"{sweep.path} holds no run dirs (folders with .hydra/config.yaml)")
    for job in jobs:
        if not job.page.is_file():
            write_page_quietly(job.path)
    return write_text(sweep.page, render("sweep", sweep_page_data(sweep)))


def write_page_quietly(run: str | Path, config: dict[str, Any] | None = None) -> Path | None:
    """``write_run_page``, logging instead of raising: the page must not end a run that trained."""
    try:
        path = write_run_page(run, config)
    except Exception as err:  # noqa: BLE001 - a page is a view; the run's files are what count
        log.warning("no %s written for %s: %s", PAGE, run, err)
        return None
    log.info("run page: %s", path)
    return path


def write_page(path: str | Path) -> Path:
    """The run page of a run dir, the sweep page of a folder holding runs."""
    path = Path(path)
    if not path.is_dir():
        raise NotARunError(f"{path} is not a folder")
    return write_run_page(path) if Run(path).looks_like_run() else write_sweep_page(path)
