"""``train(cfg)``: build every part from a composed Hydra config, fit, and sample."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ddpm_lit.config.build import build, build_dict, build_loggers
from ddpm_lit.config.schema import TrainSettings
from ddpm_lit.data.sets import check_same_dataset
from ddpm_lit.errors import ConfigError, DataError, RankLost, first_line
from ddpm_lit.internals import process_group_store, reruns_command_line, syncs_batchnorm, wandb_offline
from ddpm_lit.io import remove_partial_files
from ddpm_lit.launches import external_launch, is_rank_zero, lost_a_peer, missing_ranks
from ddpm_lit.reporting.callbacks import fit_metrics
from ddpm_lit.runs import Run, flatten
from ddpm_lit.training.base import (
    MODEL_CLASS_KEY,
    SAMPLED_METRICS,
    class_name,
    family_of_class,
    recorded_dataset,
)
from ddpm_lit.training.checkpointing import AtomicCheckpointIO, read_checkpoint
from ddpm_lit.training.loggers import (
    close_loggers,
    open_loggers,
    quiet_lightning_tips,
    quiet_lightning_warnings,
)
from ddpm_lit.training.ema import EMA
from ddpm_lit.training.module import SPEED_HPARAMS, DDPMModule
from ddpm_lit.training.planning import Estimate, RunLength, RunPlan, format_seconds, plan_run, run_length
from ddpm_lit.training.ranks import in_multirun

log = logging.getLogger(__name__)


def train(cfg: DictConfig, extra_callbacks: list[L.Callback] | tuple[L.Callback, ...] = ()) -> dict[str, float]:
    """Fit the model described by ``cfg``; return the final metrics (``train/loss``, ``val/loss``, ...).

    ``extra_callbacks`` join the config's (the benchmark times the real run with one).
    ``cfg.ckpt_path`` (``last`` or a path) continues a run: weights, optimizer, LR schedule, EMA,
    step counter and loops from the checkpoint, and the W&B run of the run dir. What a run
    writes after the fit (final samples, metrics.json, figures, its page) are callbacks of
    ``conf/callbacks/default.yaml``.
    """
    started = time.perf_counter()
    s = TrainSettings.parse(cfg)  # the run's own settings, checked
    quiet_lightning_tips()
    quiet_lightning_warnings()
    if s.seed is not None:
        L.seed_everything(s.seed, workers=True)

    # Cheap parts first: a bad value fails here, before data is fetched or anything runs.
    model = build(cfg.model)
    datamodule = build(cfg.data)
    callbacks = build_dict(checkpoints_without_validation(cfg)) + list(extra_callbacks)
    _check_monitors(callbacks, model, s.optimized_metric)
    ckpt_path = prepare_run_dir(s, model, datamodule)
    keep_config(cfg, s.output_dir)
    datamodule.prepare_data()  # a missing or corrupted file stops the run before a logger run or a checkpoint exists
    wandb_mode = os.environ.get("WANDB_MODE")
    # ckpt_path set: the run dir's W&B run goes on, even when the run died before its first checkpoint
    loggers: list[Logger] = open_loggers(build_loggers(cfg.get("logger"), resuming=s.ckpt_path is not None))
    ema = next((c for c in callbacks if isinstance(c, EMA)), None)
    plan = plan_time(s, model, time.perf_counter() - started, cfg=cfg, datamodule=datamodule, ema=ema)
    trainer: L.Trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()],
                               **plan.trainer)
    _check_launcher(trainer)
    _check_sync_batchnorm(trainer, model)
    if trainer.is_global_zero:
        keep_plan(s.output_dir, plan.record())
        log.info("%s", describe_start(cfg, s.output_dir, model, trainer, plan.expected, ckpt_path, plan.advice))
    try:
        for logger in loggers:
            logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "plan": plan.record()})
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        # Lightning stops after the batch in progress and the on_exception ModelCheckpoint has saved
        # on_exception.ckpt. Exit as a terminated process, so schedulers and sweeps see it.
        log.warning("stopped by SIGTERM at step %d; continue with ckpt_path=last", trainer.global_step)
        raise SystemExit(128 + signal.SIGTERM) from None
    except RuntimeError as e:
        if not lost_a_peer(e):
            raise
        raise RankLost(rank_lost_message(trainer, Run(s.output_dir), e)) from None
    finally:
        close_loggers(loggers, wandb_mode)
    metrics = fit_metrics(trainer.callbacks) or {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero:
        log.info("%s", describe_end(metrics, s.output_dir, trainer, loggers, time.perf_counter() - started, plan.estimate))
    return metrics


def rank_lost_message(trainer: L.Trainer, run: Run, error: BaseException) -> str:
    """What the ranks left say when a collective call lost another rank: which one, where it
    stopped and the checkpoint to go on from (the ranks still alive answer a roll call first)."""
    launch = external_launch()
    me = launch.describe() if launch is not None else f"rank {trainer.global_rank} of {trainer.world_size}"
    missing = missing_ranks(trainer.global_rank, trainer.world_size, store=process_group_store())
    who = (f"rank {', '.join(map(str, missing))} stopped" if missing
           else f"another rank stopped ({first_line(error)[:120]})")
    ckpt = run.newest_checkpoint()
    after = (f"continue from {ckpt} by restarting every rank with ckpt_path=last" if ckpt is not None
             else "no checkpoint was written yet")
    return f"{me}: {who} at step {trainer.global_step} (killed, or lost with its node); {after}"


def prepare_run_dir(s: TrainSettings, model: Any, datamodule: Any) -> str | None:
    """The checkpoint the run continues from (None: a fresh start), checked against the model
    and data the config builds; the files a killed run left half-written removed (rank 0)."""
    if is_rank_zero():  # rank 0 alone writes checkpoints
        for stale in remove_partial_files(s.output_dir):  # a write (checkpoint, figure, ...) the last run was killed in
            log.info("removed %s, half-written when the run was killed", stale)
    ckpt_path = resume_checkpoint(s.ckpt_path, Run(s.output_dir))
    model.allow_other_dataset = s.allow_other_dataset
    if ckpt_path is not None:
        _check_same_model(ckpt_path, model)
        _check_same_dataset(ckpt_path, datamodule, model.allow_other_dataset)
    return ckpt_path


def keep_config(cfg: DictConfig, run_dir: Path) -> None:
    """The run's config in its folder (``Run.write_config``) when ``train(cfg)`` was called from
    Python: ``@hydra.main`` has written it otherwise."""
    run = Run(run_dir)
    if not run.config_file.exists() and is_rank_zero():
        config = OmegaConf.to_container(cfg, resolve=False)
        config.pop("hydra", None)
        run.write_config(config)


def checkpoints_without_validation(cfg: DictConfig) -> DictConfig | None:
    """``cfg.callbacks``, with the checkpoints that save when validation ends saving when the
    training epoch ends instead if the run never validates (``trainer.limit_val_batches=0``):
    they would write nothing otherwise. (Resuming such a checkpoint counts its epoch twice in
    Lightning; a run that validates avoids it.)"""
    callbacks = cfg.get("callbacks")
    if not callbacks or cfg.trainer.get("limit_val_batches") not in (0, 0.0):
        return callbacks
    callbacks = callbacks.copy()
    for node in callbacks.values():
        if isinstance(node, DictConfig) and node.get("save_on_train_epoch_end") is False:
            node.save_on_train_epoch_end = True
    return callbacks


def plan_time(s: TrainSettings, model: Any, elapsed: float, cfg: DictConfig | None = None,
              datamodule: Any = None, ema: EMA | None = None) -> RunPlan:
    """How the run trains and how long it takes (``training.planning.plan_run``), on the
    trainer's device: ``auto`` settings chosen by timing, ``time_budget_minutes`` as
    ``max_time``, and the expected duration of a run bounded by epochs or steps (counted from
    ``cfg.trainer`` and ``datamodule``'s images, when given), each timed step updating ``ema``'s
    average as the run's will."""
    cuda = s.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    processes = planned_world_size(cfg.trainer, cuda) if cfg is not None else 1
    length = run_length_of(cfg, s, model, datamodule, processes) if cfg is not None and datamodule is not None else None
    return plan_run(model, precision=s.precision, budget_minutes=s.time_budget_minutes,
                    device=torch.device("cuda" if cuda else "cpu"), batch_size=s.batch_size,
                    final_samples=s.final_samples, final_sample_steps=s.final_sample_steps,
                    reserve_seconds=s.post_fit_reserve_seconds, elapsed=elapsed, length=length, ema=ema,
                    processes=processes)


def planned_world_size(trainer_cfg: DictConfig, cuda: bool) -> int:
    """The processes the trainer config asks for (devices × num_nodes; ``auto`` devices: every
    GPU, or one CPU process), or a torchrun/SLURM launch's world size."""
    launch = external_launch()
    if launch is not None:
        return launch.world_size
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, int) and devices > 0:
        n = devices
    elif isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        n = len(devices)
    else:
        n = torch.cuda.device_count() if cuda else 1
    return max(n, 1) * int(trainer_cfg.get("num_nodes") or 1)


