"""Score a model: `python evaluate.py ckpt_path=<.ckpt>` or `python evaluate.py samples_path=<.npz>`."""

import sys

import hydra
from omegaconf import DictConfig

from ddpm_lit.errors import UserError
from ddpm_lit.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = evaluate(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return metrics["samples"].get("fid", metrics["samples"].get("mnist_fid"))


if __name__ == "__main__":
    main()
