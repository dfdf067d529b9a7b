"""DCGAN-style networks for 28×28 images (Radford et al. 2016).

Generator: Linear(Z → 4c·(S/4)²) · BN · ReLU · ↑ConvT4×4(4c→2c) · BN · ReLU · ↑ConvT4×4(2c→c) ·
BN · ReLU · Conv3×3(c→C) · tanh, so images are in [−1, 1]. Discriminator: ↓Conv4×4(C→c) ·
LeakyReLU(0.2) · ↓Conv4×4(c→2c) · LeakyReLU · Conv3×3(2c→4c) · LeakyReLU · Linear(4c·(S/4)² → 1),
one logit per image, without normalisation layers (R1 and spectral normalisation assume none);
``spectral_norm`` wraps each of its layers (Miyato et al. 2018).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _check(image_size: int, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    if not isinstance(image_size, int) or image_size < 4 or image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 (two 2× resamplings), got {image_size!r}")


class Generator(nn.Module):
    def __init__(self, latent_dim: int = 64, base_channels: int = 32, out_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        _check(image_size, latent_dim=latent_dim, base_channels=base_channels, out_channels=out_channels)
        self._config: dict[str, Any] = dict(latent_dim=latent_dim, base_channels=base_channels,
                                            out_channels=out_channels, image_size=image_size)
        self.latent_dim, self.out_channels, self.image_size = latent_dim, out_channels, image_size
        c, s = base_channels, image_size // 4
        self.layers = nn.Sequential(
            nn.Linear(latent_dim, 4 * c * s * s, bias=False),
            nn.Unflatten(1, (4 * c, s, s)), nn.BatchNorm2d(4 * c), nn.ReLU(),
            nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, out_channels, 3, padding=1), nn.Tanh(),
        )  # fmt: skip

    def config(self) -> dict[str, Any]:
        """The constructor's arguments: ``Generator(**g.config())`` builds the same network."""
        return dict(self._config)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, Z) -> images (B, C, S, S) in [−1, 1]."""
        return self.layers(z)


class Discriminator(nn.Module):
    def __init__(self, in_channels: int = 1, base_channels: int = 32, image_size: int = 28,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        _check(image_size, in_channels=in_channels, base_channels=base_channels)
        self._config: dict[str, Any] = dict(in_channels=in_channels, base_channels=base_channels,
                                            image_size=image_size, spectral_norm=spectral_norm)
        c, s = base_channels, image_size // 4
        wrap = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda layer: layer)
        self.layers = nn.Sequential(
            wrap(nn.Conv2d(in_channels, c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            wrap(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            wrap(nn.Conv2d(2 * c, 4 * c, 3, padding=1)), nn.LeakyReLU(0.2),
            nn.Flatten(), wrap(nn.Linear(4 * c * s * s, 1)),
        )  # fmt: skip

    def config(self) -> dict[str, Any]:
        """The constructor's arguments: ``Discriminator(**d.config())`` builds the same network."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, S, S) in [−1, 1] -> logits (B,)."""
        return self.layers(x).squeeze(1)
