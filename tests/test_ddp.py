"""trainer=ddp on CPUs: two gloo processes started by `python train.py`, as Lightning starts them
(rank 1 reruns the command line inside rank 0's Hydra run dir)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TINY, make_synthetic_mnist

TESTS = Path(__file__).resolve().parent

BATCH = 32
# 272 of the 320 synthetic images: 192 to train on (3 batches per rank, so DistributedSampler pads
# nothing) and 80 to validate on, 40 per rank as a batch of 32 and one of 8, so the mean over a
# rank's batches has to be weighted by batch size.
LIMIT_TRAIN, VAL_SIZE = 272, 80
N_TRAIN = LIMIT_TRAIN - VAL_SIZE
EPOCHS = 2
TOL = 2e-6  # float32 means of losses near 1


def overridden(base: list[str], *overrides: str) -> list[str]:
    """``base`` with the keys (or config groups) of ``overrides`` replaced by them."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [o for o in base if o.split("=", 1)[0] not in keys] + list(overrides)


DDP = [
    "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
    # SyncBatchNorm runs on GPUs only (DDP refuses it on CPU modules); the UNet uses BatchNorm
    "trainer.sync_batchnorm=false",
]


def run_train(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    for key in ("WANDB_MODE", "HYDRA_FULL_ERROR", "WANDB_SERVICE", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE",
                "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One two-process run of EPOCHS epochs; what each rank's DDPProbe recorded, and the run dir."""
    tmp = tmp_path_factory.mktemp("ddp")
    data = make_synthetic_mnist(tmp / "data")
    args = overridden(
        TINY, *DDP, f"data.batch_size={BATCH}", f"data.limit_train={LIMIT_TRAIN}", f"data.val_size={VAL_SIZE}",
        f"trainer.max_epochs={EPOCHS}", "data.check_md5=false", f"paths.data_dir={data}",
        f"paths.log_dir={tmp / 'logs'}",
        "+callbacks.ddp_probe._target_=probes.DDPProbe", f"+callbacks.ddp_probe.out={tmp / 'probe'}",
    )
    proc = run_train(args, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp / "probe" / f"rank_{r}.json").read_text()) for r in (0, 1)]
    return {"tmp": tmp, "ranks": ranks, "runs": sorted((tmp / "logs" / "train" / "runs").iterdir())}


def weighted_mean(pairs: list[tuple[float, int]]) -> float:
    return sum(v * n for v, n in pairs) / sum(n for _, n in pairs)


@pytest.mark.slow
def test_two_ranks_split_the_training_data(ddp_run: dict[str, Any]) -> None:
    r0, r1 = ddp_run["ranks"]
    assert [(r["global_rank"], r["world_size"]) for r in (r0, r1)] == [(0, 2), (1, 2)]
    assert r0["pid"] != r1["pid"] and {r0["sampler"], r1["sampler"]} == {"DistributedSamplerWrapper"}  # of the datamodule's EpochShuffle
    assert r0["train_split"] == r1["train_split"] and len(r0["train_split"]) == N_TRAIN  # one split on both ranks
    for e0, e1 in zip(r0["epochs"], r1["epochs"], strict=True):
        a, b = e0["train_indices"], e1["train_indices"]
        assert len(a) == len(b) == N_TRAIN // 2 and len(set(a)) == len(a)
        assert not set(a) & set(b) and sorted(a + b) == r0["train_split"]  # disjoint, and together all of it
        assert len(e0["train_losses"]) == len(e1["train_losses"]) == N_TRAIN // (2 * BATCH)
    assert r0["epochs"][0]["train_indices"] != r0["epochs"][1]["train_indices"]  # reshuffled each epoch


