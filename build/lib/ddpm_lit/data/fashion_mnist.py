"""Fashion-MNIST's four IDX files (Xiao et al. 2017): fetched offline-first and checked.

``ensure_fashion_mnist`` uses the raw IDX files under ``<data_dir>/FashionMNIST/raw`` when they
are there and valid; otherwise it tries torchvision's download and, when that fails, the gzipped
copy of the genuine files that Debian's ``dataset-fashion-mnist`` package installs under
``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from ddpm_lit.data.files import (
    IdxFiles,
    check_files,
    ensure_files,
    fetch_with_torchvision,
)
from ddpm_lit.errors import DataError
from ddpm_lit.io import atomic_write

FOLDER = "FashionMNIST"  # torchvision's: <data_dir>/FashionMNIST/raw
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES: IdxFiles = {
    "train-images-idx3-ubyte": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", 2051, 60000),
    "train-labels-idx1-ubyte": ("9018921c3c673c538a1fc5bad174d6f9", 2049, 60000),
    "t10k-images-idx3-ubyte": ("8181f5470baa50b63fa0f6fddb340f0a", 2051, 10000),
    "t10k-labels-idx1-ubyte": ("15d484375f8d13e6eb1aabb0c3f46965", 2049, 10000),
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")  # fmt: skip


def check_fashion_mnist_files(raw_dir: Path, check_md5: bool = True) -> dict[str, str]:
    """Map each bad or missing file to what is wrong with it (empty when all are valid)."""
    return check_files(raw_dir, FASHION_MNIST_FILES, check_md5, "the genuine Fashion-MNIST file")


def _fetch_torchvision(root: Path) -> None:
    from torchvision.datasets import (
        FashionMNIST,  # torchvision's import takes seconds; only a download needs it
    )

    fetch_with_torchvision(FashionMNIST, root)


def _fetch_debian(raw_dir: Path, source_dir: Path | None = None) -> None:
    """Copy the four files of Debian's package (gzipped, or not) into ``raw_dir``, unzipped."""
    source_dir = DEBIAN_DIR if source_dir is None else source_dir
    if not source_dir.is_dir():
        raise DataError(f"{source_dir} does not exist: Debian's {DEBIAN_PACKAGE} is not installed")
    for name in FASHION_MNIST_FILES:
        gz, plain = source_dir / f"{name}.gz", source_dir / name
        if not (gz.is_file() or plain.is_file()):
            raise DataError(f"{source_dir} has no {name}.gz")
        with (gzip.open(gz, "rb") if gz.is_file() else open(plain, "rb")) as src, atomic_write(raw_dir / name) as out:
            shutil.copyfileobj(src, out)


def ensure_fashion_mnist(data_dir: str | Path, download: bool = True, check_md5: bool = True) -> Path:
    """Make sure ``<data_dir>/FashionMNIST/raw`` holds the four valid IDX files; return that folder.

    Files already there are checked, never replaced: a bad one raises ``DataError`` naming it.
    Missing files are fetched (torchvision, then Debian's package) when ``download``.
    """
    root = Path(data_dir)
    raw_dir = root / FOLDER / "raw"
    sources = (("torchvision", lambda: _fetch_torchvision(root)), ("debian", lambda: _fetch_debian(raw_dir)))
    fix = (f"connect to the internet, or `apt-get install {DEBIAN_PACKAGE}` (Debian, Ubuntu), "
           "or copy the four raw IDX files into that folder.")
    return ensure_files("Fashion-MNIST", raw_dir, FASHION_MNIST_FILES, sources, download, check_md5, fix)
