"""Wall-clock planning of a training run: the precision this machine trains fastest in, measured,
and how much of a whole-run time budget is left for training.

The same 2-core preset trains at very different speeds on different CPUs, and bf16 autocast is
faster than fp32 on some (AMX) and slower on others (0.78–0.98× on the Xeon without AMX measured
in the README); so the precision is chosen by timing a few real training steps of the run's own network in each,
and the training time is what the budget leaves once start-up and the measured cost of the final
samples are taken off (``trainer.max_time``).
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from typing import Any

import torch

# Precisions ``trainer.precision=auto`` chooses from; the first is kept unless another is faster
# by more than ``MIN_SPEEDUP`` (timings of a few steps vary by a few per cent).
CANDIDATE_PRECISIONS = ("32-true", "bf16-mixed")
MIN_SPEEDUP = 1.1


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a Lightning precision name (``bf16-mixed``, ``16-mixed``, ``32-true``)."""
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Speed:
    """Measured throughput of one module in one precision on one device."""

    precision: str
    train_images_per_s: float
    sample_evals_per_s: float  # network evaluations per second, at the sampling batch

    def __str__(self) -> str:
        return (f"{self.precision}: {self.train_images_per_s:.0f} train images/s, "
                f"{self.sample_evals_per_s:.0f} sampling network evaluations/s")


def measure_speed(
    module: Any,
    precision: str,
    device: torch.device,
    batch_size: int,
    sample_batch: int,
    steps: int = 3,
    warmup: int = 1,
) -> Speed:
    """Time ``steps`` Adam steps of the module's training loss on a random batch, after ``warmup``
    untimed ones, and a 3-step sampling chain of ``sample_batch`` images, in ``precision``.

    Works on a copy, so the module's weights, BatchNorm statistics and random state are untouched.
    A module that will train compiled (``model.compile``) is timed compiled, the compilation in
    the untimed warm-up: on the Xeon of the README, eager timings chose bf16 (194 against 170
    images/s), which then trained compiled at 126 images/s where compiled fp32 had trained at
    203. Inductor caches the graphs, so the run's own compilation then costs little.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        probe = copy.deepcopy(module).to(device).train()
        if getattr(module, "hparams", {}).get("compile"):
            probe.compile_network()
        opt = torch.optim.Adam(probe.parameters(), lr=1e-6)
        x0 = torch.rand(batch_size, *probe.image_shape, device=device) * 2 - 1
        labels = torch.arange(batch_size, device=device) % probe.net.num_classes if probe.conditional else None
        for i in range(warmup + steps):
            if i == warmup:
                sync(device)
                start = time.perf_counter()
            with autocast(device, precision):
                loss = probe.training_loss(x0, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        train_rate = steps * batch_size / (time.perf_counter() - start)
        with autocast(device, precision):
            probe.sample(sample_batch, steps=1)  # warm-up
            sync(device)
            start = time.perf_counter()
            probe.sample(sample_batch, steps=3)
            sync(device)
        sample_rate = 3 * sample_batch / (time.perf_counter() - start)
    return Speed(precision, train_rate, sample_rate)


def choose_precision(
    module: Any,
    device: torch.device,
    batch_size: int,
    sample_batch: int,
    candidates: tuple[str, ...] = CANDIDATE_PRECISIONS,
    rounds: int = 2,
) -> tuple[Speed, list[Speed]]:
    """The fastest-training of ``candidates`` on ``device`` (the first unless another beats it by
    ``MIN_SPEEDUP``), and each one's best of ``rounds`` measurements.

    The candidates are timed in turn, ``rounds`` times over: the first measurement of a fresh
    process pays one-off costs (kernel set-up, first touches of memory; fp32 measured 106
    images/s there and 175 once warm, on a CPU where bf16 ran at 160), which would otherwise be
    charged to whichever precision comes first.
    """
    best_of: dict[str, Speed] = {}
    for _ in range(rounds):
        for precision in candidates:
            speed = measure_speed(module, precision, device, batch_size, sample_batch)
            kept = best_of.get(precision)
            if kept is None or speed.train_images_per_s > kept.train_images_per_s:
                best_of[precision] = speed
    speeds = [best_of[p] for p in candidates]
    best = speeds[0]
    for speed in speeds[1:]:
        if speed.train_images_per_s > MIN_SPEEDUP * best.train_images_per_s:
            best = speed
    return best, speeds


def sampling_seconds(speed: Speed, num_images: int, steps: int) -> float:
    """Expected seconds to draw ``num_images`` images with a ``steps``-step chain."""
    return num_images * steps / speed.sample_evals_per_s


def format_seconds(seconds: float) -> str:
    """``12 min 05 s`` or ``48 s``."""
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
