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
from ddpm_lit.training.planning import Speed, measure_speed

def small_module(**kwargs) -> DDPMModule:
    return tiny_ddpm(50, **kwargs)


class FakeProbe:
    """Stands in for budget.SpeedProbe: each measure() returns the next of its settings' rates
    (keyed by ``str(Settings)``, e.g. ``"32-true, contiguous, eager"``)."""

    built: list[str] = []
    calls: list[str] = []
    rates: dict[str, list[float]] = {}
    sample_rate = 1000.0  # network evaluations/s while sampling

    def __init__(self, module, precision, *args, channels_last=None, compile=None, **kwargs) -> None:
        self.key = str(budget.Settings(precision, bool(channels_last), bool(compile)))
        FakeProbe.built.append(self.key)

    def measure(self, min_seconds: float = 1.0, min_steps: int = 3) -> Speed:
        FakeProbe.calls.append(self.key)
        return Speed(self.key.split(",")[0], FakeProbe.rates[self.key].pop(0), FakeProbe.sample_rate)


@pytest.fixture
def fake_probe(monkeypatch: pytest.MonkeyPatch) -> type[FakeProbe]:
    FakeProbe.built, FakeProbe.calls, FakeProbe.rates, FakeProbe.sample_rate = [], [], {}, 1000.0
    monkeypatch.setattr(budget, "SpeedProbe", FakeProbe)
    monkeypatch.setattr(budget, "matmul_speedup", lambda device, dtype=None: 4.0)  # an AMX CPU
    return FakeProbe


FP32, BF16 = "32-true, contiguous, eager", "bf16-mixed, contiguous, eager"
FP32_NHWC, BF16_NHWC = "32-true, channels-last, eager", "bf16-mixed, channels-last, eager"
FP32_FAST, BF16_FAST = "32-true, channels-last, compiled", "bf16-mixed, channels-last, compiled"


def length(batches: int, images_per_batch: int = 8) -> budget.RunLength:
    """A run of ``batches`` steps of ``images_per_batch`` images, without validation."""
    return budget.run_length(train_images=batches * images_per_batch, val_images=8, batch_size=images_per_batch,
                             max_epochs=1, max_steps=-1, limit_val_batches=0)


def choose(seconds_at_100: float, module=None, **kwargs) -> budget.SpeedPlan:
    """choose_settings for a run that lasts ``seconds_at_100`` s at 100 images/s."""
    module = module if module is not None else small_module(channels_last=False, compile=False)
    return budget.choose_settings(module, torch.device("cpu"), 8, 8, length=length(round(seconds_at_100 * 100 / 8)),
                                  **kwargs)


@pytest.mark.parametrize(("bf16", "chosen"), [(105.0, "32-true"), (150.0, "bf16-mixed"), (50.0, "32-true")])
def test_auto_precision_keeps_fp32_unless_another_is_clearly_faster(fake_probe, bf16: float, chosen: str) -> None:
    fake_probe.rates = {FP32: [100.0] * 3, BF16: [bf16, bf16]}
    plan = choose(300)
    assert plan.settings.precision == chosen and list(plan.timings) == [FP32, BF16]
    assert plan.notes == []


def test_auto_precision_is_not_fooled_by_the_first_measurements_cold_start(fake_probe) -> None:
    """A fresh process's first timing is slow whatever the precision; the candidates are timed
    in turn twice, each on the probe built for it once, and each keeps its best, so fp32, timed
    first, is not charged for it."""
    fake_probe.rates = {FP32: [0.5 * 175.0, 0.6 * 175.0, 175.0], BF16: [160.0, 160.0]}
    plan = choose(300)
    assert fake_probe.built == [FP32, BF16]
    assert fake_probe.calls == [FP32, FP32, BF16, FP32, BF16]  # the first probe's rough timing, then two rounds
    assert plan.settings.precision == "32-true"
    assert plan.timings == {FP32: 175.0, BF16: 160.0}


