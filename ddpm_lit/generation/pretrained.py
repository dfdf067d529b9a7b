"""A model shared as the Hugging Face Hub shares models: a folder with the weights in
``model.safetensors`` (which loading cannot turn into code), ``config.json`` (the networks'
classes and constructor arguments, the diffusion process, how it samples, the image shape and
classes), for a DDPM ``scheduler_config.json`` in diffusers' ``DDPMScheduler`` format, and a model
card ``README.md`` (``ddpm_lit.reporting.model_card``).

``load_pretrained(folder)`` builds the model from those files alone: without Lightning or
Hydra, and without running code from them (the classes come from a fixed list, the weights are
tensors). Each fault of a folder is one ``DataError`` line naming the file and the key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

import ddpm_lit
from ddpm_lit.core.diffusion import GaussianDiffusion
from ddpm_lit.errors import DataError, first_line
from ddpm_lit.generation.models import MODELS, DiffusionModel, GANModel, StandaloneModel, VAEModel
from ddpm_lit.generation.schedulers import scheduler_config
from ddpm_lit.nets.gan import Generator
from ddpm_lit.nets.unet import UNet
from ddpm_lit.nets.vae import ConvVAE

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
SCHEDULER_CONFIG = "scheduler_config.json"
MODEL_CARD = "README.md"
FORMAT_VERSION = 1


def class_name(cls: type) -> str:
    """The dotted name of ``cls`` (``ddpm_lit.nets.unet.UNet``): config.json's classes, and a
    checkpoint's ``model_class`` (``training.base``)."""
    return f"{cls.__module__}.{cls.__qualname__}"


# The only classes a config.json may name: a name is looked up here, never imported.
NETWORK_CLASSES: dict[str, type[nn.Module]] = {class_name(c): c for c in (UNet, ConvVAE, Generator)}
# The networks each family's model takes, by the name of their weights' prefix.
FAMILY_NETWORKS: dict[str, tuple[str, ...]] = {"ddpm": ("net",), "vae": ("net",), "gan": ("generator",)}


def is_pretrained(path: str | Path) -> bool:
    """Whether ``path`` is a folder to load with ``load_pretrained`` (rather than a checkpoint file)."""
    return Path(path).is_dir()


# ---- writing -------------------------------------------------------------------------------------
def _replace(path: Path, write: Any) -> None:
    """Write ``path`` through a temporary file, so a crash leaves the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as an ordinary file, whatever the writer made it
    os.replace(tmp, path)


def write_json(path: Path, content: Any) -> None:
    _replace(path, lambda tmp: tmp.write_text(json.dumps(content, indent=2, sort_keys=False) + "\n"))


def model_config(model: StandaloneModel, **info: Any) -> dict[str, Any]:
    """config.json's content for ``model``, with ``info`` (the data set, the classes' names, whether
    the weights are an EMA, what trained it) added as it is."""
    config: dict[str, Any] = {
        "library_name": "ddpm-lit",
        "format_version": FORMAT_VERSION,
        "ddpm_lit_version": ddpm_lit.__version__,
        "family": model.family,
        "networks": {name: {"class": class_name(type(net)), "config": net.config()}
                     for name, net in model.networks.items()},
        "image_shape": list(model.image_shape),
        "num_classes": model.num_classes,
        "sampling": model.sampling_config(),
    }
    if isinstance(model, DiffusionModel):
        config["diffusion"] = model.diffusion.config()
    return {**config, **info}


def save_pretrained(model: StandaloneModel, directory: str | Path, **info: Any) -> Path:
    """Write ``model.safetensors``, ``config.json`` (with ``info``) and, for a DDPM,
    ``scheduler_config.json`` into ``directory`` (made if missing); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    _replace(directory / WEIGHTS, lambda tmp: save_file(weights, str(tmp), metadata={"format": "pt"}))
    write_json(directory / CONFIG, model_config(model, **info))
    if isinstance(model, DiffusionModel):
        write_json(directory / SCHEDULER_CONFIG, scheduler_config(model.diffusion, model.clip_denoised))
    return directory


