"""Gaussian densities the variational bound is made of: the KL between two diagonal Gaussians
and the discretised Gaussian likelihood of 8-bit data (Ho et al. 2020, eq. 13)."""

from __future__ import annotations

import math

import torch


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
