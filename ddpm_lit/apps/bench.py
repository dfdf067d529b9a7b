"""Throughput benchmark: ``python -m ddpm_lit.bench [training overrides] [bench.KEY=VALUE ...]``
(conf/bench.yaml: the training config, and the benchmark's own settings under ``bench``).

Prints, for the model of the composed config on the current device:

- the device's peak matrix-multiply rate, measured here (fp32 and bf16);
- the network's FLOPs per image (forward, and a training step), counted by
  ``torch.utils.flop_counter.FlopCounterMode``;
- training images/s of the real run (``train(cfg)``: its data module, callbacks with the EMA,
  loggers and precision plugin) and of a plain PyTorch loop doing the same work (same network,
  loss, optimizer and LR schedule, precision and EMA update, on the same images held as one
  tensor), alternated ``bench.repeats`` times; their achieved TFLOP/s and fraction of the peak;
- optionally (``bench.diffusers=true``, the ``bench`` extra) diffusers' ``UNet2DModel`` sized to about the
  same parameter count, trained by the same ε-loss step in the same plain loop;
- sampling images/s of the ancestral sampler at each of ``bench.sample_steps``;
- with ``bench.sampling_ckpt=<ckpt>``, the network evaluations/s of the sampling front end that
  sample.py and evaluate.py use, as loaded (``speed=off``: fp32, eager) and with the settings
  ``speed=auto`` chooses here, beside a plain loop of the bare network calls in those settings
  (``bench.training=false`` skips the training measurements);
- peak memory (GPU: ``torch.cuda.max_memory_allocated``; CPU: the process's resident set);
- with ``bench.ablate=[OVERRIDE, ...]``, the plain loop and the real run again with each override, and
  each one's speed relative to the configuration as composed.

Figures are printed, never asserted. Times differ between machines; compare ratios of one run.
"""

from __future__ import annotations

import copy
import functools
import itertools
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.optim.swa_utils import AveragedModel
from torch.utils.flop_counter import FlopCounterMode

from ddpm_lit.apps.train import build, quiet_lightning_tips, train
from ddpm_lit.config.schema import flag, integer, integers, plain
from ddpm_lit.errors import ConfigError
from ddpm_lit.generation.protocol import has_chain
from ddpm_lit.generation.speed import SpeedSettings, autocast, measure_nfe, plan_sampling, sync, timed_steps
from ddpm_lit.training.loading import guidance_used, load_module, resolve_device
from ddpm_lit.training.planning import choose_settings, matmul_seconds

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # ddpm_lit/conf, shipped with the package


def peak_memory_mib(device: torch.device) -> float:
    """Peak allocated GPU memory, or on a CPU the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux: KiB -> MiB (process peak RSS)


def peak_matmul_tflops(device: torch.device, dtype: torch.dtype, n: int | None = None, repeats: int = 5) -> float:
    """The rate of an n×n×n matrix product in ``dtype`` (``planning.matmul_seconds``): the peak
    the training rates are compared with."""
    n = n or (8192 if device.type == "cuda" else 2048)
    return 2 * n**3 / matmul_seconds(device, dtype, n, repeats) / 1e12


def counted_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matrix products and convolutions that ``fn()`` runs (FlopCounterMode's count)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def flops_per_image(denoiser: Callable, diffusion: Any, x0: torch.Tensor) -> tuple[float, float]:
    """(forward, training step) FLOPs per image of ``denoiser`` (x_t, t) -> output; the training
    step is the loss's forward and backward."""
    t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
    with torch.no_grad():
        forward = counted_flops(lambda: denoiser(x0, t))
    step = counted_flops(lambda: diffusion.loss(denoiser, x0).backward())
    return forward / len(x0), step / len(x0)


@dataclass
class Rates:
    """Images/s of repeated measurements of one configuration."""

    plain: list[float] = field(default_factory=list)
    lightning: list[float] = field(default_factory=list)

    @staticmethod
    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")


