"""A checkpoint's network weights in a few small files, and back.

A machine that can return only small files (a lent GPU returns files of at most 16 MiB) sends
the weights a training run ended with as float16 shards; here they become a checkpoint that
``evaluate.py`` and ``sample.py`` read::

    python -m ddpm_lit.apps.shards split outputs/…/checkpoints/last.ckpt OUT_DIR [--max-mib 15]
    python -m ddpm_lit.apps.shards join OUT_DIR/weights_fp16.*.pt -o model.ckpt

A developer's tool for packaging checkpoints, so it keeps argparse flags rather than being a Hydra command like the others.

Only the learned tensors travel (``state_dict`` entries outside ``diffusion.``, so the EMA
weights when the run kept an average): the schedule's buffers are rebuilt from the
hyperparameters on joining, exactly as training computed them. float16 keeps 11 significant
bits, so the joined weights differ from the originals by at most 2⁻¹¹ relatively.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import lightning
import torch

from ddpm_lit.training.checkpointing import read_checkpoint
from ddpm_lit.training.module import DDPMModule

PREFIX = "weights_fp16"
COMPUTED = ("diffusion.",)  # rebuilt from the hyperparameters, never shipped


def split(ckpt_path: str | Path, out_dir: str | Path, max_mib: float = 15.0) -> list[Path]:
    """Write the checkpoint's learned weights as float16 shards of at most ``max_mib`` MiB each
    (``weights_fp16.<i>.pt``; the first also holds the hyperparameters). Returns their paths."""
    ckpt = read_checkpoint(ckpt_path, mmap=False)
    hparams, state = ckpt["hyper_parameters"], ckpt["state_dict"]
    ema = "current_model_state" in ckpt
    budget = int(max_mib * 2**20) - 2**16  # room for the pickle's own bytes
    parts: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for key, value in state.items():
        if key.startswith(COMPUTED):
            continue
        value = value.half() if value.is_floating_point() else value
        size = value.numel() * value.element_size()
        if size > budget:
            raise ValueError(f"{key} alone ({size / 2**20:.1f} MiB) exceeds a shard of {max_mib} MiB")
        if used + size > budget and parts[-1]:
            parts.append({})
            used = 0
        parts[-1][key] = value.contiguous()
        used += size
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(parts):
        path = out_dir / f"{PREFIX}.{i}.pt"
        payload: dict[str, Any] = {"part": i, "parts": len(parts), "state_dict": part}
        if i == 0:
            payload.update(hyper_parameters=dict(hparams), ema_weights=ema, source=str(ckpt_path),
                           lightning_version=ckpt.get("pytorch-lightning_version"))
        torch.save(payload, path)
        paths.append(path)
    return paths


def join(paths: list[str | Path]) -> dict[str, Any]:
    """The checkpoint (``state_dict``, ``hyper_parameters``) that ``split``'s shards hold."""
    loaded = sorted((torch.load(p, map_location="cpu", weights_only=True) for p in paths), key=lambda s: s["part"])
    parts = loaded[0]["parts"] if loaded else 0
    if [s["part"] for s in loaded] != list(range(parts)):
        raise ValueError(f"expected shards 0…{parts - 1} of {PREFIX}, got parts {[s['part'] for s in loaded]}")
    head = loaded[0]
    module = DDPMModule(**head["hyper_parameters"])
    state = module.state_dict()  # the schedule's buffers as the hyperparameters give them
    shipped = {k: v for s in loaded for k, v in s["state_dict"].items()}
    missing = [k for k in state if k not in shipped and not k.startswith(COMPUTED)]
    unknown = [k for k in shipped if k not in state]
    if missing or unknown:
        raise ValueError(f"the shards do not fit the model of their hyperparameters: missing {missing[:5]}, "
                         f"unknown {unknown[:5]}")
    for key, value in shipped.items():
        state[key] = value.to(state[key].dtype)

    checkpoint: dict[str, Any] = {
        "state_dict": state,
        "hyper_parameters": head["hyper_parameters"],
        "pytorch-lightning_version": head.get("lightning_version") or lightning.__version__,
    }
    if head.get("ema_weights"):  # load_module reports EMA weights by this key's presence
        checkpoint["current_model_state"] = {}
    return checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split", help="a checkpoint -> float16 shards")
    s.add_argument("ckpt_path")
    s.add_argument("out_dir")
    s.add_argument("--max-mib", type=float, default=15.0)
    j = sub.add_parser("join", help="shards -> a checkpoint evaluate.py and sample.py read")
    j.add_argument("shards", nargs="+")
    j.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    if args.command == "split":
        for path in split(args.ckpt_path, args.out_dir, args.max_mib):
            print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)")
    else:
        torch.save(join(args.shards), args.output)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
