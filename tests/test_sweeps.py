"""Multirun setups: the SLURM launcher (hydra/launcher=slurm) and the Optuna search of val/classifier_fid
(hparams_search=val_classifier_fid_optuna), also as one study that several processes fill (hydra.sweeper.storage)."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import submitit
from conftest import CONF_DIR, ROOT, TINY, compose_train_cfg, run_command
from hydra import compose, initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.types import HydraContext
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationValidationError

from ddpm_lit.apps.train import build

SLURM = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "hydra.launcher.partition=gpu"]
SEARCH = "hparams_search=val_classifier_fid_optuna"
# The search at test size: tiny trials of one epoch scored on a few images (seconds each on 2 CPU cores).
TINY_SEARCH = [SEARCH, *TINY, "logger=csv", "data.check_md5=false", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
               "trainer.limit_val_batches=1", "final_samples.num=0", "data.val_size=32", "model.fid_reference_size=32",
               "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2"]


def compose_with_hydra(overrides: list[str]) -> DictConfig:
    """``train.yaml`` with its ``hydra`` node, as the launcher and sweeper see it."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def fake_slurm_commands(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``srun`` (which submitit looks for) and an ``sbatch`` that accepts any script as job 4242."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text('#!/bin/sh\necho "Submitted batch job 4242"\n')
    for command in bin_dir.iterdir():
        command.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def submit_to_fake_slurm(overrides: list[str], job_overrides: list[list[str]], tmp_path: Path, monkeypatch) -> Path:
    """Launch ``job_overrides`` with the launcher that ``overrides`` compose, as Hydra's multirun does,
    against a fake sbatch; return the sweep dir."""
    fake_slurm_commands(tmp_path / "bin", monkeypatch)
    # The jobs never run: their results are stand-ins.
    monkeypatch.setattr(submitit.SlurmJob, "results", lambda job: [f"result of {job.job_id}"])
    sweep_dir = tmp_path / "sweep"

    def task(cfg: DictConfig) -> None:
        raise AssertionError("a submitted job must not run in the test process")

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"hydra.sweep.dir={sweep_dir}"], return_hydra_config=True)
        context = HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=Callbacks(cfg))
        launcher = Plugins.instance().instantiate_launcher(hydra_context=context, task_function=task, config=cfg)
        returns = launcher.launch(job_overrides, initial_job_idx=0)
    # one job is submitted as such, more as an array (ids 4242_0, 4242_1, ...)
    ids = ["4242"] if len(job_overrides) == 1 else [f"4242_{i}" for i in range(len(job_overrides))]
    assert returns == [f"result of {job_id}" for job_id in ids]
    return sweep_dir


def sbatch_flags(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script, flags=re.M))


def test_slurm_launcher_gives_one_task_per_device(tmp_path: Path) -> None:
    cfg = compose_with_hydra(SLURM)
    launcher = cfg.hydra.launcher
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "slurm"
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.partition == "gpu"
    assert launcher.max_num_timeout > 0  # timed-out or preempted jobs are requeued
    assert launcher.cpus_per_task >= 1 and launcher.mem_gb > 0 and launcher.timeout_min > 0
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"


def test_slurm_launcher_needs_an_integer_device_count() -> None:
    cfg = compose_with_hydra(["hydra/launcher=slurm", "trainer=ddp"])  # trainer.devices=auto
    with pytest.raises(InterpolationValidationError, match="'auto' .* could not be converted to Integer"):
        instantiate(cfg.hydra.launcher)


def test_without_a_launcher_override_jobs_run_in_process() -> None:
    for overrides in ([], [SEARCH]):
        cfg = compose_with_hydra(overrides)
        assert cfg.hydra.runtime.choices["hydra/launcher"] == "basic"
        assert cfg.hydra.launcher._target_ == "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def test_slurm_launcher_submits_a_job_array_of_the_sweep(tmp_path: Path, monkeypatch) -> None:
    jobs = [["schedule=linear"], ["schedule=cosine"]]
    sweep_dir = submit_to_fake_slurm(SLURM, jobs, tmp_path, monkeypatch)

    (script_path,) = (sweep_dir / ".submitit").glob("4242/4242_submission.sh")
    script = script_path.read_text()
    flags = sbatch_flags(script)
    assert {k: flags[k] for k in ("nodes", "ntasks-per-node", "gpus-per-node", "partition", "array")} == {
        "nodes": "2", "ntasks-per-node": "4", "gpus-per-node": "4", "partition": "gpu", "array": "0-1%2",
    }
    assert flags["signal"] == "USR2@120"  # submitit's requeue signal, 120 s before the time limit
    # srun starts one process per task, the launch Lightning's SLURMEnvironment expects
    (command,) = [line for line in script.splitlines() if line.startswith("srun ")]
    assert command.endswith(f"-m submitit.core._submit {sweep_dir}/.submitit/%j")

    # One pickled job per sweep entry; a requeued job resubmits the same overrides.
    max_num_timeout = compose_with_hydra(SLURM).hydra.launcher.max_num_timeout
    for i, overrides in enumerate(jobs):
        submission = submitit.helpers.DelayedSubmission.load(sweep_dir / ".submitit" / f"4242_{i}" / f"4242_{i}_submitted.pkl")
        assert submission.args[0] == overrides and submission.args[2] == i
        assert submission._timeout_countdown == max_num_timeout
        requeued = submission.function.checkpoint(*submission.args)
        assert requeued.args == submission.args