class StepTimer(L.Callback):
    """Times optimizer steps ``warmup + 1 … warmup + steps`` of a fit, synchronising the device."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start: float | None = None
        self.end: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup + self.steps and self.end is None:
            sync(pl_module.device)
            self.end = time.perf_counter()

    def images_per_s(self, batch_size: int) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("the run ended before the timed steps were taken")
        return self.steps * batch_size / (self.end - self.start)


def bench_cfg(cfg: DictConfig, steps: int, warmup: int, out_dir: Path) -> DictConfig:
    """``cfg`` for a timed run of ``train``: ``warmup + steps`` optimizer steps, no validation,
    sampling or time budget, output under ``out_dir``; everything else (data, callbacks with the
    EMA, loggers, precision) as composed."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.pop("hydra", None)  # as in a real run: the task sees the config without the hydra node
        cfg.pop("bench", None)  # nor the benchmark's settings
        cfg.paths.output_dir = str(out_dir)
        cfg.trainer.max_steps = warmup + steps
        cfg.trainer.max_epochs = -1
        cfg.trainer.limit_val_batches = 0
        cfg.trainer.num_sanity_val_steps = 0
        cfg.time_budget_minutes = None
        cfg.ckpt_path = None
        cfg.model.sample_every_n_epochs = 0
        cfg.model.val_classifier_fid = False
        if cfg.get("final_samples"):
            cfg.final_samples.num = 0
        if cfg.get("callbacks") and cfg.callbacks.get("model_checkpoint"):
            cfg.callbacks.model_checkpoint.save_top_k = 0  # val/loss is not computed; last.ckpt still is
    return cfg


def bench_lightning(cfg: DictConfig, steps: int, warmup: int) -> float:
    """Training images/s of ``train(cfg)`` itself over ``steps`` steps after ``warmup``."""
    timer = StepTimer(warmup, steps)
    with tempfile.TemporaryDirectory(prefix="ddpm-bench-") as tmp:
        train(bench_cfg(cfg, steps, warmup, Path(tmp)), extra_callbacks=[timer])
    return timer.images_per_s(cfg.data.batch_size)


def training_images(cfg: DictConfig, n: int) -> torch.Tensor:
    """The first ``n`` training images of the configured data module, (n, C, H, W) in [−1, 1]."""
    datamodule = build(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    dataset = datamodule.data_train
    idx = torch.as_tensor(getattr(dataset, "indices", range(len(dataset))))[:n]
    base = getattr(dataset, "dataset", dataset)
    return base.tensors[0][idx]


def plain_loop(
    denoiser: torch.nn.Module,
    loss: Callable[[torch.Tensor], torch.Tensor],
    optimizer: Any,
    scheduler: Any,
    ema: AveragedModel | None,
    images: torch.Tensor,
    batch_size: int,
    steps: int,
    warmup: int,
    precision: str,
) -> float:
    """Images/s of ``steps`` training steps after ``warmup``: a random batch sliced from
    ``images`` (on the device), the loss in ``precision``, backward, the optimizer and LR
    schedule's step, the EMA's update."""
    device = images.device
    denoiser.train()

    def step() -> None:
        idx = torch.randint(0, len(images), (batch_size,), device=device)
        with autocast(device, precision):
            value = loss(images[idx])
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(denoiser)

    began = time.perf_counter()
    for _ in range(warmup):
        step()
    print(f"    (plain loop: {warmup} warm-up steps took {time.perf_counter() - began:.1f} s)", flush=True)
    done, seconds = timed_steps(step, device, steps=steps)
    return done * batch_size / seconds


def bench_plain(cfg: DictConfig, images: torch.Tensor, steps: int, warmup: int, device: torch.device) -> float:
    """The plain loop over the configured module: its optimizer and schedule, its EMA callback's update."""
    model = build(cfg.model).to(device)
    if model.hparams.get("compile") is True:
        model.compile_network()
    opt = model.configure_optimizers()
    optimizer, scheduler = (opt["optimizer"], opt["lr_scheduler"]["scheduler"]) if isinstance(opt, dict) else (opt, None)
    ema = None
    ema_cfg = (cfg.get("callbacks") or {}).get("ema")
    if ema_cfg is not None:
        ema = build(ema_cfg).averaged_model(model, device)
    return plain_loop(model, model.training_loss, optimizer, scheduler, ema, images.to(device),
                      int(cfg.data.batch_size), steps, warmup, str(cfg.trainer.precision))


def _diffusers_make(w: int, blocks: int, image_size: int, channels: int) -> torch.nn.Module:
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=image_size, in_channels=channels, out_channels=channels, layers_per_block=blocks,
        block_out_channels=(w, 2 * w, 4 * w), down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3, norm_num_groups=8,
    )


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@functools.lru_cache(maxsize=None)
def _diffusers_size(target_params: int, image_size: int, channels: int) -> tuple[int, int]:
    """(w, blocks) nearest ``target_params``: searched once per size, not once per round."""
    choices = itertools.product(range(8, 257, 8), (1, 2))
    return min(choices, key=lambda c: abs(_params(_diffusers_make(*c, image_size, channels)) - target_params))


