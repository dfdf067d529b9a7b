"""Every metric a table or page shows and every figure file a run holds, each said once.

A ``Metric`` knows how to present itself, as torchmetrics' ``Metric`` classes carry
``higher_is_better``: its title, its format (of the value divided by ``scale``: seconds shown in
minutes, parameters in millions), which way is better, and which model families have it. The
tables of ``ddpm_lit.reporting.tables`` (evaluate.py's evaluation.md, the runs table of
``python -m ddpm_lit.summarize``, the families table, compare's table) and the pages read it, so one
metric reads alike everywhere. Where a metric is computed is said in docs/architecture.md, "A metric".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

FAMILIES = ("ddpm", "vae", "gan")  # the model families a metric can belong to, and families= compares
LIKELIHOOD = ("ddpm", "vae")  # the families with a likelihood bound: bits/dim


@dataclass(frozen=True)
class Metric:
    """One metric under the key it is stored by (metrics.json, results.json).

    ``title``: the column or row title; ``{dataset}`` in it becomes the data set's title
    (``MNIST-FID``, ``Fashion-MNIST-FID``). ``description``: the longer row label of an
    evaluation.md (the title when empty). ``format``: ``str.format`` of ``value / scale``.
    ``better``: ``"lower"``, ``"higher"`` or None (no direction: an SSIM against test images
    is compared with the real images', not made as large as possible). ``families``: the model
    families that have it (None: every one)."""

    key: str
    title: str
    format: str = "{:.3f}"
    scale: float = 1.0
    better: Literal["lower", "higher"] | None = None
    description: str = ""
    families: tuple[str, ...] | None = None

    def label(self, dataset_title: str = "MNIST", long: bool = False) -> str:
        """The title (or, ``long``, the description) with the data set's title filled in."""
        return (self.description if long and self.description else self.title).format(dataset=dataset_title)

    def show(self, value: Any) -> str:
        """``value`` as the tables print it (``–`` for None)."""
        if value is None:
            return "–"
        return self.format.format(value / self.scale if self.scale != 1 else value)

    def applies_to(self, family: str) -> bool:
        return self.families is None or family in self.families

    def best(self, values: Mapping[str, Any]) -> str | None:
        """The name whose value is best by ``better`` (finite numbers only); None without a direction or a value."""
        finite = {name: v for name, v in values.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if self.better is None or not finite:
            return None
        pick = min if self.better == "lower" else max
        return pick(finite, key=finite.__getitem__)


METRICS = (
    # logged while training (metrics.json of a run, the CSV history)
    Metric("train/loss", "train/loss", "{:.4f}", better="lower", families=LIKELIHOOD),
    Metric("train/loss_epoch", "train/loss", "{:.4f}", better="lower", families=("ddpm",)),
    Metric("val/loss", "val/loss", "{:.4f}", better="lower", families=LIKELIHOOD),
    Metric("train/bpd", "train/bpd", "{:.3f}", better="lower", families=("vae",)),
    Metric("train/kl", "train/kl", "{:.4f}", families=("vae",)),
    Metric("val/kl", "val/kl", "{:.4f}", families=("vae",)),
    Metric("train/d_loss", "train/d_loss", "{:.4f}", families=("gan",)),
    Metric("train/g_loss", "train/g_loss", "{:.4f}", families=("gan",)),
    Metric("train/d_real", "train/d_real", "{:.3f}", families=("gan",)),
    Metric("train/d_fake", "train/d_fake", "{:.3f}", families=("gan",)),
    Metric("val/d_real", "val/d_real", "{:.3f}", families=("gan",)),
    Metric("val/d_fake", "val/d_fake", "{:.3f}", families=("gan",)),
    Metric("val/classifier_fid", "val/classifier_fid", "{:.2f}", better="lower"),
    Metric("val/ssim", "val/ssim", "{:.3f}"),
    Metric("val/nn_ssim", "val/nn_ssim", "{:.3f}"),
    # what train.py adds at its end
    Metric("params", "params (M)", "{:.2f}", scale=1e6),
    Metric("epochs", "epochs", "{:.0f}"),
    Metric("global_step", "steps", "{:.0f}"),
    Metric("fit_seconds", "fit (min)", "{:.1f}", scale=60),
    Metric("final_samples_seconds", "final samples (s)", "{:.0f}"),
    # evaluate.py's scores of samples (and of real test images)
    Metric("fid", "FID", "{:.2f}", better="lower", description="FID (TF-Inception-v3)"),
    Metric("classifier_fid", "{dataset}-FID", "{:.3f}", better="lower", description="{dataset}-FID (classifier features)"),
    Metric("kid", "KID", "{:.4f}", better="lower", description="KID (classifier features)"),
    Metric("precision", "precision", better="higher", description="precision (k = 3)"),
    Metric("recall", "recall", better="higher", description="recall (k = 3)"),
    Metric("confident_share", "confident share", better="higher",
           description="confident share: images the set's judge reads with ≥ 90 % confidence"),
    Metric("mean_confidence", "mean confidence", better="higher",
           description="mean confidence: the judge's mean top-class probability"),
    Metric("inception_score", "classifier Inception Score", better="higher",
           description="classifier Inception Score (max 10)"),
    Metric("class_accuracy", "accuracy", better="higher", description="classifier accuracy on the requested classes"),
    Metric("class_entropy", "class entropy (nats)", better="higher",
           description="class-histogram entropy (nats, uniform 2.303)"),
    Metric("min_class_share", "smallest class share", better="higher", description="smallest class share (uniform 0.1)"),
    Metric("classes_present", "digits present", "{:.0f}", better="higher",
           description="classes present (≥ 2 % of the images)"),
    Metric("nn_train_distance_mean", "distance to nearest training image",
           description="mean distance to nearest training image"),
    Metric("nn_train_distance_median", "median distance to nearest training image"),
    Metric("ssim", "SSIM vs random test image", description="SSIM vs random test image (study's protocol)"),
    Metric("nn_train_ssim", "SSIM vs closest training image"),
    Metric("bpd", "bits/dim (DDPM bound or VAE ELBO)", better="lower", families=LIKELIHOOD),
    Metric("iwae_bpd", "bits/dim IWAE", better="lower", families=("vae",)),
    # the families' comparison (python -m ddpm_lit.families) and the samplers' (python -m ddpm_lit.compare)
    Metric("sampling_ms_per_image", "sampling ms/image", "{:.2f}", better="lower"),
    Metric("sampling_seconds", "sampling (s)", "{:.0f}", better="lower"),
    Metric("evaluations_per_image", "network evaluations/image", "{:.0f}", better="lower"),
    Metric("fit_minutes", "training (min)", "{:.1f}"),
    Metric("training_images_k", "training images (thousands)", "{:.0f}"),
    Metric("params_m", "parameters (M)", "{:.2f}"),
)
BY_KEY = {m.key: m for m in METRICS}


def metric(key: str) -> Metric:
    """The catalogue's entry of ``key``; KeyError naming the known keys for another."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"{key!r} is not in the metric catalogue (ddpm_lit/catalogue.py): {', '.join(BY_KEY)}") from None


def find(key: str) -> Metric | None:
    """``metric(key)``, or None for a key the catalogue does not hold (a metric a user logs)."""
    return BY_KEY.get(key)


@dataclass(frozen=True)
class Figure:
    """A figure file: ``<name>.png`` in a run's ``figures/`` (run_figures) or an evaluation's dir
    (evaluate.py), with the caption the pages give it."""

    name: str
    caption: str
    written_by: tuple[str, ...]

    @property
    def file(self) -> str:
        return f"{self.name}.png"


# In the order a reader wants them on a page.
FIGURES = (
    Figure("loss_curves", "Loss curves", ("run_figures",)),
    Figure("trajectory", "Denoising trajectory", ("run_figures",)),
    Figure("ssim_histogram", "SSIM of the samples", ("run_figures", "evaluate")),
    Figure("least_confident", "Least-confident samples", ("evaluate",)),
    Figure("class_histogram", "Classes of the samples", ("evaluate",)),
    Figure("nearest_training", "Nearest training images", ("evaluate",)),
    Figure("forward_process", "Forward process", ("run_figures",)),
    Figure("schedules", "Schedules", ("run_figures",)),
    Figure("two_mode_diffusion", "A two-mode density diffusing", ("run_figures",)),
    Figure("bound_terms", "Terms of the variational bound", ("evaluate",)),
    Figure("grid", "Samples", ("evaluate",)),
)
CAPTIONS = {f.name: f.caption for f in FIGURES}


def figures_of(writer: str) -> tuple[str, ...]:
    """The names of the figures ``writer`` (``run_figures`` or ``evaluate``) writes, in page order."""
    return tuple(f.name for f in FIGURES if writer in f.written_by)


def figure_order(name: str) -> tuple[int, str]:
    """Sort key of a figure file's stem: the catalogue's order, then others by name."""
    order = [f.name for f in FIGURES]
    return (order.index(name) if name in order else len(order), name)
