"""What the apps that read a checkpoint share: the device, the model, and the sampler settings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig

from ddpm_lit.core.samplers import SAMPLERS
from ddpm_lit.errors import ConfigError, DataError, first_line
from ddpm_lit.generation.protocol import has_chain


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return device


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---- what evaluate.py and sample.py share: the sampler and guidance of the config -------------
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
    family = getattr(module, "family", "model")
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


def guidance_used(module: Any, guidance_scale: float | None) -> float | None:
    """The guidance a conditional model samples with (the config's, else the model's); None when unconditional."""
    if module.num_classes is None:
        return None
    return module.hparams.guidance_scale if guidance_scale is None else guidance_scale


def load_module(path: str | Path, device: torch.device) -> tuple[Any, bool]:
    """The checkpoint's model on ``device``, and whether its weights are an EMA.

    The class is the one the checkpoint names (``model_class``, written by the module when it
    saves; ``DDPMModule`` for checkpoints without it), and must be one of ddpm_lit's.

    Lightning's weight-averaging callbacks save the averaged weights as ``state_dict`` (the
    raw ones under ``current_model_state``), so loading gives the EMA weights when present.
    """
    # Lightning and the training modules take seconds to import: here, so that a command checks its config first
    import lightning as L

    from ddpm_lit.training.base import MODEL_CLASS_KEY
    from ddpm_lit.training.checkpointing import read_checkpoint
    from ddpm_lit.training.module import DDPMModule

    path = Path(path)
    ckpt = read_checkpoint(path)
    ema = "current_model_state" in ckpt
    name = ckpt.get(MODEL_CLASS_KEY, f"{DDPMModule.__module__}.{DDPMModule.__qualname__}")
    cls = get_class(name) if str(name).startswith("ddpm_lit.") else None
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise DataError(f"{path} names the model class {name!r}, which is not a LightningModule of ddpm_lit")
    try:
        module = cls.load_from_checkpoint(path, map_location=device, weights_only=True)
    except Exception as e:  # weights of another shape, missing keys: the file does not fit its class
        raise DataError(f"{path} does not load as the {name} it names: {first_line(e)}") from None
    return module.to(device).eval(), ema


def sample_with(
    cfg: DictConfig, model: Any, num: int, generator: torch.Generator, labels: torch.Tensor | None = None, **kwargs: Any
) -> torch.Tensor:
    """``model.sample`` with the config's sampler (``cfg.sampler``), batch size and guidance;
    ``labels`` for a conditional model. ``kwargs`` go to ``sample`` (``progress``, ``callback``)."""
    options = sampling_kwargs(cfg, model)
    if labels is not None:
        options.update(class_labels=labels, guidance_scale=cfg.get("guidance_scale"))
    return model.sample(num, generator=generator, batch_size=cfg.batch_size, **options, **kwargs)
