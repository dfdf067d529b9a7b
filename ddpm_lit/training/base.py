"""What every model family's LightningModule shares: the validation hook that samples and scores
(SSIM, nearest-neighbour SSIM, the classifier FID of the data set, the sample grid), the parts built from Hydra specs, and
the checkpoint's record of the class that loads it.

A family (``DDPMModule``, ``VAEModule``, ``GANModule``) subclasses ``GenerativeModule`` and gives
``family``, ``image_shape``, ``num_classes``, ``sample(n, generator)`` (the
``ddpm_lit.generation.GenerativeModel`` protocol), ``validation_samples`` and ``describe``; and it
answers what the commands ask of a family (``GenerativeModule``'s "what the commands ask" section):
its likelihood, its network evaluations per image, its optimizer steps per batch, the figures of
its runs and how one training step is timed.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from ddpm_lit.core.pixels import to_unit_range
from ddpm_lit.data.sets import DEFAULT_DATASET, DataSource, check_same_dataset
from ddpm_lit.errors import DataError
from ddpm_lit.evaluation.classifier import classifier_features, load_or_train_for
from ddpm_lit.evaluation.features import fid_from_statistics, fid_statistics
from ddpm_lit.evaluation.metrics import nearest_neighbour_ssim
from ddpm_lit.generation.files import save_grid
from ddpm_lit.generation.generate import image_generators, labels_for
from ddpm_lit.generation.models import StandaloneModel, sample_in_one_pass
from ddpm_lit.generation.pretrained import class_name
from ddpm_lit.generation.ranks import gather_in_order, rank_indices
from ddpm_lit.generation.speed import PRECISIONS
from ddpm_lit.internals import logging_step, set_logging_step

# Where a checkpoint names the class that loads it (training.loading.load_module reads it).
MODEL_CLASS_KEY = "model_class"
# The metrics of the validation hook (logged on sampling epochs only).
SAMPLED_METRICS = ("val/classifier_fid", "val/ssim", "val/nn_ssim")
# Where a checkpoint keeps the seed of the training noise (GenerativeModule.on_train_batch_start).
NOISE_SEED_KEY = "noise_seed"
# Where it keeps the count of training batches done, the step of the loggers' history.
BATCHES_KEY = "training_batches"
# Where it records the data set it was trained on (``DataSource.record()``; absent: MNIST).
DATASET_KEY = "dataset"


def recorded_dataset(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The data set a checkpoint records (``DataSource.record()``); MNIST for one written before
    checkpoints recorded it."""
    return checkpoint.get(DATASET_KEY) or {"dataset": DEFAULT_DATASET}
# The hook's settings, shared by every family, with the smallest value each may take.
HOOK_SETTINGS = {"sample_every_n_epochs": 0, "num_val_samples": 1, "nn_reference_size": 1, "fid_reference_size": 2}


def spec_of(part: Any) -> dict[str, Any]:
    """The Hydra spec that builds ``part`` again: ``{"_target_": ..., **arguments}`` (a
    ``functools.partial`` gets ``_partial_: true``); the form checkpoints keep."""
    if isinstance(part, functools.partial):
        return {"_target_": f"{part.func.__module__}.{part.func.__qualname__}", "_partial_": True,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in part.keywords.items()}}
    return {"_target_": f"{type(part).__module__}.{type(part).__qualname__}", **part.config()}


def build_part(part: Any) -> Any:
    """A part given built, or as its spec (a mapping with ``_target_``), built."""
    return instantiate(part, _convert_="all") if isinstance(part, Mapping) else part


def check_hook_settings(args: Mapping[str, Any]) -> None:
    """A ValueError naming the first setting of the validation hook that is out of range."""
    for name, low in HOOK_SETTINGS.items():
        if args[name] < low:
            raise ValueError(f"model.{name} must be ≥ {low}, got {args[name]}")
    if args["val_classifier_fid"] and args["num_val_samples"] < 2:
        raise ValueError(f"model.num_val_samples must be ≥ 2 for val/classifier_fid (a covariance), got {args['num_val_samples']}")


def family_class(name: str) -> type[GenerativeModule] | None:
    """The model family's class named ``name`` (a run config's ``model._target_``, a checkpoint's
    ``model_class``), e.g. ``ddpm_lit.training.vae.VAEModule``; None for a name that is not one of
    ddpm_lit's families (another package's, or a class moved or removed since the run was written)."""
    if not name.startswith("ddpm_lit."):
        return None
    try:
        cls = get_class(name)
    except Exception:  # moved or removed since the run was written
        return None
    return cls if isinstance(cls, type) and issubclass(cls, GenerativeModule) and cls.family else None


