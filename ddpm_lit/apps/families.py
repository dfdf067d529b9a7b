"""The study's chapter 2, measured: train (or load) a DDPM, a VAE and a GAN at an equal
wall-clock budget and several seeds, score each with ``evaluate.py``, and write one table and one figure
(conf/families.yaml):

    python -m ddpm_lit.families out=docs/families minutes=14 seeds=[0,1,2]

Each family trains with its preset (``presets.<family>=``; the 2-core ones by default: ``quick``,
``vae_quick``, ``gan_quick``) and ``time_budget_minutes=<minutes>`` in
``<out>/runs/<family>_seed<S>`` (its console output in ``train.log`` there), then
``evaluate.py`` scores its ``last.ckpt`` in ``<out>/eval/<family>_seed<S>``: standard FID,
MNIST-FID, KID, precision, recall, digits present, memorisation distance, bits/dim where the
family has a likelihood (DDPM: the variational bound; VAE: the ELBO and IWAE), sampling time.
A run or evaluation that finished is not redone, and an interrupted run continues from its
``last.ckpt``, so the command resumes where it stopped. Written to ``<out>``: ``results.json``,
``table.md`` and ``samples.png`` (real test digits, then the first seed's samples of each family).

A seed counts as collapsed when fewer than 8 digits hold 2 % of its samples each, or when its
recall is below a third of its precision (samples that are all plausible but cover little of the data).
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ddpm_lit.catalogue import FAMILIES
from ddpm_lit.config.schema import flag, integer, integers, is_number, plain, required
from ddpm_lit.core.pixels import to_unit_range
from ddpm_lit.data.mnist import ensure_mnist, load_idx_split
from ddpm_lit.errors import ConfigError
from ddpm_lit.generation.files import load_samples_npz
from ddpm_lit.io import atomic_write, write_text
from ddpm_lit.reporting.figures import side_by_side_grids
from ddpm_lit.reporting.tables import FAMILY_COLUMNS, families_table
from ddpm_lit.runs import Run
from ddpm_lit.training.base import GenerativeModule, family_class

log = logging.getLogger(__name__)

CPU_PRESETS = {"ddpm": "quick", "vae": "vae_quick", "gan": "gan_quick"}
GPU_PRESETS = {"ddpm": "seed", "vae": "vae_seed", "gan": "gan_seed"}
MIN_DIGITS_PRESENT = 8
MIN_RECALL_TO_PRECISION = 1 / 3


def collapse_reason(metrics: dict[str, Any]) -> str | None:
    """Why a run's samples count as collapsed (see the module docstring), or None."""
    present = metrics.get("classes_present")
    if present is not None and present < MIN_DIGITS_PRESENT:
        return f"{present:.0f} digits present"
    precision, recall = metrics.get("precision"), metrics.get("recall")
    if precision is not None and recall is not None and recall < precision * MIN_RECALL_TO_PRECISION:
        return f"recall {recall:.3f} < precision {precision:.3f} / 3"
    return None


def network_evaluations(model_class: type[GenerativeModule], source: dict[str, Any],
                        run_config: dict[str, Any]) -> float:
    """Network evaluations per image of an evaluation (its metrics.json ``source``), as the
    family counts them (``GenerativeModule.evaluations_per_image``): e.g. a DDPM's sampler steps
    (all T when null) times 2 with classifier-free guidance; one pass for a VAE or a GAN."""
    steps = (source.get("sampler") or {}).get("steps")
    return float(model_class.evaluations_per_image(steps, source.get("guidance_scale"),
                                                   num_timesteps=(run_config.get("schedule") or {}).get("timesteps")))


def model_class_of(run_dir: Path) -> type[GenerativeModule]:
    """The model family's class a run trained (its config's ``model._target_``)."""
    target = str((Run(run_dir).load_config().get("model") or {}).get("_target_", ""))
    model_class = family_class(target)
    if model_class is None:
        raise ConfigError(f"{run_dir}: model._target_={target} is not a model family of ddpm_lit")
    return model_class


