"""Collect finished runs into a markdown table and comparison plots:
``python -m ddpm_lit.report DIR [DIR ...]``; with ``--html``, a self-contained page of a run or a
sweep (ddpm_lit.reporting.pages).

Each DIR is a run dir or any folder above run dirs (a sweep, ``outputs/``); every run below
it that wrote ``metrics.json`` becomes a row. The table shows the settings in which the runs
differ (from each run's ``.hydra/config.yaml``) and their final metrics; the plots show
loss and val/fid per epoch, a line per run (from each run's CSV history). With one DIR,
``report.md``, ``report_loss.png`` and ``report_val_fid.png`` are written into it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ddpm_lit.errors import exit_on_user_error
from ddpm_lit.io import write_text
from ddpm_lit.reporting.pages import write_page
from ddpm_lit.reporting.summary import comparison_plots, markdown
from ddpm_lit.reporting.tables import runs_table
from ddpm_lit.runs import find_runs


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
        print(runs_table(runs))


if __name__ == "__main__":
    main()
