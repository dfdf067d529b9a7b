"""Building objects from Hydra config nodes, with errors that name the setting."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from ddpm_lit.errors import ConfigError, UserError
from ddpm_lit.runs import Run


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that turns a constructor's ValueError into a ConfigError."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, (ValueError, TypeError, UserError)):
            target = node.get("_target_", "?")
            raise ConfigError(f"{target}: {cause}") from None
        raise


def build_dict(node: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a group such as ``callbacks`` or ``logger`` that has a ``_target_``."""
    if not node:
        return []
    return [build(conf) for conf in node.values() if isinstance(conf, DictConfig) and "_target_" in conf]


def build_loggers(node: DictConfig | None, resuming: bool = False) -> list[Any]:
    """The ``logger`` group's loggers; when ``resuming``, a W&B logger without an ``id``
    continues the newest W&B run in its ``save_dir`` (the run dir), so the run keeps one id."""
    loggers = []
    for conf in (node or {}).values():
        if not (isinstance(conf, DictConfig) and "_target_" in conf):
            continue
        kwargs: dict[str, Any] = {}
        if resuming and conf._target_.endswith("WandbLogger") and conf.get("id") is None:
            run_id = Run(conf.save_dir).wandb_run_id()
            if run_id is not None:
                kwargs = {"id": run_id, "resume": "allow"}
        loggers.append(build(conf, **kwargs))
    return loggers
