"""Matplotlib figures (PNG) of an evaluation: SSIM histograms, nearest training images, the bound per t;
and of the report: the schedules, the forward process, the reverse trajectory and the loss curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from ddpm_lit.core.diffusion import GaussianDiffusion  # noqa: E402
from ddpm_lit.core.schedules import SCHEDULES  # noqa: E402
from ddpm_lit.evaluation.metrics import CONFIDENT, confidence_metrics  # noqa: E402
from ddpm_lit.io import atomic_write  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    with atomic_write(path) as f:  # makes the folder too
        fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    return path


def ssim_histogram(values: dict[str, dict[str, torch.Tensor]], path: str | Path) -> Path:
    """Histograms of per-image SSIM, one line per image set (e.g. samples, test images).

    values: {set name: {"ssim": (N,), "nn_ssim": (N,)}}. Left: against a random test image
    (the study's protocol, its Fig. 4.6); right: against the most similar training image.
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
    return save_figure(fig, path)


def class_histogram(results: dict[str, Any], class_names: list[str] | None, dataset: str, path: str | Path) -> Path:
    """Bars of each class's share of the samples (and of the real test images, when scored) as
    the data set's classifier assigns them, labelled with the class names; the per-class
    accuracy of a conditional model's samples above its bars.

    results: evaluate.py's metrics, ``{"samples": {"class_share_0": ..., ...}, "test": {...}}``.
    """
    sets = {name: results[name] for name in ("samples", "test") if isinstance(results.get(name), dict)}
    k = sum(1 for key in sets["samples"] if key.startswith("class_share_"))
    names = [class_names[c] if class_names and c < len(class_names) else str(c) for c in range(k)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * k + 2), 3.8))
    width = 0.8 / len(sets)
    for j, (name, metrics) in enumerate(sets.items()):
        shares = [metrics.get(f"class_share_{c}", float("nan")) for c in range(k)]
        bars = ax.bar([c + (j - (len(sets) - 1) / 2) * width for c in range(k)], shares, width,
                      label="samples" if name == "samples" else "real test images")
        per_class = metrics.get("class_accuracy_per_class") if name == "samples" else None
        if per_class:
            for c, bar in enumerate(bars):
                if str(c) in per_class:
                    ax.annotate(f"{per_class[str(c)]:.0%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=7)
    ax.axhline(1 / k, color="grey", linestyle=":", linewidth=1, label=f"uniform (1/{k})")
    ax.set_xticks(range(k))
    ax.set_xticklabels(names, rotation=30 if max(map(len, names)) > 3 else 0, ha="right" if max(map(len, names)) > 3 else "center")
    ax.set_ylabel("share of images")
    title = f"Classes as the {dataset} classifier sees them"
    if any(m.get("class_accuracy_per_class") for m in sets.values()):
        title += " (% above a bar: accuracy on the class asked for)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


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
    return save_figure(fig, path)


def least_confident_figure(
    images: torch.Tensor, predicted: torch.Tensor, confidence: torch.Tensor, path: str | Path,
    class_names: Sequence[str] | None = None, floor: float | None = None, n: int = 16,
) -> Path:
    """The ``n`` images the judge is least sure of, least first, each titled with its top
    class and that class's probability; the title gives the set's confident share (and real
    test images' as the floor).

    images: (N, 1, H, W) in [−1, 1]; predicted, confidence: (N,) each image's top class and its
    probability; floor: real test images' confident share, or None.
    """
    order = confidence.argsort()[:n].tolist()
    cols = min(8, len(order))
    rows = math.ceil(len(order) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order):
        ax.imshow(((images[i, 0].float() + 1) / 2).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
        c = int(predicted[i])
        name = class_names[c] if class_names and c < len(class_names) else str(c)
        ax.set_title(f"{name[:9]}: {float(confidence[i]):.2f}", fontsize=8)
    share = confidence_metrics(confidence)["confident_share"]
    title = (f"The {len(order)} least-confident of {len(confidence)} images (top class: probability); "
             f"{share:.1%} read with ≥ {CONFIDENT:.0%}")
    if floor is not None:
        title += f", real test images {floor:.1%}"
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


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
    return save_figure(fig, path)


# ---- the study's figures ------------------------------------------------------------


def _check_timestep_indices(timesteps: Sequence[int], num_timesteps: int) -> list[int]:
    """0-based chain indices as ints; ``ValueError`` unless each lies in [0, num_timesteps − 1]."""
    indices = [int(t) for t in timesteps]
    if not indices:
        raise ValueError("timesteps must not be empty")
    bad = [t for t in indices if not 0 <= t <= num_timesteps - 1]
    if bad:
        raise ValueError(
            f"timesteps are 0-based indices into the chain and must lie in [0, {num_timesteps - 1}]; got {bad}"
        )
    return indices


def _check_schedules(schedules: Sequence[str]) -> list[str]:
    names = list(schedules)
    if not names:
        raise ValueError(f"schedules must not be empty; valid schedules: {', '.join(SCHEDULES)}")
    unknown = [name for name in names if name not in SCHEDULES]
    if unknown:
        raise ValueError(f"unknown schedule(s) {unknown}; valid schedules: {', '.join(SCHEDULES)}")
    return names


def _to_display(image: torch.Tensor) -> tuple[torch.Tensor, str | None]:
    """(C, H, W) in [−1, 1] → what ``imshow`` shows in [0, 1]: (H, W) in gray for C = 1, (H, W, 3) for C = 3."""
    image = ((image.detach().float().cpu() + 1) / 2).clamp(0, 1)
    if image.shape[0] == 1:
        return image[0], "gray"
    return image.permute(1, 2, 0), None


def _check_channels(c: int) -> None:
    if c not in (1, 3):
        raise ValueError(f"images must have 1 (gray) or 3 (RGB) channels, got {c}")


def schedules_figure(path: str | Path, timesteps: int = 1000) -> Path:
    """ᾱ_t (left) and SNR(t) = ᾱ_t / (1 − ᾱ_t) on a log axis (right) against t = 1..T, for every schedule.

    ᾱ_t = Π_{s≤t} (1 − β_s) in float64 (``GaussianDiffusion.alphas_cumprod_float64``): the linear schedule of Ho et al.
    (2020, §4) and the cosine one of Nichol & Dhariwal (2021, eq. 17).
    """
    fig, (ax_ab, ax_snr) = plt.subplots(1, 2, figsize=(10, 3.8))
    t = torch.arange(1, timesteps + 1).numpy()
    for name in SCHEDULES:
        alphas_cumprod = GaussianDiffusion(schedule=name, timesteps=timesteps).alphas_cumprod_float64  # (T,)
        snr = alphas_cumprod / (1.0 - alphas_cumprod)
        ax_ab.plot(t, alphas_cumprod.numpy(), label=name)
        ax_snr.semilogy(t, snr.numpy(), label=name)
    ax_ab.set_title(r"$\bar\alpha_t$")
    ax_ab.set_ylabel(r"$\bar\alpha_t$")
    ax_snr.set_title(r"Signal-to-noise ratio $\bar\alpha_t / (1-\bar\alpha_t)$")
    ax_snr.set_ylabel("SNR(t)")
    for ax in (ax_ab, ax_snr):
        ax.set_xlabel("t")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Noise schedules, T = {timesteps}", fontsize=10)
    return save_figure(fig, path)


def forward_process_figure(
    x0: torch.Tensor,
    path: str | Path,
    timesteps: Sequence[int] = (0, 50, 100, 200, 300, 500, 700, 999),
    schedules: Sequence[str] = ("linear", "cosine"),
    num_timesteps: int = 1000,
    seed: int = 0,
) -> Path:
    """x_t = q_sample(x0, t, ε) of one image: one row per schedule, one column per t (Ho et al. 2020, eq. 4).

    x0: (C, H, W) in [−1, 1], C = 1 (gray) or 3. ``timesteps`` are 0-based indices into the chain
    (column title ``t = index + 1``). One ε ~ N(0, I), drawn from a generator seeded with ``seed``,
    serves every panel, so the rows differ only by their ᾱ_t.
    """
    if x0.dim() != 3:
        raise ValueError(f"x0 must be one image (C, H, W), got shape {tuple(x0.shape)}")
    _check_channels(x0.shape[0])
    indices = _check_timestep_indices(timesteps, num_timesteps)
    names = _check_schedules(schedules)
    x0 = x0.detach().float().cpu()
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn(x0.shape, generator=generator)  # (C, H, W), shared by all panels
    n = len(indices)
    batch = x0.expand(n, *x0.shape)  # (n, C, H, W)
    t = torch.tensor(indices, dtype=torch.long)
    fig, axes = plt.subplots(len(names), n, figsize=(1.3 * n + 0.6, 1.4 * len(names) + 0.6), squeeze=False)
    for row, name in enumerate(names):
        x_t = GaussianDiffusion(schedule=name, timesteps=num_timesteps).q_sample(batch, t, eps.expand_as(batch))
        for col in range(n):
            ax = axes[row][col]
            image, cmap = _to_display(x_t[col])
            ax.imshow(image.numpy(), cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t = {indices[col] + 1}", fontsize=9)
        axes[row][0].set_ylabel(name)
    fig.suptitle(r"Forward process $q(x_t \mid x_0)$, the same $\epsilon$ in every panel", fontsize=10)
    return save_figure(fig, path)


def two_mode_density(
    x: torch.Tensor,
    alpha_bar: float | torch.Tensor,
    means: Sequence[float] = (-1.0, 1.0),
    stds: Sequence[float] = (0.15, 0.15),
    weights: Sequence[float] = (0.5, 0.5),
) -> torch.Tensor:
    """Exact density q(x_t) of x_t = √ᾱ x0 + √(1 − ᾱ) ε when x0 follows a 1-D Gaussian mixture.

    q(x_t) = Σ_k w_k N(x_t; √ᾱ μ_k, ᾱ σ_k² + 1 − ᾱ)   (Ho et al. 2020, eq. 4, convolved with each mode).
    x: any shape; alpha_bar: a scalar ᾱ in [0, 1] or a tensor that broadcasts against x (e.g. (T, 1)
    against (X,) gives (T, X)). Returns the broadcast shape, float64.
    """
    if not len(means) == len(stds) == len(weights) >= 1:
        raise ValueError(
            f"means, stds and weights must have the same non-zero length, got {len(means)}, {len(stds)}, {len(weights)}"
        )
    if any(s <= 0 for s in stds):
        raise ValueError(f"stds must be > 0, got {tuple(stds)}")
    if any(w < 0 for w in weights) or not math.isclose(sum(weights), 1.0, rel_tol=0, abs_tol=1e-9):
        raise ValueError(f"weights must be ≥ 0 and sum to 1, got {tuple(weights)}")
    x = torch.as_tensor(x, dtype=torch.float64)
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
    if bool(((alpha_bar < 0) | (alpha_bar > 1)).any()):
        raise ValueError("alpha_bar must lie in [0, 1]")
    density = torch.zeros(torch.broadcast_shapes(x.shape, alpha_bar.shape), dtype=torch.float64)
    for mean, std, weight in zip(means, stds, weights):
        var = alpha_bar * std**2 + 1.0 - alpha_bar
        density = density + weight * torch.exp(-((x - alpha_bar.sqrt() * mean) ** 2) / (2 * var)) / torch.sqrt(
            2 * math.pi * var
        )
    return density


def two_mode_sample(
    n: int,
    generator: torch.Generator | None = None,
    means: Sequence[float] = (-1.0, 1.0),
    stds: Sequence[float] = (0.15, 0.15),
    weights: Sequence[float] = (0.5, 0.5),
) -> torch.Tensor:
    """n draws x0 ~ Σ_k w_k N(μ_k, σ_k²), the data of ``two_mode_density`` at ᾱ = 1. Returns (n,) float32."""
    weights = torch.tensor(weights, dtype=torch.float64)
    component = torch.multinomial(weights, n, replacement=True, generator=generator)  # (n,) mode k of each draw
    eps = torch.randn(n, generator=generator)
    means, stds = torch.tensor(means, dtype=torch.float32), torch.tensor(stds, dtype=torch.float32)
    return means[component] + stds[component] * eps


def two_mode_diffusion_figure(
    path: str | Path,
    schedule: str = "linear",
    num_timesteps: int = 1000,
    timesteps: Sequence[int] = (0, 50, 100, 200, 400, 999),
    num_samples: int = 20000,
    seed: int = 0,
) -> Path:
    """A 1-D two-mode density diffusing to N(0, 1) under the forward process.

    Left: the exact q(x_t) (``two_mode_density``) over (t, x) for t = 1..T. Right: at each selected
    t (0-based indices), the exact density as a line and, in the same colour, a histogram of
    ``num_samples`` mixture draws pushed through ``GaussianDiffusion.q_sample``, with N(0, 1)
    dashed; the histograms following the lines checks the code's forward process against eq. 4.
    """
    _check_schedules([schedule])
    indices = _check_timestep_indices(timesteps, num_timesteps)
    diffusion = GaussianDiffusion(schedule=schedule, timesteps=num_timesteps)
    alphas_cumprod = diffusion.alphas_cumprod_float64  # (T,)
    x = torch.linspace(-3.5, 3.5, 401, dtype=torch.float64)  # (X,)
    density = two_mode_density(x, alphas_cumprod[:, None])  # (T, X)

    generator = torch.Generator().manual_seed(seed)
    x0 = two_mode_sample(num_samples, generator).reshape(num_samples, 1, 1, 1)  # (N, 1, 1, 1)

    fig, (ax_map, ax_lines) = plt.subplots(1, 2, figsize=(13, 4.2))
    im = ax_map.imshow(density.T.numpy(), origin="lower", aspect="auto", cmap="viridis",
                       extent=(0.5, num_timesteps + 0.5, float(x[0]), float(x[-1])))
    fig.colorbar(im, ax=ax_map, label=r"$q(x_t)$")
    ax_map.set_xlabel("t")
    ax_map.set_ylabel(r"$x_t$")
    ax_map.set_title(rf"Exact $q(x_t)$, {schedule} schedule", fontsize=10)

    bins = torch.linspace(-3.5, 3.5, 71).numpy()
    for i, index in enumerate(indices):
        color = f"C{i % 10}"
        eps = torch.randn(x0.shape, generator=generator)
        t = torch.full((num_samples,), index, dtype=torch.long)
        x_t = diffusion.q_sample(x0, t, eps).flatten()  # (N,)
        ax_map.axvline(index + 1, color="white", linewidth=0.6, alpha=0.6)
        ax_lines.hist(x_t.numpy(), bins=bins, density=True, histtype="step", alpha=0.6, linewidth=0.9, color=color)
        ax_lines.plot(x.numpy(), density[index].numpy(), color=color,
                      label=rf"t = {index + 1}, $\bar\alpha_t$ = {float(alphas_cumprod[index]):.3g}")
    normal = torch.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)
    ax_lines.plot(x.numpy(), normal.numpy(), "k--", linewidth=1.2, label="N(0, 1)")
    ax_lines.set_xlabel(r"$x_t$")
    ax_lines.set_ylabel("density")
    ax_lines.set_title(f"Exact density (smooth lines), histogram of {num_samples} q_sample draws (steps)", fontsize=10)
    ax_lines.set_xlim(float(x[0]), float(x[-1]))
    ax_lines.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("A 1-D two-mode density diffusing to N(0, 1)", fontsize=11)
    return save_figure(fig, path)


def trajectory_figure(frames: torch.Tensor, timesteps: Sequence[int], path: str | Path) -> Path:
    """Snapshots of the reverse chain: K samples (rows) at S steps (columns) (Ho et al. 2020, Fig. 6).

    frames: (S, K, C, H, W) in [−1, 1], C = 1 or 3; timesteps: the S step numbers of the
    snapshots, T … 0, where 0 is the final sample x0 (column title ``t = timesteps[j]``).
    """
    if frames.dim() != 5:
        raise ValueError(f"frames must be (S, K, C, H, W), got shape {tuple(frames.shape)}")
    s, k = frames.shape[:2]
    _check_channels(frames.shape[2])
    if len(timesteps) != s:
        raise ValueError(f"{len(timesteps)} timesteps given for {s} snapshots; give one per snapshot")
    fig, axes = plt.subplots(k, s, figsize=(1.0 * s + 0.4, 1.0 * k + 0.7), squeeze=False)
    for col in range(s):
        for row in range(k):
            ax = axes[row][col]
            image, cmap = _to_display(frames[col, row])
            ax.imshow(image.numpy(), cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][col].set_title(f"t = {int(timesteps[col])}", fontsize=8)
    fig.suptitle("Reverse process (denoising trajectory)", fontsize=10)
    return save_figure(fig, path)


def smooth(values: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Debiased exponential moving average, as TensorBoard and W&B smooth: m_i = α v_i + (1 − α) m_{i−1}
    from m_{−1} = 0, divided by 1 − (1 − α)^{i+1}, so that s_i is the mean of v_0..v_i weighted by
    (1 − α)^{i−j}; α in (0, 1]. Unlike an average started at v_0, it does not hold the first values'
    weight while the loss falls."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    out: list[float] = []
    mean, weight = 0.0, 0.0
    for v in values:
        mean = alpha * float(v) + (1 - alpha) * mean
        weight = alpha + (1 - alpha) * weight  # 1 − (1 − α)^{i+1}
        out.append(mean / weight)
    return out


def metric_by_step(
    history: Sequence[dict[str, float]], key: str, index: str = "step"
) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` sorted by step (or another ``index`` column, e.g. ``epoch``),
    keeping the last row for a step that appears twice (a resumed run logs again the steps after
    its checkpoint)."""
    last: dict[float, float] = {}
    for row in history:
        if key in row and index in row:
            last[row[index]] = row[key]
    steps = sorted(last)
    return steps, [last[s] for s in steps]


def by_epoch(history: Sequence[dict[str, float]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of ``key``, the last row of each epoch (a resumed run repeats some)."""
    epochs, values = metric_by_step(history, key, index="epoch")
    return [int(e) for e in epochs], values


def loss_curves_figure(
    history: list[dict[str, float]], path: str | Path, title: str = "",
    train_keys: tuple[str, ...] = ("train/loss",), val_keys: tuple[str, ...] = ("val/loss",),
) -> Path:
    """Training losses (faint, and smoothed by ``smooth`` with α = 20 / points, within [0.1, 1])
    and validation losses against the optimizer step; log y when every value is positive.

    history: rows as from ``Run.history`` (ddpm_lit.runs); ``train_keys`` (a GAN: ``train/d_loss``,
    ``train/g_loss``) and ``val_keys`` are read with ``metric_by_step``. ``ValueError`` when the
    history holds none of them.
    """
    train = [(key, *metric_by_step(history, key)) for key in train_keys]
    val = [(key, *metric_by_step(history, key)) for key in val_keys]
    train, val = [c for c in train if c[2]], [c for c in val if c[2]]
    if not train and not val:
        raise ValueError(f"no {' or '.join(train_keys + val_keys)} in the history")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (key, steps, values) in enumerate(train):
        # a window of about a twentieth of the points, and never more than ~10 points, so that
        # the line follows the falling loss instead of trailing it by hundreds of steps
        alpha = min(1.0, max(0.1, 20 / len(values)))
        ax.plot(steps, values, color=f"C{i}", alpha=0.25, linewidth=0.8, label=key)
        ax.plot(steps, smooth(values, alpha), color=f"C{i}", linewidth=1.6, label=f"{key} (moving average, α = {alpha:.2g})")
    for i, (key, steps, values) in enumerate(val):
        ax.plot(steps, values, "o-", color=f"C{3 + i}", markersize=4, label=key)
    if all(v > 0 for _, _, values in train + val for v in values):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title or "Training and validation loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def side_by_side_grids(grids: dict[str, torch.Tensor], path: str | Path, nrow: int = 8) -> Path:
    """One panel per set of images, side by side under its title (e.g. real test digits, then a
    DDPM's, a VAE's and a GAN's samples). grids: {title: images (N, 1, H, W) in [0, 1]}."""
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.6), squeeze=False)
    for ax, (title, images) in zip(axes[0], grids.items()):
        grid = make_grid(images.cpu().float(), nrow=nrow, padding=2, pad_value=1.0)
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)
