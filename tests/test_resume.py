"""Resuming: a run stopped mid-epoch by SIGTERM continues from its checkpoint in its own run dir."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, compose_train_cfg

from ddpm_lit.apps.train import train
from ddpm_lit.errors import ConfigError
from ddpm_lit.runs import Run, Sweep
from ddpm_lit.training.checkpointing import AtomicCheckpointIO

TESTS = Path(__file__).resolve().parent


def run_train(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    for key in ("WANDB_MODE", "HYDRA_FULL_ERROR"):
        env.pop(key, None)
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def csv_rows(run: Path, version: int) -> list[dict[str, str]]:
    return list(csv.DictReader(open(run / "csv" / f"version_{version}" / "metrics.csv")))


@pytest.mark.slow
def test_sigterm_mid_epoch_then_ckpt_path_last_continues_the_same_run(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    # 6 batches per epoch, 2 epochs; SIGTERM arrives in epoch 1 after step 9.
    common = [*TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=6", "trainer.limit_val_batches=1",
              "trainer.log_every_n_steps=1", "model.optimizer.lr=1e-3", "model.warmup_steps=20", "data.check_md5=false", f"paths.data_dir={synthetic_mnist_dir}",
              f"paths.log_dir={tmp_path / 'logs'}", "final_samples.num=0"]
    first = run_train([*common, "+callbacks.sigterm._target_=probes.SigtermAtStep", "+callbacks.sigterm.step=9",
                       "+callbacks.record._target_=probes.RecordResume", f"+callbacks.record.out={tmp_path / 'first'}"],
                      cwd=tmp_path)
    assert first.returncode == 143, first.stderr[-3000:]  # 128 + SIGTERM: a terminated job, not a finished one
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    (stopped,) = [json.loads(p.read_text()) for p in (tmp_path / "first").glob("resume_*.json")]
    assert stopped["exception"] == "SIGTERMException"
    assert 6 < stopped["stopped_step"] < 12  # mid-epoch 1
    assert not (run / "metrics.json").exists()

    # Every checkpoint is whole (it loads), no staging file is left, and the one written on
    # SIGTERM is the newest and holds the step at which the run stopped.
    ckpts = sorted(run.glob("checkpoints/*"))
    assert {p.name for p in ckpts} >= {"last.ckpt", "on_exception.ckpt"}
    assert all(p.suffix == ".ckpt" and not p.name.startswith(".") for p in ckpts)
    loaded = {p.name: torch.load(p, map_location="cpu", weights_only=False) for p in ckpts}
    assert Run(run).newest_checkpoint().name == "on_exception.ckpt"
    assert loaded["on_exception.ckpt"]["global_step"] == stopped["stopped_step"]
    assert loaded["last.ckpt"]["global_step"] == 6  # end of epoch 0
    first_id = Run(run).wandb_run_id()
    assert first_id is not None

    time.sleep(1.1)  # W&B names run folders to the second
    second = run_train([*common, "ckpt_path=last", "+callbacks.record._target_=probes.RecordResume",
                        f"+callbacks.record.out={tmp_path / 'second'}"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert [p.name for p in (tmp_path / "logs" / "train" / "runs").iterdir()] == [run.name]  # the same run dir
    (resumed,) = [json.loads(p.read_text()) for p in (tmp_path / "second").glob("resume_*.json")]
    # The step counter, the EMA and the LR warm-up carry on from where SIGTERM stopped them.
    assert resumed["start_step"] == stopped["stopped_step"] and resumed["start_epoch"] == 1
    assert resumed["start_ema"] == stopped["stopped_ema"] > 0
    assert resumed["start_lr"] == pytest.approx(1e-3 * (stopped["stopped_step"] + 1) / 20, rel=1e-6)  # warm-up
    assert resumed["end_step"] == 12 and resumed["end_ema"] == resumed["start_ema"] + 12 - stopped["stopped_step"]
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 12

    # One W&B run: the resumed process wrote a second offline folder under the same id.
    folders = sorted(p.name for p in run.glob("wandb/offline-run-*"))
    assert len(folders) == 2 and {f.rsplit("-", 1)[1] for f in folders} == {first_id}
    # The CSV history goes on after the stop: a new version whose steps start there.
    resumed_steps = [int(r["step"]) for r in csv_rows(run, 1) if r.get("train/loss")]
    assert resumed_steps and min(resumed_steps) >= stopped["stopped_step"] and max(resumed_steps) <= 12
    assert not list(run.rglob(".*.part"))


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.arange(4.0)}, path)

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # e.g. the job killed mid-write

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(4)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["global_step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    io.save_checkpoint({"global_step": 3}, path)
    assert torch.load(path, weights_only=False)["global_step"] == 3


def test_the_run_to_resume(tmp_path: Path) -> None:
    runs = tmp_path / "train" / "runs"
    for name, ckpt in (("a", "last.ckpt"), ("b", "on_exception.ckpt"), ("c", None)):
        (runs / name / ".hydra").mkdir(parents=True)
        (runs / name / ".hydra" / "config.yaml").write_text("{}")
        if ckpt:
            (runs / name / "checkpoints").mkdir()
            (runs / name / "checkpoints" / ckpt).write_bytes(b"x")
        time.sleep(0.05)
    assert Sweep(runs).run_to_resume(None) is None
    # the run started last, even one killed before its first checkpoint: not an older run that has one
    assert Sweep(runs).run_to_resume("last") == Run(runs / "c")
    os.utime(runs / "a" / ".hydra" / "config.yaml")  # a resumed: Hydra rewrites its config
    assert Sweep(runs).run_to_resume("last") == Run(runs / "a")
    assert Sweep(runs).run_to_resume(str(runs / "b" / "checkpoints" / "on_exception.ckpt")) == Run(runs / "b")
    assert Sweep(runs).run_to_resume(str(tmp_path / "elsewhere.ckpt")) is None
    assert Sweep(tmp_path / "none").run_to_resume("last") is None


def test_resuming_with_other_model_settings_names_them(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    base = [*TINY, "logger=csv", "trainer.max_steps=2", "trainer.limit_val_batches=1", "data.check_md5=false",
            "final_samples.num=0", "~callbacks.ema"]
    train(compose_train_cfg(base, tmp_path / "run", synthetic_mnist_dir))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cfg = compose_train_cfg([*base, "model.net.base_channels=16", f"ckpt_path={ckpt}"], tmp_path / "run", synthetic_mnist_dir)
    with pytest.raises(ConfigError, match=r"model.net.base_channels: 8 in the checkpoint, 16 now"):
        train(cfg)
    cfg = compose_train_cfg([*base, f"ckpt_path={tmp_path / 'missing.ckpt'}"], tmp_path / "run", synthetic_mnist_dir)
    with pytest.raises(ConfigError, match="no such checkpoint"):
        train(cfg)
    # ckpt_path=last in a dir without checkpoints (a sweep job that never ran) starts afresh
    metrics = train(compose_train_cfg([*base, "ckpt_path=last"], tmp_path / "fresh", synthetic_mnist_dir))
    assert metrics["global_step"] == 2
