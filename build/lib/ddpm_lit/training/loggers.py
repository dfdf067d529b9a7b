"""The run's loggers (W&B, CSV, TensorBoard): opened without prompts, closed; and
Lightning's noise that tells a user nothing, filtered by exact message."""

from __future__ import annotations

import logging
import netrc
import os
import warnings
from pathlib import Path

import wandb
from lightning.pytorch.loggers import Logger, WandbLogger

from ddpm_lit.errors import ConfigError
from ddpm_lit.internals import drop_anonymous_wandb_init, wandb_offline


def open_loggers(loggers: list[Logger]) -> list[Logger]:
    """Check that online W&B has credentials, so that nothing prompts; return ``loggers``."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            drop_anonymous_wandb_init(logger)  # W&B warns about it
            if not wandb_offline(logger):
                _check_wandb_credentials()
    return loggers


class LightningTipFilter(logging.Filter):
    """Drops Lightning's advertisements ("💡 Tip: ... try installing litlogger / litmodels"),
    which every Trainer with other loggers prints; Lightning has no setting for them. Nothing
    else it logs is touched. tests/test_train.py fails if Lightning stops printing them."""

    LOGGER = "lightning.pytorch.utilities.rank_zero"  # where rank_zero_info logs

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def quiet_lightning_tips() -> None:
    """Attach ``LightningTipFilter`` to Lightning's rank-zero logger, once."""
    target = logging.getLogger(LightningTipFilter.LOGGER)
    if not any(isinstance(f, LightningTipFilter) for f in target.filters):
        target.addFilter(LightningTipFilter())


# Warnings Lightning 2.6 raises on every run with this stack that tell the user nothing: each
# filter matches one message from one Lightning module, and tests/test_train.py fails when
# Lightning stops raising it (then drop the filter).
LIGHTNING_NOISE = (
    # torch 2.14 deprecates building a LeafSpec, which Lightning's CombinedLoader still does
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\.pytorch\.utilities\._pytree"),
    # bf16-mixed keeps fp32 weights, which is what the summary then counts
    (r"Precision bf16-mixed is not supported by the model summary", UserWarning,
     r"lightning\.pytorch\.utilities\.model_summary"),
    # the training order resumes mid-epoch through the datamodule's state (EpochShuffle), not the loader's
    (r"You're resuming from a checkpoint that ended before the epoch ended", Warning, r"lightning\.pytorch\.loops"),
)


def quiet_lightning_warnings() -> None:
    """Ignore the ``LIGHTNING_NOISE`` warnings, and no others."""
    for message, category, module in LIGHTNING_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def close_loggers(loggers: list[Logger], wandb_mode: str | None) -> None:
    """Finish the W&B run and restore WANDB_MODE as it was before ``loggers`` were built."""
    # Lightning leaves the W&B run open; close it so the next job of a multirun
    # gets a run of its own instead of writing into this one.
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        wandb.finish()
    # WandbLogger(offline=True) sets WANDB_MODE for the whole process; restore it for the next job.
    if wandb_mode is None:
        os.environ.pop("WANDB_MODE", None)
    else:
        os.environ["WANDB_MODE"] = wandb_mode


def _check_wandb_credentials() -> None:
    """Online W&B without an API key would prompt for one; stop with a message instead."""
    if os.environ.get("WANDB_API_KEY"):
        return
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    raise ConfigError(
        "W&B is set to log online but no API key was found; run `wandb login` or set WANDB_API_KEY, "
        "or keep the default offline mode (logger.wandb.offline=true, WANDB_MODE unset)"
    )


def log_figures(loggers: list[Logger], figures: dict[str, Path]) -> None:
    """The run's figures as W&B images under ``figures/<name>``."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            for name, path in figures.items():
                logger.log_image(key=f"figures/{name}", images=[str(path)])
