"""Each command's settings as typed values, checked once, at the door.

``TrainSettings.parse(cfg)``, ``SampleSettings.parse(cfg)`` and ``EvaluateSettings.parse(cfg)``
read the composed Hydra config of their command and raise one ``ConfigError`` line for the
first bad value (the commands exit with 2). Below the commands, functions take these
dataclasses or plain arguments, never a ``DictConfig``. The objects a config builds (model,
data, trainer, callbacks, loggers) are built by ``config.build`` and check their own arguments;
``build`` turns their ValueError into a ConfigError too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ddpm_lit.core.samplers import SAMPLERS
from ddpm_lit.generation.speed import SpeedSettings
from ddpm_lit.errors import ConfigError, first_line


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(cfg: DictConfig, key: str, low: int) -> int:
    """``cfg``'s integer at the dotted ``key``, ≥ ``low``."""
    value = OmegaConf.select(cfg, key)
    if not is_int(value) or value < low:
        raise ConfigError(f"{key} must be an integer ≥ {low}, got {value!r}")
    return value


def integers(cfg: DictConfig, key: str, low: int) -> tuple[int, ...]:
    """``cfg``'s non-empty list of integers ≥ ``low`` at the dotted ``key`` (one integer: a list of one)."""
    value = plain(OmegaConf.select(cfg, key))
    values = value if isinstance(value, list) else [value]
    if not values or not all(is_int(v) and v >= low for v in values):
        raise ConfigError(f"{key} must be an integer ≥ {low} or a list of them, e.g. [{low}, {low + 1}], got {value!r}")
    return tuple(values)


def flag(cfg: DictConfig, key: str) -> bool:
    """``cfg``'s true or false at the dotted ``key``."""
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def required(cfg: DictConfig, key: str, what: str) -> Any:
    """``cfg``'s value at ``key``, or a ConfigError ``give <what>`` when it is null."""
    value = cfg.get(key)
    if value is None:
        raise ConfigError(f"give {what}")
    return value


def guidance_scale(cfg: DictConfig) -> float | None:
    """``guidance_scale``: null (the model's) or a finite number ≥ 0."""
    value = cfg.get("guidance_scale")
    if value is not None and not (is_number(value) and value >= 0):
        raise ConfigError(f"guidance_scale must be a finite number ≥ 0 or null (the model's), got {value!r}")
    return value


