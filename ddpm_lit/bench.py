"""Time a training config's model: `python -m ddpm_lit.bench experiment=quick [bench.steps=60] [bench.lightning=false]`."""

import hydra
from omegaconf import DictConfig

import ddpm_lit.config  # noqa: F401  (registers the resolvers conf/ uses)
from ddpm_lit.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    from ddpm_lit.apps.bench import bench  # here, so that --help and a bad override need only Hydra

    exit_on_user_error(bench, cfg)


if __name__ == "__main__":
    main()
