"""Variance schedules against reference numbers derived from the closed forms.

Reference values are computed here in plain Python ``math`` (float64), independently of
``ddpm_lit.core.schedules``. Index convention: position ``i = 0..T-1`` is step ``t = i + 1``.
"""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lit.core.diffusion import GaussianDiffusion
from ddpm_lit.core.schedules import (
    cosine_beta_schedule,
    get_beta_schedule,
    linear_beta_schedule,
)

REL = 1e-6


# ---- independent reference implementations (plain Python) -----------------------------
def ref_linear_beta(i: int, T: int) -> float:
    """β at position i of the linear schedule: 1e-4 → 0.02 at T=1000, end points × 1000/T."""
    scale = 1000.0 / T
    start, end = 1e-4 * scale, 0.02 * scale
    if T == 1:
        return start
    return start + (end - start) * i / (T - 1)


def ref_cosine_beta(i: int, T: int, s: float = 0.008, max_beta: float = 0.999) -> float:
    """β_t = min(1 − f(t/T)/f((t−1)/T), 0.999), f(u) = cos²(((u+s)/(1+s))·π/2), t = i + 1."""

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    t = i + 1
    return min(1.0 - f(t / T) / f((t - 1) / T), max_beta)


def ref_betas(name: str, T: int) -> list[float]:
    fn = ref_linear_beta if name == "linear" else ref_cosine_beta
    return [fn(i, T) for i in range(T)]


def ref_alpha_bar(betas: list[float], i: int) -> float:
    """ᾱ at position i: product of (1 − β_j) for j = 0..i, as a plain loop."""
    prod = 1.0
    for j in range(i + 1):
        prod *= 1.0 - betas[j]
    return prod


