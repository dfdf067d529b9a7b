"""The model's three parts (network, diffusion process, optimizer), each built by Hydra from its
own node, and checkpoints that rebuild them alone."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import TINY, compose_train_cfg
from hydra.utils import instantiate

from ddpm_lit.core.diffusion import GaussianDiffusion
from ddpm_lit.nets.unet import UNet
from ddpm_lit.training.module import DDPMModule

NET = {"base_channels": 8, "time_emb_dim": 32, "attn_heads": 2}
REFERENCE_CHECKPOINT = Path(__file__).parent / "data" / "reference_checkpoint.ckpt"


def _model(tmp_path: Path, *overrides: str) -> DDPMModule:
    cfg = compose_train_cfg([*TINY, *overrides], tmp_path, tmp_path)
    return instantiate(cfg.model, _convert_="all")


def _save(model: DDPMModule, path: Path, hparams: dict | None = None) -> Path:
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(hparams or model.hparams),
                "pytorch-lightning_version": L.__version__}, path)  # fmt: skip
    return path


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_each_part_comes_built_from_its_own_node(tmp_path: Path) -> None:
    model = _model(tmp_path)
    assert isinstance(model.net, UNet) and isinstance(model.diffusion, GaussianDiffusion)
    assert isinstance(model.make_optimizer, functools.partial) and model.make_optimizer.func is torch.optim.Adam
    assert model.hparams.net["_target_"] == "ddpm_lit.nets.unet.UNet" and model.hparams.net["base_channels"] == 8
    assert model.hparams.diffusion["timesteps"] == 100 and model.hparams.optimizer["_partial_"] is True


def test_a_config_swaps_the_optimizer_without_code(tmp_path: Path) -> None:
    model = _model(tmp_path, "model.optimizer._target_=torch.optim.AdamW", "model.optimizer.weight_decay=0.05")
    opt = model.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 0.05


@pytest.mark.parametrize("variance", ["posterior", "beta", "learned"])
def test_the_networks_output_channels_follow_the_variance(tmp_path: Path, variance: str) -> None:
    model = _model(tmp_path, f"model.diffusion.variance={variance}")
    assert model.net.out_channels == GaussianDiffusion("linear", 100, variance=variance).output_channels_factor


def test_a_network_that_cannot_give_the_variance_is_refused() -> None:
    with pytest.raises(ValueError, match="out_channels=1, but variance=learned needs 2"):
        DDPMModule(net=UNet(**NET), diffusion=GaussianDiffusion("linear", 50, variance="learned"))


def test_a_bad_optimizer_setting_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="Invalid learning rate"):
        _model(tmp_path, "model.optimizer.lr=-1")


def test_a_checkpoint_rebuilds_the_model_from_the_class_alone(tmp_path: Path) -> None:
    model = _model(tmp_path, "model.diffusion.variance=learned", "model.diffusion.objective=v", "model.net.num_classes=10",
                   "model.optimizer.lr=0.003")
    loaded = DDPMModule.load_from_checkpoint(_save(model, tmp_path / "m.ckpt"), weights_only=False)
    assert _same_weights(loaded, model) and dict(loaded.hparams) == dict(model.hparams)
    assert loaded.diffusion.objective == "v" and loaded.num_classes == 10 and loaded.make_optimizer.keywords["lr"] == 0.003


def test_a_kept_checkpoint_draws_the_images_it_drew_when_it_was_written() -> None:
    """tests/data/reference_checkpoint.ckpt: a tiny model's weights and hyperparameters (each part
    as its spec), with 4 images drawn when it was written (seed 0, 5 steps): the sampling maths and
    the loading have not changed since."""
    path = REFERENCE_CHECKPOINT
    loaded = DDPMModule.load_from_checkpoint(path, weights_only=False).eval()
    assert loaded.hparams.net["_target_"] == "ddpm_lit.nets.unet.UNet" and loaded.hparams.optimizer["lr"] == 0.0002
    drawn = loaded.sample(4, generator=torch.Generator().manual_seed(0), steps=5)
    # equal up to float rounding: CPUs differ in the last bits of their convolution kernels (an AMD EPYC
    # differs from the machine that drew them by < 1e-6); wrong weights or maths differ by O(1)
    torch.testing.assert_close(drawn, torch.load(path, weights_only=False)["samples_seed0_steps5"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["os.system", "torch.nn.Linear", "ddpm_lit.nets.unet.UNet"])
def test_load_module_builds_only_a_lightning_module_of_ddpm_lit(tmp_path: Path, name: str) -> None:
    from ddpm_lit.errors import DataError
    from ddpm_lit.training.loading import load_module

    path = tmp_path / "m.ckpt"
    checkpoint = torch.load(REFERENCE_CHECKPOINT, weights_only=False)
    torch.save({**checkpoint, "model_class": name}, path)
    with pytest.raises(DataError, match="not a LightningModule of ddpm_lit"):
        load_module(path, torch.device("cpu"))
    torch.save({**checkpoint, "model_class": "ddpm_lit.training.module.DDPMModule"}, path)
    assert isinstance(load_module(path, torch.device("cpu"))[0], DDPMModule)
