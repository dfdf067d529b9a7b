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
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ddpm_lit.config.build import build, build_dict, build_loggers
from ddpm_lit.errors import ConfigError, DataError, first_line
from ddpm_lit.generation.protocol import has_chain
from ddpm_lit.internals import reruns_command_line, syncs_batchnorm, wandb_offline
from ddpm_lit.io import remove_partial_files
from ddpm_lit.reporting.pages import write_page_quietly
from ddpm_lit.reporting.run_figures import draw_final_samples, run_figures
from ddpm_lit.runs import Run, flatten
from ddpm_lit.training.base import (
    MODEL_CLASS_KEY,
    SAMPLED_METRICS,
    class_name,
    family_of_class,
    recorded_dataset,
)
from ddpm_lit.training.checkpointing import AtomicCheckpointIO, read_checkpoint
from ddpm_lit.training.loading import is_number
from ddpm_lit.training.loggers import (
    close_loggers,
    log_figures,
    open_loggers,
    quiet_lightning_tips,
    quiet_lightning_warnings,
)
from ddpm_lit.training.module import SPEED_HPARAMS, DDPMModule, upgraded_hparams
from ddpm_lit.training.planning import (
    choose_precision,
    format_seconds,
    measure_speed,
    sampling_seconds,
)

log = logging.getLogger(__name__)


def train(cfg: DictConfig, extra_callbacks: list[L.Callback] | tuple[L.Callback, ...] = ()) -> dict[str, float]:
    """Fit the model described by ``cfg``; return the final metrics (``train/loss``, ``val/loss``, ...).

    ``extra_callbacks`` join the config's (the benchmark times the real run with one).
    ``cfg.ckpt_path`` (``last`` or a path) continues a run: weights, optimizer, LR schedule, EMA,
    step counter and loops from the checkpoint, and the W&B run of the run dir.
    """
    started = time.perf_counter()
    quiet_lightning_tips()
    quiet_lightning_warnings()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    # Cheap parts first: a bad value fails here, before data is fetched or anything runs.
    model = build(cfg.model)
    datamodule = build(cfg.data)
    callbacks = build_dict(checkpoints_without_validation(cfg)) + list(extra_callbacks)
    _check_monitors(callbacks, model, optimized_metric(cfg))
    check_time_budget(cfg)
    out = Path(cfg.paths.output_dir)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:  # rank 0 alone writes checkpoints
        for stale in remove_partial_files(out):  # a write (checkpoint, figure, ...) the last run was killed in
            log.info("removed %s, half-written when the run was killed", stale)
    ckpt_path = resume_checkpoint(cfg.get("ckpt_path"), Run(out))
    model.allow_other_dataset = bool(cfg.get("allow_other_dataset", False))
    if ckpt_path is not None:
        _check_same_model(ckpt_path, model)
        _check_same_dataset(ckpt_path, datamodule, model.allow_other_dataset)
    # Data next, so a missing or corrupted file stops the run before a logger run or a checkpoint exists.
    datamodule.prepare_data()
    wandb_mode = os.environ.get("WANDB_MODE")
    # ckpt_path set: the run dir's W&B run goes on, even when the run died before its first checkpoint
    resuming = ckpt_path is not None or cfg.get("ckpt_path") is not None
    loggers: list[Logger] = open_loggers(build_loggers(cfg.get("logger"), resuming=resuming))
    trainer_overrides, expected = plan_time(cfg, model, time.perf_counter() - started)
    trainer: L.Trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()],
                               **trainer_overrides)
    _check_launcher(trainer)
    _check_sync_batchnorm(trainer, model)
    if trainer.is_global_zero:
        log.info("%s", describe_start(cfg, out, model, trainer, expected, ckpt_path))

    try:
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        start = time.perf_counter()
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SIGTERMException:
            # Lightning stops after the batch in progress and the on_exception ModelCheckpoint has saved
            # on_exception.ckpt. Exit as a terminated process, so schedulers and sweeps see it.
            log.warning("stopped by SIGTERM at step %d; continue with ckpt_path=last", trainer.global_step)
            raise SystemExit(128 + signal.SIGTERM) from None
        fit_seconds = time.perf_counter() - start
        metrics = _after_fit(cfg, model, datamodule, trainer, loggers, out, fit_seconds)
        if trainer.is_global_zero:
            log.info("%s", describe_end(metrics, out, trainer, loggers, time.perf_counter() - started))
        return metrics
    finally:
        close_loggers(loggers, wandb_mode)
        if trainer.is_global_zero and cfg.get("report_html", True):  # also for a run that failed or was stopped
            write_page_quietly(out, OmegaConf.to_container(cfg, resolve=False))