def run_length_of(cfg: DictConfig, s: TrainSettings, model: Any, datamodule: Any, world_size: int) -> RunLength | None:
    """What the run will do (``training.planning.RunLength``), counted from the config and the
    data module's sets (set up here: Lightning's own ``setup`` then finds them loaded); None for
    a data module without ``data_train``/``data_val``."""
    datamodule.setup("fit")
    train_set, val_set = getattr(datamodule, "data_train", None), getattr(datamodule, "data_val", None)
    if train_set is None or val_set is None:
        return None
    t, hp = cfg.trainer, model.hparams
    chain = {"num_timesteps": model.num_timesteps} if model.reverse_chain else {}
    val_draw = (hp.get("num_val_samples") or 0) * model.evaluations_per_image(hp.get("val_sample_steps"), None, **chain)
    final = s.final_samples * model.evaluations_per_image(s.final_sample_steps, None, **chain)
    return run_length(
        train_images=len(train_set), val_images=len(val_set), batch_size=s.batch_size,
        world_size=world_size, max_epochs=t.get("max_epochs"), max_steps=t.get("max_steps") or -1,
        steps_per_batch=getattr(model, "optimizer_steps_per_batch", 1),
        limit_train_batches=t.get("limit_train_batches"), limit_val_batches=t.get("limit_val_batches"),
        check_val_every_n_epoch=t.get("check_val_every_n_epoch"), sample_every_n_epochs=hp.get("sample_every_n_epochs") or 0,
        val_sample_evaluations=val_draw, final_evaluations=final,
    )


