"""The Gaussian diffusion process of Ho et al. (2020): forward noising, true posterior,
reverse step and the ε-prediction loss.

The denoiser is any callable ``net(x_t, t) -> eps`` and never sees the schedule; the
schedule lives here as float32 buffers derived once from float64 values. Indexing follows
``ddpm_lit.schedules``: position ``i`` of every buffer is step ``t = i + 1`` of the paper,
and the network is called with ``i``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lit.schedules import get_beta_schedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
VARIANCES = ("posterior", "beta")


def randn(
    shape: torch.Size | tuple[int, ...], generator: torch.Generator | None, device: torch.device, dtype=None
) -> torch.Tensor:
    """N(0, I) noise drawn on the generator's own device, then moved to ``device``.

    A seeded CPU generator thus works for a model on a GPU and gives the same numbers there.
    """
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
        schedule: ``"linear"`` or ``"cosine"`` (see ``ddpm_lit.schedules``).
        timesteps: T, the length of the chain.
        betas: optional explicit (T,) β, overriding ``schedule`` (used by ``respace``).
        timestep_map: optional (T,) long, the network timestep index of each position;
            defaults to ``arange(T)``. A respaced process keeps the original indices here.
    """

    def __init__(
        self,
        schedule: str = "linear",
        timesteps: int = 1000,
        betas: torch.Tensor | None = None,
        timestep_map: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if betas is None:
            betas = get_beta_schedule(schedule, timesteps)
        betas = betas.to(torch.float64)
        self.schedule = schedule
        self.betas_float64 = betas  # kept exact for ``respace``
        self.num_timesteps = int(betas.shape[0])
        if timestep_map is None:
            timestep_map = torch.arange(self.num_timesteps)

        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, 0)  # ᾱ_t
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
            # μ̃_t = coef1 · x0 + coef2 · x_t   (Ho et al. 2020, eq. 7)
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
        }
        for name, value in buffers.items():
            # Derived from the config, so not stored in checkpoints.
            self.register_buffer(name, value.to(torch.float32), persistent=False)
        self.register_buffer("timestep_map", timestep_map.to(torch.long), persistent=False)

    def extra_repr(self) -> str:
        return f"schedule={self.schedule!r}, timesteps={self.num_timesteps}"

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
        """x0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t, eq. 4 solved for x0."""
        return (
            extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
            - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps
        )

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
    def model_eps(self, net: Denoiser, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε_θ(x_t, t), calling the network with its own timestep indices."""
        return net(x_t, self.timestep_map[t])

    def p_mean_variance(
        self,
        net: Denoiser,
        x_t: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        variance: str = "posterior",
    ) -> dict[str, torch.Tensor]:
        """Parameters of p_θ(x_{t−1} | x_t) with a fixed variance: σ_t² = β̃_t (``"posterior"``,
        the default and the report's) or σ_t² = β_t (``"beta"``).

        1. ε_θ(x_t, t) from the network.
        2. x̂0 from ε (eq. 4 inverted), optionally clipped to the data range [−1, 1].
        3. μ_θ = μ̃_t(x_t, x̂0) (eq. 7). Without clipping this equals
           1/√α_t · (x_t − β_t/√(1−ᾱ_t) · ε_θ), eq. 11.
        """
        eps = self.model_eps(net, x_t, t)
        x0 = self.predict_x0_from_eps(x_t, t, eps)
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        mean, posterior_var = self.q_posterior_mean_variance(x0, x_t, t)
        if variance == "posterior":  # variance β̃ (0 at t = 1); its log clipped to log β̃_2 there
            log_variance = extract(self.posterior_log_variance_clipped, t, x_t.shape).expand_as(x_t)
            var = posterior_var
        elif variance == "beta":
            log_variance = extract(self.beta_log_variance, t, x_t.shape).expand_as(x_t)
            var = log_variance.exp()
        else:
            raise ValueError(f"unknown reverse variance {variance!r}; valid choices: {', '.join(VARIANCES)}")
        return {"mean": mean, "variance": var, "log_variance": log_variance, "pred_x0": x0, "eps": eps}

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
    def loss(
        self,
        net: Denoiser,
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """L_simple = E_{t, x0, ε} ‖ε − ε_θ(x_t, t)‖² with t ~ U{1..T} (Ho et al. 2020, eq. 14).

        x0: (B, C, H, W) in [−1, 1]. ``t`` and ``noise`` are drawn (from ``generator``) when
        not given. Returns the scalar mean over batch and pixels.
        """
        b = x0.shape[0]
        if t is None:
            gen_device = generator.device if generator is not None else x0.device
            t = torch.randint(0, self.num_timesteps, (b,), generator=generator, device=gen_device).to(x0.device)
        if noise is None:
            noise = randn(x0.shape, generator, x0.device, x0.dtype)
        x_t = self.q_sample(x0, t, noise)
        return F.mse_loss(self.model_eps(net, x_t, t).float(), noise.float())

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
        alphas_cumprod = torch.cumprod(1.0 - self.betas_float64, 0)
        ac = alphas_cumprod[use]
        prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        betas = 1.0 - ac / prev
        new = GaussianDiffusion(
            self.schedule,
            len(use),
            betas=betas,
            timestep_map=self.timestep_map.cpu()[use],
        )
        return new.to(self.betas.device)
