"""docs/config-reference.md, generated from ``ddpm_lit/conf/``: every command's config and every
group's options, each file as it is (its comments say what each key does), so the reference
cannot drift from the configs (tests/test_docs_site.py regenerates it and compares).

``python -m ddpm_lit.config.reference docs/config-reference.md`` writes it.
A developer's tool, so it keeps a positional argument rather than being a Hydra command.
"""

from __future__ import annotations

import sys
from pathlib import Path

CONF = Path(__file__).resolve().parent.parent / "conf"
INTRO = """# Configuration reference

Generated from `ddpm_lit/conf/` by `python -m ddpm_lit.config.reference docs/config-reference.md`
(a test regenerates it and fails when it differs): each command's config, then each group's
options, as the files are. A command line picks a group's option with `group=option`
(`schedule=cosine`), sets a key with `key=value` (`trainer.max_epochs=50`), and adds one with
`+key=value`; [Configuration](configuration.md) explains the groups and presets.
"""


def _block(path: Path, conf: Path) -> list[str]:
    return [f"`conf/{path.relative_to(conf).as_posix()}`", "", "```yaml", path.read_text().rstrip(), "```", ""]


def reference(conf: Path = CONF) -> str:
    """The reference's markdown for the config folder ``conf``."""
    lines = [INTRO, "## Commands", ""]
    for path in sorted(conf.glob("*.yaml")):
        lines += [f"### {path.stem}", "", *_block(path, conf)]
    lines += ["## Groups", ""]
    for group in sorted(p for p in conf.rglob("*") if p.is_dir() and any(p.glob("*.yaml"))):
        name = group.relative_to(conf).as_posix()
        options = sorted(group.glob("*.yaml"))
        lines += [f"### {name}", "", f"Options: {', '.join(f'`{name}={p.stem}`' for p in options)}.", ""]
        for path in options:
            lines += _block(path, conf)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m ddpm_lit.config.reference OUT.md", file=sys.stderr)
        raise SystemExit(2)
    Path(args[0]).write_text(reference())
    print(f"written: {args[0]}")


if __name__ == "__main__":
    main()
