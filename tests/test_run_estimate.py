"""Every run's time estimate: what it counts (``RunLength``), its arithmetic (``Estimate``), the
line naming faster routes, and a real run that prints, records and checks its own."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY, compose_train_cfg

from ddpm_lit.apps.train import train
from ddpm_lit.training.planning import (
    ADVISE_AFTER_SECONDS,
    QUICK_HEADLINE,
    Estimate,
    Speed,
    faster_routes,
    format_seconds,
    run_length,
)

ROOT = Path(__file__).resolve().parents[1]


def mnist_run(**kwargs):
    """The default config's counts: 55,000 training and 5,000 validation images, batch 128, 64
    validation samples of 20 steps and 64 final ones of 20."""
    args = dict(train_images=55000, val_images=5000, batch_size=128, max_epochs=50, max_steps=-1,
                sample_every_n_epochs=1, val_sample_evaluations=64 * 20, final_evaluations=64 * 20)
    return run_length(**{**args, **kwargs})


def test_the_users_command_counts_50_epochs_of_429_steps_and_50_validations() -> None:
    n = mnist_run()
    assert (n.batches_per_epoch, n.batches, n.bound) == (429, 21450, "50 epochs")
    assert (n.validations, n.val_images, n.sampled_validations) == (50, 5000, 50)
    assert n.epochs == 50


@pytest.mark.parametrize(
    ("kwargs", "batches", "bound", "validations", "sampled"),
    [
        ({"max_steps": 10}, 10, "max_steps=10", 1, 1),                      # a step bound validates once more
        ({"max_steps": 429 * 3}, 429 * 3, "max_steps=1287", 3, 3),          # on an epoch's end: no extra pass
        ({"max_steps": 10**6}, 21450, "50 epochs", 50, 50),                 # the tighter bound wins
        ({"max_epochs": 5, "check_val_every_n_epoch": 2}, 5 * 429, "5 epochs", 2, 2),
        ({"max_epochs": 4, "sample_every_n_epochs": 2}, 4 * 429, "4 epochs", 4, 2),
        ({"max_epochs": 1, "limit_train_batches": 0.5}, 214, "1 epoch", 1, 1),
        ({"max_epochs": 2, "limit_train_batches": 20, "limit_val_batches": 0}, 40, "2 epochs", 0, 0),
        ({"max_epochs": 1, "world_size": 2}, 214, "1 epoch", 1, 1),         # each rank: half the images
        ({"max_epochs": -1, "max_steps": -1}, None, "the wall clock", 0, 0),
        ({"max_epochs": 1, "max_steps": 10, "steps_per_batch": 2}, 5, "max_steps=10", 1, 1),  # a GAN: 2 steps a batch
    ],
)
def test_run_length_counts_as_lightning_steps(kwargs, batches, bound, validations, sampled) -> None:
    n = mnist_run(**kwargs)
    assert (n.batches, n.bound, n.validations, n.sampled_validations) == (batches, bound, validations, sampled)


def test_limit_val_batches_counts_the_images_scored() -> None:
    assert mnist_run(limit_val_batches=2).val_images == 256
    assert mnist_run(limit_val_batches=0.5).val_images == 20 * 128  # int(40 × 0.5) of the 40 batches
    assert mnist_run(val_images=100).val_images == 100


def test_the_estimate_adds_training_validation_and_the_final_samples() -> None:
    speed = Speed("32-true", train_images_per_s=100.0, sample_evals_per_s=1000.0)
    estimate = Estimate(mnist_run(), speed, start_seconds=30.0, after_seconds=60.0)
    assert estimate.train_seconds == pytest.approx(21450 * 128 / 100)
    per_pass = (5000 + 64 * 20) / 1000  # val/loss over 5,000 images, then 64 images × 20 steps
    assert estimate.validation_seconds == pytest.approx(50 * per_pass)
    assert estimate.final_seconds == pytest.approx(1.28)
    assert estimate.epoch_seconds == pytest.approx(429 * 128 / 100 + per_pass)
    assert estimate.total_seconds == pytest.approx(30 + 27456 + 50 * per_pass + 1.28 + 60)
    text = estimate.describe()
    assert text.startswith("50 epochs = 21,450 steps ≈ 7 h 44 min at 100.0 train images/s on this machine")
    assert "an epoch ≈ 9 min 15 s: 429 steps and a validation pass" in text
    record = estimate.record()
    assert record["steps"] == 21450 and record["epoch_seconds"] == pytest.approx(555.4, abs=0.1)


def test_a_short_run_says_its_parts() -> None:
    speed = Speed("32-true", 100.0, 1000.0)
    text = Estimate(mnist_run(max_steps=10), speed).describe()
    assert text.startswith("max_steps=10 = 10 steps ≈ 20 s at 100.0")
    assert "training 13 s; validation 6 s; final samples 1 s" in text


@pytest.mark.parametrize(("seconds", "words"), [(48, "48 s"), (725, "12 min 05 s"), (3600, "1 h 00 min"),
                                                (83 * 3600 + 29 * 60 + 40, "83 h 30 min")])
def test_durations_read_in_hours_past_an_hour(seconds: float, words: str) -> None:
    assert format_seconds(seconds) == words


def test_a_cpu_run_over_an_hour_is_told_the_faster_routes_and_goes_on() -> None:
    slow = Estimate(mnist_run(), Speed("32-true", 9.0, 100.0))
    assert slow.total_seconds > ADVISE_AFTER_SECONDS
    line = faster_routes(slow, torch.device("cpu"))
    assert "goes on as asked" in line and "experiment=quick" in line and "trainer=gpu" in line
    assert faster_routes(slow, torch.device("cuda")) is None  # already on a GPU
    quick = Estimate(mnist_run(max_steps=100), Speed("32-true", 100.0, 1000.0))
    assert faster_routes(quick, torch.device("cpu")) is None
    assert faster_routes(Estimate(mnist_run(max_epochs=-1), slow.speed), torch.device("cpu")) is None  # unbounded


def test_the_quick_presets_scores_the_line_quotes_are_the_documented_ones() -> None:
    """The advice quotes the quick preset's headline; it must be the one README and docs/results.md give."""
    readme = (ROOT / "README.md").read_text()
    assert QUICK_HEADLINE in readme and "14 min" in readme
    assert "experiment=quick" in readme