def plain(node: Any) -> Any:
    """A config node as plain dicts and lists (resolved); scalars as they are."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


# ---- the sampler ------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplerSettings:
    """``sampler=`` of sample.py and evaluate.py: a sampler of ``core.samplers.SAMPLERS``, its
    steps (None: all T), clipping (None: the checkpoint's) and its own options (``eta``, ...);
    ``given``: the sampler settings the command line set (a one-pass model refuses them)."""

    name: str = "ddpm"
    steps: int | None = None
    clip_denoised: bool | None = None
    options: dict[str, Any] = field(default_factory=dict)
    given: tuple[str, ...] = ()

    @classmethod
    def parse(cls, node: DictConfig) -> SamplerSettings:
        if node.name not in SAMPLERS:
            raise ConfigError(f"sampler.name must be one of {', '.join(SAMPLERS)}, got {node.name!r}")
        options = {k: plain(v) for k, v in node.items() if k not in ("name", "steps", "clip_denoised")}
        return cls(name=node.name, steps=node.get("steps"), clip_denoised=node.get("clip_denoised"),
                   options=options, given=tuple(_sampler_settings_given(node)))

    def record(self) -> dict[str, Any]:
        """The settings as the config held them, for metrics.json and sample.json."""
        return {"name": self.name, "steps": self.steps, **self.options, "clip_denoised": self.clip_denoised}


def _sampler_settings_given(node: DictConfig) -> list[str]:
    """The sampler settings a command line set: its ``sampler=``/``sampler.*`` overrides under
    Hydra; otherwise every value that differs from the default ancestral sampler's."""
    if HydraConfig.initialized():
        given = [o for o in HydraConfig.get().overrides.task if o.lstrip("+~").startswith("sampler")]
        if given:
            return given
    defaults = {"name": "ddpm", "steps": None, "clip_denoised": None}
    return [f"sampler.{k}={v}" for k, v in node.items() if v != defaults.get(k)]


def speed_settings(cfg: DictConfig) -> SpeedSettings:
    """``speed.*`` (conf/speed/) and ``batch_size`` of sample.py, evaluate.py and compare: how the
    network runs while drawing, each setting ``auto`` or fixed."""
    node = cfg.get("speed") or {}
    try:
        return SpeedSettings(precision=node.get("precision", "auto"), channels_last=node.get("channels_last", "auto"),
                             compile=node.get("compile", "auto"), batch_size=cfg.get("batch_size", "auto"))
    except ValueError as e:
        raise ConfigError(f"speed: {e}") from None


def devices(cfg: DictConfig) -> int:
    """``devices``: the processes (ranks) that draw the samples between them, ≥ 1."""
    return integer(cfg, "devices", 1) if cfg.get("devices") is not None else 1


# ---- sample.py --------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleSettings:
    ckpt_path: str
    n: int
    speed: SpeedSettings
    devices: int
    nrow: int
    trajectory: int
    seed: int
    classes: Any  # None, a class or a list of classes (checked against the model's classes)
    guidance_scale: float | None
    device: str
    sampler: SamplerSettings
    output_dir: Path

    @classmethod
    def parse(cls, cfg: DictConfig) -> SampleSettings:
        required(cfg, "ckpt_path", "the checkpoint to sample from: ckpt_path=<run dir>/checkpoints/last.ckpt")
        ints = {key: integer(cfg, key, low) for key, low in (("n", 1), ("nrow", 1), ("trajectory", 0), ("seed", 0))}
        classes, digits = plain(cfg.get("classes")), plain(cfg.get("digits"))
        if classes is not None and digits is not None:
            raise ConfigError("give classes= (digits= is its other name), not both")
        return cls(ckpt_path=str(cfg.ckpt_path), **ints, speed=speed_settings(cfg), devices=devices(cfg),
                   classes=classes if digits is None else digits,
                   guidance_scale=guidance_scale(cfg),
                   device=str(cfg.device), sampler=SamplerSettings.parse(cfg.sampler),
                   output_dir=Path(cfg.paths.output_dir))


# ---- export.py --------------------------------------------------------------------------
HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


@dataclass(frozen=True)
class ExportSettings:
    ckpt_path: str
    out: Path
    grid_samples: int
    seed: int
    push_to_hub: str | None
    private: bool
    device: str

    @classmethod
    def parse(cls, cfg: DictConfig) -> ExportSettings:
        required(cfg, "ckpt_path", "the checkpoint to export: ckpt_path=<run dir>/checkpoints/last.ckpt")
        required(cfg, "out", "the folder to write: out=<folder>")
        repo = cfg.get("push_to_hub")
        if repo is not None and not (isinstance(repo, str) and HUB_REPO_ID.match(repo)):
            raise ConfigError(f"push_to_hub must be a Hub repo id <user>/<name>, got {repo!r}")
        return cls(ckpt_path=str(cfg.ckpt_path), out=Path(str(cfg.out)), grid_samples=integer(cfg, "grid_samples", 0),
                   seed=integer(cfg, "seed", 0), push_to_hub=repo, private=flag(cfg, "private"), device=str(cfg.device))


# ---- evaluate.py ------------------------------------------------------------------------
@dataclass(frozen=True)
class LikelihoodSettings:
    enabled: bool | None  # None: where the model has a likelihood
    num_images: int
    iwae_samples: int
    batch_size: int
    variance: str | None


@dataclass(frozen=True)
class EvaluateSettings:
    ckpt_path: str | None
    samples_path: str | None
    num_samples: int
    speed: SpeedSettings
    devices: int
    guidance_scale: float | None
    seed: int
    device: str
    allow_other_dataset: bool
    reference_size: int | None
    reference_seed: int
    cache_dir: str | None
    score_test: bool
    fid: bool
    fid_batch_size: int
    classifier_epochs: int
    classifier_batch_size: int
    kid_subset_size: int
    ssim_candidates: int
    nll: LikelihoodSettings
    grid_size: int
    data: dict[str, Any] | None  # data= given: the set to score against (else the checkpoint's)
    data_dir: str
    sampler: SamplerSettings
    output_dir: Path

    @classmethod
    def parse(cls, cfg: DictConfig) -> EvaluateSettings:
        if (cfg.get("ckpt_path") is None) == (cfg.get("samples_path") is None):
            raise ConfigError("give exactly one of ckpt_path=<.ckpt> or samples_path=<.npz>")
        ints = {key: integer(cfg, key, low) for key, low in (
            ("num_samples", 4), ("reference_seed", 0), ("grid_size", 0), ("ssim_candidates", 1),
            ("nll.num_images", 1), ("nll.batch_size", 1), ("fid.batch_size", 1), ("kid_subset_size", 2))}
        ref = cfg.get("reference_size")
        if ref is not None and (not is_int(ref) or not 4 <= ref <= 60000):
            raise ConfigError(f"reference_size must be in [4, 60000] or null (all training images), got {ref!r}")
        nll = cfg.nll
        if nll.enabled not in (None, True, False):
            raise ConfigError(f"nll.enabled must be null (where the model has a likelihood), true or false, got {nll.enabled!r}")
        if not is_int(nll.iwae_samples) or nll.iwae_samples < 1:
            raise ConfigError(f"nll.iwae_samples must be an integer ≥ 1, got {nll.iwae_samples!r}")
        if nll.variance not in (None, "posterior", "beta", "learned"):
            raise ConfigError(f"nll.variance must be null (the model's), posterior, beta or learned, got {nll.variance!r}")
        return cls(
            ckpt_path=_str_or_none(cfg.ckpt_path), samples_path=_str_or_none(cfg.samples_path),
            num_samples=ints["num_samples"], speed=speed_settings(cfg), devices=devices(cfg),
            guidance_scale=guidance_scale(cfg), seed=cfg.seed,
            device=str(cfg.device), allow_other_dataset=bool(cfg.get("allow_other_dataset", False)), reference_size=ref,
            reference_seed=ints["reference_seed"], cache_dir=_str_or_none(cfg.cache_dir), score_test=bool(cfg.score_test),
            fid=bool(cfg.fid.enabled), fid_batch_size=ints["fid.batch_size"], classifier_epochs=cfg.classifier.epochs,
            classifier_batch_size=cfg.classifier.batch_size, kid_subset_size=ints["kid_subset_size"],
            ssim_candidates=ints["ssim_candidates"],
            nll=LikelihoodSettings(enabled=nll.enabled, num_images=ints["nll.num_images"], iwae_samples=nll.iwae_samples,
                                   batch_size=ints["nll.batch_size"], variance=nll.variance),
            grid_size=ints["grid_size"], data=plain(cfg.get("data")), data_dir=str(cfg.paths.data_dir),
            sampler=SamplerSettings.parse(cfg.sampler), output_dir=Path(cfg.paths.output_dir),
        )  # fmt: skip


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


# ---- train.py ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainSettings:
    """The run's own settings; the parts it builds (model, data, trainer, callbacks, loggers)
    come from their config groups through ``config.build``."""

    seed: int | None
    ckpt_path: str | None  # "last" or a path
    time_budget_minutes: float | None
    post_fit_reserve_seconds: float
    allow_other_dataset: bool
    optimized_metric: str | None
    final_samples: int
    final_sample_steps: int | None
    precision: str
    accelerator: str
    batch_size: int
    output_dir: Path

    @classmethod
    def parse(cls, cfg: DictConfig) -> TrainSettings:
        final = cfg.get("final_samples")
        return cls(
            seed=cfg.get("seed"), ckpt_path=_str_or_none(cfg.get("ckpt_path")), time_budget_minutes=time_budget(cfg),
            post_fit_reserve_seconds=float(cfg.get("post_fit_reserve_seconds", 60)),
            allow_other_dataset=bool(cfg.get("allow_other_dataset", False)), optimized_metric=optimized_metric(cfg),
            final_samples=int(final.num) if final else 0, final_sample_steps=final.steps if final else None,
            precision=str(cfg.trainer.get("precision")), accelerator=str(cfg.trainer.get("accelerator", "auto")),
            batch_size=int(cfg.data.batch_size), output_dir=Path(cfg.paths.output_dir),
        )  # fmt: skip


def time_budget(cfg: DictConfig) -> float | None:
    """``time_budget_minutes``: a positive number or null, and not beside ``trainer.max_time``."""
    try:
        budget = cfg.get("time_budget_minutes")
    except OmegaConfBaseException as e:  # an interpolation that does not parse or resolve (${0, ${oc.env:UNSET})
        raw = OmegaConf.to_container(cfg, resolve=False).get("time_budget_minutes")
        raise ConfigError(f"time_budget_minutes must be a positive number or null, got {raw!r} "
                          f"({first_line(e)})") from None
    if budget is not None and (not is_number(budget) or budget <= 0):
        raise ConfigError(f"time_budget_minutes must be a positive number or null, got {budget!r}")
    if budget is not None and cfg.trainer.get("max_time") is not None:
        raise ConfigError("give either time_budget_minutes or trainer.max_time, not both")
    return budget


def optimized_metric(cfg: DictConfig) -> str | None:
    """The metric train.py returns for sweepers (its ``optimized_metric``), or None."""
    return cfg.get("optimized_metric")
