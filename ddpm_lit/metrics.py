"""Sample-quality measures on feature vectors that torchmetrics does not provide.

FID, KID and SSIM come from torchmetrics; the k-NN precision and recall of Kynkäänniemi et
al. (2019) and the nearest-neighbour memorisation distance are written here.
"""

from __future__ import annotations

import torch


def _pairwise_distances(a: torch.Tensor, b: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """Euclidean distances (N, M) between rows of a (N, D) and b (M, D), in float64, in row batches."""
    a, b = a.double(), b.double()
    return torch.cat([torch.cdist(a[i : i + batch], b) for i in range(0, len(a), batch)])


def knn_radii(features: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row: (N,)."""
    if not 1 <= k < len(features):
        raise ValueError(f"k must be in [1, {len(features) - 1}] for {len(features)} feature vectors, got {k}")
    d = _pairwise_distances(features, features)
    return d.kthvalue(k + 1, dim=1).values  # the 1st is the point itself, at distance 0


def manifold_coverage(radii_of: torch.Tensor, support: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Fraction of ``queries`` inside the union of balls B(support_i, radii_of_i)."""
    d = _pairwise_distances(queries, support)  # (Q, S)
    return (d <= radii_of[None, :]).any(dim=1).double().mean()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019), from features (N, D) and (M, D).

    Precision: share of generated samples inside the real manifold (k-NN balls of real features).
    Recall: share of real samples inside the generated manifold.
    """
    precision = manifold_coverage(knn_radii(real, k), real, fake)
    recall = manifold_coverage(knn_radii(fake, k), fake, real)
    return {"precision": float(precision), "recall": float(recall)}


def nearest_distances(queries: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Distance of each query (Q, D) to its nearest reference row (R, D): (Q,).

    Memorisation shows as samples much closer to their nearest training image than held-out
    real images are.
    """
    return _pairwise_distances(queries.flatten(1), reference.flatten(1)).min(dim=1).values
