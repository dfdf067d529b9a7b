"""Wall-clock planning of a training run: the precision this machine trains fastest in, measured,
and how much of a whole-run time budget is left for training.

The same 2-core preset trains at very different speeds on different CPUs, and bf16 autocast is
faster than fp32 on some (AMX) and slower on others (0.78–0.98× on the Xeon without AMX measured
in docs/results.md); so the precision is chosen by timing a few real training steps of the run's own network in each,
and the training time is what the budget leaves once start-up and the measured cost of the final
samples are taken off (``trainer.max_time``).
"""

from __future__ import annotations

import contextlib
import logging
import copy
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from ddpm_lit.errors import ConfigError
from ddpm_lit.generation.generate import labels_for
from ddpm_lit.generation.speed import autocast, sync, timed_steps

# Precisions ``trainer.precision=auto`` chooses from; the first is kept unless another is faster
# by more than ``MIN_SPEEDUP`` (timings of a few steps vary by a few per cent).
CANDIDATE_PRECISIONS = ("32-true", "bf16-mixed")
MIN_SPEEDUP = 1.1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Speed:
    """Measured throughput of one module in one precision on one device."""

    precision: str
    train_images_per_s: float
    sample_evals_per_s: float  # network evaluations per second, at the sampling batch

    def __str__(self) -> str:
        return (f"{self.precision}: {self.train_images_per_s:.0f} train images/s, "
                f"{self.sample_evals_per_s:.0f} sampling network evaluations/s")


@dataclass(frozen=True)
class Settings:
    """How a network trains: its precision, memory format and compilation."""

    precision: str
    channels_last: bool
    compiled: bool

    def __str__(self) -> str:
        return (f"{self.precision}, {'channels-last' if self.channels_last else 'contiguous'}, "
                f"{'compiled' if self.compiled else 'eager'}")


def own_rng(device: torch.device) -> contextlib.AbstractContextManager:
    """Random draws inside leave the global random state of the CPU (and of ``device``, a GPU) as
    it was."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


class SpeedProbe:
    """A copy of the module in one precision whose training and sampling speed can be timed
    again and again: it is built (and compiled, for a module that will train compiled) once.

    The copy leaves the module's weights, BatchNorm statistics and mode alone. A module that will
    train compiled (``model.compile``) is timed compiled, the compilation in the untimed warm-up:
    on the Xeon of docs/results.md, eager timings chose bf16 (194 against 170 images/s), which then
    trained compiled at 126 images/s where compiled fp32 had trained at 203. Inductor caches the
    graphs, so the run's own compilation then costs little.
    """

    def __init__(self, module: Any, precision: str, device: torch.device, batch_size: int, sample_batch: int,
                 warmup: int = 2, channels_last: bool | None = None, compile: bool | None = None,
                 ema: Any = None) -> None:
        """``channels_last`` and ``compile``: the settings to time (None: as the module will train,
        its own ``channels_last``/``compile`` when they are true or false). ``ema``: the run's
        ``training.ema.EMA`` callback, whose average each timed step updates as the run's will
        (on 2 CPU cores, ~0.1 s a step for the 14 M-parameter UNet)."""
        self.precision, self.device, self.sample_batch = precision, device, sample_batch
        own = module.speed_settings()
        self.channels_last = channels_last if channels_last is not None else own.get("channels_last") is True
        self.compiled = compile if compile is not None else own.get("compile") is True
        with own_rng(device):
            self.module = copy.deepcopy(module).to(device).train()
            if "channels_last" in own:
                self.module.use_speed_settings(channels_last=self.channels_last)
            if self.compiled:
                self.module.compile_network()
            self.opt = torch.optim.Adam(self.module.parameters(), lr=1e-6)
            self.ema, self.steps_done = ema, 0
            self.averaged = ema.averaged_model(self.module, device) if ema is not None else None
            self.x0 = torch.rand(batch_size, *self.module.image_shape, device=device) * 2 - 1
            labels = labels_for(self.module, batch_size)
            self.labels = labels.to(device) if labels is not None else None
            for _ in range(warmup):  # compilation, and a recompilation after the first optimizer step
                self._step()
            with autocast(device, precision):
                self.module.sample(sample_batch, **self._chain(1))  # the sampling graph's warm-up
        self.module.train()

    @property
    def settings(self) -> Settings:
        return Settings(self.precision, self.channels_last, self.compiled)

    def _chain(self, steps: int) -> dict[str, int]:
        """``steps`` for a model with a reverse chain; nothing for a one-pass model (one evaluation per image)."""
        return {"steps": steps} if self.module.reverse_chain else {}

    def _step(self) -> None:
        """One training step of the family's own (``GenerativeModule.timing_step``)."""
        self.module.timing_step(self.x0, self.labels, self.opt, lambda: autocast(self.device, self.precision))
        self.steps_done += 1
        if self.averaged is not None and self.ema.should_update(self.steps_done):
            self.averaged.update_parameters(self.module)

    def measure(self, min_seconds: float = 1.0, min_steps: int = 3) -> Speed:
        """Training images/s over at least ``min_steps`` steps and ``min_seconds`` (a handful of
        steps of a small network lasts ~0.1 s, where one hiccup of the machine moves the figure by
        tens of per cent), and sampling network evaluations/s over a 3-step chain."""
        with own_rng(self.device):
            steps, seconds = timed_steps(self._step, self.device, steps=min_steps, min_seconds=min_seconds)
            train_rate = steps * self.x0.shape[0] / seconds
            with autocast(self.device, self.precision):
                start = time.perf_counter()
                self.module.sample(self.sample_batch, **self._chain(3))
                sync(self.device)
            evaluations = self.module.evaluations_per_image(3, None)  # network evaluations per image
            sample_rate = evaluations * self.sample_batch / (time.perf_counter() - start)
            self.module.train()
        return Speed(self.precision, train_rate, sample_rate)


