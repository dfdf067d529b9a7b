"""``export(cfg)``: write a checkpoint's model as a shared model folder (``ddpm_lit.generation.pretrained``):
the weights in safetensors, config.json, a DDPM's scheduler_config.json for diffusers, samples.png
and a model card (README.md) with the grid, the scores of evaluate.py and what trained it; and,
with ``push_to_hub=<user>/<name>``, upload the folder to the Hugging Face Hub."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ddpm_lit.config.schema import ExportSettings
from ddpm_lit.core.pixels import to_unit_range
from ddpm_lit.data.sets import BUILTIN_SETS, DEFAULT_DATASET
from ddpm_lit.errors import ConfigError, DataError, first_line
from ddpm_lit.generation.files import save_grid
from ddpm_lit.generation.generate import image_generators
from ddpm_lit.generation.pretrained import CONFIG, MODEL_CARD, is_pretrained, read_config, save_pretrained
from ddpm_lit.reporting.model_card import GRID, model_card
from ddpm_lit.runs import Run, read_json
from ddpm_lit.training.loading import load_module, module_record, resolve_device

log = logging.getLogger(__name__)


def export(cfg: DictConfig) -> dict[str, Any]:
    """``python export.py``: the config checked at the door, then ``export_model``."""
    return export_model(ExportSettings.parse(cfg))


def class_names(dataset: dict[str, Any] | None, num_classes: int | None) -> list[str] | None:
    """The names of the classes of the set a model was trained on (a built-in set's, or the record's own)."""
    record = dataset or {"dataset": DEFAULT_DATASET}
    names = record.get("class_names")
    if names is None and record.get("dataset") in BUILTIN_SETS:
        names = list(BUILTIN_SETS[record["dataset"]].class_names)
    return list(names) if names is not None else None


def training_record(run: Run | None) -> dict[str, Any] | None:
    """What trained the model: the command (train.py and its overrides), the run's name and the
    training figures of its metrics.json; None for a checkpoint outside a run dir."""
    if run is None:
        return None
    metrics = run.metrics()
    return {
        "command": " ".join(["python train.py", *run.overrides()]),
        "run": run.name,
        **{key: metrics[key] for key in ("epochs", "global_step", "fit_seconds", "params") if key in metrics},
    }


def latest_evaluation(run: Run | None, ckpt_path: Path) -> dict[str, Any] | None:
    """metrics.json of the newest evaluate.py run that scored this very checkpoint (None: none did)."""
    if run is None:
        return None
    scored = [e for e in run.evaluations() if ckpt_path.resolve() in e.scored_files() and e.metrics_file.is_file()]
    if not scored:
        return None
    newest = max(scored, key=lambda e: e.metrics_file.stat().st_mtime)
    results = read_json(newest.metrics_file)
    return results if isinstance(results, dict) and "samples" in results else None


def _grid(module: Any, ckpt_path: Path, run: Run | None, s: ExportSettings) -> str | None:
    """samples.png of the folder: the run's final grid (what training ended with, the weights
    exported), an exported folder's own grid, else ``grid_samples`` images drawn now with the
    validation hook's sampler (None: none)."""
    target = s.out / GRID
    if run is not None and run.final_grid.is_file():
        shutil.copyfile(run.final_grid, target)
        return "the final samples of training (samples/final.png)"
    if is_pretrained(ckpt_path) and (ckpt_path / GRID).is_file():
        shutil.copyfile(ckpt_path / GRID, target)
        return f"the samples of the exported folder {ckpt_path.name}"
    if s.grid_samples == 0:
        return None
    module.to(resolve_device(s.device))
    images = module.sample(s.grid_samples, generator=image_generators(s.seed, range(s.grid_samples)), progress=True,
                           **module.validation_sampler())
    save_grid(to_unit_range(images.float().cpu()), target)
    return f"{s.grid_samples} samples drawn at export (seed {s.seed})"


def push(directory: Path, repo_id: str, private: bool) -> str:
    """Upload ``directory`` to the Hub repo ``repo_id`` (made if missing); its URL. Every failure
    (no huggingface_hub, offline, no token, no network) is one ConfigError line."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ConfigError("push_to_hub needs huggingface_hub: pip install -e '.[bench]'") from None
    try:
        api = HfApi()
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(directory), repo_id=repo_id,
                                 commit_message="Upload a model exported by ddpm-lit")
    except Exception as e:  # offline mode, no token, no network, no right to the repo: all one line
        raise ConfigError(f"push_to_hub={repo_id} failed: {type(e).__name__}: {first_line(e)} "
                          f"(the folder is written: {directory})") from None
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")


def export_model(s: ExportSettings) -> dict[str, Any]:
    """Export ``s.ckpt_path`` into ``s.out``; return config.json's content (and the Hub URL when pushed)."""
    ckpt_path = Path(s.ckpt_path)
    if s.out.exists() and not s.out.is_dir():
        raise ConfigError(f"out={s.out} is a file, not a folder")
    if ckpt_path.resolve() == s.out.resolve():
        raise ConfigError(f"out={s.out} is the folder being exported; give another")
    module, ema = load_module(ckpt_path, torch.device("cpu"))
    run = Run.of_file(ckpt_path) if not is_pretrained(ckpt_path) else None
    previous = read_config(ckpt_path) if is_pretrained(ckpt_path) else {}
    try:
        model = module.standalone()
    except NotImplementedError as e:
        raise DataError(f"{ckpt_path}: {e}") from None
    info = {
        "dataset": module.trained_on,
        "class_names": class_names(module.trained_on, module.num_classes),
        "ema_weights": ema,
        "description": module.describe(),
        "lightning_module": module_record(module),
        "training": training_record(run) or previous.get("training"),
    }
    s.out.mkdir(parents=True, exist_ok=True)
    save_pretrained(model, s.out, **info)
    grid = _grid(module, ckpt_path, run, s)
    scores = latest_evaluation(run, ckpt_path)
    config = read_json(s.out / CONFIG)
    training_config = run.config() if run is not None else None
    (s.out / MODEL_CARD).write_text(model_card(config, scores=scores, grid=grid, training_config=training_config,
                                               repo_id=s.push_to_hub))
    log.info("exported %s to %s (%s weights%s)", ckpt_path, s.out, "EMA" if ema else "raw",
             ", with evaluate.py's scores" if scores else "")
    if s.push_to_hub:
        config["hub_url"] = push(s.out, s.push_to_hub, s.private)
        log.info("pushed to %s", config["hub_url"])
    return config