def _after_fit(cfg: DictConfig, model: Any, datamodule: Any, trainer: L.Trainer, loggers: list[Logger], out: Path,
               fit_seconds: float) -> dict[str, float]:
    """The run's final metrics, written to metrics.json, after the final samples and the
    report's figures (rank 0; not under fast_dev_run)."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics.update(
        fit_seconds=fit_seconds,
        epochs=trainer.current_epoch,  # Lightning's count at the end; a partial last epoch counts
        global_step=trainer.global_step,
        params=sum(p.numel() for p in model.parameters()),
    )
    final = cfg.get("final_samples")
    draw_final = bool(final and final.num > 0 and trainer.is_global_zero and not trainer.fast_dev_run)
    if draw_final:
        model.to(trainer.strategy.root_device)  # fit's teardown left it on the CPU
        start = time.perf_counter()
        draw_final_samples(model, Run(out), **final)
        metrics["final_samples_seconds"] = time.perf_counter() - start
        log.info("samples written to %s", out / "samples")
    log.debug("fit took %.1f s; metrics: %s", fit_seconds, metrics)  # said at the end by describe_end
    if trainer.is_global_zero:
        Run(out).write_metrics(metrics)
    if draw_final:
        figures = run_figures(out, module=model, datamodule=datamodule, num_samples=final.num, seed=final.seed,
                              config=OmegaConf.to_container(cfg, resolve=False))
        log_figures(loggers, figures)
    return metrics


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


def check_time_budget(cfg: DictConfig) -> None:
    """Refuse a bad ``time_budget_minutes`` before any data is fetched or logger run opened."""
    try:
        budget = cfg.get("time_budget_minutes")
    except OmegaConfBaseException as e:  # an interpolation that does not parse or resolve (${0, ${oc.env:UNSET})
        raw = OmegaConf.to_container(cfg, resolve=False).get("time_budget_minutes")
        raise ConfigError(f"time_budget_minutes must be a positive number or null, got {raw!r} "
                          f"({first_line(e)})") from None
    if budget is not None and (not is_number(budget) or budget <= 0):
        raise ConfigError(f"time_budget_minutes must be a positive number or null, got {budget!r}")
    if budget is not None and cfg.trainer.get("max_time") is not None:
        raise ConfigError("give either time_budget_minutes or trainer.max_time, not both")


def plan_time(cfg: DictConfig, model: Any, elapsed: float) -> tuple[dict[str, Any], str | None]:
    """Trainer arguments that ``trainer.precision=auto`` and ``time_budget_minutes`` decide, and
    the run's expected length in words (None when neither is set: nothing was measured).

    ``auto`` times a few training steps of the model in each of ``budget.CANDIDATE_PRECISIONS``
    on the trainer's device and takes the fastest. A time budget (the whole run, in minutes)
    becomes ``max_time``: what is left after ``elapsed`` seconds of start-up, the final
    samples' expected time at the measured sampling speed and ``post_fit_reserve_seconds``.
    Both are said on the console, with the expected end.
    """
    t0 = time.perf_counter()
    precision = str(cfg.trainer.get("precision"))
    budget = cfg.get("time_budget_minutes")
    if precision != "auto" and budget is None:
        return {}, None
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    device = torch.device("cuda" if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else "cpu")
    final = cfg.get("final_samples")
    sample_batch = int(final.num) if final and final.num > 0 else 64
    out: dict[str, Any] = {}
    expected = None
    if precision == "auto":
        speed, speeds, notes = choose_precision(model, device, int(cfg.data.batch_size), sample_batch)
        log.info("precision=auto on %s: %s; chosen %s", device.type, "; ".join(map(str, speeds + notes)), speed.precision)
        out["precision"] = precision = speed.precision
    else:
        speed = measure_speed(model, precision, device, int(cfg.data.batch_size), sample_batch)
    if budget is not None:
        per_image = (final.steps or model.num_timesteps) if has_chain(model) else 1  # one pass without a chain
        steps = per_image if final and final.num > 0 else 0
        after = sampling_seconds(speed, sample_batch, steps) + float(cfg.get("post_fit_reserve_seconds", 60))
        start_up = elapsed + time.perf_counter() - t0  # the speed probe included
        seconds = budget * 60 - start_up - after
        if seconds < 10:
            raise ConfigError(
                f"time_budget_minutes={budget} leaves {seconds:.0f} s for training after start-up "
                f"({start_up:.0f} s) and the final samples and figures (~{after:.0f} s); raise it"
            )
        out["max_time"] = {"seconds": seconds}
        expected = (
            f"{format_seconds(budget * 60)} in all (time_budget_minutes): training {format_seconds(seconds)} "
            f"(~{seconds * speed.train_images_per_s:,.0f} images at {speed.train_images_per_s:.0f} images/s), "
            f"then ~{format_seconds(after)} for the final samples and figures"
        )
    return out, expected


def describe_start(
    cfg: DictConfig, out: Path, model: Any, trainer: L.Trainer, expected: str | None, ckpt_path: str | None
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
        f"device:    {trainer.strategy.root_device} × {trainer.world_size}, precision {trainer.precision}",
        f"expected:  {expected}",
    ]
    return "starting:\n  " + "\n  ".join(lines)


def describe_end(metrics: dict[str, float], out: Path, trainer: L.Trainer, loggers: list[Logger], seconds: float) -> str:
    """The final metrics and where the run's outputs are, said once at the end."""
    shown = ", ".join(f"{k} {metrics[k]:.4g}" for k in sorted(metrics) if "/" in k)
    lines = [f"metrics:     {shown or 'none logged'} after {metrics.get('global_step', 0):.0f} steps"]
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
    if not isinstance(model, DDPMModule):
        saved = dict(saved)
    else:
        saved = upgraded_hparams(saved)

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
    source = getattr(datamodule, "source", None)
    if source is None or allowed:
        return
    trained_on = recorded_dataset(read_checkpoint(ckpt_path))
    if trained_on.get("dataset") != source.dataset:
        raise ConfigError(f"ckpt_path={ckpt_path} was trained on {trained_on.get('dataset')}, the config's data is "
                          f"{source.dataset}: data={trained_on.get('dataset')}, or allow_other_dataset=true to go on "
                          "with another set")


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
    if HydraConfig.initialized() and getattr(HydraConfig.get().mode, "name", None) == "MULTIRUN":
        raise ConfigError(
            "trainer=ddp with several devices cannot run inside a local --multirun (each rank would restart the "
            "sweep); run the jobs one at a time, or use hydra/launcher=slurm, which starts one task per device"
        )