@pytest.mark.slow
def test_logged_losses_are_reduced_over_the_ranks(ddp_run: dict[str, Any]) -> None:
    r0, r1 = ddp_run["ranks"]
    (run,) = ddp_run["runs"]
    rows = list(csv.DictReader(open(run / "csv" / "version_0" / "metrics.csv")))
    for epoch, (e0, e1) in enumerate(zip(r0["epochs"], r1["epochs"], strict=True)):
        assert not e0["val_training_mode"] and e0["val_sizes"] == e1["val_sizes"] == [BATCH, VAL_SIZE // 2 - BATCH]
        # val/loss: the mean over all 80 images, each rank's own mean over 40 being different
        own = [weighted_mean(list(zip(e["val_losses"], e["val_sizes"]))) for e in (e0, e1)]
        assert abs(own[0] - own[1]) > 20 * TOL
        expected = weighted_mean([(v, n) for e in (e0, e1) for v, n in zip(e["val_losses"], e["val_sizes"])])
        assert e0["logged_val_loss"] == e1["logged_val_loss"] == pytest.approx(expected, abs=TOL)
        # train/loss_epoch: likewise over both ranks' batches
        own = [weighted_mean(e["train_losses"]) for e in (e0, e1)]
        assert abs(own[0] - own[1]) > 20 * TOL
        expected_train = weighted_mean(e0["train_losses"] + e1["train_losses"])
        assert e0["logged_train_loss_epoch"] == e1["logged_train_loss_epoch"] == pytest.approx(expected_train, abs=TOL)
        # and these reduced values are what rank 0 wrote to the CSV history
        logged = {k: float(r[k]) for r in rows if int(r["epoch"]) == epoch
                  for k in ("val/loss", "train/loss_epoch") if r[k]}
        assert logged == pytest.approx({"val/loss": expected, "train/loss_epoch": expected_train}, abs=TOL)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val/loss"] == pytest.approx(r0["epochs"][-1]["logged_val_loss"], abs=TOL)
    assert metrics["train/loss_epoch"] == pytest.approx(r0["epochs"][-1]["logged_train_loss_epoch"], abs=TOL)


@pytest.mark.slow
def test_weights_and_their_ema_are_the_same_on_both_ranks(ddp_run: dict[str, Any]) -> None:
    r0, r1 = ddp_run["ranks"]
    for e0, e1 in zip(r0["epochs"], r1["epochs"], strict=True):
        assert e0["raw_weights"] == e1["raw_weights"]
        assert e0["ema_weights"] == e1["ema_weights"]
        assert e0["raw_weights"]["sha256"] != e0["ema_weights"]["sha256"]  # the EMA lags the weights
    assert r0["epochs"][0]["raw_weights"] != r0["epochs"][1]["raw_weights"]  # they trained
    # the module ends holding the EMA, the weights that final.png and checkpoints use
    assert r0["end_weights"] == r1["end_weights"] == r0["epochs"][-1]["ema_weights"]


@pytest.mark.slow
def test_rank_zero_alone_writes_the_run_dir(ddp_run: dict[str, Any]) -> None:
    tmp = ddp_run["tmp"]
    assert sorted(p.name for p in tmp.iterdir()) == ["data", "logs", "probe"]  # no outputs/ from rank 1
    (run,) = ddp_run["runs"]
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1's Hydra log: it ran in rank 0's run dir
    assert list(run.rglob(".hydra")) == [run / ".hydra"]  # and wrote no config of its own
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    (wandb_run,) = run.glob("wandb/offline-run-*")
    images = sorted(wandb_run.glob("files/media/images/val/samples_*.png"))
    assert len(images) == EPOCHS  # one grid per sampling epoch, not one per rank
    assert sorted(p.name for p in run.glob("samples/epoch_*.png")) == [f"epoch_{e:03d}.png" for e in range(EPOCHS)]
    assert (run / "samples" / "final.png").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == EPOCHS and metrics["global_step"] == EPOCHS * N_TRAIN // (2 * BATCH)
    assert "final_samples_seconds" in metrics  # rank 0's: only it draws final.png


def test_multirun_with_ddp_is_refused_before_training(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    args = ["--multirun", *overridden(TINY, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                                      "data.check_md5=false", f"paths.data_dir={synthetic_mnist_dir}",
                                      f"paths.log_dir={tmp_path / 'logs'}")]
    proc = run_train(args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "--multirun" in error[0]
    assert "Initializing distributed" not in proc.stdout + proc.stderr  # no rank 1 was started
    (job,) = (tmp_path / "logs" / "train" / "multiruns").glob("*/*/")
    assert sorted(p.name for p in job.iterdir()) == [".hydra", "train.log"]  # no checkpoint, logger run or metrics


def test_sync_batchnorm_on_cpus_is_refused_with_the_fix(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    args = overridden(TINY, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "data.check_md5=false",
                      f"paths.data_dir={synthetic_mnist_dir}", f"paths.log_dir={tmp_path / 'logs'}")
    proc = run_train(args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "trainer.sync_batchnorm=false" in error[0], proc.stderr[-2000:]
    assert "Initializing distributed" not in proc.stdout + proc.stderr  # refused before rank 1 starts
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert not list(run.rglob("*.ckpt")) and not (run / "metrics.json").exists()
