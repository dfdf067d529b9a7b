"""Tabulate finished runs, or write a page: `python -m ddpm_lit.summarize dirs=<sweep dir> [html=true]`."""

import hydra
from omegaconf import DictConfig

import ddpm_lit.config  # noqa: F401  (registers the resolvers conf/ uses)
from ddpm_lit.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="summarize")
def main(cfg: DictConfig) -> None:
    from ddpm_lit.apps.summarize import summarize  # here, so that --help and a bad override need only Hydra

    exit_on_user_error(summarize, cfg)


if __name__ == "__main__":
    main()
