"""The Optuna search's sweeper (``hparams_search=val_classifier_fid_optuna``): hydra-optuna-sweeper's,
with what a study that several processes or machines fill at once needs. Hydra instantiates it
through ``hydra_plugins.ddpm_lit_sweeper`` (Hydra makes sweepers only of classes in that namespace
package).

This is the one module that reaches into the plugin's private ``_impl`` (``OptunaSweeperImpl``, its
``_configure_trials`` and ``_get_directions``); tests/test_sweeps.py runs the sweeper through Hydra
and fails when what it relies on changes."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import Trial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from ddpm_lit.errors import ConfigError, exit_on_user_error, first_line
from ddpm_lit.io import only_one_at_a_time, write_text

log = logging.getLogger(__name__)

RESULTS = "optimization_results.yaml"  # the plugin's name for it, in the sweep dir


class SharedStudySweeper(OptunaSweeperImpl):
    """hydra-optuna-sweeper's sweep (ask ``n_jobs`` trials, launch them, tell their values, until this
    process has run ``n_trials``), changed where processes sharing one study (``storage``) and one
    sweep dir would collide:

    - a trial's job runs in ``<sweep dir>/<trial number>/`` (``hydra.sweep.subdir``): Hydra's job
      index restarts at 0 in every process, the study's trial numbers do not;
    - the storage is opened and the study created before any trial runs: a URL that cannot be
      opened ends the command with one ``error:`` line (exit code 2), and processes starting
      together do not race to create a SQLite file's tables;
    - with a storage, the sampler draws from a fresh seed: with the config's fixed seed every
      process (and every rerun continuing the study) would propose the same trials;
    - ``optimization_results.yaml`` holds the study's best over every process's trials, with its
      trial number and how many trials the study has completed.
    """

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        # Hydra calls setup inside its run_and_report, which turns an exception into a traceback and
        # exit code 1; SystemExit(2) passes through it.
        exit_on_user_error(self._create_study)
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def _create_study(self) -> None:
        if self.storage is None:
            return
        if not self.study_name:
            raise ConfigError("hydra.sweeper.storage is set but hydra.sweeper.study_name is not: processes find "
                              "their shared study by its name")
        url = self.storage if isinstance(self.storage, str) else None  # else a storage object from the config
        try:
            with one_process_creates(url):
                optuna.create_study(study_name=self.study_name, storage=self.storage,
                                    directions=self._get_directions(), load_if_exists=True)
        except ConfigError:
            raise
        except (ImportError, ValueError, RuntimeError, SQLAlchemyError) as err:
            # ImportError: no driver for the URL's database; ValueError: the study exists with another
            # direction; RuntimeError: tables of another Optuna version
            cause = f" ({first_line(err.__cause__)})" if isinstance(err.__cause__, ImportError) else ""
            raise ConfigError(f"hydra.sweeper.storage={shown(self.storage)} cannot be opened: {first_line(err)}{cause}") from err

    def _configure_trials(
        self, trials: list[Trial], search_space_distributions: dict[str, BaseDistribution], fixed_params: dict[str, Any]
    ) -> Sequence[Sequence[str]]:
        """The plugin's overrides of each trial, and its job dir named by its trial number. A Hydra
        override (``hydra.``) is not one of the job's task overrides: it stays out of
        ``hydra.job.override_dirname`` and so out of the W&B run's name."""
        overrides = super()._configure_trials(trials, search_space_distributions, fixed_params)
        return [(*job, f"hydra.sweep.subdir={trial.number}") for trial, job in zip(trials, overrides, strict=True)]

    def sweep(self, arguments: list[str]) -> None:
        if self.storage is not None and isinstance(self.sampler, optuna.samplers.BaseSampler):
            self.sampler.reseed_rng()
            log.info("the study is shared (hydra.sweeper.storage): %s draws from a fresh seed, not the config's",
                     type(self.sampler).__name__)
        super().sweep(arguments)
        if self.storage is not None and len(self._get_directions()) == 1:
            results = Path(self.config.hydra.sweep.dir) / RESULTS
            # read and written under one lock: the process writing last has read the study last, so
            # the file never goes back to an earlier state of it
            with only_one_at_a_time(results):
                study = optuna.load_study(study_name=self.study_name, storage=self.storage)
                write_text(results, OmegaConf.to_yaml(study_results(study)))


def study_results(study: optuna.Study) -> dict[str, Any]:
    """``optimization_results.yaml`` of a single-objective study as the plugin writes it (name,
    best_params, best_value), with the best trial's number (its job dir's name), the study's name
    and its trials by state, as read from the storage now: every process's trials so far."""
    best = study.best_trial
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {"name": "optuna", "best_params": best.params, "best_value": best.value, "best_trial": best.number,
            "study_name": study.study_name, "complete_trials": states.count(TrialState.COMPLETE),
            "running_trials": states.count(TrialState.RUNNING)}


@contextmanager
def one_process_creates(url: str | None) -> Iterator[None]:
    """For a SQLite file: hold a lock beside it while the study is opened or created. Optuna 2
    creates a new file's tables without one, so processes starting together fail with "table ...
    already exists". A database server's URL (or a storage object) is opened as Optuna opens it."""
    if url is None:
        yield
        return
    parsed = make_url(url)
    database = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    folder = Path(database).parent
    if not folder.is_dir():  # sqlite3 says only "unable to open database file"
        raise ConfigError(f"hydra.sweeper.storage={shown(url)} cannot be opened: the folder {folder.absolute()} does not exist "
                          "(an absolute path: sqlite:////abs/path/study.db, four slashes)")
    with only_one_at_a_time(Path(database), lambda: log.info("another process is opening %s; waiting", database)):
        yield


def shown(storage: Any) -> str:
    """A storage URL with its password hidden (``postgresql://user:***@host/db``); as given when it does not parse."""
    if not isinstance(storage, str):
        return repr(storage)
    try:
        return make_url(storage).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return storage
