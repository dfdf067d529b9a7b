"""The sampler settings of a command's config: checked against the sampler table and the
checkpoint's model, and turned into ``module.sample``'s arguments."""

from __future__ import annotations

from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ddpm_lit.core.samplers import SAMPLERS
from ddpm_lit.errors import ConfigError
from ddpm_lit.generation.protocol import has_chain
from ddpm_lit.training.loading import is_number


def check_sampling(cfg: DictConfig, module: Any | None = None) -> None:
    """``cfg.sampler.name`` a known sampler and ``cfg.guidance_scale`` null or ≥ 0; with the
    checkpoint's ``module``, also ``sampler.steps`` in [1, T] or null, and guidance only for a
    class-conditional model."""
    if cfg.get("guidance_scale") is not None and not (is_number(cfg.guidance_scale) and cfg.guidance_scale >= 0):
        raise ConfigError(f"guidance_scale must be a finite number ≥ 0 or null (the model's), got {cfg.guidance_scale!r}")
    if cfg.sampler.name not in SAMPLERS:
        raise ConfigError(f"sampler.name must be one of {', '.join(SAMPLERS)}, got {cfg.sampler.name!r}")
    if module is None:
        return
    family = module.family
    if cfg.get("guidance_scale") is not None and module.num_classes is None:
        raise ConfigError(f"guidance_scale is for class-conditional models; {cfg.ckpt_path} is an unconditional {family}")
    if not has_chain(module):
        given = sampler_settings_given(cfg)
        if given:
            raise ConfigError(f"{', '.join(given)}: a {family} has no sampler (it draws in one network pass); "
                              f"{cfg.ckpt_path} is a {family} checkpoint")
        return
    steps, T = cfg.sampler.steps, module.num_timesteps
    if steps is not None and not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= T):
        raise ConfigError(f"sampler.steps must be in [1, {T}] (the checkpoint's T) or null, got {steps!r}")


def sampler_settings_given(cfg: DictConfig) -> list[str]:
    """The sampler settings a command line set: its ``sampler=``/``sampler.*`` overrides under
    Hydra; otherwise every value that differs from the default ancestral sampler's."""
    if HydraConfig.initialized():
        given = [o for o in HydraConfig.get().overrides.task if o.lstrip("+~").startswith("sampler")]
        if given:
            return given
    defaults = {"name": "ddpm", "steps": None, "clip_denoised": None}
    return [f"sampler.{k}={v}" for k, v in cfg.sampler.items() if v != defaults.get(k)]


def sampling_kwargs(cfg: DictConfig, module: Any) -> dict[str, Any]:
    """The arguments of ``module.sample`` that the config's sampler gives: the steps, clipping,
    sampler name and options for a model with a reverse chain; none for a one-pass model."""
    if not has_chain(module):
        return {}
    return dict(steps=cfg.sampler.steps, clip_denoised=cfg.sampler.clip_denoised, sampler=cfg.sampler.name,
                **sampler_options(cfg.sampler))


def sampler_options(sampler: DictConfig) -> dict[str, Any]:
    """The sampler's own options (``eta``, ``spacing``, ...): all of ``cfg.sampler`` but name,
    steps and clip_denoised, which ``DDPMModule.sample`` takes as arguments."""
    return {k: v for k, v in sampler.items() if k not in ("name", "steps", "clip_denoised")}


def sample_with(
    cfg: DictConfig, model: Any, num: int, generator: torch.Generator, labels: torch.Tensor | None = None, **kwargs: Any
) -> torch.Tensor:
    """``model.sample`` with the config's sampler (``cfg.sampler``), batch size and guidance;
    ``labels`` for a conditional model. ``kwargs`` go to ``sample`` (``progress``, ``callback``)."""
    options = sampling_kwargs(cfg, model)
    if labels is not None:
        options.update(class_labels=labels, guidance_scale=cfg.get("guidance_scale"))
    return model.sample(num, generator=generator, batch_size=cfg.batch_size, **options, **kwargs)
