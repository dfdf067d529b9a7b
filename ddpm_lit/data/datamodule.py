"""MNIST as a LightningDataModule: the images held as one tensor, batches gathered by index."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset, random_split

from ddpm_lit.core.pixels import to_model_range
from ddpm_lit.data.mnist import ensure_mnist, load_mnist_split
from ddpm_lit.errors import DataError


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

    @property
    def data_dir(self) -> Path:
        """The folder holding ``MNIST/raw`` (and the evaluation classifier's cached weights)."""
        return Path(self.hparams.data_dir)

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
