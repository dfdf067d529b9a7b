"""Samplers: functions that turn noise into data with a denoiser and a diffusion process.

Every sampler shares one signature, ``sampler(net, diffusion, x_T, *, generator=None,
callback=None, **options) -> x0`` and reports progress through ``callback`` rather than
logging, so the same loop serves training-time validation, scripts and tests.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal, get_args

import torch

from ddpm_lit.core.diffusion import Denoiser, GaussianDiffusion, extract, randn

Callback = Callable[[dict[str, Any]], None]
# The subsequences of timesteps DDIM and DPM-Solver++ may visit (see ``ddim_timesteps``).
Spacing = Literal["uniform", "quadratic", "trailing"]
SPACINGS: tuple[str, ...] = get_args(Spacing)


@torch.no_grad()
def sample_ddpm(
    net: Denoiser,
    diffusion: GaussianDiffusion,
    x_T: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    steps: int | None = None,
    clip_denoised: bool = True,
) -> torch.Tensor:
    """Ancestral sampling, Algorithm 2 of Ho et al. (2020), with σ_t² = β̃_t.

    Args:
        x_T: (B, C, H, W) starting noise, x_T ~ N(0, I).
        generator: source of the per-step noise z, for reproducible samples.
        callback: called after each step with ``{"i", "t", "x", "pred_x0", "total"}``,
            where ``i`` counts steps done and ``t`` is the original timestep index.
        steps: run on an evenly respaced chain of this many steps (``None``: all T).
        clip_denoised: clip the predicted x0 to [−1, 1] before forming the posterior mean.

    Returns: x0 of shape (B, C, H, W), clamped to [−1, 1].
    """
    if steps is not None and steps != diffusion.num_timesteps:
        diffusion = diffusion.respace(steps)
    x = x_T
    total = diffusion.num_timesteps
    for i, step in enumerate(reversed(range(total))):
        t = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
        out = diffusion.p_sample(net, x, t, clip_denoised=clip_denoised, generator=generator)
        x = out["sample"]
        if callback is not None:
            callback(
                {"i": i + 1, "t": int(diffusion.timestep_map[step]), "x": x, "pred_x0": out["pred_x0"], "total": total}
            )
    return x.clamp(-1.0, 1.0)


def ddim_timesteps(num_timesteps: int, steps: int, spacing: str = "uniform") -> list[int]:
    """The subsequence τ of timestep indices DDIM visits, ascending, always ending at T − 1.

    ``uniform``: evenly spaced from T − 1 down to 0 (as ``GaussianDiffusion.respace``);
    ``quadratic``: τ_i ∝ i², denser near t = 0, the spacing Song et al. (2021) use for CIFAR-10;
    ``trailing``: round(T − k·T/n) − 1 for k = 0..n−1, which ends one stride above t = 0 instead
    of at it (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    Table 2), and equals diffusers' ``timestep_spacing="trailing"``.
    """
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, {num_timesteps}], got {steps}")
    last = num_timesteps - 1
    if spacing == "uniform":
        grid = torch.linspace(last, 0, steps, dtype=torch.float64)
    elif spacing == "quadratic":
        grid = torch.linspace(0, math.sqrt(last), steps, dtype=torch.float64) ** 2
    elif spacing == "trailing":
        # T + k·δ with δ = (T − T/n) − T, the arithmetic of numpy's ``arange(T, 0, −T/n)`` that
        # diffusers uses, so that ties at .5 round (half to even) the same way
        start = float(num_timesteps)
        delta = (start - num_timesteps / steps) - start
        taus = (start + torch.arange(steps, dtype=torch.float64) * delta).round() - 1  # round, then shift
        return sorted(set(taus.long().tolist()) | {last})
    else:
        raise ValueError(f"unknown spacing {spacing!r}; valid choices: {', '.join(SPACINGS)}")
    return sorted(set(grid.round().long().tolist()) | {last})


def log_snr(diffusion: GaussianDiffusion) -> torch.Tensor:
    """λ_t = log(√ᾱ_t / √(1−ᾱ_t)) = ½ log SNR_t for every timestep, in float64: (T,), decreasing in t."""
    ac = diffusion.alphas_cumprod_float64
    return 0.5 * (torch.log(ac) - torch.log1p(-ac))


def logsnr_timesteps(diffusion: GaussianDiffusion, steps: int) -> list[int]:
    """Timestep indices (ascending, from 0 to T − 1) evenly spaced in log-SNR λ_t = log(α_t/σ_t),
    the spacing Lu et al. (2022) use for DPM-Solver: equal steps h keep the multistep
    extrapolation well conditioned. Each λ is rounded to the nearest timestep of the chain."""
    if not 1 <= steps <= diffusion.num_timesteps:
        raise ValueError(f"steps must be in [1, {diffusion.num_timesteps}], got {steps}")
    lam = log_snr(diffusion)
    grid = torch.linspace(float(lam[-1]), float(lam[0]), steps, dtype=torch.float64)
    idx = (lam[None, :] - grid[:, None]).abs().argmin(dim=1)
    return sorted(set(idx.tolist()) | {diffusion.num_timesteps - 1})


def ddim_step(
    diffusion: GaussianDiffusion,
    x_t: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    eta: float,
    clip_denoised: bool = True,
    x0: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Mean and standard deviation of DDIM's x_{t−1} given x_t and ε (Song et al. 2021, eq. 12).

    x_{t−1} = √ᾱ_{t−1} x̂0 + √(1 − ᾱ_{t−1} − σ_t²) ε̂ + σ_t z,
    σ_t = η √((1 − ᾱ_{t−1}) / (1 − ᾱ_t)) √(1 − ᾱ_t / ᾱ_{t−1}).
    η = 1 gives σ_t² = β̃_t and the ancestral step's distribution; η = 0 is deterministic.
    With clipping, ε̂ is recomputed from the clipped x̂0 so that the two stay consistent.
    ``x0``: the network's own x̂0 when it has one (x0 or v objective), used as is: recomputing it
    from ε̂ costs digits where √ᾱ_t is tiny (cosine t = T: σ/α ≈ 2·10⁴ times float32's rounding).
    """
    if x0 is None:
        x0 = diffusion.predict_x0_from_eps(x_t, t, eps)
    if clip_denoised:
        x0 = x0.clamp(-1.0, 1.0)
        eps = diffusion.predict_eps_from_x0(x_t, t, x0)
    a = extract(diffusion.alphas_cumprod, t, x_t.shape)
    a_prev = extract(diffusion.alphas_cumprod_prev, t, x_t.shape)
    sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp(min=0).sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
    return {"mean": mean, "std": sigma, "pred_x0": x0}


