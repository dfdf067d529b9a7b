"""trainer.precision=auto, the whole-run time budget and the learning-rate schedule that follows it."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import TINY, compose_train_cfg, tiny_ddpm

from ddpm_lit.apps.train import train
from ddpm_lit.errors import ConfigError
from ddpm_lit.training import planning as budget
from ddpm_lit.training.module import DDPMModule
from ddpm_lit.training.planning import Speed, choose_precision, measure_speed

def small_module(**kwargs) -> DDPMModule:
    return tiny_ddpm(50, **kwargs)


class FakeProbe:
    """Stands in for budget.SpeedProbe: each measure() returns the next of the precision's rates."""

    built: list[str] = []
    calls: list[str] = []
    rates: dict[str, list[float]] = {}

    def __init__(self, module, precision, *args, **kwargs) -> None:
        self.precision = precision
        FakeProbe.built.append(precision)

    def measure(self, min_seconds: float = 1.0) -> Speed:
        FakeProbe.calls.append(self.precision)
        return Speed(self.precision, FakeProbe.rates[self.precision].pop(0), 1.0)


@pytest.fixture
def fake_probe(monkeypatch: pytest.MonkeyPatch) -> type[FakeProbe]:
    FakeProbe.built, FakeProbe.calls, FakeProbe.rates = [], [], {}
    monkeypatch.setattr(budget, "SpeedProbe", FakeProbe)
    monkeypatch.setattr(budget, "matmul_speedup", lambda device, dtype=None: 4.0)  # an AMX CPU
    return FakeProbe


@pytest.mark.parametrize(("bf16", "chosen"), [(105.0, "32-true"), (150.0, "bf16-mixed"), (50.0, "32-true")])
def test_auto_precision_keeps_fp32_unless_another_is_clearly_faster(fake_probe, bf16: float, chosen: str) -> None:
    fake_probe.rates = {"32-true": [100.0, 100.0], "bf16-mixed": [bf16, bf16]}
    best, speeds, notes = choose_precision(None, torch.device("cpu"), 8, 8)
    assert best.precision == chosen and [s.precision for s in speeds] == ["32-true", "bf16-mixed"]
    assert notes == []


def test_auto_precision_is_not_fooled_by_the_first_measurements_cold_start(fake_probe) -> None:
    """A fresh process's first timing is slow whatever the precision; the candidates are timed
    in turn twice, each on the probe built for it once, and each keeps its best, so fp32, timed
    first, is not charged for it."""
    fake_probe.rates = {"32-true": [0.6 * 175.0, 175.0], "bf16-mixed": [160.0, 160.0]}
    best, speeds, _ = choose_precision(None, torch.device("cpu"), 8, 8)
    assert fake_probe.built == ["32-true", "bf16-mixed"]
    assert fake_probe.calls == ["32-true", "bf16-mixed", "32-true", "bf16-mixed"]
    assert best.precision == "32-true"
    assert [s.train_images_per_s for s in speeds] == [175.0, 160.0]


