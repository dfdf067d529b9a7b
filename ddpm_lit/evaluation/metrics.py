"""Sample-quality measures on feature vectors that torchmetrics does not provide.

FID, KID and SSIM come from torchmetrics; the k-NN precision and recall of Kynkäänniemi et
al. (2019), the nearest-neighbour memorisation distance and a classifier's confidence in each
sample are written here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torchmetrics.functional.image import structural_similarity_index_measure as ssim
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from ddpm_lit.internals import PrecomputedFeatures


@contextmanager
def _quiet_torchmetrics() -> Iterator[None]:
    """Silence torchmetrics' notes that do not apply here: KID and IS keep features in memory
    (these are the precomputed features, already in memory), and one IS split has no std."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        warnings.filterwarnings("ignore", message=".*degrees of freedom is <= 0.*")
        yield


def _row_batches(a: torch.Tensor, b: torch.Tensor, batch: int = 1024) -> Iterator[torch.Tensor]:
    """Euclidean distances between rows of a (N, D) and b (M, D) in float64, ``batch`` rows of a
    at a time: memory stays at batch × M whatever N (60k × 60k would be 29 GB)."""
    a, b = a.double(), b.double()
    for i in range(0, len(a), batch):
        yield torch.cdist(a[i : i + batch], b)


def knn_radii(features: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row: (N,)."""
    if not 1 <= k < len(features):
        raise ValueError(f"k must be in [1, {len(features) - 1}] for {len(features)} feature vectors, got {k}")
    # the 1st nearest is the point itself, at distance 0
    return torch.cat([d.kthvalue(k + 1, dim=1).values for d in _row_batches(features, features)])


def manifold_coverage(radii_of: torch.Tensor, support: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Fraction of ``queries`` inside the union of balls B(support_i, radii_of_i)."""
    inside = [(d <= radii_of[None, :]).any(dim=1) for d in _row_batches(queries, support)]  # (b, S) each
    return torch.cat(inside).double().mean()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019), from features (N, D) and (M, D).

    Precision: share of generated samples inside the real manifold (k-NN balls of real features).
    Recall: share of real samples inside the generated manifold.
    """
    precision = manifold_coverage(knn_radii(real, k), real, fake)
    recall = manifold_coverage(knn_radii(fake, k), fake, real)
    return {"precision": float(precision), "recall": float(recall)}


def nearest_neighbours(
    queries: torch.Tensor, reference: torch.Tensor, k: int = 1, batch: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest reference rows of each query by Euclidean distance, nearest first.

    queries (Q, ...), reference (R, ...) are flattened; returns distances (Q, k) and indices
    (Q, k). Query batches keep memory at batch × R floats, whatever Q and R.
    """
    q, r = queries.flatten(1).float(), reference.flatten(1).float()
    dists, idx = [], []
    for i in range(0, len(q), batch):
        qb = q[i : i + batch]
        # Candidates by the fast matrix-product distance, whose cancellation error hides exact
        # copies (a copy comes out at ~1e-3, not 0), then exact distances for those candidates.
        top = torch.cdist(qb, r).topk(k, dim=1, largest=False).indices  # (b, k)
        exact = (qb[:, None, :].double() - r[top].double()).norm(dim=2)  # (b, k)
        order = exact.argsort(dim=1)
        dists.append(exact.gather(1, order))
        idx.append(top.gather(1, order))
    return torch.cat(dists), torch.cat(idx)


