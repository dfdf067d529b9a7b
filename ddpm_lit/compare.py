"""Compare DDPMs across samplers and step counts: `python -m ddpm_lit.compare models={a:<ckpt>} grid=[ddpm:20,ddim:20] out=<dir>`."""

import hydra
from omegaconf import DictConfig

import ddpm_lit.config  # noqa: F401  (registers the resolvers conf/ uses)
from ddpm_lit.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    from ddpm_lit.apps.compare import compare  # here, so that --help and a bad override need only Hydra

    exit_on_user_error(compare, cfg)


if __name__ == "__main__":
    main()
