"""How the package reads, in numbers: its lines per layer, the longest functions and the imports
of ddpm_lit inside functions. `python scripts/structure_stats.py [PACKAGE_DIR]` (default: ddpm_lit)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def layer_lines(root: Path) -> dict[str, int]:
    """Lines of Python per top-level folder of the package; its own modules count as "base", the
    entry points (a module with ``@hydra.main``) as "entry"."""
    lines: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        text = path.read_text()
        layer = parts[0] if len(parts) > 1 else ("entry" if "\nimport hydra\n" in text else "base")
        lines[layer] = lines.get(layer, 0) + len(text.splitlines())
    return lines


def main(root: Path) -> None:
    lines = layer_lines(root)
    total = sum(lines.values())
    print(f"lines of Python: {total}")
    for layer, n in sorted(lines.items(), key=lambda kv: -kv[1]):
        print(f"  {n:5d}  {100 * n / total:4.1f} %  {layer}")
    lengths, inner = [], []
    for path in sorted(root.rglob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            lengths.append((fn.end_lineno - fn.lineno + 1, f"{path.relative_to(root.parent)}:{fn.name}"))
            for node in ast.walk(fn):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                if isinstance(node, ast.ImportFrom) and (node.level or (module or "").startswith("ddpm_lit")):
                    inner.append(f"{path.relative_to(root.parent)}:{fn.name}")
    print("longest functions (lines):")
    for n, name in sorted(lengths, reverse=True)[:10]:
        print(f"  {n:4d}  {name}")
    print(f"ddpm_lit imports inside functions: {len(inner)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "ddpm_lit"))
