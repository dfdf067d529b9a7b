"""Each private API ddpm_lit.internals relies on, checked against the installed libraries:
a failure here names the function to rewrite after an upgrade."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger
from torchmetrics.image.fid import FrechetInceptionDistance

from ddpm_lit.evaluation.features import fid_statistics
from ddpm_lit.internals import (
    PrecomputedFeatures,
    drop_anonymous_wandb_init,
    fid_from_sufficient_statistics,
    logging_step,
    reruns_command_line,
    set_logging_step,
    syncs_batchnorm,
    training_batches_done,
    wandb_offline,
    weight_average,
)
from ddpm_lit.training.ema import EMA


def test_fid_from_statistics_equals_torchmetrics_own_updates() -> None:
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 16, generator=gen), torch.randn(200, 16, generator=gen) * 1.3 + 0.2
    public = FrechetInceptionDistance(feature=PrecomputedFeatures(16), sync_on_compute=False)
    public.update(real, real=True)
    public.update(fake, real=False)
    assert fid_from_sufficient_statistics(fid_statistics(real), fid_statistics(fake)) == pytest.approx(
        float(public.compute()), rel=1e-9
    )


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)


def test_weight_average_is_the_callbacks_averaged_model() -> None:
    callback, module = EMA(decay=0.9), _Tiny()
    assert weight_average(callback) is None and not callback.holds_average()
    callback.setup(L.Trainer(logger=False, enable_checkpointing=False), module, "fit")  # Lightning builds it here
    average = weight_average(callback)
    assert isinstance(average, torch.optim.swa_utils.AveragedModel) and callback.holds_average()
    assert torch.equal(average.module.layer.weight, module.layer.weight)


@pytest.mark.parametrize(("strategy", "devices", "expected"), [("ddp", 2, True), ("ddp_spawn", 2, False), ("auto", 1, False)])
def test_reruns_command_line_is_true_for_ddp_on_one_machine(strategy: str, devices: int, expected: bool) -> None:
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False, enable_checkpointing=False)
    assert reruns_command_line(trainer.strategy) is expected


@pytest.mark.parametrize("sync", [True, False])
def test_syncs_batchnorm_follows_the_trainer_setting(sync: bool) -> None:
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", sync_batchnorm=sync, logger=False,
                        enable_checkpointing=False)
    assert syncs_batchnorm(trainer.strategy) is sync


def test_wandb_offline_and_the_anonymous_argument(tmp_path: Path) -> None:
    offline = WandbLogger(save_dir=str(tmp_path), offline=True)
    assert wandb_offline(offline) and not wandb_offline(WandbLogger(save_dir=str(tmp_path), offline=False))
    # Lightning passes anonymous=None to wandb.init, which W&B answers with a warning; when
    # Lightning stops passing it, drop_anonymous_wandb_init can go.
    assert "anonymous" in offline._wandb_init and offline._wandb_init["anonymous"] is None
    drop_anonymous_wandb_init(offline)
    assert "anonymous" not in offline._wandb_init
    anonymous = WandbLogger(save_dir=str(tmp_path), offline=True, anonymous=True)
    drop_anonymous_wandb_init(anonymous)
    assert anonymous._wandb_init["anonymous"] == "allow"  # a value the user chose stays


class _Counting(L.LightningModule):
    """Records, at each training batch, the internals' counts next to the batch index and step."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen: list[tuple[int, int, int, int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((batch_idx, training_batches_done(self.trainer), self.global_step, logging_step(self.trainer)))
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_batches_done_and_the_logging_step_are_lightnings_counts() -> None:
    module = _Counting()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 2)), batch_size=4)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    # within an epoch, the batches before this one; the loggers' step, the steps taken so far
    assert module.seen == [(b, b, e * 3 + b, e * 3 + b) for e in range(2) for b in range(3)]
    set_logging_step(trainer, 41)
    assert logging_step(trainer) == 41


def test_process_group_store_is_the_store_the_ranks_rendezvoused_through(tmp_path: Path) -> None:
    from ddpm_lit.internals import process_group_store

    assert process_group_store() is None  # no process group yet
    rendezvous = torch.distributed.FileStore(str(tmp_path / "rendezvous"), 1)
    torch.distributed.init_process_group("gloo", store=rendezvous, rank=0, world_size=1)
    try:
        store = process_group_store()
        store.set("ddpm_lit/probe", "here")
        assert store.check(["ddpm_lit/probe"]) and store.get("ddpm_lit/probe") == b"here"
        assert isinstance(store, torch.distributed.Store)
    finally:
        torch.distributed.destroy_process_group()
    assert process_group_store() is None
