"""Reference forms of the evaluation metrics, for tests: images in, numbers out, without the
Scorer's caches (the package computes them from features extracted once)."""

from __future__ import annotations

import torch

from ddpm_lit.evaluation.metrics import (
    class_statistics_from_logits,
    fid_kid_from_features,
    nearest_neighbours,
)


def nearest_distances(queries: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Distance of each query (Q, D) to its nearest reference row (R, D): (Q,).

    Memorisation shows as samples much closer to their nearest training image than held-out
    real images are.
    """
    return nearest_neighbours(queries, reference, k=1)[0][:, 0]


class ClassifierFeatures(torch.nn.Module):
    """A feature extractor for torchmetrics' FID and KID: images (B, 1, 28, 28) in [−1, 1] ->
    the classifier's penultimate features (B, D). ``num_features`` is what torchmetrics reads."""

    def __init__(self, classifier: torch.nn.Module) -> None:
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = classifier.feature_dim

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images.float())


def feature_fid_kid(
    extractor: ClassifierFeatures,
    real: torch.Tensor,
    fake: torch.Tensor,
    batch_size: int = 500,
    kid_subset_size: int = 1000,
) -> dict[str, float]:
    """FID and KID (mean, std) of ``fake`` against ``real`` in the extractor's feature space.

    real, fake: (N, 1, 28, 28) in [−1, 1]. Features are extracted once for both metrics.
    """
    real_f, fake_f = (
        torch.cat([extractor(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
        for images in (real, fake)
    )
    return fid_kid_from_features(real_f, fake_f, kid_subset_size)


def class_statistics(classifier: torch.nn.Module, images: torch.Tensor, batch_size: int = 500) -> dict[str, float]:
    """Classifier Inception Score and mode coverage of ``images`` (N, 1, 28, 28) in [−1, 1];
    see ``class_statistics_from_logits``."""
    classifier.eval()
    with torch.no_grad():
        logits = torch.cat([classifier(images[i : i + batch_size].float()) for i in range(0, len(images), batch_size)])
    return class_statistics_from_logits(logits)
