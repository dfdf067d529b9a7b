"""The sampling speed settings (generation/speed.py) and the split of a draw over ranks (generation/ranks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_train_cfg, tiny_ddpm

from ddpm_lit.generation.ranks import gather_in_order, rank_batches, rank_indices
from ddpm_lit.generation.speed import MIN_SPEEDUP, Autocast, SpeedSettings, plan_sampling


def test_the_ranks_cut_the_batches_into_runs_and_the_gather_puts_them_back_in_order() -> None:
    assert rank_batches(14, 3, 2) == [range(0, 2), range(2, 5)]  # 5 batches: 2 and 3
    for num, batch, world in ((14, 3, 2), (10, 4, 3), (5, 8, 2), (64, 64, 4), (7, 1, 7)):
        shares = [rank_indices(num, batch, r, world) for r in range(world)]
        assert sum(shares, []) == list(range(num))  # every image once, in order
        for share in shares:  # each share is whole batches of the one-rank draw
            assert not share or share[0] % batch == 0
        images = torch.arange(num, dtype=torch.float32)[:, None] * 10
        locals_ = [images[share] for share in shares]
        calls = []

        def all_gather(t: torch.Tensor, locals_=locals_, calls=calls) -> torch.Tensor:  # what every rank sends
            calls.append(t.shape)
            padded = [torch.cat([x, x.new_zeros(len(t) - len(x), *x.shape[1:])]) for x in locals_]
            return torch.stack(padded)

        for r in range(world):
            assert torch.equal(gather_in_order(locals_[r], num, batch, world, all_gather), images)
        assert world == 1 or len({tuple(c) for c in calls}) == 1  # equal shapes, as all_gather needs


def test_autocast_runs_the_network_in_bf16_and_returns_fp32() -> None:
    seen = []
    net = torch.nn.Conv2d(1, 2, 3, padding=1)
    net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = Autocast(lambda x, t: net(x), torch.device("cpu"), "bf16-mixed")(torch.randn(2, 1, 8, 8), torch.zeros(2))
    assert seen == [torch.bfloat16] and out.dtype == torch.float32
    with pytest.raises(ValueError, match="valid choices"):
        Autocast(net, torch.device("cpu"), "fp8")


@pytest.mark.parametrize("kwargs, words", [({"precision": "fp16"}, "precision must be auto or one of"),
                                           ({"compile": "yes"}, "compile must be auto, true or false"),
                                           ({"channels_last": 1}, "channels_last must be"),
                                           ({"batch_size": 0}, "batch_size must be auto or a positive integer")])
def test_speed_settings_are_checked(kwargs, words) -> None:
    with pytest.raises(ValueError, match=words):
        SpeedSettings(**kwargs)


def test_fixed_settings_are_applied_untimed() -> None:
    model = tiny_ddpm(100, sample_every_n_epochs=0).eval()
    plan = plan_sampling(model, SpeedSettings("32-true", True, False, 5), num_images=12, evaluations_per_image=4)
    assert (plan.precision, plan.channels_last, plan.compiled, plan.batch_size) == ("32-true", True, False, 5)
    assert plan.timings == {} and plan.record()["channels_last"] is True
    conv = next(p for p in model.net.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert plan.sample_kwargs() == {"precision": "32-true", "batch_size": 5, "fixed_batch": False}
    plan = plan_sampling(model, SpeedSettings("32-true", None, False, 5), num_images=12, evaluations_per_image=4)
    assert plan.channels_last is True  # null: as it was left
    plan = plan_sampling(model, SpeedSettings("32-true", False, False, 5), num_images=12, evaluations_per_image=4)
    assert plan.channels_last is False and conv.is_contiguous()


def test_auto_times_each_candidate_and_keeps_fp32_unless_another_is_clearly_faster() -> None:
    model = tiny_ddpm(100, sample_every_n_epochs=0, num_classes=10).eval()
    plan = plan_sampling(model, SpeedSettings(compile="auto", batch_size=16), num_images=16,
                         evaluations_per_image=1000, guidance_scale=1.0)
    eager = {k: v for k, v in plan.timings.items() if "eager" in k}
    assert len(eager) == 4  # fp32 and bf16, contiguous and channels-last
    first = eager["32-true, contiguous, eager, batch 16"]
    chosen = eager[f"{plan.precision}, {'channels-last' if plan.channels_last else 'contiguous'}, eager, batch 16"]
    assert all(rate <= MIN_SPEEDUP * chosen for rate in eager.values())  # none clearly faster than the pick
    assert chosen == first or chosen > MIN_SPEEDUP * first
    assert not plan.compiled and "not compiled" in plan.note  # a few seconds' draw does not repay a compilation


def test_the_validation_hook_draws_in_the_trainers_precision(synthetic_mnist_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning autocasts ``validation_step`` but not ``on_validation_epoch_end``, where the
    samples are drawn: the hook must ask for the trainer's precision itself."""
    from ddpm_lit.apps.train import train
    from ddpm_lit.training.module import DDPMModule

    dtypes: list[torch.dtype] = []
    original = DDPMModule.validation_samples

    def spy(self, seed, indices=None, precision="32-true"):
        hook = self.net.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
        try:
            return original(self, seed, indices, precision)
        finally:
            hook.remove()

    monkeypatch.setattr(DDPMModule, "validation_samples", spy)
    cfg = compose_train_cfg([*TINY, "logger=csv", "trainer.max_epochs=1", "trainer.precision=bf16-mixed",
                             "data.check_md5=false", "model.val_classifier_fid=false", "final_samples.num=0"],
                            tmp_path, synthetic_mnist_dir)
    train(cfg)
    assert dtypes and set(dtypes) == {torch.bfloat16}


def test_a_small_draw_is_not_timed() -> None:
    """Timing costs ~20 two-step chains: a draw of fewer than TIME_AFTER_NFE evaluations runs as
    loaded, in fp32, at the batch asked for."""
    model = tiny_ddpm(100, sample_every_n_epochs=0).eval()
    plan = plan_sampling(model, SpeedSettings(batch_size=3), num_images=8, evaluations_per_image=5)
    assert (plan.precision, plan.compiled, plan.batch_size, plan.timings) == ("32-true", False, 3, {})
    assert plan.note.startswith("not timed: 40 network evaluations")


def test_over_ranks_every_rank_gets_a_batch() -> None:
    """A plan's batch of all N images would leave the other ranks nothing to draw: over ranks the
    batch is capped at N / ranks, and rank 0 (which keeps the trajectory) has images."""
    from ddpm_lit.config.sampling import plan_for
    from ddpm_lit.training.ranks import Ranks

    model = tiny_ddpm(100, sample_every_n_epochs=0).eval()
    plan = plan_for(SpeedSettings("32-true", None, False, 64), model, 64, 2, None, Ranks(0, 2, model.device))
    assert plan.batch_size == 32 and rank_indices(64, plan.batch_size, 0, 2) == list(range(32))
    plan = plan_for(SpeedSettings("32-true", None, False, 64), model, 64, 2, None, Ranks(0, 1, model.device))
    assert plan.batch_size == 64
