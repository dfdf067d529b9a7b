"""Score a model: `python evaluate.py ckpt_path=<.ckpt>` or `python evaluate.py samples_path=<.npz>`."""

import hydra
from omegaconf import DictConfig

import ddpm_lit.config  # noqa: F401  (registers the resolvers conf/ uses)
from ddpm_lit.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    from ddpm_lit.apps.evaluate import (
        evaluate,  # here, so that --help and a bad override need only Hydra
    )

    metrics = exit_on_user_error(evaluate, cfg)
    if not metrics:  # a rank other than 0 of devices=N: it drew its share, rank 0 scored them all
        return None
    samples = metrics["samples"]
    return samples.get("fid", samples["classifier_fid"])


if __name__ == "__main__":
    main()
