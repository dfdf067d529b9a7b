"""The study's UNet: shapes, size, config validation, normalisation choice and the
dependence of the output on the timestep."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ddpm_lit.nets.unet import UNet, sinusoidal_embedding

SMALL = dict(base_channels=8, time_emb_dim=32, attn_heads=4)
# Behaviour tests use 16×16 inputs to stay fast; the forward pass works for any multiple of 4.


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small_net(seed: int = 0, **kw) -> UNet:
    torch.manual_seed(seed)
    return UNet(**{**SMALL, **kw})


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_output_shape_matches_input(norm: str) -> None:
    net = small_net(norm=norm)
    x = torch.randn(3, 1, 28, 28, generator=gen(0))
    t = torch.tensor([0, 500, 999])
    y = net(x, t)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all()


def test_output_shape_other_channels_and_size() -> None:
    net = small_net(in_channels=3, image_size=16)
    x = torch.randn(2, 3, 16, 16, generator=gen(1))
    assert net(x, torch.tensor([1, 2])).shape == (2, 3, 16, 16)


def test_parameter_count_default_config() -> None:
    net = UNet()  # base_channels=128, time_emb_dim=256: the study's ≈ 14.1 M
    n = sum(p.numel() for p in net.parameters())
    assert abs(n - 14.1e6) / 14.1e6 < 0.01, n
    assert n == 14_141_185  # pins the architecture: any change to a layer shows here


def test_parameter_count_grows_with_width() -> None:
    n8 = sum(p.numel() for p in small_net(base_channels=8).parameters())
    n16 = sum(p.numel() for p in small_net(base_channels=16).parameters())
    # Conv weights dominate and scale with c², so doubling c should roughly quadruple them.
    assert 2.5 < n16 / n8 < 4.5


# ---- config validation ----------------------------------------------------------------
def test_base_channels_zero_rejected() -> None:
    with pytest.raises(ValueError, match="base_channels"):
        UNet(base_channels=0)


def test_image_size_not_multiple_of_4_rejected() -> None:
    with pytest.raises(ValueError) as excinfo:
        UNet(base_channels=8, image_size=30)
    msg = str(excinfo.value)
    assert "image_size" in msg
    assert "4" in msg.replace("image_size=30", "")  # mentions 4 beyond the bad value itself


def test_attn_heads_must_divide_bottleneck() -> None:
    # 4c = 32 with c = 8; 3 heads do not divide it.
    with pytest.raises(ValueError) as excinfo:
        UNet(base_channels=8, attn_heads=3)
    msg = str(excinfo.value)
    assert "attn_heads" in msg and "32" in msg
    UNet(base_channels=8, attn_heads=8, time_emb_dim=32)  # 8 divides 32: accepted


def test_unknown_norm_rejected() -> None:
    with pytest.raises(ValueError) as excinfo:
        UNet(base_channels=8, norm="foo")
    msg = str(excinfo.value)
    assert "foo" in msg and "batch" in msg and "group" in msg


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"in_channels": 0}, "in_channels"),
        ({"attn_heads": 0}, "attn_heads"),
        ({"base_channels": -4}, "base_channels"),
        ({"base_channels": 8.0}, "base_channels"),
        ({"time_emb_dim": 31}, "time_emb_dim"),
        ({"image_size": 0}, "image_size"),
    ],
)
def test_other_invalid_configs_rejected(kw: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        UNet(**{**SMALL, **kw})


# ---- normalisation --------------------------------------------------------------------
def test_group_norm_option() -> None:
    net = small_net(norm="group")
    kinds = {type(m) for m in net.modules()}
    assert nn.GroupNorm in kinds
    assert nn.BatchNorm2d not in kinds
    for m in net.modules():
        if isinstance(m, nn.GroupNorm):
            assert m.num_channels % m.num_groups == 0
    x = torch.randn(4, 1, 28, 28, generator=gen(2))
    t = torch.tensor([3, 3, 3, 3])
    net.train()
    y_train = net(x, t)
    net.eval()
    y_eval = net(x, t)
    # GroupNorm has no running statistics: train and eval modes agree.
    torch.testing.assert_close(y_train, y_eval)
    # And each sample is normalised on its own: the batch does not leak between samples.
    torch.testing.assert_close(net(x[:1], t[:1]), y_eval[:1], rtol=1e-4, atol=1e-5)


def test_batch_norm_default() -> None:
    net = small_net()
    kinds = {type(m) for m in net.modules()}
    assert nn.BatchNorm2d in kinds
    assert nn.GroupNorm not in kinds


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_eval_mode_samples_independent(norm: str) -> None:
    """In eval mode, a sample's output must not depend on the other batch members
    (checks that attention mixes positions, never batch elements)."""
    net = small_net(norm=norm).eval()
    x = torch.randn(3, 1, 16, 16, generator=gen(3))
    t = torch.tensor([10, 400, 900])
    with torch.no_grad():
        full = net(x, t)
        for k in range(3):
            torch.testing.assert_close(net(x[k : k + 1], t[k : k + 1]), full[k : k + 1], rtol=1e-4, atol=1e-5)


# ---- timestep conditioning ------------------------------------------------------------
@pytest.mark.parametrize("norm", ["batch", "group"])
def test_output_depends_on_t_in_eval(norm: str) -> None:
    net = small_net(norm=norm).eval()
    x = torch.randn(1, 1, 16, 16, generator=gen(4)).expand(3, 1, 16, 16).contiguous()
    t = torch.tensor([0, 1, 999])
    with torch.no_grad():
        y = net(x, t)
        y_again = net(x, t)
    torch.testing.assert_close(y, y_again)  # deterministic in eval mode
    assert not torch.allclose(y[0], y[1], atol=1e-5)
    assert not torch.allclose(y[0], y[2], atol=1e-5)
    assert not torch.allclose(y[1], y[2], atol=1e-5)


def test_output_depends_on_input_in_eval() -> None:
    net = small_net().eval()
    x = torch.randn(2, 1, 16, 16, generator=gen(5))
    t = torch.tensor([7, 7])
    with torch.no_grad():
        y = net(x, t)
    assert not torch.allclose(y[0], y[1], atol=1e-5)


def test_gradients_reach_all_parameters() -> None:
    net = small_net(norm="group")
    x = torch.randn(2, 1, 16, 16, generator=gen(6))
    net(x, torch.tensor([5, 600])).pow(2).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    zero = [n for n, p in net.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, zero


def test_sinusoidal_embedding_values() -> None:
    dim = 8
    t = torch.tensor([0, 1, 37])
    emb = sinusoidal_embedding(t, dim)
    assert emb.shape == (3, dim)
    half = dim // 2
    for b, tv in enumerate([0, 1, 37]):
        for k in range(half):
            freq = math.exp(-math.log(10000.0) * k / half)
            assert emb[b, k].item() == pytest.approx(math.sin(tv * freq), abs=1e-5)
            assert emb[b, half + k].item() == pytest.approx(math.cos(tv * freq), abs=1e-5)