def keep_plan(run_dir: Path, record: dict[str, Any]) -> None:
    """The plan (settings chosen, rates measured, expected duration) as ``plan`` in the run's
    ``.hydra/config.yaml``, beside the config that asked for it (``trainer.precision: auto``)."""
    run = Run(run_dir)
    config = run.config()
    if config:
        config["plan"] = record
        run.write_config(config)


def describe_start(
    cfg: DictConfig, out: Path, model: Any, trainer: L.Trainer, expected: str | None, ckpt_path: str | None,
    advice: str | None = None,
) -> str:
    """What the run is about to do, said once before training: run dir, data, model size,
    device and precision, and how long it will take."""
    params = sum(p.numel() for p in model.parameters())
    data = cfg.data
    limit = f", first {data.limit_train} training images" if data.get("limit_train") else ""
    steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
    if expected is None:
        length = f"max_steps={steps}" if steps else f"max_epochs={trainer.max_epochs}"
        expected = f"{length}; the progress bar shows the rate (time_budget_minutes sets a wall-clock limit)"
    lines = [
        f"run dir:   {out}" + (f" (continuing {ckpt_path})" if ckpt_path else ""),
        f"data:      {data.get('dataset') or data._target_.rsplit('.', 1)[-1]}"
        + (f" from {data.images}" if data.get("images") else f" from {data.data_dir}")
        + f", batch {data.batch_size}{limit}",
        f"model:     {params / 1e6:.2f} M parameters, {model.describe()}",
        f"device:    {trainer.strategy.root_device} × {trainer.world_size}, precision {trainer.precision}"
        + "".join(f", {v}" for v in speed_words(model)),
        f"expected:  {expected}",
    ] + ([advice] if advice else [])
    return "starting:\n  " + "\n  ".join(lines)


