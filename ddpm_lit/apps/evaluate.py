"""``evaluate(cfg)``: draw samples from a checkpoint (or read an .npz), score them, write a report.

The run dir gets ``metrics.json``, ``report.md``, ``samples.npz`` (checkpoints only),
``grid.png``, ``ssim_histogram.png``, ``nearest_training.png`` and ``bound_terms.png``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from ddpm_lit.config.build import build_dict
from ddpm_lit.config.sampling import check_sampling, sample_with, sampling_kwargs
from ddpm_lit.core.likelihood import dataset_bits_per_dim
from ddpm_lit.core.pixels import to_unit_range
from ddpm_lit.data.sets import DataSource
from ddpm_lit.errors import ConfigError, DataError
from ddpm_lit.evaluation.inception import InceptionFeatures
from ddpm_lit.generation.files import load_samples_npz, save_grid, save_samples_npz
from ddpm_lit.generation.generate import labels_for
from ddpm_lit.io import atomic_write, write_text
from ddpm_lit.reporting.tables import evaluation_report
from ddpm_lit.runs import Run, flatten
from ddpm_lit.training.loading import guidance_used, load_module, resolve_device

if TYPE_CHECKING:
    from ddpm_lit.evaluation.scorer import Scorer

log = logging.getLogger(__name__)


def _check_config(cfg: DictConfig) -> None:
    if (cfg.get("ckpt_path") is None) == (cfg.get("samples_path") is None):
        raise ConfigError("give exactly one of ckpt_path=<.ckpt> or samples_path=<.npz>")
    for key, low in (("num_samples", 4), ("batch_size", 1), ("reference_seed", 0), ("grid_size", 0), ("ssim_candidates", 1),
                     ("nll.num_images", 1), ("nll.batch_size", 1), ("fid.batch_size", 1), ("kid_subset_size", 2)):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"{key} must be an integer ≥ {low}, got {value!r}")
    ref = cfg.get("reference_size")
    if ref is not None and (not isinstance(ref, int) or not 4 <= ref <= 60000):
        raise ConfigError(f"reference_size must be in [4, 60000] or null (all training images), got {ref!r}")
    if cfg.nll.enabled not in (None, True, False):
        raise ConfigError(f"nll.enabled must be null (where the model has a likelihood), true or false, got {cfg.nll.enabled!r}")
    if not isinstance(cfg.nll.iwae_samples, int) or cfg.nll.iwae_samples < 1:
        raise ConfigError(f"nll.iwae_samples must be an integer ≥ 1, got {cfg.nll.iwae_samples!r}")
    if cfg.nll.variance not in (None, "posterior", "beta", "learned"):
        raise ConfigError(f"nll.variance must be null (the model's), posterior, beta or learned, got {cfg.nll.variance!r}")
    check_sampling(cfg)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the model or samples file of ``cfg``; return the nested metrics written to metrics.json."""
    _check_config(cfg)
    # Lightning, W&B, torchmetrics, matplotlib and the pages take seconds to import: a config
    # error above is told without waiting for them
    from ddpm_lit.evaluation.scorer import Scorer, Timings, references
    from ddpm_lit.reporting.figures import (
        class_histogram,
        nearest_neighbour_figure,
        ssim_histogram,
    )
    from ddpm_lit.reporting.pages import write_page_quietly
    from ddpm_lit.training.loggers import close_loggers, open_loggers

    device = resolve_device(cfg.device)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = Timings()
    module, ema, samples = _inputs(cfg, device)  # what can be wrong is checked before anything long runs
    inception = InceptionFeatures(batch_size=cfg.fid.batch_size) if cfg.fid.enabled else None
    source = data_source(cfg, module)
    train, test, classifier = references(source, cfg.classifier.epochs)
    wandb_mode = os.environ.get("WANDB_MODE")
    loggers = open_loggers(build_dict(cfg.get("logger")))
    try:
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        labels = None
        if module is not None:
            with timings("sampling"):
                samples, labels = _draw(cfg, module, out_dir)
        if cfg.grid_size:
            save_grid(to_unit_range(samples[: cfg.grid_size]), out_dir / "grid.png")
        scorer = Scorer(
            train, test, classifier, inception, reference_size=cfg.reference_size, cache_dir=cfg.cache_dir,
            device=device, seed=cfg.seed, reference_seed=cfg.reference_seed, classifier_batch_size=cfg.classifier.batch_size,
            inception_batch_size=cfg.fid.batch_size, ssim_candidates=cfg.ssim_candidates,
            kid_subset_size=cfg.kid_subset_size, timings=timings,
        )  # fmt: skip
        results, per_image = _score(cfg, scorer, samples, test, labels)
        if module is not None and nll_wanted(cfg, module):
            with timings("nll"):
                results["nll"] = _bound(cfg, module, test, device, out_dir)
        ssim_histogram(per_image, out_dir / "ssim_histogram.png")
        class_histogram(results, scorer.class_names, source.title, out_dir / "class_histogram.png")
        nearest_neighbour_figure(
            samples, train, per_image["samples"]["nn_train_index"], per_image["samples"]["nn_train_distance"],
            out_dir / "nearest_training.png",
        )
        results["timings"] = dict(timings.seconds)
        results["source"] = _source(cfg, module, ema, len(train), scorer.classifier_id, inception, device)
        results["source"].update(dataset=source.dataset, dataset_title=source.title, class_names=scorer.class_names,
                                 classifier_test_accuracy=classifier.record.get("test_accuracy"))
        Run(out_dir).write_metrics(results)
        write_text(out_dir / "report.md", evaluation_report(results))
        log.info("metrics and report written to %s", out_dir)
        _log(loggers, results, out_dir)
        run = Run.of_file(cfg.ckpt_path or cfg.samples_path)
        if run is not None:  # the training run's page shows its evaluations: this one too, from now
            write_page_quietly(run.path)
        return results
    finally:
        close_loggers(loggers, wandb_mode)


