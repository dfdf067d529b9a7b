"""Variance schedules β_1..β_T, computed in float64.

Index convention used across the project: position ``i = 0..T-1`` of every schedule
tensor holds the value of step ``t = i + 1`` of Ho et al. (2020).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

ScheduleName = Literal["linear", "cosine"]
SCHEDULES: tuple[str, ...] = get_args(ScheduleName)


def linear_beta_schedule(
    timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """β rising linearly from ``beta_start`` to ``beta_end`` (Ho et al. 2020, §4).

    The end points are given for T = 1000 and scaled by 1000 / T, as in Nichol &
    Dhariwal (2021), so that a shorter chain destroys the signal just as fully.

    Returns: (T,) float64.
    """
    scale = 1000.0 / timesteps
    return torch.linspace(beta_start * scale, beta_end * scale, timesteps, dtype=torch.float64)


def cosine_alpha_bar(u: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """f(u) = cos²(((u + s) / (1 + s)) · π/2) for u = t / T in [0, 1] (Nichol & Dhariwal 2021, eq. 17)."""
    return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2


def cosine_beta_schedule(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule: ᾱ_t = f(t/T) / f(0) and β_t = min(1 − ᾱ_t / ᾱ_{t−1}, max_beta).

    Nichol & Dhariwal (2021), eq. 17; the cap of 0.999 prevents the singularity at t = T.

    Returns: (T,) float64.
    """
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps  # (T+1,) u = t/T
    alpha_bar = cosine_alpha_bar(steps, s)
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


def get_beta_schedule(name: str, timesteps: int) -> torch.Tensor:
    """β for a named schedule; raises ``ValueError`` listing the valid names."""
    if not isinstance(timesteps, int) or isinstance(timesteps, bool) or timesteps < 1:
        raise ValueError(f"timesteps must be a positive integer, got {timesteps!r}")
    if name == "linear":
        betas = linear_beta_schedule(timesteps)
    elif name == "cosine":
        betas = cosine_beta_schedule(timesteps)
    else:
        raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(SCHEDULES)}")
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError(
            f"{name} schedule with timesteps={timesteps} gives β outside (0, 1); "
            "use more timesteps (the linear end points are scaled by 1000 / T)"
        )
    return betas
