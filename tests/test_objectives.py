"""Prediction targets (ε, x0, v), loss weightings (simple, vlb, min-SNR) and the learned variance."""

import pytest
import torch

from ddpm_lit.core.diffusion import GaussianDiffusion
from ddpm_lit.core.likelihood import bits_per_dim


def _eps_net(x, t):  # some ε̂ that is not the truth
    return torch.tanh(x) * (1 + t.float().reshape(-1, 1, 1, 1) / 100)


def _as_objective(d: GaussianDiffusion, objective: str):
    """A network of ``objective`` whose ε̂ equals ``_eps_net``'s (for the unrespaced process)."""

    def net(x_t, t):
        eps = _eps_net(x_t, t)
        if objective == "eps":
            return eps
        x0 = d.predict_x0_from_eps(x_t, t, eps)
        return x0 if objective == "x0" else d.get_v(x0, t, eps)

    return net


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_every_objective_reads_back_the_same_eps_and_x0(objective: str) -> None:
    d = GaussianDiffusion("linear", 200, objective=objective)
    x = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 20, 100, 150, 180])  # ᾱ > 1e-3: conversions are well conditioned here
    pred = d.model_predictions(_as_objective(d, objective), x, t)
    ref = GaussianDiffusion("linear", 200).model_predictions(_eps_net, x, t)
    torch.testing.assert_close(pred["eps"], ref["eps"], atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(pred["pred_x0"], ref["pred_x0"], atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_exact_target_gives_zero_loss(objective: str) -> None:
    d = GaussianDiffusion("cosine", 100, objective=objective)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.rand(8, 1, 4, 4, generator=g) * 2 - 1, torch.randn(8, 1, 4, 4, generator=g)
    t = torch.randint(0, 100, (8,), generator=g)
    target = d.training_target(x0, t, noise)
    assert float(d.loss(lambda x_t, tt: target, x0, t=t, noise=noise)) == 0.0
    assert float(d.loss(lambda x_t, tt: target + 0.1, x0, t=t, noise=noise)) == pytest.approx(0.01, rel=1e-4)


@pytest.mark.parametrize("weighting", ["min_snr", "vlb"])
def test_a_weighting_weighs_the_same_eps_error_whatever_the_objective(weighting: str) -> None:
    """min-SNR and the bound's weight are defined on ‖ε − ε̂‖²: the three objectives must give one loss."""
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.rand(16, 1, 4, 4, generator=g) * 2 - 1, torch.randn(16, 1, 4, 4, generator=g)
    t = torch.randint(0, 200, (16,), generator=g)
    t[:3] = torch.tensor([0, 5, 199])
    losses = {}
    for objective in ("eps", "x0", "v"):
        d = GaussianDiffusion("linear", 200, objective=objective, loss_weighting=weighting)
        losses[objective] = float(d.loss(_as_objective(d, objective), x0, t=t, noise=noise))
    assert losses["x0"] == pytest.approx(losses["eps"], rel=1e-3)
    assert losses["v"] == pytest.approx(losses["eps"], rel=1e-3)
    simple = float(GaussianDiffusion("linear", 200).loss(_eps_net, x0, t=t, noise=noise))
    assert losses["eps"] != pytest.approx(simple, rel=1e-2)  # the weighting changed something


def test_weights_against_their_formulas() -> None:
    d = GaussianDiffusion("linear", 1000, loss_weighting="min_snr", min_snr_gamma=5.0)
    t = torch.arange(1000)
    ac = torch.cumprod(1 - d.betas_float64, 0)
    snr = ac / (1 - ac)
    torch.testing.assert_close(d.loss_weight(t).double(), snr.clamp(max=5) / snr, rtol=1e-4, atol=0)
    v = GaussianDiffusion("linear", 1000, objective="v", loss_weighting="min_snr")
    torch.testing.assert_close(v.loss_weight(t).double(), snr.clamp(max=5) / (snr + 1), rtol=1e-4, atol=0)
    x0 = GaussianDiffusion("linear", 1000, objective="x0", loss_weighting="min_snr")
    torch.testing.assert_close(x0.loss_weight(t).double(), snr.clamp(max=5), rtol=1e-4, atol=0)
    # the bound's weight β_t² / (2 β̃_t α_t (1 − ᾱ_t)) for t ≥ 2 (Ho et al. 2020, eq. 12)
    b = GaussianDiffusion("linear", 1000, loss_weighting="vlb")
    beta = d.betas_float64
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    tilde = beta * (1 - ac_prev) / (1 - ac)
    expected = beta**2 / (2 * tilde * (1 - beta) * (1 - ac))
    torch.testing.assert_close(b.loss_weight(t)[1:].double(), expected[1:], rtol=5e-4, atol=0)  # float32 buffers
    assert float(b.loss_weight(t)[0]) > 0  # t = 1 uses β̃_2, as the clipped log-variance does


def test_bad_choices_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="eps, x0, v"):
        GaussianDiffusion(objective="score")
    with pytest.raises(ValueError, match="simple, vlb, min_snr"):
        GaussianDiffusion(loss_weighting="p2")
    with pytest.raises(ValueError, match="hybrid"):
        GaussianDiffusion(variance="learned", loss_weighting="vlb")
    with pytest.raises(ValueError, match="needs 2"):
        GaussianDiffusion(variance="learned").model_predictions(_eps_net, torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))


