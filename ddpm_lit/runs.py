"""Run dirs on disk, read and written in one place: ``Run`` (one run dir) and ``Sweep`` (a folder of runs).

A run dir of train.py holds (evaluate.py's and sample.py's hold some of the same)::

    .hydra/config.yaml, overrides.yaml, hydra.yaml   what Hydra composed the run from (Hydra writes them;
                                                     train(cfg) from Python the config alone)
    metrics.json                                     the final metrics (train.py and evaluate.py, at their end)
    csv/version_<n>/metrics.csv                      Lightning's CSVLogger history, one version a (re)start
    samples/epoch_<NNN>.png                          the validation grid of each epoch
    samples/final.png, final.npz, trajectory.pt      the final samples (run_figures' draw_final_samples)
    figures/<name>.png                               run_figures' figures (ddpm_lit.catalogue.FIGURES)
    checkpoints/*.ckpt                               Lightning's checkpoints
    wandb/[offline-]run-<time>-<id>/                 the W&B run
    sample.json                                      what sample.py drew (its run dirs)
    per_sample.csv                                   evaluate.py's values of each sample (its run dirs)
    page.html, *.log                               the run's page, Hydra's job log

Everything is read as plain dicts and lists (interpolations as written). A file that is missing
reads as {} / [] / None; one that is damaged or half-written (a kill, a full disk) too, with a
warning in the log: the pages and tables are views of runs that may have stopped at any instant.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ddpm_lit.errors import DataError, first_line
from ddpm_lit.io import write_text

log = logging.getLogger(__name__)

# What the last_checkpoint and on_exception ModelCheckpoints write; ``ckpt_path=last``
# continues from the newest of them, as Lightning's own "last" does.
RESUME_PATTERNS = ("last*.ckpt", "on_exception.ckpt")
# What Lightning saves in the run dir (its default_root_dir) when SLURM signals a job that is about
# to be stopped (SLURMEnvironment's auto-requeue, SIGUSR1): the requeued job continues from it too.
SLURM_REQUEUE_PATTERN = "hpc_ckpt_*.ckpt"
# Settings that name where a run wrote things or how it was started, not what it trained.
# (plan.measured: the start-up plan's timings, which differ between runs of the same settings)
IGNORED = ("paths.", "hydra.", "logger.", "ckpt_path", "tags", "task_name", "html_page", "plan.measured.")
PAGE = "page.html"


def read_yaml(path: Path) -> Any:
    """The YAML file at ``path`` as plain lists and dicts (interpolations as written); None when it
    is missing or does not parse (cut short by a kill, not YAML, not text)."""
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as err:  # noqa: BLE001 - OSError, UnicodeDecodeError, yaml's and OmegaConf's errors
        if path.exists():
            log.warning("%s does not parse: %s", path, first_line(err))
        return None


def read_json(path: Path) -> Any:
    """The JSON file at ``path``; None when it is missing or does not parse (a warning then)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:  # ValueError: JSONDecodeError, UnicodeDecodeError
        log.warning("%s does not parse: %s", path, first_line(err))
        return None


def newest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest ``last*.ckpt`` or ``on_exception.ckpt`` in ``checkpoint_dir``, or
    ``hpc_ckpt_<n>.ckpt`` in the run dir above it (None: none)."""
    found = [p for pattern in RESUME_PATTERNS for p in Path(checkpoint_dir).glob(pattern) if p.is_file()]
    found += [p for p in Path(checkpoint_dir).parent.glob(SLURM_REQUEUE_PATTERN) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def flatten(tree: Any, sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """A nested dict's leaves under joined keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (``sep`` ".")."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, sep, f"{prefix}{sep}{key}" if prefix else str(key)))
    return out


