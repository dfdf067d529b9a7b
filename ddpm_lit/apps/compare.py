"""Compare trained models across samplers and step counts: one markdown table of MNIST-FID,
FID and (for class-conditional models) the classifier's accuracy on the requested digits
(conf/compare.yaml):

    python -m ddpm_lit.compare models={eps:runs/a/checkpoints/last.ckpt,v:runs/b/...} \\
        grid=[ddpm:10,20,50,100,1000,ddim:10,20,50,100,dpmpp_2m:10,20,50,100] \\
        num_samples=500 out=docs/compare

Every cell draws the same N samples (the same seed, so the same starting noise) and scores them
against the same training-image reference as ``evaluate.py``. Cells are written to
``results.json`` as they finish and skipped when the command is run again, so an interrupted
comparison resumes; ``table.md`` is rewritten after each cell.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ddpm_lit.config.sampling import plan_for
from ddpm_lit.config.schema import flag, integer, is_int, is_number, plain, required, speed_settings
from ddpm_lit.core.pixels import to_unit_range
from ddpm_lit.core.samplers import SAMPLERS
from ddpm_lit.data.sets import DataSource, check_same_dataset
from ddpm_lit.errors import ConfigError
from ddpm_lit.evaluation.inception import InceptionFeatures
from ddpm_lit.evaluation.scorer import Scorer, judge_for, references
from ddpm_lit.generation.files import load_samples_npz, save_grid, save_samples_npz
from ddpm_lit.generation.generate import image_generators, labels_for
from ddpm_lit.generation.protocol import has_chain
from ddpm_lit.generation.speed import SamplingPlan, SpeedSettings
from ddpm_lit.io import atomic_write, write_text
from ddpm_lit.reporting.tables import compare_table
from ddpm_lit.training.base import recorded_dataset
from ddpm_lit.training.checkpointing import read_checkpoint
from ddpm_lit.training.loading import guidance_used, load_module, resolve_device

log = logging.getLogger(__name__)


def _value(text: str) -> Any:
    """An option's value: ``true``/``false`` as booleans (a string "false" would be truthy), a
    number as a float, anything else as written."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text)
    except ValueError:
        return text


def parse_grid(items: Any, key: str = "grid") -> list[tuple[str, int]]:
    """``["ddpm:10", 1000, "ddim/eta=1:20"]`` -> ``[("ddpm", 10), ("ddpm", 1000), ("ddim/eta=1", 20)]``.

    An item ``SAMPLER[/KEY=VALUE...]:STEPS[,STEPS]`` names a sampler and its steps; a number after
    it is another step count of that sampler (Hydra reads ``grid=[ddpm:10,1000]`` as
    ``["ddpm:10", 1000]``). A sampler may carry options after ``/`` (``ddim/eta=1``,
    ``dpmpp_2m/spacing=uniform``).
    """
    cells: list[tuple[str, int]] = []
    for item in items if isinstance(items, list) else [items]:
        if is_int(item) and cells:
            cells.append((cells[-1][0], item))
            continue
        spec, _, steps = str(item).rpartition(":")
        name, options = split_sampler(spec) if spec else ("", {})
        if name not in SAMPLERS or not steps or None in options.values():
            raise ConfigError(f"{key} takes SAMPLER[/KEY=VALUE...]:STEPS items (a number after one: more STEPS) "
                              f"with SAMPLER in {', '.join(SAMPLERS)}; got {item!r}")
        try:
            cells += [(spec, int(s)) for s in steps.split(",")]
        except ValueError:
            raise ConfigError(f"{key}: steps must be integers, got {item!r}") from None
    if not cells:
        raise ConfigError(f"{key} names no sampler; give SAMPLER:STEPS items, e.g. {key}=[ddpm:20,1000,ddim:20]")
    return cells


def split_sampler(spec: str) -> tuple[str, dict[str, Any]]:
    """``"ddim/eta=1"`` -> ``("ddim", {"eta": 1.0})``; a malformed option maps to None."""
    name, *opts = spec.split("/")
    options: dict[str, Any] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        options[key] = _value(value) if sep and key and value else None
    return name, options


def parse_models(models: Any, key: str) -> dict[str, Path]:
    """``{name: checkpoint}`` of the config as paths, each of which must exist."""
    if models is None:
        return {}
    if not isinstance(models, dict) or not all(isinstance(v, str) and v for v in models.values()):
        raise ConfigError(f"{key} takes names and checkpoints, {key}={{eps:runs/a/checkpoints/last.ckpt}}, got {models!r}")
    for name, path in models.items():
        if not Path(path).is_file():
            raise ConfigError(f"{key}.{name}: checkpoint {path} does not exist")
    return {str(name): Path(path) for name, path in models.items()}


