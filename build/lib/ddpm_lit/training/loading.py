"""Loading a trained model back: the device, and the checkpoint's module in the class it names."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from ddpm_lit.errors import ConfigError, DataError, first_line


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


def guidance_used(module: Any, guidance_scale: float | None) -> float | None:
    """The guidance a conditional model samples with (the config's, else the model's); None when unconditional."""
    if module.num_classes is None:
        return None
    return module.hparams.guidance_scale if guidance_scale is None else guidance_scale


def _class_named(name: str) -> Any:
    """The class at the dotted path ``name`` (``ddpm_lit.training.vae.VAEModule``), or None."""
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None


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
    cls = _class_named(str(name)) if str(name).startswith("ddpm_lit.") else None
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise DataError(f"{path} names the model class {name!r}, which is not a LightningModule of ddpm_lit")
    try:
        module = cls.load_from_checkpoint(path, map_location=device, weights_only=True)
    except Exception as e:  # weights of another shape, missing keys: the file does not fit its class
        raise DataError(f"{path} does not load as the {name} it names: {first_line(e)}") from None
    return module.to(device).eval(), ema