def test_bf16_is_not_built_where_its_matmul_is_not_faster(fake_probe, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a bf16 matmul is no faster than fp32's (a CPU without AMX), the bf16 network is
    neither built nor compiled: that minute goes to training."""
    monkeypatch.setattr(budget, "matmul_speedup", lambda device, dtype=None: 0.7)
    fake_probe.rates = {FP32: [100.0, 110.0, 120.0]}
    plan = choose(300)
    assert fake_probe.built == [FP32] and plan.settings.precision == "32-true"
    assert plan.timings == {FP32: 120.0}
    assert plan.notes == ["bf16-mixed not timed (a bf16 matmul runs at 0.70× fp32's here)"]


def test_a_short_run_keeps_the_first_probes_settings_untimed(fake_probe) -> None:
    """Under a minute, timing the other settings would cost a good share of the run."""
    fake_probe.rates = {FP32: [100.0]}
    plan = choose(30, module=small_module(channels_last="auto", compile="auto"))  # precision, channels_last and compile all auto
    assert fake_probe.built == [FP32] and plan.settings == budget.Settings("32-true", False, False)
    assert plan.notes == ["precision, channels_last, compile not timed further: the run is ~30 s"]
    assert plan.speed.train_images_per_s == 100.0


def test_a_run_of_minutes_times_channels_last_eagerly_and_is_not_compiled(fake_probe) -> None:
    fake_probe.rates = {FP32: [100.0] * 3, FP32_NHWC: [125.0] * 2, BF16: [90.0] * 2, BF16_NHWC: [100.0] * 2}
    plan = choose(300, module=small_module(channels_last="auto", compile="auto"))
    assert fake_probe.built == [FP32, FP32_NHWC, BF16, BF16_NHWC]
    assert plan.settings == budget.Settings("32-true", True, False) and plan.speed.train_images_per_s == 125.0
    assert plan.notes == ["not compiled: ~5 min 00 s eagerly, under 10 min 00 s"]


@pytest.mark.parametrize(("compiled", "chosen"), [(150.0, BF16_FAST), (105.0, FP32)])
def test_a_long_run_is_compiled_channels_last_where_that_times_faster(fake_probe, compiled: float, chosen: str) -> None:
    """Over 10 minutes, compile=auto and channels_last=auto time the compiled NHWC network in
    each precision against the eager first probe, which stays unless beaten by 1.1×."""
    fake_probe.rates = {FP32: [100.0] * 3, FP32_FAST: [0.7 * compiled] * 2, BF16_FAST: [compiled] * 2}
    plan = choose(3600, module=small_module(channels_last="auto", compile="auto"))
    assert fake_probe.built == [FP32, FP32_FAST, BF16_FAST]
    assert str(plan.settings) == chosen
    record = plan.record()
    assert record["measured"]["timed"] == {FP32: 100.0, FP32_FAST: round(0.7 * compiled, 1), BF16_FAST: compiled}
    assert (record["precision"], record["channels_last"], record["compile"]) == (
        plan.settings.precision, plan.settings.channels_last, plan.settings.compiled)


def test_several_processes_keep_the_first_probes_settings(fake_probe) -> None:
    """Each rank plans alone: timing further, ranks could choose apart or reach their first
    collective call minutes apart (a DDP timeout)."""
    fake_probe.rates = {FP32: [100.0]}
    plan = choose(3600, module=small_module(channels_last="auto", compile="auto"), processes=2)
    assert fake_probe.built == [FP32] and plan.settings == budget.Settings("32-true", False, False)
    assert plan.notes == ["precision, channels_last, compile not timed further: 2 processes would each time apart "
                          "(set them to choose)"]


def test_fixed_settings_are_timed_once_for_the_estimate(fake_probe) -> None:
    fake_probe.rates = {FP32_FAST: [80.0]}
    plan = choose(3600, module=small_module(channels_last=True, compile=True), precision="32-true")
    assert fake_probe.built == [FP32_FAST] and fake_probe.calls == [FP32_FAST]
    assert plan.speed.train_images_per_s == 80.0 and plan.notes == []


def test_a_gpu_prefers_bf16_where_it_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert budget.device_precisions(torch.device("cuda")) == ("bf16-mixed", "32-true")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert budget.device_precisions(torch.device("cuda")) == ("32-true",)
    assert budget.device_precisions(torch.device("cpu")) == ("32-true", "bf16-mixed")


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

    fake_probe.rates = {FP32: [100.0] * 8, BF16: [100.0] * 8}  # bf16 no faster: fp32 stays
    fake_probe.sample_rate = 1.0
    overrides = [*TINY, "trainer.precision=32-true", "post_fit_reserve_seconds=7"]
    cfg = compose_train_cfg([*overrides, "time_budget_minutes=2"], tmp_path, tmp_path)
    plan = plan_time(TrainSettings.parse(cfg), small_module(), elapsed=5.0)
    assert plan.trainer["max_time"]["seconds"] == pytest.approx(68.0, abs=1.5) and "precision" not in plan.trainer
    assert plan.expected.startswith("2 min 00 s in all (time_budget_minutes): training 1 min 08 s (~6,8")
    assert plan.expected.endswith("images at 100 images/s), then ~47 s for the final samples and figures")
    cfg = compose_train_cfg([*overrides, "time_budget_minutes=1"], tmp_path, tmp_path)
    with pytest.raises(ConfigError, match=r"time_budget_minutes=1 leaves 8 s for training after start-up \(5 s\)"):
        plan_time(TrainSettings.parse(cfg), small_module(), elapsed=5.0)
    cfg = compose_train_cfg([*TINY, "trainer.precision=auto", "time_budget_minutes=null"], tmp_path, tmp_path)
    plan = plan_time(TrainSettings.parse(cfg), small_module(), elapsed=5.0)  # auto alone: a precision, no time limit
    assert plan.trainer == {"precision": "32-true"} and "max_time_seconds" not in plan.record()["measured"]


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
    chosen = start.split(", precision ")[1].split()[0].rstrip(",")
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