# ---- linear ---------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1000, 500])
def test_linear_betas_match_closed_form(T: int) -> None:
    betas = get_beta_schedule("linear", T)
    assert betas.dtype == torch.float64
    assert betas.shape == (T,)
    for i in [0, 1, T // 2 - 1, T // 2, T - 2, T - 1]:
        assert betas[i].item() == pytest.approx(ref_linear_beta(i, T), rel=REL), i


def test_linear_end_points_explicit() -> None:
    # Hand-written end points: 1e-4 / 0.02 at T=1000, doubled at T=500.
    b1000 = linear_beta_schedule(1000)
    b500 = linear_beta_schedule(500)
    assert b1000[0].item() == pytest.approx(1e-4, rel=REL)
    assert b1000[-1].item() == pytest.approx(0.02, rel=REL)
    assert b500[0].item() == pytest.approx(2e-4, rel=REL)
    assert b500[-1].item() == pytest.approx(0.04, rel=REL)
    # Equally spaced: constant first difference.
    diffs = b1000[1:] - b1000[:-1]
    assert torch.allclose(diffs, torch.full_like(diffs, (0.02 - 1e-4) / 999), rtol=1e-9, atol=0)


# ---- cosine ---------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1000, 100])
def test_cosine_betas_match_closed_form(T: int) -> None:
    betas = get_beta_schedule("cosine", T)
    assert betas.dtype == torch.float64
    assert betas.shape == (T,)
    for i in [0, 1, 2, T // 4, T // 2, (3 * T) // 4, T - 3, T - 2, T - 1]:
        assert betas[i].item() == pytest.approx(ref_cosine_beta(i, T), rel=REL), i


def test_cosine_last_beta_capped_at_0999() -> None:
    betas = cosine_beta_schedule(1000)
    # Uncapped, the last step would have β ≈ 1 (f(1) = cos²(π/2) = 0).
    assert betas[-1].item() == pytest.approx(0.999, rel=1e-12)
    # The one before is not capped and still follows the closed form.
    assert betas[-2].item() < 0.999
    assert betas[-2].item() == pytest.approx(ref_cosine_beta(998, 1000), rel=REL)
    assert (betas <= 0.999).all()


def test_cosine_alpha_bar_matches_f_ratio_before_cap() -> None:
    """For t < T the product of (1 − β) telescopes to f(t/T) / f(0)."""
    T, s = 1000, 0.008

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = get_beta_schedule("cosine", T)
    cumprod = torch.cumprod(1.0 - betas, 0)
    for i in [0, 9, 499, 899, 997]:
        assert cumprod[i].item() == pytest.approx(f((i + 1) / T) / f(0.0), rel=1e-9), i


# ---- ᾱ as used by the diffusion process ------------------------------------------------
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alphas_cumprod_match_python_product(name: str) -> None:
    T = 1000
    ref = ref_betas(name, T)
    diff = GaussianDiffusion(schedule=name, timesteps=T)
    for i in [0, 1, 10, 250, 500, 900, 998, 999]:
        expected = ref_alpha_bar(ref, i)
        assert diff.alphas_cumprod[i].item() == pytest.approx(expected, rel=1e-6), i


# ---- properties -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("T", [1000, 500, 100, 50])
def test_betas_in_open_unit_interval(name: str, T: int) -> None:
    betas = get_beta_schedule(name, T)
    assert (betas > 0).all()
    assert (betas < 1).all()


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("T", [1000, 100])
def test_alphas_cumprod_strictly_decreasing(name: str, T: int) -> None:
    betas = get_beta_schedule(name, T)
    ac64 = torch.cumprod(1.0 - betas, 0)
    assert (ac64[1:] < ac64[:-1]).all()
    assert ac64[0] < 1
    # The float32 buffers used by the diffusion keep this property.
    ac32 = GaussianDiffusion(schedule=name, timesteps=T).alphas_cumprod
    assert (ac32[1:] < ac32[:-1]).all()


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_posterior_variance_properties(name: str) -> None:
    T = 1000
    diff = GaussianDiffusion(schedule=name, timesteps=T)
    pv, betas = diff.posterior_variance, diff.betas
    assert pv[0].item() == 0.0  # β̃_1 = β_1 (1 − ᾱ_0) / (1 − ᾱ_1) with ᾱ_0 = 1
    assert (pv[1:] > 0).all()
    assert (pv <= betas).all()  # β̃_t ≤ β_t since ᾱ_{t−1} ≥ ᾱ_t
    # Against the closed form for a few positions.
    ref = ref_betas(name, T)
    for i in [1, 2, 100, 500, 999]:
        ab, ab_prev = ref_alpha_bar(ref, i), ref_alpha_bar(ref, i - 1)
        expected = ref[i] * (1 - ab_prev) / (1 - ab)
        assert pv[i].item() == pytest.approx(expected, rel=1e-5), i


# ---- bad inputs -----------------------------------------------------------------------
def test_unknown_schedule_lists_valid_names() -> None:
    with pytest.raises(ValueError) as excinfo:
        get_beta_schedule("quadratic", 1000)
    msg = str(excinfo.value)
    assert "linear" in msg and "cosine" in msg
    assert "quadratic" in msg


def test_unknown_schedule_via_diffusion() -> None:
    with pytest.raises(ValueError, match="cosine"):
        GaussianDiffusion(schedule="sigmoid", timesteps=10)


@pytest.mark.parametrize("T", [0, -5, 2.5, True])
def test_bad_timesteps_raise(T: object) -> None:
    with pytest.raises(ValueError, match="timesteps"):
        get_beta_schedule("linear", T)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timesteps"):
        get_beta_schedule("cosine", T)  # type: ignore[arg-type]


def test_linear_too_few_timesteps_raises() -> None:
    # At T=20 the scaled end point is 0.02·1000/20 = 1.0, outside (0, 1).
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        get_beta_schedule("linear", 20)
    assert get_beta_schedule("linear", 21)[-1].item() == pytest.approx(20.0 / 21.0, rel=REL)


# Literal float64 values, computed once outside the project (plain Python and awk loops over
# the papers' formulas), so an index or offset misreading shared by code and tests shows.
@pytest.mark.parametrize(
    "name, buffer, index, expected",
    [
        ("cosine", "betas", 0, 4.1284224822e-05),
        ("cosine", "alphas_cumprod", 499, 0.49384359044),
        ("cosine", "alphas_cumprod", 999, 2.4287669070e-09),
        ("linear", "alphas_cumprod", 499, 0.078587242882),
        ("linear", "alphas_cumprod", 999, 4.0358297654e-05),
        ("linear", "posterior_variance", 1, 5.4531876613e-05),
    ],
)
def test_literal_reference_values(name: str, buffer: str, index: int, expected: float) -> None:
    d = GaussianDiffusion(schedule=name, timesteps=1000)
    assert float(getattr(d, buffer)[index]) == pytest.approx(expected, rel=1e-5)