@dataclass(frozen=True)
class CompareSettings:
    """conf/compare.yaml, checked: the models (EMA and raw weights), the grids as (sampler, steps)
    cells, the guidance scales (empty: the model's) and the sampling and scoring settings."""

    out: Path
    models: dict[str, Path]
    raw_models: dict[str, Path]
    grid: list[tuple[str, int]]
    conditional_grid: list[tuple[str, int]]
    guidance: list[float]
    num_samples: int
    speed: SpeedSettings
    seed: int
    reference_size: int
    fid: bool
    data_dir: Path
    device: str

    @classmethod
    def parse(cls, cfg: DictConfig) -> CompareSettings:
        required(cfg, "out", "the folder of the table: out=<dir>")
        models, raw_models = parse_models(plain(cfg.models), "models"), parse_models(plain(cfg.raw_models), "raw_models")
        if not models and not raw_models:
            raise ConfigError("give at least one checkpoint: models={name:<ckpt>} or raw_models={name:<ckpt>}")
        if set(models) & set(raw_models):
            raise ConfigError(f"model names must differ between models and raw_models: {sorted(set(models) & set(raw_models))}")
        required(cfg, "grid", "the samplers and steps: grid=[ddpm:20,1000,ddim:20]")
        grid = parse_grid(plain(cfg.grid))
        conditional = parse_grid(plain(cfg.conditional_grid), "conditional_grid") if cfg.conditional_grid else grid
        guidance = plain(cfg.get("guidance"))
        guidance = guidance if isinstance(guidance, list) else [] if guidance is None else [guidance]
        if not all(is_number(g) and g >= 0 for g in guidance):
            raise ConfigError(f"guidance takes numbers ≥ 0, e.g. guidance=[0,1,2,4], got {plain(cfg.guidance)!r}")
        return cls(out=Path(cfg.out), models=models, raw_models=raw_models, grid=grid, conditional_grid=conditional,
                   guidance=[float(g) for g in guidance], num_samples=integer(cfg, "num_samples", 4),
                   speed=speed_settings(cfg), seed=integer(cfg, "seed", 0),
                   reference_size=integer(cfg, "reference_size", 4), fid=flag(cfg, "fid"),
                   data_dir=Path(cfg.paths.data_dir), device=str(cfg.device))


def cell_key(model: str, sampler: str, steps: int, guidance: float | None) -> str:
    return f"{model}|{sampler}|{steps}" + (f"|w={guidance:g}" if guidance is not None else "")


def describe(module: Any) -> str:
    d, h = module.diffusion, module.hparams
    parts = [f"{d.schedule}", f"objective {d.objective}", f"weighting {d.loss_weighting}", f"variance {d.variance}"]
    if module.num_classes is not None:
        parts.append(f"{module.num_classes} classes, label dropout {h.cond_drop_prob:g}")
    return ", ".join(parts)


def _data_source(checkpoints: list[Path], data_dir: Path) -> DataSource:
    """The set every checkpoint was trained on (their record; none: MNIST), or a DataError when they differ:
    one table scores every model against one set."""
    records = {str(c): recorded_dataset(read_checkpoint(c)) for c in checkpoints}
    first = next(iter(records.values()))
    for path, record in records.items():  # one table scores every model against one set: the first's
        check_same_dataset(record, first["dataset"], False, path)
    return DataSource.from_record(first, data_dir)


