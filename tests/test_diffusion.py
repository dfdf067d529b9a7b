"""GaussianDiffusion (forward process, posterior, reverse step, loss, respacing) and the
ancestral sampler, checked against formulas written out here from Ho et al. (2020).

Reference schedules are recomputed in plain Python ``math`` so that the expected values
do not come from the code under test. Index convention: position ``i`` is step ``t = i + 1``.
"""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lit.core.diffusion import GaussianDiffusion
from ddpm_lit.core.samplers import sample_ddpm


# ---- independent reference schedule ---------------------------------------------------
def ref_betas(name: str, T: int) -> list[float]:
    if name == "linear":
        scale = 1000.0 / T
        a, b = 1e-4 * scale, 0.02 * scale
        return [a + (b - a) * i / (T - 1) for i in range(T)]
    s = 0.008

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return [min(1.0 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)]


class Ref:
    """Float64 schedule quantities from the reference β, indexable by position i."""

    def __init__(self, name: str, T: int) -> None:
        self.betas = ref_betas(name, T)
        self.ab = []
        prod = 1.0
        for b in self.betas:
            prod *= 1.0 - b
            self.ab.append(prod)

    def beta(self, i: int) -> float:
        return self.betas[i]

    def alpha(self, i: int) -> float:
        return 1.0 - self.betas[i]

    def alpha_bar(self, i: int) -> float:
        return self.ab[i]

    def alpha_bar_prev(self, i: int) -> float:
        return 1.0 if i == 0 else self.ab[i - 1]

    def post_var(self, i: int) -> float:
        return self.beta(i) * (1 - self.alpha_bar_prev(i)) / (1 - self.alpha_bar(i))

    def tensor(self, fn, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """fn(i) per batch element, as a float64 (B, 1, ..., 1) tensor."""
        vals = torch.tensor([fn(int(i)) for i in t], dtype=torch.float64)
        return vals.reshape(-1, *((1,) * (ndim - 1)))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- buffers --------------------------------------------------------------------------
def test_buffers_shapes_and_prev_shift() -> None:
    T = 1000
    d = GaussianDiffusion(schedule="cosine", timesteps=T)
    assert d.num_timesteps == T
    for name in ["betas", "alphas_cumprod", "alphas_cumprod_prev", "posterior_variance"]:
        buf = getattr(d, name)
        assert buf.shape == (T,), name
        assert buf.dtype == torch.float32, name
        assert torch.isfinite(buf).all(), name
    assert d.alphas_cumprod_prev[0].item() == 1.0
    assert torch.equal(d.alphas_cumprod_prev[1:], d.alphas_cumprod[:-1])
    ref = Ref("cosine", T)
    for i in [0, 1, 500, 999]:
        assert d.betas[i].item() == pytest.approx(ref.beta(i), rel=1e-6)
        assert d.alphas_cumprod[i].item() == pytest.approx(ref.alpha_bar(i), rel=1e-6)


def test_schedule_buffers_not_in_state_dict() -> None:
    d = GaussianDiffusion(schedule="linear", timesteps=50)
    assert "betas" not in d.state_dict()


# ---- q_sample -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_q_sample_matches_closed_form(name: str) -> None:
    T = 1000
    d, ref = GaussianDiffusion(schedule=name, timesteps=T), Ref(name, T)
    g = gen(0)
    x0 = torch.rand(5, 2, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(5, 2, 4, 4, generator=g)
    t = torch.tensor([0, 1, 100, 500, 999])
    xt = d.q_sample(x0, t, noise)
    assert xt.shape == x0.shape
    sab = ref.tensor(lambda i: math.sqrt(ref.alpha_bar(i)), t, 4)
    s1m = ref.tensor(lambda i: math.sqrt(1 - ref.alpha_bar(i)), t, 4)
    expected = sab * x0.double() + s1m * noise.double()
    torch.testing.assert_close(xt.double(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("i", [50, 300, 700])
def test_q_sample_moments(i: int) -> None:
    T, N, x0_val = 1000, 200_000, 0.7
    d, ref = GaussianDiffusion(schedule="cosine", timesteps=T), Ref("cosine", T)
    x0 = torch.full((N, 1, 1, 1), x0_val)
    noise = torch.randn(N, 1, 1, 1, generator=gen(1))
    xt = d.q_sample(x0, torch.full((N,), i), noise).double().flatten()
    ab = ref.alpha_bar(i)
    mean_tol = 5 * math.sqrt((1 - ab) / N)
    assert abs(xt.mean().item() - math.sqrt(ab) * x0_val) < mean_tol
    assert xt.var().item() == pytest.approx(1 - ab, rel=5 * math.sqrt(2 / N))


# ---- q_posterior_mean_variance --------------------------------------------------------
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_q_posterior_matches_closed_form(name: str) -> None:
    T = 1000
    d, ref = GaussianDiffusion(schedule=name, timesteps=T), Ref(name, T)
    g = gen(2)
    shape = (4, 3, 5, 5)
    x0 = torch.rand(shape, generator=g) * 2 - 1
    xt = torch.randn(shape, generator=g)
    t = torch.tensor([0, 1, 250, 999])
    mean, var = d.q_posterior_mean_variance(x0, xt, t)
    assert mean.shape == shape
    assert var.shape == shape

    def c1(i: int) -> float:
        return math.sqrt(ref.alpha_bar_prev(i)) * ref.beta(i) / (1 - ref.alpha_bar(i))

    def c2(i: int) -> float:
        return math.sqrt(ref.alpha(i)) * (1 - ref.alpha_bar_prev(i)) / (1 - ref.alpha_bar(i))

    expected_mean = ref.tensor(c1, t, 4) * x0.double() + ref.tensor(c2, t, 4) * xt.double()
    expected_var = ref.tensor(ref.post_var, t, 4).expand(shape)
    torch.testing.assert_close(mean.double(), expected_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var.double(), expected_var, rtol=1e-5, atol=1e-12)
    # At the first step the posterior is a point mass on x0.
    torch.testing.assert_close(mean[0], x0[0], rtol=0, atol=1e-6)
    assert (var[0] == 0).all()


def _forward_pair(ref: Ref, i: int, x0_val: float, N: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x_{t−1} ~ q(x_{t−1} | x0), then x_t ~ N(√α_t x_{t−1}, β_t); float64, shape (N, 1, 1, 1)."""
    g = gen(seed)
    ab_prev = ref.alpha_bar_prev(i)
    x_prev = math.sqrt(ab_prev) * x0_val + math.sqrt(1 - ab_prev) * torch.randn(N, generator=g, dtype=torch.float64)
    x_t = math.sqrt(ref.alpha(i)) * x_prev + math.sqrt(ref.beta(i)) * torch.randn(N, generator=g, dtype=torch.float64)
    return x_prev.reshape(N, 1, 1, 1), x_t.reshape(N, 1, 1, 1)


@pytest.mark.parametrize(("name", "i"), [("linear", 20), ("cosine", 300), ("cosine", 950)])
def test_q_posterior_monte_carlo_bayes(name: str, i: int) -> None:
    """Sampling forward (x0 → x_{t−1} → x_t), the residual x_{t−1} − μ̃(x_t, x0) must have
    mean 0, variance β̃_t and be uncorrelated with x_t: that is what it means for
    N(μ̃, β̃) to be the conditional law of x_{t−1} given x_t (and x0), jointly Gaussian."""
    T, N, x0_val = 1000, 200_000, -0.4
    d, ref = GaussianDiffusion(schedule=name, timesteps=T), Ref(name, T)
    x_prev, x_t = _forward_pair(ref, i, x0_val, N, seed=3)
    x0 = torch.full_like(x_t, x0_val)
    mean, var = d.q_posterior_mean_variance(x0, x_t, torch.full((N,), i))
    r = (x_prev - mean.double()).flatten()
    pv = ref.post_var(i)
    assert var[0].item() == pytest.approx(pv, rel=1e-5)
    assert abs(r.mean().item()) < 5 * math.sqrt(pv / N)
    assert r.var().item() == pytest.approx(pv, rel=5 * math.sqrt(2 / N))
    xt = x_t.flatten()
    corr = ((r - r.mean()) * (xt - xt.mean())).mean() / (r.std() * xt.std())
    assert abs(corr.item()) < 5 / math.sqrt(N)


@pytest.mark.parametrize(("name", "i"), [("linear", 20), ("cosine", 600)])
def test_q_posterior_mixture_reproduces_marginal(name: str, i: int) -> None:
    """x_t ~ q(x_t | x0), then x_{t−1} ~ q(x_{t−1} | x_t, x0) gives x_{t−1} ~ q(x_{t−1} | x0)."""
    T, N, x0_val = 1000, 200_000, 0.6
    d, ref = GaussianDiffusion(schedule=name, timesteps=T), Ref(name, T)
    g = gen(4)
    ab = ref.alpha_bar(i)
    x_t = math.sqrt(ab) * x0_val + math.sqrt(1 - ab) * torch.randn(N, 1, 1, 1, generator=g, dtype=torch.float64)
    mean, var = d.q_posterior_mean_variance(torch.full_like(x_t, x0_val), x_t, torch.full((N,), i))
    x_prev = (mean.double() + var.double().sqrt() * torch.randn(N, 1, 1, 1, generator=g, dtype=torch.float64)).flatten()
    ab_prev = ref.alpha_bar_prev(i)
    assert abs(x_prev.mean().item() - math.sqrt(ab_prev) * x0_val) < 5 * math.sqrt((1 - ab_prev) / N)
    assert x_prev.var().item() == pytest.approx(1 - ab_prev, rel=5 * math.sqrt(2 / N))


# ---- p_mean_variance ------------------------------------------------------------------
def _exact_setup(name: str, T: int, seed: int = 5):
    d, ref = GaussianDiffusion(schedule=name, timesteps=T), Ref(name, T)
    g = gen(seed)
    shape = (5, 1, 6, 6)
    x0 = torch.rand(shape, generator=g) * 1.8 - 0.9
    noise = torch.randn(shape, generator=g)
    t = torch.tensor([0, 3, 100, 400, 800])
    x_t = d.q_sample(x0, t, noise)
    return d, ref, x0, noise, t, x_t


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("clip", [False, True])
def test_p_mean_variance_with_exact_eps(name: str, clip: bool) -> None:
    d, ref, x0, noise, t, x_t = _exact_setup(name, 1000)
    seen = []

    def net(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        seen.append(tt.clone())
        return noise

    out = d.p_mean_variance(net, x_t, t, clip_denoised=clip)
    assert torch.equal(seen[0], t)  # an unrespaced process calls the net with i itself
    assert torch.equal(out["eps"], noise)
    torch.testing.assert_close(out["pred_x0"], x0, rtol=0, atol=2e-4)
    true_mean, true_var = d.q_posterior_mean_variance(x0, x_t, t)
    torch.testing.assert_close(out["mean"], true_mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(out["variance"], true_var)
    # log-variance is log β̃_t, with β̃_1 = 0 replaced by β̃_2 (Ho et al.'s clipping).
    expected_logvar = ref.tensor(lambda i: math.log(ref.post_var(max(i, 1))), t, 4).expand(x_t.shape)
    torch.testing.assert_close(out["log_variance"].double(), expected_logvar, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_p_mean_unclipped_is_eq11(name: str) -> None:
    """μ_θ = 1/√α_t · (x_t − β_t/√(1−ᾱ_t) · ε_θ) for any ε_θ (Ho et al. eq. 11)."""
    d, ref, _, _, t, x_t = _exact_setup(name, 1000)
    eps = torch.randn(x_t.shape, generator=gen(6))  # arbitrary, not the true noise
    out = d.p_mean_variance(lambda x, tt: eps, x_t, t, clip_denoised=False)
    inv_sqrt_a = ref.tensor(lambda i: 1 / math.sqrt(ref.alpha(i)), t, 4)
    coef = ref.tensor(lambda i: ref.beta(i) / math.sqrt(1 - ref.alpha_bar(i)), t, 4)
    expected = inv_sqrt_a * (x_t.double() - coef * eps.double())
    torch.testing.assert_close(out["mean"].double(), expected, rtol=0, atol=5e-5)


def test_p_mean_variance_clips_pred_x0() -> None:
    d = GaussianDiffusion(schedule="linear", timesteps=100)
    shape = (3, 1, 4, 4)
    x0 = torch.full(shape, 3.0)  # outside the data range
    x0[1] = -3.0
    x0[2, :, :2] = 0.5
    noise = torch.randn(shape, generator=gen(7))
    t = torch.tensor([10, 50, 90])
    x_t = d.q_sample(x0, t, noise)
    out = d.p_mean_variance(lambda x, tt: noise, x_t, t, clip_denoised=True)
    torch.testing.assert_close(out["pred_x0"], x0.clamp(-1, 1), rtol=0, atol=1e-4)
    expected_mean, _ = d.q_posterior_mean_variance(x0.clamp(-1, 1), x_t, t)
    torch.testing.assert_close(out["mean"], expected_mean, rtol=0, atol=1e-5)
    unclipped = d.p_mean_variance(lambda x, tt: noise, x_t, t, clip_denoised=False)
    assert unclipped["pred_x0"].abs().max() > 2.9


def test_p_sample_noise_only_before_last_step() -> None:
    d = GaussianDiffusion(schedule="linear", timesteps=100)
    x_t = torch.randn(2, 1, 4, 4, generator=gen(8))
    net = lambda x, tt: torch.zeros_like(x)  # noqa: E731
    t = torch.tensor([0, 0])
    out = d.p_sample(net, x_t, t, generator=gen(9))
    assert torch.equal(out["sample"], out["mean"])  # no noise at t = 1
    t = torch.tensor([50, 50])
    out = d.p_sample(net, x_t, t, generator=gen(9))
    resid = (out["sample"] - out["mean"]).double()
    assert resid.abs().min() > 0
    # The noise scale is σ_t = √β̃_t: the residual divided by σ_t is the generator's N(0, 1).
    z = torch.randn(x_t.shape, generator=gen(9))
    sigma = math.sqrt(Ref("linear", 100).post_var(50))
    torch.testing.assert_close(resid / sigma, z.double(), rtol=1e-4, atol=1e-4)


# ---- loss -----------------------------------------------------------------------------
def test_loss_zero_for_true_noise_and_mean_square_for_zero_net() -> None:
    d = GaussianDiffusion(schedule="linear", timesteps=100)
    g = gen(10)
    x0 = torch.rand(4, 1, 6, 6, generator=g) * 2 - 1
    noise = torch.randn(4, 1, 6, 6, generator=g)
    t = torch.tensor([0, 10, 50, 99])
    assert d.loss(lambda x, tt: noise, x0, t=t, noise=noise).item() == 0.0
    zero = d.loss(lambda x, tt: torch.zeros_like(x), x0, t=t, noise=noise)
    assert zero.dim() == 0
    assert zero.item() == pytest.approx((noise.double() ** 2).mean().item(), rel=1e-6)


def test_loss_net_sees_q_sample_of_x0() -> None:
    """A net that recovers ε from x_t with the reference ᾱ gives (near) zero loss, so the
    loss noises x0 with q_sample at the same t that it passes to the net."""
    T = 100
    d, ref = GaussianDiffusion(schedule="cosine", timesteps=T), Ref("cosine", T)
    g = gen(11)
    x0 = torch.rand(4, 1, 6, 6, generator=g) * 2 - 1
    noise = torch.randn(4, 1, 6, 6, generator=g)
    t = torch.tensor([0, 10, 50, 80])

    def net(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        sab = ref.tensor(lambda i: math.sqrt(ref.alpha_bar(i)), tt, 4)
        s1m = ref.tensor(lambda i: math.sqrt(1 - ref.alpha_bar(i)), tt, 4)
        return ((x.double() - sab * x0.double()) / s1m).float()

    assert d.loss(net, x0, t=t, noise=noise).item() < 1e-8
    # A wrong t in the net's inverse gives a clearly nonzero loss.
    assert d.loss(lambda x, tt: net(x, tt.flip(0)), x0, t=t, noise=noise).item() > 1e-2


def test_loss_draws_t_uniformly_over_all_steps() -> None:
    T, B = 50, 5000
    d = GaussianDiffusion(schedule="linear", timesteps=T)
    seen: list[torch.Tensor] = []

    def net(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        seen.append(tt)
        return torch.zeros_like(x)

    x0 = torch.zeros(B, 1, 2, 2)
    l1 = d.loss(net, x0, generator=gen(12))
    l2 = d.loss(net, x0, generator=gen(12))
    assert l1.item() == l2.item()  # reproducible from the generator
    counts = torch.bincount(seen[0], minlength=T)
    assert counts.shape == (T,)  # nothing at or beyond T
    assert seen[0].min() == 0
    assert seen[0].max() == T - 1
    # Each of the T values ~ B/T = 100 times; 5σ ≈ 50.
    assert ((counts - B / T).abs() < 50).all()


# ---- respace --------------------------------------------------------------------------
def test_respace_evenly_spaced() -> None:
    T = 100
    d = GaussianDiffusion(schedule="cosine", timesteps=T)
    r = d.respace(10)
    expected = [11 * k for k in range(10)]  # round(linspace(0, 99, 10)), 99/9 = 11
    assert r.num_timesteps == 10
    assert r.timestep_map.tolist() == expected
    torch.testing.assert_close(r.alphas_cumprod, d.alphas_cumprod[expected], rtol=1e-6, atol=0)
    ref = Ref("cosine", T)
    for j, i in enumerate(expected):
        assert r.alphas_cumprod[j].item() == pytest.approx(ref.alpha_bar(i), rel=1e-6)
    assert ((r.betas > 0) & (r.betas < 1)).all()
    assert r.alphas_cumprod_prev[0].item() == 1.0


def test_respace_rounds_evenly_spaced_indices() -> None:
    T, steps = 1000, 50
    r = GaussianDiffusion(schedule="linear", timesteps=T).respace(steps)
    expected = [round(k * (T - 1) / (steps - 1)) for k in range(steps)]  # no ties: 49 ∤ 999k
    assert r.timestep_map.tolist() == expected
    assert expected[0] == 0 and expected[-1] == T - 1


def test_respace_explicit_indices_sorted_unique() -> None:
    d = GaussianDiffusion(schedule="linear", timesteps=200)
    r = d.respace([199, 5, 50, 5, 0])
    assert r.timestep_map.tolist() == [0, 5, 50, 199]
    torch.testing.assert_close(r.alphas_cumprod, d.alphas_cumprod[[0, 5, 50, 199]], rtol=1e-6, atol=0)


def test_respace_full_length_is_identity() -> None:
    T = 100
    d = GaussianDiffusion(schedule="linear", timesteps=T)
    r = d.respace(T)
    assert r.timestep_map.tolist() == list(range(T))
    torch.testing.assert_close(r.betas_float64, d.betas_float64, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(r.betas, d.betas, rtol=1e-6, atol=0)
    torch.testing.assert_close(r.posterior_variance, d.posterior_variance, rtol=1e-5, atol=1e-9)


def test_respace_twice_keeps_original_indices() -> None:
    d = GaussianDiffusion(schedule="linear", timesteps=100)
    rr = d.respace(10).respace([0, 5, 9])
    assert rr.timestep_map.tolist() == [0, 55, 99]
    torch.testing.assert_close(rr.alphas_cumprod, d.alphas_cumprod[[0, 55, 99]], rtol=1e-6, atol=0)


@pytest.mark.parametrize("steps", [0, -1, 101, [], [-1, 3], [3, 100]])
def test_respace_invalid_steps(steps) -> None:
    d = GaussianDiffusion(schedule="linear", timesteps=100)
    with pytest.raises(ValueError):
        d.respace(steps)


# ---- ancestral sampler ----------------------------------------------------------------
def _point_mass_net(ref: Ref, x_star: torch.Tensor, calls: list | None = None):
    """Exact ε for data = δ(x*): ε = (x_t − √ᾱ_t x*) / √(1 − ᾱ_t), with t the original index."""

    sab_table = torch.tensor([math.sqrt(a) for a in ref.ab], dtype=torch.float64)
    s1m_table = torch.tensor([math.sqrt(1 - a) for a in ref.ab], dtype=torch.float64)

    def net(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(tt.clone())
        shape = (-1, *((1,) * (x.dim() - 1)))
        sab, s1m = sab_table[tt].reshape(shape), s1m_table[tt].reshape(shape)
        return ((x.double() - sab * x_star.double()) / s1m).to(x.dtype)

    return net


X_STAR = (torch.linspace(-0.9, 0.9, 16)).reshape(1, 1, 4, 4)


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [None, 10])
@pytest.mark.parametrize("clip", [True, False])
def test_sample_ddpm_recovers_point_mass(name: str, steps: int | None, clip: bool) -> None:
    T = 100
    d, ref = GaussianDiffusion(schedule=name, timesteps=T), Ref(name, T)
    calls: list[torch.Tensor] = []
    records: list[dict] = []
    x_T = torch.randn(3, 1, 4, 4, generator=gen(13))
    x = sample_ddpm(
        _point_mass_net(ref, X_STAR, calls), d, x_T,
        generator=gen(14), callback=records.append, steps=steps, clip_denoised=clip,
    )
    assert x.shape == x_T.shape
    torch.testing.assert_close(x, X_STAR.expand_as(x), rtol=0, atol=1e-4)
    total = T if steps is None else steps
    expected_t = list(range(T))[::-1] if steps is None else [11 * k for k in range(10)][::-1]
    # The net is called once per step with the original timestep indices, T−1 first.
    assert [int(c[0]) for c in calls] == expected_t
    assert all((c == c[0]).all() for c in calls)
    # Callback: called `total` times, i = 1..total, t the original index, x0 predicted exactly.
    assert len(records) == total
    assert [r["i"] for r in records] == list(range(1, total + 1))
    assert [r["t"] for r in records] == expected_t
    assert all(r["total"] == total for r in records)
    for r in records:
        torch.testing.assert_close(r["pred_x0"], X_STAR.expand_as(x), rtol=0, atol=1e-3)
    torch.testing.assert_close(records[-1]["x"], x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("steps", [None, 10])
def test_sample_ddpm_marginals_match_forward_process(steps: int | None) -> None:
    """With the exact ε for data δ(x*), every x_t on the chain has the law q(x_t | x*) =
    N(√ᾱ_t x*, 1 − ᾱ_t); this checks the per-step noise scale σ_t² = β̃_t."""
    T, N, x_val = 100, 20_000, 0.5
    d, ref = GaussianDiffusion(schedule="linear", timesteps=T), Ref("linear", T)
    x_star = torch.full((1, 1, 1, 1), x_val)
    stats: dict[int, tuple[float, float]] = {}

    def cb(r: dict) -> None:
        stats[r["t"]] = (r["x"].double().mean().item(), r["x"].double().var().item())

    x_T = torch.randn(N, 1, 1, 1, generator=gen(15))
    sample_ddpm(_point_mass_net(ref, x_star), d, x_T, generator=gen(16), callback=cb, steps=steps)
    # After the step at index t the chain holds x at index t − 1 (x_{t−1} in the paper's steps).
    checked = 0
    for t_idx in ([88, 55, 22, 11] if steps else [90, 60, 30, 10, 3]):
        # The next position on the chain below t_idx.
        prev = (t_idx - 11) if steps else (t_idx - 1)
        ab = ref.alpha_bar(prev)
        mean, var = stats[t_idx]
        # 5σ sampling error plus the small mismatch of x_T ~ N(0, 1) vs q(x_T | x*).
        assert abs(mean - math.sqrt(ab) * x_val) < 5 * math.sqrt((1 - ab) / N) + 0.01, t_idx
        assert var == pytest.approx(1 - ab, rel=5 * math.sqrt(2 / N) + 0.01), t_idx
        checked += 1
    assert checked >= 4


def test_sample_ddpm_seed_reproducibility() -> None:
    d = GaussianDiffusion(schedule="linear", timesteps=50)
    net = lambda x, tt: torch.zeros_like(x)  # noqa: E731  (inexact: the noise matters)
    x_T = torch.randn(2, 1, 4, 4, generator=gen(17))
    a = sample_ddpm(net, d, x_T, generator=gen(0))
    b = sample_ddpm(net, d, x_T, generator=gen(0))
    c = sample_ddpm(net, d, x_T, generator=gen(1))
    assert a.shape == x_T.shape
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)
    assert a.min() >= -1 and a.max() <= 1
    # Respaced as well.
    a10 = sample_ddpm(net, d, x_T, generator=gen(0), steps=10)
    b10 = sample_ddpm(net, d, x_T, generator=gen(0), steps=10)
    c10 = sample_ddpm(net, d, x_T, generator=gen(1), steps=10)
    assert torch.equal(a10, b10)
    assert not torch.allclose(a10, c10, atol=1e-3)


def test_sample_ddpm_steps_equal_T_is_full_chain() -> None:
    T = 30
    d = GaussianDiffusion(schedule="linear", timesteps=T)
    net = lambda x, tt: 0.1 * x  # noqa: E731
    x_T = torch.randn(2, 1, 4, 4, generator=gen(18))
    records: list[dict] = []
    a = sample_ddpm(net, d, x_T, generator=gen(3), steps=T, callback=records.append)
    b = sample_ddpm(net, d, x_T, generator=gen(3))
    assert len(records) == T
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_one_step_respacing_is_the_step_from_x_T() -> None:
    d = GaussianDiffusion("linear", 100).respace(1)
    assert d.timestep_map.tolist() == [99]
    # its single β takes ᾱ from 1 straight to ᾱ_T
    full = GaussianDiffusion("linear", 100)
    assert float(d.alphas_cumprod[0]) == pytest.approx(float(full.alphas_cumprod[-1]), rel=1e-5)


def test_respace_takes_numpy_integers() -> None:
    import numpy as np

    assert GaussianDiffusion("linear", 100).respace(np.int64(10)).num_timesteps == 10


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_eps_x0_v_conversions_are_exact_inverses(schedule: str) -> None:
    d = GaussianDiffusion(schedule, 1000)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(0, 1000, 37)
    x0 = torch.rand(len(t), 1, 4, 4, generator=g) * 2 - 1
    eps = torch.randn(len(t), 1, 4, 4, generator=g)
    x_t = d.q_sample(x0, t, eps)
    v = d.get_v(x0, t, eps)
    # v is a rotation of (x0, ε): exact at every t
    assert torch.allclose(d.predict_x0_from_v(x_t, t, v), x0, atol=1e-5)
    assert torch.allclose(d.predict_eps_from_v(x_t, t, v), eps, atol=1e-5)
    # x0 from ε divides by √ᾱ_t: float32 rounding grows as 1/√ᾱ_t, so check where ᾱ_t > 1e-3
    # (the reason v-prediction exists: near t = T, ε says almost nothing about x0)
    ok = d.alphas_cumprod[t] > 1e-3
    assert ok.sum() >= 20  # most of the 28 timesteps checked
    tt, xt, x0k, epsk = t[ok], x_t[ok], x0[ok], eps[ok]
    assert torch.allclose(d.predict_x0_from_eps(xt, tt, epsk), x0k, atol=1e-4)
    assert torch.allclose(d.predict_eps_from_x0(xt, tt, x0k), epsk, atol=1e-4)
    # x0 → ε → x0 with a wrong x0 gives the wrong x0 back, not the true one: the maps are inverses
    wrong = x0k + 0.5
    assert torch.allclose(d.predict_x0_from_eps(xt, tt, d.predict_eps_from_x0(xt, tt, wrong)), wrong, atol=1e-4)


def test_v_matches_its_definition_by_hand() -> None:
    d = GaussianDiffusion("cosine", 1000)
    i = 499
    a = float(torch.cumprod(1 - d.betas_float64, 0)[i])  # ᾱ_500 ≈ 0.4938 (see the schedule tests)
    x0, eps = torch.full((1, 1, 1, 1), 0.3), torch.full((1, 1, 1, 1), -1.2)
    v = d.get_v(x0, torch.tensor([i]), eps)
    assert float(v) == pytest.approx(math.sqrt(a) * -1.2 - math.sqrt(1 - a) * 0.3, rel=1e-6)