def _run(cmd: list[str], log_path: Path, what: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_path.open("a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        raise ConfigError(f"{what} failed (exit code {code}); its output is in {log_path}")
    log.info("  %s done in %.1f min", what, (time.perf_counter() - start) / 60)


def train_run(args: FamiliesSettings, family: str, seed: int, run_dir: Path) -> None:
    """``train.py`` with the family's preset, the seed and the budget (continued when interrupted)."""
    if (run_dir / "metrics.json").is_file():
        log.info("  %s: trained before, kept", run_dir)
        return
    cmd = [sys.executable, "-m", "ddpm_lit.train", f"experiment={args.presets[family]}", f"seed={seed}",
           f"hydra.run.dir={run_dir}", "logger=csv", f"paths.data_dir={args.data_dir}"]
    if args.minutes:
        cmd.append(f"time_budget_minutes={args.minutes:g}")
    elif args.minutes == 0:
        cmd.append("time_budget_minutes=null")
    if (run_dir / "checkpoints").is_dir():
        cmd.append("ckpt_path=last")
    overrides = [*args.family_overrides.get(family, []), *args.train_overrides]
    _run(cmd + overrides, run_dir / "train.log", f"training {family} seed {seed}")


def evaluate_run(args: FamiliesSettings, family: str, run_dir: Path, eval_dir: Path, score_test: bool) -> None:
    """``evaluate.py`` on the run's last.ckpt (a family with a reverse chain, the DDPM, with
    ``ddpm_steps`` sampler steps; bits/dim where the family has a likelihood)."""
    if (eval_dir / "metrics.json").is_file():
        log.info("  %s: scored before, kept", eval_dir)
        return
    model_class = model_class_of(run_dir)
    cmd = [sys.executable, "-m", "ddpm_lit.evaluate", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
           f"num_samples={args.num_samples}", f"reference_size={args.reference_size}", f"fid.enabled={args.fid}",
           f"score_test={score_test}", f"nll.num_images={args.nll_images}", f"nll.iwae_samples={args.iwae}",
           f"nll.enabled={model_class.likelihood is not None and args.nll_images > 0}", f"hydra.run.dir={eval_dir}",
           "logger=csv", f"paths.data_dir={args.data_dir}"]
    if model_class.reverse_chain:
        cmd.append(f"sampler.steps={args.ddpm_steps}")
    _run(cmd + list(args.eval_overrides), eval_dir / "evaluate.log", f"evaluating {family}")


def run_row(family: str, seed: int, run_dir: Path, eval_dir: Path) -> dict[str, Any]:
    """One run's numbers: the training's metrics.json and the evaluation's."""
    trained, scored = Run(run_dir).load_metrics(), Run(eval_dir).load_metrics()
    run_config = Run(run_dir).load_config()
    samples = scored["samples"]
    row: dict[str, Any] = {"family": family, "seed": seed, "run_dir": str(run_dir)}
    row.update({k: samples[k] for k in ("fid", "classifier_fid", "kid", "precision", "recall", "confident_share",
                                        "mean_confidence", "classes_present", "class_entropy", "nn_train_distance_mean")
                if k in samples})
    nll = scored.get("nll") or {}
    row.update({k: nll[k] for k in ("bpd", "bpd_stderr", "iwae_bpd", "iwae_bpd_stderr") if k in nll})
    row["sampling_ms_per_image"] = 1000 * scored["timings"]["sampling"] / samples["num_images"]
    model_class = model_class_of(run_dir)
    row["evaluations_per_image"] = network_evaluations(model_class, scored["source"], run_config)
    row["fit_minutes"] = trained["fit_seconds"] / 60
    row["global_step"] = trained["global_step"]
    row["training_images_k"] = trained["global_step"] * model_class.images_per_optimizer_step(
        run_config["data"]["batch_size"]) / 1000
    row["params_m"] = trained["params"] / 1e6
    row["collapsed"] = collapse_reason(row)
    if "test" in scored:
        row["test"] = {k: v for k, v in scored["test"].items() if isinstance(v, (int, float))}
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per family: the mean and (sample) standard deviation over seeds of each column, the
    MNIST-FID's range, and the seeds that collapsed."""
    out: dict[str, dict[str, Any]] = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        runs = [r for r in rows if r["family"] == family]
        summary: dict[str, Any] = {"seeds": [r["seed"] for r in runs]}
        for key in (m.key for m in FAMILY_COLUMNS):
            values = [float(r[key]) for r in runs if r.get(key) is not None]
            if values:
                mean = sum(values) / len(values)
                std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
                summary[key] = {"mean": mean, "std": std}
        fids = [r["classifier_fid"] for r in runs]
        summary["classifier_fid_range"] = [min(fids), max(fids)]
        summary["collapsed"] = {str(r["seed"]): r["collapsed"] for r in runs if r["collapsed"]}
        out[family] = summary
    return out


def samples_figure(args: FamiliesSettings, families: list[str], seed: int, path: Path) -> Path:
    """Real test digits, then each family's first 64 samples of ``seed``, side by side."""
    test, _ = load_idx_split(ensure_mnist(args.data_dir), train=False)
    grids = {"real test digits": test[:64].unsqueeze(1).float() / 255}
    for family in families:
        samples = load_samples_npz(args.out / "eval" / f"{family}_seed{seed}" / "samples.npz")
        grids[f"{family.upper()} ({args.presets[family]}, seed {seed})"] = to_unit_range(samples[:64])
    return side_by_side_grids(grids, path)


def machine() -> str:
    """The CPU (or GPU) the numbers were measured on, in words."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {torch.get_num_threads()} threads"
    except OSError:
        pass
    return f"CPU, {torch.get_num_threads()} threads"


def compare_families(args: FamiliesSettings) -> dict[str, Any]:
    """Train, score and tabulate (see the module docstring); return results.json's content."""
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    jobs = [(f, s) for s in args.seeds for f in args.families]
    for i, (family, seed) in enumerate(jobs, 1):
        run_dir, eval_dir = args.out / "runs" / f"{family}_seed{seed}", args.out / "eval" / f"{family}_seed{seed}"
        log.info("[%d/%d] %s, seed %d (experiment=%s)", i, len(jobs), family, seed, args.presets[family])
        train_run(args, family, seed, run_dir)
        evaluate_run(args, family, run_dir, eval_dir, score_test=i == 1)
        rows.append(run_row(family, seed, run_dir, eval_dir))
    results = {
        "setup": {
            "budget": f"time_budget_minutes={args.minutes:g} per run" if args.minutes else "the presets' own stopping rule",
            "presets": args.presets, "seeds": args.seeds, "num_samples": args.num_samples,
            "reference_size": args.reference_size, "nll_images": args.nll_images, "iwae": args.iwae,
            "ddpm_steps": args.ddpm_steps, "fid": args.fid, "machine": machine(),
        },
        "runs": rows,
        "summary": summarise(rows),
        "test": next((r.pop("test") for r in rows if "test" in r), None),
    }
    with atomic_write(args.out / "results.json", "w") as f:
        f.write(json.dumps(results, indent=2))
    write_text(args.out / "table.md", families_table(results))
    samples_figure(args, list(args.families), args.seeds[0], args.out / "samples.png")
    log.info("table: %s; figure: %s", args.out / "table.md", args.out / "samples.png")
    return results


@dataclass(frozen=True)
class FamiliesSettings:
    """conf/families.yaml, checked: each family's preset (``gpu`` and ``presets`` resolved), the
    budget (None: the presets' own), and the scoring settings every evaluation gets."""

    out: Path
    minutes: float | None
    seeds: list[int]
    families: list[str]
    presets: dict[str, str]
    num_samples: int
    reference_size: int
    fid: bool
    nll_images: int
    iwae: int
    ddpm_steps: int
    data_dir: Path
    train_overrides: list[str]
    eval_overrides: list[str]
    family_overrides: dict[str, list[str]]

    @classmethod
    def parse(cls, cfg: DictConfig) -> FamiliesSettings:
        required(cfg, "out", "the folder of the runs, the table and the figure: out=<dir>")
        gpu = flag(cfg, "gpu")
        minutes = cfg.get("minutes", None)
        if minutes is None:
            minutes = None if gpu else 14.0
        elif not (is_number(minutes) and minutes >= 0):
            raise ConfigError(f"minutes must be a number ≥ 0 or null, got {minutes!r}")
        chosen = plain(cfg.get("families"))
        if not isinstance(chosen, list) or not chosen or any(f not in FAMILIES for f in chosen):
            raise ConfigError(f"families must be a list of {', '.join(FAMILIES)}, got {chosen!r}")
        ints = {key: integer(cfg, key, low) for key, low in (("num_samples", 4), ("reference_size", 4),
                                                             ("nll_images", 0), ("iwae", 1), ("ddpm_steps", 1))}
        return cls(out=Path(cfg.out).resolve(), minutes=minutes, seeds=list(integers(cfg, "seeds", 0)), families=chosen,
                   presets=_presets(plain(cfg.get("presets")) or {}, gpu), **ints, fid=flag(cfg, "fid"),
                   data_dir=Path(cfg.paths.data_dir).resolve(), train_overrides=_overrides(cfg, "train_overrides"),
                   eval_overrides=_overrides(cfg, "eval_overrides"), family_overrides=_family_overrides(cfg))


def _presets(given: dict[str, Any], gpu: bool) -> dict[str, str]:
    """Each family's ``experiment=``: ``given`` where it names one, else the GPU or CPU preset."""
    presets = dict(GPU_PRESETS if gpu else CPU_PRESETS)
    for family, preset in given.items():
        if family not in FAMILIES:
            raise ConfigError(f"presets takes presets.FAMILY=EXPERIMENT with FAMILY in {', '.join(FAMILIES)}, "
                              f"got presets.{family}")
        if preset is not None:
            if not isinstance(preset, str) or not preset:
                raise ConfigError(f"presets.{family} must name an experiment (conf/experiment/), got {preset!r}")
            presets[family] = preset
    return presets


def _family_overrides(cfg: DictConfig) -> dict[str, list[str]]:
    """``family_overrides``: {family: [override, ...]} of the families in ``FAMILIES``."""
    given = plain(cfg.get("family_overrides")) or {}
    if not isinstance(given, dict) or any(f not in FAMILIES for f in given):
        raise ConfigError(f"family_overrides takes FAMILY: [overrides] with FAMILY in {', '.join(FAMILIES)}, got {given!r}")
    return {family: _override_list(values, f"family_overrides.{family}") for family, values in given.items()}


def _overrides(cfg: DictConfig, key: str) -> list[str]:
    return _override_list(plain(cfg.get(key)), key)


def _override_list(values: Any, key: str) -> list[str]:
    """``values`` as a list of override strings ([] for None), or a ConfigError naming ``key``."""
    values = values or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{key} must be a list of overrides, e.g. '{key}=[\"trainer.max_steps=4\"]', got {values!r}")
    return values


def families(cfg: DictConfig) -> dict[str, Any]:
    """``python -m ddpm_lit.families``: the config checked at the door, then ``compare_families``."""
    return compare_families(FamiliesSettings.parse(cfg))
