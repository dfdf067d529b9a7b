"""Scoring a set of images against a data set (MNIST, Fashion-MNIST, one's own): every metric of
``evaluate.py`` for one image set.

``Scorer`` holds the references (the training set, a fixed subset of it for the
distribution metrics, and the test set) and the two feature networks; ``score(images)``
returns a flat dict of metrics and the per-image values the figures need. Reference
features and statistics are cached on disk (``ddpm_lit.evaluation.features``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from ddpm_lit.core.pixels import quantize, to_model_range, to_unit_range
from ddpm_lit.data.sets import DEFAULT_DATASET, DataSource
from ddpm_lit.evaluation.classifier import FeatureClassifier, load_or_train_for
from ddpm_lit.evaluation.features import (
    batched_features,
    cached,
    fid_from_statistics,
    fid_statistics,
    images_key,
)
from ddpm_lit.evaluation.metrics import (
    class_statistics_from_logits,
    confidence_metrics,
    fid_kid_from_features,
    nearest_neighbours,
    precision_recall,
    top_class_probability,
)

log = logging.getLogger(__name__)


# ---- timing ------------------------------------------------------------------------------
@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def references(
    source: DataSource, classifier_epochs: int = 3
) -> tuple[torch.Tensor, torch.Tensor, FeatureClassifier]:
    """What a ``Scorer`` compares with: the set's training and test images (N, 1, 28, 28) in
    [−1, 1] and its evaluation classifier (cached under ``source.data_dir``; trained when missing)."""
    image_set = source.load()
    train = to_model_range(image_set.train_images, 28)
    test = to_model_range(image_set.test_images, 28)
    classifier = load_or_train_for(_checked(source), epochs=classifier_epochs)  # the files were checked above
    return train, test, classifier


def judge_for(source: DataSource, epochs: int = 3) -> FeatureClassifier:
    """The set's judge (``ddpm_lit.evaluation.classifier``: the classifier trained with outlier
    exposure), cached beside its classifier; trained when missing. Call after ``references``,
    which fetches and checks the set's files."""
    return load_or_train_for(_checked(source), epochs=epochs, judge=True)


def _checked(source: DataSource) -> DataSource:
    """``source`` as one whose files were fetched and md5-checked already (by ``references``)."""
    return DataSource(**{**source.record(), "data_dir": source.data_dir, "download": False, "check_md5": False})


def mnist_references(
    data_dir: str | Path, download: bool = True, check_md5: bool = True, classifier_epochs: int = 3,
    dataset: str = DEFAULT_DATASET,
) -> tuple[torch.Tensor, torch.Tensor, FeatureClassifier]:
    """``references`` of a built-in set (MNIST unless ``dataset`` says otherwise) under ``data_dir``."""
    return references(DataSource(dataset, str(data_dir), download=download, check_md5=check_md5), classifier_epochs)