def diffusers_unet(target_params: int, image_size: int, channels: int) -> tuple[torch.nn.Module, str]:
    """diffusers' ``UNet2DModel`` with widths (w, 2w, 4w) and 1 or 2 ResNet blocks per level,
    whichever is nearest ``target_params``, and a description of it."""
    w, blocks = _diffusers_size(target_params, image_size, channels)
    net = _diffusers_make(w, blocks, image_size, channels)
    return net, f"UNet2DModel widths ({w}, {2 * w}, {4 * w}), {blocks} block(s) per level, {_params(net) / 1e6:.2f} M params"


class _Output(torch.nn.Module):
    """``(x_t, t) -> tensor`` of a diffusers model, whose forward returns an output object."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, t).sample


def bench_diffusers(cfg: DictConfig, images: torch.Tensor, steps: int, warmup: int, device: torch.device,
                    target_params: int) -> tuple[float, str, tuple[float, float]]:
    """The plain loop with diffusers' UNet2DModel in place of the network, the DDPM ε-loss and
    the same Adam and EMA: (images/s, description, (forward, step) FLOPs per image)."""
    net, what = diffusers_unet(target_params, images.shape[-1], images.shape[1])
    denoiser = _Output(net).to(device)
    diffusion = build(OmegaConf.merge(cfg.model.diffusion, {"objective": "eps"})).to(device)
    flops = flops_per_image(denoiser, diffusion, images[: min(8, len(images))].to(device))
    denoiser.zero_grad(set_to_none=True)
    optimizer = build(cfg.model.optimizer)(denoiser.parameters())  # the model's optimizer and settings
    ema_cfg = (cfg.get("callbacks") or {}).get("ema")
    ema = build(ema_cfg).averaged_model(denoiser, device) if ema_cfg is not None else None  # as bench_plain's
    rate = plain_loop(denoiser, lambda x0: diffusion.loss(denoiser, x0), optimizer, None, ema, images.to(device),
                      int(cfg.data.batch_size), steps, warmup, str(cfg.trainer.precision))
    return rate, what, flops


@torch.no_grad()
def bench_sampling(cfg: DictConfig, device: torch.device, batch: int, steps: int) -> float:
    """Images/s of the ancestral sampler on a ``steps``-step respaced chain, ``batch`` at a time."""
    model = build(cfg.model).to(device).eval()
    precision = str(cfg.trainer.precision)
    with autocast(device, precision):
        model.sample(batch, steps=2)  # warm-up
        sync(device)
        start = time.perf_counter()
        model.sample(batch, generator=torch.Generator().manual_seed(0), steps=steps)
        sync(device)
    return batch / (time.perf_counter() - start)


def compose_cfg(overrides: list[str]) -> DictConfig:
    """conf/bench.yaml with ``overrides``, as its command line composes it (inside the running
    command, by the Hydra that composed the command's own config)."""
    if GlobalHydra.instance().is_initialized():
        cfg = compose("bench", overrides=list(overrides), return_hydra_config=True)
    else:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("bench", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def resolve_speed(cfg: DictConfig, device: torch.device) -> str:
    """``trainer.precision``, ``model.channels_last`` and ``model.compile``, with ``auto`` decided
    as train.py decides it for a long run (``training.planning.choose_settings``, timed here) and
    written into ``cfg``; the precision."""
    model = build(cfg.model)
    own = model.speed_settings()
    if str(cfg.trainer.get("precision")) != "auto" and "auto" not in own.values():
        return str(cfg.trainer.precision)
    ema_cfg = (cfg.get("callbacks") or {}).get("ema")
    plan = choose_settings(model, device, int(cfg.data.batch_size), int(cfg.model.get("num_val_samples") or 64),
                           precision=str(cfg.trainer.precision), ema=build(ema_cfg) if ema_cfg is not None else None)
    print(f"auto settings: {plan.describe()}", flush=True)
    cfg.trainer.precision = plan.settings.precision
    if "channels_last" in own:
        cfg.model.channels_last = plan.settings.channels_last
    if "compile" in own:
        cfg.model.compile = plan.settings.compiled
    return plan.settings.precision


@dataclass(frozen=True)
class BenchSettings:
    """The ``bench`` node of conf/bench.yaml, checked; ``overrides``: the command line's, from
    which each of ``ablate`` composes its config."""

    steps: int
    warmup: int
    repeats: int
    lightning: bool
    sample_steps: tuple[int, ...]
    sample_batch: int | None
    diffusers: bool
    ablate: tuple[str, ...]
    training: bool = True
    sampling_ckpt: str | None = None
    sampling_num: int = 10000
    overrides: tuple[str, ...] = ()

    @classmethod
    def parse(cls, cfg: DictConfig, overrides: list[str] | tuple[str, ...] = ()) -> BenchSettings:
        ablate = plain(cfg.bench.get("ablate")) or []
        if not isinstance(ablate, list) or not all(isinstance(a, str) and a.strip() for a in ablate):
            raise ConfigError(f"bench.ablate must be a list of overrides, e.g. "
                              f"'bench.ablate=[\"model.channels_last=true\"]', got {ablate!r}")
        batch = cfg.bench.get("sample_batch")
        return cls(steps=integer(cfg, "bench.steps", 1), warmup=integer(cfg, "bench.warmup", 0),
                   repeats=integer(cfg, "bench.repeats", 1), lightning=flag(cfg, "bench.lightning"),
                   sample_steps=integers(cfg, "bench.sample_steps", 1),
                   sample_batch=None if batch is None else integer(cfg, "bench.sample_batch", 1),
                   diffusers=flag(cfg, "bench.diffusers"), ablate=tuple(ablate),
                   training=flag(cfg, "bench.training") if cfg.bench.get("training") is not None else True,
                   sampling_ckpt=cfg.bench.get("sampling_ckpt"),
                   sampling_num=integer(cfg, "bench.sampling_num", 1) if cfg.bench.get("sampling_num") else 10000,
                   overrides=tuple(overrides))


@dataclass
class Setting:
    """What every measurement of one run shares: the composed config, device, precision and
    its matmul peak, the network's size and FLOPs per training image, and the training images."""

    cfg: DictConfig
    device: torch.device
    precision: str
    peak: float
    n_params: int
    step_flops: float
    images: torch.Tensor


def _setting(cfg: DictConfig, args: BenchSettings) -> Setting:
    """Choose the precision, measure the peak and count the FLOPs of the composed ``cfg``; print them."""
    if "diffusion" not in cfg.model:
        raise ConfigError(f"the benchmark times a DDPM's training step and chain; {cfg.model._target_} has none "
                          "(python -m ddpm_lit.families compares the families' speeds)")
    L.seed_everything(0, verbose=False)
    trainer = build(cfg.trainer, logger=False, enable_progress_bar=False, enable_model_summary=False,
                    **({"precision": "32-true"} if str(cfg.trainer.precision) == "auto" else {}))
    device = trainer.strategy.root_device
    precision = resolve_speed(cfg, device)
    batch = int(cfg.data.batch_size)
    model = build(cfg.model).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device} ({name}), threads {torch.get_num_threads()}, precision {precision}, batch {batch}, "
          f"params {n_params / 1e6:.2f} M, {args.steps} timed steps after {args.warmup}", flush=True)
    peaks = {dtype: peak_matmul_tflops(device, dtype) for dtype in (torch.float32, torch.bfloat16)}
    print(f"peak matmul        : {peaks[torch.float32]:9.3f} TFLOP/s fp32, {peaks[torch.bfloat16]:.3f} TFLOP/s bf16 "
          f"(measured here)", flush=True)
    images = training_images(cfg, max(batch * 8, 1024))
    fwd, step = flops_per_image(model.net, model.diffusion, images[:8].to(device))
    print(f"network FLOPs      : {fwd / 1e9:9.3f} GFLOP per image forward, {step / 1e9:.3f} per training image "
          "(FlopCounterMode: matrix products and convolutions)", flush=True)
    peak = peaks[torch.bfloat16 if precision.startswith("bf16") else torch.float32]
    return Setting(cfg, device, precision, peak, n_params, step, images)


