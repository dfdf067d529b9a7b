"""Draw a run's figures again: `python -m ddpm_lit.run_figures run_dir=<run> [redraw=true] [num_samples=16]`."""

import hydra
from omegaconf import DictConfig

import ddpm_lit.config  # noqa: F401  (registers the resolvers conf/ uses)
from ddpm_lit.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="run_figures")
def main(cfg: DictConfig) -> None:
    from ddpm_lit.apps.run_figures import figures  # here, so that --help and a bad override need only Hydra

    exit_on_user_error(figures, cfg)


if __name__ == "__main__":
    main()
