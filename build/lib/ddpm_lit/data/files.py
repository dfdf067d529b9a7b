"""IDX files: checked (header, size, md5), fetched from the first source that works, and read.

A data set's files are described by ``IdxFiles`` (name -> md5, IDX magic number, item count);
``ensure_files`` makes sure a folder holds all of them valid, fetching the missing ones from a
list of sources tried in turn, so that a bad file stops the run with a message that names it
instead of an error from deep inside a reader.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ddpm_lit.errors import DataError

log = logging.getLogger(__name__)

# name -> (md5 of the raw IDX file, IDX magic number, number of items)
IdxFiles = dict[str, tuple[str, int, int]]
# IDX magic numbers of unsigned-byte files: 2049 one dimension (labels), 2051 three (images)
LABELS_MAGIC, IMAGES_MAGIC = 2049, 2051


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def fetch_with_torchvision(dataset_class: Callable[..., object], root: Path) -> None:
    """Both splits of a torchvision data set (``MNIST``, ``FashionMNIST``) downloaded into
    ``root/<its folder>/raw``, its progress output silenced."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for train in (True, False):
            dataset_class(str(root), train=train, download=True)


def idx_problem(path: Path, magic: int | None = None) -> str | None:
    """Why ``path`` is not a complete unsigned-byte IDX file (with the given magic number, if
    given), or None if it is."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4:
            return f"truncated: {size} bytes, too short for an IDX header"
        found = int.from_bytes(header, "big")
        if magic is not None and found != magic:
            return f"not an IDX file of this kind: magic number {found}, expected {magic}"
        if header[:3] != b"\x00\x00\x08" or header[3] == 0:
            return f"not an unsigned-byte IDX file: its header starts with {header.hex()}"
        ndim = header[3]
        dims_raw = f.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        return f"truncated: {size} bytes, too short for its IDX header"
    dims = [int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if size != expected:
        return f"truncated or padded: {size} bytes, its header {dims} implies {expected}"
    return None


def read_idx(path: str | Path) -> torch.Tensor:
    """The array of an unsigned-byte IDX file as a uint8 tensor of its header's shape
    (images (N, H, W), labels (N,)); a DataError that names the file when it is not one."""
    path = Path(path)
    problem = idx_problem(path)
    if problem is not None:
        raise DataError(f"{path}: {problem}")
    raw = path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    return torch.from_numpy(array.copy())


def check_files(raw_dir: Path, files: IdxFiles, check_md5: bool = True, what: str = "the genuine file") -> dict[str, str]:
    """Map each bad or missing file of ``files`` in ``raw_dir`` to what is wrong with it (empty
    when all are valid). Without ``check_md5`` (files of one's own) only the IDX format is checked."""
    problems: dict[str, str] = {}
    for name, (md5, magic, count) in files.items():
        path = raw_dir / name
        problem = idx_problem(path, magic)
        if problem is None and check_md5 and (found_count := _items(path)) != count:
            problem = f"{found_count} items, expected {count}"
        if problem is None and check_md5:
            found = md5sum(path)
            if found != md5:
                problem = f"md5 {found}, expected {md5} (corrupted, or not {what})"
        if problem is not None:
            problems[name] = problem
    return problems


def _items(path: Path) -> int:
    """The item count of a valid IDX file: its first dimension."""
    with open(path, "rb") as f:
        return int.from_bytes(f.read(8)[4:8], "big")


def ensure_files(
    title: str,
    raw_dir: Path,
    files: IdxFiles,
    sources: Sequence[tuple[str, Callable[[], None]]],
    download: bool = True,
    check_md5: bool = True,
    fix: str = "",
) -> Path:
    """Make sure ``raw_dir`` holds every file of ``files``, valid; return ``raw_dir``.

    Files already there are checked, never replaced: a bad one raises ``DataError`` naming it.
    Missing files are fetched when ``download``, from ``sources`` in turn (name, fetch), each
    fetch checked; ``fix`` ends the error when none worked.
    """
    what = f"the genuine {title} file"
    problems = check_files(raw_dir, files, check_md5, what)
    bad = {name: p for name, p in problems.items() if p != "missing"}
    if bad:
        raise DataError(_describe(title, raw_dir, bad, "delete the bad file(s) and rerun to fetch them again"))
    if not problems:
        return raw_dir
    if not download:
        raise DataError(_describe(title, raw_dir, problems, "set data.download=true or copy the raw IDX files there"))
    raw_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for source, fetch in sources:
        log.info("fetching %s into %s via %s", title, raw_dir, source)
        try:
            fetch()
        except Exception as e:  # any failure of a source moves on to the next one
            errors.append(f"{source}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
            continue
        problems = check_files(raw_dir, files, check_md5, what)
        if not problems:
            return raw_dir
        errors.append(f"{source}: fetched files failed the check: {problems}")
    raise DataError(f"could not fetch {title} into {raw_dir}.\n  " + "\n  ".join(errors) + f"\nFix: {fix}")


def _describe(title: str, raw_dir: Path, problems: dict[str, str], fix: str) -> str:
    lines = [f"{title} files in {raw_dir} are not usable:"]
    lines += [f"  {raw_dir / name}: {problem}" for name, problem in problems.items()]
    lines.append(f"Fix: {fix}. For IDX files of your own, set data.check_md5=false.")
    return "\n".join(lines)
