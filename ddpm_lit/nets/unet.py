"""The study's UNet: a denoiser ε_θ(x_t, t) for 28×28 images.

Encoder ResidualBlock(C→c) ↓ ResidualBlock(c→2c) ↓ ResidualBlock(2c→4c); bottleneck
ResidualBlock(4c→4c) + multi-head self-attention; decoder ↑ cat ResidualBlock(4c→2c),
↑ cat ResidualBlock(2c→c); output conv. At c = 128 and a 256-wide time embedding it has
≈ 14.1 M parameters. It is called as ``net(x_t, t)`` (plus ``class_labels`` when
conditional) and knows nothing of the schedule.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import torch
from torch import nn

Norm = Literal["batch", "group"]
NORMS: tuple[str, ...] = get_args(Norm)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer position encoding of the timestep (Vaswani et al. 2017; Ho et al. 2020, App. B).

    t: (B,) integer or float timesteps; returns (B, dim) as [sin | cos].
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(math.gcd(32, channels), channels)


class ResidualBlock(nn.Module):
    """Conv3×3–Norm–ReLU, + projected time embedding, Conv3×3–Norm–ReLU, + residual."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, norm: str = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), make_norm(norm, out_ch), nn.ReLU())
        self.time_proj = nn.Linear(time_dim, out_ch)
        self.conv2 = nn.Sequential(nn.Conv2d(out_ch, out_ch, 3, padding=1), make_norm(norm, out_ch), nn.ReLU())
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x) + self.time_proj(temb)[:, :, None, None]
        return self.conv2(h) + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions; Q, K, V and output by 1×1 conv; residual."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)  # (B, heads, d, HW)
        attn = nn.functional.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )  # (B, heads, HW, d)
        attn = attn.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.out(attn)


class UNet(nn.Module):
    """ε-prediction UNet of the study.

    Args:
        in_channels: image channels C (1 for MNIST).
        base_channels: c; the levels have c, 2c and 4c channels.
        time_emb_dim: width of the sinusoidal embedding and of its MLP.
        attn_heads: heads of the bottleneck attention; must divide 4c.
        norm: ``"batch"`` (the study) or ``"group"``.
        image_size: side of the square input; must be divisible by 4 (two 2× poolings).
        out_channels: output channels (None: C; 2C when the diffusion also learns σ_t²).
        num_classes: None for an unconditional model; else a label embedding with one more
            row, the "no label" token ``num_classes`` of classifier-free guidance (Ho & Salimans
            2022), is added to the time embedding.

    forward(x_t: (B, C, H, W), t: (B,) long, class_labels: (B,) long | None) -> (B, out_channels, H, W).
    Labels equal to ``num_classes`` (or ``class_labels=None``) ask for the unconditional output.
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 128,
        time_emb_dim: int = 256,
        attn_heads: int = 4,
        norm: str = "batch",
        image_size: int = 28,
        out_channels: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if out_channels is not None:
            _check_positive_int("model.net.out_channels", out_channels)
        if num_classes is not None:
            _check_positive_int("model.num_classes", num_classes)
        _check_positive_int("model.net.in_channels", in_channels)
        _check_positive_int("model.net.base_channels", base_channels)
        _check_positive_int("model.net.attn_heads", attn_heads)
        _check_positive_int("data.image_size", image_size)
        if not isinstance(time_emb_dim, int) or time_emb_dim < 2 or time_emb_dim % 2:
            raise ValueError(f"model.net.time_emb_dim must be an even integer ≥ 2, got {time_emb_dim!r}")
        if norm not in NORMS:
            raise ValueError(f"unknown model.net.norm {norm!r}; valid choices: {', '.join(NORMS)}")
        if image_size % 4:
            raise ValueError(
                f"data.image_size={image_size} cannot be halved twice by the UNet's two poolings; "
                "use a multiple of 4 (MNIST: 28)"
            )
        c = base_channels
        if (4 * c) % attn_heads:
            raise ValueError(
                f"model.net.attn_heads={attn_heads} must divide the bottleneck width 4·base_channels = {4 * c}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.num_classes = num_classes
        self._config = {"in_channels": in_channels, "base_channels": base_channels, "time_emb_dim": time_emb_dim,
                        "attn_heads": attn_heads, "norm": norm, "image_size": image_size,
                        "out_channels": self.out_channels, "num_classes": num_classes}
        self.image_size = image_size
        self.time_emb_dim = time_emb_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(time_emb_dim, time_emb_dim), nn.SiLU(), nn.Linear(time_emb_dim, time_emb_dim)
        )
        d = time_emb_dim
        # one extra row: the "no label" token, so one network is conditional and unconditional
        self.label_emb = nn.Embedding(num_classes + 1, d) if num_classes else None
        self.enc1 = ResidualBlock(in_channels, c, d, norm)
        self.enc2 = ResidualBlock(c, 2 * c, d, norm)
        self.enc3 = ResidualBlock(2 * c, 4 * c, d, norm)
        self.pool = nn.MaxPool2d(2)
        self.mid = ResidualBlock(4 * c, 4 * c, d, norm)
        self.mid_attn = SelfAttention(4 * c, attn_heads)
        self.up1 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.dec1 = ResidualBlock(4 * c, 2 * c, d, norm)
        self.up2 = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.dec2 = ResidualBlock(2 * c, c, d, norm)
        self.out = nn.Conv2d(c, self.out_channels, 1)

    def config(self) -> dict[str, Any]:
        """The constructor's arguments: ``UNet(**net.config())`` builds the same network."""
        return dict(self._config)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        temb = self.time_mlp(sinusoidal_embedding(t, self.time_emb_dim))  # (B, d)
        if self.label_emb is not None:
            if class_labels is None:
                class_labels = torch.full((x.shape[0],), self.num_classes, device=x.device, dtype=torch.long)
            elif class_labels.min() < 0 or class_labels.max() > self.num_classes:
                raise ValueError(f"class labels must lie in [0, {self.num_classes}] ({self.num_classes}: no label)")
            temb = temb + self.label_emb(class_labels)
        elif class_labels is not None:
            raise ValueError("class_labels given to an unconditional UNet (set model.num_classes)")
        h1 = self.enc1(x, temb)  # (B, c, H, W)
        h2 = self.enc2(self.pool(h1), temb)  # (B, 2c, H/2, W/2)
        h3 = self.enc3(self.pool(h2), temb)  # (B, 4c, H/4, W/4)
        h = self.mid_attn(self.mid(h3, temb))
        h = self.dec1(torch.cat([self.up1(h), h2], dim=1), temb)  # (B, 2c, H/2, W/2)
        h = self.dec2(torch.cat([self.up2(h), h1], dim=1), temb)  # (B, c, H, W)
        return self.out(h)


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