def speed_words(model: Any) -> list[str]:
    """``channels-last``/``contiguous`` and ``compiled``/``eager``, for a model with those settings."""
    own = model.speed_settings()
    words = []
    if "channels_last" in own:
        words.append("channels-last" if own["channels_last"] is True else "contiguous")
    if "compile" in own:
        words.append("compiled" if own["compile"] is True else "eager")
    return words


def describe_end(metrics: dict[str, float], out: Path, trainer: L.Trainer, loggers: list[Logger], seconds: float,
                 estimate: Estimate | None = None) -> str:
    """The final metrics and where the run's outputs are, said once at the end; the first whole
    epoch's time beside the start-up estimate of it."""
    shown = ", ".join(f"{k} {metrics[k]:.4g}" for k in sorted(metrics) if "/" in k)
    lines = [f"metrics:     {shown or 'none logged'} after {metrics.get('global_step', 0):.0f} steps"]
    epoch = metrics.get("first_epoch_seconds")
    if epoch is not None and estimate is not None and estimate.length.validations:
        expected = estimate.epoch_seconds
        lines.append(f"an epoch:    {format_seconds(epoch)} (expected at start: {format_seconds(expected)}, "
                     f"{100 * (expected - epoch) / epoch:+.0f} %)")
    if (out / "samples" / "final.png").exists():
        lines.append(f"samples:     {out / 'samples' / 'final.png'}")
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    lines.append(f"checkpoints: {out / 'checkpoints'}" + (f" (best {Path(best).name})" if best else ""))
    if (out / "figures").is_dir():
        lines.append(f"figures:     {out / 'figures'}")
    for logger in loggers:
        if isinstance(logger, WandbLogger):  # its run exists: training logged to it
            where = getattr(logger.experiment, "dir", None)
            lines.append(f"W&B run:     {Path(where).parent if where else logger.save_dir}"
                         + (" (offline: `wandb sync` uploads it)" if wandb_offline(logger) else ""))
    return f"finished in {format_seconds(seconds)}:\n  " + "\n  ".join(lines)


def resume_checkpoint(ckpt_path: str | None, run: Run) -> str | None:
    """The checkpoint a run continues from, or None to start afresh.

    ``last``: the newest ``last*.ckpt`` or ``on_exception.ckpt`` of this run dir; None when
    there is none yet, so that a sweep started with ``ckpt_path=last`` resumes the jobs that
    ran and starts the others. With ``ckpt_path`` null, a run dir that already holds one (a
    requeued sweep job) continues from it too: Lightning does so whenever an on-exception
    checkpoint is configured, and resolving it here keeps the checks and the W&B run id.
    """
    if ckpt_path is None or str(ckpt_path) == "last":
        found = run.newest_checkpoint()
        if found is None:
            if ckpt_path is not None:
                log.warning("ckpt_path=last: no checkpoint in %s yet; starting afresh", run.checkpoint_dir)
            return None
        log.info("continuing from %s", found)
        return str(found)
    if Path(ckpt_path).is_dir():
        raise ConfigError(f"ckpt_path={ckpt_path} is a folder: an exported model (export.py) holds the weights alone; "
                          "training resumes from a .ckpt of train.py")
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint")
    return str(ckpt_path)


