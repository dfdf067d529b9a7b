"""The data sets: the built-in ones by name, and any set of 28×28 grayscale images by path.

A ``DataSource`` says where a set comes from: ``dataset="mnist"`` or ``"fashion_mnist"`` (files
fetched and checked under ``data_dir``), or a name of one's own with ``images`` (and optional
``labels``, ``test_images``, ``test_labels``) given by path:

- an IDX file of unsigned bytes, (N, 28, 28) for images and (N,) for labels;
- a folder of image files (PNG, JPEG, ...), each 28×28: with one subfolder per class the
  subfolders' names are the labels (torchvision's ``ImageFolder`` layout); flat, the set has none.

``load()`` reads it into an ``ImageSet``. A set without test images holds out a fixed seventh
of its images as the test split (MNIST's proportion), so training, validation and evaluation
agree on what was never trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ddpm_lit.data import fashion_mnist, mnist
from ddpm_lit.data.files import read_idx
from ddpm_lit.errors import DataError

IMAGE_SIDE = 28
HOLDOUT_FRACTION = 1 / 7  # the test split of a set without test images (MNIST: 10k of 70k)
HOLDOUT_SEED = 0


@dataclass(frozen=True)
class BuiltinSet:
    """A set the project fetches and checks itself."""

    name: str
    title: str
    folder: str  # <data_dir>/<folder>/raw holds its four IDX files
    class_names: tuple[str, ...]
    ensure: Callable[[str | Path, bool, bool], Path]  # (data_dir, download, check_md5) -> raw folder


BUILTIN_SETS: dict[str, BuiltinSet] = {
    "mnist": BuiltinSet("mnist", "MNIST", mnist.FOLDER, tuple(str(d) for d in range(10)),
                        lambda d, download, md5: mnist.ensure_mnist(d, download, md5)),
    "fashion_mnist": BuiltinSet("fashion_mnist", "Fashion-MNIST", fashion_mnist.FOLDER, fashion_mnist.CLASS_NAMES,
                                lambda d, download, md5: fashion_mnist.ensure_fashion_mnist(d, download, md5)),
}  # fmt: skip
# What a checkpoint written before data sets were recorded was trained on.
DEFAULT_DATASET = "mnist"


@dataclass
class ImageSet:
    """A set's images, uint8 (N, 28, 28), and labels, long (N,) or None."""

    name: str
    title: str
    train_images: torch.Tensor
    train_labels: torch.Tensor | None
    test_images: torch.Tensor
    test_labels: torch.Tensor | None
    class_names: tuple[str, ...] | None  # None: the set has no labels

    @property
    def labelled(self) -> bool:
        return self.class_names is not None

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    def fingerprint(self) -> str:
        """A short digest of the training images and labels: names a classifier trained on them."""
        digest = hashlib.sha256(self.train_images.contiguous().numpy().tobytes())
        if self.train_labels is not None:
            digest.update(self.train_labels.contiguous().numpy().tobytes())
        return digest.hexdigest()[:10]


@dataclass(frozen=True)
class DataSource:
    """Where a set comes from (see the module's docstring); ``record()`` is what a checkpoint
    keeps of it, ``DataSource.from_record`` builds it again."""

    dataset: str = DEFAULT_DATASET
    data_dir: str = "data"
    images: str | None = None
    labels: str | None = None
    test_images: str | None = None
    test_labels: str | None = None
    class_names: tuple[str, ...] | None = None
    download: bool = field(default=True, compare=False)
    check_md5: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise DataError(f"data.dataset must be a name, got {self.dataset!r}")
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.builtin is not None:
            given = [k for k in ("images", "labels", "test_images", "test_labels", "class_names") if getattr(self, k) is not None]
            if given:
                raise DataError(f"data.dataset={self.dataset} is a built-in set, which takes no {', '.join(given)}; "
                                "give a set of your own a name of its own")
            return
        if self.images is None:
            raise DataError(f"data.dataset={self.dataset!r}: not a built-in set ({', '.join(BUILTIN_SETS)}); "
                            "a set of your own needs data.images=<IDX file or folder of 28×28 images>")
        for key in ("labels", "test_labels"):
            if getattr(self, key) is not None and getattr(self, key.replace("labels", "images")) is None:
                raise DataError(f"data.{key} needs data.{key.replace('labels', 'images')}")
        if self.test_images is not None and (self.labels is None) != (self.test_labels is None):
            raise DataError("give labels for both splits (data.labels and data.test_labels) or for neither")

    @property
    def builtin(self) -> BuiltinSet | None:
        return BUILTIN_SETS.get(self.dataset)

    @property
    def title(self) -> str:
        return self.builtin.title if self.builtin is not None else self.dataset

    def prepare(self) -> None:
        """Fetch and check a built-in set's files; check that a set of one's own is where it is said to be."""
        if self.builtin is not None:
            self.builtin.ensure(self.data_dir, self.download, self.check_md5)
            return
        for key in ("images", "labels", "test_images", "test_labels"):
            path = getattr(self, key)
            if path is not None and not Path(path).exists():
                raise DataError(f"data.{key}={path}: no such file or folder")

    def load(self) -> ImageSet:
        """The set's images and labels (fetching a built-in set's files first when allowed)."""
        if self.builtin is not None:
            raw = self.builtin.ensure(self.data_dir, self.download, self.check_md5)
            train_images, train_labels = mnist.load_idx_split(raw, train=True)  # the same four IDX names
            test_images, test_labels = mnist.load_idx_split(raw, train=False)
            return ImageSet(self.dataset, self.title, train_images, train_labels, test_images, test_labels,
                            self.builtin.class_names)
        self.prepare()
        train_images, train_labels, found_names = read_images(Path(self.images), self.labels, "data.images")
        names = self.class_names or found_names
        if self.test_images is not None:
            test_images, test_labels, test_names = read_images(Path(self.test_images), self.test_labels, "data.test_images")
            if (train_labels is None) != (test_labels is None):
                raise DataError("data.images and data.test_images must both have labels or both have none")
            if found_names is not None and test_names != found_names:
                raise DataError(f"data.test_images has the classes {list(test_names or [])}, data.images {list(found_names)}")
        else:
            test_images, test_labels, train_images, train_labels = _hold_out(train_images, train_labels)
        if train_labels is not None:
            top = int(max(train_labels.max(), test_labels.max() if test_labels is not None else 0))
            if names is None:
                names = tuple(str(i) for i in range(top + 1))
            elif top >= len(names):
                raise DataError(f"a label is {top}, but data.class_names names {len(names)} classes")
            if int(train_labels.min()) < 0:
                raise DataError("labels must be ≥ 0")
        else:
            names = None
        return ImageSet(self.dataset, self.title, train_images, train_labels, test_images, test_labels, names)

    def record(self) -> dict[str, Any]:
        """The source without the machine's settings (data_dir, download, check_md5)."""
        out = asdict(self)
        for key in ("data_dir", "download", "check_md5"):
            out.pop(key)
        out["class_names"] = list(self.class_names) if self.class_names is not None else None
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_record(cls, record: dict[str, Any] | None, data_dir: str | Path, download: bool = True,
                    check_md5: bool = True) -> DataSource:
        record = dict(record or {"dataset": DEFAULT_DATASET})
        if record.get("class_names") is not None:
            record["class_names"] = tuple(record["class_names"])
        return cls(**record, data_dir=str(data_dir), download=download, check_md5=check_md5)