def _inputs(cfg: DictConfig, device: torch.device) -> tuple[Any, bool, torch.Tensor | None]:
    """The checkpoint's model and whether its weights are an EMA, or the samples file's images; checked."""
    module, ema = (load_module(cfg.ckpt_path, device) if cfg.ckpt_path else (None, False))
    samples = load_samples_npz(cfg.samples_path) if cfg.samples_path else None
    if samples is not None and len(samples) < 4:
        raise DataError(f"{cfg.samples_path}: scoring needs at least 4 images, the file has {len(samples)}")
    if module is not None:
        if tuple(module.image_shape) != (1, 28, 28):
            raise DataError(f"{cfg.ckpt_path}: evaluation compares with 28×28 grayscale images, the model draws "
                            f"{module.image_shape}")
        check_likelihood(cfg, module)
        check_sampling(cfg, module)
    return module, ema, samples


def data_source(cfg: DictConfig, module: Any) -> DataSource:
    """The set the images are scored against: ``data=`` when given, else the checkpoint's, or for
    a samples file the one its ``sample.json`` (sample.py) names (MNIST for a file without one or a
    checkpoint that predates the record). Images scored against another set than their model's
    are refused unless ``allow_other_dataset=true``."""
    trained_on = getattr(module, "trained_on", None) if module is not None else _samples_dataset(cfg.samples_path)
    data = cfg.get("data")
    if data is None:
        return DataSource.from_record(trained_on, cfg.paths.data_dir)
    keys = ("dataset", "data_dir", "images", "labels", "test_images", "test_labels", "download", "check_md5")
    given = {k: data.get(k) for k in keys if data.get(k) is not None}
    names = data.get("class_names")
    source = DataSource(**given, class_names=tuple(names) if names is not None else None)
    if trained_on is not None and trained_on.get("dataset") != source.dataset and not cfg.get("allow_other_dataset"):
        raise ConfigError(f"{cfg.ckpt_path or cfg.samples_path} was trained on {trained_on.get('dataset')}; data={source.dataset} would "
                          f"score it against another set: drop data= (it scores against {trained_on.get('dataset')}), "
                          "or allow_other_dataset=true")
    return source


def _samples_dataset(samples_path: str | None) -> dict[str, Any] | None:
    """The data set recorded in the ``sample.json`` beside a samples file, or None."""
    record = Run(Path(samples_path).parent).sample_record().get("dataset") if samples_path else None
    return record if isinstance(record, dict) and isinstance(record.get("dataset"), str) else None


def likelihood_of(module: Any) -> str | None:
    """The likelihood bound a model has: ``ddpm`` (the variational bound over the chain), ``vae``
    (ELBO and IWAE), or None (a GAN)."""
    if hasattr(module, "diffusion"):
        return "ddpm"
    return "vae" if hasattr(module, "likelihood_bounds") else None


def nll_wanted(cfg: DictConfig, module: Any) -> bool:
    return bool(cfg.nll.enabled or (cfg.nll.enabled is None and likelihood_of(module) is not None))


