"""Drawing N images from a diffusion model, outside Lightning: batches, labels, guidance,
progress and the trajectory, around any sampler of ``ddpm_lit.core.samplers``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ddpm_lit.core.diffusion import GaussianDiffusion, randn
from ddpm_lit.core.samplers import SAMPLERS, ClassifierFreeGuidance
from ddpm_lit.generation.protocol import GenerativeModel
from ddpm_lit.generation.speed import Autocast

Callback = Callable[[dict[str, Any]], None]


def cycled_labels(num_samples: int, num_classes: int) -> torch.Tensor:
    """Every class equally often, in turn: 0, 1, …, k − 1, 0, … (N,)."""
    return torch.arange(num_samples) % num_classes


def labels_for(model: GenerativeModel, num_samples: int) -> torch.Tensor | None:
    """``cycled_labels`` for a class-conditional model, None for an unconditional one."""
    return None if model.num_classes is None else cycled_labels(num_samples, model.num_classes)


def check_labels(class_labels: Any, num_samples: int, num_classes: int) -> torch.Tensor:
    """``class_labels`` as (N,) long, or a ValueError unless there are N of them in [0, k − 1]."""
    labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
    if labels.shape != (num_samples,) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"class_labels must be {num_samples} labels in [0, {num_classes - 1}]")
    return labels


def check_request(num_samples: int, sampler: str) -> None:
    """A ValueError unless ``num_samples`` ≥ 1 and ``sampler`` names one of ``SAMPLERS``."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be ≥ 1, got {num_samples}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid choices: {', '.join(SAMPLERS)}")


def _advance(bar: Any, info: Mapping[str, Any], batches: int) -> None:
    """One step on the progress bar; its total follows the chain's real length (a spacing may
    give fewer steps than asked for)."""
    if bar.total != info["total"] * batches:
        bar.total = info["total"] * batches
        bar.refresh()
    bar.update(1)


def _callbacks(*fns: Callback | None) -> Callback | None:
    """One sampler callback that calls each of ``fns`` that is not None (None: none is)."""
    chosen = [fn for fn in fns if fn is not None]
    if not chosen:
        return None

    def call_all(info: dict[str, Any]) -> None:
        for fn in chosen:
            fn(info)

    return call_all


