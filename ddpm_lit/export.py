"""Share a trained model: `python export.py ckpt_path=<run>/checkpoints/last.ckpt out=<folder>`."""

import hydra
from omegaconf import DictConfig

import ddpm_lit.config  # noqa: F401  (registers the resolvers conf/ uses)
from ddpm_lit.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_name="export", config_path="conf")
def main(cfg: DictConfig) -> None:
    from ddpm_lit.apps.export import (
        export,  # here, so that --help and a bad override need only Hydra
    )

    exit_on_user_error(export, cfg)


if __name__ == "__main__":
    main()