def _module_key(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def paired_ssim(a: torch.Tensor, b: torch.Tensor, batch: int = 2000) -> torch.Tensor:
    """SSIM of a[i] against b[i], images in [0, 1]: (N,)."""
    return torch.cat(
        [ssim(a[i : i + batch], b[i : i + batch], data_range=1.0, reduction="none") for i in range(0, len(a), batch)]
    )


class Scorer:
    """Every sample-quality metric of one image set against a data set.

    Args:
        train, test: the set's training (MNIST: 60k) and test images, (N, 1, 28, 28) in [−1, 1].
        classifier: the set's evaluation classifier (features for the classifier FID, KID,
            precision, recall; logits for the Inception Score and the class histogram).
        judge: the set's judge (``load_or_train_for(..., judge=True)``), whose top-class
            probability is each image's ``confidence``; None: no per-sample confidence.
        inception: ``InceptionFeatures`` for the standard FID, or None to skip it.
        reference_size: training images (a fixed random subset, drawn with ``reference_seed``)
            that the distribution metrics compare with; None: all of them. Precision and recall
            use a random N of them for N images, as Kynkäänniemi et al. compare equal-size sets.
        cache_dir: where reference features and statistics are kept (None: not cached).
        ssim_candidates: nearest training images (by pixel distance) searched for the best SSIM.
    """

    def __init__(
        self,
        train: torch.Tensor,
        test: torch.Tensor,
        classifier: torch.nn.Module,
        inception: torch.nn.Module | None = None,
        judge: torch.nn.Module | None = None,
        reference_size: int | None = 10000,
        cache_dir: str | Path | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        reference_seed: int = 0,
        classifier_batch_size: int = 1000,
        inception_batch_size: int = 64,
        ssim_candidates: int = 10,
        kid_subset_size: int = 1000,
        timings: Timings | None = None,
    ) -> None:
        if reference_size is not None and not 1 <= reference_size <= len(train):
            raise ValueError(f"reference_size must be in [1, {len(train)}] or null, got {reference_size}")
        self.train, self.test = train, test
        self._train_unit = to_unit_range(train)  # in [0, 1] for distances and SSIM, converted once
        self.device = torch.device(device)
        self.classifier = classifier.eval().to(self.device)
        self.inception = inception.to(self.device) if inception is not None else None
        self.judge = judge.eval().to(self.device) if judge is not None else None
        self.cache_dir = cache_dir
        self.seed = seed
        self.reference_seed = reference_seed
        self.classifier_batch_size = classifier_batch_size
        self.inception_batch_size = inception_batch_size
        self.ssim_candidates = ssim_candidates
        self.kid_subset_size = kid_subset_size
        self.timings = timings or Timings()
        gen = torch.Generator().manual_seed(reference_seed)
        if reference_size is None or reference_size == len(train):
            self.reference = train
        else:
            self.reference = train[torch.randperm(len(train), generator=gen)[:reference_size].sort().values]
        self._classifier_key = _module_key(self.classifier)
        record = getattr(self.classifier, "record", None) or {}
        self.dataset = record.get("dataset", DEFAULT_DATASET)
        self.class_names: list[str] | None = record.get("class_names") or None
        self.classifier_id = f"{self.dataset.replace('_', '-')}-cnn-{self._classifier_key[:12]}"
        self._ref_features: torch.Tensor | None = None
        self._ref_inception: dict[str, torch.Tensor] | None = None

    # ---- features ------------------------------------------------------------------------
    def classifier_outputs(self, images: torch.Tensor, cache: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features (N, 128) and logits (N, 10), in one pass of the classifier."""

        def both(x: torch.Tensor) -> torch.Tensor:
            x = quantize(x)  # the 8-bit images the cache key names
            f = self.classifier.features(x)
            return torch.cat([f, self.classifier.head(f)], dim=1)

        def compute() -> dict[str, torch.Tensor]:
            out = batched_features(both, images, self.classifier_batch_size, self.device)
            dim = self.classifier.feature_dim
            return {"features": out[:, :dim].contiguous(), "logits": out[:, dim:].contiguous()}

        key = f"{images_key(images)}/{self._classifier_key}"
        out = cached(self.cache_dir if cache else None, "classifier", key, compute)
        return out["features"], out["logits"]

    def judge_images(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The judge's top class of each image and its probability: ``predicted_class`` (N,) and
        ``confidence`` (N,), of the 8-bit images (as every score here)."""
        assert self.judge is not None
        logits = batched_features(lambda x: self.judge(quantize(x)), images, self.classifier_batch_size, self.device)
        predicted, confidence = top_class_probability(logits)
        return {"predicted_class": predicted.cpu(), "confidence": confidence.cpu()}

    def inception_statistics(self, images: torch.Tensor, cache: bool = False, desc: str | None = None) -> dict[str, torch.Tensor]:
        assert self.inception is not None

        def compute() -> dict[str, torch.Tensor]:
            feats = batched_features(self.inception, images, self.inception_batch_size, self.device, desc=desc)
            return fid_statistics(feats)

        key = f"{images_key(images)}/{self.inception.identity}"
        return cached(self.cache_dir if cache else None, "inception", key, compute)

    def reference_features(self) -> torch.Tensor:
        if self._ref_features is None:
            self._ref_features = self.classifier_outputs(self.reference, cache=True)[0]
        return self._ref_features

    def reference_inception(self) -> dict[str, torch.Tensor]:
        if self._ref_inception is None:
            with self.timings("fid_reference"):
                self._ref_inception = self.inception_statistics(
                    self.reference, cache=True, desc=f"Inception features of {len(self.reference)} training images"
                )
        return self._ref_inception

    # ---- scoring -------------------------------------------------------------------------
    def score(
        self,
        images: torch.Tensor,
        name: str = "samples",
        cache: bool = False,
        test_indices: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Metrics of ``images`` (N, 1, 28, 28) in [−1, 1], and per-image values (N,) for figures and
        per_sample.csv: ``nn_train_distance``/``nn_train_index``, ``ssim``, ``nn_ssim`` and, with a
        judge, ``predicted_class`` and ``confidence`` (its top class and that class's probability).

        ``labels`` (N,): the classes the images should show (a class-conditional model's, or the
        test labels); adds the classifier's accuracy on them, overall and per class.
        ``cache``: keep this set's features on disk too (for fixed sets such as the test images).
        ``test_indices``: when the images are test images, their indices in ``test``, so that
        the study's SSIM never pairs an image with itself.
        Timings of samples' metrics are recorded under their metric names, others' under
        ``<name>/<metric>``.
        """
        if len(images) < 4:
            raise ValueError(f"scoring needs at least 4 images (k = 3 nearest neighbours), got {len(images)}")
        if images.ndim != 4 or images.shape[1:] != self.train.shape[1:]:
            raise ValueError(f"expected images of shape (N, {', '.join(map(str, self.train.shape[1:]))}), got {tuple(images.shape)}")
        prefix = "" if name == "samples" else f"{name}/"
        t = self.timings
        out: dict[str, Any] = {"num_images": float(len(images))}
        if self.inception is not None:
            ref = self.reference_inception()
            with t(prefix + "fid"):
                stats = self.inception_statistics(images, cache=cache, desc=f"Inception features of {len(images)} {name}")
                out["fid"] = fid_from_statistics(ref, stats)
        with t(prefix + "classifier_features"):
            ref_f = self.reference_features()
            feats, logits = self.classifier_outputs(images, cache=cache)
        with t(prefix + "classifier_fid_kid"):
            fk = fid_kid_from_features(ref_f, feats, self.kid_subset_size, seed=self.seed)
            out.update(classifier_fid=fk["fid"], kid=fk["kid"], kid_std=fk["kid_std"])
        with t(prefix + "precision_recall"):
            pr_ref = ref_f
            if len(ref_f) > len(feats):  # equal-size sets, as in Kynkäänniemi et al. (2019)
                gen = torch.Generator().manual_seed(self.reference_seed)
                pr_ref = ref_f[torch.randperm(len(ref_f), generator=gen)[: len(feats)]]
            out.update(precision_recall(pr_ref, feats, k=3))
        with t(prefix + "class_statistics"):
            out.update(self._class_metrics(logits, labels))
        judged = {}
        if self.judge is not None:
            with t(prefix + "confidence"):
                judged = self.judge_images(images)
                out.update(confidence_metrics(judged["confidence"]))
        unit = to_unit_range(images)
        with t(prefix + "memorisation"):
            memorisation, per_image = self._memorisation(unit)
            out.update(memorisation)
        per_image.update(judged)
        with t(prefix + "ssim"):
            ssims, per_ssim = self._ssim(unit, per_image.pop("nn_train_candidates"), test_indices)
            out.update(ssims)
            per_image.update(per_ssim)
        return out, per_image

    @staticmethod
    def _class_metrics(logits: torch.Tensor, labels: torch.Tensor | None) -> dict[str, Any]:
        """Inception Score and class histogram; with ``labels`` the classifier's accuracy on them."""
        out: dict[str, Any] = class_statistics_from_logits(logits)
        if labels is not None:
            if labels.shape != (len(logits),):
                raise ValueError(f"{len(logits)} images need {len(logits)} labels, got shape {tuple(labels.shape)}")
            correct = (logits.argmax(1).cpu() == labels.cpu()).float()
            out["class_accuracy"] = float(correct.mean())
            out["class_accuracy_per_class"] = {str(int(k)): float(correct[labels.cpu() == k].mean()) for k in labels.unique()}
        return out

    def _memorisation(self, unit: torch.Tensor) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """Pixel distance of each image (in [0, 1]) to its nearest training image, and the
        ``ssim_candidates`` nearest as candidates for the SSIM search."""
        dist, idx = nearest_neighbours(unit, self._train_unit, k=max(1, self.ssim_candidates))
        nearest = dist[:, 0].float()
        metrics = {"nn_train_distance_mean": float(nearest.mean()), "nn_train_distance_median": float(nearest.median())}
        return metrics, {"nn_train_distance": nearest, "nn_train_index": idx[:, 0], "nn_train_candidates": idx}

    def _ssim(
        self, unit: torch.Tensor, candidates: torch.Tensor, test_indices: torch.Tensor | None
    ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """The study's SSIM (each image against a random test image, never itself) and the best
        SSIM over the nearest training images by pixel distance: the SSIM of the closest match
        without scoring each image against all 60k."""
        gen = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(len(self.test), generator=gen)
        pos = torch.arange(len(unit)) % len(self.test)
        partner = perm[pos]
        if test_indices is not None:  # a test image is never paired with itself
            partner = torch.where(partner == test_indices, perm[(pos + 1) % len(self.test)], partner)
        report = paired_ssim(unit, to_unit_range(self.test[partner]))
        best = torch.stack(
            [paired_ssim(unit, self._train_unit[candidates[:, j]]) for j in range(candidates.shape[1])], dim=1
        ).max(dim=1).values
        return {"ssim": float(report.mean()), "nn_train_ssim": float(best.mean())}, {"ssim": report, "nn_ssim": best}