def _unpadded(info: dict[str, Any], n: int) -> dict[str, Any]:
    """A sampler's callback info with its images cut to the batch's first ``n`` (no padding)."""
    return {k: v[:n] if isinstance(v, torch.Tensor) and v.dim() == 4 else v for k, v in info.items()}


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of a draw seeded ``seed``: SplitMix64 of the pair, so that
    neighbouring images and neighbouring seeds get unrelated streams."""
    z = ((seed & 0xFFFFFFFF) << 32 | (index & 0xFFFFFFFF)) + 0x9E3779B97F4A7C15
    z &= 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def image_generators(seed: int, indices: Any) -> list[torch.Generator]:
    """One CPU generator per image index, seeded ``image_seed(seed, index)``: image i's noise
    (x_T and every step's) is then the same whichever batch, rank or device draws it."""
    return [torch.Generator().manual_seed(image_seed(seed, int(i))) for i in indices]


@torch.no_grad()
def generate(
    net: Callable[..., torch.Tensor],
    diffusion: GaussianDiffusion,
    num_samples: int,
    image_shape: tuple[int, int, int],
    device: torch.device,
    generator: torch.Generator | None = None,
    steps: int | None = None,
    clip_denoised: bool = True,
    batch_size: int | None = None,
    progress: bool = False,
    sampler: str = "ddpm",
    class_labels: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    num_classes: int | None = None,
    callback: Callback | None = None,
    precision: str = "32-true",
    fixed_batch: bool = False,
    **options: Any,
) -> torch.Tensor:
    """Draw ``num_samples`` images (N, C, H, W) in [−1, 1] from the denoiser ``net(x_t, t)``
    (``net(x_t, t, class_labels=...)`` when ``num_classes`` is set) with ``SAMPLERS[sampler]``.

    ``batch_size`` bounds memory (None: all at once). ``generator`` is one generator, from which
    x_T and each step's noise of every batch are drawn in turn, or one generator per image
    (``image_generators``), from which that image's noise alone is drawn: then an image does not
    depend on the batch size or on the other images drawn. A CPU generator gives the same
    images on any device. A conditional model draws ``class_labels`` (N,) with classifier-free
    guidance ``guidance_scale``. The network runs in ``precision`` (``speed.Autocast``; the
    sampler's arithmetic stays fp32); ``fixed_batch`` pads the last batch to ``batch_size`` so
    a network compiled for one shape is not compiled again (the padding is drawn and dropped).
    ``callback`` gets ``{"batch", "start", "i", "t", "x", ...}`` with the starting noise
    (``i`` = 0, ``t`` = T) and after every step (the sampler's info).
    """
    check_request(num_samples, sampler)
    if num_classes is not None and class_labels is None:
        raise ValueError("a class-conditional model needs class_labels")
    per_image = isinstance(generator, (list, tuple))
    if per_image and len(generator) != num_samples:
        raise ValueError(f"{len(generator)} generators for {num_samples} images")
    batch_size = batch_size or num_samples
    batches = -(-num_samples // batch_size)
    if precision != "32-true":
        net = Autocast(net, device, precision)
    bar = tqdm(total=(steps or diffusion.num_timesteps) * batches, desc="sampling", unit="step") if progress else None
    out = []
    try:
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            pad = batch_size - n if fixed_batch else 0
            gen: Any = generator
            if per_image:  # the padding rows get generators of their own, whose images are dropped
                gen = list(generator[start : start + n]) + image_generators(-1, range(pad))
            x_T = randn((n + pad, *image_shape), gen, device)
            where = {"batch": start // batch_size, "start": start}
            if callback is not None:
                callback({**where, "i": 0, "t": diffusion.num_timesteps, "x": x_T[:n]})
            denoiser: Any = net
            if num_classes is not None:
                labels = class_labels[start : start + n].to(device)
                labels = torch.cat([labels, labels.new_zeros(pad)])
                denoiser = ClassifierFreeGuidance(net, labels, guidance_scale, num_classes, image_shape[0])
            chain_callback = _callbacks(
                (lambda info: _advance(bar, info, batches)) if bar is not None else None,
                (lambda info, where=where: callback({**where, **_unpadded(info, n)})) if callback is not None else None,
            )
            x0 = SAMPLERS[sampler](denoiser, diffusion, x_T, generator=gen, steps=steps, clip_denoised=clip_denoised,
                                   callback=chain_callback, **options)
            out.append(x0[:n])
    finally:
        if bar is not None:
            bar.close()
    return torch.cat(out)


@dataclass
class Drawn:
    """Samples and the trajectory of the first few: ``frames`` (S, K, C, H, W) at ``timesteps``."""

    samples: torch.Tensor  # (N, C, H, W) in [−1, 1]
    labels: torch.Tensor | None  # (N,) digits asked of a conditional model
    frames: torch.Tensor
    timesteps: list[int]


def draw(
    model: GenerativeModel,
    num: int,
    seed: int = 0,
    trajectory: int = 8,
    every: int | None = None,
    labels: torch.Tensor | None = None,
    indices: Any = None,
    **sample_kwargs: Any,
) -> Drawn:
    """``model.sample`` with one CPU generator per image (``image_generators(seed, …)``: the
    same images on every device, at every batch size and over any number of ranks), keeping the
    first ``trajectory`` samples at x_T and after each step whose timestep index is a multiple
    of ``every``; None: after every tenth of the chain's steps (the study's Fig. 4.5 on the
    1000-step chain: every 100 steps; a 20-step solver: every 2).

    ``indices``: the images of the draw of ``num`` to make here (a rank's share; None: all), with
    ``labels`` (N,) given for all ``num``; the samples come back in the order of ``indices``."""
    kept: list[tuple[int, torch.Tensor]] = []
    indices = list(range(num)) if indices is None else [int(i) for i in indices]
    if labels is not None:
        labels = labels[indices]

    def keep(info: dict[str, Any]) -> None:
        at = info["t"] % every == 0 if every else info["i"] % max(info.get("total", 10) // 10, 1) == 0
        if info["batch"] == 0 and trajectory and (info["i"] == 0 or at):
            kept.append((int(info["t"]), info["x"][:trajectory].float().cpu()))

    if not indices:
        return Drawn(torch.empty(0, *model.image_shape), labels, torch.empty(0), [])
    samples = model.sample(len(indices), generator=image_generators(seed, indices), callback=keep,
                           class_labels=labels, **sample_kwargs)
    frames = torch.stack([x for _, x in kept]) if kept else torch.empty(0)
    return Drawn(samples.float().cpu(), labels, frames, [t for t, _ in kept])
