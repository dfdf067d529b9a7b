"""DDIM against the ancestral step, determinism, and recovery of a known data distribution."""

import pytest
import torch

from ddpm_lit.diffusion import GaussianDiffusion
from ddpm_lit.samplers import ddim_step, ddim_timesteps, sample_ddim, sample_ddpm


def _net(x, t):  # an arbitrary, wrong denoiser: the identities below hold for any ε
    return torch.tanh(x) * (1 + t.float().reshape(-1, 1, 1, 1) / 100)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddim_with_eta_1_is_the_ancestral_step(schedule: str) -> None:
    d = GaussianDiffusion(schedule, 200)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 4, 4, generator=g) * 2
    t = torch.tensor([1, 2, 10, 50, 100, 150, 198, 199])
    ancestral = d.p_mean_variance(_net, x, t, clip_denoised=False)
    step = ddim_step(d, x, t, d.model_eps(_net, x, t), eta=1.0, clip_denoised=False)
    assert torch.allclose(step["mean"], ancestral["mean"], atol=1e-4)
    assert torch.allclose(step["std"] ** 2, ancestral["variance"].expand_as(x), rtol=1e-4, atol=1e-7)
    half = ddim_step(d, x, t, d.model_eps(_net, x, t), eta=0.5, clip_denoised=False)
    assert torch.allclose(half["std"], 0.5 * step["std"])


def test_ddim_with_eta_0_is_deterministic_and_eta_1_is_not() -> None:
    d = GaussianDiffusion("cosine", 100)
    x_T = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    a = sample_ddim(_net, d, x_T, steps=10, generator=torch.Generator().manual_seed(1))
    b = sample_ddim(_net, d, x_T, steps=10, generator=torch.Generator().manual_seed(2))
    c = sample_ddim(_net, d, x_T, steps=10, eta=1.0, generator=torch.Generator().manual_seed(1))
    e = sample_ddim(_net, d, x_T, steps=10, eta=1.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(c, e)


@pytest.mark.parametrize("spacing", ["uniform", "quadratic"])
def test_ddim_timesteps(spacing: str) -> None:
    tau = ddim_timesteps(1000, 20, spacing)
    assert tau[-1] == 999 and tau[0] == 0 and tau == sorted(set(tau)) and 15 <= len(tau) <= 21
    if spacing == "quadratic":  # denser near t = 0
        assert tau[1] - tau[0] < tau[-1] - tau[-2]
    with pytest.raises(ValueError, match="spacing"):
        ddim_timesteps(1000, 20, "cubic")


def test_every_sampler_recovers_a_one_image_data_set_with_the_exact_eps() -> None:
    """Data = one image x*; the exact ε is known in closed form, so the samplers must land on x*."""
    from test_likelihood import one_image_problem

    d, x0, exact = one_image_problem(T=50)
    x_star = x0[:1]
    x_T = torch.randn(3, *x_star.shape[1:], generator=torch.Generator().manual_seed(0))
    for run in (
        lambda: sample_ddim(exact, d, x_T, steps=5),
        lambda: sample_ddim(exact, d, x_T, steps=5, spacing="quadratic"),
        lambda: sample_ddim(exact, d, x_T, steps=10, eta=1.0, generator=torch.Generator().manual_seed(1)),
        lambda: sample_ddpm(exact, d, x_T, generator=torch.Generator().manual_seed(1)),
    ):
        assert torch.allclose(run(), x_star.expand_as(x_T), atol=1e-3)
