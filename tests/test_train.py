import csv as csvlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import (
    ROOT,
    TINY,
    compose_train_cfg,
    run_command,
    tiny_ddpm,
    wandb_file_with,
    wandb_run_info,
)
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from ddpm_lit.apps.train import build, train
from ddpm_lit.errors import ConfigError
from ddpm_lit.reporting.tables import runs_table
from ddpm_lit.runs import find_runs
from ddpm_lit.training.module import DDPMModule


def run_cli(args: list[str], cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "", "HYDRA_FULL_ERROR": ""}
    env.pop("WANDB_MODE")
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
    )


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([], {"schedule": "linear", "max_epochs": 50, "base_channels": 128, "logger": "WandbLogger+CSVLogger"}),
        (["schedule=cosine", "trainer.max_epochs=50"], {"schedule": "cosine", "max_epochs": 50}),
        (["schedule=linear"], {"schedule": "linear"}),
        (["logger=csv"], {"logger": "CSVLogger"}),
        (["logger=tensorboard"], {"logger": "TensorBoardLogger"}),
        (["trainer=cpu"], {"accelerator": "CPUAccelerator"}),
        (["experiment=quick"], {"schedule": "cosine", "base_channels": 32, "accelerator": "CPUAccelerator",
                                "precision": "auto", "time_budget_minutes": 14}),
        (["experiment=seed"], {"schedule": "cosine", "base_channels": 128, "max_epochs": 50, "batch_size": 128}),
    ],
)
def test_every_config_composes_and_instantiates(overrides, expected, tmp_path: Path) -> None:
    cfg = compose_train_cfg(overrides, tmp_path, tmp_path / "data")
    model = build(cfg.model)
    assert isinstance(model, DDPMModule)
    datamodule = build(cfg.data)
    loggers = [build(c) for c in cfg.logger.values()]
    # precision=auto is train()'s to decide (plan_time), not a Lightning value
    trainer = build(cfg.trainer, logger=False, **({"precision": "32-true"} if cfg.trainer.precision == "auto" else {}))
    found = {
        "precision": cfg.trainer.precision,
        "time_budget_minutes": cfg.time_budget_minutes,
        "schedule": model.diffusion.schedule,
        "base_channels": model.hparams.net["base_channels"],
        "max_epochs": trainer.max_epochs,
        "batch_size": datamodule.hparams.batch_size,
        "logger": "+".join(type(logger).__name__ for logger in loggers),
        "accelerator": type(trainer.accelerator).__name__,
    }
    assert {k: found[k] for k in expected} == expected


def test_gpu_trainer_preset_composes(tmp_path: Path) -> None:
    cfg = compose_train_cfg(["trainer=gpu"], tmp_path, tmp_path)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "auto"  # bf16 first on a GPU that has it


def test_wandb_is_offline_unless_asked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert compose_train_cfg([], tmp_path, tmp_path).logger.wandb.offline is True
    assert compose_train_cfg(["logger.wandb.offline=false"], tmp_path, tmp_path).logger.wandb.offline is False
    monkeypatch.setenv("WANDB_MODE", "online")
    assert compose_train_cfg([], tmp_path, tmp_path).logger.wandb.offline is False


