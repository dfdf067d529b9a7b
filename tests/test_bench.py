import re
from pathlib import Path

import pytest
import torch
from conftest import run_command

from ddpm_lit.apps import bench
from ddpm_lit.apps.bench import StepTimer, counted_flops

TINY_NET = ["trainer=cpu", "model.net.base_channels=8", "model.net.time_emb_dim=32", "model.net.attn_heads=2",
            "data.batch_size=8", "model.num_val_samples=4", "data.check_md5=false", "data.val_size=32", "logger=csv"]
ARGS = ["bench.steps=2", "bench.warmup=1", "bench.repeats=1", "bench.sample_steps=[2,3]"]


def bench_cli(*args: str) -> str:
    """``python -m ddpm_lit.bench <args>``, in this process: what it printed."""
    proc = run_command("ddpm_lit.bench", list(args))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def figures(out: str) -> dict[str, float]:
    return {name.strip(): float(value) for name, value in
            re.findall(r"^(plain PyTorch loop|train\(cfg\) \(real\)|diffusers plain|sampling +\d+ steps|peak memory"
                       r"|peak matmul|network FLOPs)\s*:\s*([\d.]+)", out, re.M)}


def test_benchmark_prints_its_figures(synthetic_mnist_dir: Path) -> None:
    out = bench_cli(*TINY_NET, f"paths.data_dir={synthetic_mnist_dir}", "trainer.precision=auto", "model.compile=false",
                    *ARGS)
    found = figures(out)
    assert set(found) == {"plain PyTorch loop", "train(cfg) (real)", "sampling    2 steps", "sampling    3 steps",
                          "peak memory", "peak matmul", "network FLOPs"}, out
    assert all(v > 0 for v in found.values()), out
    assert re.search(r"Lightning overhead : [+-]\d+\.\d %", out)
    assert re.search(r"of the (32|bf16) matmul peak", out)
    # the auto settings are resolved as train.py resolves them for a long run, and the run uses the chosen ones
    chosen = re.search(r"^auto settings: training in (\S+), (channels-last|contiguous), eager \(", out, re.M)
    assert chosen and f"precision {chosen.group(1)}," in out, out
    assert "32-true, channels-last, eager: " in out  # channels_last=auto: both layouts were timed


def test_the_real_run_is_timed_through_train_with_its_callbacks(monkeypatch, synthetic_mnist_dir: Path) -> None:
    """bench_lightning runs train(cfg) itself: the config's callbacks (EMA among them) are there."""
    seen = {}
    real_train = bench.train

    def spy(cfg, extra_callbacks=()):
        metrics = real_train(cfg, extra_callbacks=extra_callbacks)
        seen["cfg"], seen["metrics"] = cfg, metrics
        return metrics

    monkeypatch.setattr(bench, "train", spy)
    cfg = bench.compose_cfg([*TINY_NET, f"paths.data_dir={synthetic_mnist_dir}"])
    rate = bench.bench_lightning(cfg, steps=3, warmup=1)
    assert rate > 0
    assert seen["metrics"]["global_step"] == 4  # warm-up + timed steps, then it stops
    assert "ema" in seen["cfg"].callbacks and seen["cfg"].model.sample_every_n_epochs == 0


def test_step_timer_needs_its_steps() -> None:
    timer = StepTimer(warmup=1, steps=5)
    with pytest.raises(RuntimeError, match="before the timed steps"):
        timer.images_per_s(8)


def test_flop_count_of_a_convolution_is_its_closed_form() -> None:
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 10, 10)
    # 2 · (output elements) · (in channels · kernel area)
    assert counted_flops(lambda: conv(x)) == 2 * (2 * 5 * 10 * 10) * (3 * 9)


@pytest.mark.slow
def test_diffusers_unet_is_sized_to_the_parameter_count() -> None:
    pytest.importorskip("diffusers")
    from ddpm_lit.nets.unet import UNet

    target = sum(p.numel() for p in UNet(base_channels=32, time_emb_dim=128).parameters())
    net, what = bench.diffusers_unet(target, 28, 1)
    params = sum(p.numel() for p in net.parameters())
    assert abs(params / target - 1) < 0.05, what
    assert net(torch.randn(2, 1, 28, 28), torch.tensor([0, 999])).sample.shape == (2, 1, 28, 28)


def test_ablation_prints_one_row_per_change_with_its_ratio(synthetic_mnist_dir: Path) -> None:
    out = bench_cli(*TINY_NET, f"paths.data_dir={synthetic_mnist_dir}", "trainer.precision=32-true", "bench.lightning=false",
                    "bench.steps=2", "bench.warmup=1", "bench.repeats=2", "bench.sample_steps=2",
                    'bench.ablate=["model.channels_last=true","model.channels_last=true model.optimizer.fused=true"]')
    rows = re.findall(r"^\| `([^`]+)` \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert [r[0] for r in rows] == ["model.channels_last=true", "model.channels_last=true model.optimizer.fused=true"], out
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows)
    assert len(re.findall(r"^  round [12], model.channels_last=true model.optimizer.fused=true: plain", out, re.M)) == 2


def test_the_sampling_table_sets_the_front_end_before_and_now_beside_a_plain_loop(tmp_path: Path, monkeypatch) -> None:
    """bench.sampling_ckpt: the front end as loaded (fp32, eager) and with speed=auto's choice, and
    the bare network calls, in network evaluations/s of one chain; the training part skipped."""
    import lightning as L
    from conftest import tiny_ddpm

    model = tiny_ddpm(100, sample_every_n_epochs=0, num_classes=10)
    data = torch.utils.data.TensorDataset(torch.rand(8, 1, 28, 28) * 2 - 1, torch.arange(8) % 10)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=8))
    trainer.save_checkpoint(tmp_path / "tiny.ckpt")
    monkeypatch.setattr(bench, "SAMPLING_MIN_SECONDS", 0.2)
    out = bench_cli("bench.training=false", f"bench.sampling_ckpt={tmp_path / 'tiny.ckpt'}", "bench.sample_steps=[3]",
                    "bench.repeats=2", "bench.sampling_num=16")
    rows = dict(re.findall(r"^\| (front end as loaded \(speed=off, before\)|front end, speed=auto \(now\)|plain loop of "
                           r"the network calls) \|[^|]+\| (\d+) \|", out, re.M))
    assert len(rows) == 3 and all(int(v) > 0 for v in rows.values()), out
    assert "| 1.00 |" in out and "3-step chain" in out
    assert len(re.findall(r"^  round \d: before \d+, after \d+, plain \d+ NFE/s$", out, re.M)) == 2, out
    assert "train images/s" not in out  # bench.training=false
