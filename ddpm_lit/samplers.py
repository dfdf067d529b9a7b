"""Samplers: functions that turn noise into data with a denoiser and a diffusion process.

Every sampler shares one signature, ``sampler(net, diffusion, x_T, *, generator=None,
callback=None, **options) -> x0`` and reports progress through ``callback`` rather than
logging, so the same loop serves training-time validation, scripts and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ddpm_lit.diffusion import Denoiser, GaussianDiffusion

Callback = Callable[[dict[str, Any]], None]


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
