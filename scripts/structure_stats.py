"""How the package reads, in numbers: the longest functions and the imports of ddpm_lit inside
functions. `python scripts/structure_stats.py [PACKAGE_DIR]` (default: ddpm_lit)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def main(root: Path) -> None:
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