def _get(tree: Any, *keys: str) -> Any:
    """``tree[k1][k2]...``, None where a level is missing or not a dict."""
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint of a run as its folder lists it: path, size in bytes, modification time."""

    path: Path
    size: int
    mtime: float

    @property
    def saved(self) -> str:
        return datetime.fromtimestamp(self.mtime).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class Run:
    """A run dir (see the module docstring): ``Run(path)``; nothing is read until asked."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    # ---- where things are ------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def title(self) -> str:
        """``<parent>/<name>``: a sweep job's number or a run's time alone says little."""
        return f"{self.path.parent.name}/{self.path.name}"

    @property
    def config_file(self) -> Path:
        return self.path / ".hydra" / "config.yaml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def final_grid(self) -> Path:
        return self.samples_dir / "final.png"

    @property
    def final_samples(self) -> Path:
        return self.samples_dir / "final.npz"

    @property
    def trajectory(self) -> Path:
        return self.samples_dir / "trajectory.pt"

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    @property
    def page(self) -> Path:
        return self.path / PAGE

    def is_hydra_run(self) -> bool:
        """A run dir with its config: ``.hydra/config.yaml`` (``@hydra.main`` or ``train(cfg)`` wrote it)."""
        return self.config_file.is_file()

    def looks_like_run(self) -> bool:
        """A run dir: ``.hydra/config.yaml``, or ``metrics.json``, a CSV history or checkpoints (a
        run that stopped before writing its config, or one of an earlier version without it)."""
        return (self.is_hydra_run() or self.metrics_file.is_file() or (self.path / "csv").is_dir()
                or self.checkpoint_dir.is_dir())

    @classmethod
    def of_file(cls, path: str | Path) -> Run | None:
        """The run dir a checkpoint or samples file lies in (``<run>/checkpoints/last.ckpt``,
        ``<run>/samples/final.npz``, ``<run>/samples.npz``), None for a file elsewhere."""
        for above in list(Path(path).resolve().parents)[:2]:
            if cls(above).is_hydra_run():
                return cls(above)
        return None

    # ---- what it was composed from -----------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The composed config (``.hydra/config.yaml``, interpolations unresolved); {} without one."""
        config = read_yaml(self.config_file)
        return config if isinstance(config, dict) else {}

    def load_config(self) -> dict[str, Any]:
        """``config()``, or DataError for a folder that has none (not a run dir of train.py)."""
        config = self.config()
        if not config:
            raise DataError(f"{self.path} is not a run dir of train.py (no readable .hydra/config.yaml)")
        return config

    def write_config(self, config: dict[str, Any]) -> Path:
        """``.hydra/config.yaml`` as ``@hydra.main`` writes it (interpolations as given), for a run
        that ``train(cfg)`` started from Python: the figures and the page read a run's config here."""
        return write_text(self.config_file, OmegaConf.to_yaml(config))

    def flat_config(self) -> dict[str, Any]:
        """``config()`` under dotted keys (``model.optimizer.lr``)."""
        return flatten(self.config())

    def settings(self) -> dict[str, Any]:
        """The dotted keys of what the run trained: ``flat_config()`` less where it wrote and how it
        was started (``IGNORED``)."""
        return {k: v for k, v in self.flat_config().items() if not k.startswith(IGNORED)}

    def overrides(self) -> list[str]:
        """The command line's overrides (``.hydra/overrides.yaml``), in order."""
        overrides = read_yaml(self.path / ".hydra" / "overrides.yaml")
        return [str(o) for o in overrides] if isinstance(overrides, list) else []

    def hydra(self) -> dict[str, Any]:
        """Hydra's own config of the run (``.hydra/hydra.yaml``'s ``hydra`` node); {} without one."""
        hydra = _get(read_yaml(self.path / ".hydra" / "hydra.yaml"), "hydra")
        return hydra if isinstance(hydra, dict) else {}

    def choices(self) -> dict[str, Any]:
        """Each config group's option as Hydra chose it (``hydra.runtime.choices``: ``schedule:
        cosine``, ``experiment: quick``, ``hydra/launcher: basic``); the defaults and the command
        line's choices, and those an experiment's defaults made."""
        choices = _get(self.hydra(), "runtime", "choices")
        return {str(k): v for k, v in choices.items()} if isinstance(choices, dict) else {}

    def group_choices(self) -> dict[str, Any]:
        """``choices()`` of the run's own groups: not Hydra's (``hydra``, ``hydra/...``) and not left null."""
        return {g: o for g, o in self.choices().items() if g != "hydra" and not g.startswith("hydra/") and o is not None}

    def set_by(self, keys: Iterable[str]) -> dict[str, str]:
        """Of ``keys`` (dotted config keys), those a command-line override set, with the override.

        From the overrides and group choices Hydra saved: a group choice ``g=o`` (``g`` a group of
        ``hydra.runtime.choices``) sets the keys of the group's node ``g`` (``g/h``: ``g.h``); a
        plain override ``a.b=v`` (``+a.b=v``, ``~a.b``) sets ``a.b`` and the keys below it. A later
        override wins, as in Hydra. A group whose options place their keys at the root (an
        ``experiment``, ``@package _global_``) has no node: Hydra records its choice only."""
        choices, keys = self.choices(), list(keys)
        marked: dict[str, str] = {}
        for override in self.overrides():
            name = override.partition("=")[0].lstrip("+~")
            group = name.partition("@")[0]
            node = group.replace("/", ".") if group in choices else name
            for key in keys:
                if key == node or key.startswith(node + "."):
                    marked[key] = override
        return marked

    def cwd(self) -> Path | None:
        """The folder the run's command was started in (``hydra.runtime.cwd``), None when not recorded."""
        cwd = _get(self.hydra(), "runtime", "cwd")
        return Path(cwd) if isinstance(cwd, str) else None

    def last_started(self) -> float:
        """When the run was last started or resumed: the newest of its ``.hydra`` files, which
        Hydra writes as each start begins."""
        hydra = self.path / ".hydra"
        return max([p.stat().st_mtime for p in hydra.iterdir()] or [hydra.stat().st_mtime])

    # ---- what it wrote -------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """metrics.json; {} when the run has none (still going, or killed) or it does not parse."""
        metrics = read_json(self.metrics_file)
        return metrics if isinstance(metrics, dict) else {}

    def load_metrics(self) -> dict[str, Any]:
        """``metrics()``, or DataError when the run has none."""
        metrics = self.metrics()
        if not metrics:
            raise DataError(f"{self.metrics_file} is missing or unreadable: the run did not finish")
        return metrics

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        """metrics.json, keys sorted, in one step (``ddpm_lit.io.write_text``)."""
        return write_text(self.metrics_file, json.dumps(metrics, indent=2, sort_keys=True))

    def read_history(self) -> tuple[list[dict[str, float]], int]:
        """The rows of Lightning's CSVLogger, ``csv/version_<n>/metrics.csv``, in version order, and
        how many rows were left out because they did not parse (a write cut short by a kill).

        A resumed run writes ``version_1`` after ``version_0``; the versions are read in numeric
        order and concatenated. Each row keeps only its non-empty cells, as floats (a row holds
        e.g. ``step`` and ``train/loss``, or ``epoch``, ``step`` and ``val/loss``). [] without a csv folder.
        """
        csv_dir = self.path / "csv"
        if not csv_dir.is_dir():
            return [], 0
        versions = []
        for version_dir in csv_dir.iterdir():
            match = re.fullmatch(r"version_(\d+)", version_dir.name)
            if match and (version_dir / "metrics.csv").is_file():
                versions.append((int(match.group(1)), version_dir / "metrics.csv"))
        history: list[dict[str, float]] = []
        skipped = 0
        for _, metrics in sorted(versions):
            with metrics.open(newline="", errors="replace") as f:
                try:
                    for row in csv.DictReader(f):
                        try:
                            history.append({key: float(value) for key, value in row.items()
                                            if key and isinstance(value, str) and value != ""})
                        except ValueError:
                            skipped += 1
                except csv.Error:  # e.g. a NUL byte where the kill left the file: the rest is unreadable
                    skipped += 1
        if skipped:
            log.warning("%s: %d row(s) of the CSV history do not parse and are left out", self.path, skipped)
        return history, skipped

    def history(self) -> list[dict[str, float]]:
        """``read_history()``'s rows."""
        return self.read_history()[0]

    def epoch_grids(self) -> list[tuple[int, Path]]:
        """The validation grids ``samples/epoch_<NNN>.png`` as (epoch, path), by epoch."""
        grids = [(int(p.stem.removeprefix("epoch_")), p) for p in self.samples_dir.glob("epoch_*.png")
                 if re.fullmatch(r"epoch_\d+", p.stem)]
        return sorted(grids)

    def figures(self) -> list[Path]:
        """The PNGs in ``figures/``, by name."""
        return sorted(self.figures_dir.glob("*.png"))

    def checkpoints(self) -> list[CheckpointFile]:
        """Every ``checkpoints/*.ckpt``, by name, with its size and time (one the live run replaced
        since it was listed is left out)."""
        found = []
        for path in sorted(self.checkpoint_dir.glob("*.ckpt")):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            found.append(CheckpointFile(path, stat.st_size, stat.st_mtime))
        return found

    def newest_checkpoint(self) -> Path | None:
        """The checkpoint a resume continues from: the newest ``last*.ckpt`` or ``on_exception.ckpt``."""
        return newest_checkpoint(self.checkpoint_dir)

    def wandb_run_id(self) -> str | None:
        """The id of the newest W&B run under ``wandb/`` (folders ``[offline-]run-<time>-<id>``)."""
        runs = [p for p in (self.path / "wandb").glob("*run-*-*") if p.is_dir()]
        return max(runs, key=lambda p: p.stat().st_mtime).name.rsplit("-", 1)[1] if runs else None

    def sample_record(self) -> dict[str, Any]:
        """What sample.py drew (its ``sample.json``); {} without one."""
        record = read_json(self.path / "sample.json")
        return record if isinstance(record, dict) else {}

    def write_sample_record(self, record: dict[str, Any]) -> Path:
        return write_text(self.path / "sample.json", json.dumps(record, indent=2))

    @property
    def per_sample_file(self) -> Path:
        return self.path / "per_sample.csv"

    def write_per_sample(self, columns: dict[str, Any]) -> Path:
        """per_sample.csv: a row per image (``index`` first), a column per name of ``columns``
        (sequences or 1-d tensors of one length); floats to 6 significant digits."""
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"per-sample columns of different lengths: {lengths}")
        names = list(columns)
        values = [v.tolist() if hasattr(v, "tolist") else list(v) for v in columns.values()]
        lines = [",".join(["index", *names])]
        for i, row in enumerate(zip(*values)):
            lines.append(",".join([str(i)] + [f"{v:.6g}" if isinstance(v, float) else str(v) for v in row]))
        return write_text(self.per_sample_file, "\n".join(lines) + "\n")

    def per_sample(self) -> list[dict[str, float]]:
        """per_sample.csv's rows as {column: float}; [] without one (or one that does not parse)."""
        try:
            with self.per_sample_file.open(newline="") as f:
                return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        except (OSError, ValueError, TypeError, csv.Error) as err:
            if self.per_sample_file.exists():
                log.warning("%s does not parse (%s): left out", self.per_sample_file, first_line(err))
            return []

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the run's newest ``*.log`` ("" without one)."""
        logs = sorted(self.path.glob("*.log"))
        if not logs:
            return ""
        try:
            return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ---- evaluations -------------------------------------------------------------------------
    def scored_files(self) -> list[Path]:
        """For a run dir of evaluate.py: the checkpoint or samples file it scored (its ``ckpt_path``
        or ``samples_path``, relative ones against the folder it was started in); [] for another."""
        config, cwd = self.config(), self.cwd()
        if not config or cwd is None:  # not evaluate.py's, or half-written
            return []
        found = []
        for key in ("ckpt_path", "samples_path"):
            value = config.get(key)
            if isinstance(value, str) and value:
                found.append((Path(value) if Path(value).is_absolute() else cwd / value).resolve())
        return found

    def evaluations(self) -> list[Run]:
        """evaluate.py's run dirs that scored a checkpoint or samples file of this run, looked for
        in an ``evaluate`` folder beside the run's task folder (``outputs/evaluate`` beside
        ``outputs/train/runs/<run>``)."""
        here = self.path.resolve()
        found = []
        for above in list(here.parents)[:4]:
            if not (above / "evaluate").is_dir():
                continue
            for config_file in sorted((above / "evaluate").rglob(".hydra/config.yaml")):
                candidate = Run(config_file.parent.parent)
                if any(path.is_relative_to(here) for path in candidate.scored_files()):
                    found.append(candidate)
        return found