def family_of(model_class: str) -> str:
    """``ddpm_lit.training.vae.VAEModule`` -> ``a vae (ddpm_lit.training.vae.VAEModule)``."""
    family = family_of_class(model_class)
    return f"a {family} ({model_class})" if family else model_class


def optimized_metric(cfg: DictConfig) -> str | None:
    """The metric train.py returns for sweepers: ``optimized_metric``, or the deprecated
    top-level ``objective`` when a command line still sets it (with a warning)."""
    old = cfg.get("objective")
    if old is not None:
        log.warning("objective=%s is deprecated (model.objective is the network's target); "
                    "use optimized_metric=%s, which it replaces", old, old)
        return str(old)
    return cfg.get("optimized_metric")


def _check_monitors(callbacks: list[Any], model: Any, optimized: str | None = None) -> None:
    """The sweep's optimized metric must be a metric the run logs; a metric of the sampling hook
    needs the hook (and val/fid needs model.val_fid); a checkpoint monitoring one needs it every epoch."""
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
        if metric == "val/fid" and not model.hparams.get("val_fid", False):
            raise ConfigError(f"{key}=val/fid needs model.val_fid=true")
        if metric in SAMPLED_METRICS and every == 0:
            raise ConfigError(f"{key}={metric} needs the sampling hook: model.sample_every_n_epochs ≥ 1")
        if key != "optimized_metric" and metric in SAMPLED_METRICS and every != 1:
            raise ConfigError(
                f"{key}={metric} is only logged on sampling epochs; set model.sample_every_n_epochs=1 (it is {every})"
            )
