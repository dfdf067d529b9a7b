"""The Gaussian diffusion process of Ho et al. (2020): forward noising, true posterior,
reverse step and the training loss.

The denoiser is any callable ``net(x_t, t) -> output`` and never sees the schedule; the
schedule lives here as float32 buffers derived once from float64 values. What the output
means is the process's business: ε (the study's), x0 or v (``objective``), followed by C more
channels that set the reverse variance when it is learned (``variance="learned"``). Indexing follows
``ddpm_lit.core.schedules``: position ``i`` of every buffer is step ``t = i + 1`` of the paper,
and the network is called with ``i``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import torch
from torch import nn

from ddpm_lit.core.gaussians import (
    discretized_gaussian_log_likelihood,
    mean_flat,
    normal_kl,
)
from ddpm_lit.core.schedules import get_beta_schedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Objective = Literal["eps", "x0", "v"]
Variance = Literal["posterior", "beta", "learned"]
LossWeighting = Literal["simple", "vlb", "min_snr"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
VARIANCES: tuple[str, ...] = get_args(Variance)
LOSS_WEIGHTINGS: tuple[str, ...] = get_args(LossWeighting)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(choices)}")


def randn(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | Sequence[torch.Generator] | None,
    device: torch.device,
    dtype=None,
) -> torch.Tensor:
    """N(0, I) noise drawn on the generator's own device, then moved to ``device``.

    A seeded CPU generator thus works for a model on a GPU and gives the same numbers there.
    ``generator`` may also be one generator per row (``len(generator) == shape[0]``): row i is
    drawn from generator i alone, so an image's noise does not depend on the batch it is in
    (as diffusers' ``randn_tensor`` takes a list of generators).
    """
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for {shape[0]} rows of noise")
        if not generator:
            return torch.empty(tuple(shape), device=device, dtype=dtype)
        rows = [torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generator]
        if len({r.device for r in rows}) > 1:
            rows = [r.to(device) for r in rows]
        return torch.stack(rows).to(device)  # one copy to ``device``, not one per row
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def extract(buffer: torch.Tensor, t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Gather ``buffer[t]`` for a batch of indices and reshape to broadcast over ``shape``.

    buffer: (T,); t: (B,) long; returns (B, 1, ..., 1) with ``len(shape)`` dims.
    """
    return buffer.gather(0, t).reshape(t.shape[0], *((1,) * (len(shape) - 1)))


class GaussianDiffusion(nn.Module):
    """Fixed forward process q(x_1:T | x0) and the reverse step p_θ(x_{t−1} | x_t).

    Args:
        schedule: ``"linear"`` or ``"cosine"`` (see ``ddpm_lit.core.schedules``).
        timesteps: T, the length of the chain.
        betas: optional explicit (T,) β, overriding ``schedule`` (used by ``respace``).
        timestep_map: optional (T,) long, the network timestep index of each position;
            defaults to ``arange(T)``. A respaced process keeps the original indices here.
        objective: what the network predicts: ``"eps"`` (Ho et al. 2020, the study's),
            ``"x0"``, or ``"v"`` = √ᾱ_t ε − √(1−ᾱ_t) x0 (Salimans & Ho 2022).
        variance: σ_t² of p_θ(x_{t−1} | x_t): ``"posterior"`` β̃_t (the study's), ``"beta"``
            β_t, or ``"learned"``, log σ_t² = f log β_t + (1 − f) log β̃_t with f = (u + 1)/2 read
            from C extra output channels u (Nichol & Dhariwal 2021, eq. 15).
        loss_weighting: weight of the per-image MSE of the target: ``"simple"`` 1 (Ho et al.
            eq. 14); ``"vlb"`` the true bound's weight β_t²/(2σ_t²α_t(1−ᾱ_t)) on ‖ε − ε̂‖²
            (Ho et al. eq. 12, the study's last equation); ``"min_snr"`` min(SNR_t, γ)/SNR_t on
            ‖ε − ε̂‖² (Hang et al. 2023). The last two are expressed in ε's units and converted
            to the target's, so they weigh the same error whatever the objective.
        min_snr_gamma: γ of ``min_snr`` (Hang et al. use 5).
        vlb_weight: λ of the hybrid loss L_simple + λ L_vlb that trains a learned variance
            (Nichol & Dhariwal 2021, λ = 0.001); L_vlb = T·L_t sees the mean as a constant.
    """

    def __init__(
        self,
        schedule: str = "linear",
        timesteps: int = 1000,
        betas: torch.Tensor | None = None,
        timestep_map: torch.Tensor | None = None,
        objective: Objective = "eps",
        variance: Variance = "posterior",
        loss_weighting: LossWeighting = "simple",
        min_snr_gamma: float = 5.0,
        vlb_weight: float = 0.001,
    ) -> None:
        super().__init__()
        _check_choice("objective", objective, OBJECTIVES)
        _check_choice("variance", variance, VARIANCES)
        _check_choice("loss_weighting", loss_weighting, LOSS_WEIGHTINGS)
        if loss_weighting == "vlb" and variance == "learned":
            raise ValueError(
                "loss_weighting='vlb' weighs by a fixed σ_t²; a learned variance is trained by the hybrid "
                "loss (vlb_weight) with loss_weighting simple or min_snr"
            )
        if min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma must be > 0, got {min_snr_gamma}")
        if vlb_weight < 0:
            raise ValueError(f"vlb_weight must be ≥ 0, got {vlb_weight}")
        self.objective = objective
        self.variance = variance
        self.loss_weighting = loss_weighting
        self.min_snr_gamma = float(min_snr_gamma)
        self.vlb_weight = float(vlb_weight)
        explicit_betas = betas is not None or timestep_map is not None
        if betas is None:
            betas = get_beta_schedule(schedule, timesteps)
        betas = betas.to(torch.float64)
        self._explicit_betas = explicit_betas
        self.schedule = schedule
        self.betas_float64 = betas  # float64, exact
        # ᾱ_t in float64 for what float32 would round (1 − ᾱ_T, log-SNR grids); not a buffer
        self.alphas_cumprod_float64 = torch.cumprod(1.0 - betas, 0)
        self.num_timesteps = int(betas.shape[0])
        if timestep_map is None:
            timestep_map = torch.arange(self.num_timesteps)

        alphas = 1.0 - betas
        alphas_cumprod = self.alphas_cumprod_float64  # ᾱ_t
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        # β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)   (Ho et al. 2020, eq. 7)
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        buffers = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),  # √ᾱ_t
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),  # √(1−ᾱ_t)
            "sqrt_recip_alphas_cumprod": alphas_cumprod.rsqrt(),  # 1/√ᾱ_t
            "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1).sqrt(),  # √(1/ᾱ_t − 1)
            "sqrt_recip_alphas": alphas.rsqrt(),  # 1/√α_t
            "posterior_variance": posterior_variance,
            # β̃_1 = 0; log-variance clipped to β̃_2 there, as in Ho et al.'s code
            "posterior_log_variance_clipped": torch.log(
                torch.cat([posterior_variance[1:2], posterior_variance[1:]])
                if self.num_timesteps > 1
                else betas
            ),
            # σ_t² = β_t, the other fixed choice of Ho et al. (2020, §3.2); β̃_2 at t = 1 keeps
            # the decoder's variance finite, as in Nichol & Dhariwal's code
            "beta_log_variance": torch.log(torch.cat([posterior_variance[1:2], betas[1:]]))
            if self.num_timesteps > 1
            else torch.log(betas),
            "log_betas": torch.log(betas),  # the upper end of a learned log-variance
            "snr": alphas_cumprod / (1.0 - alphas_cumprod),  # SNR_t = ᾱ_t / (1 − ᾱ_t)
            # μ̃_t = coef1 · x0 + coef2 · x_t   (Ho et al. 2020, eq. 7)
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
        }
        for name, value in buffers.items():
            # Derived from the config, so not stored in checkpoints.
            self.register_buffer(name, value.to(torch.float32), persistent=False)
        self.register_buffer("timestep_map", timestep_map.to(torch.long), persistent=False)

    def config(self) -> dict[str, Any]:
        """The constructor's arguments: ``GaussianDiffusion(**d.config())`` builds the same process.
        A respaced process (explicit ``betas``) has none: build it with ``respace``."""
        if self._explicit_betas:
            raise ValueError("a process built from explicit betas (respace) has no config of its own")
        return {"schedule": self.schedule, "timesteps": self.num_timesteps, "objective": self.objective,
                "variance": self.variance, "loss_weighting": self.loss_weighting,
                "min_snr_gamma": self.min_snr_gamma, "vlb_weight": self.vlb_weight}

    def extra_repr(self) -> str:
        return (
            f"schedule={self.schedule!r}, timesteps={self.num_timesteps}, objective={self.objective!r}, "
            f"variance={self.variance!r}, loss_weighting={self.loss_weighting!r}"
        )

    @property
    def output_channels_factor(self) -> int:
        """Output channels per image channel the network needs: 2 with a learned variance."""
        return 2 if self.variance == "learned" else 1

    # ---- forward process -------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε   (Ho et al. 2020, eq. 4).  x0, noise: (B, C, H, W); t: (B,)."""
        return (
            extract(self.sqrt_alphas_cumprod, t, x0.shape) * x0
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x0.shape) * noise
        )

    def q_posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean μ̃_t(x_t, x0) and variance β̃_t of q(x_{t−1} | x_t, x0), both shaped like x_t (eq. 6–7)."""
        mean = (
            extract(self.posterior_mean_coef1, t, x_t.shape) * x0
            + extract(self.posterior_mean_coef2, t, x_t.shape) * x_t
        )
        variance = extract(self.posterior_variance, t, x_t.shape).expand_as(x_t)
        return mean, variance

    def predict_x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t, eq. 4 solved for x0.

        Computed as written: where √ᾱ_t is tiny (cosine, t = T: 4.9e-5), the form
        x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε rounds two products of ~10⁴ and loses three digits more
        (tests/test_diffusers_parity.py measures it against diffusers)."""
        return (
            x_t - extract(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * eps
        ) / extract(self.sqrt_alphas_cumprod, t, x_t.shape)

    def predict_eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """ε = (x_t / √ᾱ_t − x0) / √(1/ᾱ_t − 1), the inverse of ``predict_x0_from_eps``."""
        return (extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - x0) / extract(
            self.sqrt_recipm1_alphas_cumprod, t, x_t.shape
        )

    def get_v(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The velocity v = √ᾱ_t ε − √(1−ᾱ_t) x0 (Salimans & Ho 2022, §4)."""
        return (
            extract(self.sqrt_alphas_cumprod, t, x0.shape) * eps
            - extract(self.sqrt_one_minus_alphas_cumprod, t, x0.shape) * x0
        )

    def predict_x0_from_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x0 = √ᾱ_t x_t − √(1−ᾱ_t) v, since x_t and v are a rotation of (x0, ε) by the angle φ_t."""
        return (
            extract(self.sqrt_alphas_cumprod, t, x_t.shape) * x_t
            - extract(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * v
        )

    def predict_eps_from_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """ε = √(1−ᾱ_t) x_t + √ᾱ_t v."""
        return (
            extract(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * x_t
            + extract(self.sqrt_alphas_cumprod, t, x_t.shape) * v
        )

    # ---- reverse process -------------------------------------------------------------
    def model_predictions(self, net: Denoiser, x_t: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Call the network with its own timestep indices and read its output.

        Returns ``{"output", "eps", "pred_x0"}`` and, with a learned variance, ``"var_values"``
        (the C extra channels, u in [−1, 1] nominally); all (B, C, H, W) except ``output``.
        """
        output = net(x_t, self.timestep_map[t])
        c = x_t.shape[1]
        if output.shape[1] != c * self.output_channels_factor:
            raise ValueError(
                f"the network returned {output.shape[1]} channels; objective={self.objective!r} with "
                f"variance={self.variance!r} needs {c * self.output_channels_factor}"
            )
        pred = output[:, :c]
        if self.objective == "eps":
            eps, x0 = pred, self.predict_x0_from_eps(x_t, t, pred)
        elif self.objective == "x0":
            eps, x0 = self.predict_eps_from_x0(x_t, t, pred), pred
        else:  # v
            eps, x0 = self.predict_eps_from_v(x_t, t, pred), self.predict_x0_from_v(x_t, t, pred)
        out = {"output": output, "eps": eps, "pred_x0": x0}
        if self.variance == "learned":
            out["var_values"] = output[:, c:]
        return out

    def model_eps(self, net: Denoiser, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε_θ(x_t, t), whatever the network predicts."""
        return self.model_predictions(net, x_t, t)["eps"]

    def log_variance(
        self, t: torch.Tensor, shape: torch.Size, variance: str | None = None, var_values: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log σ_t² of p_θ(x_{t−1} | x_t), shaped ``shape``; ``variance`` None: the process's own.

        ``posterior``: log β̃_t, clipped to log β̃_2 at t = 1 where β̃_1 = 0 (Ho et al.'s code);
        ``beta``: log β_t (β̃_2 at t = 1); ``learned``: f log β_t + (1 − f) log β̃_t, f = (u + 1)/2.
        """
        variance = variance or self.variance
        _check_choice("reverse variance", variance, VARIANCES)
        if variance == "posterior":
            return extract(self.posterior_log_variance_clipped, t, shape).expand(shape)
        if variance == "beta":
            return extract(self.beta_log_variance, t, shape).expand(shape)
        if var_values is None:
            raise ValueError("variance='learned' needs a network with the variance channels (var_values)")
        frac = (var_values + 1) / 2
        return frac * extract(self.log_betas, t, shape) + (1 - frac) * extract(
            self.posterior_log_variance_clipped, t, shape
        )

    def p_mean_variance(
        self,
        net: Denoiser,
        x_t: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        variance: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Parameters of p_θ(x_{t−1} | x_t); ``variance`` overrides the process's σ_t² (see
        ``log_variance``): the study's is ``"posterior"``, σ_t² = β̃_t.

        1. The network's output, read as ε, x0 or v and converted to x̂0 (eq. 4 inverted).
        2. x̂0 optionally clipped to the data range [−1, 1].
        3. μ_θ = μ̃_t(x_t, x̂0) (eq. 7). For ε-prediction without clipping this equals
           1/√α_t · (x_t − β_t/√(1−ᾱ_t) · ε_θ), eq. 11.
        """
        pred = self.model_predictions(net, x_t, t)
        x0 = pred["pred_x0"]
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        mean, posterior_var = self.q_posterior_mean_variance(x0, x_t, t)
        log_variance = self.log_variance(t, x_t.shape, variance, pred.get("var_values"))
        # β̃_t itself is 0 at t = 1 (no noise is added there); only its log is clipped
        var = posterior_var if (variance or self.variance) == "posterior" else log_variance.exp()
        return {"mean": mean, "variance": var, "log_variance": log_variance, "pred_x0": x0, "eps": pred["eps"]}

    def p_sample(
        self,
        net: Denoiser,
        x_t: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One ancestral step x_{t−1} = μ_θ + σ_t z, z ~ N(0, I), no noise at the last step (Algorithm 2)."""
        out = self.p_mean_variance(net, x_t, t, clip_denoised)
        noise = randn(x_t.shape, generator, x_t.device, x_t.dtype)
        nonzero = (t != 0).to(x_t.dtype).reshape(-1, *((1,) * (x_t.dim() - 1)))
        out["sample"] = out["mean"] + nonzero * (0.5 * out["log_variance"]).exp() * noise
        return out

    # ---- training --------------------------------------------------------------------
    def vlb_terms(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, mean: torch.Tensor, log_variance: torch.Tensor
    ) -> torch.Tensor:
        """The bound's term at t in bits/dim, (B,): KL(q(x_{t−1} | x_t, x0) ‖ N(mean, e^log_variance))
        for t ≥ 2 (index ≥ 1), and −log p(x0 | x1) discretised to 256 levels at t = 1 (index 0)."""
        true_mean, _ = self.q_posterior_mean_variance(x0, x_t, t)
        true_logvar = extract(self.posterior_log_variance_clipped, t, x0.shape).expand_as(x0)
        kl = mean_flat(normal_kl(true_mean, true_logvar, mean, log_variance)) / math.log(2.0)
        nll = -mean_flat(discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_variance)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-image weight (B,) of the target's MSE under ``loss_weighting``.

        ``vlb`` and ``min_snr`` are defined on ‖ε − ε̂‖²; since ‖ε − ε̂‖² = SNR_t ‖x0 − x̂0‖²
        = ᾱ_t ‖v − v̂‖², their weight on the x0 (v) target is multiplied by SNR_t (ᾱ_t). For v
        and min-SNR this gives Hang et al.'s min(SNR_t, γ)/(SNR_t + 1).
        """
        if self.loss_weighting == "simple":
            return torch.ones(t.shape, device=t.device)
        snr = self.snr[t]
        if self.loss_weighting == "min_snr":
            w_eps = snr.clamp(max=self.min_snr_gamma) / snr
        else:  # vlb: β_t² / (2 σ_t² α_t (1 − ᾱ_t)), Ho et al. (2020) eq. 12
            sigma2 = self.log_variance(t, t.shape).exp()
            w_eps = self.betas[t] ** 2 / (2 * sigma2 * self.alphas[t] * (1 - self.alphas_cumprod[t]))
        to_target = {"eps": torch.ones_like(snr), "x0": snr, "v": self.alphas_cumprod[t]}[self.objective]
        return w_eps * to_target

    def training_target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network should output for x_t = q_sample(x0, t, noise): ε, x0 or v."""
        if self.objective == "eps":
            return noise
        if self.objective == "x0":
            return x0
        return self.get_v(x0, t, noise)

    def loss(
        self,
        net: Denoiser,
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The training loss; with the defaults L_simple = E_{t, x0, ε} ‖ε − ε_θ(x_t, t)‖², t ~ U{1..T}
        (Ho et al. 2020, eq. 14).

        In general E_t[w_t · mean‖target − output‖²] (``loss_weighting``, ``objective``), plus
        λ·T·L_t with the mean held fixed when the variance is learned (Nichol & Dhariwal 2021, §3.1).
        x0: (B, C, H, W) in [−1, 1]. ``t`` and ``noise`` are drawn (from ``generator``) when
        not given. Returns a scalar.
        """
        b = x0.shape[0]
        if t is None:
            gen_device = generator.device if generator is not None else x0.device
            t = torch.randint(0, self.num_timesteps, (b,), generator=generator, device=gen_device).to(x0.device)
        if noise is None:
            noise = randn(x0.shape, generator, x0.device, x0.dtype)
        x_t = self.q_sample(x0, t, noise)
        pred = self.model_predictions(net, x_t, t)
        c = x0.shape[1]
        target = self.training_target(x0, t, noise).float()
        mse = mean_flat((pred["output"][:, :c].float() - target) ** 2)  # (B,)
        loss = (self.loss_weight(t) * mse).mean()
        if self.variance == "learned":
            # The bound trains only σ: the mean comes from a detached x̂0, so L_simple alone shapes it.
            mean, _ = self.q_posterior_mean_variance(pred["pred_x0"].detach().float(), x_t.float(), t)
            log_variance = self.log_variance(t, x0.shape, "learned", pred["var_values"].float())
            vlb = self.vlb_terms(x0.float(), x_t.float(), t, mean, log_variance)
            loss = loss + self.vlb_weight * self.num_timesteps * vlb.mean()
        return loss

    # ---- respacing -------------------------------------------------------------------
    def respace(self, steps: int | Sequence[int]) -> GaussianDiffusion:
        """A shorter chain over a subsequence τ of the timesteps (Nichol & Dhariwal 2021, App. B).

        Its β are 1 − ᾱ_{τ_i} / ᾱ_{τ_{i−1}}, so its ᾱ equal the original ones on τ and the
        ancestral sampler runs unchanged on it; the network keeps seeing the original
        timestep indices through ``timestep_map``. ``steps`` is a count (evenly spaced, the
        last step T always included) or explicit indices.
        """
        if isinstance(steps, numbers.Integral):
            steps = int(steps)
            if not 1 <= steps <= self.num_timesteps:
                raise ValueError(f"steps must be in [1, {self.num_timesteps}], got {steps}")
            # counted down from T, so a 1-step chain is the step from x_T
            frac = torch.linspace(self.num_timesteps - 1, 0, steps, dtype=torch.float64)
            use = sorted(set(frac.round().long().tolist()))
        else:
            use = sorted(set(int(s) for s in steps))
            if not use or use[0] < 0 or use[-1] >= self.num_timesteps:
                raise ValueError(f"respaced timesteps must lie in [0, {self.num_timesteps - 1}]")
        alphas_cumprod = self.alphas_cumprod_float64
        ac = alphas_cumprod[use]
        prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        betas = 1.0 - ac / prev
        new = GaussianDiffusion(
            self.schedule,
            len(use),
            betas=betas,
            timestep_map=self.timestep_map.cpu()[use],
            objective=self.objective,
            variance=self.variance,
            loss_weighting=self.loss_weighting,
            min_snr_gamma=self.min_snr_gamma,
            vlb_weight=self.vlb_weight,
        )
        return new.to(self.betas.device)
