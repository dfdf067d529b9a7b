"""Draw images from a checkpoint: `python sample.py ckpt_path=<run>/checkpoints/last.ckpt n=64 seed=0`."""

import hydra
from omegaconf import DictConfig

import ddpm_lit.config  # noqa: F401  (registers the resolvers conf/ uses)
from ddpm_lit.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_name="sample", config_path="conf")
def main(cfg: DictConfig) -> None:
    from ddpm_lit.apps.sample import (
        sample,  # here, so that --help and a bad override need only Hydra
    )

    exit_on_user_error(sample, cfg)


if __name__ == "__main__":
    main()
