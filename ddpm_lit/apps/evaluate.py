"""``evaluate(cfg)``: draw samples from a checkpoint (or read an .npz), score them, write evaluation.md.

The run dir gets ``metrics.json``, ``evaluation.md``, ``per_sample.csv`` (each sample's top class,
the judge's confidence in it, its nearest training image and SSIMs), ``samples.npz``
(checkpoints only), ``grid.png``, ``least_confident.png``, ``class_histogram.png``,
``ssim_histogram.png``, ``nearest_training.png`` and ``bound_terms.png``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from ddpm_lit.catalogue import figures_of
from ddpm_lit.config.build import build_dict
from ddpm_lit.config.sampling import check_sampling, draw_over_ranks, plan_for, sampling_kwargs
from ddpm_lit.config.schema import EvaluateSettings
from ddpm_lit.core.pixels import to_unit_range
from ddpm_lit.data.sets import DataSource, check_same_dataset
from ddpm_lit.errors import ConfigError, DataError
from ddpm_lit.evaluation.inception import InceptionFeatures
from ddpm_lit.generation.files import load_samples_npz, save_grid, save_samples_npz
from ddpm_lit.generation.generate import labels_for
from ddpm_lit.io import atomic_write, write_text
from ddpm_lit.reporting.tables import evaluation_report
from ddpm_lit.runs import Run, flatten
from ddpm_lit.training.loading import guidance_used, load_module, resolve_device
from ddpm_lit.training.ranks import Ranks, launch_ranks

if TYPE_CHECKING:
    from ddpm_lit.evaluation.scorer import Scorer

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """``python evaluate.py``: the config checked at the door, then ``score_model``."""
    s = EvaluateSettings.parse(cfg)
    return score_model(s, build_dict(cfg.get("logger")), hparams=OmegaConf.to_container(cfg, resolve=True))


def score_model(s: EvaluateSettings, loggers: list[Any] = (), hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score the model or samples file of ``s``; return the nested metrics written to metrics.json."""
    # Lightning, W&B, torchmetrics, matplotlib and the pages take seconds to import: a config
    # error above is told without waiting for them
    from ddpm_lit.evaluation.scorer import Scorer, Timings, judge_for, references
    from ddpm_lit.reporting.figures import (
        class_histogram,
        least_confident_figure,
        nearest_neighbour_figure,
        ssim_histogram,
    )
    from ddpm_lit.reporting.pages import write_page_quietly
    from ddpm_lit.training.loggers import close_loggers, open_loggers

    ranks = launch_ranks(s.devices, resolve_device(s.device)) if s.ckpt_path else Ranks(device=resolve_device(s.device))
    device = ranks.device
    out_dir = Path(s.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = Timings()
    module, ema, samples = _inputs(s, device)  # what can be wrong is checked before anything long runs
    if not ranks.is_zero:  # the other ranks draw their share of the samples; rank 0 scores them all
        _draw(s, module, out_dir, ranks)
        return {}
    inception = InceptionFeatures(batch_size=s.fid_batch_size) if s.fid else None
    source = data_source(s, module)
    train, test, classifier = references(source, s.classifier_epochs)
    judge = judge_for(source, s.classifier_epochs)
    wandb_mode = os.environ.get("WANDB_MODE")
    loggers = open_loggers(list(loggers))
    try:
        for logger in loggers:
            logger.log_hyperparams(hparams or {})
        labels, plan = None, None
        if module is not None:
            with timings("sampling"):
                samples, labels, plan = _draw(s, module, out_dir, ranks)
        if s.grid_size:
            save_grid(to_unit_range(samples[: s.grid_size]), out_dir / "grid.png")
        scorer = Scorer(
            train, test, classifier, inception, judge=judge, reference_size=s.reference_size, cache_dir=s.cache_dir,
            device=device, seed=s.seed, reference_seed=s.reference_seed, classifier_batch_size=s.classifier_batch_size,
            inception_batch_size=s.fid_batch_size, ssim_candidates=s.ssim_candidates,
            kid_subset_size=s.kid_subset_size, timings=timings,
        )  # fmt: skip
        results, per_image = _score(s, scorer, samples, test, labels)
        if module is not None and nll_wanted(s, module):
            with timings("nll"):
                results["nll"] = _bound(s, module, test, device, out_dir)
        scored = per_image["samples"]
        Run(out_dir).write_per_sample(per_sample_columns(scored, labels))
        least_confident_figure(samples, scored["predicted_class"], scored["confidence"], out_dir / "least_confident.png",
                               scorer.class_names,
                               floor=results.get("test", {}).get("confident_share", judge.record.get("test_confident_share")))
        ssim_histogram(per_image, out_dir / "ssim_histogram.png")
        class_histogram(results, scorer.class_names, source.title, out_dir / "class_histogram.png")
        nearest_neighbour_figure(
            samples, train, per_image["samples"]["nn_train_index"], per_image["samples"]["nn_train_distance"],
            out_dir / "nearest_training.png",
        )
        results["timings"] = dict(timings.seconds)
        results["source"] = _source(s, module, ema, len(train), scorer.classifier_id, inception, device)
        results["source"].update(speed=plan.record() if plan is not None else None, ranks=ranks.world_size)
        results["source"].update(dataset=source.dataset, dataset_title=source.title, class_names=scorer.class_names,
                                 classifier_test_accuracy=classifier.record.get("test_accuracy"),
                                 judge=judge.record.get("weights"), judge_test_accuracy=judge.record.get("test_accuracy"),
                                 judge_test_confident_share=judge.record.get("test_confident_share"))
        Run(out_dir).write_metrics(results)
        write_text(out_dir / "evaluation.md", evaluation_report(results))
        log.info("metrics.json and evaluation.md written to %s", out_dir)
        _log(loggers, results, out_dir)
        run = Run.of_file(s.ckpt_path or s.samples_path)
        if run is not None:  # the training run's page shows its evaluations: this one too, from now
            write_page_quietly(run.path)
        return results
    finally:
        close_loggers(loggers, wandb_mode)


def _inputs(s: EvaluateSettings, device: torch.device) -> tuple[Any, bool, torch.Tensor | None]:
    """The checkpoint's model and whether its weights are an EMA, or the samples file's images; checked."""
    module, ema = (load_module(s.ckpt_path, device) if s.ckpt_path else (None, False))
    samples = load_samples_npz(s.samples_path) if s.samples_path else None
    if samples is not None and len(samples) < 4:
        raise DataError(f"{s.samples_path}: scoring needs at least 4 images, the file has {len(samples)}")
    if module is not None:
        if tuple(module.image_shape) != (1, 28, 28):
            raise DataError(f"{s.ckpt_path}: evaluation compares with 28×28 grayscale images, the model draws "
                            f"{module.image_shape}")
        check_likelihood(s, module)
        check_sampling(s.sampler, s.guidance_scale, module, s.ckpt_path)
    return module, ema, samples


def data_source(s: EvaluateSettings, module: Any) -> DataSource:
    """The set the images are scored against: ``data=`` when given, else the checkpoint's, or for
    a samples file the one its ``sample.json`` (sample.py) names (MNIST for a file without one or a
    checkpoint that predates the record). Images scored against another set than their model's
    are refused unless ``allow_other_dataset=true``."""
    trained_on = module.trained_on if module is not None else _samples_dataset(s.samples_path)
    data = s.data
    if data is None:
        return DataSource.from_record(trained_on, s.data_dir)
    keys = ("dataset", "data_dir", "images", "labels", "test_images", "test_labels", "download", "check_md5")
    given = {k: data.get(k) for k in keys if data.get(k) is not None}
    names = data.get("class_names")
    source = DataSource(**given, class_names=tuple(names) if names is not None else None)
    check_same_dataset(trained_on, source.dataset, s.allow_other_dataset, s.ckpt_path or s.samples_path)
    return source


def _samples_dataset(samples_path: str | None) -> dict[str, Any] | None:
    """The data set recorded in the ``sample.json`` beside a samples file, or None."""
    record = Run(Path(samples_path).parent).sample_record().get("dataset") if samples_path else None
    return record if isinstance(record, dict) and isinstance(record.get("dataset"), str) else None


def nll_wanted(s: EvaluateSettings, module: Any) -> bool:
    return bool(s.nll.enabled or (s.nll.enabled is None and module.likelihood is not None))


def check_likelihood(s: EvaluateSettings, module: Any) -> None:
    """nll settings the checkpoint's model can honour: a likelihood when ``nll.enabled=true``, and
    the bound's options the model takes (``nll.variance``: a DDPM's, ``learned`` only when it learned one)."""
    family = module.family
    if s.nll.enabled and module.likelihood is None:
        raise ConfigError(f"nll.enabled=true: a {family} has no likelihood to bound; {s.ckpt_path} is a {family} "
                          "checkpoint (nll.enabled=false, or null to score where there is one)")
    if not nll_wanted(s, module):
        return
    try:
        module.check_likelihood_options(variance=s.nll.variance)
    except ValueError as e:
        raise ConfigError(f"{e}; {s.ckpt_path} is a {family}") from None


def _draw(s: EvaluateSettings, module: Any, out_dir: Path, ranks: Ranks) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
    """Draw ``s.num_samples`` (every digit equally often from a conditional model) over the
    ranks, save them as samples.npz (rank 0) and return them as saved (8-bit, so rescoring the
    file agrees), with their labels and the sampling plan."""
    labels = labels_for(module, s.num_samples)
    plan = plan_for(s.speed, module, s.num_samples, s.sampler.steps, guidance_used(module, s.guidance_scale), ranks)
    drawn = draw_over_ranks(s.sampler, plan, s.guidance_scale, module, s.num_samples, s.seed, labels, ranks)
    if not ranks.is_zero:
        return drawn.samples, labels, plan
    path = save_samples_npz(drawn.samples, out_dir / "samples.npz")
    log.info("samples written to %s (%s)", path, plan.describe())
    return load_samples_npz(path), labels, plan


def _score(
    s: EvaluateSettings, scorer: Scorer, samples: torch.Tensor, test: torch.Tensor, labels: torch.Tensor | None
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """The samples' metrics and, with ``score_test``, those of as many real test images (up to
    all 10k): the floor for this N, since FID, KID and precision/recall all move with N."""
    results: dict[str, Any] = {}
    per_image: dict[str, dict[str, torch.Tensor]] = {}
    results["samples"], per_image["samples"] = scorer.score(samples, "samples", labels=labels)
    if s.score_test:
        idx = torch.arange(len(test))
        if len(samples) < len(test):
            idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(s.reference_seed))
            idx = idx[: len(samples)].sort().values
        results["test"], per_image["test"] = scorer.score(test[idx], "test", cache=True, test_indices=idx)
    return results, per_image


def per_sample_columns(scored: dict[str, torch.Tensor], labels: torch.Tensor | None) -> dict[str, Any]:
    """per_sample.csv's columns, in samples.npz's order: the judge's top class and its
    probability (and the class asked for, from a conditional model), the nearest training image
    and the distance to it, and the two SSIMs."""
    columns: dict[str, Any] = {"predicted_class": scored["predicted_class"], "confidence": scored["confidence"]}
    if labels is not None:
        columns["requested_class"] = labels.cpu()
    columns.update(nn_train_index=scored["nn_train_index"], nn_train_distance=scored["nn_train_distance"],
                   ssim=scored["ssim"], nn_ssim=scored["nn_ssim"])
    return columns


def _bound(s: EvaluateSettings, module: Any, test: torch.Tensor, device: torch.device, out_dir: Path) -> dict[str, Any]:
    """The model's likelihood bound in bits/dim on ``nll.num_images`` test images; the terms of a
    bound that has them (a DDPM's) as a figure and a file."""
    gen = torch.Generator().manual_seed(s.seed)
    idx = torch.randperm(len(test), generator=gen)[: s.nll.num_images]
    bounds = module.likelihood_bounds(test[idx], k=s.nll.iwae_samples, batch_size=s.nll.batch_size, generator=gen,
                                      variance=s.nll.variance, device=device, progress=True)
    terms = bounds.pop("bound_terms", None)
    if terms is not None:
        from ddpm_lit.reporting.figures import (
            bound_terms_figure,  # matplotlib, as evaluate() imports it
        )

        bound_terms_figure(terms["terms"], bounds["prior_bpd"], out_dir / "bound_terms.png")
        with atomic_write(out_dir / "bound_terms.pt") as f:
            torch.save({"terms": terms["terms"], "totals": terms["totals"]}, f)
    return bounds


def _source(s: EvaluateSettings, module: Any, ema: bool, reference_size: int, classifier_id: str, inception: Any,
            device: torch.device) -> dict[str, Any]:
    """What was scored and how, for metrics.json and evaluation.md."""
    return {
        "ckpt_path": str(s.ckpt_path) if s.ckpt_path else None,
        "samples_path": str(s.samples_path) if s.samples_path else None,
        "ema_weights": ema,
        "family": module.family if module is not None else None,
        "sampler": s.sampler.record() if module is not None and sampling_kwargs(s.sampler, module) else None,
        "guidance_scale": guidance_used(module, s.guidance_scale) if module is not None else None,
        "reference_size": s.reference_size or reference_size,
        "reference_seed": s.reference_seed,
        "classifier": classifier_id,
        "inception": inception.identity if inception is not None else None,
        "device": str(device),
    }


def _log(loggers: list[Any], results: dict[str, Any], out_dir: Path) -> None:
    from lightning.pytorch.loggers import (
        WandbLogger,  # loaded already by the loggers evaluate() imports
    )

    flat = {f"eval/{k}": float(v) for k, v in flatten({k: v for k, v in results.items() if k != "source"}, "/").items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for logger in loggers:
        logger.log_metrics(flat, step=0)
        if isinstance(logger, WandbLogger):
            for name in figures_of("evaluate"):
                if (out_dir / f"{name}.png").is_file():
                    logger.log_image(key=f"eval/{name}", images=[str(out_dir / f"{name}.png")])
        logger.save()