def test_lightning_accepts_the_slurm_tasks_it_is_given(tmp_path: Path, monkeypatch) -> None:
    sweep_dir = submit_to_fake_slurm(SLURM, [["seed=1"]], tmp_path, monkeypatch)
    (script_path,) = (sweep_dir / ".submitit").glob("4242/4242_submission.sh")
    flags = sbatch_flags(script_path.read_text())
    nodes, per_node = int(flags["nodes"]), int(flags["ntasks-per-node"])
    # What SLURM sets in the 6th process (2nd node, 2nd device) of that allocation.
    for name, value in {
        "SLURM_NTASKS": nodes * per_node, "SLURM_NTASKS_PER_NODE": per_node, "SLURM_NNODES": nodes,
        "SLURM_PROCID": per_node + 1, "SLURM_LOCALID": 1, "SLURM_NODEID": 1,
        "SLURM_JOB_NAME": "train", "SLURM_NODELIST": "node[1-2]",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # else Lightning sets it for the rest of the session
    # Building a rank-5 trainer sets Lightning's process-wide rank; restore it afterwards, or the
    # rank-zero-only parts (loggers) of later tests in this process would stay silent.
    from lightning_utilities.core.rank_zero import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)

    def launch(devices: int) -> str:
        cfg = compose_train_cfg([*SLURM, f"trainer.devices={devices}", "trainer.accelerator=cpu"], tmp_path, tmp_path)
        trainer = build(cfg.trainer, logger=False, precision="32-true")  # train.py resolves trainer.precision=auto
        assert type(trainer.strategy.cluster_environment).__name__ == "SLURMEnvironment"
        assert (trainer.world_size, trainer.global_rank, trainer.node_rank, trainer.local_rank) == (8, 5, 1, 1)
        return trainer.strategy.launcher.launch(lambda: "fit starts")

    assert launch(devices=per_node) == "fit starts"
    with pytest.raises(ValueError, match="ntasks-per-node"):
        launch(devices=2)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:optuna.*")  # Optuna 2's SQLAlchemy 1.x imports
def test_val_classifier_fid_search_space() -> None:
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import (
        create_optuna_distribution_from_override,
    )

    cfg = compose_with_hydra([SEARCH, "experiment=quick"])
    sweeper = cfg.hydra.sweeper
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "optuna"
    assert sweeper._target_ == "hydra_plugins.ddpm_lit_sweeper.SharedStudyOptunaSweeper"
    assert cfg.optimized_metric == "val/classifier_fid" and cfg.model.val_classifier_fid is True and cfg.model.sample_every_n_epochs >= 1
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert sweeper.direction == "minimize" and sweeper.storage is None and sweeper.n_jobs == 1
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed is not None
    assert sweeper.sampler.n_startup_trials < sweeper.n_trials
    parser = OverridesParser.create()
    space = {k: create_optuna_distribution_from_override(parser.parse_override(f"{k}={v}"))
             for k, v in sweeper.params.items()}
    assert space == {
        "model.optimizer.lr": optuna.distributions.LogUniformDistribution(1e-4, 2e-3),
        "schedule": optuna.distributions.CategoricalDistribution(["linear", "cosine"]),
        "model.warmup_steps": optuna.distributions.CategoricalDistribution([0, 500]),
    }