def _open_results(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """results.json so far (cells already scored are skipped), refused when made with other settings."""
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    if results and any(results.get(k) != v for k, v in settings.items()):
        raise ConfigError(f"{path} was made with other settings {({k: results.get(k) for k in settings})}; use another out=")
    results.update(settings)
    results.setdefault("models", {})
    results.setdefault("cells", {})
    return results


def _load(name: str, ckpt: Path, raw: bool, device: torch.device) -> tuple[Any, bool]:
    """The checkpoint's model, with its raw weights instead of the EMA when ``raw``."""
    module, ema = load_module(ckpt, device)
    if not has_chain(module):
        raise ConfigError(f"models.{name}: {ckpt} is a {module.family} checkpoint, which has no "
                          "sampler to compare; this command compares the samplers of DDPM checkpoints "
                          "(python -m ddpm_lit.families compares the families)")
    if raw:
        state = read_checkpoint(ckpt).get("current_model_state")
        if state is None:
            raise ConfigError(f"raw_models.{name}: {ckpt} holds no EMA, so its weights are the raw ones; give it in models=")
        module.load_state_dict(state)
        ema = False
    return module, ema


def _score_cell(args: CompareSettings, scorer: Scorer, module: Any, name: str, sampler: str, steps: int,
                guidance: float | None, plan: SamplingPlan) -> dict[str, Any]:
    """Draw ``num_samples`` with one sampler, steps and guidance; save them and their grid; score them."""
    key = cell_key(name, sampler, steps, guidance)
    labels = labels_for(module, args.num_samples)
    extra = {"class_labels": labels, "guidance_scale": guidance} if labels is not None else {}
    name_only, options = split_sampler(sampler)
    start = time.perf_counter()
    drawn = module.sample(
        args.num_samples, generator=image_generators(args.seed, range(args.num_samples)), steps=steps,
        progress=True, sampler=name_only, **options, **extra, **plan.sample_kwargs(),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    stem = key.replace("|", "_").replace("=", "").replace("/", "_")
    out = Path(args.out)
    images = load_samples_npz(save_samples_npz(drawn, out / f"{stem}.npz"))  # scored as saved, 8-bit
    save_grid(to_unit_range(images[:64]), out / f"{stem}.png")
    metrics, _ = scorer.score(images, "samples", labels=labels)
    log.info("%s: MNIST-FID %.3f, FID %s, %.0f s", key, metrics["classifier_fid"], metrics.get("fid"), seconds)
    return {
        "model": name, "sampler": sampler, "steps": steps, "guidance": guidance,
        "classifier_fid": metrics["classifier_fid"], "fid": metrics.get("fid"), "kid": metrics["kid"],
        "precision": metrics["precision"], "recall": metrics["recall"],
        "confident_share": metrics.get("confident_share"), "mean_confidence": metrics.get("mean_confidence"),
        "class_accuracy": metrics.get("class_accuracy"),
        "class_accuracy_per_class": metrics.get("class_accuracy_per_class"),
        "sampling_seconds": seconds,
        "nfe_per_s": args.num_samples * module.evaluations_per_image(steps, guidance_used(module, guidance)) / seconds,
        "speed": plan.describe(),
    }  # fmt: skip


def compare(cfg: DictConfig) -> dict[str, Any]:
    """``python -m ddpm_lit.compare``: the config checked at the door, then ``compare_models``."""
    return compare_models(CompareSettings.parse(cfg))


def compare_models(args: CompareSettings) -> dict[str, Any]:
    """Score every model at every cell of its grid not scored before; return results.json's content."""
    models, raw_models, scales = args.models, args.raw_models, args.guidance
    grid, cond_grid = args.grid, args.conditional_grid
    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = _open_results(results_path, {"num_samples": args.num_samples, "seed": args.seed,
                                           "reference_size": args.reference_size})
    source = _data_source([*models.values(), *raw_models.values()], Path(args.data_dir))
    results.setdefault("dataset_title", source.title)
    train, test, classifier = references(source)
    judge = judge_for(source)
    results.setdefault("test_confident_share", judge.record.get("test_confident_share"))
    inception = InceptionFeatures(batch_size=16 if device.type == "cpu" else 256) if args.fid else None
    scorer = Scorer(
        train, test, classifier, inception, judge=judge, reference_size=args.reference_size,
        cache_dir=Path(args.data_dir) / "eval_cache", device=device, seed=args.seed,
    )  # fmt: skip

    def save() -> None:
        with atomic_write(results_path, "w") as f:
            f.write(json.dumps(results, indent=2))
        write_text(out / "table.md", compare_table(results, fid=inception is not None))

    for name, ckpt in [*models.items(), *raw_models.items()]:
        module, ema = _load(name, ckpt, name in raw_models, device)
        label = describe(module) + ("" if ema else ", raw weights (no EMA)")
        results["models"][name] = {"ckpt": str(ckpt), "describe": label, "ema_weights": ema}
        conditional = module.num_classes is not None
        cells = cond_grid if conditional else grid
        most = max(module.evaluations_per_image(steps, guidance_used(module, g))
                   for _, steps in cells for g in ((scales or [None]) if conditional else [None]))
        plan = None
        for sampler, steps in cells:
            for guidance in (scales or [None]) if conditional else [None]:
                key = cell_key(name, sampler, steps, guidance)
                if key in results["cells"]:
                    log.info("%s: done before, skipped", key)
                    continue
                if plan is None:  # timed once per model, for its longest cell
                    plan = plan_for(args.speed, module, args.num_samples, most, None)
                results["cells"][key] = _score_cell(args, scorer, module, name, sampler, steps, guidance, plan)
                save()
        del module
    save()
    return results