def check_likelihood(cfg: DictConfig, module: Any) -> None:
    """nll settings the checkpoint's model can honour: a likelihood when ``nll.enabled=true``, and
    ``nll.variance`` only for a DDPM (``learned`` only when it learned one)."""
    family, kind = getattr(module, "family", "model"), likelihood_of(module)
    if cfg.nll.enabled and kind is None:
        raise ConfigError(f"nll.enabled=true: a {family} has no likelihood to bound; {cfg.ckpt_path} is a {family} "
                          "checkpoint (nll.enabled=false, or null to score where there is one)")
    if not nll_wanted(cfg, module):
        return
    if cfg.nll.variance is not None and kind != "ddpm":
        raise ConfigError(f"nll.variance={cfg.nll.variance}: the reverse variance is a DDPM's; {cfg.ckpt_path} is a {family}")
    if cfg.nll.variance == "learned" and module.diffusion.variance != "learned":
        raise ConfigError(f"nll.variance=learned, but {cfg.ckpt_path} has a fixed variance ({module.diffusion.variance})")


def _draw(cfg: DictConfig, module: Any, out_dir: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Draw ``cfg.num_samples`` (every digit equally often from a conditional model), save them
    as samples.npz and return them as saved (8-bit, so rescoring the file agrees), with their labels."""
    labels = labels_for(module, cfg.num_samples)
    drawn = sample_with(cfg, module, cfg.num_samples, torch.Generator().manual_seed(cfg.seed), labels, progress=True)
    path = save_samples_npz(drawn, out_dir / "samples.npz")
    log.info("samples written to %s", path)
    return load_samples_npz(path), labels


def _score(
    cfg: DictConfig, scorer: Scorer, samples: torch.Tensor, test: torch.Tensor, labels: torch.Tensor | None
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """The samples' metrics and, with ``score_test``, those of as many real test images (up to
    all 10k): the floor for this N, since FID, KID and precision/recall all move with N."""
    results: dict[str, Any] = {}
    per_image: dict[str, dict[str, torch.Tensor]] = {}
    results["samples"], per_image["samples"] = scorer.score(samples, "samples", labels=labels)
    if cfg.score_test:
        idx = torch.arange(len(test))
        if len(samples) < len(test):
            idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(cfg.reference_seed))
            idx = idx[: len(samples)].sort().values
        results["test"], per_image["test"] = scorer.score(test[idx], "test", cache=True, test_indices=idx)
    return results, per_image


def _bound(cfg: DictConfig, module: Any, test: torch.Tensor, device: torch.device, out_dir: Path) -> dict[str, Any]:
    """The variational bound in bits/dim on ``nll.num_images`` test images; its terms as a figure and a file."""
    gen = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(len(test), generator=gen)[: cfg.nll.num_images]
    if likelihood_of(module) == "vae":
        bounds = module.likelihood_bounds(test[idx], k=cfg.nll.iwae_samples, batch_size=cfg.nll.batch_size,
                                          generator=gen, progress=True)
        return {"bound": "elbo", "bpd": bounds["elbo_bpd"], "bpd_stderr": bounds["elbo_bpd_stderr"], **bounds}
    bound = dataset_bits_per_dim(
        module.net, module.diffusion, test[idx], batch_size=cfg.nll.batch_size, generator=gen,
        variance=cfg.nll.variance, device=device, progress=True,
    )  # fmt: skip
    from ddpm_lit.reporting.figures import (
        bound_terms_figure,  # matplotlib, as evaluate() imports it
    )

    bound_terms_figure(bound["terms"], bound["prior_bpd"], out_dir / "bound_terms.png")
    with atomic_write(out_dir / "bound_terms.pt") as f:
        torch.save({"terms": bound["terms"], "totals": bound["totals"]}, f)
    nll = {k: bound[k] for k in ("bpd", "bpd_stderr", "prior_bpd", "l0_bpd", "last_step_bpd", "num_images")}
    return {**nll, "bound": "ddpm", "variance": cfg.nll.variance or module.diffusion.variance}


def _source(cfg: DictConfig, module: Any, ema: bool, reference_size: int, classifier_id: str, inception: Any,
            device: torch.device) -> dict[str, Any]:
    """What was scored and how, for metrics.json and the report."""
    return {
        "ckpt_path": str(cfg.ckpt_path) if cfg.ckpt_path else None,
        "samples_path": str(cfg.samples_path) if cfg.samples_path else None,
        "ema_weights": ema,
        "family": getattr(module, "family", None) if module is not None else None,
        "sampler": OmegaConf.to_container(cfg.sampler) if module is not None and sampling_kwargs(cfg, module) else None,
        "guidance_scale": guidance_used(module, cfg.get("guidance_scale")) if module is not None else None,
        "reference_size": cfg.reference_size or reference_size,
        "reference_seed": cfg.reference_seed,
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
            for name in ("grid", "ssim_histogram", "nearest_training", "bound_terms"):
                if (out_dir / f"{name}.png").is_file():
                    logger.log_image(key=f"eval/{name}", images=[str(out_dir / f"{name}.png")])
        logger.save()
