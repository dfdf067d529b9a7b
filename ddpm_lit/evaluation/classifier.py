"""A small classifier per labelled data set whose features judge samples:
``python -m ddpm_lit.evaluation.classifier [--dataset fashion_mnist] [--judge]``.

Its penultimate layer (128 features) is the feature space of the classifier FID (MNIST-FID on
MNIST), KID, precision and recall; its softmax gives the class histogram and a classifier
Inception Score. Training is deterministic (fixed seeds, one thread order); the weights are
cached beside the data at ``<data_dir>/classifier/<set>_cnn.pt`` (a set of one's own:
``<name>-<digest of its training images>_cnn.pt``) with ``<...>.json`` beside them recording
the set, its class names and the classifier's test accuracy, and retrained when missing.

A classifier trained on digits alone is sure of itself on anything: it gives uniform noise and
blurred digits a top class at probability ~1. The set's *judge* (``<set>_judge.pt``, the same
network) is trained with outlier exposure (Hendrycks et al. 2019, "Deep anomaly detection with
outlier exposure"): beside each batch of digits, images no one would read (uniform noise,
smooth blobs, heavily blurred and thickened digits) are trained towards the uniform
distribution over the classes, and crosses of two digits of different classes towards half of
each. Its top-class probability is the per-sample ``confidence`` of evaluate.py. The feature
classifier is left as it was, so classifier FIDs keep their meaning.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lit.core.pixels import to_model_range
from ddpm_lit.data.sets import DEFAULT_DATASET, DataSource, ImageSet
from ddpm_lit.errors import DataError
from ddpm_lit.evaluation.metrics import confidence_metrics, top_class_probability
from ddpm_lit.io import atomic_write, only_one_at_a_time, write_text

log = logging.getLogger(__name__)

WEIGHTS = Path("classifier") / "mnist_cnn.pt"  # MNIST's, under data_dir (weights_path gives any set's)


class FeatureClassifier(nn.Module):
    """Conv(32)–Conv(32)–pool–Conv(64)–Conv(64)–pool–FC(128)–FC(K), BatchNorm and ReLU.

    Input (B, 1, 28, 28) in [−1, 1]; ``features`` gives (B, 128), ``forward`` the (B, K) logits.
    ``record``: what ``load_or_train_for`` knows of it (set, class names, test accuracy).
    """

    feature_dim = 128

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.record: dict[str, Any] = {}

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(1, 32), *block(32, 32), nn.MaxPool2d(2),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, self.feature_dim), nn.BatchNorm1d(self.feature_dim), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# The name of earlier versions.
MNISTClassifier = FeatureClassifier


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of x (B, 1, H, W) blurred with its own σ (B,): a separable 9-tap Gaussian."""
    r = torch.arange(-4, 5, dtype=x.dtype)
    k = torch.exp(-(r[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(dim=1, keepdim=True)  # (B, 9)
    b, _, h, w = x.shape
    rows = F.conv2d(F.pad(x, (4, 4, 0, 0), mode="replicate").reshape(1, b, h, w + 8), k[:, None, None, :], groups=b)
    out = F.conv2d(F.pad(rows, (0, 0, 4, 4), mode="replicate"), k[:, None, :, None], groups=b)
    return out.reshape(b, 1, h, w)


def outliers(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images no one would read as one class, made from a batch of digits, and the class
    probabilities a judge should give them: (B, 1, H, W) in [−1, 1] and (B, K).

    A quarter each of: uniform noise and smooth blobs (noise at 4×4–7×7 upsampled); digits blurred
    with σ in [2, 3.5] or thickened into blobs (a 5×5 max filter); a quarter of a digit magnified
    to the whole image (strokes of no class), each towards all classes equally; and crosses of
    two digits (the pixel-wise maximum), towards half of each class (one class when both are one)."""
    b = len(images)
    uniform = torch.full((num_classes,), 1.0 / num_classes)
    kind = torch.arange(b) % 4
    x = torch.empty_like(images)
    target = uniform.expand(b, -1).clone()
    n = int((kind == 0).sum())
    noise = torch.rand(n, 1, *images.shape[2:], generator=gen) * 2 - 1
    size = int(torch.randint(4, 8, (1,), generator=gen))
    blobs = F.interpolate(torch.randn(n, 1, size, size, generator=gen), size=images.shape[2:], mode="bilinear",
                          align_corners=False).tanh()
    smooth = torch.rand(n, generator=gen) < 0.5
    x[kind == 0] = torch.where(smooth[:, None, None, None], blobs, noise)
    digits = images[kind == 1]
    blurred = _gaussian_blur(digits, 2.0 + 1.5 * torch.rand(len(digits), generator=gen))
    thick = F.max_pool2d(digits, 5, stride=1, padding=2)
    x[kind == 1] = torch.where((torch.rand(len(digits), generator=gen) < 0.5)[:, None, None, None], blurred, thick)
    pieces = images[kind == 2]  # a quarter of a digit, magnified: strokes that belong to no class
    h, w = images.shape[2:]
    top, left = (int(v) for v in torch.randint(0, h // 2 + 1, (2,), generator=gen))
    x[kind == 2] = F.interpolate(pieces[:, :, top : top + h // 2, left : left + w // 2], size=(h, w), mode="bilinear",
                                 align_corners=False)
    first = (kind == 3).nonzero().flatten()
    other = torch.randint(0, b, (len(first),), generator=gen)
    x[first] = torch.maximum(images[first], images[other])
    mixed = F.one_hot(labels[first], num_classes).float() / 2 + F.one_hot(labels[other], num_classes).float() / 2
    target[first] = mixed  # a cross of a digit with one of its own class is that class: target one-hot
    return x, target


def train_classifier(
    images: torch.Tensor, labels: torch.Tensor, epochs: int = 3, batch_size: int = 128, seed: int = 0,
    num_classes: int = 10, outlier_exposure: float = 0.0,
) -> FeatureClassifier:
    """Adam with a one-cycle schedule and ±2-pixel random shifts. images: (N, 1, 28, 28) in [−1, 1].

    ``outlier_exposure`` λ > 0: each batch also trains half as many ``outliers`` towards their
    target probabilities, weighted λ (Hendrycks et al. 2019 use 0.5), and a quarter of its digits
    softened by a Gaussian blur of σ in [0.5, 1] as their own class (a slightly soft digit is
    still read; one blurred with σ ≥ 2 is not): a judge.

    The global random state is restored afterwards, so training the classifier inside a seeded
    run (``val/classifier_fid`` on first use) does not change that run's noise or data order.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # weight init and dropout; CUDA generators untouched
        return _train_classifier(images, labels, epochs, batch_size, seed, num_classes, outlier_exposure)


def _train_classifier(
    images: torch.Tensor, labels: torch.Tensor, epochs: int, batch_size: int, seed: int, num_classes: int,
    outlier_exposure: float,
) -> FeatureClassifier:
    if len(images) < batch_size:
        raise DataError(f"{len(images)} labelled images are too few to train the evaluation classifier (batch {batch_size})")
    gen = torch.Generator().manual_seed(seed)
    model = FeatureClassifier(num_classes)
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
            if outlier_exposure > 0:
                # a digit softened a little (σ ≤ 1) is still that digit: a quarter of the batch, as its class
                soft = slice(0, batch_size // 4)
                x[soft] = _gaussian_blur(x[soft], 0.5 + 0.5 * torch.rand(batch_size // 4, generator=gen))
                half = idx[: batch_size // 2]
                odd, target = outliers(x[: len(half)], labels[half], num_classes, gen)
                logits = model(torch.cat([x, odd]))
                loss = F.cross_entropy(logits[:batch_size], labels[idx])
                loss = loss + outlier_exposure * F.cross_entropy(logits[batch_size:], target)
            else:
                loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log.info("classifier epoch %d: last batch loss %.4f", epoch + 1, float(loss.detach()))
    return model.eval()


# A judge's weight on the outliers' loss (Hendrycks et al. 2019's λ).
JUDGE_OUTLIER_EXPOSURE = 0.5


@torch.no_grad()
def confident_share(model: FeatureClassifier, images: torch.Tensor, batch_size: int = 1000) -> float:
    """The share of ``images`` whose top class ``model`` gives probability ≥ ``CONFIDENT`` (0.9)."""
    model.eval()
    logits = torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    return confidence_metrics(top_class_probability(logits)[1])["confident_share"]


@torch.no_grad()
def accuracy(model: FeatureClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum(
        int((model(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
        for i in range(0, len(images), batch_size)
    )
    return correct / len(images)


def weights_path(source: DataSource, image_set: ImageSet | None = None, judge: bool = False) -> Path:
    """Where the classifier of ``source``'s set is cached: ``<data_dir>/classifier/<set>_cnn.pt``
    for a built-in set (its files are md5-checked), ``<name>-<digest>_cnn.pt`` for one's own (the
    digest of its training images and labels, so changed files train a new one); the judge's
    ``..._judge.pt``."""
    folder = Path(source.data_dir) / "classifier"
    suffix = "judge" if judge else "cnn"
    if source.builtin is not None:
        return folder / f"{source.dataset}_{suffix}.pt"
    image_set = image_set if image_set is not None else source.load()
    return folder / f"{source.dataset}-{image_set.fingerprint()}_{suffix}.pt"


def load_or_train_for(source: DataSource, epochs: int = 3, judge: bool = False) -> FeatureClassifier:
    """The cached classifier of ``source``'s set (``judge``: its judge, trained with outlier
    exposure), trained on its training images when missing; its test accuracy (a judge's also
    its confident share of the test images) is logged when trained and kept beside the weights
    (``<weights>.json``, also in ``model.record``). A set without labels has none: DataError."""
    image_set = None if source.builtin is not None else source.load()
    if image_set is not None and not image_set.labelled:
        raise DataError(f"{source.title} has no labels, so it has no evaluation classifier (its features give the "
                        "classifier FID, KID, precision and recall): give the set labels")
    path = weights_path(source, image_set, judge)
    record_path = path.with_suffix(".json")
    seconds: float | None = None  # of training, when it trained now
    # Two jobs that need it (a sweep's first two) take turns: one trains, the other loads its weights.
    with only_one_at_a_time(path, lambda: log.info("another process is training the classifier %s; waiting", path)):
        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=True)
            model = FeatureClassifier(int(state["head.1.weight"].shape[0]))
            model.load_state_dict(state)
            model.eval()
            if record_path.is_file():
                model.record = json.loads(record_path.read_text())
                return model
        else:
            image_set = image_set if image_set is not None else source.load()
            assert image_set.num_classes is not None
            log.info("training the evaluation %s of %s (%d images, %d epochs; cached in %s)",
                     "judge" if judge else "classifier", source.title, len(image_set.train_images), epochs, path)
            start = time.perf_counter()
            model = train_classifier(to_model_range(image_set.train_images, 28), image_set.train_labels,
                                     epochs=epochs, num_classes=image_set.num_classes,
                                     outlier_exposure=JUDGE_OUTLIER_EXPOSURE if judge else 0.0)
            seconds = time.perf_counter() - start
            with atomic_write(path) as f:
                torch.save(model.state_dict(), f)
        image_set = image_set if image_set is not None else source.load()
        test_images = to_model_range(image_set.test_images, 28)
        test_accuracy = accuracy(model, test_images, image_set.test_labels)
        log.info("evaluation %s of %s: test accuracy %.4f on %d test images (%s)", "judge" if judge else "classifier",
                 source.title, test_accuracy, len(image_set.test_images), path)
        model.record = {
            "dataset": source.dataset, "title": source.title, "class_names": list(image_set.class_names or ()),
            "test_accuracy": test_accuracy, "test_images": len(image_set.test_images), "weights": path.name,
            "epochs": epochs if seconds is not None else None,
            "training_seconds": round(seconds, 1) if seconds is not None else None,
        }  # fmt: skip
        if judge:
            model.record.update(outlier_exposure=JUDGE_OUTLIER_EXPOSURE,
                                test_confident_share=confident_share(model, test_images))
        write_text(record_path, json.dumps(model.record, indent=2))
    return model


def load_or_train(
    data_dir: str | Path, epochs: int = 3, download: bool = True, check_md5: bool = True, dataset: str = DEFAULT_DATASET,
    judge: bool = False,
) -> FeatureClassifier:
    """The cached classifier (or ``judge``) of the built-in set ``dataset`` under ``data_dir``,
    trained when missing (``download`` and ``check_md5`` apply to fetching the set for that)."""
    return load_or_train_for(DataSource(dataset, str(data_dir), download=download, check_md5=check_md5), epochs, judge)


@torch.no_grad()
def classifier_features(classifier: FeatureClassifier, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The classifier's penultimate features (N, 128) of images (N, 1, H, W) in [−1, 1] (resized
    to MNIST's 28×28 when they are not), on the CPU."""
    x = images.float().to(device)
    if x.shape[-2:] != (28, 28):
        x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", antialias=True)
    return classifier.features(x).cpu()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="a built-in set: mnist, fashion_mnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--retrain", action="store_true", help="train even when cached weights exist")
    parser.add_argument("--judge", action="store_true", help="the judge (outlier exposure) instead of the classifier")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    source = DataSource(args.dataset, args.data_dir)
    path = weights_path(source, judge=args.judge)
    if args.retrain:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
    model = load_or_train_for(source, args.epochs, judge=args.judge)
    confident = model.record.get("test_confident_share")
    print(f"{source.title} test accuracy: {model.record['test_accuracy']:.4f}"
          + (f", confident share {confident:.4f}" if confident is not None else "") + f" (weights: {path})")


if __name__ == "__main__":
    main()