def test_online_wandb_without_credentials_stops_instead_of_prompting(
    synthetic_mnist_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    cfg = compose_train_cfg([*TINY, "logger.wandb.offline=false", "data.check_md5=false"], tmp_path,
                            synthetic_mnist_dir)
    with pytest.raises(ConfigError, match="wandb login"):
        train(cfg)


def test_seed_experiment_is_the_reports_setup(tmp_path: Path) -> None:
    cfg = compose_train_cfg(["experiment=seed"], tmp_path, tmp_path)
    assert cfg.model.net.base_channels == 128
    assert cfg.schedule.name == "cosine" and cfg.schedule.timesteps == 1000
    assert cfg.data.batch_size == 128 and cfg.trainer.max_epochs == 50
    n_params = sum(p.numel() for p in build(cfg.model).parameters())
    assert abs(n_params - 14.1e6) / 14.1e6 < 0.01


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.net.base_channels=0", ["base_channels", "positive"]),
        ("schedule.timesteps=0", ["timesteps", "positive"]),
        ("data.image_size=30", ["image_size=30", "multiple of 4"]),
        ("model.net.norm=layer", ["batch", "group"]),
        ("model.val_sample_steps=5000", ["val_sample_steps", "timesteps=100"]),
        ("data.val_size=60000", ["val_size", "59999"]),
        ("schedule.timesteps=20", ["β outside (0, 1)", "more timesteps"]),
    ],
)
def test_bad_values_stop_at_start_with_a_clear_message(override, words, tmp_path: Path) -> None:
    cfg = compose_train_cfg([*TINY, override], tmp_path, tmp_path / "never-created")
    with pytest.raises(ConfigError) as err:
        train(cfg)
    for word in words:
        assert word in str(err.value)
    assert not (tmp_path / "never-created").exists()  # failed before fetching data


def test_unknown_schedule_name_lists_valid_choices(tmp_path: Path) -> None:
    with pytest.raises(MissingConfigException) as err:
        compose_train_cfg(["schedule=foo"], tmp_path, tmp_path)
    assert "cosine" in str(err.value) and "linear" in str(err.value)
    cfg = compose_train_cfg([*TINY, "schedule.name=foo"], tmp_path, tmp_path)
    with pytest.raises(ConfigError, match="valid schedules: linear, cosine"):
        train(cfg)