def family_of_class(name: str) -> str | None:
    """The ``family`` of the class named ``name`` (``ddpm_lit.training.vae.VAEModule`` -> ``vae``),
    or None (see ``family_class``)."""
    cls = family_class(name)
    return cls.family if cls is not None else None


# The figures of a run every family has (reporting.run_figures draws what a family lists).
COMMON_RUN_FIGURES = ("loss_curves", "ssim_histogram")


class GenerativeModule(L.LightningModule):
    """A LightningModule of one model family, with the validation hook every family shares:
    every ``sample_every_n_epochs`` epochs (and at the last), ``num_val_samples`` images drawn
    with the seed ``val_seed`` are scored (``val/ssim``, the study's SSIM against test images;
    ``val/nn_ssim`` against the most similar of ``nn_reference_size`` validation images;
    ``val/classifier_fid``, the classifier FID (MNIST-FID on MNIST) against ``fid_reference_size`` of them, when ``val_classifier_fid``) and
    saved as ``samples/epoch_NNN.png`` (and to W&B / TensorBoard)."""

    family: ClassVar[str] = ""
    # The metrics the family logs outside the hook, which a checkpoint or a sweep may monitor.
    logged_metrics: ClassVar[tuple[str, ...]] = ()
    image_shape: tuple[int, int, int]

    # ---- what the commands ask of a family ---------------------------------------------------
    # The likelihood bound ``likelihood_bounds`` computes, in words (None: the family has none,
    # and evaluate scores no bits/dim).
    likelihood: ClassVar[str | None] = None
    # Whether it draws along a reverse chain, so takes a sampler and its steps (sampler=, sampler.steps).
    reverse_chain: ClassVar[bool] = False
    # Optimizer steps one training batch takes (``global_step`` counts them).
    optimizer_steps_per_batch: ClassVar[int] = 1
    # The figures of its runs, by the names of ``ddpm_lit.reporting.run_figures.FIGURES``.
    run_figures: ClassVar[tuple[str, ...]] = COMMON_RUN_FIGURES
    # The losses its loss curves show: (training keys, validation keys) of its CSV history.
    loss_keys: ClassVar[tuple[tuple[str, ...], tuple[str, ...]]] = (("train/loss",), ("val/loss",))

    @classmethod
    def evaluations_per_image(cls, steps: int | None, guidance_scale: float | None,
                              num_timesteps: int | None = None) -> int:
        """Network evaluations to draw one image with a sampler of ``steps`` steps (None: the whole
        chain of ``num_timesteps``) and guidance ``guidance_scale`` (None: unconditional). A family
        without a reverse chain draws in one network pass."""
        return 1

    @classmethod
    def images_per_optimizer_step(cls, batch_size: int) -> float:
        """Training images one optimizer step sees (a batch of ``batch_size`` spread over the
        batch's ``optimizer_steps_per_batch`` steps)."""
        return batch_size / cls.optimizer_steps_per_batch

    def check_likelihood_options(self, variance: str | None = None) -> None:
        """A ValueError naming an option of ``likelihood_bounds`` that this model cannot honour:
        ``variance``, the reverse variance of a chain's bound, is a DDPM's."""
        if variance is not None:
            raise ValueError(f"nll.variance={variance}: the reverse variance is a DDPM's")

    def likelihood_bounds(
        self, images: torch.Tensor, *, k: int, batch_size: int, generator: torch.Generator | None = None,
        variance: str | None = None, device: torch.device | None = None, progress: bool = False,
    ) -> dict[str, Any]:
        """The family's bound on the negative log-likelihood of ``images`` (N, C, H, W) in [−1, 1],
        quantised to 8 bits, in bits/dim: at least ``bpd`` (the mean over images), ``bpd_stderr``
        (its standard error) and ``bound`` (which bound), plus the family's own numbers; and, for
        a bound that is a sum over steps, ``bound_terms`` (``terms`` (T,) and per-image ``totals``
        (N,)), which evaluate draws and saves rather than writes to metrics.json. ``k``: importance
        samples of a bound that takes them; ``variance``: see ``check_likelihood_options``.
        A family with ``likelihood`` None has none."""
        raise NotImplementedError(f"a {self.family} has no likelihood to bound")

    def training_loss(self, x0: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The loss one training step minimises for x0 (B, C, H, W) in [−1, 1] and a conditional
        model's labels (B,)."""
        raise NotImplementedError

    def timing_step(
        self, x0: torch.Tensor, labels: torch.Tensor | None, optimizer: torch.optim.Optimizer,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> None:
        """One training step of x0 (B, C, H, W) with ``optimizer`` (over all the module's
        parameters) and the forward pass under ``autocast()``, outside a Trainer: what
        ``training.planning.SpeedProbe`` times to choose the precision and plan a time budget."""
        with autocast():
            loss = self.training_loss(x0, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def __init__(self) -> None:
        super().__init__()
        self._reference: dict[str, torch.Tensor] = {}
        self._fid_reference: dict[str, torch.Tensor] | None = None  # val/classifier_fid's reference statistics
        # val/classifier_fid's classifier; in a tuple, so that it is not a submodule and stays out of checkpoints
        self._classifier: tuple[torch.nn.Module] | None = None

    def speed_settings(self) -> dict[str, Any]:
        """How the family's networks can run, as set (``channels_last``, ``compile``: true,
        false or ``auto``); {} for a family without such settings."""
        return {}

    def use_speed_settings(self, channels_last: bool | None = None, compile: bool | None = None) -> None:
        """Set the settings of ``speed_settings`` (each where not None)."""
        if channels_last is not None or compile is not None:
            raise ValueError(f"a {self.family} has no channels_last or compile setting")

    # ---- what a family gives ------------------------------------------------------------
    @property
    def num_classes(self) -> int | None:
        return None

    def sample(self, num_samples: int, generator: torch.Generator | None = None, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def standalone(self) -> StandaloneModel:
        """The model outside Lightning over this module's own networks (no copy): what it samples
        with, and what ``export.py`` writes (``ddpm_lit.generation.pretrained``)."""
        raise NotImplementedError(f"a {self.family or type(self).__name__} has no model outside Lightning")

    def validation_samples(self, seed: int, indices: Sequence[int] | None = None,
                           precision: str = "32-true") -> torch.Tensor:
        """Images ``indices`` (None: all) of the hook's ``num_val_samples`` (len(indices), C, H, W)
        in [−1, 1]: image i from the noise of ``(seed, i)`` (``image_generators``) and, for a
        conditional model, with label i of ``labels_for``, so any split over ranks draws the same
        images; the network in ``precision``."""
        num = self.hparams.num_val_samples
        indices = list(range(num)) if indices is None else list(indices)
        labels = labels_for(self, num)
        extra = {} if labels is None else {"class_labels": labels[indices]}
        return self.sample(len(indices), generator=image_generators(seed, indices), precision=precision,
                           **extra, **self.validation_sampler())

    def validation_sampler(self) -> dict[str, Any]:
        """The sampler options of the validation hook's draw (none for a one-pass model)."""
        return {}

    def describe(self) -> str:
        """The model in a few words, for the console at the start of training."""
        return self.family

    @classmethod
    def monitorable_metrics(cls) -> tuple[str, ...]:
        return cls.logged_metrics + SAMPLED_METRICS

    # ---- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[MODEL_CLASS_KEY] = class_name(type(self))
        if self.noise_seed is not None:
            checkpoint[NOISE_SEED_KEY] = self.noise_seed
        checkpoint[BATCHES_KEY] = self._batches_done
        if self.trained_on is not None:
            checkpoint[DATASET_KEY] = self.trained_on

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if NOISE_SEED_KEY in checkpoint:
            self.noise_seed = int(checkpoint[NOISE_SEED_KEY])
        self._batches_done = checkpoint.get(BATCHES_KEY)
        self.trained_on = recorded_dataset(checkpoint)

    # ---- the data set ---------------------------------------------------------------------
    # The data set the weights were trained on (``DataSource.record()``): from the checkpoint,
    # then the datamodule's at fit start. A fit on another set than the checkpoint's is refused
    # unless ``allow_other_dataset`` (train.py's ``allow_other_dataset=true``).
    trained_on: dict[str, Any] | None = None
    allow_other_dataset: bool = False

    def _check_dataset(self, datamodule: Any) -> None:
        """Refuse a datamodule whose set is not the checkpoint's (unless allowed), a conditional
        model on a set without labels or with another number of classes, and ``val_classifier_fid`` without
        labels (its classifier needs them); then record the set."""
        source = getattr(datamodule, "source", None)
        if source is None:  # a datamodule of another kind: nothing to check against
            return
        record = source.record()
        check_same_dataset(self.trained_on, record["dataset"], self.allow_other_dataset, "the checkpoint")
        image_set = getattr(datamodule, "image_set", None)
        if image_set is not None:
            if self.num_classes is not None and image_set.num_classes != self.num_classes:
                have = "has no labels" if image_set.num_classes is None else f"has {image_set.num_classes} classes"
                raise DataError(f"the model is conditional on {self.num_classes} classes, but {source.title} {have}")
            if self.hparams.get("val_classifier_fid") and self.hparams.get("sample_every_n_epochs") and not image_set.labelled:
                raise DataError(f"model.val_classifier_fid=true needs a labelled set (its feature classifier); {source.title} "
                                "has no labels: model.val_classifier_fid=false")
        self.trained_on = record

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._batches_done = (self._batches_done or 0) + 1

    # ---- the training noise ---------------------------------------------------------------
    noise_seed: int | None = None
    _batches_done: int | None = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Seed torch's generators from the run's noise seed and the step: every random draw of
        a training step (timesteps, noise, dropped labels, a VAE's or a GAN's z) is then a
        function of the seed and ``global_step`` (and the rank) alone, so a run resumed from a checkpoint
        draws what the uninterrupted run drew, whatever validation or start-up drew in between.
        The noise seed is torch's seed at the first step (``seed`` of the config), then the
        checkpoint's."""
        if self.noise_seed is None:
            self.noise_seed = torch.initial_seed() % 2**31
        # (each DDP rank its own stream: the ranks' batches get independent noise)
        torch.manual_seed((self.noise_seed * 1_000_003 + self.global_step) * 1024 + self.global_rank)
        # The loggers' step goes on from the batches done, so a resumed history neither repeats
        # nor skips a step (Lightning restores its own count one short after some mid-epoch saves).
        if self._batches_done is None:
            self._batches_done = logging_step(self.trainer)
        elif logging_step(self.trainer) != self._batches_done:
            set_logging_step(self.trainer, self._batches_done)

    # ---- the validation hook --------------------------------------------------------------
    def on_fit_start(self) -> None:
        # Load (or train, once) the val/classifier_fid classifier now: validation runs without gradients,
        # and a missing classifier is better found before the first epoch than after it.
        datamodule = getattr(self.trainer, "datamodule", None)
        self._check_dataset(datamodule)
        if self.hparams.val_classifier_fid and self.hparams.sample_every_n_epochs and hasattr(datamodule, "data_dir"):
            if self.trainer.is_global_zero:
                self._feature_classifier(datamodule)

    def on_validation_epoch_end(self) -> None:
        every = self.hparams.sample_every_n_epochs
        if self.trainer.sanity_checking or every == 0:
            return
        last = self.trainer.max_epochs is not None and self.current_epoch + 1 >= self.trainer.max_epochs
        if (self.current_epoch + 1) % every and not last:
            return
        samples = self._validation_draw()  # each rank its share, all of them on every rank
        metrics: dict[str, float] = {}
        if self.trainer.is_global_zero:
            metrics = self._score_samples(samples)
        # Every rank logs the same values, so any of them can be a checkpoint monitor under DDP.
        metrics = self.trainer.strategy.broadcast(metrics, src=0)
        for name, value in metrics.items():
            self.log(name, value)

    def _validation_draw(self) -> torch.Tensor:
        """The ``num_val_samples`` images, split over the ranks (one batch each) and gathered in
        order, drawn in the trainer's precision: Lightning runs ``validation_step`` under the
        precision plugin's autocast but not ``on_validation_epoch_end``, where this is called."""
        num, world = self.hparams.num_val_samples, self.trainer.world_size
        share = -(-num // world)
        precision = str(self.trainer.precision)
        was_training = self.training
        self.eval()
        indices = rank_indices(num, share, self.global_rank, world)  # none when there are more ranks than images
        try:
            local = (self.validation_samples(self.hparams.val_seed, indices,
                                             precision=precision if precision in PRECISIONS else "32-true")
                     if indices else torch.empty(0, *self.image_shape, device=self.device))
        finally:
            self.train(was_training)
        return gather_in_order(local.float(), num, share, world, self.all_gather)

    def _score_samples(self, samples: torch.Tensor) -> dict[str, float]:
        """Save the validation samples' grid and score them (rank 0)."""
        unit = to_unit_range(samples.float())
        metrics: dict[str, float] = {}
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "reference_images"):
            test = self._reference_batch(datamodule, "test", len(unit))
            ref = self._reference_batch(datamodule, "val", self.hparams.nn_reference_size)
            # (a) the study's measure: mean SSIM of sample i against test image i
            metrics["val/ssim"] = float(ssim(unit, test[: len(unit)], data_range=1.0))
            # (b) each sample against its most similar reference image
            metrics["val/nn_ssim"] = float(nearest_neighbour_ssim(unit, ref).mean())
            if self.hparams.val_classifier_fid and hasattr(datamodule, "data_dir"):
                metrics["val/classifier_fid"] = self._val_classifier_fid(datamodule, samples)
        self._log_grid(unit)
        return metrics

    def _val_classifier_fid(self, datamodule: Any, samples: torch.Tensor) -> float:
        """The classifier FID (MNIST-FID on MNIST) of ``samples`` (in [−1, 1]) against the validation
        reference, in the features of the data set's classifier."""
        classifier = self._feature_classifier(datamodule).to(self.device).eval()
        if self._fid_reference is None:
            ref = datamodule.reference_images("val", self.hparams.fid_reference_size, seed=self.hparams.val_seed)
            ref_features = torch.cat([classifier_features(classifier, b, self.device) for b in ref.split(500)])
            self._fid_reference = fid_statistics(ref_features)
        features = classifier_features(classifier, samples, self.device)
        return fid_from_statistics(self._fid_reference, fid_statistics(features))

    def _feature_classifier(self, datamodule: Any) -> torch.nn.Module:
        """The data set's evaluation classifier, whose features give ``val/classifier_fid`` (cached under the
        datamodule's ``data_dir``; trained once, in about 2 minutes on 2 cores, when missing)."""
        if self._classifier is None:
            source = getattr(datamodule, "source", None)
            if source is None:  # a datamodule of another kind, with MNIST's data_dir
                hp = getattr(datamodule, "hparams", {})
                source = DataSource(DEFAULT_DATASET, str(datamodule.data_dir), download=hp.get("download", True),
                                    check_md5=hp.get("check_md5", True))
            self._classifier = (load_or_train_for(source),)
        return self._classifier[0]

    def _reference_batch(self, datamodule: Any, split: str, n: int) -> torch.Tensor:
        if split not in self._reference:
            images = datamodule.reference_images(split, n, seed=self.hparams.val_seed)
            self._reference[split] = to_unit_range(images).to(self.device)
        return self._reference[split]

    def _log_grid(self, unit: torch.Tensor) -> None:
        path = Path(self.trainer.default_root_dir) / "samples" / f"epoch_{self.current_epoch:03d}.png"
        grid = save_grid(unit, path)
        caption = f"epoch {self.current_epoch}, step {self.global_step}"
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/samples", images=[str(path)], caption=[caption])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/samples", grid, self.global_step)


class OnePassModule(GenerativeModule):
    """A family that draws an image with one network pass from noise (a VAE's decoder, a GAN's
    generator): it gives ``draw_noise`` and ``generate``; ``sample`` batches them."""

    def draw_noise(self, num_samples: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """Every random input of ``num_samples`` images, each (N, ...), drawn with ``generator``."""
        raise NotImplementedError

    def generate(self, noise: dict[str, torch.Tensor]) -> torch.Tensor:
        """Images (B, C, H, W) from a batch of ``draw_noise``'s inputs."""
        raise NotImplementedError

    def sample(self, num_samples: int, generator: torch.Generator | None = None, **kwargs: Any) -> torch.Tensor:
        """``num_samples`` images (N, C, H, W) in [−1, 1], see ``generation.models.sample_in_one_pass``:
        ``generator`` (one, or one per image) may live on any device; chain options are refused."""
        was_training = self.training
        self.eval()
        try:
            return sample_in_one_pass(self.family, self.draw_noise, self.generate, self.device, num_samples,
                                      generator, **kwargs)
        finally:
            self.train(was_training)
