"""OmegaConf resolvers used by conf/, registered when ``ddpm_lit`` is imported.

They must not depend on Hydra's runtime config: Hydra's sweepers resolve ``hydra.sweep.dir``
(which uses ``paths.log_dir``) before any job, and so before ``${hydra:...}`` can be resolved.
"""

import os

from omegaconf import OmegaConf


def _wandb_offline() -> bool:
    """W&B stays offline unless the user sets WANDB_MODE=online."""
    return os.environ.get("WANDB_MODE", "offline") != "online"


def register() -> None:
    for name, fn in (("cwd", os.getcwd), ("wandb_offline", _wandb_offline)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