def test_cli_bad_value_prints_one_message_and_no_traceback(tmp_path: Path) -> None:
    proc = run_cli(["model.net.base_channels=0", f"paths.log_dir={tmp_path}"])
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "base_channels" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_corrupted_mnist_names_the_file_without_traceback(mnist_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(mnist_dir / "MNIST", data_dir / "MNIST")
    bad = data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-10])
    proc = run_command("train.py", [*TINY, f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'out'}"])
    assert proc.returncode == 2
    assert f"{bad}: truncated" in proc.stderr and "Fix:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "out").rglob("*.ckpt")) and not list((tmp_path / "out").rglob("wandb"))


def test_cli_unknown_schedule_lists_choices(tmp_path: Path) -> None:
    proc = run_command("train.py", ["schedule=foo", f"paths.log_dir={tmp_path}"])
    assert proc.returncode != 0
    assert "cosine" in proc.stderr and "linear" in proc.stderr


@pytest.mark.parametrize("dataset", ["synthetic", "mnist"])
def test_fast_dev_run(dataset: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    data_dir = request.getfixturevalue("synthetic_mnist_dir" if dataset == "synthetic" else "mnist_dir")
    cfg = compose_train_cfg(
        [*TINY, "trainer.fast_dev_run=true", f"data.check_md5={dataset == 'mnist'}", "data.val_size=32"],
        tmp_path, data_dir,
    )
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert 0.0 < metrics["val/loss"] < 10.0
    assert -1.0 <= metrics["val/ssim"] <= 1.0 and -1.0 <= metrics["val/nn_ssim"] <= 1.0
    assert (tmp_path / "samples" / "epoch_000.png").is_file()
    assert metrics["global_step"] == 1


def test_training_writes_checkpoints_that_load_and_sample(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    cfg = compose_train_cfg(
        [*TINY, "logger=csv", "trainer.max_epochs=2", "data.check_md5=false", "data.val_size=32",
         "trainer.log_every_n_steps=1",
         "model.sample_every_n_epochs=2"],
        tmp_path, synthetic_mnist_dir,
    )
    metrics = train(cfg)
    ckpts = tmp_path / "checkpoints"
    assert (ckpts / "last.ckpt").is_file()
    (best,) = ckpts.glob("epoch_*.ckpt")  # the best by val/loss

    assert (tmp_path / "samples" / "final.png").is_file()
    assert (tmp_path / "samples" / "epoch_001.png").is_file()
    assert not (tmp_path / "samples" / "epoch_000.png").exists()  # sampled every 2 epochs
    rows = list(csvlib.DictReader(open(tmp_path / "csv" / "version_0" / "metrics.csv")))
    val = {int(r["epoch"]): float(r["val/loss"]) for r in rows if r["val/loss"]}
    assert best.name == f"epoch_{min(val, key=val.get):03d}.ckpt"
    assert any(r["train/loss"] for r in rows) and any(r["val/ssim"] for r in rows)
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"] == metrics["global_step"]

    model = DDPMModule.load_from_checkpoint(ckpts / "last.ckpt")
    assert model.hparams.net["base_channels"] == 8
    model.train()
    a = model.sample(4, generator=torch.Generator().manual_seed(1), steps=5)
    b = model.sample(4, generator=torch.Generator().manual_seed(1), steps=5)
    c = model.sample(4, generator=torch.Generator().manual_seed(2), steps=5)
    assert a.shape == (4, 1, 28, 28)
    assert a.min() >= -1.0 and a.max() <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training  # sample() ran in eval mode and restored the training mode
    assert metrics["val/loss"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["val/loss"] == pytest.approx(metrics["val/loss"]) and saved["epochs"] == 2

    report = runs_table(find_runs([tmp_path]))
    assert report.count("\n") == 2  # header, rule, one run
    assert f"{metrics['val/loss']:.4f}" in report


def test_last_ckpt_is_the_final_step_when_the_monitored_metric_did_not_improve(
    synthetic_mnist_dir: Path, tmp_path: Path
) -> None:
    """Monitoring the epoch with mode=min, the best checkpoint never changes after epoch 0;
    last.ckpt must still be the final step's (a ModelCheckpoint's own save_last would have left
    it at epoch 0's)."""
    cfg = compose_train_cfg(
        [*TINY, "logger=csv", "trainer.max_epochs=3", "data.check_md5=false", "data.val_size=32",
         "model.sample_every_n_epochs=0", "final_samples.num=0", "callbacks.model_checkpoint.monitor=epoch"],
        tmp_path, synthetic_mnist_dir,
    )  # fmt: skip
    metrics = train(cfg)
    ckpts = tmp_path / "checkpoints"
    (best,) = ckpts.glob("epoch_*.ckpt")
    final = torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"]
    assert torch.load(best, weights_only=False)["global_step"] < final == metrics["global_step"]


def test_cli_trains_on_real_mnist_with_offline_wandb(mnist_dir: Path, tmp_path: Path) -> None:
    proc = run_cli([*TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
                    f"paths.data_dir={mnist_dir}",
                    f"paths.log_dir={tmp_path}", "final_samples.num=0"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list(tmp_path.glob("train/runs/*/wandb/offline-run-*"))
    assert len(runs) == 1
    (run_file,) = runs[0].glob("run-*.wandb")
    records = wandb_file_with(run_file, b"base_channels", b"val/ssim", b"val/samples")
    assert b"base_channels" in records  # the composed config is in the W&B run
    assert b"val/ssim" in records and b"val/samples" in records
    assert list(tmp_path.glob("train/runs/*/samples/epoch_000.png"))
    # A quiet start: none of the warnings a fresh run used to print, and one plain summary each end.
    output = proc.stdout + proc.stderr
    for noise in ("was called without a model", "there is no last checkpoint", "anonymous setting",
                  "litlogger", "Total FLOPs: 0", "requires_grad", "LeafSpec"):
        assert noise not in output, noise
    (run,) = tmp_path.glob("train/runs/*")
    assert output.count("starting:") == 1 and f"run dir:   {run}" in output
    assert "parameters" in output and "precision 32-true" in output
    assert output.count("finished in") == 1 and f"checkpoints: {run / 'checkpoints'}" in output
    assert "W&B run:" in output and "val/loss" in output.split("finished in")[1]


def test_lightning_noise_warnings_are_raised_by_lightning_and_only_they_are_ignored(tmp_path: Path) -> None:
    """Lightning raises each LIGHTNING_NOISE warning (fails when it stops: then drop its filter);
    with the filters, those go and Lightning's other warnings stay."""
    import warnings

    from torch.utils.data import DataLoader, TensorDataset

    from ddpm_lit.apps.train import quiet_lightning_warnings

    def raised(quiet: bool) -> list[str]:
        module = tiny_ddpm(20, sample_every_n_epochs=0)
        images = TensorDataset(torch.randn(8, 1, 28, 28), torch.zeros(8, dtype=torch.long))
        trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, max_steps=2, default_root_dir=tmp_path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if quiet:
                quiet_lightning_warnings()
            trainer.fit(module, DataLoader(images, batch_size=4))  # model summary on, CombinedLoader
            warnings.warn_explicit("Precision bf16-mixed is a test", UserWarning, "x.py", 1,
                                   module="lightning.pytorch.utilities.model_summary.model_summary")
        return [str(w.message) for w in caught]

    before = raised(quiet=False)
    assert any("LeafSpec" in m for m in before)
    assert any("is not supported by the model summary" in m for m in before)
    after = raised(quiet=True)
    assert not any("LeafSpec" in m or "not supported by the model summary" in m for m in after)
    assert "Precision bf16-mixed is a test" in after  # another message of the same module stays


def test_lightning_tips_are_dropped_and_nothing_else(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """Lightning still advertises litlogger/litmodels when a Trainer is built with other loggers
    (fails when it stops: then drop LightningTipFilter); with the filter, those lines go and
    Lightning's other messages stay."""
    import logging

    from lightning.pytorch.loggers import CSVLogger

    from ddpm_lit.apps.train import quiet_lightning_tips
    from ddpm_lit.training.loggers import LightningTipFilter

    target = logging.getLogger(LightningTipFilter.LOGGER)
    kept = list(target.filters)
    try:
        target.filters = [f for f in kept if not isinstance(f, LightningTipFilter)]
        with caplog.at_level(logging.INFO, logger=LightningTipFilter.LOGGER):
            L.Trainer(logger=CSVLogger(tmp_path), accelerator="cpu", max_epochs=1, enable_checkpointing=False)
        assert any("litlogger" in r.getMessage() for r in caplog.records)
        caplog.clear()
        quiet_lightning_tips()
        quiet_lightning_tips()  # once only
        assert sum(isinstance(f, LightningTipFilter) for f in target.filters) == 1
        with caplog.at_level(logging.INFO, logger=LightningTipFilter.LOGGER):
            L.Trainer(logger=CSVLogger(tmp_path), accelerator="cpu", max_epochs=1, enable_checkpointing=False)
        messages = [r.getMessage() for r in caplog.records]
        assert not any("Tip" in m for m in messages)
        assert any("GPU available" in m for m in messages)  # Lightning's other lines stay
    finally:
        target.filters = kept


@pytest.mark.parametrize("launcher", [[], pytest.param(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                                        marks=pytest.mark.slow)], ids=["basic", "joblib"])
def test_multirun_gives_one_output_dir_and_wandb_run_per_job(launcher, synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    """Hydra's basic launcher runs the jobs one after another in the command's process (here, this
    one); joblib's starts worker processes from a real command line (slow tier)."""
    args = ["--multirun", "schedule=linear,cosine", *launcher, *TINY, "trainer.max_epochs=1",
            "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "model.val_classifier_fid=false",
            "data.check_md5=false", f"paths.data_dir={synthetic_mnist_dir}", "final_samples.num=0"]
    # Run from tmp_path with the default paths, as a user would from the repo.
    proc = run_cli(args, cwd=tmp_path) if launcher else run_command("train.py", args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = tmp_path.glob("outputs/train/multiruns/*")
    jobs = sorted(sweep.glob("[0-9]"))
    assert [j.name for j in jobs] == ["0", "1"]
    runs = []
    for job, schedule in zip(jobs, ["linear", "cosine"]):
        assert OmegaConf.load(job / ".hydra" / "config.yaml").schedule.name == schedule
        folders = list(job.glob("wandb/offline-run-*"))
        assert len(folders) == 1
        runs.append(wandb_run_info(folders[0]))
        # each job is its own W&B run, in the sweep's group, named after its overrides
        assert runs[-1]["group"] == sweep.name and f"schedule={schedule}" in runs[-1]["name"]
    assert runs[0]["id"] != runs[1]["id"]

    # The sweep summary: the setting that differs, the final metrics, and a plot per metric.
    proc = run_command("ddpm_lit.summarize", [f"dirs={sweep}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (sweep / "runs.md").read_text()
    header, _, row0, row1 = report.split("\n")[2:6]
    assert "| schedule.name |" in header and "seed" not in header  # only what differs
    assert row0.startswith("| 0 | `linear` |") and row1.startswith("| 1 | `cosine` |")
    for job, row in zip(jobs, (row0, row1)):
        assert f"{json.loads((job / 'metrics.json').read_text())['val/loss']:.4f}" in row
    assert (sweep / "runs_loss.png").is_file() and not (sweep / "runs_val_classifier_fid.png").exists()  # no val/classifier_fid logged


def test_val_classifier_fid_is_logged_and_can_be_the_checkpoint_monitor(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    cfg = compose_train_cfg(
        [*TINY, "logger=csv", "trainer.max_epochs=3", "data.check_md5=false", "data.val_size=32",
         "model.fid_reference_size=32", "callbacks.model_checkpoint.monitor=val/classifier_fid", "optimized_metric=val/classifier_fid"],
        tmp_path, synthetic_mnist_dir,
    )
    metrics = train(cfg)
    rows = list(csvlib.DictReader(open(tmp_path / "csv" / "version_0" / "metrics.csv")))
    fid = {int(r["epoch"]): float(r["val/classifier_fid"]) for r in rows if r.get("val/classifier_fid")}
    assert sorted(fid) == [0, 1, 2]
    assert all(math.isfinite(v) and v > 0 for v in fid.values())
    assert metrics["val/classifier_fid"] == pytest.approx(fid[2])
    (best,) = (tmp_path / "checkpoints").glob("epoch_*.ckpt")
    assert best.name == f"epoch_{min(fid, key=fid.get):03d}.ckpt"
    # the classifier was trained for this data once and cached beside it, not saved in checkpoints
    assert (synthetic_mnist_dir / "classifier" / "mnist_cnn.pt").is_file()
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert all(k.startswith(("net.", "diffusion.")) for k in state)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["model.sample_every_n_epochs=2"], "only logged on sampling epochs"),
        (["model.val_classifier_fid=false"], "needs model.val_classifier_fid=true"),
        (["optimized_metric=val/fdi"], "optimized_metric=val/fdi: a ddpm does not log it"),
        (["optimized_metric=val/classifier_fid", "model.val_classifier_fid=false"], "optimized_metric=val/classifier_fid needs model.val_classifier_fid=true"),
    ],
)
def test_val_classifier_fid_monitor_needs_it_every_epoch(overrides, words, tmp_path: Path) -> None:
    cfg = compose_train_cfg(
        [*TINY, "logger=csv", "callbacks.model_checkpoint.monitor=val/classifier_fid", *overrides], tmp_path, tmp_path / "empty"
    )
    with pytest.raises(ConfigError, match=words):
        train(cfg)
    assert not (tmp_path / "empty").exists()  # stopped before fetching data
