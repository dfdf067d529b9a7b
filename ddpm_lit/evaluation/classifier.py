"""A small MNIST classifier whose features judge samples: ``python -m ddpm_lit.evaluation.classifier``.

Its penultimate layer (128 features) is the feature space of MNIST-FID, KID, precision and
recall; its softmax gives the class histogram and a classifier Inception Score. Training is
deterministic (fixed seeds, one thread order); the weights are cached beside the data at
``<data_dir>/classifier/mnist_cnn.pt`` and retrained when missing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lit.core.pixels import to_model_range
from ddpm_lit.data.mnist import ensure_mnist, load_mnist_split
from ddpm_lit.io import atomic_write, only_one_at_a_time

log = logging.getLogger(__name__)

WEIGHTS = Path("classifier") / "mnist_cnn.pt"


class MNISTClassifier(nn.Module):
    """Conv(32)–Conv(32)–pool–Conv(64)–Conv(64)–pool–FC(128)–FC(10), BatchNorm and ReLU.

    Input (B, 1, 28, 28) in [−1, 1]; ``features`` gives (B, 128), ``forward`` the (B, 10) logits.
    """

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(1, 32), *block(32, 32), nn.MaxPool2d(2),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, self.feature_dim), nn.BatchNorm1d(self.feature_dim), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.feature_dim, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(
    images: torch.Tensor, labels: torch.Tensor, epochs: int = 3, batch_size: int = 128, seed: int = 0
) -> MNISTClassifier:
    """Adam with a one-cycle schedule and ±2-pixel random shifts. images: (N, 1, 28, 28) in [−1, 1].

    The global random state is restored afterwards, so training the classifier inside a seeded
    run (``val/fid`` on first use) does not change that run's noise or data order.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # weight init and dropout; CUDA generators untouched
        return _train_classifier(images, labels, epochs, batch_size, seed)


def _train_classifier(
    images: torch.Tensor, labels: torch.Tensor, epochs: int, batch_size: int, seed: int
) -> MNISTClassifier:
    gen = torch.Generator().manual_seed(seed)
    model = MNISTClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = epochs * (len(images) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for i in range(len(images) // batch_size):
            idx = order[i * batch_size : (i + 1) * batch_size]
            dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
            x = torch.roll(images[idx], shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log.info("classifier epoch %d: last batch loss %.4f", epoch + 1, float(loss.detach()))
    return model.eval()


@torch.no_grad()
def accuracy(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum(
        int((model(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
        for i in range(0, len(images), batch_size)
    )
    return correct / len(images)


def load_or_train(data_dir: str | Path, epochs: int = 3, download: bool = True, check_md5: bool = True) -> MNISTClassifier:
    """The cached classifier of ``data_dir``, trained on MNIST's 60k training images when missing.

    ``download`` and ``check_md5`` are passed to ``ensure_mnist`` for that training.
    """
    path = Path(data_dir) / WEIGHTS
    model = MNISTClassifier()
    # Two jobs that need it (a sweep's first two) take turns: one trains, the other loads its weights.
    with only_one_at_a_time(path, lambda: log.info("another process is training the classifier %s; waiting", path)):
        if path.is_file():
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        raw = ensure_mnist(data_dir, download=download, check_md5=check_md5)
        images, labels = load_mnist_split(raw, train=True)
        model = train_classifier(to_model_range(images, 28), labels, epochs=epochs)
        with atomic_write(path) as f:
            torch.save(model.state_dict(), f)
    return model


@torch.no_grad()
def classifier_features(classifier: MNISTClassifier, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The classifier's penultimate features (N, 128) of images (N, 1, H, W) in [−1, 1] (resized
    to MNIST's 28×28 when they are not), on the CPU."""
    x = images.float().to(device)
    if x.shape[-2:] != (28, 28):
        x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", antialias=True)
    return classifier.features(x).cpu()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--retrain", action="store_true", help="train even when cached weights exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.retrain:
        (Path(args.data_dir) / WEIGHTS).unlink(missing_ok=True)
    model = load_or_train(args.data_dir, args.epochs)
    images, labels = load_mnist_split(ensure_mnist(args.data_dir), train=False)
    print(f"test accuracy: {accuracy(model, to_model_range(images, 28), labels):.4f} "
          f"(weights: {Path(args.data_dir) / WEIGHTS})")


if __name__ == "__main__":
    main()
