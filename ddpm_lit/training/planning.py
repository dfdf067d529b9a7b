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
                 warmup: int = 2) -> None:
        self.precision, self.device, self.sample_batch = precision, device, sample_batch
        with own_rng(device):
            self.module = copy.deepcopy(module).to(device).train()
            if module.hparams.get("compile"):
                self.module.compile_network()
            self.opt = torch.optim.Adam(self.module.parameters(), lr=1e-6)
            self.x0 = torch.rand(batch_size, *self.module.image_shape, device=device) * 2 - 1
            labels = labels_for(self.module, batch_size)
            self.labels = labels.to(device) if labels is not None else None
            for _ in range(warmup):  # compilation, and a recompilation after the first optimizer step
                self._step()
            with autocast(device, precision):
                self.module.sample(sample_batch, **self._chain(1))  # the sampling graph's warm-up
        self.module.train()

    def _chain(self, steps: int) -> dict[str, int]:
        """``steps`` for a model with a reverse chain; nothing for a one-pass model (one evaluation per image)."""
        return {"steps": steps} if self.module.reverse_chain else {}

    def _step(self) -> None:
        """One training step of the family's own (``GenerativeModule.timing_step``)."""
        self.module.timing_step(self.x0, self.labels, self.opt, lambda: autocast(self.device, self.precision))

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


def choose_precision(
    module: Any,
    device: torch.device,
    batch_size: int,
    sample_batch: int,
    candidates: tuple[str, ...] = CANDIDATE_PRECISIONS,
    rounds: int = 2,
    min_seconds: float = 1.0,
) -> tuple[Speed, list[Speed], list[str]]:
    """The fastest-training of ``candidates`` on ``device`` (the first unless another beats it by
    ``MIN_SPEEDUP``), each timed one's best of ``rounds`` measurements, and a note for each
    candidate the matmul screen left out (``screen_candidates``).

    The candidates are timed in turn, ``rounds`` times over, each on its own probe built once:
    the first measurement of a fresh process pays one-off costs (kernel set-up, first touches of
    memory; fp32 measured 106 images/s there and 175 once warm, on a CPU where bf16 ran at 160),
    which would otherwise be charged to whichever precision comes first, and this machine's speed
    drifts by ±20 % within minutes.
    """
    timed, notes = screen_candidates(device, candidates)
    probes = [SpeedProbe(module, p, device, batch_size, sample_batch) for p in timed]
    best_of: dict[str, Speed] = {}
    for _ in range(rounds):
        for probe in probes:
            speed = probe.measure(min_seconds)
            kept = best_of.get(probe.precision)
            if kept is None or speed.train_images_per_s > kept.train_images_per_s:
                best_of[probe.precision] = speed
    speeds = [best_of[p] for p in timed]
    best = speeds[0]
    for speed in speeds[1:]:
        if speed.train_images_per_s > MIN_SPEEDUP * best.train_images_per_s:
            best = speed
    return best, speeds, notes


def sampling_seconds(speed: Speed, num_images: int, steps: int) -> float:
    """Expected seconds to draw ``num_images`` images with a ``steps``-step chain."""
    return num_images * steps / speed.sample_evals_per_s


def format_seconds(seconds: float) -> str:
    """``12 min 05 s`` or ``48 s``."""
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def plan_run(
    model: Any, *, precision: str, budget_minutes: float | None, device: torch.device, batch_size: int,
    final_samples: int, final_sample_steps: int | None, reserve_seconds: float, elapsed: float,
) -> tuple[dict[str, Any], str | None]:
    """Trainer arguments that ``precision="auto"`` and a time budget decide, and the run's
    expected length in words (None when neither is set: nothing was measured).

    ``auto`` times a few training steps of the model in each of ``CANDIDATE_PRECISIONS`` on
    ``device`` and takes the fastest. A time budget (the whole run, in minutes) becomes
    ``max_time``: what is left after ``elapsed`` seconds of start-up, the final samples'
    expected time at the measured sampling speed and ``reserve_seconds``.
    """
    t0 = time.perf_counter()
    if precision != "auto" and budget_minutes is None:
        return {}, None
    sample_batch = final_samples if final_samples > 0 else 64
    out: dict[str, Any] = {}
    if precision == "auto":
        speed, speeds, notes = choose_precision(model, device, batch_size, sample_batch)
        log.info("precision=auto on %s: %s; chosen %s", device.type, "; ".join(map(str, speeds + notes)), speed.precision)
        out["precision"] = speed.precision
    else:
        speed = measure_speed(model, precision, device, batch_size, sample_batch)
    if budget_minutes is None:
        return out, None
    # counted as the speed probe counts them: per step, unguided
    per_image = model.evaluations_per_image(final_sample_steps, None,
                                            num_timesteps=model.num_timesteps if model.reverse_chain else None)
    after = sampling_seconds(speed, sample_batch, per_image if final_samples > 0 else 0) + reserve_seconds
    start_up = elapsed + time.perf_counter() - t0  # the speed probe included
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
    return out, expected