def test_val_classifier_fid_search_runs_trials_and_reports_the_best(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    proc = run_command("train.py", [*TINY_SEARCH, f"paths.data_dir={synthetic_mnist_dir}", f"paths.log_dir={tmp_path / 'logs'}"],
                       cwd=tmp_path)  # the Optuna sweeper runs its trials in the command's process, here this one
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]

    trials = []
    for job in jobs:
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert cfg.optimized_metric == "val/classifier_fid"
        fid = json.loads((job / "metrics.json").read_text())["val/classifier_fid"]
        assert math.isfinite(fid) and fid > 0
        params = {"model.optimizer.lr": cfg.model.optimizer.lr, "schedule": cfg.schedule.name, "model.warmup_steps": cfg.model.warmup_steps}
        assert 1e-4 <= params["model.optimizer.lr"] <= 2e-3
        assert params["schedule"] in ("linear", "cosine") and params["model.warmup_steps"] in (0, 500)
        trials.append((fid, params))
    assert trials[0][1] != trials[1][1]

    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    best_fid, best_params = min(trials, key=lambda trial: trial[0])
    assert results.best_value == pytest.approx(best_fid, rel=1e-12)
    assert OmegaConf.to_container(results.best_params) == best_params

    # The sweep summary: what the trials varied, their val/classifier_fid, Optuna's best, and val/classifier_fid per epoch.
    proc = run_command("ddpm_lit.summarize", [f"dirs={sweep_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (sweep_dir / "runs.md").read_text()
    assert "| model.optimizer.lr |" in text and "Optuna's best: " in text and f"{best_fid:.2f}" in text
    assert (sweep_dir / "runs_val_classifier_fid.png").is_file() and (sweep_dir / "runs_loss.png").is_file()
    # The sweep's page, written by the SweepPage callback when the multirun ended: Optuna's best on it.
    page = (sweep_dir / "page.html").read_text()
    assert re.search(rf'id="optuna-best"[^>]*>Optuna\'s best: {best_fid:.4g} with', page.replace("&#39;", "'")), page[:500]
    # and the same job as the page's best by val/classifier_fid, which the metric catalogue says is better lower
    best_job = jobs[[fid for fid, _ in trials].index(best_fid)].name
    assert re.search(rf'id="best-job"[^>]*>best by val/classifier_fid \(lower is better\): job <strong>{best_job}</strong>', page)


# ---- one Optuna study filled by several processes (hydra.sweeper.storage) ---------------------------------------
STUDY = "val_classifier_fid"  # hydra.sweeper.study_name of the search


def sweep_in_process(overrides: list[str], task: Callable[[DictConfig], float]) -> None:
    """Hydra's multirun of train.yaml with ``overrides``, as ``train.py`` runs it (the search's
    sweeper, Hydra's basic launcher, a job dir per trial), with ``task`` as the job instead of training."""
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            GlobalHydra.instance().hydra.multirun(config_name="train", task_function=task, overrides=overrides,
                                                  with_log_configuration=False)
    finally:
        logging.root.handlers[:], logging.root.level = handlers, level  # each job's logging config pointed them at its dir


def trial_params(cfg: DictConfig) -> dict[str, object]:
    """A job's values of what the search varies, by the names Optuna gives them."""
    return {"model.optimizer.lr": cfg.model.optimizer.lr, "schedule": cfg.schedule.name, "model.warmup_steps": cfg.model.warmup_steps}


@pytest.mark.filterwarnings("ignore::DeprecationWarning:optuna.*")  # Optuna 2's SQLAlchemy 1.x imports
def test_a_shared_study_names_each_job_dir_by_its_trial_number(tmp_path: Path) -> None:
    """The sweeper's use of the plugin's private _impl (ddpm_lit.config.sweeper, the one module
    allowed it) through Hydra's real multirun: a second process joining the study writes its
    trials' jobs beside the first's, in dirs named by the study's trial numbers, not Hydra's job
    index (which restarts at 0). Fails when _configure_trials or the launcher's use of
    hydra.sweep.subdir changes."""
    import optuna

    storage, sweep_dir = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "sweep"
    jobs: dict[str, dict[str, object]] = {}

    def task(cfg: DictConfig) -> float:
        hydra = HydraConfig.get()
        value = float(cfg.model.optimizer.lr) * 1e4  # a trial's own value
        jobs[Path(hydra.runtime.output_dir).name] = {"params": trial_params(cfg), "value": value, "job_num": hydra.job.num,
                                                     "override_dirname": hydra.job.override_dirname,
                                                     "wandb_name": cfg.logger.wandb.name}
        return value

    overrides = [SEARCH, f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={sweep_dir}", f"paths.log_dir={tmp_path}",
                 "~hydra.callbacks.sweep_page"]
    sweep_in_process([*overrides, "hydra.sweeper.n_trials=2"], task)
    first = dict(jobs)
    sweep_in_process([*overrides, "hydra.sweeper.n_trials=3"], task)  # another process, later, on the same study

    assert list(first) == ["0", "1"] and list(jobs) == ["0", "1", "2", "3", "4"]
    assert [jobs[n]["job_num"] for n in jobs] == [0, 1, 0, 1, 2]  # Hydra's index restarted; the dirs did not
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1", "2", "3", "4"]
    study = optuna.load_study(study_name=STUDY, storage=storage)
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4] and all(t.state.name == "COMPLETE" for t in trials)
    for trial in trials:
        job, folder = jobs[str(trial.number)], sweep_dir / str(trial.number)
        assert job["params"] == trial.params and job["value"] == trial.value
        assert OmegaConf.load(folder / ".hydra" / "hydra.yaml").hydra.runtime.output_dir == str(folder)
        # The job dir is a Hydra override: not a task override, so not in the W&B run's name.
        assert f"hydra.sweep.subdir={trial.number}" in OmegaConf.load(folder / ".hydra" / "hydra.yaml").hydra.overrides.hydra
        assert not any("subdir" in o for o in OmegaConf.load(folder / ".hydra" / "overrides.yaml"))
        assert "subdir" not in job["override_dirname"] and job["wandb_name"] == job["override_dirname"]
        assert f"model.optimizer.lr={trial.params['model.optimizer.lr']}" in job["override_dirname"]
    # The second process's sampler drew afresh: with the config's seed it would repeat the first's trials.
    assert trials[2].params["model.optimizer.lr"] != trials[0].params["model.optimizer.lr"]

    # optimization_results.yaml: the study's best, over both processes' trials.
    best = min(trials, key=lambda t: t.value)
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert (results.best_value, results.best_trial, OmegaConf.to_container(results.best_params)) == (best.value, best.number, best.params)
    assert (results.complete_trials, results.running_trials, results.study_name) == (5, 0, STUDY)


def test_only_the_sweeper_module_uses_the_optuna_plugins_private_internals() -> None:
    users = [str(p.relative_to(ROOT)) for folder in ("ddpm_lit", "hydra_plugins") for p in sorted((ROOT / folder).rglob("*.py"))
             if "hydra_optuna_sweeper._impl" in p.read_text() or "hydra_optuna_sweeper import _impl" in p.read_text()]
    assert users == ["ddpm_lit/config/sweeper.py"]


@pytest.mark.parametrize("url", ["sqlite:////nonexistent/dir/study.db", "postgresql://user:secret@nohost/db", "garbage"])
def test_a_storage_that_cannot_be_opened_stops_the_search_with_one_line(url: str, tmp_path: Path) -> None:
    """The real command line: exit code 2 and one `error:` line (the URL's password hidden), before any trial runs."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "HYDRA_FULL_ERROR", "WANDB_SERVICE")}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), SEARCH, f"hydra.sweeper.storage={url}",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}", f"paths.log_dir={tmp_path}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: hydra.sweeper.storage={url.replace('secret', '***')} cannot be opened: "), line
    assert "secret" not in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no sweep dir, no job, no database file


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:optuna.*")
def test_two_processes_started_together_fill_one_study(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    import optuna

    storage, sweep_dir = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "sweep"
    # WANDB_SERVICE: a W&B service an in-process test of this worker started (tests/test_faults.py, start_train)
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "HYDRA_FULL_ERROR", "WANDB_SERVICE")}
    command = [sys.executable, str(ROOT / "train.py"), *TINY_SEARCH, f"paths.data_dir={synthetic_mnist_dir}",
               f"paths.log_dir={tmp_path / 'logs'}", f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={sweep_dir}"]
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]

    # One study of 2 trials from each process, numbered without a gap or a repeat, each in a job dir of its number.
    study = optuna.load_study(study_name=STUDY, storage=storage)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3] and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()) == ["0", "1", "2", "3"]
    for trial in trials:
        job = sweep_dir / str(trial.number)
        assert json.loads((job / "metrics.json").read_text())["val/classifier_fid"] == pytest.approx(trial.value, rel=1e-12)
        assert trial_params(OmegaConf.load(job / ".hydra" / "config.yaml")) == trial.params
    assert len({t.params["model.optimizer.lr"] for t in trials}) == 4  # each process's sampler drew its own trials

    # The study's best, whichever process found it, in optimization_results.yaml, on the page and in runs.md.
    best = study.best_trial
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert (results.best_value, results.best_trial, results.complete_trials) == (best.value, best.number, 4)
    page = (sweep_dir / "page.html").read_text().replace("&#39;", "'")
    assert re.search(rf"id=\"optuna-best\"[^>]*>Optuna's best: {best.value:.4g} with .*\(trial {best.number}, the best of the 4 "
                     rf"complete trials of study {STUDY}", page), page[:800]
    assert re.search(rf'id="best-job"[^>]*>best by val/classifier_fid \(lower is better\): job <strong>{best.number}</strong>', page)
    proc = run_command("ddpm_lit.summarize", [f"dirs={sweep_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (sweep_dir / "runs.md").read_text()
    assert f"Optuna's best: {best.value}" in text and f"(trial {best.number}, the best of the 4 complete trials" in text
