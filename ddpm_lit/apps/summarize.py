"""Collect finished runs into a markdown table and comparison plots:
``python -m ddpm_lit.summarize dirs=DIR`` or ``dirs=[DIR,DIR]`` (conf/summarize.yaml); with ``html=true``,
a self-contained page of a run or a sweep (reporting.pages).

Each DIR is a run dir or any folder above run dirs (a sweep, ``outputs/``); every run below
it that wrote ``metrics.json`` becomes a row. The table shows the settings in which the runs
differ (from each run's ``.hydra/config.yaml``) and their final metrics; the plots show
loss and val/classifier_fid per epoch, a line per run (from each run's CSV history). With one DIR,
``runs.md``, ``runs_loss.png`` and ``runs_val_classifier_fid.png`` are written into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from ddpm_lit.config.schema import flag, plain
from ddpm_lit.errors import ConfigError, UserError
from ddpm_lit.io import write_text
from ddpm_lit.reporting.pages import write_page
from ddpm_lit.reporting.summary import comparison_plots, markdown
from ddpm_lit.reporting.tables import runs_table
from ddpm_lit.runs import find_runs


@dataclass(frozen=True)
class SummarizeSettings:
    """conf/summarize.yaml, checked."""

    dirs: tuple[Path, ...]
    html: bool

    @classmethod
    def parse(cls, cfg: DictConfig) -> SummarizeSettings:
        dirs = plain(cfg.get("dirs"))
        dirs = dirs if isinstance(dirs, list) else [] if dirs is None else [dirs]
        if not dirs or not all(isinstance(d, str) and d for d in dirs):
            raise ConfigError(f"give the folders to summarize: dirs=<run or sweep dir> or dirs=[<dir>,<dir>], got {dirs!r}")
        return cls(dirs=tuple(Path(d) for d in dirs), html=flag(cfg, "html"))


def summarize(cfg: DictConfig) -> None:
    """``python -m ddpm_lit.summarize``: the config checked at the door, then ``write_summary``."""
    write_summary(SummarizeSettings.parse(cfg))


def write_summary(s: SummarizeSettings) -> None:
    """The pages (``html``), or the table: written with its plots into a single folder, printed for several."""
    if s.html:
        for path in s.dirs:
            print(f"written: {write_page(path)}")
        return
    runs = find_runs(list(s.dirs))
    if not runs:
        raise UserError(f"no run with metrics.json under {', '.join(map(str, s.dirs))}")
    if len(s.dirs) == 1 and s.dirs[0].is_dir():
        out_dir = s.dirs[0]
        plots = comparison_plots(runs, out_dir)
        write_text(out_dir / "runs.md", markdown(runs, plots, out_dir))
        print(markdown(runs, plots, out_dir), end="")
        print(f"written: {out_dir / 'runs.md'}, " + ", ".join(str(p) for p in plots))
    else:
        print(runs_table(runs))
