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
from tqdm.auto import tqdm

from ddpm_lit.core.diffusion import Denoiser, GaussianDiffusion, randn
from ddpm_lit.core.gaussians import (  # noqa: F401 (public here too)
    discretized_gaussian_log_likelihood,
    mean_flat,
    normal_kl,
)
from ddpm_lit.core.pixels import quantize


@torch.no_grad()
def prior_bpd(diffusion: GaussianDiffusion, x0: torch.Tensor) -> torch.Tensor:
    """L_T in bits/dim: (B,). In float64: 1 − ᾱ_T is 1 − O(1e−9) and float32 would round it."""
    alpha_bar_T = diffusion.alphas_cumprod_float64[-1].to(x0.device)
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
    variance: str | None = None,
) -> torch.Tensor:
    """L_{t−1} for t ≥ 2 (index ≥ 1) or L_0 (index 0), in bits/dim: (B,).

    x0: (B, C, H, W) on the 256-level grid in [−1, 1]; t: (B,) indices; noise: the ε of x_t.
    """
    x_t = diffusion.q_sample(x0, t, noise)
    out = diffusion.p_mean_variance(net, x_t, t, clip_denoised=False, variance=variance)
    return diffusion.vlb_terms(x0, x_t, t, out["mean"], out["log_variance"])


@torch.no_grad()
def bits_per_dim(
    net: Denoiser,
    diffusion: GaussianDiffusion,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    variance: str | None = None,
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
    variance: str | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """The bound over a set of images (N, C, H, W) in [−1, 1], Monte Carlo over images.

    Each image is quantised to the 256-level grid, then its bound is computed with one
    noise draw per timestep. Returns the mean total bits/dim with its standard error over
    images, the mean prior L_T and L_0, the mean of each term (T,) and the per-image totals (N,).
    """
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
