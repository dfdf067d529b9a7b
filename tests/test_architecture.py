"""The package's structure holds: imports go only downward (import-linter's contracts in
pyproject.toml), no cycles, and no import hidden inside a function."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ddpm_lit"
# Imported inside the one function that needs them: optional extras (pip install '.[bench]': diffusers;
# '.[dev]': selenium, which drives Chromium for the pages' screenshots and browser tests), and what takes
# seconds to import and a command needs on some of its paths only, so that commands start fast
# (tests/test_imports.py): Lightning and the training modules, torchvision, the figures (matplotlib),
# the pages, the loggers (W&B) and the scorer (torchmetrics).
LAZY_IMPORTS = {"diffusers", "selenium", "lightning", "torchvision", "ddpm_lit.reporting.pages", "ddpm_lit.reporting.figures",
                "ddpm_lit.training.loggers", "ddpm_lit.data.datamodule", "ddpm_lit.evaluation.scorer", "ddpm_lit.training",
                # the entry modules (ddpm_lit/train.py, ...) import their command in main(): --help needs Hydra alone
                "ddpm_lit.apps.train", "ddpm_lit.apps.sample", "ddpm_lit.apps.evaluate", "ddpm_lit.apps.run_figures",
                "ddpm_lit.apps.summarize", "ddpm_lit.apps.compare", "ddpm_lit.apps.families", "ddpm_lit.apps.bench",
                "ddpm_lit.apps.export",
                # ddpm_lit.load_pretrained: `import ddpm_lit` (every command) does not load torch and the networks;
                # huggingface_hub: export.py push_to_hub= alone needs it (an optional extra)
                "ddpm_lit.generation.pretrained", "huggingface_hub",
                # a model card's HTML, for its screenshot alone
                "markdown",
                # torchrun's store (ddpm_lit.launches): the ranks of a torchrun launch alone need it, and the
                # resolvers that name the run dir are loaded by every command, --help included
                "torch.distributed"}


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root`` with ``root``'s pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
         str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_import_contracts_are_kept() -> None:
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [("core/schedules.py", "ddpm_lit.apps.train"), ("generation/generate.py", "ddpm_lit.training.module"),
     ("config/build.py", "ddpm_lit.apps.evaluate"), ("reporting/figures.py", "ddpm_lit.config.build"), ("core/diffusion.py", "lightning")],
)  # fmt: skip
def test_an_upward_import_breaks_a_contract(tmp_path: Path, module: str, upward: str) -> None:
    shutil.copytree(PACKAGE, tmp_path / "ddpm_lit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "ddpm_lit" / module
    target.write_text(target.read_text() + f"\nimport {upward}  # noqa: E402\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout and f"ddpm_lit.{module[:-3].replace('/', '.')} -> {upward} (l." in proc.stdout


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _lazy(module: str) -> bool:
    return any(module == lazy or module.startswith(lazy + ".") for lazy in LAZY_IMPORTS)


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """The ddpm_lit modules that ``path`` imports at module level, and every import statement
    inside a function (as ``function: module``)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ddpm_lit"):
            for alias in node.names:  # `from ddpm_lit.data import mnist` imports a module
                sub = f"{node.module}.{alias.name}"
                top.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).is_file() else node.module)
        elif isinstance(node, ast.Import):
            top.update(a.name for a in node.names if a.name.startswith("ddpm_lit"))
    inside = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    if isinstance(node, ast.ImportFrom):  # `from ddpm_lit.data import datamodule` imports a module
                        names = [name] if _lazy(name) else [f"{name}.{a.name}" for a in node.names]
                    else:
                        names = [a.name for a in node.names]
                    if not all(_lazy(n) for n in names):
                        inside.append(f"{path.relative_to(ROOT)}:{node.lineno} {fn.name}: {name}")
    return top, inside


def test_no_import_inside_a_function() -> None:
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in _imports(path)[1]]
    assert found == [], "\n".join(found)


def test_no_import_cycle() -> None:
    graph = {_module_name(p): _imports(p)[0] for p in PACKAGE.rglob("*.py")}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above read the real files: a function import and a cycle in a copy are found."""
    pkg = tmp_path / "ddpm_lit"
    shutil.copytree(PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "io.py").write_text((pkg / "io.py").read_text() + "\nfrom ddpm_lit.runs import flatten\n\n\ndef f():\n    import json\n")
    (pkg / "runs.py").write_text((pkg / "runs.py").read_text() + "\nfrom ddpm_lit.io import atomic_write\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    with pytest.raises(AssertionError, match="ddpm_lit.io -> ddpm_lit.runs -> ddpm_lit.io|ddpm_lit.runs -> ddpm_lit.io -> ddpm_lit.runs"):
        test_no_import_cycle()
    with pytest.raises(AssertionError, match=r"ddpm_lit/io.py:\d+ f: json"):
        test_no_import_inside_a_function()


# The door: a command's config becomes typed values in the entry points, the commands and
# ddpm_lit.config; no layer below them takes or returns a DictConfig.
ABOVE_THE_DOOR = ("ddpm_lit/apps/", "ddpm_lit/config/")


def _takes_a_dict_config(path: Path) -> list[str]:
    """The functions of ``path`` whose signature names DictConfig, and its imports of DictConfig."""
    tree = ast.parse(path.read_text())
    found = [f"{path.relative_to(ROOT)}:{node.lineno} imports DictConfig" for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and any(a.name in ("DictConfig", "ListConfig") for a in node.names)]
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations = [a.annotation for a in fn.args.args + fn.args.kwonlyargs if a.annotation] + [fn.returns]
            if any(a is not None and "DictConfig" in ast.unparse(a) for a in annotations):
                found.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}")
    return found


def test_no_layer_below_the_commands_takes_a_dict_config() -> None:
    below = [p for p in sorted(PACKAGE.rglob("*.py"))
             if not str(p.relative_to(ROOT)).startswith(ABOVE_THE_DOOR) and "\nimport hydra\n" not in p.read_text()]
    assert len(below) > 40  # every module of the layers below (not an empty glob)
    found = [line for p in below for line in _takes_a_dict_config(p)]
    assert found == [], "\n".join(found)
    # the check sees one where there is one: the commands take the composed config
    assert _takes_a_dict_config(PACKAGE / "apps" / "train.py")
