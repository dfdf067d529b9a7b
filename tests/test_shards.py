"""Weights split into small float16 files and joined back into a checkpoint evaluate.py reads."""

from pathlib import Path

import pytest
import torch

from ddpm_lit.apps.shards import join, main, split
from ddpm_lit.training.loading import load_module


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_run: Path) -> Path:
    return tiny_run / "checkpoints" / "last.ckpt"  # with EMA weights (decay 0.5) and the raw ones beside them


def test_split_and_join_give_back_the_ema_weights(tiny_checkpoint: Path, tmp_path: Path) -> None:
    paths = split(tiny_checkpoint, tmp_path, max_mib=0.1)  # ~ 0.2 MiB of weights: several shards
    assert len(paths) > 1
    assert all(p.stat().st_size <= 0.1 * 2**20 for p in paths)
    original = torch.load(tiny_checkpoint, weights_only=False)
    joined = join(list(reversed(paths)))  # any order
    assert set(joined["state_dict"]) == set(original["state_dict"])
    for key, value in original["state_dict"].items():
        got = joined["state_dict"][key]
        assert got.dtype == value.dtype, key
        if key.startswith("diffusion."):
            assert torch.equal(got, value), key  # rebuilt, not rounded
        elif value.is_floating_point():
            torch.testing.assert_close(got, value, rtol=2**-10, atol=1e-4, msg=key)
            assert torch.equal(got, value.half().float()), key  # exactly the float16 rounding
        else:
            assert torch.equal(got, value), key
    out = tmp_path / "joined.ckpt"
    main(["join", *map(str, paths), "-o", str(out)])
    module, ema = load_module(out, torch.device("cpu"))
    assert ema  # the run kept an average, and the shards say so
    reference, _ = load_module(tiny_checkpoint, torch.device("cpu"))
    x = torch.randn(4, 1, 28, 28)
    t = torch.tensor([0, 10, 50, 99])
    torch.testing.assert_close(module.net(x, t), reference.net(x, t), rtol=0.02, atol=0.02)


def test_join_refuses_an_incomplete_set(tiny_checkpoint: Path, tmp_path: Path) -> None:
    paths = split(tiny_checkpoint, tmp_path, max_mib=0.1)
    with pytest.raises(ValueError, match="expected shards"):
        join(paths[1:])