def fid_kid_from_features(
    real: torch.Tensor, fake: torch.Tensor, kid_subset_size: int = 1000, seed: int = 0
) -> dict[str, float]:
    """FID and KID (mean, std) between feature sets (N, D) and (M, D); torchmetrics does the statistics.

    KID averages over random subsets, drawn here from ``seed`` so that a score repeats.
    """
    passthrough = PrecomputedFeatures(real.shape[1])
    with _quiet_torchmetrics():
        # The features are complete on this process: no cross-process sync (a lone rank would hang).
        fid = FrechetInceptionDistance(feature=passthrough, sync_on_compute=False)
        kid = KernelInceptionDistance(
            feature=passthrough, subset_size=min(kid_subset_size, len(real), len(fake)), sync_on_compute=False
        )
        for features, is_real in ((real, True), (fake, False)):
            fid.update(features, real=is_real)
            kid.update(features, real=is_real)
        with torch.random.fork_rng(devices=[]):  # the global CPU RNG is left as it was
            torch.default_generator.manual_seed(seed)  # torchmetrics draws the subsets from it
            kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


# A class counts as present in a set of samples when it gets at least this share (a fifth of a
# uniform share over 10 classes): a collapsed generator leaves classes below it.
PRESENT_SHARE = 0.02


def class_statistics_from_logits(logits: torch.Tensor) -> dict[str, float]:
    """Classifier Inception Score and mode coverage from logits (N, classes).

    Returns the Inception Score exp(E_x KL(p(y|x) ‖ p(y))) (1 to the number of classes),
    the share of samples given to each class (``class_share_0`` ...), the entropy of that
    histogram in nats (log 10 ≈ 2.303 when uniform), the smallest class share, and
    ``classes_present``: the classes given at least ``PRESENT_SHARE`` (2 %) of the samples.
    """
    # The logits are fed to torchmetrics as its "features"; it applies the softmax.
    # torchmetrics shuffles the images with the global RNG before splitting them, which changes
    # the summation order and so the last digits: a fixed seed of its own makes the score the
    # same whatever ran before it in the process.
    with _quiet_torchmetrics(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        score = InceptionScore(feature=torch.nn.Identity(), splits=1, sync_on_compute=False)
        score.update(logits.float())
        inception_score = float(score.compute()[0])
    counts = torch.bincount(logits.argmax(1), minlength=logits.shape[1])
    share = counts.double() / counts.sum()
    nonzero = share[share > 0]
    out = {
        "inception_score": inception_score,
        "class_entropy": float(-(nonzero * nonzero.log()).sum()),
        "min_class_share": float(share.min()),
        "classes_present": int((share >= PRESENT_SHARE).sum()),
    }
    out.update({f"class_share_{c}": float(s) for c, s in enumerate(share)})
    return out


# A sample is "confident" when the set's judge gives its top class at least this probability:
# a readable digit. Real MNIST test digits reach it ~98-99 % of the time; blobs, broken strokes and
# crosses of two classes do not, though they can sit inside the feature statistics FID compares.
CONFIDENT = 0.9


def top_class_probability(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's most probable class and its softmax probability: (N,) long and (N,) float,
    from logits (N, classes)."""
    probability, top = logits.float().softmax(dim=1).max(dim=1)
    return top, probability


def confidence_metrics(probability: torch.Tensor, threshold: float = CONFIDENT) -> dict[str, float]:
    """Per-sample quality as one number per set, from each image's top-class probability (N,):
    ``confident_share``, the share at or above ``threshold`` (0.9), and ``mean_confidence``, the
    mean top probability (1 / classes for pure guessing, 1 for a certain classifier)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if probability.ndim != 1 or len(probability) == 0:
        raise ValueError(f"expected top-class probabilities of shape (N,) with N ≥ 1, got {tuple(probability.shape)}")
    # compared in the probabilities' own dtype: a float32 probability of 0.9 counts as 0.9
    return {"confident_share": float((probability >= threshold).double().mean()),
            "mean_confidence": float(probability.double().mean())}


def nearest_neighbour_ssim(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """For each sample, SSIM against its most similar image of ``reference``; both in [0, 1].

    samples: (K, C, H, W); reference: (R, C, H, W); returns (K,).
    """
    best = []
    for s in samples:
        scores = ssim(
            s.expand_as(reference).contiguous(), reference, data_range=1.0, reduction="none"
        )  # (R,)
        best.append(scores.max())
    return torch.stack(best)
