import numpy as np
import pytest
import torch

from ddpm_lit.metrics import knn_radii, nearest_distances, precision_recall


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