def check_same_dataset(trained_on: Mapping[str, Any] | None, dataset: str, allowed: bool, what: str) -> None:
    """Refuse ``dataset`` for weights trained on another set (``trained_on``: their record,
    ``DataSource.record()``; None: no record, nothing to check) unless ``allowed``. ``what``
    names the weights in the message (``the checkpoint``, ``ckpt_path=<path>``)."""
    was = (trained_on or {}).get("dataset")
    if allowed or trained_on is None or was == dataset:
        return
    raise DataError(f"{what} was trained on {was}, the data is {dataset}: data={was} (or the data settings it was "
                    "trained with), or allow_other_dataset=true to go on with another set")


def _hold_out(images: torch.Tensor, labels: torch.Tensor | None):
    """(test images, test labels, train images, train labels): a fixed seventh held out."""
    n = len(images)
    n_test = max(1, round(n * HOLDOUT_FRACTION))
    if n - n_test < 2:
        raise DataError(f"{n} images are too few to hold out a test split; give data.test_images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    test, train = perm[:n_test].sort().values, perm[n_test:].sort().values
    return images[test], None if labels is None else labels[test], images[train], None if labels is None else labels[train]


def read_images(path: Path, labels: str | None, key: str) -> tuple[torch.Tensor, torch.Tensor | None, tuple[str, ...] | None]:
    """(images uint8 (N, 28, 28), labels long (N,) or None, class names from subfolders or None)
    of an IDX file or a folder of image files."""
    if path.is_dir():
        if labels is not None:
            raise DataError(f"{key}={path} is a folder: its labels are its subfolders, not {labels}")
        return _read_folder(path, key)
    images = read_idx(path)
    if images.ndim != 3 or tuple(images.shape[1:]) != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{key}={path}: IDX images of shape (N, 28, 28) expected, found {tuple(images.shape)}")
    if labels is None:
        return images, None, None
    label_tensor = read_idx(labels)
    if label_tensor.ndim != 1 or len(label_tensor) != len(images):
        raise DataError(f"{labels}: {len(images)} labels expected (one per image of {path}), "
                        f"found an array of shape {tuple(label_tensor.shape)}")
    return images, label_tensor.long(), None


def _read_folder(path: Path, key: str) -> tuple[torch.Tensor, torch.Tensor | None, tuple[str, ...] | None]:
    from torchvision.datasets.folder import (  # only a folder of images needs it
        IMG_EXTENSIONS,
        find_classes,
        make_dataset,
    )

    subfolders = [p for p in path.iterdir() if p.is_dir()]
    if subfolders:
        classes, class_to_idx = find_classes(str(path))
        items = make_dataset(str(path), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        names: tuple[str, ...] | None = tuple(classes)
    else:
        items = sorted((str(p), -1) for p in path.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
        names = None
    if not items:
        raise DataError(f"{key}={path}: no image files ({', '.join(IMG_EXTENSIONS)}) in it")
    arrays = []
    for file, _ in items:
        try:
            with Image.open(file) as image:
                if image.size != (IMAGE_SIDE, IMAGE_SIDE):
                    raise DataError(f"{file}: {image.size[0]}×{image.size[1]}, every image must be 28×28")
                arrays.append(np.asarray(image.convert("L"), dtype=np.uint8))
        except DataError:
            raise
        except Exception as e:  # PIL's many errors on a file that is not an image
            raise DataError(f"{file}: not a readable image ({type(e).__name__}: {e})") from None
    images = torch.from_numpy(np.stack(arrays))
    labels = torch.tensor([c for _, c in items], dtype=torch.long) if names is not None else None
    return images, labels, names
