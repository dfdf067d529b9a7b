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