@dataclass(frozen=True)
class Sweep:
    """A folder of runs: a multirun's sweep dir, a ``runs`` folder, ``outputs/``."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def page(self) -> Path:
        return self.path / PAGE

    def runs(self, finished_only: bool = False) -> list[Run]:
        """The run dirs below the folder (finished or not), sweep jobs in numeric order."""
        return [r for r in find_runs([self.path], finished_only=finished_only) if r.path != self.path]

    def optuna_best(self) -> dict[str, Any] | None:
        """Optuna's ``optimization_results.yaml`` (best_params, best_value), None without one."""
        result = read_yaml(self.path / "optimization_results.yaml")
        # a multi-objective study writes `solutions` instead: no single best to show
        return result if isinstance(result, dict) and "best_value" in result else None

    def run_to_resume(self, ckpt_path: str | None) -> Run | None:
        """The run that ``ckpt_path`` continues, so that a resumed run writes where it began.

        ``last``: the run in this folder started (or resumed) most recently, by its ``.hydra``
        files; it continues from its newest checkpoint, or starts afresh in its own dir when it
        was stopped before writing one (so a run killed during start-up is not mistaken for an
        older run that has checkpoints). A path ``<run>/checkpoints/<name>.ckpt`` of a Hydra run:
        ``<run>``. Otherwise None (a checkpoint from elsewhere starts a new run dir).
        """
        if ckpt_path is None:
            return None
        if str(ckpt_path) == "last":
            runs = [Run(p) for p in self.path.glob("*") if (p / ".hydra").is_dir()]
            return max(runs, key=Run.last_started) if runs else None
        path = Path(ckpt_path).absolute()
        if path.parent.name == "checkpoints" and (path.parent.parent / ".hydra").is_dir():
            return Run(path.parent.parent)
        return None


