from pathlib import Path

import pytest
import torch

from ddpm_lit.core.pixels import to_model_range
from ddpm_lit.data.mnist import load_idx_split
from ddpm_lit.evaluation.classifier import (
    WEIGHTS,
    MNISTClassifier,
    accuracy,
    load_or_train,
    train_classifier,
)


def _subset(mnist_dir: Path, n: int):
    images, labels = load_idx_split(mnist_dir / "MNIST" / "raw", train=True)
    return to_model_range(images[:n], 28), labels[:n]


def test_training_is_deterministic_and_learns(mnist_dir: Path) -> None:
    x, y = _subset(mnist_dir, 1024)
    a = train_classifier(x, y, epochs=1, batch_size=64)
    b = train_classifier(x, y, epochs=1, batch_size=64)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert a.features(x[:5]).shape == (5, MNISTClassifier.feature_dim)
    trained = train_classifier(x, y, epochs=4, batch_size=64)
    held_out_x, held_out_y = _subset(mnist_dir, 2048)
    assert accuracy(trained, held_out_x[1024:], held_out_y[1024:]) > 0.8  # 64 steps: far above chance


def test_cached_weights_are_loaded_not_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from ddpm_lit.evaluation import classifier as cls

    model = MNISTClassifier()
    (tmp_path / WEIGHTS).parent.mkdir(parents=True)
    torch.save(model.state_dict(), tmp_path / WEIGHTS)
    record = {"dataset": "mnist", "test_accuracy": 0.5}
    (tmp_path / WEIGHTS).with_suffix(".json").write_text(json.dumps(record))
    monkeypatch.setattr(cls, "train_classifier", lambda *a, **k: pytest.fail("retrained although cached"))
    loaded = load_or_train(tmp_path, download=False)  # no MNIST under tmp_path: it would fail if it read the set
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert not loaded.training and loaded.record == record


@pytest.mark.slow
def test_classifier_reaches_99_percent(real_classifier_dir: Path) -> None:
    model = load_or_train(real_classifier_dir)  # trained by load_or_train from scratch (the fixture), cached
    assert model.record["epochs"] == 3 and model.record["test_images"] == 10000
    images, labels = load_idx_split(real_classifier_dir / "MNIST" / "raw", train=False)
    assert accuracy(model, to_model_range(images, 28), labels) >= 0.99


def test_training_the_classifier_leaves_the_global_random_state_alone() -> None:
    """val/classifier_fid may train it inside a seeded run; that run's noise must not change."""
    from ddpm_lit.evaluation.classifier import train_classifier

    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(64, 1, 28, 28, generator=g) * 2 - 1, torch.randint(0, 10, (64,), generator=g)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_classifier(images, labels, epochs=1, batch_size=32)
    assert torch.equal(torch.rand(3), expected)


def test_outliers_are_noise_blobs_pieces_and_crosses_with_their_targets() -> None:
    """Each kind at its place in the batch (i % 4), in [−1, 1], with uniform targets except the
    crosses: the pixel-wise maximum of two digits, half each of their classes."""
    from ddpm_lit.evaluation.classifier import outliers

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(16, 1, 28, 28, generator=gen) * 2 - 1
    labels = torch.arange(16) % 10
    x, target = outliers(images, labels, 10, torch.Generator().manual_seed(1))
    assert x.shape == images.shape and target.shape == (16, 10)
    assert x.min() >= -1 and x.max() <= 1
    assert torch.allclose(target.sum(1), torch.ones(16))
    others = torch.arange(16) % 4 != 3
    assert torch.allclose(target[others], torch.full((12, 10), 0.1))
    for i in range(3, 16, 4):  # a cross: the maximum of image i and another, half each of their classes
        partner = [j for j in range(16) if torch.equal(x[i], torch.maximum(images[i], images[j]))]
        assert partner, i
        expected = torch.zeros(10)
        expected[labels[i]] += 0.5
        expected[labels[partner[0]]] += 0.5
        assert torch.allclose(target[i], expected)


def test_the_judge_reads_digits_and_not_noise_or_blur(mnist_dir: Path) -> None:
    """The judge at test size (6,000 images, 2 epochs, outlier exposure): most real test digits at
    ≥ 90 % confidence, none of uniform noise or of digits blurred with σ = 3; the plain
    classifier of the same data, by contrast, is sure of itself on noise (the reason for a judge)."""
    import torchvision

    from ddpm_lit.evaluation.classifier import confident_share

    judge, plain = load_or_train(mnist_dir, judge=True), load_or_train(mnist_dir)
    assert judge.record["outlier_exposure"] > 0 and judge.record["test_accuracy"] > 0.95
    images, _ = load_idx_split(mnist_dir / "MNIST" / "raw", train=False)
    real = to_model_range(images[:1000], 28)
    noise = torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    blurred = torchvision.transforms.functional.gaussian_blur(real[:500], 9, 3.0)
    assert confident_share(judge, real) > 0.75  # 0.83 measured; the real judge (slow tier) ~0.98
    assert judge.record["test_confident_share"] == pytest.approx(confident_share(judge, to_model_range(images, 28)))
    assert confident_share(judge, noise) < 0.02 and confident_share(judge, blurred) < 0.05
    assert confident_share(plain, noise) > 0.5  # a classifier of digits alone calls noise a digit