def measure_speed(
    module: Any,
    precision: str,
    device: torch.device,
    batch_size: int,
    sample_batch: int,
    min_seconds: float = 1.0,
) -> Speed:
    """Training images/s and sampling network evaluations/s of ``module`` in ``precision`` (see
    ``SpeedProbe``); the module and the global random state are left as they were."""
    return SpeedProbe(module, precision, device, batch_size, sample_batch).measure(min_seconds)


def matmul_seconds(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 3) -> float:
    """Seconds of one n×n×n matrix product in ``dtype`` on ``device``: the best of ``repeats``
    timings after a warm-up (the global random state is left as it was)."""
    with own_rng(device):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_speedup(device: torch.device, dtype: torch.dtype = torch.bfloat16, n: int = 1024) -> float:
    """How many times faster an n×n matmul runs in ``dtype`` than in fp32 on ``device`` (best of
    three timings each, ~0.2 s on a 2-core CPU)."""
    return matmul_seconds(device, torch.float32, n) / matmul_seconds(device, dtype, n)


def screen_candidates(device: torch.device, candidates: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """The candidates worth timing as a whole network, and why the others were not.

    Building and compiling a network in one more precision costs about a minute on a 2-core CPU
    with an empty Inductor cache, so bf16 is timed only where a bf16 matmul is at least
    ``MIN_SPEEDUP`` times as fast as fp32's: the network's gain from bf16 autocast comes from its
    convolutions and matmuls (on the Xeon without AMX of docs/results.md the matmul ran at 0.6–0.8× and
    the compiled network at 0.6×; with AMX the matmul runs ~4× and the network ~1.5×).
    """
    kept, notes = [], []
    for precision in candidates:
        if precision.startswith("bf16") and precision != candidates[0]:
            ratio = matmul_speedup(device, torch.bfloat16)
            if ratio < MIN_SPEEDUP:
                notes.append(f"{precision} not timed (a bf16 matmul runs at {ratio:.2f}× fp32's here)")
                continue
        kept.append(precision)
    return tuple(kept), notes


def sampling_seconds(speed: Speed, num_images: int, steps: int) -> float:
    """Expected seconds to draw ``num_images`` images with a ``steps``-step chain."""
    return num_images * steps / speed.sample_evals_per_s


def format_seconds(seconds: float) -> str:
    """``3 h 05 min``, ``12 min 05 s`` or ``48 s``."""
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        minutes = round(seconds / 60)
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


# ---- how long a run will take --------------------------------------------------------------
@dataclass(frozen=True)
class RunLength:
    """What a run will do, counted before it starts: the inputs of its time estimate.

    ``batches`` is None for a run bounded by neither epochs nor steps (the wall clock stops it).
    Evaluations count network calls over all the images of one draw."""

    batches: int | None
    batches_per_epoch: int
    batch_size: int
    bound: str                     # "50 epochs", "max_steps=200"
    validations: int               # validation passes
    val_images: int                # images each pass scores (val/loss)
    sampled_validations: int       # passes that also draw the validation samples
    val_sample_evaluations: float  # network calls of those samples
    final_evaluations: float       # network calls of the final samples

    @property
    def epochs(self) -> float:
        return (self.batches or 0) / max(self.batches_per_epoch, 1)


def count_batches(n_images: int, batch_size: int, world_size: int, limit: float | int | None, drop_last: bool) -> int:
    """Batches of one epoch on one rank, as Lightning counts them: ``limit`` a count (int) or a
    fraction (float) of them."""
    per_rank = -(-n_images // world_size)
    n = per_rank // batch_size if drop_last else -(-per_rank // batch_size)
    if limit is None:
        return n
    if isinstance(limit, float) and limit <= 1.0:
        return int(n * limit)
    return min(n, int(limit))


def run_length(
    *, train_images: int, val_images: int, batch_size: int, world_size: int = 1,
    max_epochs: int | None, max_steps: int, steps_per_batch: int = 1,
    limit_train_batches: float | int | None = None, limit_val_batches: float | int | None = None,
    check_val_every_n_epoch: int | None = 1, sample_every_n_epochs: int = 0, val_sample_evaluations: float = 0.0,
    final_evaluations: float = 0.0,
) -> RunLength:
    """The batches, validation passes and drawn images of a run of ``train_images`` and
    ``val_images`` (a validation pass after every ``check_val_every_n_epoch`` epochs, and one
    more where a step bound stops an epoch midway, ``StopAtMaxSteps``), on one rank of
    ``world_size``. ``max_steps`` counts optimizer steps, ``steps_per_batch`` of them a batch."""
    per_epoch = count_batches(train_images, batch_size, world_size, limit_train_batches, drop_last=True)
    if per_epoch < 1:
        raise ConfigError(f"{train_images} training images make no batch of {batch_size} per rank")
    epochs = 1000 if max_epochs is None else max_epochs  # Lightning's default when neither bound is set
    by_steps = -(-max_steps // steps_per_batch) if max_steps is not None and max_steps > 0 else None
    by_epochs = epochs * per_epoch if epochs >= 0 else None
    bounds = [b for b in (by_steps, by_epochs) if b is not None]
    batches = min(bounds) if bounds else None
    if batches is None:
        bound = "the wall clock"
    elif by_steps is not None and batches == by_steps and (by_epochs is None or by_steps < by_epochs):
        bound = f"max_steps={max_steps}"
    else:
        bound = f"{epochs} epoch{'s' * (epochs != 1)}"
    val_per_pass = count_batches(val_images, batch_size, world_size, limit_val_batches, drop_last=False)
    val_per_pass = min(val_images, val_per_pass * batch_size)
    full, rest = divmod(batches or 0, per_epoch)
    every = check_val_every_n_epoch or 1
    validations = full // every + (1 if rest else 0) if val_per_pass else 0
    sampled = 0
    if sample_every_n_epochs and validations:
        sampled = min(validations, full // sample_every_n_epochs + (1 if rest or full % sample_every_n_epochs else 0))
    return RunLength(batches, per_epoch, batch_size, bound, validations, val_per_pass, sampled,
                     val_sample_evaluations, final_evaluations)


@dataclass(frozen=True)
class Estimate:
    """A run's expected seconds, from its ``RunLength`` and a measured ``Speed``. Validation
    images cost one network call each, at the sampling rate (a forward pass in eval mode)."""

    length: RunLength
    speed: Speed
    start_seconds: float = 0.0   # spent before training: start-up, this plan
    after_seconds: float = 0.0   # the reserve after the fit (figures, closing the loggers)

    @property
    def train_seconds(self) -> float:
        return (self.length.batches or 0) * self.length.batch_size / self.speed.train_images_per_s

    @property
    def validation_seconds(self) -> float:
        n = self.length
        evaluations = n.validations * n.val_images + n.sampled_validations * n.val_sample_evaluations
        return evaluations / self.speed.sample_evals_per_s

    @property
    def final_seconds(self) -> float:
        return self.length.final_evaluations / self.speed.sample_evals_per_s

    @property
    def total_seconds(self) -> float:
        return self.start_seconds + self.train_seconds + self.validation_seconds + self.final_seconds + self.after_seconds

    @property
    def epoch_seconds(self) -> float:
        """One whole epoch: its batches and one validation pass, with its samples when it draws them."""
        n = self.length
        val = (n.val_images + (n.val_sample_evaluations if n.sampled_validations else 0)) / self.speed.sample_evals_per_s
        return n.batches_per_epoch * n.batch_size / self.speed.train_images_per_s + (val if n.validations else 0)

    def describe(self) -> str:
        """``50 epochs = 21,450 steps ≈ 14 h 05 min at 27 images/s on this machine (...)``."""
        n = self.length
        if n.batches is None:
            return f"no epoch or step bound; {self.speed.train_images_per_s:,.1f} train images/s on this machine"
        head = (f"{n.bound} = {n.batches:,} steps ≈ {format_seconds(self.total_seconds)} at "
                f"{self.speed.train_images_per_s:,.1f} train images/s on this machine")
        parts = []
        if n.batches >= n.batches_per_epoch:
            parts.append(f"an epoch ≈ {format_seconds(self.epoch_seconds)}: {n.batches_per_epoch:,} steps"
                         + (" and a validation pass" if n.validations else ""))
        else:
            parts.append(f"training {format_seconds(self.train_seconds)}")
            if n.validations:
                parts.append(f"validation {format_seconds(self.validation_seconds)}")
        if n.final_evaluations:
            parts.append(f"final samples {format_seconds(self.final_seconds)}")
        return f"{head} ({'; '.join(parts)})"

    def record(self) -> dict[str, Any]:
        """The expected seconds of an epoch, and of the whole run when it has a bound."""
        bounded = self.length.batches is not None
        return {"steps": self.length.batches, "bound": self.length.bound, "epoch_seconds": round(self.epoch_seconds, 1),
                **({"total_seconds": round(self.total_seconds, 1)} if bounded else {})}


# A CPU run expected to last longer than this gets a line naming the faster routes.
ADVISE_AFTER_SECONDS = 3600.0
# What that line says of the quick preset: its README/docs/results.md headline (a test checks it is there).
QUICK_HEADLINE = "MNIST-FID 2.87, recall 0.894"


def faster_routes(estimate: Estimate, device: torch.device) -> str | None:
    """One line for a CPU run that will take more than ``ADVISE_AFTER_SECONDS``: the quick
    preset and a GPU. Nothing is refused; None otherwise."""
    if device.type != "cpu" or estimate.length.batches is None or estimate.total_seconds <= ADVISE_AFTER_SECONDS:
        return None
    return (f"faster:    this run goes on as asked; `python train.py experiment=quick` trains a smaller network in "
            f"14 min in all on a 2-core CPU ({QUICK_HEADLINE}, docs/results.md); this one belongs on a GPU "
            "(`trainer=gpu`, docs/benchmarks.md)")


# ---- choosing the settings -------------------------------------------------------------------
# Runs expected to train longer than this eagerly are compiled when ``compile: auto`` (compiling
# the UNet costs tens of seconds on 2 CPU cores, and Inductor's cache then serves the run).
COMPILE_AFTER_SECONDS = 600.0
# A run expected to last less than this has its ``auto`` settings as the first probe ran them:
# timing the others would cost a good share of the run itself.
TIME_AFTER_SECONDS = 60.0


def device_precisions(device: torch.device) -> tuple[str, ...]:
    """The precisions ``auto`` chooses from on ``device``, the preferred first: bf16 autocast on a
    GPU that has it, fp32 on a CPU (whose bf16 is timed, and kept only when clearly faster)."""
    if device.type == "cuda":
        return ("bf16-mixed", "32-true") if torch.cuda.is_bf16_supported() else ("32-true",)
    return CANDIDATE_PRECISIONS


@dataclass
class SpeedPlan:
    """The settings a run trains with, the speed measured for them, and what was timed to decide."""

    settings: Settings
    speed: Speed
    timings: dict[str, float]   # a candidate's settings → its best train images/s
    # ``speed``: the chosen settings' mean over the timing rounds (the first probe's alone when
    # nothing else was timed), which the estimate uses
    notes: list[str]
    seconds: float              # spent timing (and compiling)

    def record(self) -> dict[str, Any]:
        """What the run's config and loggers keep of it (``plan`` in .hydra/config.yaml): the
        settings chosen, and under ``measured`` the rates and notes that chose them (which differ
        from run to run, and which sweep tables leave out: ``runs.IGNORED``)."""
        return {"precision": self.settings.precision, "channels_last": self.settings.channels_last,
                "compile": self.settings.compiled,
                "measured": {"train_images_per_s": round(self.speed.train_images_per_s, 1),
                             "sample_evals_per_s": round(self.speed.sample_evals_per_s, 1),
                             "timed": {k: round(v, 1) for k, v in self.timings.items()}, "notes": list(self.notes),
                             "planning_seconds": round(self.seconds, 1)}}

    def describe(self) -> str:
        timed = "; ".join(f"{k}: {v:,.1f}" for k, v in self.timings.items())
        if len(self.timings) == 1:
            return f"training in {self.settings} (timed here: {self.speed.train_images_per_s:,.1f} train images/s)" + \
                "".join(f"; {note}" for note in self.notes)
        return (f"training in {self.settings} (train images/s timed here, best of each: {timed}; "
                f"the estimate's: {self.speed.train_images_per_s:,.1f}, the chosen one's mean)"
                + "".join(f"; {note}" for note in self.notes))


def choose_settings(
    model: Any, device: torch.device, batch_size: int, sample_batch: int, *, precision: str = "auto",
    length: RunLength | None = None, budget_seconds: float | None = None, rounds: int = 2, ema: Any = None,
    processes: int = 1,
) -> SpeedPlan:
    """The precision, memory format and compilation ``model`` trains fastest with on ``device``,
    for the ``auto`` ones among ``precision`` and the model's ``speed_settings``, and the speed
    measured for them.

    A first probe times a few steps as the run would start (the first of ``device_precisions``,
    contiguous, eager; the fixed settings as set): with nothing ``auto``, that is the measure. A
    run it puts under ``TIME_AFTER_SECONDS`` keeps those settings. A run over
    ``COMPILE_AFTER_SECONDS`` (or of unknown ``length``: a wall-clock run, the benchmark) is
    compiled under ``compile: auto``, channels-last under ``channels_last: auto`` (the pair
    measured 1.4× on an AMD EPYC and 2.1× on a Xeon with AMX, docs/benchmarks.md); a shorter one
    times channels-last against contiguous, eagerly. Each precision left by the matmul screen
    (``screen_candidates``) is then timed with them, compiled candidates after their compilation,
    all in turn ``rounds`` times; the first probe's settings are kept unless another trains
    ``MIN_SPEEDUP`` times as fast. Each step updates ``ema``'s average, as the run's steps do.

    A run of several ``processes`` keeps the first probe's settings: each rank plans alone, and
    ranks timing apart could choose apart, or reach their first collective call minutes apart.
    """
    start = time.perf_counter()
    own = model.speed_settings()
    want_cl, want_compile = own.get("channels_last"), own.get("compile")
    precisions = device_precisions(device) if precision == "auto" else (precision,)
    first = Settings(precisions[0], want_cl is True, want_compile is True)
    probes = {first: SpeedProbe(model, first.precision, device, batch_size, sample_batch, warmup=1 if not first.compiled else 2,
                                channels_last=first.channels_last if want_cl is not None else None,
                                compile=first.compiled if want_compile is not None else None, ema=ema)}
    rough = probes[first].measure(min_seconds=0.3, min_steps=2)
    best_of = {first: rough}
    autos = [name for name, value in (("precision", precision), ("channels_last", want_cl), ("compile", want_compile))
             if value == "auto"]
    notes: list[str] = []
    if length is not None and length.batches is not None:
        expected = Estimate(length, rough).total_seconds
    else:
        expected = budget_seconds if budget_seconds is not None else math.inf
    if not autos:
        return SpeedPlan(first, rough, {str(first): rough.train_images_per_s}, notes, time.perf_counter() - start)
    if processes > 1:
        notes.append(f"{', '.join(autos)} not timed further: {processes} processes would each time apart "
                     "(set them to choose)")
        return SpeedPlan(first, rough, {str(first): rough.train_images_per_s}, notes, time.perf_counter() - start)
    if expected < TIME_AFTER_SECONDS:
        notes.append(f"{', '.join(autos)} not timed further: the run is ~{format_seconds(expected)}")
        return SpeedPlan(first, rough, {str(first): rough.train_images_per_s}, notes, time.perf_counter() - start)
    if want_compile == "auto":
        compiled = expected > COMPILE_AFTER_SECONDS
        if not compiled:
            notes.append(f"not compiled: ~{format_seconds(expected)} eagerly, under {format_seconds(COMPILE_AFTER_SECONDS)}")
    else:
        compiled = want_compile is True
    if want_cl == "auto":
        layouts = [True] if compiled and want_compile == "auto" else [False, True]
    else:
        layouts = [want_cl is True]
    kept = precisions
    if precision == "auto":
        kept, screened = screen_candidates(device, precisions)
        notes.extend(screened)
    candidates = [first] + [c for p in kept for cl in layouts if (c := Settings(p, cl, compiled)) != first]
    for c in candidates[1:]:
        probes[c] = SpeedProbe(model, c.precision, device, batch_size, sample_batch, warmup=2 if c.compiled else 1,
                               channels_last=c.channels_last if want_cl is not None else None,
                               compile=c.compiled if want_compile is not None else None, ema=ema)
    measured: dict[Settings, list[Speed]] = {c: [] for c in candidates}
    for _ in range(rounds):
        for c in candidates:
            speed = probes[c].measure(min_seconds=1.0, min_steps=2)
            measured[c].append(speed)
            if c not in best_of or speed.train_images_per_s > best_of[c].train_images_per_s:
                best_of[c] = speed
    chosen = first
    for c in candidates[1:]:
        if best_of[c].train_images_per_s > MIN_SPEEDUP * best_of[chosen].train_images_per_s:
            chosen = c
    timings = {str(c): best_of[c].train_images_per_s for c in candidates}
    # Chosen by each one's best, which a fresh process's one-off costs do not lower; the estimate
    # from the chosen one's mean over the rounds, which this machine's drift lowers as it will the run.
    rounds_of = measured[chosen]
    typical = Speed(chosen.precision, statistics.fmean(s.train_images_per_s for s in rounds_of),
                    statistics.fmean(s.sample_evals_per_s for s in rounds_of))
    return SpeedPlan(chosen, typical, timings, notes, time.perf_counter() - start)


@dataclass
class RunPlan:
    """What the start-up plan decides: trainer arguments (``precision``, ``max_time``), the
    model's speed settings, and the run's expected length in words."""

    trainer: dict[str, Any]
    speed: SpeedPlan
    estimate: Estimate | None
    expected: str
    advice: str | None

    def record(self) -> dict[str, Any]:
        """``SpeedPlan.record``, with the estimate and ``max_time`` under ``measured``."""
        record = self.speed.record()
        record["measured"].update(self.estimate.record() if self.estimate is not None else {})
        if "max_time" in self.trainer:
            record["measured"]["max_time_seconds"] = round(self.trainer["max_time"]["seconds"], 1)
        return record


def plan_run(
    model: Any, *, precision: str, budget_minutes: float | None, device: torch.device, batch_size: int,
    final_samples: int, final_sample_steps: int | None, reserve_seconds: float, elapsed: float,
    length: RunLength | None = None, ema: Any = None, processes: int = 1,
) -> RunPlan:
    """Measure how fast ``model`` trains here, choose its ``auto`` settings (``choose_settings``)
    and say how long the run will take.

    A time budget (the whole run, in minutes) becomes ``max_time``: what is left after
    ``elapsed`` seconds of start-up, the final samples' expected time at the measured sampling
    speed and ``reserve_seconds``. A run bounded by epochs or steps (``length``) gets its
    expected duration (``Estimate``), and a line naming the faster routes when that is long on
    a CPU (``faster_routes``).
    """
    t0 = time.perf_counter()
    sample_batch = final_samples if final_samples > 0 else 64
    budget_seconds = budget_minutes * 60 if budget_minutes is not None else None
    speed_plan = choose_settings(model, device, batch_size, sample_batch, precision=precision,
                                 length=length if budget_minutes is None else None, budget_seconds=budget_seconds,
                                 ema=ema, processes=processes)
    speed = speed_plan.speed
    settings = speed_plan.settings
    model.use_speed_settings(**{k: v for k, v in (("channels_last", settings.channels_last),
                                                 ("compile", settings.compiled)) if k in model.speed_settings()})
    log.info("%s", speed_plan.describe())
    out: dict[str, Any] = {"precision": settings.precision} if precision == "auto" else {}
    start_up = elapsed + time.perf_counter() - t0  # the speed probe included
    if budget_minutes is None:
        if length is None:
            return RunPlan(out, speed_plan, None, f"{speed.train_images_per_s:,.1f} train images/s on this machine", None)
        estimate = Estimate(length, speed, start_seconds=start_up, after_seconds=reserve_seconds)
        return RunPlan(out, speed_plan, estimate, estimate.describe(), faster_routes(estimate, device))
    # counted as the speed probe counts them: per step, unguided
    per_image = model.evaluations_per_image(final_sample_steps, None,
                                            num_timesteps=model.num_timesteps if model.reverse_chain else None)
    after = sampling_seconds(speed, sample_batch, per_image if final_samples > 0 else 0) + reserve_seconds
    seconds = budget_minutes * 60 - start_up - after
    if seconds < 10:
        raise ConfigError(
            f"time_budget_minutes={budget_minutes} leaves {seconds:.0f} s for training after start-up "
            f"({start_up:.0f} s) and the final samples and figures (~{after:.0f} s); raise it"
        )
    out["max_time"] = {"seconds": seconds}
    expected = (
        f"{format_seconds(budget_minutes * 60)} in all (time_budget_minutes): training {format_seconds(seconds)} "
        f"(~{seconds * speed.train_images_per_s:,.0f} images at {speed.train_images_per_s:.0f} images/s), "
        f"then ~{format_seconds(after)} for the final samples and figures"
    )
    estimate = Estimate(length, speed) if length is not None else None
    if estimate is not None and estimate.epoch_seconds < seconds:
        expected += f"; an epoch ≈ {format_seconds(estimate.epoch_seconds)}"
    return RunPlan(out, speed_plan, estimate, expected, None)
