"""The confident share (top-class probability ≥ 0.9) of the evaluation classifier and of the judge
on real test digits and on images no one would read: the table of docs/readable_samples.md.

    python scripts/judge_table.py [--data-dir data] [--dataset mnist]

Both networks are loaded from (or trained into) ``<data-dir>/classifier/``.
"""

from __future__ import annotations

import argparse

import torch
import torchvision

from ddpm_lit.core.pixels import to_model_range
from ddpm_lit.data.sets import DataSource
from ddpm_lit.evaluation.classifier import confident_share, load_or_train_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dataset", default="mnist")
    args = parser.parse_args()
    source = DataSource(args.dataset, args.data_dir)
    test = to_model_range(source.load().test_images, 28)
    classifier, judge = load_or_train_for(source), load_or_train_for(source, judge=True)
    gen = torch.Generator().manual_seed(0)
    sets = {
        f"real test images (all {len(test):,})": test,
        "uniform noise": torch.rand(1000, 1, 28, 28, generator=gen) * 2 - 1,
        "Gaussian noise (σ = 0.5)": (torch.randn(1000, 1, 28, 28, generator=gen) * 0.5).clamp(-1, 1),
        "test images blurred, σ = 3": torchvision.transforms.functional.gaussian_blur(test[:1000], 9, 3.0),
        "test images blurred, 5×5 box": torch.nn.functional.avg_pool2d(test[:1000], 5, 1, 2),
        "test images softened, σ = 1": torchvision.transforms.functional.gaussian_blur(test[:1000], 5, 1.0),
    }
    print(f"test accuracy: classifier {classifier.record['test_accuracy']:.4f}, judge {judge.record['test_accuracy']:.4f}\n")
    print("| images (1,000 each unless said) | classifier: confident share | judge: confident share |")
    print("|---|---:|---:|")
    for name, images in sets.items():
        print(f"| {name} | {confident_share(classifier, images):.3f} | {confident_share(judge, images):.3f} |")


if __name__ == "__main__":
    main()
