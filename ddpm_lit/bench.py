"""Throughput benchmark: ``python -m ddpm_lit.bench [hydra overrides] [--steps N]``.

Prints, for the model of the composed config on the current device: training images/s
through Lightning and through a plain PyTorch loop doing the same work (same network,
loss, optimizer, precision, batch), their ratio (Lightning's overhead), sampling network
evaluations/s and peak memory. Data are random tensors of MNIST's shape, since speed does
not depend on pixel values. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader, TensorDataset

from ddpm_lit.budget import autocast, choose_precision, sync
from ddpm_lit.train import build

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def peak_memory_mib(device: torch.device) -> float:
    """Peak allocated GPU memory, or on a CPU the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux: KiB -> MiB (process peak RSS)


class _Timer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        sync(pl_module.device)
        self.end = time.perf_counter()


def bench_lightning(cfg, data: TensorDataset, steps: int, warmup: int) -> float:
    model = build(cfg.model)
    timer = _Timer(warmup)
    trainer = build(
        cfg.trainer,
        max_steps=warmup + steps,
        max_epochs=None,
        logger=False,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    loader = DataLoader(data, batch_size=cfg.data.batch_size, shuffle=True, drop_last=True)
    trainer.fit(model, train_dataloaders=loader)
    return steps * cfg.data.batch_size / (timer.end - timer.start)


def bench_plain(cfg, data: TensorDataset, steps: int, warmup: int, device: torch.device) -> float:
    model = build(cfg.model).to(device)
    model.train()
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    loader = DataLoader(data, batch_size=cfg.data.batch_size, shuffle=True, drop_last=True)
    precision = str(cfg.trainer.get("precision", "32"))
    it = iter(loader)
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        x0 = next(it)[0].to(device)
        with autocast(device, precision):
            loss = model.diffusion.loss(model.net, x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


@torch.no_grad()
def bench_sampling(cfg, device: torch.device, batch: int, steps: int) -> float:
    """Network evaluations/s of the ancestral sampler on a ``steps``-step respaced chain."""
    model = build(cfg.model).to(device).eval()
    precision = str(cfg.trainer.get("precision", "32"))
    with autocast(device, precision):
        model.sample(batch, steps=2)  # warm-up
        sync(device)
        start = time.perf_counter()
        model.sample(batch, generator=torch.Generator().manual_seed(0), steps=steps)
        sync(device)
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=quick trainer=cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    parser.add_argument("--sample-steps", type=int, default=10, help="steps of the timed sampling chain")
    parser.add_argument("--repeats", type=int, default=3, help="alternating plain/Lightning measurements; medians reported")
    args = parser.parse_args(argv)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/job_logging=disabled", *args.overrides], return_hydra_config=True)
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    L.seed_everything(0, verbose=False)
    batch = cfg.data.batch_size
    data = TensorDataset(torch.randn((args.warmup + args.steps) * batch, 1, 28, 28).clamp(-1, 1))
    auto = str(cfg.trainer.get("precision")) == "auto"
    trainer = build(cfg.trainer, logger=False, enable_progress_bar=False, enable_model_summary=False,
                    **({"precision": "32-true"} if auto else {}))
    device = trainer.strategy.root_device
    if auto:  # as train.py decides it: the faster of fp32 and bf16 autocast, timed here
        speed, speeds = choose_precision(build(cfg.model), device, batch, cfg.model.num_val_samples)
        print(f"precision=auto: {'; '.join(map(str, speeds))}; chosen {speed.precision}", flush=True)
        cfg.trainer.precision = speed.precision
    n_params = sum(p.numel() for p in build(cfg.model).parameters())
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"threads {torch.get_num_threads()}, precision {cfg.trainer.precision}, batch {batch}, "
          f"params {n_params / 1e6:.2f} M, {args.steps} timed steps after {args.warmup}", flush=True)
    plains, lits = [], []
    for r in range(args.repeats):  # alternate, so drift in machine load hits both alike
        plains.append(bench_plain(cfg, data, args.steps, args.warmup, device))
        lits.append(bench_lightning(cfg, data, args.steps, args.warmup))
        print(f"  repeat {r + 1}: plain {plains[-1]:.1f}, Lightning {lits[-1]:.1f} images/s", flush=True)
    plain, lit = statistics.median(plains), statistics.median(lits)
    print(f"plain PyTorch loop : {plain:9.1f} train images/s (median of {args.repeats})")
    print(f"Lightning Trainer  : {lit:9.1f} train images/s (median of {args.repeats})")
    print(f"Lightning overhead : {100 * (plain / lit - 1):+.1f} % (plain/lightning − 1)")
    if device.type == "cuda":
        print(f"peak GPU memory    : {peak_memory_mib(device):9.1f} MiB (training)")
        torch.cuda.reset_peak_memory_stats(device)
    nfe = bench_sampling(cfg, device, cfg.model.num_val_samples, args.sample_steps)
    print(f"sampling           : {nfe:9.1f} network evaluations/s "
          f"(batch {cfg.model.num_val_samples}, {args.sample_steps}-step chain)")
    if device.type == "cuda":
        print(f"peak GPU memory    : {peak_memory_mib(device):9.1f} MiB (sampling)")
    else:
        print(f"peak memory        : {peak_memory_mib(device):9.1f} MiB (process resident set, whole run)")


if __name__ == "__main__":
    main(sys.argv[1:])
