"""The EMA callback: its update rule, and the weights it leaves in checkpoints."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, compose_train_cfg
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ddpm_lit.apps.train import build, train
from ddpm_lit.training.ema import EMA, ema_avg_fn, ema_multi_avg_fn
from ddpm_lit.training.loading import load_module


def test_ema_update_follows_the_warmup_rule_and_leaves_constants_alone() -> None:
    model = nn.BatchNorm1d(3)  # a float parameter, float buffers and an integer counter
    model.register_buffer("constant", torch.tensor([0.1, 1 / 3, 2.0]))
    avg = AveragedModel(model, avg_fn=ema_avg_fn(0.9, warmup=True), use_buffers=True)
    expected = None
    for k in range(6):
        with torch.no_grad():
            model.weight.copy_(torch.full((3,), float(k + 1) ** 2))
            model.num_batches_tracked += 7
        avg.update_parameters(model)
        w = model.weight.detach().clone()
        if expected is None:
            expected = w  # the first update copies
        else:
            n = k  # updates averaged before this one
            decay = min(0.9, (1 + n) / (10 + n))
            expected = expected + (1 - decay) * (w - expected)
        torch.testing.assert_close(avg.module.weight.detach(), expected)
    assert torch.equal(avg.module.constant, model.constant)  # bit-equal, not rounded by the average
    assert int(avg.module.num_batches_tracked) == int(model.num_batches_tracked)

    fixed = AveragedModel(model, avg_fn=ema_avg_fn(0.9, warmup=False))
    for value in (0.0, 10.0):
        with torch.no_grad():
            model.weight.fill_(value)
        fixed.update_parameters(model)
    torch.testing.assert_close(fixed.module.weight.detach(), torch.full((3,), 1.0))  # 0 + 0.1 · 10


@pytest.mark.parametrize("warmup", [True, False])
def test_grouped_ema_update_equals_the_per_tensor_one(warmup: bool) -> None:
    """The callback's foreach update (one call per device and dtype) is the rule of ema_avg_fn."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 3))  # floats and an int64 counter
    model.register_buffer("constant", torch.tensor([0.1, 1 / 3, 2.0]))
    per_tensor = AveragedModel(model, avg_fn=ema_avg_fn(0.99, warmup), use_buffers=True)
    grouped = AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(0.99, warmup), use_buffers=True)
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
            model[1].num_batches_tracked += 3
        per_tensor.update_parameters(model)
        grouped.update_parameters(model)
    for (name, a), b in zip(per_tensor.module.state_dict().items(), grouped.module.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=name)
    assert not torch.equal(grouped.module[0].weight, model[0].weight)  # it averaged, not copied
    assert torch.equal(grouped.module.constant, model.constant)
    assert int(grouped.module[1].num_batches_tracked) == int(model[1].num_batches_tracked)
    # the callback's own average (and the benchmark's copy of it) uses the grouped update
    assert EMA(decay=0.99).averaged_model(model).multi_avg_fn is not None
    assert EMA(decay=0.99, foreach=False).averaged_model(model).avg_fn is not None


