"""Compare the model families at one budget: `python -m ddpm_lit.families out=<dir> [minutes=14] [seeds=[0,1,2]]`."""

import hydra
from omegaconf import DictConfig

import ddpm_lit.config  # noqa: F401  (registers the resolvers conf/ uses)
from ddpm_lit.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="families")
def main(cfg: DictConfig) -> None:
    from ddpm_lit.apps.families import families  # here, so that --help and a bad override need only Hydra

    exit_on_user_error(families, cfg)


if __name__ == "__main__":
    main()
