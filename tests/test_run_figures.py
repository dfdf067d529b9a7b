"""The study's figures of a run: written at the end of training, logged to W&B, and redrawn by one command."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import TINY, run_command, wandb_file_with
from PIL import Image

from ddpm_lit.reporting.run_figures import FIGURES
from ddpm_lit.runs import Run


def test_training_writes_and_logs_the_figures_and_the_command_redraws_them(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    proc = run_command("train.py", [*TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=3",
                                    "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "final_samples.steps=null",
                                    "data.check_md5=false", f"paths.data_dir={synthetic_mnist_dir}",
                                    f"paths.log_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "train" / "runs").iterdir()
    run = Run(run_dir)  # what Hydra saved of the command line: the choices and overrides, and the keys they set
    assert run.choices()["trainer"] == "cpu" and run.choices()["schedule"] == "linear" and "trainer=cpu" in run.overrides()
    assert run.set_by(["trainer.max_epochs", "trainer.accelerator", "seed"]) == {
        "trainer.max_epochs": "trainer.max_epochs=2", "trainer.accelerator": "trainer=cpu"}
    figures = run_dir / "figures"
    assert sorted(p.stem for p in figures.glob("*.png")) == sorted(FIGURES)
    for png in figures.glob("*.png"):
        w, h = Image.open(png).size
        assert w > 300 and h > 200, png

    # The trajectory of the final samples: x_T, then every T/10 = 10 steps of the full chain, down to x_0.
    trajectory = torch.load(run_dir / "samples" / "trajectory.pt", weights_only=True)
    assert trajectory["timesteps"] == list(range(100, -1, -10))
    assert trajectory["frames"].shape == (11, 8, 1, 28, 28)
    assert (run_dir / "samples" / "final.npz").is_file() and (run_dir / "samples" / "final.png").is_file()

    (wandb_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    logged = wandb_file_with(wandb_file, *(f"figures/{name}".encode() for name in FIGURES))
    for name in FIGURES:
        assert f"figures/{name}".encode() in logged, name  # one W&B image per figure

    # One command regenerates them from the run dir; redraw=true draws new samples from the checkpoint.
    before = {p.name: p.stat().st_mtime_ns for p in figures.glob("*.png")}
    npz_before = (run_dir / "samples" / "final.npz").read_bytes()
    proc = run_command("ddpm_lit.run_figures", [f"run_dir={run_dir}", "redraw=true", "num_samples=6", "seed=1",
                                                "device=cpu"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sampling" in proc.stderr  # the progress bar of the redraw
    after = {p.name: p.stat().st_mtime_ns for p in figures.glob("*.png")}
    assert set(after) == set(before) and all(after[k] > before[k] for k in before)
    assert (run_dir / "samples" / "final.npz").read_bytes() != npz_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "train"]  # no run dir, .hydra/ or log of its own


def test_the_command_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    proc = run_command("ddpm_lit.run_figures", [f"run_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 2 and "not a run dir of train.py" in proc.stderr and "Traceback" not in proc.stderr
