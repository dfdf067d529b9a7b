"""scripts/gpu_run.sh, run whole on the CPU with a tiny network: every piece it runs on a GPU, and
what it sends back (at most 8 files of at most 16 MiB)."""

import importlib.util
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY

from ddpm_lit.apps.shards import join
from ddpm_lit.training.loading import load_module


@pytest.mark.slow
def test_gpu_script_runs_every_step_and_returns_few_small_files(mnist_dir: Path, tmp_path: Path) -> None:
    from ddpm_lit.evaluation.classifier import load_or_train

    load_or_train(mnist_dir)  # the cached evaluation classifier (trained once, when missing)
    out, work = tmp_path / "out", tmp_path / "work"
    tiny = " ".join(t for t in TINY if not t.startswith("trainer="))
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "HYDRA_FULL_ERROR")},
        "OUT": str(out),
        "WORK": str(work),
        "TRAINER": "cpu",
        "TRAIN_MINUTES": "null",
        "TRAIN_OVERRIDES": f"{tiny} paths.data_dir={mnist_dir} data.limit_train=1000 data.val_size=64 "
                           "trainer.max_epochs=2 model.val_classifier_fid=false",
        "EVAL_OVERRIDES": f"paths.data_dir={mnist_dir} cache_dir={tmp_path / 'cache'} reference_size=200",
        "BENCH_ARGS": "bench.steps=2 bench.warmup=1 bench.repeats=1 bench.sample_steps=[2]"
                      + (" bench.diffusers=true" if importlib.util.find_spec("diffusers") else ""),
        "N_FAST": "20",
        "N_FULL": "8",
        "N_BPD": "4",
        "SAMPLE_BATCH": "10",
    }
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_run.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8, files
    assert all(p.stat().st_size <= 16 * 2**20 and re.fullmatch(r"[\w.-]+", p.name) for p in files)
    names = {p.name for p in files}
    assert {"bench.txt", "metrics.json", "run.tar.gz", "samples_dpmpp2m_20.npz", "samples_ddpm_20.npz",
            "samples_ddpm_1000.npz", "weights_fp16.0.pt"} <= names, names

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and len(metrics["train_loss_by_epoch"]) == 2
    assert metrics["train"]["global_step"] == 2 * (1000 - 64) // 32
    assert metrics["seconds_per_epoch"] > 0
    assert {"environment", "bench", "train", "sample_dpmpp_2m_20", "sample_ddpm_20", "evaluate_ddpm_1000"} <= set(
        metrics["wall_seconds"])
    assert metrics["sampling"]["sample_dpmpp_2m_20"]["sampler"]["name"] == "dpmpp_2m"
    assert metrics["sampling"]["sample_ddpm_20"]["sampler"]["steps"] == 20
    speed = metrics["sampling"]["sample_ddpm_20"]["speed"]  # the 10,000 samples' settings, and their rate
    assert speed["batch_size"] == 10 and speed["precision"] in ("32-true", "bf16-mixed")
    assert metrics["sampling"]["sample_ddpm_20"]["nfe_per_s"] > 0 and "bench_sampling" in metrics["wall_seconds"]
    assert any(line.startswith("| front end, speed=auto (now) |") for line in metrics["bench_sampling"])
    evaluation = metrics["evaluate_ddpm_1000"]
    assert evaluation["samples"]["num_images"] == 8 and evaluation["nll"]["num_images"] == 4
    assert evaluation["nll"]["bpd"] > 0
    assert any(line.startswith("plain PyTorch loop") for line in metrics["bench"])

    for name, n in (("samples_dpmpp2m_20", 20), ("samples_ddpm_20", 20), ("samples_ddpm_1000", 8)):
        with np.load(out / f"{name}.npz") as f:
            assert f["arr_0"].shape == (n, 28, 28, 1) and f["arr_0"].dtype == np.uint8, name
    with tarfile.open(out / "run.tar.gz") as tar:
        members = set(tar.getnames())
    assert {"train/metrics.json", "train/train.log", "eval_ddpm_1000/evaluation.md", "env.txt"} <= members
    assert any(m.startswith("train/figures/") for m in members)

    # the shards are the run's EMA weights, in float16
    shards = sorted(out.glob("weights_fp16.*.pt"))
    joined = join(shards)
    ckpt = work / "train" / "checkpoints" / "last.ckpt"
    original = torch.load(ckpt, weights_only=False)["state_dict"]
    key = "net.out.weight"
    assert torch.equal(joined["state_dict"][key], original[key].half().float())
    path = tmp_path / "joined.ckpt"
    torch.save(joined, path)
    module, ema = load_module(path, torch.device("cpu"))
    assert ema and module.net.out.weight.shape == original[key].shape
