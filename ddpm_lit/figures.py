"""Matplotlib figures (PNG) of an evaluation: SSIM histograms, nearest training images, the bound per t."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def ssim_histogram(values: dict[str, dict[str, torch.Tensor]], path: str | Path) -> Path:
    """Histograms of per-image SSIM, one line per image set (e.g. samples, test images).

    values: {set name: {"ssim": (N,), "nn_ssim": (N,)}}. Left: against a random test image
    (the report's protocol, its Fig. 4.6); right: against the most similar training image.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    panels = (("ssim", "SSIM against a random test image"), ("nn_ssim", "SSIM against the closest training image"))
    bins = torch.linspace(-0.2, 1.0, 61).numpy()
    for ax, (key, title) in zip(axes, panels):
        for name, per_image in values.items():
            v = per_image[key].float()
            ax.hist(v.numpy(), bins=bins, histtype="step", density=True, linewidth=1.5,
                    label=f"{name} (mean {v.mean():.3f}, n={len(v)})")
        ax.set_title(title)
        ax.set_xlabel("SSIM")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    return _save(fig, path)


def nearest_neighbour_figure(
    samples: torch.Tensor, train: torch.Tensor, index: torch.Tensor, distance: torch.Tensor, path: str | Path, n: int = 8
) -> Path:
    """The ``n`` samples closest to a training image (top) above those training images (bottom).

    samples, train: (N, 1, H, W) in [−1, 1]; index, distance: each sample's nearest training
    image and the pixel distance to it (images in [0, 1]).
    """
    order = distance.argsort()[:n]
    fig, axes = plt.subplots(2, len(order), figsize=(1.3 * len(order), 3.2), squeeze=False)
    for col, i in enumerate(order.tolist()):
        for row, image in enumerate((samples[i], train[index[i]])):
            ax = axes[row][col]
            ax.imshow(((image[0].float() + 1) / 2).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][col].set_title(f"d={distance[i]:.2f}", fontsize=8)
    axes[0][0].set_ylabel("sample")
    axes[1][0].set_ylabel("nearest\ntraining")
    fig.suptitle("Samples closest to a training image (pixel distance)", fontsize=10)
    return _save(fig, path)


def bound_terms_figure(terms: torch.Tensor, prior: float, path: str | Path, title: str = "") -> Path:
    """Each term of the bound against t, bits/dim (log scale): L_0 at t = 1, L_{t−1} above, L_T noted."""
    t = torch.arange(1, len(terms) + 1)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.semilogy(t[1:].numpy(), terms[1:].clamp(min=1e-12).numpy(), label="$L_{t-1}$ (KL), t ≥ 2")
    ax.semilogy([1], [max(float(terms[0]), 1e-12)], "o", color="C3", label=f"$L_0$ = {float(terms[0]):.3f}")
    ax.set_xlabel("t")
    ax.set_ylabel("bits/dim")
    ax.set_title(title or f"Terms of the variational bound (total {float(terms.sum()) + prior:.3f} bits/dim, "
                          f"$L_T$ = {prior:.2e})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)
