"""How the network runs while images are drawn: its precision, memory format, compilation and
batch size, chosen on the machine at hand by timing the real front end.

On a 2-core AMD EPYC without AMX the quick model drew at 759 network evaluations/s in fp32,
eager, and at 1,717 in bf16 autocast, channels-last and compiled (bench's sampling table); on another CPU bf16 may be
slower than fp32 and channels-last may not pay. So ``precision``, ``channels_last`` and
``batch_size`` set to ``auto`` are decided by a few timed two-step chains of the model itself
(seconds), and ``compile: auto`` compiles the network when the draw is long enough to repay the
compilation. The network alone runs in the chosen precision (``Autocast``): the sampler's
arithmetic stays in float32.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

# Precisions the front end draws in (Lightning's names, as ``trainer.precision``).
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
# Another precision or memory format is taken over the first candidate (fp32, the checkpoint's
# format) only when it draws at least this many times as fast: timings of a few calls vary by a
# few per cent, and fp32 is the exact one.
MIN_SPEEDUP = 1.1
# ``compile: auto`` compiles the network when the draw would take longer than this eagerly:
# compiling the quick model costs tens of seconds on 2 CPU cores (Inductor caches it afterwards)
# and there drew 1,664 NFE/s against 1,394 eager (the plan's own timings, docs/sampling.md).
COMPILE_AFTER_SECONDS = 120.0
# A draw of fewer network evaluations than this is not worth timing (the timing itself makes
# ~20 two-step chains, ~5 s on 2 CPU cores): it runs as loaded, in fp32.
TIME_AFTER_NFE = 5000
# ``batch_size: auto`` candidates on a CPU (on 2 cores the plan timed 1,394, 1,351 and 1,324 NFE/s
# at 64, 128 and 256 images) and the share of free GPU memory a batch may take.
CPU_BATCHES = (64, 128, 256)
GPU_MEMORY_SHARE = 0.7
MAX_BATCH = 8192


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


def timed_steps(step: Callable[[], Any], device: torch.device, *, warmup: int = 0, steps: int = 3,
                min_seconds: float = 0.0) -> tuple[int, float]:
    """Run ``step`` ``warmup`` times untimed, then at least ``steps`` times and for at least
    ``min_seconds``; return (timed steps, their seconds), the device synchronised around them.
    The one timing loop of the sampling plan, the training speed probe and ``bench``'s plain loop."""
    for _ in range(warmup):
        step()
    sync(device)
    start, done = time.perf_counter(), 0
    while done < steps or time.perf_counter() - start < min_seconds:
        step()
        done += 1
        if done >= steps and min_seconds > 0:
            sync(device)  # the clock below must see the work done
    sync(device)
    return done, time.perf_counter() - start


class Autocast:
    """A denoiser ``net(x_t, t, **kw)`` run under ``precision``'s autocast, its output returned in
    float32 so that the sampler's arithmetic (posterior means, solver steps) stays exact."""

    def __init__(self, net: Callable[..., torch.Tensor], device: torch.device, precision: str) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid choices: {', '.join(PRECISIONS)}")
        self.net, self.device, self.precision = net, device, precision

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self.net(x_t, t, **kwargs).float()


@dataclass(frozen=True)
class SpeedSettings:
    """What the user asked for: each of ``precision`` (one of ``PRECISIONS``), ``channels_last``,
    ``compile`` (booleans) and ``batch_size`` (images per batch) may be ``"auto"``;
    ``channels_last`` None keeps the network's memory format as loaded."""

    precision: str = "auto"
    channels_last: bool | str | None = "auto"
    compile: bool | str = "auto"
    batch_size: int | str = "auto"

    def __post_init__(self) -> None:
        if self.precision != "auto" and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be auto or one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.channels_last is not None and self.channels_last != "auto" and not isinstance(self.channels_last, bool):
            raise ValueError(f"channels_last must be auto, true, false or null (as loaded), got {self.channels_last!r}")
        if self.compile != "auto" and not isinstance(self.compile, bool):
            raise ValueError(f"compile must be auto, true or false, got {self.compile!r}")
        b = self.batch_size
        if b != "auto" and not (isinstance(b, int) and not isinstance(b, bool) and b >= 1):
            raise ValueError(f"batch_size must be auto or a positive integer, got {b!r}")


