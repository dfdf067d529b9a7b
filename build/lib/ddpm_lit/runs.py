"""A run dir on disk: its checkpoints, its W&B run and its saved config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ddpm_lit.errors import DataError

# What the last_checkpoint and on_exception ModelCheckpoints write; ``ckpt_path=last``
# continues from the newest of them, as Lightning's own "last" does.
RESUME_PATTERNS = ("last*.ckpt", "on_exception.ckpt")


def newest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest ``last*.ckpt`` or ``on_exception.ckpt`` in ``checkpoint_dir`` (None: none)."""
    found = [p for pattern in RESUME_PATTERNS for p in Path(checkpoint_dir).glob(pattern) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def run_dir_to_resume(ckpt_path: str | None, runs_dir: str | Path) -> Path | None:
    """The run dir that ``ckpt_path`` continues, so that a resumed run writes where it began.

    ``last``: the run under ``runs_dir`` started (or resumed) most recently, by its
    ``.hydra`` files; it continues from its newest checkpoint, or starts afresh in its own dir
    when it was stopped before writing one (so a run killed during start-up is not mistaken for
    an older run that has checkpoints). A path ``<run>/checkpoints/<name>.ckpt`` of a Hydra run:
    ``<run>``. Otherwise None (a checkpoint from elsewhere starts a new run dir).
    """
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        runs = [run for run in Path(runs_dir).glob("*") if (run / ".hydra").is_dir()]
        return max(runs, key=last_started) if runs else None
    path = Path(ckpt_path).absolute()
    if path.parent.name == "checkpoints" and (path.parent.parent / ".hydra").is_dir():
        return path.parent.parent
    return None


def last_started(run: str | Path) -> float:
    """When the run in ``run`` was last started or resumed: the newest of its ``.hydra`` files,
    which Hydra writes as each start begins."""
    hydra = Path(run) / ".hydra"
    return max([p.stat().st_mtime for p in hydra.iterdir()] or [hydra.stat().st_mtime])


def wandb_run_id(save_dir: str | Path) -> str | None:
    """The id of the newest W&B run under ``<save_dir>/wandb`` (folders ``[offline-]run-<time>-<id>``)."""
    runs = [p for p in Path(save_dir, "wandb").glob("*run-*-*") if p.is_dir()]
    return max(runs, key=lambda p: p.stat().st_mtime).name.rsplit("-", 1)[1] if runs else None


def load_run_config(run: str | Path) -> DictConfig:
    """The composed config a run was started with (``<run>/.hydra/config.yaml``, interpolations unresolved)."""
    path = Path(run) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise DataError(f"{run} is not a run dir of train.py (no .hydra/config.yaml)")
    return OmegaConf.load(path)


def flatten(tree: Any, sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """A nested dict's leaves under joined keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (``sep`` ".")."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, sep, f"{prefix}{sep}{key}" if prefix else str(key)))
    return out
