"""ddpm_lit's Optuna sweeper where Hydra looks for it: Hydra instantiates a sweeper only of a class in
the ``hydra_plugins`` namespace package (``Plugins.is_in_toplevel_plugins_module``). The sweeper
itself is ``ddpm_lit.config.sweeper.SharedStudySweeper``; conf/hparams_search/ names this door."""

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SharedStudyOptunaSweeper(Sweeper):
    """hydra-optuna-sweeper's ``OptunaSweeper`` with ddpm_lit's changes for a shared study; its
    options are the plugin's (``hydra/sweeper: optuna``)."""

    def __init__(self, **options: Any) -> None:
        # Here, as the Optuna plugin's own class imports its _impl: Hydra imports every plugin module
        # whenever a command starts (--help too), and Optuna with SQLAlchemy takes a second.
        from ddpm_lit.config.sweeper import SharedStudySweeper

        self.sweeper = SharedStudySweeper(**options)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        self.sweeper.sweep(arguments)