def test_bf16_is_not_built_where_its_matmul_is_not_faster(fake_probe, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a bf16 matmul is no faster than fp32's (a CPU without AMX), the bf16 network is
    neither built nor compiled: that minute goes to training."""
    monkeypatch.setattr(budget, "matmul_speedup", lambda device, dtype=None: 0.7)
    fake_probe.rates = {"32-true": [100.0, 120.0]}
    best, speeds, notes = choose_precision(None, torch.device("cpu"), 8, 8)
    assert fake_probe.built == ["32-true"] and best.precision == "32-true"
    assert [s.train_images_per_s for s in speeds] == [120.0]
    assert notes == ["bf16-mixed not timed (a bf16 matmul runs at 0.70× fp32's here)"]


def test_matmul_speedup_is_measured() -> None:
    ratio = budget.matmul_speedup(torch.device("cpu"), torch.bfloat16, n=256)
    assert math.isfinite(ratio) and ratio > 0
    assert budget.matmul_speedup(torch.device("cpu"), torch.float32, n=256) == pytest.approx(1.0, rel=0.9)


def test_speed_probe_leaves_the_module_and_the_random_state_alone() -> None:
    module = small_module()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    speed = measure_speed(module, "bf16-mixed", torch.device("cpu"), batch_size=8, sample_batch=4, min_seconds=0.05)
    assert torch.equal(torch.rand(3), expected)
    assert speed.train_images_per_s > 0 and speed.sample_evals_per_s > 0
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert module.training  # not switched to eval by the probe's sampling


def test_speed_probe_times_at_least_min_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = budget.SpeedProbe(small_module(), "32-true", torch.device("cpu"), batch_size=4, sample_batch=2)
    steps = []
    monkeypatch.setattr(probe, "_step", lambda: steps.append(1))
    speed = probe.measure(min_seconds=0.2, min_steps=3)
    assert len(steps) > 3  # instant steps: many of them to fill 0.2 s
    assert speed.train_images_per_s <= len(steps) * 4 / 0.2
    steps.clear()
    probe.measure(min_seconds=0.0, min_steps=3)
    assert len(steps) == 3


@pytest.mark.parametrize("progress", [0.0, 0.25, 0.5, 1.0])
def test_cosine_schedule_follows_the_training_progress(monkeypatch: pytest.MonkeyPatch, progress: float) -> None:
    module = small_module(lr_schedule="cosine", min_lr_ratio=0.1, warmup_steps=10)
    monkeypatch.setattr(DDPMModule, "training_progress", lambda self: progress)
    cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    assert module.lr_factor(4) == pytest.approx(0.5 * cosine)  # still warming up: (4 + 1)/10
    assert module.lr_factor(500) == pytest.approx(cosine)
    assert small_module(warmup_steps=10).lr_factor(500) == 1.0  # constant after the warm-up
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine"):
        small_module(lr_schedule="linear")


def test_a_time_budget_becomes_max_time_less_start_up_final_samples_and_reserve(fake_probe, tmp_path: Path) -> None:
    """The plan's arithmetic (the slow tier runs it against the wall clock): 2 min less 5 s of
    start-up, 8 final images × 5 steps at 1 evaluation/s (40 s) and a 7 s reserve leave 68 s."""
    from ddpm_lit.apps.train import plan_time
    from ddpm_lit.config.schema import TrainSettings

    fake_probe.rates = {"32-true": [100.0] * 8, "bf16-mixed": [100.0] * 8}  # bf16 no faster: fp32 stays
    overrides = [*TINY, "trainer.precision=32-true", "post_fit_reserve_seconds=7"]
    cfg = compose_train_cfg([*overrides, "time_budget_minutes=2"], tmp_path, tmp_path)
    out, expected = plan_time(TrainSettings.parse(cfg), small_module(), elapsed=5.0)
    assert out["max_time"]["seconds"] == pytest.approx(68.0, abs=0.5) and "precision" not in out
    assert expected.startswith("2 min 00 s in all (time_budget_minutes): training 1 min 08 s (~6,8")
    assert expected.endswith("images at 100 images/s), then ~47 s for the final samples and figures")
    cfg = compose_train_cfg([*overrides, "time_budget_minutes=1"], tmp_path, tmp_path)
    with pytest.raises(ConfigError, match=r"time_budget_minutes=1 leaves 8 s for training after start-up \(5 s\)"):
        plan_time(TrainSettings.parse(cfg), small_module(), elapsed=5.0)
    cfg = compose_train_cfg([*TINY, "trainer.precision=auto", "time_budget_minutes=null"], tmp_path, tmp_path)
    out, expected = plan_time(TrainSettings.parse(cfg), small_module(), elapsed=5.0)  # auto alone: a precision, no time limit
    assert out == {"precision": "32-true"} and expected is None


@pytest.mark.slow
def test_time_budget_bounds_training_by_wall_clock_and_decays_the_lr_over_it(
    synthetic_mnist_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_train_cfg(
        [*TINY, "logger=csv", "data.check_md5=false", "model.val_classifier_fid=false", "trainer.precision=auto",
         "time_budget_minutes=0.75", "post_fit_reserve_seconds=5", "trainer.max_epochs=-1",
         "model.lr_schedule=cosine", "model.sample_every_n_epochs=0", "final_samples.num=0"],
        tmp_path, synthetic_mnist_dir,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ddpm_lit.apps.train"):
        metrics = train(cfg)
    # the start says the chosen precision and the plan, once
    (start,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("starting:")]
    assert "45 s in all (time_budget_minutes): training " in start
    chosen = start.split(", precision ")[1].split()[0]
    assert chosen in ("32-true", "bf16-mixed")
    # no epoch or step bound: only the timer stopped it, with the cosine at its end
    assert metrics["global_step"] > 20
    assert metrics["fit_seconds"] < 45
    # last.ckpt is the final step's (Lightning validates when the timer stops it, and last.ckpt is
    # rewritten at every validation, improved or not), and its learning rate is the cosine's end
    # (the logged lr-Adam can be up to 20 steps older)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == metrics["global_step"]
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] < 0.05 * cfg.model.optimizer.lr
    timer = next(v for k, v in ckpt["callbacks"].items() if k.startswith("Timer"))
    assert 0.8 * metrics["fit_seconds"] < timer["time_elapsed"]["train"] <= metrics["fit_seconds"]


class StopAfter(L.Callback):
    """Stops fit after ``seconds`` of training, as an interruption would (a checkpoint is written)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, *args) -> None:
        if time.perf_counter() - self.start > self.seconds:
            trainer.should_stop = True


