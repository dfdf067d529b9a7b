"""ddpm_lit.runs: a run dir (``Run``) and a folder of runs (``Sweep``) read from their files; a damaged
file reads as nothing, with a warning, and never raises."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from ddpm_lit.catalogue import figures_of
from ddpm_lit.errors import DataError
from ddpm_lit.runs import Run, Sweep, find_runs


def test_a_run_reads_what_train_wrote(tiny_run: Path, tmp_path: Path) -> None:
    run = Run(tiny_run)
    assert run.metrics() == json.loads((tiny_run / "metrics.json").read_text()) and "val/loss" in run.metrics()
    history, skipped = run.read_history()
    assert skipped == 0 and any("train/loss_epoch" in row for row in history) and any("val/loss" in row for row in history)
    assert [epoch for epoch, _ in run.epoch_grids()] == [0]
    assert run.final_grid.is_file() and run.final_samples.is_file() and run.trajectory.is_file()
    assert sorted(p.stem for p in run.figures()) == sorted(figures_of("run_figures"))
    checkpoints = run.checkpoints()
    assert "last.ckpt" in [c.path.name for c in checkpoints]
    assert all(c.size == c.path.stat().st_size > 0 for c in checkpoints)
    assert run.newest_checkpoint().name.startswith("last") and run.page.is_file()
    # train(cfg) called from Python keeps its config as @hydra.main would, but Hydra's overrides and choices are not there
    assert run.looks_like_run() and run.load_config()["model"]["_target_"] == "ddpm_lit.training.module.DDPMModule"
    assert "hydra" not in run.config() and run.overrides() == [] and run.choices() == {} and run.cwd() is None
    with pytest.raises(DataError, match="not a run dir of train.py"):
        Run(tmp_path).load_config()


def test_metrics_written_are_read_back(tmp_path: Path) -> None:
    run = Run(tmp_path / "run")
    run.write_metrics({"val/loss": 0.25, "epochs": 2, "b": [1, 2]})
    assert run.metrics_file.read_text() == json.dumps({"b": [1, 2], "epochs": 2, "val/loss": 0.25}, indent=2)
    assert run.metrics() == {"val/loss": 0.25, "epochs": 2, "b": [1, 2]} == run.load_metrics()
    assert not list(run.path.glob(".*.part"))  # written in one step


DAMAGED = {
    "metrics.json": b'{"val/loss": 0.',  # cut short by a kill
    ".hydra/config.yaml": b"model:\n  net: [",
    ".hydra/overrides.yaml": b"- a\n  b: [",
    ".hydra/hydra.yaml": b"\xff\xfe\x00garbage",
    "sample.json": b"\x00\x00",
    "optimization_results.yaml": b"best_value: [",
}


def test_damaged_files_read_as_nothing_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name, content in DAMAGED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    run = Run(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ddpm_lit.runs"):
        assert run.metrics() == {} and run.config() == {} and run.overrides() == [] and run.choices() == {}
        assert run.sample_record() == {} and run.set_by(["seed"]) == {} and Sweep(tmp_path).optuna_best() is None
    warned = " ".join(record.getMessage() for record in caplog.records)
    for name in DAMAGED:
        assert f"{tmp_path / name} does not parse" in warned, name
    with pytest.raises(DataError, match="metrics.json is missing or unreadable"):
        run.load_metrics()


def test_files_of_the_wrong_shape_read_as_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Valid JSON or YAML that is not what the run writes (a list, a number) is no record either."""
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "metrics.json").write_text("[1, 2]")
    (tmp_path / ".hydra" / "config.yaml").write_text("- a\n- b\n")
    (tmp_path / ".hydra" / "overrides.yaml").write_text("seed: 3\n")
    (tmp_path / ".hydra" / "hydra.yaml").write_text("hydra:\n  runtime:\n    choices: [a, b]\n    cwd: 3\n")
    run = Run(tmp_path)
    assert run.metrics() == {} and run.config() == {} and run.overrides() == [] and run.choices() == {}
    assert run.cwd() is None and run.scored_files() == []
    assert Run(tmp_path / "missing").metrics() == {} and not caplog.records  # missing is not damaged: no warning


def test_the_run_a_file_lies_in(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert Run.of_file(run / "checkpoints" / "last.ckpt") == Run(run.resolve())
    assert Run.of_file(run / "samples.npz") == Run(run.resolve())
    assert Run.of_file(tmp_path / "elsewhere.ckpt") is None


def _evaluation(path: Path, cwd: Path, ckpt_path: str) -> Path:
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"ckpt_path": ckpt_path, "samples_path": None}))
    (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"cwd": str(cwd)}}}))
    return path


def test_the_evaluations_of_a_run_are_those_that_scored_its_files(tmp_path: Path) -> None:
    """evaluate.py's run dirs in outputs/evaluate that scored a checkpoint of the run, its path
    relative to the folder evaluate.py was started in or absolute; not another run's, nor a half-written one."""
    run = tmp_path / "outputs" / "train" / "runs" / "mine"
    (run / "checkpoints").mkdir(parents=True)
    evaluate = tmp_path / "outputs" / "evaluate" / "runs"
    relative = _evaluation(evaluate / "a", tmp_path, "outputs/train/runs/mine/checkpoints/last.ckpt")
    absolute = _evaluation(evaluate / "b", tmp_path / "elsewhere", str(run / "checkpoints" / "epoch_1.ckpt"))
    _evaluation(evaluate / "c", tmp_path, "outputs/train/runs/mine_too/checkpoints/last.ckpt")  # a prefix, not the run
    torn = _evaluation(evaluate / "d", tmp_path, "outputs/train/runs/mine/checkpoints/last.ckpt")
    (torn / ".hydra" / "hydra.yaml").write_text("hydra: {runtime: {cwd: ")
    assert Run(run).evaluations() == [Run(relative), Run(absolute)]


def test_a_folder_of_runs(tmp_path: Path) -> None:
    """Sweep jobs in numeric order, unfinished ones too; the runs with metrics.json for the tables."""
    for name, finished in (("10", True), ("2", True), ("3", False)):
        job = tmp_path / "sweep" / name
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": int(name), "paths": {"output_dir": name}}))
        if finished:
            (job / "metrics.json").write_text("{}")
    sweep = Sweep(tmp_path / "sweep")
    assert [r.name for r in sweep.runs()] == ["2", "3", "10"]
    assert [r.name for r in find_runs([sweep.path])] == ["2", "10"]
    assert sweep.runs()[0].settings() == {"seed": 2}  # where a run wrote is no setting
    shutil.rmtree(tmp_path / "sweep" / "3" / ".hydra")
    assert [r.name for r in sweep.runs()] == ["2", "10"]
