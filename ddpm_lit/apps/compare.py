"""Compare trained models across samplers and step counts: one markdown table of MNIST-FID,
FID and (for class-conditional models) the classifier's accuracy on the requested digits.

    python -m ddpm_lit.apps.compare --model eps=runs/a/checkpoints/last.ckpt --model v=runs/b/... \\
        --grid ddpm:10,20,50,100,1000 ddim:10,20,50,100 dpmpp_2m:10,20,50,100 \\
        --num-samples 500 --out docs/compare

Every cell draws the same N samples (the same seed, so the same starting noise) and scores them
against the same training-image reference as ``evaluate.py``. Cells are written to
``results.json`` as they finish and skipped when the command is run again, so an interrupted
comparison resumes; ``table.md`` is rewritten after each cell.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from ddpm_lit.core.pixels import to_unit_range
from ddpm_lit.core.samplers import SAMPLERS
from ddpm_lit.data.sets import DataSource, check_same_dataset
from ddpm_lit.evaluation.inception import InceptionFeatures
from ddpm_lit.evaluation.scorer import Scorer, references
from ddpm_lit.generation.files import load_samples_npz, save_grid, save_samples_npz
from ddpm_lit.generation.generate import labels_for
from ddpm_lit.generation.protocol import has_chain
from ddpm_lit.io import atomic_write, write_text
from ddpm_lit.reporting.tables import compare_table
from ddpm_lit.training.base import recorded_dataset
from ddpm_lit.training.checkpointing import read_checkpoint
from ddpm_lit.training.loading import load_module, resolve_device

log = logging.getLogger(__name__)


def _value(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def parse_grid(items: list[str]) -> list[tuple[str, int]]:
    """``["ddpm:10,1000", "ddim/eta=1:20"]`` -> ``[("ddpm", 10), ("ddpm", 1000), ("ddim/eta=1", 20)]``.

    A sampler may carry options after ``/`` (``ddim/eta=1``, ``dpmpp_2m/spacing=uniform``).
    """
    cells = []
    for item in items:
        spec, _, steps = item.rpartition(":")
        name, options = split_sampler(spec) if spec else ("", {})
        if name not in SAMPLERS or not steps or None in options.values():
            raise SystemExit(
                f"--grid takes SAMPLER[/KEY=VALUE...]:STEPS[,STEPS] with SAMPLER in {', '.join(SAMPLERS)}; got {item!r}"
            )
        try:
            cells += [(spec, int(s)) for s in steps.split(",")]
        except ValueError:
            raise SystemExit(f"--grid: steps must be integers, got {item!r}") from None
    return cells


def split_sampler(spec: str) -> tuple[str, dict[str, Any]]:
    """``"ddim/eta=1"`` -> ``("ddim", {"eta": 1.0})``; a malformed option maps to None."""
    name, *opts = spec.split("/")
    options: dict[str, Any] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        options[key] = _value(value) if sep and key and value else None
    return name, options


def parse_models(items: list[str]) -> dict[str, Path]:
    models = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--model takes NAME=CHECKPOINT, got {item!r}")
        if not Path(path).is_file():
            raise SystemExit(f"--model {name}: checkpoint {path} does not exist")
        models[name] = Path(path)
    return models


def cell_key(model: str, sampler: str, steps: int, guidance: float | None) -> str:
    return f"{model}|{sampler}|{steps}" + (f"|w={guidance:g}" if guidance is not None else "")


def describe(module: Any) -> str:
    d, h = module.diffusion, module.hparams
    parts = [f"{d.schedule}", f"objective {d.objective}", f"weighting {d.loss_weighting}", f"variance {d.variance}"]
    if module.num_classes is not None:
        parts.append(f"{module.num_classes} classes, label dropout {h.cond_drop_prob:g}")
    return ", ".join(parts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ddpm_lit.apps.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], help="NAME=CHECKPOINT (repeat)")
    parser.add_argument(
        "--model-raw", action="append", default=[],
        help="NAME=CHECKPOINT scored with its raw weights instead of the EMA (the same run without averaging)",
    )  # fmt: skip
    parser.add_argument("--grid", nargs="+", required=True, help="SAMPLER:STEPS[,STEPS] ...")
    parser.add_argument("--guidance", default="", help="guidance scales for conditional models, e.g. 0,1,2,4 (default: the model's)")
    parser.add_argument("--conditional-grid", nargs="+", default=None, help="grid for conditional models (default: --grid)")
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-size", type=int, default=10000)
    parser.add_argument("--no-fid", action="store_true", help="skip the Inception FID (MNIST-FID only)")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, help="folder for results.json, table.md and one grid per cell")
    return parser


def _check(args: argparse.Namespace) -> tuple[dict[str, Path], dict[str, Path], list[float]]:
    """The models (EMA, raw) and guidance scales of the command line, or SystemExit with the reason."""
    if args.num_samples < 4:
        raise SystemExit("--num-samples must be ≥ 4")
    models, raw_models = parse_models(args.model), parse_models(args.model_raw)
    if not models and not raw_models:
        raise SystemExit("give at least one --model or --model-raw")
    if set(models) & set(raw_models):
        raise SystemExit(f"model names must differ: {sorted(set(models) & set(raw_models))}")
    try:
        scales = [float(s) for s in args.guidance.split(",") if s]
    except ValueError:
        raise SystemExit(f"--guidance takes comma-separated numbers, got {args.guidance!r}") from None
    return models, raw_models, scales


def _data_source(checkpoints: list[Path], data_dir: Path) -> DataSource:
    """The set every checkpoint was trained on (their record; none: MNIST), or SystemExit when they differ:
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
        raise SystemExit(f"{path} was made with other settings {({k: results.get(k) for k in settings})}; use another --out")
    results.update(settings)
    results.setdefault("models", {})
    results.setdefault("cells", {})
    return results


