"""The EMA callback: its update rule, and the weights it leaves in checkpoints."""

from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from conftest import TINY, compose_train_cfg
from ddpm_lit.ema import ema_avg_fn
from ddpm_lit.evaluate import load_module
from ddpm_lit.train import train


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

    cfg = compose_train_cfg(
        [*TINY, "logger=csv", "trainer.max_epochs=1", "data.check_md5=false", "data.val_size=32",
         "model.sample_every_n_epochs=0", "~callbacks.ema"],
        tmp_path / "off", synthetic_mnist_dir,
    )  # fmt: skip
    train(cfg)
    assert "current_model_state" not in torch.load(tmp_path / "off" / "checkpoints" / "last.ckpt", weights_only=False)