# ---- reading -------------------------------------------------------------------------------------
def read_config(directory: Path) -> dict[str, Any]:
    """config.json of an exported folder, checked for the files and keys every family needs."""
    if not directory.is_dir():
        raise DataError(f"{directory}: no such folder (an exported model is a folder with {CONFIG} and {WEIGHTS})")
    for name in (CONFIG, WEIGHTS):
        if not (directory / name).is_file():
            raise DataError(f"{directory}: no {name} (an exported model's folder has {CONFIG} and {WEIGHTS}; "
                            "export.py writes them)")
    path = directory / CONFIG
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not readable JSON ({first_line(e)})") from None
    if not isinstance(config, dict):
        raise DataError(f"{path}: holds a {type(config).__name__}, not an object of keys")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(f"{path}: format_version {version!r}; this ddpm_lit reads format_version {FORMAT_VERSION}")
    family = config.get("family")
    if family not in MODELS:
        raise DataError(f"{path}: family {family!r} is not one of ddpm_lit's ({', '.join(MODELS)})")
    networks = config.get("networks")
    wanted = FAMILY_NETWORKS[family]
    if not isinstance(networks, dict) or sorted(networks) != sorted(wanted):
        have = sorted(networks) if isinstance(networks, dict) else networks
        raise DataError(f"{path}: networks must name {', '.join(wanted)} for a {family}, got {have!r}")
    for key in ("sampling",) + (("diffusion",) if family == "ddpm" else ()):
        if not isinstance(config.get(key), dict):
            raise DataError(f"{path}: {key} must be an object of arguments, got {config.get(key)!r}")
    return config


def _build_network(path: Path, name: str, spec: Any) -> nn.Module:
    """The network config.json's ``networks.<name>`` names, from the fixed list of ddpm_lit's."""
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        raise DataError(f"{path}: networks.{name} must be {{\"class\": ..., \"config\": {{...}}}}, got {spec!r}")
    cls = NETWORK_CLASSES.get(str(spec.get("class")))
    if cls is None:
        raise DataError(f"{path}: networks.{name}.class {spec.get('class')!r} is not a network of ddpm_lit "
                        f"(one of {', '.join(NETWORK_CLASSES)})")
    try:
        return cls(**spec["config"])
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: networks.{name}.config does not build a {cls.__name__}: {first_line(e)}") from None


def _build_model(path: Path, config: dict[str, Any], networks: dict[str, nn.Module]) -> StandaloneModel:
    family, sampling = config["family"], config["sampling"]
    try:
        if family == "ddpm":
            diffusion = GaussianDiffusion(**config["diffusion"])
            return DiffusionModel(networks["net"], diffusion, **sampling)
        if family == "vae":
            return VAEModel(networks["net"], **sampling)
        return GANModel(networks["generator"], **sampling)
    except (TypeError, ValueError) as e:
        key = "diffusion or sampling" if family == "ddpm" else "sampling"
        raise DataError(f"{path}: {key} does not build a {family}: {first_line(e)}") from None


def _load_weights(path: Path, model: StandaloneModel) -> None:
    """Fill ``model``'s networks from ``path``: every key present, none extra, each of its shape
    and finite; checked from the file's header before any tensor is read."""
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            missing = [k for k in expected if k not in keys]
            if missing:
                raise DataError(f"{path}: missing key {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                                + f" (config.json's {model.family} has it)")
            extra = sorted(keys - set(expected))
            if extra:
                raise DataError(f"{path}: unexpected key {extra[0]}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
                                + f" (config.json's {model.family} has no such weight)")
            for key, value in expected.items():
                shape = tuple(f.get_slice(key).get_shape())
                if shape != tuple(value.shape):
                    raise DataError(f"{path}: {key} has shape {shape}, but config.json's network gives "
                                    f"{tuple(value.shape)}")
            weights = {key: f.get_tensor(key) for key in expected}
    except SafetensorError as e:
        raise DataError(f"{path}: not a readable safetensors file ({first_line(e)})") from None
    for key, value in weights.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise DataError(f"{path}: {key} has non-finite values (NaN or inf); the weights are broken")
    for name, net in model.networks.items():
        prefix = f"{name}."
        net.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}, strict=True)


def load_pretrained(directory: str | Path, device: torch.device | str = "cpu") -> StandaloneModel:
    """The model of an exported folder, on ``device`` and in eval mode: a ``DiffusionModel``
    (``.net``, ``.diffusion``), a ``VAEModel`` (``.net``) or a ``GANModel`` (``.generator``), each
    with ``sample(num_samples, generator, ...)``. Neither Lightning nor Hydra is imported."""
    directory = Path(directory)
    config = read_config(directory)
    path = directory / CONFIG
    networks = {name: _build_network(path, name, config["networks"][name]) for name in FAMILY_NETWORKS[config["family"]]}
    model = _build_model(path, config, networks)
    _load_weights(directory / WEIGHTS, model)
    for net in model.networks.values():
        net.eval()
    return model.to(device)