@dataclass
class SamplingPlan:
    """How the images are drawn, and what was timed to decide it (``timings``: label → NFE/s)."""

    precision: str
    channels_last: bool
    compiled: bool
    batch_size: int
    device: str
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # spent timing and compiling
    note: str = ""

    def sample_kwargs(self) -> dict[str, Any]:
        """The arguments of ``model.sample`` this plan sets."""
        return {"precision": self.precision, "batch_size": self.batch_size, "fixed_batch": self.compiled}

    def record(self) -> dict[str, Any]:
        """For sample.json and the evaluation's metrics.json."""
        return {"precision": self.precision, "channels_last": self.channels_last, "compiled": self.compiled,
                "batch_size": self.batch_size, "device": self.device, "timed_nfe_per_s": dict(self.timings),
                "planning_seconds": round(self.seconds, 1), **({"note": self.note} if self.note else {})}

    def apply(self, model: Any) -> None:
        """Put ``model.net`` in the plan's memory format and compile it if the plan says so (the
        plan's own choices, untimed: another rank following rank 0's plan)."""
        _memory_format(model.net, self.channels_last)
        if self.compiled:
            model.compile_network()

    def describe(self) -> str:
        return (f"{self.precision}, {'channels-last' if self.channels_last else 'contiguous'}, "
                f"{'compiled' if self.compiled else 'eager'}, batches of {self.batch_size}")


def _memory_format(net: torch.nn.Module, channels_last: bool) -> None:
    net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _is_channels_last(net: torch.nn.Module) -> bool:
    weights = [p for p in net.parameters() if p.dim() == 4]
    # a weight with one input channel is both; one with several tells the formats apart
    return (bool(weights) and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
            and any(not p.is_contiguous() for p in weights))


def measure_nfe(model: Any, batch: int, precision: str, *, guidance_scale: float | None = None, steps: int = 2,
                min_seconds: float = 0.5, fixed_batch: bool = False) -> float:
    """Network evaluations per second of ``model.sample`` (the real front end: noise, sampler,
    guidance) drawing ``batch`` images with a ``steps``-step chain in ``precision``, after one
    untimed call. ``guidance_scale``: a conditional model's (None: unconditional)."""
    gen = torch.Generator().manual_seed(0)
    guided = {"guidance_scale": guidance_scale} if model.num_classes is not None else {}

    def draw() -> None:
        model.sample(batch, generator=gen, steps=steps, batch_size=batch, precision=precision,
                     fixed_batch=fixed_batch, **guided)

    done, seconds = timed_steps(draw, model.device, warmup=1, steps=1, min_seconds=min_seconds)
    return done * batch * model.evaluations_per_image(steps, guidance_scale) / seconds


def _gpu_batch(model: Any, precision: str, num_images: int) -> int:
    """The batch that fills ``GPU_MEMORY_SHARE`` of the free GPU memory, from the peak memory of
    a 64-image step."""
    device = model.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    model.sample(64, generator=torch.Generator().manual_seed(0), steps=1, batch_size=64, precision=precision)
    per_image = max((torch.cuda.max_memory_allocated(device) - base) / 64, 1.0)
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(GPU_MEMORY_SHARE * free / per_image) // 64 * 64
    return max(64, min(fits, MAX_BATCH, max(num_images, 1)))