def test_a_run_says_records_and_checks_its_estimate(synthetic_mnist_dir: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The default config's auto settings: the plan is said at start (the expected duration of
    an epoch-bounded run), kept as ``plan`` in the run's config and in the checkpoint's resolved
    hyperparameters, and the first whole epoch is set beside its estimate at the end."""
    cfg = compose_train_cfg([*TINY, "logger=csv", "data.check_md5=false", "model.val_classifier_fid=false",
                             "trainer.max_epochs=2"], tmp_path, synthetic_mnist_dir)
    assert cfg.trainer.precision == "auto" and cfg.model.channels_last == "auto" and cfg.model.compile == "auto"
    cfg_file = tmp_path / ".hydra" / "config.yaml"
    with caplog.at_level(logging.INFO):
        metrics = train(cfg)
    messages = [r.getMessage() for r in caplog.records]
    (start,) = [m for m in messages if m.startswith("starting:")]
    # 320 synthetic images less 64 held out, batches of 32: 8 steps an epoch
    assert "expected:  2 epochs = 16 steps ≈ " in start and "an epoch ≈ " in start
    assert "precision 32-true, contiguous, eager" in start  # under a minute: the first probe's settings
    assert "faster:" not in start
    plan = yaml.safe_load(cfg_file.read_text())["plan"]
    assert plan["precision"] == "32-true" and plan["channels_last"] is False and plan["compile"] is False
    measured = plan["measured"]
    assert measured["steps"] == 16 and measured["epoch_seconds"] > 0 and measured["train_images_per_s"] > 0
    (note,) = measured["notes"]
    assert note.startswith("precision, channels_last, compile not timed further: the run is ~")
    from ddpm_lit.runs import Run

    settings = Run(tmp_path).settings()  # what sweep tables compare: the choice, not the timings
    assert settings["plan.precision"] == "32-true" and not any(k.startswith("plan.measured") for k in settings)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["hyper_parameters"]["channels_last"] is False and ckpt["hyper_parameters"]["compile"] is False
    assert metrics["first_epoch_seconds"] > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["first_epoch_seconds"] == pytest.approx(
        metrics["first_epoch_seconds"])
    (end,) = [m for m in messages if m.startswith("finished in")]
    assert f"an epoch:    {format_seconds(metrics['first_epoch_seconds'])} (expected at start: " in end


def test_a_forced_setting_is_kept_and_a_bad_one_refused(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    from ddpm_lit.config.build import build
    from ddpm_lit.errors import ConfigError

    cfg = compose_train_cfg([*TINY, "model.channels_last=true", "model.compile=false"], tmp_path, synthetic_mnist_dir)
    module = build(cfg.model)
    assert module.speed_settings() == {"channels_last": True, "compile": False}
    assert module.net.out.weight.is_contiguous(memory_format=torch.channels_last)
    cfg = compose_train_cfg([*TINY, "model.compile=sometimes"], tmp_path, synthetic_mnist_dir)
    with pytest.raises(ConfigError, match="model.compile must be true, false or auto, got 'sometimes'"):
        build(cfg.model)
