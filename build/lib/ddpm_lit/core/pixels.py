"""Image value ranges: [−1, 1] for the network, [0, 1] for files and SSIM, 0..255 for pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_model_range(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, 1, S, S) scaled to [−1, 1], resized when S ≠ H."""
    x = images.unsqueeze(1).float().div(127.5).sub(1.0)
    if x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[−1, 1] -> [0, 1], the range of image files and SSIM."""
    return ((x.float() + 1) / 2).clamp(0, 1)


def to_pixel_levels(images: torch.Tensor) -> torch.Tensor:
    """Images in [−1, 1] -> float pixel levels 0..255 (rounded), the 8-bit images a PNG would hold."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Images in [−1, 1] rounded to the 256-level grid, still in [−1, 1]."""
    return to_pixel_levels(images) / 127.5 - 1.0