def _load(name: str, ckpt: Path, raw: bool, device: torch.device) -> tuple[Any, bool]:
    """The checkpoint's model, with its raw weights instead of the EMA when ``raw``."""
    module, ema = load_module(ckpt, device)
    if not has_chain(module):
        raise SystemExit(f"--model {name}: {ckpt} is a {module.family} checkpoint, which has no "
                         "sampler to compare; this command compares the samplers of DDPM checkpoints "
                         "(python -m ddpm_lit.apps.families compares the families)")
    if raw:
        state = read_checkpoint(ckpt).get("current_model_state")
        if state is None:
            raise SystemExit(f"--model-raw {name}: {ckpt} holds no EMA, so its weights are the raw ones; use --model")
        module.load_state_dict(state)
        ema = False
    return module, ema


def _score_cell(args: argparse.Namespace, scorer: Scorer, module: Any, name: str, sampler: str, steps: int,
                guidance: float | None) -> dict[str, Any]:
    """Draw ``--num-samples`` with one sampler, steps and guidance; save them and their grid; score them."""
    key = cell_key(name, sampler, steps, guidance)
    labels = labels_for(module, args.num_samples)
    extra = {"class_labels": labels, "guidance_scale": guidance} if labels is not None else {}
    name_only, options = split_sampler(sampler)
    start = time.perf_counter()
    drawn = module.sample(
        args.num_samples, generator=torch.Generator().manual_seed(args.seed), steps=steps,
        batch_size=args.batch_size, progress=True, sampler=name_only, **options, **extra,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    stem = key.replace("|", "_").replace("=", "").replace("/", "_")
    out = Path(args.out)
    images = load_samples_npz(save_samples_npz(drawn, out / f"{stem}.npz"))  # scored as saved, 8-bit
    save_grid(to_unit_range(images[:64]), out / f"{stem}.png")
    metrics, _ = scorer.score(images, "samples", labels=labels)
    log.info("%s: MNIST-FID %.3f, FID %s, %.0f s", key, metrics["mnist_fid"], metrics.get("fid"), seconds)
    return {
        "model": name, "sampler": sampler, "steps": steps, "guidance": guidance,
        "mnist_fid": metrics["mnist_fid"], "fid": metrics.get("fid"), "kid": metrics["kid"],
        "precision": metrics["precision"], "recall": metrics["recall"],
        "class_accuracy": metrics.get("class_accuracy"),
        "class_accuracy_per_digit": metrics.get("class_accuracy_per_digit"),
        "sampling_seconds": seconds,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    models, raw_models, scales = _check(args)
    grid = parse_grid(args.grid)
    cond_grid = parse_grid(args.conditional_grid) if args.conditional_grid else grid
    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = _open_results(results_path, {"num_samples": args.num_samples, "seed": args.seed,
                                           "reference_size": args.reference_size})
    source = _data_source([*models.values(), *raw_models.values()], Path(args.data_dir))
    results.setdefault("dataset_title", source.title)
    train, test, classifier = references(source)
    inception = None if args.no_fid else InceptionFeatures(batch_size=16 if device.type == "cpu" else 256)
    scorer = Scorer(
        train, test, classifier, inception, reference_size=args.reference_size,
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
        for sampler, steps in cond_grid if conditional else grid:
            for guidance in (scales or [None]) if conditional else [None]:
                key = cell_key(name, sampler, steps, guidance)
                if key in results["cells"]:
                    log.info("%s: done before, skipped", key)
                    continue
                results["cells"][key] = _score_cell(args, scorer, module, name, sampler, steps, guidance)
                save()
        del module
    save()
    return results


if __name__ == "__main__":
    main()