@torch.no_grad()
def sample_ddim(
    net: Denoiser,
    diffusion: GaussianDiffusion,
    x_T: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    steps: int | None = None,
    eta: float = 0.0,
    spacing: str = "uniform",
    clip_denoised: bool = True,
) -> torch.Tensor:
    """DDIM (Song et al. 2021) on a subsequence of ``steps`` timesteps (``None``: all T).

    Same signature and callback as ``sample_ddpm``; ``eta`` scales the noise (0: deterministic,
    1: the ancestral step's variance), ``spacing`` is ``uniform``, ``quadratic`` or ``trailing``
    (see ``ddim_timesteps``). The last step goes from τ_1 to ᾱ = 1 (x̂0 itself at η = 0).
    """
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0, got {eta}")
    chain = diffusion.respace(ddim_timesteps(diffusion.num_timesteps, steps or diffusion.num_timesteps, spacing))
    x = x_T
    total = chain.num_timesteps
    for i, step in enumerate(reversed(range(total))):
        t = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
        pred = chain.model_predictions(net, x, t)
        out = ddim_step(chain, x, t, pred["eps"], eta, clip_denoised, x0=pred["pred_x0"])
        x = out["mean"]
        if eta > 0 and step > 0:
            x = x + out["std"] * randn(x.shape, generator, x.device, x.dtype)
        if callback is not None:
            callback({"i": i + 1, "t": int(chain.timestep_map[step]), "x": x, "pred_x0": out["pred_x0"], "total": total})
    return x.clamp(-1.0, 1.0)


