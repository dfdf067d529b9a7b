"""A convolutional VAE for 28×28 images: encoder x -> (μ, log σ²) of q(z|x), decoder z -> the
per-pixel (mean, log σ) of a discretised Gaussian p(x|z) (the DDPM's L_0 density).

Encoder: Conv3×3(C→c) · Conv3×3(c→c) · ↓Conv4×4(c→2c) · Conv3×3(2c→2c) · ↓Conv4×4(2c→4c) ·
Linear(4c·(S/4)² → 2Z). Decoder: the mirror image with transposed convolutions, ending in
Conv3×3(c→2C). SiLU between layers. At c = 32, Z = 32 it has ≈ 1.0 M parameters (the quick
DDPM's UNet: 0.94 M); at c = 128, Z = 64 ≈ 12 M (the study's UNet: 14.1 M).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ConvVAE(nn.Module):
    def __init__(self, in_channels: int = 1, image_size: int = 28, base_channels: int = 32, latent_dim: int = 32) -> None:
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("base_channels", base_channels, 1),
                                 ("latent_dim", latent_dim, 1), ("image_size", image_size, 4)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two 2× downsamplings), got {image_size}")
        self._config: dict[str, Any] = dict(in_channels=in_channels, image_size=image_size, base_channels=base_channels,
                                            latent_dim=latent_dim)
        self.in_channels, self.image_size, self.latent_dim = in_channels, image_size, latent_dim
        c, s = base_channels, image_size // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),  # S/2
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1), nn.SiLU(),  # S/4
            nn.Flatten(),
            nn.Linear(4 * c * s * s, 2 * latent_dim),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 4 * c * s * s), nn.SiLU(),
            nn.Unflatten(1, (4 * c, s, s)),
            nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),  # S/2
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.SiLU(),  # S
            nn.Conv2d(c, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, 2 * in_channels, 3, padding=1),
        )  # fmt: skip

    def config(self) -> dict[str, Any]:
        """The constructor's arguments: ``ConvVAE(**net.config())`` builds the same network."""
        return dict(self._config)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, S, S) in [−1, 1] -> μ, log σ² of q(z|x), each (B, Z)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z: (B, Z) -> mean and log σ of p(x|z), each (B, C, S, S)."""
        mean, log_scale = self.decoder(z).chunk(2, dim=1)
        return mean, log_scale.clamp(min=-7.0, max=2.0)  # σ in [1e-3, 7.4]: finite log-likelihoods

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(x)
