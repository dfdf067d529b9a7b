"""The variational bound on −log p(x0) in bits/dim (Ho et al. 2020, eq. 5 and §3.3).

    L = L_T + Σ_{t=2..T} L_{t−1} + L_0
    L_T     = KL(q(x_T | x0) ‖ N(0, I))
    L_{t−1} = KL(q(x_{t−1} | x_t, x0) ‖ p_θ(x_{t−1} | x_t))
    L_0     = −log p_θ(x0 | x1), a Gaussian discretised to the 256 pixel bins.

Written here rather than taken from a library: no maintained package of this stack computes
the DDPM bound for an arbitrary denoiser and schedule.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ddpm_lit.data import quantize
from ddpm_lit.diffusion import Denoiser, GaussianDiffusion, extract, randn


def normal_kl(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) per element, in nats."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, bins: int = 256
) -> torch.Tensor:
    """log P(x) per element for x on the grid of ``bins`` levels in [−1, 1] (Ho et al. 2020, eq. 13).

    Each level owns the interval of half-width 1/(bins − 1) around it; the lowest and highest
    levels own everything below and above, so the probabilities of the levels sum to 1.
    x, mean, log_scale: broadcastable; log_scale is log σ.
    """
    half = 1.0 / (bins - 1)
    x, mean, log_scale = (t.double() for t in (x, mean, log_scale))
    inv_std = torch.exp(-log_scale)
    cdf_plus = standard_normal_cdf(inv_std * (x - mean + half))
    cdf_minus = standard_normal_cdf(inv_std * (x - mean - half))
    probs = torch.where(x < -1 + 1e-3, cdf_plus, torch.where(x > 1 - 1e-3, 1.0 - cdf_minus, cdf_plus - cdf_minus))
    return torch.log(probs.clamp(min=1e-12)).float()


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all but the batch dimension: (B, ...) -> (B,)."""
    return x.flatten(1).mean(1)


@torch.no_grad()
def prior_bpd(diffusion: GaussianDiffusion, x0: torch.Tensor) -> torch.Tensor:
    """L_T in bits/dim: (B,). In float64: 1 − ᾱ_T is 1 − O(1e−9) and float32 would round it."""
    alpha_bar_T = torch.cumprod(1.0 - diffusion.betas_float64, 0)[-1].to(x0.device)
    x = x0.double()
    mean = alpha_bar_T.sqrt() * x
    logvar = torch.log1p(-alpha_bar_T).expand_as(x)
    kl = normal_kl(mean, logvar, torch.zeros_like(x), torch.zeros_like(x))
    return (mean_flat(kl) / math.log(2.0)).to(x0.dtype)


@torch.no_grad()
def vlb_term_bpd(
    net: Denoiser,
    diffusion: GaussianDiffusion,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    variance: str = "posterior",
) -> torch.Tensor:
    """L_{t−1} for t ≥ 2 (index ≥ 1) or L_0 (index 0), in bits/dim: (B,).

    x0: (B, C, H, W) on the 256-level grid in [−1, 1]; t: (B,) indices; noise: the ε of x_t.
    """
    x_t = diffusion.q_sample(x0, t, noise)
    true_mean, _ = diffusion.q_posterior_mean_variance(x0, x_t, t)
    true_logvar = extract(diffusion.posterior_log_variance_clipped, t, x0.shape).expand_as(x0)
    out = diffusion.p_mean_variance(net, x_t, t, clip_denoised=False, variance=variance)
    kl = mean_flat(normal_kl(true_mean, true_logvar, out["mean"], out["log_variance"])) / math.log(2.0)
    nll = -mean_flat(discretized_gaussian_log_likelihood(x0, out["mean"], 0.5 * out["log_variance"])) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


@torch.no_grad()
def bits_per_dim(
    net: Denoiser,
    diffusion: GaussianDiffusion,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    variance: str = "posterior",
    callback=None,
) -> dict[str, torch.Tensor]:
    """The whole bound for a batch, one network call per timestep (T calls).

    Returns ``{"total": (B,), "prior": (B,), "terms": (B, T)}`` in bits/dim, where
    ``terms[:, 0]`` is L_0 and ``terms[:, i]`` is L_i, the KL at step t = i + 1.
    """
    b = x0.shape[0]
    terms = []
    for i in range(diffusion.num_timesteps):
        t = torch.full((b,), i, device=x0.device, dtype=torch.long)
        noise = randn(x0.shape, generator, x0.device, x0.dtype)
        terms.append(vlb_term_bpd(net, diffusion, x0, t, noise, variance))
        if callback is not None:
            callback({"i": i + 1, "total": diffusion.num_timesteps})
    terms_t = torch.stack(terms, dim=1)
    prior = prior_bpd(diffusion, x0)
    return {"total": terms_t.sum(1) + prior, "prior": prior, "terms": terms_t}


@torch.no_grad()
def dataset_bits_per_dim(
    net: Denoiser,
    diffusion: GaussianDiffusion,
    images: torch.Tensor,
    batch_size: int = 250,
    generator: torch.Generator | None = None,
    variance: str = "posterior",
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """The bound over a set of images (N, C, H, W) in [−1, 1], Monte Carlo over images.

    Each image is quantised to the 256-level grid, then its bound is computed with one
    noise draw per timestep. Returns the mean total bits/dim with its standard error over
    images, the mean prior L_T and L_0, the mean of each term (T,) and the per-image totals (N,).
    """
    from tqdm.auto import tqdm

    if len(images) == 0:
        raise ValueError("need at least one image for the bound")
    bar = tqdm(total=diffusion.num_timesteps * -(-len(images) // batch_size), desc="bits/dim", unit="step", disable=not progress)
    totals, priors, terms = [], [], []
    try:
        for i in range(0, len(images), batch_size):
            x0 = quantize(images[i : i + batch_size])
            out = bits_per_dim(
                net, diffusion, x0.to(device), generator=generator, variance=variance, callback=lambda _: bar.update(1)
            )
            totals.append(out["total"].double().cpu())
            priors.append(out["prior"].double().cpu())
            terms.append(out["terms"].double().cpu())
    finally:
        bar.close()
    total, prior, term = torch.cat(totals), torch.cat(priors), torch.cat(terms)
    n = len(total)
    stderr = float(total.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return {
        "bpd": float(total.mean()),
        "bpd_stderr": stderr,
        "prior_bpd": float(prior.mean()),
        "l0_bpd": float(term[:, 0].mean()),
        "last_step_bpd": float(term[:, -1].mean()),  # the KL at t = T, large when β_T is near 1
        "terms": term.mean(0),
        "totals": total,
        "num_images": n,
    }
