"""Train a DDPM: `python train.py [experiment=quick] [schedule=cosine] [trainer.max_epochs=50]`."""

import hydra
from omegaconf import DictConfig

import ddpm_lit.config  # noqa: F401  (registers the resolvers conf/ uses)
from ddpm_lit.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from ddpm_lit.apps.train import train  # here, so that --help and a bad override need only Hydra

    metrics = exit_on_user_error(train, cfg)
    return metrics.get(cfg.get("optimized_metric"))  # what a sweeper minimises


if __name__ == "__main__":
    main()
