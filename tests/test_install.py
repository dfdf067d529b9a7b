"""An installed ddpm_lit runs its commands outside a checkout: ``pip install .`` ships the configs
(``ddpm_lit/conf``) and the pages' templates, and ``python -m ddpm_lit.<command>`` (or the console
scripts) find them in the package, not in a repository beside the working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.slow
def test_the_installed_package_trains_samples_and_evaluates_outside_the_checkout(mnist_dir: Path, tmp_path: Path) -> None:
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the package alone (its dependencies are this environment's), built from the checkout as pip builds it
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(ROOT)],
         elsewhere, dict(os.environ))
    assert (site / "ddpm_lit" / "conf" / "train.yaml").is_file() and (site / "ddpm_lit" / "reporting" / "templates").is_dir()
    env = {**os.environ, "PYTHONPATH": str(site), "WANDB_MODE": "offline"}
    where = _run([sys.executable, "-c", "import ddpm_lit; print(ddpm_lit.__file__)"], elsewhere, env).stdout.strip()
    assert Path(where).is_relative_to(site)  # not the checkout's ddpm_lit

    data = f"paths.data_dir={mnist_dir}"
    _run([sys.executable, "-m", "ddpm_lit.train", "experiment=quick", "time_budget_minutes=null", "trainer.max_steps=2",
          "trainer.precision=32-true", "data.limit_train=256", "data.val_size=64", "trainer.limit_val_batches=1",
          "model.val_sample_steps=2", "model.num_val_samples=8", "model.nn_reference_size=16", "final_samples.num=4",
          "final_samples.steps=2", "logger=csv", data, "hydra.run.dir=run"], elsewhere, env)
    run = elsewhere / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and (run / "samples" / "final.npz").is_file() and (run / "page.html").is_file()
    assert not (elsewhere / "conf").exists()  # nothing of the checkout was needed or copied

    _run([str(site / "bin" / "ddpm-sample"), f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "n=4", "sampler.steps=2",
          data, "hydra.run.dir=sample"], elsewhere, env)
    assert (elsewhere / "sample" / "samples.npz").is_file()

    _run([sys.executable, "-m", "ddpm_lit.evaluate", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "num_samples=8",
          "sampler.steps=2", "nll.num_images=2", "nll.batch_size=2", "fid.enabled=false", "reference_size=100",
          "kid_subset_size=4", "score_test=false", "~logger", "cache_dir=null", data, "hydra.run.dir=eval"], elsewhere, env)
    scored = json.loads((elsewhere / "eval" / "metrics.json").read_text())
    assert scored["samples"]["num_images"] == 8 and scored["nll"]["bound"] == "ddpm"
