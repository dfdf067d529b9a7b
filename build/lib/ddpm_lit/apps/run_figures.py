"""The report's figures of one training run: ``python -m ddpm_lit.apps.run_figures <run dir>``.

Writes ``<run dir>/figures/``:
  loss_curves.png          train/loss per step and val/loss per epoch (report Fig. 4.1)
  trajectory.png           8 samples along the reverse chain, every T/10 steps (Fig. 4.5)
  ssim_histogram.png       per-sample SSIM against test images, beside real test images (Fig. 4.6)
  forward_process.png      one test digit noised to several t, linear and cosine (Figs. 1.1–1.5)
  schedules.png            ᾱ_t and the signal-to-noise ratio of both schedules
  two_mode_diffusion.png   a 1-D two-mode density diffusing to N(0, 1) under the run's schedule (Fig. 1.6)

The samples come from ``samples/final.npz`` and ``samples/trajectory.pt``, which training
writes at its end; when they are missing (or with ``--redraw``) they are drawn from the run's
newest checkpoint and saved there. train.py calls ``run_figures`` after fitting and logs the
figures to W&B.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ddpm_lit.errors import exit_on_user_error
from ddpm_lit.reporting.run_figures import run_figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--ckpt", type=Path, default=None, help="checkpoint to draw from (default: the run's newest)")
    parser.add_argument("--num-samples", type=int, default=64, help="samples for the SSIM histogram (default 64)")
    parser.add_argument("--steps", type=int, default=None, help="respaced reverse steps (default: all T)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redraw", action="store_true", help="draw new samples even if the run saved some")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font notes are not for the user
    if args.num_samples < 2:
        parser.error("--num-samples must be ≥ 2")
    exit_on_user_error(
        lambda: run_figures(args.run_dir, ckpt_path=args.ckpt, num_samples=args.num_samples, steps=args.steps,
                            seed=args.seed, redraw=args.redraw, device=args.device)
    )


if __name__ == "__main__":
    main()
