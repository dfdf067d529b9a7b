"""DDIM against the ancestral step, determinism, and recovery of a known data distribution."""

import pytest
import torch

from ddpm_lit.core.diffusion import GaussianDiffusion
from ddpm_lit.core.samplers import (
    ClassifierFreeGuidance,
    ddim_step,
    ddim_timesteps,
    logsnr_timesteps,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
)


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
        lambda: sample_dpmpp_2m(exact, d, x_T, steps=5),
        lambda: sample_dpmpp_2m(exact, d, x_T, steps=5, spacing="quadratic"),
        lambda: sample_dpmpp_2m_sde(exact, d, x_T, steps=5, generator=torch.Generator().manual_seed(1)),
        lambda: sample_ddpm(exact, d, x_T, generator=torch.Generator().manual_seed(1)),
    ):
        assert torch.allclose(run(), x_star.expand_as(x_T), atol=1e-3)


def gaussian_problem(mu: float = 0.1, s: float = 0.2, T: int = 1000, variance: str = "posterior"):
    """Data x0 ~ N(μ, s²) per pixel: x_t ~ N(√ᾱ μ, ᾱ s² + 1 − ᾱ), so E[ε | x_t] is known exactly,
    and so is the true reverse variance β̃_t + coef1_t² Var(x0 | x_t) (given to a learned-variance
    network as its variance channel). |x0| stays below 1, so the final clamp never acts."""
    d = GaussianDiffusion("linear", T, variance=variance)

    def exact_eps(x_t, t):
        a = d.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x_t - a.sqrt() * mu) / (a * s**2 + 1 - a)

    def exact_with_variance(x_t, t):
        a = d.alphas_cumprod[t].reshape(-1, 1, 1, 1).double()
        var_x0 = s**2 * (1 - a) / (a * s**2 + 1 - a)
        true = d.posterior_variance.double()[t].reshape(-1, 1, 1, 1) + d.posterior_mean_coef1.double()[t].reshape(-1, 1, 1, 1) ** 2 * var_x0
        lo = d.posterior_log_variance_clipped.double()[t].reshape(-1, 1, 1, 1)
        hi = torch.log(d.betas.double()[t]).reshape(-1, 1, 1, 1)
        u = 2 * (torch.log(true) - lo) / (hi - lo) - 1
        return torch.cat([exact_eps(x_t, t), u.float().expand_as(x_t)], dim=1)

    def ode_solution(x_T):  # the probability-flow ODE maps quantiles to quantiles
        a = d.alphas_cumprod[-1]
        return mu + s * (x_T - a.sqrt() * mu) / (a * s**2 + 1 - a).sqrt()

    net = exact_with_variance if variance == "learned" else exact_eps
    return d, net, ode_solution