def _ratio(values: list[float], reference: list[float]) -> float:
    """The median over rounds of values/reference, each pair measured in one round."""
    return statistics.median(v / ref for v, ref in zip(values, reference)) if values else float("nan")


def _rate_line(s: Setting, label: str, rate: float, flops: float) -> str:
    tflops = rate * flops / 1e12
    return (f"{label:<19}: {rate:9.1f} train images/s, {tflops:.3f} TFLOP/s = {100 * tflops / s.peak:.1f} % of "
            f"the {s.precision.split('-')[0]} matmul peak")


def _rounds(args: BenchSettings, s: Setting, configs: list[tuple[str, DictConfig]]) -> tuple[dict[str, Rates], list[float], tuple[str, float, float]]:
    """Every configuration once per round, so drift in the machine's speed (±20 % over minutes
    on shared CPUs) hits all alike; ratios are taken within a round. Also diffusers' network."""
    rates = {label: Rates() for label, _ in configs}
    d_rates: list[float] = []
    diffusers: tuple[str, float, float] = ("", 0.0, 0.0)
    for r in range(args.repeats):
        for label, c in configs:
            rates[label].plain.append(bench_plain(c, s.images, args.steps, args.warmup, s.device))
            if args.lightning:
                rates[label].lightning.append(bench_lightning(c, args.steps, args.warmup))
            shown = f", real run {rates[label].lightning[-1]:.1f}" if rates[label].lightning else ""
            print(f"  round {r + 1}, {label}: plain {rates[label].plain[-1]:.1f}{shown} images/s", flush=True)
        if args.diffusers:
            rate, what, (d_fwd, d_step) = bench_diffusers(s.cfg, s.images, args.steps, args.warmup, s.device, s.n_params)
            d_rates.append(rate)
            diffusers = (what, d_fwd, d_step)
            print(f"  round {r + 1}, diffusers: plain {rate:.1f} images/s", flush=True)
    return rates, d_rates, diffusers


