"""python -m ddpm_lit.summarize: settings that differ, final metrics, per-epoch curves of each run."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import run_command

from ddpm_lit.reporting.figures import by_epoch
from ddpm_lit.reporting.tables import runs_table
from ddpm_lit.runs import Run, differing_settings, find_runs


def fake_run(path: Path, config: dict, metrics: dict, history: list[str]) -> Path:
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "metrics.json").write_text(json.dumps(metrics))
    for version, rows in enumerate(history):
        (path / "csv" / f"version_{version}").mkdir(parents=True)
        (path / "csv" / f"version_{version}" / "metrics.csv").write_text(rows)
    return path


def config(lr: float, out: str) -> dict:
    return {"seed": 42, "model": {"optimizer": {"lr": lr}, "net": {"base_channels": 32}}, "schedule": "${x}",
            "paths": {"output_dir": out}, "ckpt_path": None, "hydra_free": 1}


CSV = "epoch,step,train/loss_epoch,val/loss,val/classifier_fid\n0,9,0.5,0.4,30.0\n1,19,0.3,0.25,20.0\n"
# a run resumed during epoch 1: version_1 logs epoch 1 again, and the last row of an epoch counts
RESUMED = ["epoch,step,train/loss_epoch,val/loss\n0,9,0.6,0.5,\n1,12,0.9,0.9\n", "epoch,step,train/loss_epoch,val/loss\n1,19,0.35,0.3\n"]


def test_table_shows_only_what_differs_and_the_final_metrics(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for num in (10, 2):  # numeric order: 2 before 10
        fake_run(sweep / str(num), config(1e-3 * num, str(sweep / str(num))), {"val/loss": 0.1 * num, "val/classifier_fid": num}, [CSV])
    runs = find_runs([sweep])
    assert [r.name for r in runs] == ["2", "10"]
    differ, _ = differing_settings(runs)
    assert differ == ["model.optimizer.lr"]  # paths and ckpt_path are where, not what; equal settings are left out
    lines = runs_table(runs).splitlines()
    assert lines[0].startswith("| run | model.optimizer.lr | params (M) |")
    assert lines[2].startswith("| 2 | 0.002 |") and "| 0.2000 |" in lines[2] and "| 2.00 |" in lines[2]
    assert lines[3].startswith("| 10 | 0.01 |") and "| 1.0000 |" in lines[3]


def test_curves_keep_the_last_row_of_each_epoch_across_versions(tmp_path: Path) -> None:
    run = Run(fake_run(tmp_path / "run", config(1e-3, "x"), {"val/loss": 0.3}, RESUMED))
    assert by_epoch(run.history(), "val/loss") == ([0, 1], [0.5, 0.3])
    assert by_epoch(run.history(), "val/classifier_fid") == ([], [])


def test_the_command_writes_the_table_and_plots(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fake_run(sweep / "0", config(1e-3, "a"), {"val/loss": 0.25, "val/classifier_fid": 20.0}, [CSV])
    fake_run(sweep / "1", config(2e-3, "b"), {"val/loss": 0.3}, RESUMED)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = run_command("ddpm_lit.summarize", [f"dirs={sweep}"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    text = (sweep / "runs.md").read_text()
    assert "![runs_loss](runs_loss.png)" in text and "![runs_val_classifier_fid](runs_val_classifier_fid.png)" in text
    assert (sweep / "runs_loss.png").stat().st_size > 10_000 and (sweep / "runs_val_classifier_fid.png").is_file()
    assert "| 1 | 0.002 |" in proc.stdout
    # Hydra left nothing of its own, neither where the command ran nor in the folder it read
    assert list(cwd.iterdir()) == [] and not (sweep / ".hydra").exists() and not list(sweep.glob("*.log"))

    # several folders: one table of all their runs, printed and written nowhere
    fake_run(tmp_path / "other" / "2", config(3e-3, "c"), {"val/loss": 0.2}, [CSV])
    (sweep / "runs.md").unlink()
    proc = run_command("ddpm_lit.summarize", [f"dirs=[{sweep},{tmp_path / 'other'}]"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert sorted(line.split("|")[1].strip() for line in proc.stdout.splitlines()[2:]) == ["0", "1", "2"], proc.stdout
    assert not (sweep / "runs.md").exists()

    proc = run_command("ddpm_lit.summarize", [f"dirs={tmp_path / 'empty'}"], cwd=cwd)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no run with metrics.json under ") and proc.stderr.count("\n") == 1
