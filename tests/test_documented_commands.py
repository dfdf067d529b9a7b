"""The documentation's command lines still run: every `python train.py ...`, `python sample.py ...`,
`python evaluate.py ...`, `python export.py ...` and `python -m ddpm_lit.<module> ...` in README.md
and docs/**/*.md (shell code blocks and inline code spans, read anew each run, so a page added later
is covered) composes with today's conf/ as Hydra would compose it on the command line: an unknown
key, a missing group option or a misspelt group fails the case that names the page and line
(``README.md:124``). Sweeps are checked value by value, ``hydra.*`` overrides with the rest, and a
``--help``/``--cfg`` line runs in this process. Nothing trains or samples: composing only."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from conftest import CONF_DIR, ROOT, run_command
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode

import ddpm_lit.config  # noqa: F401  (registers the resolvers conf/ uses, as each command does)

# What a placeholder of the docs stands for when its command is composed (composing reads no file,
# so any path of the right kind does). A `<placeholder>` not listed here fails its command's case:
# a new page uses these, or adds its own here.
RUN = "outputs/train/runs/2026-01-01_12-00-00"
CKPT = f"{RUN}/checkpoints/last.ckpt"
PLACEHOLDERS = {
    "run": "2026-01-01_12-00-00",  # outputs/train/runs/<run>, or <run>/checkpoints/... from the repo root
    "run dir": RUN,
    "quick run": RUN,
    "conditional run": RUN,
    "preset_contended": RUN,  # docs/readable_samples.md names its runs by their settings
    "v_b32_lr2e-3_fast_cond": RUN,
    "sweep": "2026-01-01_12-00-00",
    "sweep dir": "outputs/train/multiruns/2026-01-01_12-00-00",
    "n": "0",  # a sweep job's number
    "ckpt": CKPT,
    "conditional ckpt": CKPT,
    "same": CKPT,
    "...": CKPT,
    "dir": "outputs/compare",
    "another dir": "outputs/compare_2",
    "file.npz": "samples.npz",
    "user": "someone",
    "name": "my-ddpm",
    "out": "my-ddpm",  # export.py's out=
    "page": f"{RUN}/page.html",
}
# Shell variables a documented line reads ($seed of a `for seed in ...; do ...; done` loop).
SHELL_VARIABLES = {"seed": "1"}

# Documented lines that are not meant to compose as written, each with the reason. Keyed by the
# command as the test shows it (not by page and line, which move); its cases are expected to fail
# (strict xfail), and an entry that no longer matches a documented command fails
# test_every_allowed_failure_is_still_documented.
ALLOWED_FAILURES: dict[str, str] = {
    "python -m ddpm_lit.<command> key=value ...": "the shape of every command, not a command",
    "python -m ddpm_lit.<command>": "the shape of every command, not a command",
    "python train.py data=letters": "composes once the user has written conf/data/letters.yaml, as the page shows",
    "python -m ddpm_lit.bench [training overrides] [bench.KEY=VALUE ...]": "bench's synopsis: [...] marks optional parts",
}

ENTRY_SCRIPTS = ("train.py", "sample.py", "evaluate.py", "export.py")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh"}
SEPARATORS = {";", "&&", "||", "|", "&", ";;", "(", ")"}
LAUNCHERS = {"torchrun", "srun", "mpirun"}  # their options come before the script or `python`
PYTHON_FLAGS = ("-u", "-O", "-OO", "-B", "-X", "-W")
WRAPPERS = {"time", "/usr/bin/time", "nohup", "env", "exec", "do", "then", "else", "!", "{"}
COMMAND_WORDS = re.compile(r"\bpython3?\b|\bddpm-\w|\b(train|sample|evaluate|export)\.py\b")  # worth splitting
PLACEHOLDER = re.compile(r"<([^<>\n]+)>")
MASK = "\x00{}\x00"  # a placeholder while the line is split into words (`<` is a shell redirection)
UNKNOWN_VARIABLE = "\x01{}\x01"  # a shell variable SHELL_VARIABLES does not name


@dataclass
class DocCommand:
    """One command line of a page: where it is, its words (placeholders masked) and what reading it found wrong."""

    page: str  # relative to the repo root
    line: int
    text: str  # the command as shown (continuations joined, comment dropped)
    words: list[str]
    placeholders: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def shell_texts(markdown: str) -> list[tuple[int, str]]:
    """(line, text) of each logical line of the shell code blocks (``` or ~~~ fences with no
    language or a shell's; continuation lines joined, a `$ ` prompt dropped) and of each inline code
    span of the prose (which may run over a line break)."""
    lines = markdown.splitlines()
    texts: list[tuple[int, str]] = []
    prose = list(lines)
    i = 0
    while i < len(lines):
        opening = re.match(r"\s*(`{3,}|~{3,})\s*([^`\s]*)", lines[i])
        if not opening:
            i += 1
            continue
        fence, language = opening.groups()
        end = i + 1
        while end < len(lines) and not re.fullmatch(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", lines[end]):
            end += 1
        for k in range(i, min(end + 1, len(lines))):
            prose[k] = ""
        if language.lower() in SHELL_LANGUAGES:
            # a block of `$ ` prompts shows what the commands print: only the prompted lines are commands
            prompted = any(line.strip().startswith("$ ") for line in lines[i + 1 : end])
            k = i + 1
            while k < end:
                start, text = k, lines[k].strip()
                if prompted and not text.startswith("$ "):
                    k += 1
                    continue
                text = text[2:] if prompted else text
                while k + 1 < end and (continues(text) or COMMAND_WORDS.search(text) and unclosed_quote(text)):
                    k += 1  # a quote open over a line break holds the break and the next line's indent, as in the shell
                    text = text[:-1] + " " + lines[k].strip() if continues(text) else text + "\n" + lines[k]
                texts.append((start + 1, text))
                k += 1
        i = end + 1
    joined = "\n".join(prose)
    for span in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", joined, flags=re.DOTALL):
        content = span.group(2)
        if re.search(r"\n[ \t]*\n", content):  # a span never crosses a paragraph
            continue
        texts.append((joined.count("\n", 0, span.start()) + 1, " ".join(content.split("\n")).strip()))
    return sorted(texts)


def continues(text: str) -> bool:
    """The line ends with a `\\` that joins the next one (an odd number of them)."""
    return (len(text) - len(text.rstrip("\\"))) % 2 == 1


def unclosed_quote(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return True
    return False


def scan(text: str) -> tuple[str, list[str]]:
    """``text`` as the shell reads it before splitting: an unquoted `#` comment dropped, ``$variables``
    outside single quotes expanded from SHELL_VARIABLES (an unknown one marked); and the words with
    an unquoted ``{a,b}``, which bash brace-expands into several words."""
    out, problems = [], []
    quote, i, word_start, brace_open, brace_comma = None, 0, True, False, False
    while i < len(text):
        c = text[i]
        if quote == "'":
            quote = None if c == "'" else quote
        elif c == "\\" and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 2
            word_start = False
            continue
        elif quote == '"' and c == '"':
            quote = None
        elif quote is None and c in "'\"":
            quote = c
        elif quote is None and c == "#" and word_start:
            break
        elif c == "$" and (m := re.match(r"\$(\w+)", text[i:])):
            out.append(SHELL_VARIABLES.get(m.group(1), UNKNOWN_VARIABLE.format(m.group(1))))
            i += len(m.group(0))
            word_start = False
            continue
        elif quote is None and c.isspace():
            word_start, brace_open, brace_comma = True, False, False
            out.append(c)
            i += 1
            continue
        elif quote is None and c == "{":
            brace_open, brace_comma = True, False
        elif quote is None and c == "," and brace_open:
            brace_comma = True
        elif quote is None and c == "}" and brace_open and brace_comma:
            problems.append(re.sub(r"['\"]", "", text[: i + 1].split()[-1]))
            brace_open = False
        out.append(c)
        word_start = quote is None and c in ";&|("
        i += 1
    return "".join(out).strip(), problems


def commands_in(page: str, line: int, text: str) -> list[DocCommand]:
    """The project's commands among the shell commands of ``text`` (split at ``;``, ``&&``, ``|``, ...):
    those that, past env assignments, `time`, `torchrun`/`srun` and the like, start `python[3]` (or
    run an entry script or console script directly) and run one of ENTRY_SCRIPTS or a ddpm_lit module."""
    if not COMMAND_WORDS.search(text):
        return []
    shown, braced = scan(text)
    placeholders: list[str] = []

    def mask(m: re.Match) -> str:
        placeholders.append(m.group(1))
        return MASK.format(len(placeholders) - 1)

    masked = PLACEHOLDER.sub(mask, shown)
    try:
        lexer = shlex.shlex(masked, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split, lexer.commenters = True, ""
        words = list(lexer)
    except ValueError as e:  # an unclosed quote: the shell would wait for more
        return [DocCommand(page, line, shown, [], placeholders, [f"the shell cannot split it: {e}"])]
    found, segment = [], []
    for word in [*words, ";"]:
        if word in SEPARATORS:
            command = project_command(segment)
            if command is not None:
                shown_words = [unmasked(w, placeholders) for w in segment]
                problems = [f"unknown shell variable ${name} (add it to SHELL_VARIABLES)"
                            for w in command for name in re.findall("\x01(\\w+)\x01", w)]
                problems += [f"bash brace-expands the unquoted {w!r} into several words: quote it"
                             for w in braced if w in shown_words]
                found.append(DocCommand(page, line, re.sub("\x01(\\w+)\x01", r"$\1", " ".join(shown_words)),
                                        [w for w in command if w != "..."], placeholders, problems))
            segment = []
        else:
            segment.append(word)
    return found


def project_command(words: list[str]) -> list[str] | None:
    """``words`` from `python` on (`python` put first for a launcher or console script that runs the
    command directly), if they run one of the project's commands; None otherwise."""
    i = 0
    while i < len(words):
        word = words[i]
        if re.fullmatch(r"[A-Za-z_]\w*=.*", word):  # an environment variable for the command
            i += 1
        elif word in WRAPPERS:  # and the wrapper's options (`/usr/bin/time -v`)
            i += 1
            while i < len(words) and words[i].startswith("-"):
                i += 1
        elif word in LAUNCHERS:  # its options and their values, up to what it runs
            i += 1
            while i < len(words) and not (is_python(words[i]) or is_entry(words[i]) or words[i] in ("-m", "--module")):
                i += 1
            if i < len(words) and words[i] in ("-m", "--module"):  # `torchrun ... -m ddpm_lit.train ...`
                return ["python", "-m", *words[i + 1 :]] if words[i + 1 : i + 2] and is_ours(words[i + 1]) else None
        elif is_python(word):
            rest = words[i + 1 :]
            while rest and rest[0] in PYTHON_FLAGS:  # `python -X importtime -m ...`
                rest = rest[2:] if rest[0] in ("-X", "-W") else rest[1:]
            if rest[:1] == ["-m"] and len(rest) > 1 and is_ours(rest[1]) or rest and is_entry(rest[0]):
                return ["python", *rest]
            return None
        elif is_entry(word) or word in console_scripts():
            return ["python", *words[i:]]
        else:
            return None
    return None


def is_ours(module: str) -> bool:
    return module.split(".")[0] == "ddpm_lit"


def is_python(word: str) -> bool:
    return bool(re.fullmatch(r"(\S*/)?python(3(\.\d+)?)?", word))


def is_entry(word: str) -> bool:
    return Path(word).name in ENTRY_SCRIPTS and word.removeprefix("./") in ENTRY_SCRIPTS


@cache
def console_scripts() -> dict[str, str]:
    """pyproject.toml's console scripts: name -> module (``ddpm-train`` -> ``ddpm_lit.train``)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return {name: target.split(":")[0] for name, target in scripts.items()}


def unmasked(word: str, placeholders: list[str]) -> str:
    return re.sub("\x00(\\d+)\x00", lambda m: f"<{placeholders[int(m.group(1))]}>", word)


def documented_commands() -> list[DocCommand]:
    commands = []
    for path in doc_pages():
        page = path.relative_to(ROOT).as_posix()
        for line, text in shell_texts(path.read_text(encoding="utf-8")):
            commands.extend(commands_in(page, line, text))
    return commands


def case_ids(commands: list[DocCommand]) -> list[str]:
    """``page:line``, and ``page:line(2)`` for a second command on one line."""
    seen: Counter[str] = Counter()
    ids = []
    for command in commands:
        seen[command.where] += 1
        ids.append(command.where if seen[command.where] == 1 else f"{command.where}({seen[command.where]})")
    return ids


def module_of(words: list[str]) -> str:
    """The module a documented command runs: ``-m``'s, an entry script's (its wrapper imports
    ``main`` from it) or a console script's."""
    target = words[1]
    if target == "-m":
        return words[2]
    if target in console_scripts():
        return console_scripts()[target]
    wrapper = (ROOT / target.removeprefix("./")).read_text()
    return re.search(r"from (ddpm_lit[\w.]*) import main", wrapper).group(1)


def arguments_of(words: list[str]) -> list[str]:
    return words[3:] if words[1] == "-m" else words[2:]


@cache
def module_source(module: str) -> str:
    parts = module.split(".")
    for path in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__main__.py")):
        if path.is_file():
            return path.read_text()
    raise AssertionError(f"no module {module} (looked for {ROOT.joinpath(*parts)}.py)")


def hydra_config_name(module: str) -> str | None:
    """The config a module's ``@hydra.main`` composes, or None for a module that is no Hydra command."""
    m = re.search(r"@hydra\.main\(([^)]*)\)", module_source(module))
    return None if m is None else re.search(r"config_name=\"(\w+)\"", m.group(1)).group(1)


def is_argparse_tool(module: str) -> bool:
    return "argparse.ArgumentParser(" in module_source(module)


def filled(command: DocCommand) -> list[str]:
    """The command's arguments with each placeholder replaced by its PLACEHOLDERS value."""
    unknown = sorted({p for p in command.placeholders if p not in PLACEHOLDERS})
    if unknown:
        raise AssertionError(f"{command.where}: unknown placeholder(s) {', '.join(f'<{p}>' for p in unknown)} in "
                             f"`{command.text}`: use one of tests/test_documented_commands.py's PLACEHOLDERS or add it there")
    return [re.sub("\x00(\\d+)\x00", lambda m: PLACEHOLDERS[command.placeholders[int(m.group(1))]], w)
            for w in arguments_of(command.words)]


def hydra_arguments(args: list[str]):
    """Hydra's own reading of a command line (its flags and the overrides), as @hydra.main parses it."""
    from hydra._internal.utils import get_args_parser

    try:
        return get_args_parser().parse_args(args)
    except SystemExit as e:
        raise AssertionError(f"Hydra does not accept the command line's flags {args}") from e


def sweep_values(override, config_loader) -> list[str]:
    """The values a sweep override takes, as strings (an interval: its start, which Optuna may draw)."""
    if override.is_discrete_sweep():
        return list(override.sweep_string_iterator())
    return [str(override.value().start)]


def jobs(overrides: list[str], extra_sweeps: dict[str, str], config_loader) -> list[list[str]]:
    """The overrides of a sweep's jobs to compose: each sweep at its first value, then each other
    value of one sweep with the others at their first (not their product: every value is composed once)."""
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(
        [*overrides, *(f"{key}={value}" for key, value in extra_sweeps.items())])  # the loader: glob(...) lists a group
    choices = [[o.input_line] if not o.is_sweep_override() else
               [f"{o.get_key_element()}={v}" for v in sweep_values(o, config_loader)] for o in parsed]
    first = [values[0] for values in choices]
    variants = [first]
    for i, values in enumerate(choices):
        variants += [[*first[:i], value, *first[i + 1 :]] for value in values[1:]]
    return variants


def compose_command(config_name: str, args: list[str], conf_dir: Path = CONF_DIR) -> int:
    """Compose what ``<command> <args>`` would run against ``conf_dir``, as Hydra does: in RUN mode
    (a sweep there is an error), or with --multirun (or hydra.mode=MULTIRUN from the config) the
    sweep's own config and then each job's: every sweep value, and for the Optuna sweeper each
    entry of its search space. Raises what Hydra raises; returns how many configs were composed."""
    parsed = hydra_arguments(args)
    assert not (parsed.config_path or parsed.config_dir), "--config-path/--config-dir: not checked by this test"
    config_name = parsed.config_name or config_name
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(conf_dir), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        multirun = parsed.multirun
        if not multirun:
            try:
                cfg = hydra.compose_config(config_name, parsed.overrides, run_mode=RunMode.RUN, from_shell=True)
            except Exception:
                if str(hydra.get_mode(config_name, parsed.overrides)) != "RunMode.MULTIRUN":
                    raise
                multirun = True  # the config asks for a sweep (hparams_search=...): the sweep overrides are its
            else:
                multirun = str(cfg.hydra.get("mode")) == "RunMode.MULTIRUN"
                if not multirun:
                    return 1
        sweep = hydra.compose_config(config_name, parsed.overrides, run_mode=RunMode.MULTIRUN, from_shell=True)
        given = {o.split("=", 1)[0].lstrip("+~") for o in parsed.overrides}
        search_space = {k: v for k, v in (sweep.hydra.sweeper.get("params") or {}).items() if k not in given}
        variants = jobs(parsed.overrides, search_space, hydra.config_loader)
        for overrides in variants:
            hydra.compose_config(config_name, overrides, run_mode=RunMode.RUN, from_shell=True)
        return 1 + len(variants)


SHOW_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc", "--version")


def check_command(command: DocCommand, monkeypatch: pytest.MonkeyPatch) -> None:
    """``command`` is one the project would accept: it composes (a Hydra command), runs as shown (a
    --help, --cfg or --info line), or its arguments parse (an argparse tool)."""
    assert not command.problems, f"{command.where}: `{command.text}`: " + "; ".join(command.problems)
    args = filled(command)
    module = module_of(command.words)
    config_name = hydra_config_name(module)
    if config_name is None and is_argparse_tool(module):  # ddpm_lit.apps.shards, ddpm_lit.evaluation.classifier
        assert_argparse_accepts(module, args, monkeypatch, command)
    elif config_name is None:  # a tool that reads sys.argv itself: run, it would do its work; it exists
        assert "def main(" in module_source(module), f"{command.where}: `{command.text}`: {module} has no main()"
    elif any(a in SHOW_FLAGS for a in args):
        proc = run_command(module, args)
        assert proc.returncode == 0, f"{command.where}: `{command.text}` exited {proc.returncode}: {proc.stderr[-2000:]}"
        if "--help" in args or "-h" in args:
            assert "Powered by Hydra" in proc.stdout
    else:
        key = (config_name, tuple(args))
        if key not in COMPOSED:  # pages repeat commands: each is composed once
            try:
                COMPOSED[key] = compose_command(config_name, args)
            except Exception as e:  # noqa: BLE001  (whatever Hydra raises is what the case reports)
                COMPOSED[key] = e
        if isinstance(error := COMPOSED[key], Exception):
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            hint = (" (a quoted value runs over a line break, which the shell keeps: break the line outside the quotes)"
                    if any("\n" in a for a in args) else "")
            raise AssertionError(f"{command.where}: `{command.text}` does not compose ({config_name}.yaml): "
                                 f"{type(error).__name__}: {first}{hint}") from error


COMPOSED: dict[tuple[str, tuple[str, ...]], int | Exception] = {}


class _Parsed(Exception):
    pass


def assert_argparse_accepts(module: str, args: list[str], monkeypatch: pytest.MonkeyPatch, command: DocCommand) -> None:
    """The tool's own argument parser accepts ``args``; stopped right after parsing, so nothing runs."""
    import argparse
    import importlib

    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, *a, **k):
        original(self, *a, **k)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [module, *args])
    with pytest.raises((_Parsed, SystemExit)) as stopped:
        importlib.import_module(module).main(args)
    assert stopped.type is _Parsed, f"{command.where}: `{command.text}`: {module}'s arguments do not parse (exit {stopped.value})"