def _print_training(args: BenchSettings, s: Setting, base: Rates, d_rates: list[float],
                    diffusers: tuple[str, float, float]) -> None:
    print(_rate_line(s, "plain PyTorch loop", Rates.median(base.plain), s.step_flops) + f" (median of {args.repeats})")
    if base.lightning:
        print(_rate_line(s, "train(cfg) (real)", Rates.median(base.lightning), s.step_flops) + f" (median of {args.repeats})")
        print(f"Lightning overhead : {100 * (1 / _ratio(base.lightning, base.plain) - 1):+.1f} % "
              "(plain/real − 1, median over rounds)")
    if d_rates:
        what, d_fwd, d_step = diffusers
        print(f"diffusers          : {what}, {d_fwd / 1e9:.3f} GFLOP per image forward")
        print(_rate_line(s, "diffusers plain", statistics.median(d_rates), d_step) + f" (median of {args.repeats})")
        per_flop = _ratio([p * s.step_flops for p in base.plain], [d * d_step for d in d_rates])
        print(f"per FLOP vs diffusers: {per_flop:.2f}× (plain loops' TFLOP/s ratio, median over rounds)")
    if s.device.type == "cuda":
        print(f"peak GPU memory    : {peak_memory_mib(s.device):9.1f} MiB (training)")
        torch.cuda.reset_peak_memory_stats(s.device)


