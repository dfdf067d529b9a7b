"""Loading a trained model back: the device, and the checkpoint's module in the class it names, or an
exported folder's (``ddpm_lit.generation.pretrained``) rebuilt as the LightningModule it came from."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from ddpm_lit.errors import ConfigError, DataError, first_line
from ddpm_lit.generation.pretrained import CONFIG, class_name, is_pretrained, load_pretrained, read_config
from ddpm_lit.nets.gan import Discriminator


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
    """The checkpoint's model on ``device``, and whether its weights are an EMA; ``path`` may
    also be a folder ``export.py`` wrote (see ``load_exported_module``).

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
    if is_pretrained(path):
        return load_exported_module(path, device)
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


# The constructor arguments of a family's module that are its parts, not settings: the networks and
# the process come from the exported model, the optimizers are training's (their defaults serve).
PART_ARGUMENTS = ("net", "diffusion", "generator", "discriminator", "optimizer", "g_optimizer", "d_optimizer")


def module_record(module: Any) -> dict[str, Any]:
    """config.json's ``lightning_module``: the class and settings that rebuild ``module`` around
    the exported networks (``load_exported_module``), and a GAN's discriminator's arguments."""
    hparams = {k: v for k, v in dict(module.hparams).items() if k not in PART_ARGUMENTS}
    record: dict[str, Any] = {"class": class_name(type(module)), "hparams": hparams}
    if hasattr(module, "discriminator"):
        record["discriminator"] = module.discriminator.config()
    return record


def load_exported_module(directory: Path, device: torch.device) -> tuple[Any, bool]:
    """The exported folder's model as the LightningModule it was trained as, so every command
    that takes a checkpoint takes the folder: its networks and process from ``load_pretrained``
    (all checks included), its settings from config.json's ``lightning_module`` (a GAN's
    discriminator, which sampling does not use, freshly initialised). The weights are an EMA when
    config.json's ``ema_weights`` says so."""
    from ddpm_lit.training.base import family_class

    config = read_config(directory)
    path = directory / CONFIG
    record = config.get("lightning_module")
    if not isinstance(record, dict) or not isinstance(record.get("hparams"), dict):
        raise DataError(f"{path}: no lightning_module (the class and settings export.py records), which "
                        "sample.py and evaluate.py rebuild the model with")
    cls = family_class(str(record.get("class")))
    if cls is None or cls.family != config["family"]:
        raise DataError(f"{path}: lightning_module.class {record.get('class')!r} is not ddpm_lit's module of a "
                        f"{config['family']}")
    model = load_pretrained(directory)
    parts: dict[str, Any] = dict(model.networks)
    if config["family"] == "ddpm":
        parts["diffusion"] = model.diffusion
    if "discriminator" in record:
        parts["discriminator"] = Discriminator(**record["discriminator"])
    hparams = {k: v for k, v in record["hparams"].items() if k not in PART_ARGUMENTS}
    try:
        module = cls(**parts, **hparams)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: lightning_module.hparams do not build a {cls.__name__}: {first_line(e)}") from None
    module.trained_on = config.get("dataset")
    return module.to(device).eval(), bool(config.get("ema_weights"))