COMMANDS = documented_commands()


def case(command: DocCommand):
    reason = ALLOWED_FAILURES.get(command.text)
    return pytest.param(command, marks=pytest.mark.xfail(strict=True, reason=reason)) if reason else command


@pytest.mark.filterwarnings("ignore::DeprecationWarning:optuna.*")  # Optuna 2's SQLAlchemy 1.x imports
@pytest.mark.parametrize("command", [case(c) for c in COMMANDS], ids=case_ids(COMMANDS))
def test_a_documented_command_composes(command: DocCommand, monkeypatch: pytest.MonkeyPatch) -> None:
    check_command(command, monkeypatch)


@pytest.mark.parametrize("module", sorted({m for c in COMMANDS if c.words and "\x00" not in (m := module_of(c.words))}))
def test_a_documented_module_answers_help(module: str) -> None:
    """Each module the docs run (``python -m ddpm_lit.<command>``, the entry scripts' and console
    scripts' modules) exists and prints its help: Hydra's for a Hydra command, argparse's for a
    tool (a tool that reads sys.argv itself is not run: it would do its work)."""
    if hydra_config_name(module) is None and not is_argparse_tool(module):
        pytest.skip(f"{module} reads sys.argv itself: --help would be taken as an argument")
    proc = run_command(module, ["--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("Powered by Hydra" if hydra_config_name(module) else "usage:") in proc.stdout


def test_the_extractor_finds_the_documented_commands() -> None:
    """A broken extractor cannot pass vacuously: the docs hold dozens of commands, of every entry
    script, the quick preset's training command and the summarize module among them."""
    assert len(COMMANDS) >= 20, [c.where for c in COMMANDS]
    scripts = Counter(c.words[1] for c in COMMANDS if c.words)
    assert all(scripts[s] >= 1 for s in ("train.py", "sample.py", "evaluate.py")), scripts
    assert any(c.words[1:] == ["train.py", "experiment=quick"] for c in COMMANDS)
    assert any(c.words[1:3] == ["-m", "ddpm_lit.summarize"] for c in COMMANDS)


def test_the_extractor_reads_every_shell_form() -> None:
    """Continuations, comments, quotes, env prefixes, launchers, prompts, `&&` chains, loops and
    inline spans across a line break each give the words the shell would pass."""
    page = "\n".join([
        "Run `python train.py", "schedule=cosine` inline, not `python scripts/x.py a=b`.",
        "```bash",
        "WANDB_MODE=offline python train.py experiment=quick \\",
        "    'bench.ablate=[\"a=1\",",
        "    \"b=2\"]'   # a comment with <no placeholder>",
        "torchrun --nnodes N --nproc-per-node 4 train.py trainer=ddp",
        "srun --kill-on-bad-exit=1 python -m ddpm_lit.train trainer=ddp",
        "cd x && /usr/bin/time -v python3 -m ddpm_lit.summarize dirs=<sweep dir> html=true",
        "for seed in 1 2; do python sample.py seed=$seed out=o_$seed; done",
        "python -c 'import ddpm_lit' && python -m pytest",
        "```",
        "```",
        "$ python evaluate.py --multirun sampler.steps=10,20",
        "what it printed: python train.py is not run here",
        "```",
        "```python",
        "python train.py in_a_python_block=1",
        "```",
    ])  # fmt: skip
    found = [(line, c.words, c.placeholders) for line, text in shell_texts(page) for c in commands_in("p.md", line, text)]
    assert found == [
        (1, ["python", "train.py", "schedule=cosine"], []),
        (4, ["python", "train.py", "experiment=quick", 'bench.ablate=["a=1",\n    "b=2"]'], []),
        (7, ["python", "train.py", "trainer=ddp"], []),
        (8, ["python", "-m", "ddpm_lit.train", "trainer=ddp"], []),
        (9, ["python", "-m", "ddpm_lit.summarize", "dirs=" + MASK.format(0), "html=true"], ["sweep dir"]),
        (10, ["python", "sample.py", "seed=1", "out=o_1"], []),
        (14, ["python", "evaluate.py", "--multirun", "sampler.steps=10,20"], []),
    ]
    (brace,) = commands_in("p.md", 1, "python -m ddpm_lit.compare models={a:x,b:y} 'raw_models={c:x,d:y}'")
    assert brace.problems == ["bash brace-expands the unquoted 'models={a:x,b:y}' into several words: quote it"]
    (other,) = commands_in("p.md", 1, "rm -rf /tmp/x_$USER; python train.py seed=$seed trainer.max_steps=$STEPS")
    assert other.words == ["python", "train.py", "seed=1", "trainer.max_steps=" + UNKNOWN_VARIABLE.format("STEPS")]
    assert other.problems == ["unknown shell variable $STEPS (add it to SHELL_VARIABLES)"]


def test_an_unknown_placeholder_fails_naming_its_page_and_line() -> None:
    (command,) = commands_in("docs/new.md", 7, "python sample.py ckpt_path=<my checkpoint> n=4")
    with pytest.raises(AssertionError, match=r"docs/new\.md:7: unknown placeholder\(s\) <my checkpoint>"):
        filled(command)


def test_renaming_a_documented_key_fails_its_command(tmp_path: Path) -> None:
    """The check bites: a documented command that sets trainer.max_epochs composes against conf/,
    and no longer composes once trainer/default.yaml calls the key something else."""
    command = next((c for c in COMMANDS if c.words[1:2] == ["train.py"] and not c.problems
                    and any(a.startswith("trainer.max_epochs=") for a in c.words[2:])), None)
    assert command is not None, "no documented train.py command sets trainer.max_epochs: rename another key here"
    assert compose_command("train", filled(command)) >= 1
    conf = shutil.copytree(CONF_DIR, tmp_path / "conf")
    default = conf / "trainer" / "default.yaml"
    default.write_text(re.sub(r"(?m)^max_epochs:", "max_epochs_renamed:", default.read_text()))
    with pytest.raises(Exception, match=r"max_epochs"):
        compose_command("train", filled(command), conf_dir=conf)


def test_a_sweep_is_checked_value_by_value() -> None:
    """Every value of a documented sweep is composed: a group option missing from conf/ fails the
    command though the sweep's first value composes, and a sweep without --multirun fails as Hydra does."""
    assert compose_command("train", ["--multirun", "schedule=linear,cosine"]) == 3  # the sweep and its 2 jobs
    with pytest.raises(Exception, match=r"schedule.*sigmoid|sigmoid.*schedule"):
        compose_command("train", ["--multirun", "schedule=linear,sigmoid"])
    with pytest.raises(Exception, match="Ambiguous value"):
        compose_command("train", ["schedule=linear,cosine"])
    with pytest.raises(Exception, match="launcher"):
        compose_command("train", ["--multirun", "hydra/launcher=jolib", "schedule=linear"])


def test_a_help_or_cfg_line_runs_as_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A documented `--help` or `--cfg job` line runs (in this process) rather than being composed:
    it passes when the command prints, and fails on a key that conf/ does not have."""
    (help_line,) = commands_in("p.md", 1, "python -m ddpm_lit.summarize --help")
    check_command(help_line, monkeypatch)
    (cfg_line,) = commands_in("p.md", 2, "python train.py --cfg job trainer.max_epochz=1")
    with pytest.raises(AssertionError, match=r"p\.md:2: `python train\.py --cfg job trainer\.max_epochz=1` exited 1"):
        check_command(cfg_line, monkeypatch)


def test_every_allowed_failure_is_still_documented() -> None:
    documented = {c.text for c in COMMANDS}
    assert set(ALLOWED_FAILURES) <= documented, set(ALLOWED_FAILURES) - documented
