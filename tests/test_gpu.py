"""Checks that need a CUDA device; skipped cleanly without one."""

from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_train_cfg

from ddpm_lit.apps.train import train
from ddpm_lit.training.module import DDPMModule

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_bf16_gpu_preset_trains_and_samples(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    overrides = [o for o in TINY if not o.startswith("trainer=")]
    cfg = compose_train_cfg(
        [*overrides, "trainer=gpu", "logger=csv", "trainer.max_epochs=1", "data.check_md5=false",
         "data.val_size=32"],
        tmp_path, synthetic_mnist_dir,
    )
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["val/loss"]))
    model = DDPMModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cuda")
    # a CPU generator drives a GPU model: the contract's sample(n, generator)
    a = model.sample(4, generator=torch.Generator().manual_seed(0), steps=5)
    b = model.sample(4, generator=torch.Generator().manual_seed(0), steps=5)
    assert a.device.type == "cuda" and a.shape == (4, 1, 28, 28)
    assert torch.equal(a, b)
    cpu = model.cpu().sample(4, generator=torch.Generator().manual_seed(0), steps=5)
    assert torch.allclose(a.cpu(), cpu, atol=1e-2)  # the same noise on both devices
