"""The commands that read and write folders the user names (run_figures, summarize, compare, families,
bench) are Hydra commands, as train.py is, but Hydra leaves nothing of its own where they run (no
run dir, no .hydra/, no log file: conf/hydra/command.yaml), and a bad setting stops each of them
with one ``error:`` line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_command


@pytest.mark.parametrize(
    ("module", "args", "words"),
    [
        ("ddpm_lit.run_figures", ["run_dir=run", "num_samples=1"], "num_samples must be an integer ≥ 2, got 1"),
        ("ddpm_lit.summarize", [], "give the folders to summarize: dirs="),
        ("ddpm_lit.compare", ["out=o", "models={a:missing.ckpt}", "grid=[ddpm:2]"],
         "models.a: checkpoint missing.ckpt does not exist"),
        ("ddpm_lit.families", ["out=o", "families=[ddpm,flow]"], "families must be a list of ddpm, vae, gan, got ['ddpm', 'flow']"),
        ("ddpm_lit.bench", ["experiment=quick", "bench.sample_steps=[20,0]"],
         "bench.sample_steps must be an integer ≥ 1 or a list of them"),
    ],
)  # fmt: skip
def test_a_bad_setting_stops_with_one_line_and_leaves_nothing_behind(module: str, args: list[str], words: str,
                                                                     tmp_path: Path) -> None:
    proc = run_command(module, args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/, .hydra/ or *.log


def test_closed_sets_list_their_values(tmp_path: Path) -> None:
    (tmp_path / "x.ckpt").write_bytes(b"")  # the grid is checked before any checkpoint is read
    proc = run_command("ddpm_lit.compare", ["out=o", "models={a:x.ckpt}", "grid=[euler:10]"], cwd=tmp_path)
    assert proc.returncode == 2 and "with SAMPLER in ddpm, ddim, dpmpp_2m, dpmpp_2m_sde; got 'euler:10'" in proc.stderr, proc.stderr
    proc = run_command("ddpm_lit.families", ["out=o", "+presets.flow=quick"], cwd=tmp_path)
    assert proc.returncode == 2 and "with FAMILY in ddpm, vae, gan, got presets.flow" in proc.stderr, proc.stderr