def test_training_saves_the_ema_as_state_dict_and_the_raw_weights_beside_it(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    cfg = compose_train_cfg(
        [*TINY, "logger=csv", "trainer.max_epochs=1", "data.check_md5=false", "data.val_size=32",
         "model.sample_every_n_epochs=0", "callbacks.ema.decay=0.5"],
        tmp_path, synthetic_mnist_dir,
    )  # fmt: skip
    train(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert "current_model_state" in ckpt
    ema, raw = ckpt["state_dict"], ckpt["current_model_state"]
    key = "net.out.weight"
    assert not torch.equal(ema[key], raw[key])  # the average lags the last step
    module, is_ema = load_module(tmp_path / "checkpoints" / "last.ckpt", torch.device("cpu"))
    assert is_ema and torch.equal(module.state_dict()[key], ema[key])
    assert ckpt["model_class"] == "ddpm_lit.training.module.DDPMModule"  # the class load_module builds

    cfg = compose_train_cfg(
        [*TINY, "logger=csv", "trainer.max_epochs=1", "data.check_md5=false", "data.val_size=32",
         "model.sample_every_n_epochs=0", "~callbacks.ema"],
        tmp_path / "off", synthetic_mnist_dir,
    )  # fmt: skip
    train(cfg)
    assert "current_model_state" not in torch.load(tmp_path / "off" / "checkpoints" / "last.ckpt", weights_only=False)


def test_validation_samples_and_scores_the_ema_weights(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    """Lightning runs the callbacks' on_validation_epoch_end before the module's: the module's
    sampling hook must still see the average. decay 1 without warm-up freezes the average at
    the first step's weights, while a large learning rate moves the raw weights far from them."""
    from PIL import Image

    from ddpm_lit.core.pixels import to_unit_range
    from ddpm_lit.generation.files import save_grid
    from ddpm_lit.generation.generate import image_generators
    from ddpm_lit.training.module import DDPMModule

    cfg = compose_train_cfg(
        [*TINY, "logger=csv", "trainer.max_epochs=1", "data.check_md5=false", "model.val_classifier_fid=false",
         "model.optimizer.lr=0.02", "callbacks.ema.decay=1.0", "callbacks.ema.warmup=false", "final_samples.num=0"],
        tmp_path, synthetic_mnist_dir,
    )  # fmt: skip
    metrics = train(cfg)

    def png(path: Path) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(path)).copy())

    grid = png(tmp_path / "samples" / "epoch_000.png")
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)

    def validation_grid(state: dict[str, torch.Tensor], name: str) -> tuple[torch.Tensor, float]:
        module = DDPMModule(**ckpt["hyper_parameters"])
        module.load_state_dict(state)
        n = cfg.model.num_val_samples
        gens = image_generators(cfg.model.val_seed, range(n))  # the hook's noise: image i from (val_seed, i)
        unit = to_unit_range(module.sample(n, generator=gens, steps=cfg.model.val_sample_steps))
        save_grid(unit, tmp_path / f"{name}.png")
        return png(tmp_path / f"{name}.png"), unit

    ema_grid, ema_unit = validation_grid(ckpt["state_dict"], "ema")
    raw_grid, _ = validation_grid(ckpt["current_model_state"], "raw")
    assert not torch.equal(ema_grid, raw_grid)  # the two weights do draw different images
    assert torch.equal(grid, ema_grid)
    # val/ssim scores the same images: the study's pairing with the first test images
    from torchmetrics.functional.image import (
        structural_similarity_index_measure as ssim,
    )

    dm = build(cfg.data)
    test = to_unit_range(dm.reference_images("test", len(ema_unit), seed=cfg.model.val_seed))
    assert metrics["val/ssim"] == pytest.approx(float(ssim(ema_unit, test, data_range=1.0)), abs=1e-6)
    # and the raw weights are back in the module for training after validation: the checkpoint
    # saved after the validation epoch holds the average as state_dict, the raw ones beside it
    key = "net.out.weight"
    assert not torch.equal(ckpt["state_dict"][key], ckpt["current_model_state"][key])


def test_the_final_samples_come_from_the_ema_weights(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    """The after-fit callbacks run in on_fit_end, after the EMA callback's on_train_end has copied
    the average into the module: the final samples are the average's, not the raw weights'
    (decay 1 without warm-up keeps the average at the first step's weights, far from the raw
    ones after steps at a large learning rate)."""
    from ddpm_lit.generation.files import load_samples_npz, save_samples_npz
    from ddpm_lit.generation.generate import draw
    from ddpm_lit.training.module import DDPMModule

    cfg = compose_train_cfg(
        [*TINY, "logger=csv", "trainer.max_epochs=1", "data.check_md5=false", "model.val_classifier_fid=false",
         "model.optimizer.lr=0.02", "callbacks.ema.decay=1.0", "callbacks.ema.warmup=false", "final_samples.num=4",
         "final_samples.steps=5", "final_samples.seed=3"],
        tmp_path, synthetic_mnist_dir,
    )  # fmt: skip
    train(cfg)
    final = load_samples_npz(tmp_path / "samples" / "final.npz")
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)

    def drawn_with(state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        module = DDPMModule(**ckpt["hyper_parameters"]).eval()
        module.load_state_dict(state)
        samples = draw(module, 4, seed=3, steps=5).samples
        return load_samples_npz(save_samples_npz(samples, tmp_path / f"{name}.npz"))  # the file's 8 bits, as final.npz

    ema, raw = drawn_with(ckpt["state_dict"], "ema"), drawn_with(ckpt["current_model_state"], "raw")
    assert not torch.equal(ema, raw)
    assert torch.equal(final, ema)