def _print_sampling(args: BenchSettings, s: Setting) -> None:
    sample_batch = args.sample_batch or int(s.cfg.model.num_val_samples)
    for steps in args.sample_steps:
        rate = bench_sampling(s.cfg, s.device, sample_batch, steps)
        print(f"sampling {steps:>4} steps: {rate:9.2f} images/s ({rate * steps:.0f} network evaluations/s, "
              f"batch {sample_batch})", flush=True)
    if s.device.type == "cuda":
        print(f"peak GPU memory    : {peak_memory_mib(s.device):9.1f} MiB (sampling)")
    else:
        print(f"peak memory        : {peak_memory_mib(s.device):9.1f} MiB (process resident set, whole run)")


def _print_ablation(args: BenchSettings, rates: dict[str, Rates], overrides: list[str]) -> None:
    base = rates["as composed"]
    real = args.lightning
    print("\n| change | plain images/s | × plain |" + (" real run images/s | × real run |" if real else "")
          + f"  (medians of {args.repeats} rounds)")
    print("|---|---:|---:|" + ("---:|---:|" if real else ""))
    print(f"| (as composed) | {Rates.median(base.plain):.1f} | 1.00 |"
          + (f" {Rates.median(base.lightning):.1f} | 1.00 |" if real else ""))
    for override in overrides:
        got = rates[override]
        row = f"| `{override}` | {Rates.median(got.plain):.1f} | {_ratio(got.plain, base.plain):.2f} |"
        if real:
            row += f" {Rates.median(got.lightning):.1f} | {_ratio(got.lightning, base.lightning):.2f} |"
        print(row)


# Seconds each sampling measurement runs for at least (one chain of a small batch lasts ~0.1 s).
SAMPLING_MIN_SECONDS = 2.0


@torch.no_grad()
def plain_sampling_loop(model: Any, batch: int, steps: int, precision: str, channels_last: bool) -> float:
    """Network evaluations/s of the bare calls a ``steps``-step chain makes (no sampler, noise
    or guidance), in ``precision`` on ``model.net`` as it stands (compiled or not)."""
    device = model.device
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, *model.image_shape, device=device).contiguous(memory_format=fmt)
    labels = {"class_labels": torch.arange(batch, device=device) % model.num_classes} if model.num_classes else {}
    ts = [torch.full((batch,), int(t), device=device, dtype=torch.long)
          for t in torch.linspace(model.num_timesteps - 1, 0, steps)]

    def chain() -> None:
        with autocast(device, precision):
            for t in ts:
                model.net(x, t, **labels)

    done, seconds = timed_steps(chain, device, warmup=1, steps=1, min_seconds=SAMPLING_MIN_SECONDS)
    return done * steps * batch / seconds