def _learned(net_eps, u: float):
    return lambda x, t: torch.cat([net_eps(x, t), torch.full_like(x, u)], dim=1)


def test_learned_variance_interpolates_between_beta_tilde_and_beta() -> None:
    d = GaussianDiffusion("cosine", 100, variance="learned")
    x = torch.randn(4, 1, 4, 4)
    t = torch.tensor([0, 1, 50, 99])
    low = d.p_mean_variance(_learned(_eps_net, -1.0), x, t)["log_variance"]
    high = d.p_mean_variance(_learned(_eps_net, 1.0), x, t)["log_variance"]
    mid = d.p_mean_variance(_learned(_eps_net, 0.0), x, t)["log_variance"]
    torch.testing.assert_close(low, d.log_variance(t, x.shape, "posterior"))
    torch.testing.assert_close(high[1:], torch.log(d.betas[t[1:]]).reshape(-1, 1, 1, 1).expand_as(x[1:]))
    torch.testing.assert_close(mid, (low + high) / 2)


def test_learned_variance_bound_with_u_minus_1_is_the_posterior_variance_bound() -> None:
    from test_likelihood import one_image_problem

    d, x0, exact = one_image_problem()
    learned = GaussianDiffusion("cosine", 50, variance="learned")
    a = bits_per_dim(exact, d, x0, generator=torch.Generator().manual_seed(1))
    b = bits_per_dim(_learned(exact, -1.0), learned, x0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a["total"], b["total"])
    c = bits_per_dim(_learned(exact, 0.5), learned, x0, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a["total"], c["total"])  # the variance channels are read


def test_hybrid_loss_trains_the_variance_only_through_the_bound() -> None:
    """L_simple + λ L_vlb with the mean detached: the ε channels' gradient is L_simple's alone,
    and the variance channels get a gradient only from the bound."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    x0 = (torch.randint(0, 256, (8, 1, 4, 4), generator=g).float() / 255) * 2 - 1
    noise, t = torch.randn(8, 1, 4, 4, generator=g), torch.randint(0, 100, (8,), generator=g)

    def grads(vlb_weight: float) -> torch.Tensor:
        out = torch.zeros(8, 2, 4, 4, requires_grad=True)
        d = GaussianDiffusion("cosine", 100, variance="learned", vlb_weight=vlb_weight)
        d.loss(lambda x, tt: out + torch.cat([x * 0.1, x * 0], 1), x0, t=t, noise=noise).backward()
        return out.grad

    with_vlb, without = grads(0.001), grads(0.0)
    torch.testing.assert_close(with_vlb[:, :1], without[:, :1])
    assert without[:, 1:].abs().max() == 0 and with_vlb[:, 1:].abs().max() > 0
