"""The sampler settings against the checkpoint's model, and ``module.sample``'s arguments from them."""

from __future__ import annotations

from typing import Any

import torch

from ddpm_lit.config.schema import SamplerSettings
from ddpm_lit.errors import ConfigError
from ddpm_lit.generation.protocol import has_chain


def check_sampling(sampler: SamplerSettings, guidance_scale: float | None, module: Any, ckpt_path: str) -> None:
    """Settings the checkpoint's ``module`` can honour: ``sampler.steps`` in [1, T] or null, no
    sampler settings for a one-pass model, and guidance only for a class-conditional one."""
    family = module.family
    if guidance_scale is not None and module.num_classes is None:
        raise ConfigError(f"guidance_scale is for class-conditional models; {ckpt_path} is an unconditional {family}")
    if not has_chain(module):
        if sampler.given:
            raise ConfigError(f"{', '.join(sampler.given)}: a {family} has no sampler (it draws in one network pass); "
                              f"{ckpt_path} is a {family} checkpoint")
        return
    steps, T = sampler.steps, module.num_timesteps
    if steps is not None and not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= T):
        raise ConfigError(f"sampler.steps must be in [1, {T}] (the checkpoint's T) or null, got {steps!r}")


def sampling_kwargs(sampler: SamplerSettings, module: Any) -> dict[str, Any]:
    """The arguments of ``module.sample`` that the sampler settings give: the steps, clipping,
    sampler name and options for a model with a reverse chain; none for a one-pass model."""
    if not has_chain(module):
        return {}
    return dict(steps=sampler.steps, clip_denoised=sampler.clip_denoised, sampler=sampler.name, **sampler.options)


def sample_with(
    sampler: SamplerSettings, batch_size: int, guidance_scale: float | None, model: Any, num: int,
    generator: torch.Generator, labels: torch.Tensor | None = None, **kwargs: Any,
) -> torch.Tensor:
    """``model.sample`` with the sampler settings, batch size and guidance; ``labels`` for a
    conditional model. ``kwargs`` go to ``sample`` (``progress``, ``callback``)."""
    options = sampling_kwargs(sampler, model)
    if labels is not None:
        options.update(class_labels=labels, guidance_scale=guidance_scale)
    return model.sample(num, generator=generator, batch_size=batch_size, **options, **kwargs)