def find_runs(paths: Iterable[str | Path], finished_only: bool = True) -> list[Run]:
    """The run dirs at or below ``paths``, sweep jobs in numeric order: a folder below with
    ``.hydra/config.yaml`` (and ``metrics.json`` when ``finished_only``); a given path itself
    counts with ``metrics.json`` alone (a folder that holds no config of its own)."""
    found = set()
    for path in map(Path, paths):
        if (path / "metrics.json").is_file():
            found.add(path)
        found.update(p.parent.parent for p in path.rglob(".hydra/config.yaml")
                     if not finished_only or (p.parent.parent / "metrics.json").is_file())
    return [Run(p) for p in sorted(found, key=_run_order)]


def _run_order(run: Path) -> tuple[str, int, str]:
    """Sweep jobs (folders 0, 1, …, 10) in numeric order."""
    return (str(run.parent), int(run.name) if run.name.isdigit() else -1, run.name)


def differing_settings(runs: list[Run]) -> tuple[list[str], list[dict[str, Any]]]:
    """The settings (``Run.settings``) whose values differ between ``runs`` (sorted) and every run's settings."""
    configs = [run.settings() for run in runs]
    keys = sorted({k for c in configs for k in c})
    missing = object()
    differ = [k for k in keys if len({json.dumps(c.get(k, missing), default=str) for c in configs}) > 1]
    return differ, configs