@pytest.mark.slow
def test_a_resumed_budget_run_trains_only_what_is_left_of_its_time(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    """The checkpoint carries Lightning's timer: continuing an interrupted budget run trains for
    the rest of the planned training time, not for all of it again, and ends the cosine at 0."""
    overrides = [*TINY, "logger=csv", "data.check_md5=false", "model.val_classifier_fid=false", "trainer.precision=32-true",
                 "time_budget_minutes=0.6", "post_fit_reserve_seconds=5", "trainer.max_epochs=-1",
                 "model.lr_schedule=cosine", "model.sample_every_n_epochs=0", "final_samples.num=0"]
    cfg = compose_train_cfg(overrides, tmp_path, synthetic_mnist_dir)
    lr = cfg.model.optimizer.lr
    first = train(cfg, extra_callbacks=[StopAfter(12)])
    last = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    done = next(v for k, v in ckpt["callbacks"].items() if k.startswith("Timer"))["time_elapsed"]["train"]
    assert done >= 12 and ckpt["optimizer_states"][0]["param_groups"][0]["lr"] > 0.3 * lr  # stopped early
    resumed = train(compose_train_cfg([*overrides, f"ckpt_path={last}"], tmp_path, synthetic_mnist_dir))
    ckpt = torch.load(last, weights_only=False)
    timer = next(v for k, v in ckpt["callbacks"].items() if k.startswith("Timer"))
    planned = 0.6 * 60 - 5  # the budget less the reserve, less a start-up of a few seconds
    assert planned - 10 < timer["time_elapsed"]["train"] < planned + 2  # the two fits add up to the plan
    assert resumed["fit_seconds"] < planned - done + 5  # the second trained only what was left
    assert resumed["global_step"] > first["global_step"]
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] < 0.05 * lr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["time_budget_minutes=0.1"], "leaves"),
        (["time_budget_minutes=-1"], "positive number"),
        (["time_budget_minutes=5", "+trainer.max_time=00:00:05:00"], "not both"),
    ],
)
def test_bad_time_budgets_are_refused_before_training(synthetic_mnist_dir: Path, tmp_path: Path, overrides, message) -> None:
    cfg = compose_train_cfg([*TINY, "logger=csv", "data.check_md5=false", *overrides], tmp_path, synthetic_mnist_dir)
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_speed_probe_times_a_module_that_will_train_compiled_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    from ddpm_lit.training.module import DDPMModule

    compiled = []
    monkeypatch.setattr(DDPMModule, "compile_network", lambda self: compiled.append(self))
    for flag in (False, True):
        module = tiny_ddpm(20, sample_every_n_epochs=0, compile=flag)
        measure_speed(module, "32-true", torch.device("cpu"), batch_size=4, sample_batch=2, min_seconds=0.0)
        assert len(compiled) == int(flag)  # the probe's copy, not the module itself
        assert all(m is not module for m in compiled)


def test_the_timing_loop_times_its_steps_after_the_warm_up() -> None:
    """planning.timed_steps, the loop of the speed probe and of bench's plain loop: warm-up calls
    untimed, at least `steps` timed ones, and more until `min_seconds` have passed."""
    import time

    from ddpm_lit.training.planning import timed_steps

    calls = []
    step = lambda: (calls.append(1), time.sleep(0.01))  # noqa: E731
    done, seconds = timed_steps(step, torch.device("cpu"), warmup=2, steps=3)
    assert done == 3 and len(calls) == 5 and 0.03 <= seconds < 0.5
    calls.clear()
    done, seconds = timed_steps(step, torch.device("cpu"), steps=2, min_seconds=0.1)
    assert done == len(calls) and done >= 8 and seconds >= 0.1