@torch.no_grad()
def sample_dpmpp_2m(
    net: Denoiser,
    diffusion: GaussianDiffusion,
    x_T: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    steps: int | None = None,
    spacing: str = "logsnr",
    clip_denoised: bool = True,
    eta: float = 0.0,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a second-order multistep solver in data
    prediction x̂0, with ``steps`` network calls; deterministic (the diffusion ODE) at ``eta`` = 0,
    and with ``eta`` = 1 the SDE variant of Lu et al. (2022, App. B; "SDE-DPM-Solver++(2M)").

    With α_t = √ᾱ_t, σ_t = √(1−ᾱ_t), λ_t = log(α_t/σ_t) and h_i = λ_{t_i} − λ_{t_{i−1}}:

        D_i = (1 + 1/(2 r_i)) x̂0_i − 1/(2 r_i) x̂0_{i−1},   r_i = h_{i−1} / h_i   (D_1 = x̂0_1)
        x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) e^{−η h_i} x_{t_{i−1}} + α_{t_i} (1 − e^{−(1+η) h_i}) D_i
                  + σ_{t_i} √(1 − e^{−2η h_i}) z

    (η = 0: the ODE step of eq. 16; η = 1: the SDE step, which adds as much fresh noise as the
    step removes, and so forgets part of the error of earlier steps.)
    ``spacing``: ``logsnr`` (default; equal h, as Lu et al. recommend), or DDIM's ``uniform``,
    ``quadratic`` or ``trailing`` subsequences (``ddim_timesteps``); the first two have unequal h
    near t = 0, which make the extrapolation (1/(2r) large) amplify errors at some step counts.
    The last step goes from the smallest timestep to the data (σ = 0), where the update reduces
    to x = x̂0, so the first and last steps are first order. ``generator`` draws the SDE's
    noise z (unused at η = 0).
    """
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0, got {eta}")
    if spacing != "logsnr" and spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; valid choices: logsnr, {', '.join(SPACINGS)}")
    steps = steps or diffusion.num_timesteps
    if spacing == "logsnr":
        taus = logsnr_timesteps(diffusion, steps)[::-1]  # descending
    else:
        taus = ddim_timesteps(diffusion.num_timesteps, steps, spacing)[::-1]
    alphas_cumprod = diffusion.alphas_cumprod_float64[taus]  # float64, exact
    alpha, sigma = alphas_cumprod.sqrt(), (1.0 - alphas_cumprod).sqrt()
    lam = log_snr(diffusion)[taus]
    x = x_T
    total = len(taus)
    x0_prev, h_prev = None, None
    for i, step in enumerate(taus):
        t = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
        # 1. data prediction x̂0 at t_{i−1}, clipped to the data range ("thresholding" in Lu et al.)
        x0 = diffusion.model_predictions(net, x, t)["pred_x0"]
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        if i + 1 == total:  # 2a. to σ = 0: e^{−h} → 0 and the first-order update is x̂0
            x = x0
            h = None
        else:
            h = float(lam[i + 1] - lam[i])
            # 2b. second-order correction from the previous x̂0 (eq. 16 of Lu et al. 2022)
            if x0_prev is None:
                d = x0
            else:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            # 3. the step: decay of x_{t_{i−1}}, the pull toward D, and (η > 0) fresh noise
            x = (float(sigma[i + 1] / sigma[i] * math.exp(-eta * h)) * x
                 - float(alpha[i + 1] * math.expm1(-(1 + eta) * h)) * d)
            if eta > 0:
                x = x + float(sigma[i + 1] * math.sqrt(-math.expm1(-2 * eta * h))) * randn(
                    x.shape, generator, x.device, x.dtype)
        x0_prev, h_prev = x0, h
        if callback is not None:
            callback({"i": i + 1, "t": int(diffusion.timestep_map[step]), "x": x, "pred_x0": x0, "total": total})
    return x.clamp(-1.0, 1.0)


# SDE-DPM-Solver++(2M) (Lu et al. 2022, App. B): ``sample_dpmpp_2m`` with ``eta`` = 1, the
# stochastic step; the same arguments (``eta`` may still be given).
sample_dpmpp_2m_sde = functools.partial(sample_dpmpp_2m, eta=1.0)


class ClassifierFreeGuidance:
    """A denoiser ``(x_t, t) -> output`` that guides a conditional network toward ``class_labels``
    (Ho & Salimans 2022): out = out(∅) + w · (out(y) − out(∅)).

    w = 1 is the plain conditional model, w = 0 the unconditional one, w > 1 trades diversity
    for fidelity to y. Any of the ε, x0 or v outputs may be guided: each is affine in the others
    for fixed x_t, so the guided ε is the same. Only the first ``channels`` output channels are
    guided; the rest (a learned variance) come from the conditional call.

    net: called as ``net(x_t, t, class_labels=...)``; class_labels: (B,) long;
    null_label: the "no label" index the network was trained with.
    """

    def __init__(
        self, net: Callable[..., torch.Tensor], class_labels: torch.Tensor, scale: float, null_label: int, channels: int
    ) -> None:
        if scale < 0:
            raise ValueError(f"guidance scale must be ≥ 0, got {scale}")
        self.net, self.labels, self.scale = net, class_labels, float(scale)
        self.null_label, self.channels = null_label, channels

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.labels.shape != (x_t.shape[0],):
            raise ValueError(f"{x_t.shape[0]} images need {x_t.shape[0]} class labels, got shape {tuple(self.labels.shape)}")
        labels = self.labels.to(x_t.device)
        null = torch.full_like(labels, self.null_label)
        if self.scale == 1.0:  # one call instead of two
            return self.net(x_t, t, class_labels=labels)
        if self.scale == 0.0:
            return self.net(x_t, t, class_labels=null)
        both = self.net(torch.cat([x_t, x_t]), torch.cat([t, t]), class_labels=torch.cat([labels, null]))
        cond, uncond = both.chunk(2)
        c = self.channels
        guided = uncond[:, :c] + self.scale * (cond[:, :c] - uncond[:, :c])
        return torch.cat([guided, cond[:, c:]], dim=1)


# ``sampler.name`` in the configs -> the function; every one takes the shared arguments above.
SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
}
