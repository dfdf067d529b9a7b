"""Train a DDPM: `python train.py [experiment=quick] [schedule=cosine] [trainer.max_epochs=50]`."""

import sys

import hydra
from omegaconf import DictConfig

from ddpm_lit.errors import UserError
from ddpm_lit.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return metrics.get(cfg.objective)


if __name__ == "__main__":
    main()