def bench_sampling_front_end(ckpt: str, device: torch.device, steps: int, num: int, repeats: int) -> None:
    """Print the sampling table: the front end as loaded (``speed=off``) and with ``speed=auto``'s
    settings for a draw of ``num`` images, and the plain loop in those settings, in network
    evaluations/s of a ``steps``-step ancestral chain; rounds alternate, medians are printed."""
    before, _ = load_module(ckpt, device)
    if not has_chain(before):
        raise ConfigError(f"bench.sampling_ckpt: {ckpt} is a {before.family}, which draws in one network pass; "
                          "the sampling table times the chain of a DDPM checkpoint")
    after, _ = load_module(ckpt, device)
    guidance = guidance_used(after, None)
    plan = plan_sampling(after, SpeedSettings(), num, after.evaluations_per_image(steps, guidance),
                         guidance_scale=guidance, log=lambda line: print(line, flush=True))
    old_batch = min(256, num)  # sample.py's batch before conf/speed
    rows: dict[str, list[float]] = {"before": [], "after": [], "plain": []}
    for r in range(repeats):
        rows["before"].append(measure_nfe(before, old_batch, "32-true", guidance_scale=guidance, steps=steps,
                                          min_seconds=SAMPLING_MIN_SECONDS))
        rows["after"].append(measure_nfe(after, plan.batch_size, plan.precision, guidance_scale=guidance, steps=steps,
                                         min_seconds=SAMPLING_MIN_SECONDS, fixed_batch=plan.compiled))
        rows["plain"].append(plain_sampling_loop(after, plan.batch_size, steps, plan.precision, plan.channels_last))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rows.items()) + " NFE/s", flush=True)
    base = rows["before"]
    print(f"\n| sampling, {steps}-step chain | settings | NFE/s | × before |  (medians of {repeats} rounds)")
    print("|---|---|---:|---:|")
    print(f"| front end as loaded (speed=off, before) | 32-true, as loaded, eager, batch {old_batch} | "
          f"{Rates.median(base):.0f} | 1.00 |")
    print(f"| front end, speed=auto (now) | {plan.describe()} | {Rates.median(rows['after']):.0f} | "
          f"{_ratio(rows['after'], base):.2f} |")
    print(f"| plain loop of the network calls | the same | {Rates.median(rows['plain']):.0f} | "
          f"{_ratio(rows['plain'], base):.2f} |")


def bench(cfg: DictConfig) -> None:
    """``python -m ddpm_lit.bench``: the benchmark's settings checked at the door, then every
    measurement of the composed training config (see the module docstring)."""
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    args = BenchSettings.parse(cfg, list(overrides))
    quiet_lightning_tips()
    if not args.training and not args.sampling_ckpt:
        raise ConfigError("bench.training=false leaves only the sampling table, which needs bench.sampling_ckpt=<ckpt>")
    if args.sampling_ckpt:
        device = resolve_device("auto")
        bench_sampling_front_end(args.sampling_ckpt, device, args.sample_steps[0], args.sampling_num, args.repeats)
        if not args.training:
            return
    s = _setting(cfg, args)
    configs: list[tuple[str, DictConfig]] = [("as composed", s.cfg)]
    for override in args.ablate:
        varied = compose_cfg([*args.overrides, *override.split()])  # "a=1 b=2": both at once
        # each auto setting as chosen above, unless the override sets it
        if str(varied.trainer.precision) == "auto":
            varied.trainer.precision = s.precision
        for key in ("channels_last", "compile"):
            if key in varied.model and varied.model[key] == "auto":
                varied.model[key] = s.cfg.model[key]
        configs.append((override, varied))
    rates, d_rates, diffusers = _rounds(args, s, configs)
    _print_training(args, s, rates["as composed"], d_rates, diffusers)
    _print_sampling(args, s)
    if args.ablate:
        _print_ablation(args, rates, [label for label, _ in configs[1:]])

