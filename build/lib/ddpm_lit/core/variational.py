"""The VAE's bounds on log p(x) of 8-bit images (Kingma & Welling 2014; Burda et al. 2016), in the
units of the DDPM's bound: bits per dimension of images quantised to 256 levels in [−1, 1].

The decoder is the same discretised Gaussian the DDPM's L_0 uses (Ho et al. 2020, eq. 13), so the
two likelihoods compare directly. With the encoder q(z|x) = N(μ, diag σ²) and the prior
p(z) = N(0, I):

    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))                       (Kingma & Welling, eq. 3)
    IWAE_k(x) = E[log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x)],  z_i ~ q     (Burda et al., eq. 8)

with ELBO = IWAE_1 ≤ IWAE_k ≤ log p(x). bits/dim = −bound / (D ln 2), D = C·H·W.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ddpm_lit.core.gaussians import discretized_gaussian_log_likelihood, normal_kl

# z: (B, Z) -> (mean, log σ), each (B, C, H, W): the decoder's discretised Gaussian per pixel.
Decoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z = μ + σ ε, differentiable in μ and log σ² (Kingma & Welling 2014, §2.4)."""
    return mu + torch.exp(0.5 * logvar) * noise


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag e^logvar) ‖ N(0, I)) per example, in nats: (B, Z) -> (B,).

    Closed form: ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1) (Kingma & Welling 2014, App. B)."""
    zero = torch.zeros_like(mu)
    return normal_kl(mu, logvar, zero, zero).sum(1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag e^logvar), summed over the last dimension: (..., Z) -> (...)."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)


def reconstruction_nll(decode: Decoder, x0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """−log p(x|z) per example in nats, x0 (B, C, H, W) on the 256-level grid: (B,)."""
    mean, log_scale = decode(z)
    return -discretized_gaussian_log_likelihood(x0, mean, log_scale).flatten(1).sum(1)


def to_bits_per_dim(nats: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Nats per example (B,) -> bits per dimension of the images x0 (B, C, H, W)."""
    return nats / (x0[0].numel() * math.log(2))


def negative_elbo(
    decode: Decoder, x0: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor
) -> dict[str, torch.Tensor]:
    """−ELBO with one sample z = μ + σ ε (``noise`` ε: (B, Z)). Returns nats per example (B,):
    ``{"reconstruction": −log p(x|z), "kl": KL(q ‖ p), "total": their sum}``."""
    recon = reconstruction_nll(decode, x0, reparameterize(mu, logvar, noise))
    kl = kl_to_standard_normal(mu, logvar)
    return {"reconstruction": recon, "kl": kl, "total": recon + kl}


@torch.no_grad()
def importance_weighted_bound(
    decode: Decoder, x0: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, k: int,
    generator: torch.Generator | None = None, chunk: int = 25,
) -> torch.Tensor:
    """IWAE_k(x) in nats per example (B,) (Burda et al. 2016, eq. 8), from k samples of q(z|x)
    decoded ``chunk`` at a time; k = 1 is the ELBO with one sample."""
    if k < 1:
        raise ValueError(f"the importance-weighted bound needs k ≥ 1 samples, got {k}")
    log_weights = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        gen_device = generator.device if generator is not None else mu.device
        noise = torch.randn((n, *mu.shape), generator=generator, device=gen_device).to(mu.device)  # (n, B, Z)
        z = reparameterize(mu, logvar, noise)
        x = x0.expand(n, *x0.shape).reshape(-1, *x0.shape[1:])  # (n·B, C, H, W)
        log_px = -reconstruction_nll(decode, x, z.reshape(-1, z.shape[-1])).view(n, -1)  # (n, B)
        log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = log_normal(z, mu, logvar)
        log_weights.append(log_px.double() + log_pz.double() - log_qz.double())
    return (torch.logsumexp(torch.cat(log_weights), 0) - math.log(k)).float()
