"""The variational bound against numerical integration and a data set whose exact ε is known."""

import math

import pytest
import torch

from ddpm_lit.core.diffusion import GaussianDiffusion
from ddpm_lit.core.likelihood import (
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    normal_kl,
    prior_bpd,
)


def gaussian_pdf(x: torch.Tensor, mean: float, var: float) -> torch.Tensor:
    return torch.exp(-((x - mean) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)


@pytest.mark.parametrize("m1, v1, m2, v2", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -0.2, 2.0), (1.5, 0.01, 1.4, 0.02)])
def test_normal_kl_matches_numerical_integration(m1, v1, m2, v2) -> None:
    x = torch.linspace(-30, 30, 2_000_001, dtype=torch.float64)
    p, q = gaussian_pdf(x, m1, v1), gaussian_pdf(x, m2, v2)
    integrand = torch.where(p > 1e-300, p * (torch.log(p.clamp(min=1e-300)) - torch.log(q.clamp(min=1e-300))), 0.0)
    numeric = torch.trapezoid(integrand, x)
    kl = normal_kl(*(torch.tensor(v, dtype=torch.float64) for v in (m1, math.log(v1), m2, math.log(v2))))
    assert float(kl) == pytest.approx(float(numeric), abs=1e-6)


@pytest.mark.parametrize("mean, sigma", [(0.0, 0.01), (0.37, 0.05), (-0.99, 0.2), (1.0, 0.004)])
def test_discretized_likelihood_is_a_distribution_over_the_256_levels(mean, sigma) -> None:
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    logp = discretized_gaussian_log_likelihood(levels, torch.tensor(mean), torch.tensor(math.log(sigma)))
    assert float(logp.double().exp().sum()) == pytest.approx(1.0, abs=1e-4)
    # an interior level's probability is the density integrated over its bin
    k = int(round((mean + 1) / 2 * 255))
    k = min(max(k, 1), 254)
    grid = torch.linspace(levels[k] - 1 / 255, levels[k] + 1 / 255, 20001, dtype=torch.float64)
    numeric = torch.trapezoid(gaussian_pdf(grid, mean, sigma**2), grid)
    assert float(logp[k].double().exp()) == pytest.approx(float(numeric), rel=1e-3, abs=1e-7)


def one_image_problem(T: int = 50):
    """Data = one fixed image x* on the 256-level grid, and the network that knows it (exact ε)."""
    g = torch.Generator().manual_seed(0)
    x_star = (torch.randint(0, 256, (1, 1, 6, 6), generator=g).double() / 255 * 2 - 1).float()
    x_star[0, 0, 0, :2] = torch.tensor([-1.0, 1.0])  # edge levels too
    d = GaussianDiffusion("cosine", T)

    def exact_eps(x_t, t):
        a = d.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        return (x_t - a.sqrt() * x_star) / (1 - a).sqrt()

    return d, x_star.expand(3, -1, -1, -1).contiguous(), exact_eps


def test_exact_eps_gives_zero_kl_terms_and_total_equal_to_prior_plus_decoder() -> None:
    d, x0, net = one_image_problem()
    out = bits_per_dim(net, d, x0, generator=torch.Generator().manual_seed(1))
    assert out["terms"].shape == (3, 50)
    assert out["terms"][:, 1:].abs().max() < 1e-4  # every L_{t−1}, t ≥ 2

    # L_0 by hand: p(x0 | x1) has mean x* exactly (μ̃_1 = x0) and σ² = β̃_2.
    sigma = math.sqrt(float(d.posterior_variance[1]))
    h = 1 / 255
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    logps = []
    for v in x0[0].flatten().tolist():
        p = phi(h / sigma) if abs(v) > 1 - 1e-3 else phi(h / sigma) - phi(-h / sigma)
        logps.append(math.log(p))
    l0 = -sum(logps) / len(logps) / math.log(2)
    assert out["terms"][:, 0] == pytest.approx(torch.full((3,), l0), rel=1e-4)

    # L_T by hand: KL(N(√ᾱ_T x, 1 − ᾱ_T) ‖ N(0, 1)) per pixel
    a_T = float(torch.cumprod(1 - d.betas_float64, 0)[-1])
    kl = [0.5 * (-math.log(1 - a_T) + (1 - a_T) + a_T * v * v - 1) for v in x0[0].flatten().tolist()]
    lT = sum(kl) / len(kl) / math.log(2)
    assert float(prior_bpd(d, x0)[0]) == pytest.approx(lT, rel=1e-3, abs=1e-9)
    assert out["total"] == pytest.approx(torch.full((3,), l0 + lT), rel=1e-4, abs=1e-4)


def test_beta_variance_costs_exactly_the_variance_mismatch() -> None:
    d, x0, net = one_image_problem()
    out = bits_per_dim(net, d, x0, generator=torch.Generator().manual_seed(1), variance="beta")
    i = 20  # with the exact mean, L = KL(N(μ, β̃) ‖ N(μ, β)) = ½(log β/β̃ + β̃/β − 1) per pixel
    b, bt = float(d.betas_float64[i]), float(d.posterior_variance[i])
    expected = 0.5 * (math.log(b / bt) + bt / b - 1) / math.log(2)
    assert float(out["terms"][0, i]) == pytest.approx(expected, rel=1e-3)
    assert (out["terms"][:, 1:] > 0).all()


def test_a_wrong_network_scores_worse() -> None:
    d, x0, net = one_image_problem()
    good = bits_per_dim(net, d, x0, generator=torch.Generator().manual_seed(1))["total"]
    bad = bits_per_dim(lambda x, t: torch.zeros_like(x), d, x0, generator=torch.Generator().manual_seed(1))["total"]
    assert (bad > good + 0.5).all()
