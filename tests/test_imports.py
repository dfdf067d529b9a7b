"""Commands start fast: a command imports only what it uses. ``--help`` needs Hydra alone, and
importing the sample and evaluate apps loads neither figures (matplotlib, torchvision), pages
(the dashboard, jinja2, vl_convert), nor the training stack (Lightning, torchmetrics, W&B)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

# Imported by the functions that use them, never when a command starts.
# (The reporting layer's markdown tables, ddpm_lit.reporting.tables, are plain text and load at once.)
HEAVY = ("matplotlib", "torchvision", "torchmetrics", "lightning", "wandb", "jinja2", "vl_convert",
         "ddpm_lit.reporting.figures", "ddpm_lit.reporting.pages", "ddpm_lit.reporting.run_figures",
         "ddpm_lit.reporting.summary", "ddpm_lit.reporting.screenshot", "ddpm_lit.training.base",
         "ddpm_lit.training.module", "ddpm_lit.training.loggers", "ddpm_lit.evaluation.scorer",
         "ddpm_lit.data.datamodule")  # fmt: skip


def run_python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` that ``modules`` holds, as themselves or through a submodule."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


@pytest.mark.parametrize("app", ["ddpm_lit.apps.sample", "ddpm_lit.apps.evaluate"])
def test_an_app_imports_no_figures_pages_or_training(app: str) -> None:
    proc = run_python("-c", f"import json, sys; import {app}; print(json.dumps(sorted(sys.modules)))")
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = json.loads(proc.stdout)
    assert app in modules and "torch" in modules  # the import did happen
    assert loaded(modules, HEAVY) == []


@pytest.mark.parametrize("script", ["sample.py", "evaluate.py", "train.py", "-m ddpm_lit.run_figures", "-m ddpm_lit.summarize",
                                    "-m ddpm_lit.compare", "-m ddpm_lit.families", "-m ddpm_lit.bench", "export.py"])
def test_help_needs_hydra_alone(script: str) -> None:
    proc = run_python("-X", "importtime", *script.split(), "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Powered by Hydra" in proc.stdout
    imported = [line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "hydra" in imported  # -X importtime did list the imports
    assert loaded(imported, ("torch", *HEAVY)) == []


@pytest.mark.parametrize("script, words", [("sample.py", "give the checkpoint"),
                                           ("evaluate.py", "exactly one of ckpt_path"),
                                           ("export.py", "give the checkpoint to export")])  # fmt: skip
def test_a_real_command_line_stops_on_a_bad_config_with_one_line(script: str, words: str, tmp_path) -> None:
    """The other tests of these commands run them in-process (conftest.run_command); this one is
    the process a user starts: exit code 2, one `error:` line, no traceback, before any heavy import."""
    proc = run_python("-X", "importtime", script, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0] and "Traceback" not in proc.stderr
    imported = [line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "torch" in imported and loaded(imported, HEAVY) == []  # told before Lightning & co. were loaded


def test_the_maths_and_the_front_end_load_no_config_or_training_library() -> None:
    """The core, the networks and the generation front end run in a plain script: importing them
    loads neither OmegaConf, Hydra, Lightning nor W&B (the import-linter contract checks the
    source; this checks what a fresh process really loads, ``ddpm_lit/__init__`` included)."""
    mods = "ddpm_lit.core.diffusion, ddpm_lit.core.samplers, ddpm_lit.core.likelihood, ddpm_lit.nets.unet, " \
           "ddpm_lit.generation.generate, ddpm_lit.generation.pretrained, ddpm_lit.data.sets"
    proc = run_python("-c", f"import json, sys; import {mods}; print(json.dumps(sorted(sys.modules)))")
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = json.loads(proc.stdout)
    assert "ddpm_lit.core.likelihood" in modules and "torch" in modules
    assert loaded(modules, ("omegaconf", "hydra", "lightning", "wandb", "ddpm_lit.resolvers")) == []
