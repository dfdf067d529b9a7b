import numpy as np
import pytest
import torch
from reference_metrics import nearest_distances

from ddpm_lit.evaluation.metrics import knn_radii, precision_recall


def brute_force_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. (2019), Algorithm 1, written with loops."""

    def radii(x):
        out = []
        for i in range(len(x)):
            d = sorted(float(np.linalg.norm(x[i] - x[j])) for j in range(len(x)) if j != i)
            out.append(d[k - 1])
        return out

    def coverage(support, r, queries):
        inside = 0
        for q in queries:
            inside += any(np.linalg.norm(q - s) <= ri for s, ri in zip(support, r))
        return inside / len(queries)

    return coverage(real, radii(real), fake), coverage(fake, radii(fake), real)


def test_precision_recall_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 5))
    fake = rng.normal(loc=0.7, scale=0.6, size=(50, 5))
    expected = brute_force_precision_recall(real, fake, k=3)
    got = precision_recall(torch.tensor(real), torch.tensor(fake), k=3)
    assert (got["precision"], got["recall"]) == pytest.approx(expected, abs=1e-12)
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1


def test_precision_recall_extremes() -> None:
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 8, generator=g)
    same = precision_recall(real, real.clone())
    assert same == {"precision": 1.0, "recall": 1.0}
    far = precision_recall(real, real + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0}
    # mode collapse: every sample at one real point is precise but covers little
    collapsed = precision_recall(real, real[:1].repeat(200, 1) + 1e-3 * torch.randn(200, 8, generator=g))
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.1


def test_knn_radii_rejects_impossible_k() -> None:
    with pytest.raises(ValueError, match="k must be"):
        knn_radii(torch.zeros(3, 2), k=3)


def test_nearest_distances_find_copies() -> None:
    g = torch.Generator().manual_seed(0)
    train = torch.rand(50, 1, 4, 4, generator=g)
    samples = torch.cat([train[7:8], torch.rand(2, 1, 4, 4, generator=g)])
    d = nearest_distances(samples, train)
    assert d[0] == 0.0 and (d[1:] > 0).all()
    brute = torch.stack([min(torch.dist(s.double(), t.double()) for t in train) for s in samples])
    assert torch.allclose(d, brute)


def test_fid_and_kid_match_a_direct_computation() -> None:
    from reference_metrics import ClassifierFeatures, feature_fid_kid
    from scipy import linalg

    from ddpm_lit.evaluation.classifier import MNISTClassifier

    torch.manual_seed(0)
    extractor = ClassifierFeatures(MNISTClassifier())
    real = torch.rand(300, 1, 28, 28) * 2 - 1
    fake = torch.rand(200, 1, 28, 28) * 0.2 - 1.0  # nearly black images
    got = feature_fid_kid(extractor, real, fake, batch_size=128, kid_subset_size=200)

    fr, ff = extractor(real).double().numpy(), extractor(fake).double().numpy()
    mu_r, mu_f = fr.mean(0), ff.mean(0)
    cov_r, cov_f = np.cov(fr, rowvar=False), np.cov(ff, rowvar=False)
    covmean = linalg.sqrtm(cov_r @ cov_f).real
    fid = float(((mu_r - mu_f) ** 2).sum() + np.trace(cov_r + cov_f - 2 * covmean))
    assert got["fid"] == pytest.approx(fid, rel=1e-3)

    # KID: unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / D + 1)³, averaged over
    # subsets; with the subset as large as the fake set, each subset's estimate is near the full one.
    d = fr.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    krr, kff, krf = k(fr, fr), k(ff, ff), k(fr, ff)
    m, n = len(fr), len(ff)
    mmd = ((krr.sum() - np.trace(krr)) / (m * (m - 1)) + (kff.sum() - np.trace(kff)) / (n * (n - 1))
           - 2 * krf.mean())
    assert got["kid"] == pytest.approx(mmd, rel=0.1)
    same = feature_fid_kid(extractor, real, real.clone(), batch_size=128, kid_subset_size=200)
    assert abs(same["fid"]) < 1e-3 * got["fid"] and abs(same["kid"]) < 0.1 * got["kid"]


class _LookupClassifier(torch.nn.Module):
    """Logits chosen per image: image i (its first pixel holds i) gets a confident vote for classes[i]."""

    def __init__(self, classes: list[int]) -> None:
        super().__init__()
        self.classes = torch.tensor(classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = x[:, 0, 0, 0].round().long()
        return torch.nn.functional.one_hot(self.classes[idx], 10).float() * 50.0


def _indexed_images(n: int) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, 0, 0, 0] = torch.arange(n).float()
    return x


def test_class_statistics_known_answers() -> None:
    from reference_metrics import class_statistics

    uniform = class_statistics(_LookupClassifier([i % 10 for i in range(200)]), _indexed_images(200), batch_size=64)
    assert uniform["inception_score"] == pytest.approx(10.0, rel=1e-4)
    assert uniform["class_entropy"] == pytest.approx(np.log(10))
    assert uniform["min_class_share"] == pytest.approx(0.1)

    collapsed = class_statistics(_LookupClassifier([3] * 200), _indexed_images(200))
    assert collapsed["inception_score"] == pytest.approx(1.0, rel=1e-4)
    assert collapsed["class_entropy"] == pytest.approx(0.0) and collapsed["min_class_share"] == 0.0
    assert collapsed["class_share_3"] == 1.0

    two = class_statistics(_LookupClassifier([0, 1] * 100), _indexed_images(200))
    assert two["inception_score"] == pytest.approx(2.0, rel=1e-4)


def test_kid_repeats_for_a_seed_and_varies_across_seeds() -> None:
    from ddpm_lit.evaluation.metrics import fid_kid_from_features

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 8, generator=g), torch.randn(200, 8, generator=g) + 0.2
    a = fid_kid_from_features(real, fake, kid_subset_size=50, seed=1)
    b = fid_kid_from_features(real, fake, kid_subset_size=50, seed=1)
    c = fid_kid_from_features(real, fake, kid_subset_size=50, seed=2)
    assert a == b and a["kid"] != c["kid"] and a["fid"] == c["fid"]


def test_inception_score_does_not_depend_on_the_global_random_state() -> None:
    """torchmetrics shuffles with the global RNG before it sums; the score must not move with it."""
    from ddpm_lit.evaluation.metrics import class_statistics_from_logits

    logits = torch.randn(2000, 10, generator=torch.Generator().manual_seed(0)) * 3
    scores = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        scores.append(class_statistics_from_logits(logits)["inception_score"])
    assert scores[0] == scores[1] == scores[2]


def test_confidence_counts_the_top_class_probability_at_or_above_the_threshold() -> None:
    """Known logits: softmax maxima 0.95 (two equal others), 0.92, 0.5, and a uniform row."""
    import math

    from ddpm_lit.evaluation.metrics import confidence_metrics, top_class_probability

    def row(top: float, k: int = 3) -> list[float]:  # logits whose softmax top is ``top``, others equal
        return [math.log(top), *[math.log((1 - top) / (k - 1))] * (k - 1)]

    logits = torch.tensor([row(0.95)[::-1], row(0.92), row(0.5), [0.0, 0.0, 0.0]])
    predicted, probability = top_class_probability(logits)
    assert predicted.tolist() == [2, 0, 0, 0]  # ties (the uniform row) go to the first class
    assert probability.tolist() == pytest.approx([0.95, 0.92, 0.5, 1 / 3], abs=1e-6)
    out = confidence_metrics(probability)
    assert out["confident_share"] == pytest.approx(0.5)  # 0.95 and 0.92, not 0.5 nor 1/3
    assert out["mean_confidence"] == pytest.approx((0.95 + 0.92 + 0.5 + 1 / 3) / 4, abs=1e-6)
    assert confidence_metrics(torch.tensor([0.9, 0.8999]))["confident_share"] == 0.5  # at the threshold counts
    assert confidence_metrics(probability, threshold=0.96)["confident_share"] == 0.0
    with pytest.raises(ValueError, match="threshold"):
        confidence_metrics(probability, threshold=1.0)
    with pytest.raises(ValueError, match="shape"):
        confidence_metrics(torch.ones(2, 2))