def _check_same_model(ckpt_path: str, model: Any) -> None:
    """A resumed run must build the model it saved: the same family, and the settings that differ listed."""
    try:
        ckpt = read_checkpoint(ckpt_path)
    except DataError as e:
        raise ConfigError(f"ckpt_path={ckpt_path}: {e}") from None
    saved = ckpt["hyper_parameters"]
    saved_class = ckpt.get(MODEL_CLASS_KEY, class_name(DDPMModule))
    if saved_class != class_name(type(model)):
        raise ConfigError(f"ckpt_path={ckpt_path} is a checkpoint of {family_of(saved_class)}, but the config builds "
                          f"a {model.family} ({class_name(type(model))}); resume with the model= it was trained with")

    def plain(value: Any) -> Any:  # tuples and lists, dicts and DictConfigs compare equal
        return json.loads(json.dumps(value, default=str))

    saved, now = flatten(plain(saved)), flatten(plain(dict(model.hparams)))
    differ = [k for k in sorted(set(saved) | set(now)) if k not in SPEED_HPARAMS and saved.get(k) != now.get(k)]
    if differ:
        details = "; ".join(f"model.{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in differ)
        raise ConfigError(f"ckpt_path={ckpt_path} was trained with other settings ({details}); "
                          "resume with the overrides the run was started with")


def _check_same_dataset(ckpt_path: str, datamodule: Any, allowed: bool) -> None:
    """A run continues on the data set it was trained on (the module checks again at fit start,
    for fits that do not come through here); said before any data is fetched."""
    source = getattr(datamodule, "source", None)  # a datamodule of another kind: nothing to check against
    if source is not None:
        check_same_dataset(recorded_dataset(read_checkpoint(ckpt_path)), source.dataset, allowed, f"ckpt_path={ckpt_path}")


def _check_sync_batchnorm(trainer: L.Trainer, model: Any) -> None:
    """PyTorch's SyncBatchNorm runs only on GPUs: say so before rank 1 starts, not in its traceback."""
    sync = syncs_batchnorm(trainer.strategy)  # parallel strategies with sync_batchnorm=True
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if sync and has_bn and trainer.strategy.root_device.type != "cuda":
        raise ConfigError(
            "trainer.sync_batchnorm=true needs GPUs (torch's SyncBatchNorm); on CPUs add trainer.sync_batchnorm=false "
            "(each process then keeps its own BatchNorm statistics) or use model.net.norm=group"
        )


def _check_launcher(trainer: L.Trainer) -> None:
    """DDP on one machine starts ranks 1… by rerunning the command line, which inside a local
    --multirun would start the whole sweep again in every rank: refuse it before it starts."""
    if not reruns_command_line(trainer.strategy) or trainer.world_size == 1:
        return
    if in_multirun():
        raise ConfigError(
            "trainer=ddp with several devices cannot run inside a local --multirun (each rank would restart the "
            "sweep); run the jobs one at a time, or use hydra/launcher=slurm, which starts one task per device"
        )


def family_of(model_class: str) -> str:
    """``ddpm_lit.training.vae.VAEModule`` -> ``a vae (ddpm_lit.training.vae.VAEModule)``."""
    family = family_of_class(model_class)
    return f"a {family} ({model_class})" if family else model_class


def _check_monitors(callbacks: list[Any], model: Any, optimized: str | None = None) -> None:
    """The sweep's optimized metric must be a metric the run logs; a metric of the sampling hook
    needs the hook (and val/classifier_fid needs model.val_classifier_fid); a checkpoint monitoring one needs it every epoch."""
    every = model.hparams.get("sample_every_n_epochs", 1)
    logged = type(model).monitorable_metrics()
    watched = [("optimized_metric", optimized)] if optimized is not None else []
    watched += [("callbacks.model_checkpoint.monitor", cb.monitor) for cb in callbacks
                if isinstance(cb, ModelCheckpoint) and cb.monitor is not None]
    # a checkpoint may also monitor what Lightning logs itself (epoch, step, lr-Adam, ...)
    unlogged = [f"{key}={metric}" for key, metric in watched
                if metric not in logged and (key == "optimized_metric" or metric.startswith(("val/", "train/")))]
    if unlogged:
        raise ConfigError(
            f"{' and '.join(unlogged)}: a {model.family} does not log {'it' if len(unlogged) == 1 else 'them'} "
            f"(it logs {', '.join(logged)}); choose one of those"
            + (", or null" if "optimized_metric" in unlogged[0] else "")
            + (" (callbacks.model_checkpoint=null keeps last.ckpt only)" if "callbacks" in unlogged[-1] else "")
        )
    for key, metric in watched:
        if metric == "val/classifier_fid" and not model.hparams.get("val_classifier_fid", False):
            raise ConfigError(f"{key}=val/classifier_fid needs model.val_classifier_fid=true")
        if metric in SAMPLED_METRICS and every == 0:
            raise ConfigError(f"{key}={metric} needs the sampling hook: model.sample_every_n_epochs ≥ 1")
        if key != "optimized_metric" and metric in SAMPLED_METRICS and every != 1:
            raise ConfigError(
                f"{key}={metric} is only logged on sampling epochs; set model.sample_every_n_epochs=1 (it is {every})"
            )