@pytest.mark.parametrize(
    "sampler, options, variance",
    [
        (sample_ddpm, {}, "learned"),  # all T ancestral steps with the true reverse variance
        (sample_ddim, {}, "posterior"),  # first order: all T steps for this tolerance
        (sample_dpmpp_2m, {"steps": 10}, "posterior"),
        (sample_dpmpp_2m, {"steps": 10}, "learned"),  # the variance channels are ignored by ODE solvers
        (sample_dpmpp_2m_sde, {"steps": 50}, "posterior"),  # the SDE's fresh noise keeps the spread
        (sample_dpmpp_2m, {"steps": 50, "eta": 0.5}, "posterior"),
    ],
)
def test_samplers_with_the_exact_eps_recover_a_gaussian_data_distribution(sampler, options, variance) -> None:
    mu, s = 0.1, 0.2
    d, exact, _ = gaussian_problem(mu, s, variance=variance)
    x_T = torch.randn(4000, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    x = sampler(exact, d, x_T, generator=torch.Generator().manual_seed(1), clip_denoised=False, **options)
    assert float(x.mean()) == pytest.approx(mu, abs=0.005)
    assert float(x.std()) == pytest.approx(s, abs=0.005)


def test_fixed_small_variance_underdisperses_gaussian_data() -> None:
    """β̃_t is the reverse variance for one data point; for spread-out data the ancestral sampler
    with it draws too narrow a distribution (Ho et al. 2020, §3.2), which the learned one fixes."""
    d, exact, _ = gaussian_problem(0.1, 0.2)
    x_T = torch.randn(4000, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    x = sample_ddpm(exact, d, x_T, generator=torch.Generator().manual_seed(1), clip_denoised=False)
    d, exact, _ = gaussian_problem(0.1, 0.2, variance="learned")
    y = sample_ddpm(exact, d, x_T, generator=torch.Generator().manual_seed(1), clip_denoised=False)
    assert float(x.std()) < 0.196 and float(x.std()) < float(y.std()) - 0.002


def test_the_sde_solver_at_eta_0_is_the_ode_solver_and_at_eta_1_depends_on_its_noise() -> None:
    d, exact, _ = gaussian_problem(0.1, 0.2)
    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    ode = sample_dpmpp_2m(exact, d, x_T, steps=10, clip_denoised=False)
    assert torch.equal(sample_dpmpp_2m_sde(exact, d, x_T, steps=10, clip_denoised=False, eta=0.0), ode)
    a, b = (sample_dpmpp_2m_sde(exact, d, x_T, steps=10, clip_denoised=False, generator=torch.Generator().manual_seed(k))
            for k in (1, 2))
    assert (a - b).abs().mean() > 0.01 and (a - ode).abs().mean() > 0.01
    with pytest.raises(ValueError, match="eta must be ≥ 0"):
        sample_dpmpp_2m_sde(exact, d, x_T, steps=10, eta=-1.0)


def test_dpm_solver_pp_2m_is_closer_to_the_ode_solution_than_ddim() -> None:
    """Both solve the same ODE; the second-order solver's error is far smaller at equal network calls."""
    d, exact, solution = gaussian_problem()
    x_T = torch.randn(256, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    target = solution(x_T)

    def rms(x):
        return float((x - target).pow(2).mean().sqrt())

    for steps in (10, 20):
        ddim = rms(sample_ddim(exact, d, x_T, steps=steps, clip_denoised=False))
        dpm = rms(sample_dpmpp_2m(exact, d, x_T, steps=steps, clip_denoised=False))
        assert dpm < ddim / 10 and dpm < 0.005
    assert rms(sample_dpmpp_2m(exact, d, x_T, steps=50, clip_denoised=False)) < 0.001


def test_logsnr_timesteps_are_evenly_spaced_in_log_snr() -> None:
    d = GaussianDiffusion("linear", 1000)
    tau = logsnr_timesteps(d, 20)
    assert tau[0] == 0 and tau[-1] == 999 and tau == sorted(set(tau))
    ac = torch.cumprod(1 - d.betas_float64, 0)[tau]
    lam = 0.5 * torch.log(ac / (1 - ac))
    steps = lam[:-1] - lam[1:]
    assert float(steps.max() / steps.median()) < 1.5  # uniform ones are far from this near t = 0


def test_classifier_free_guidance_scales() -> None:
    def net(x, t, class_labels):  # 2 channels: a "prediction" and a "variance" channel
        y = class_labels.float().reshape(-1, 1, 1, 1)
        return torch.cat([x + y, x * 0 + 10 * y], dim=1)

    x, t = torch.randn(3, 1, 2, 2), torch.zeros(3, dtype=torch.long)
    labels = torch.tensor([1, 2, 3])
    cond = net(x, t, labels)
    uncond = net(x, t, torch.full_like(labels, 10))
    torch.testing.assert_close(ClassifierFreeGuidance(net, labels, 1.0, 10, 1)(x, t), cond)
    torch.testing.assert_close(ClassifierFreeGuidance(net, labels, 0.0, 10, 1)(x, t), uncond)
    guided = ClassifierFreeGuidance(net, labels, 3.0, 10, 1)(x, t)
    torch.testing.assert_close(guided[:, :1], uncond[:, :1] + 3 * (cond[:, :1] - uncond[:, :1]))
    torch.testing.assert_close(guided[:, 1:], cond[:, 1:])  # the variance channel is the conditional one
    with pytest.raises(ValueError, match="labels"):
        ClassifierFreeGuidance(net, labels[:2], 2.0, 10, 1)(x, t)