def plan_sampling(model: Any, settings: SpeedSettings, num_images: int, evaluations_per_image: float,
                  guidance_scale: float | None = None, log: Callable[[str], None] | None = None) -> SamplingPlan:
    """Decide the ``auto`` settings of ``settings`` for drawing ``num_images`` images at
    ``evaluations_per_image`` network calls each (guided with ``guidance_scale``), and apply the memory format and compilation
    to ``model.net`` in place. ``model`` has ``net``, ``device``, ``sample(..., precision=,
    fixed_batch=)``, ``evaluations_per_image`` and ``compile_network()``.

    Each candidate (fp32 and bf16 or fp16 autocast where the device has it; the network's memory
    format and the other one) is timed twice, in turn, on a two-step chain; the fastest wins
    when it beats the first candidate by ``MIN_SPEEDUP``. The batch size is then timed among
    ``CPU_BATCHES`` on a CPU, or fills the GPU's free memory."""
    start = time.perf_counter()
    device = model.device
    net = model.net
    was = _is_channels_last(net)
    fixed = settings.batch_size if settings.batch_size != "auto" else None
    if num_images * evaluations_per_image < TIME_AFTER_NFE:
        channels_last = was if settings.channels_last in (None, "auto") else bool(settings.channels_last)
        plan = SamplingPlan("32-true" if settings.precision == "auto" else settings.precision, channels_last,
                            settings.compile is True, min(fixed or 128, max(num_images, 1)), str(device),
                            note=f"not timed: {num_images * evaluations_per_image:.0f} network evaluations, under "
                                 f"{TIME_AFTER_NFE}")
        plan.apply(model)
        if log is not None:
            log(f"sampling with {plan.describe()} ({plan.note})")
        return plan
    if settings.channels_last is None:
        formats = [was]
    else:
        formats = [was, not was] if settings.channels_last == "auto" else [bool(settings.channels_last)]
    if settings.precision != "auto":
        precisions = [settings.precision]
    elif device.type == "cuda":
        precisions = ["32-true", "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"]
    else:
        precisions = ["32-true", "bf16-mixed"]
    probe_batch = min(fixed or 128, max(num_images, 1))
    timings: dict[str, float] = {}
    candidates = [(p, f) for f in formats for p in precisions]
    best_of: dict[tuple[str, bool], float] = {}
    if len(candidates) > 1:
        for _ in range(2):
            for p, f in candidates:
                _memory_format(net, f)
                rate = measure_nfe(model, probe_batch, p, guidance_scale=guidance_scale)
                best_of[(p, f)] = max(best_of.get((p, f), 0.0), rate)
        for (p, f), rate in best_of.items():
            timings[f"{p}, {'channels-last' if f else 'contiguous'}, eager, batch {probe_batch}"] = round(rate)
        chosen = candidates[0]
        for c in candidates[1:]:
            if best_of[c] > MIN_SPEEDUP * best_of[chosen]:
                chosen = c
        precision, channels_last = chosen
    else:
        precision, channels_last = candidates[0]
    _memory_format(net, channels_last)

    if fixed is not None:
        batch = fixed
    elif device.type == "cuda":
        batch = _gpu_batch(model, precision, num_images)
    else:
        rates = {probe_batch: best_of.get((precision, channels_last))}
        for b in CPU_BATCHES:
            if b <= num_images and rates.get(b) is None:
                rates[b] = measure_nfe(model, b, precision, guidance_scale=guidance_scale)
                timings[f"{precision}, batch {b}"] = round(rates[b])
        rates = {b: r for b, r in rates.items() if r is not None}
        batch = max(rates, key=rates.get) if rates else probe_batch
    batch = min(batch, num_images)

    note = ""
    if settings.compile == "auto":
        eager_rate = best_of.get((precision, channels_last)) or measure_nfe(model, batch, precision,
                                                                            guidance_scale=guidance_scale)
        eager_seconds = num_images * evaluations_per_image / eager_rate
        compile_it = eager_seconds > COMPILE_AFTER_SECONDS
    else:
        compile_it = bool(settings.compile)
    if compile_it:
        model.compile_network()
        timings[f"{precision}, compiled, batch {batch}"] = round(measure_nfe(model, batch, precision, guidance_scale=guidance_scale,
                                                                                  fixed_batch=True))
    elif settings.compile == "auto":
        note = f"not compiled: ~{eager_seconds:.0f} s eagerly, under {COMPILE_AFTER_SECONDS:.0f} s"
    plan = SamplingPlan(precision, channels_last, bool(compile_it), batch, str(device), timings,
                        time.perf_counter() - start, note)
    if log is not None:
        timed = "; ".join(f"{k}: {v} NFE/s" for k, v in timings.items())
        log(f"sampling with {plan.describe()}" + (f" (chosen in {plan.seconds:.0f} s: {timed})" if timed else ""))
    return plan


def eager_plan(model: Any, batch_size: int | None) -> SamplingPlan:
    """The plan of a model drawn as loaded (fp32, eager): a one-pass model, or ``speed=off``."""
    net = getattr(model, "net", None)
    return SamplingPlan("32-true", net is not None and _is_channels_last(net), False, batch_size or 0,
                        str(model.device))

