"""The docs site: README.md is a front door of at most 200 lines, and `mkdocs build --strict`
(mkdocs.yml over docs/) builds, failing on a broken link or anchor, as CI runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytest.importorskip("mkdocs")


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(site)], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    assert "python -m pytest" in "\n".join(lines)  # the test command CI runs


def test_the_site_builds_strictly_with_every_page_in_its_nav(tmp_path: Path) -> None:
    proc = build(ROOT, tmp_path / "site")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "sample_ddpm" in api and "load_pretrained" in api  # the reference is generated from the docstrings


@pytest.mark.parametrize("broken", ["[a page](nowhere.md)", "[an anchor](maths.md#no-such-anchor)"])
def test_a_broken_link_or_anchor_fails_the_build(tmp_path: Path, broken: str) -> None:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", root / "docs", ignore=shutil.ignore_patterns("runs", "eval"))
    shutil.copy(ROOT / "mkdocs.yml", root / "mkdocs.yml")
    with open(root / "docs" / "data.md", "a") as f:
        f.write(f"\n{broken}\n")
    proc = build(root, tmp_path / "site")
    assert proc.returncode != 0 and "data.md" in proc.stdout + proc.stderr


def test_the_configuration_reference_is_the_configs_as_they_are(tmp_path: Path) -> None:
    """docs/config-reference.md is generated from ddpm_lit/conf/; a config changed without
    regenerating it (`python -m ddpm_lit.config.reference docs/config-reference.md`) fails here."""
    from ddpm_lit.config.reference import CONF, reference

    assert (ROOT / "docs" / "config-reference.md").read_text() == reference(), \
        "docs/config-reference.md is stale: python -m ddpm_lit.config.reference docs/config-reference.md"
    conf = Path(shutil.copytree(CONF, tmp_path / "conf"))
    trainer = conf / "trainer" / "default.yaml"
    trainer.write_text(trainer.read_text().replace("max_epochs", "max_epoch"))
    assert reference(conf) != reference()
    assert "`trainer=cpu`" in reference() and "### sample" in reference()
