"""A set of 28×28 grayscale images (MNIST, Fashion-MNIST, one's own) as a LightningDataModule: the
images held as one tensor, batches gathered by index."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset, random_split

from ddpm_lit.core.pixels import to_model_range
from ddpm_lit.data.sets import DEFAULT_DATASET, DataSource, ImageSet
from ddpm_lit.errors import DataError
from ddpm_lit.internals import training_batches_done


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


class EpochShuffle(Sampler[int]):
    """The training order: epoch e is ``randperm(n)`` drawn from ``seed`` and e alone, so an
    epoch's order does not depend on what drew random numbers before it, and a resumed run
    starts at the batch where the interrupted one stopped.

    Each ``iter()`` serves the next epoch. ``position`` is where the next ``iter()`` starts,
    ``(epoch, batches already done)``; a resumed run sets it from its checkpoint and the first
    epoch it serves skips the batches done (Lightning's loaders restart an interrupted epoch
    from a fresh shuffle of their own otherwise). ``replicas``: the processes of a DDP run, which
    share the order.
    """

    def __init__(self, n: int, batch_size: int, seed: int, replicas: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.replicas = n, batch_size, seed, replicas
        self.position = (0, 0)

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of epoch ``epoch``: (n,) indices."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[int]:
        epoch, done = self.position
        self.position = (epoch + 1, 0)
        # Under DDP, Lightning deals this order out to the ranks in turn (DistributedSamplerWrapper):
        # each rank did `done` batches, so done × batch × ranks of the order are behind them.
        yield from self.order(epoch)[done * self.batch_size * self.replicas:].tolist()

    def __len__(self) -> int:
        return self.n


class ImageDataModule(L.LightningDataModule):
    """A set of 28×28 grayscale images in [−1, 1] (``ddpm_lit.data.sets``): a train/val split of
    its training images and its test set. MNIST and Fashion-MNIST by name; a set of one's own by
    path (an IDX file or a folder; labels optional).

    The images are held in memory as one tensor (MNIST is 47 MB as float32) and each batch is
    gathered from it with one index (``TensorImages``), which makes loader workers unnecessary;
    ``num_workers`` is there for larger images. Batches are (images, labels); a set without
    labels gives −1 for each.

    Args:
        dataset: ``mnist``, ``fashion_mnist``, or the name of a set of one's own (with ``images``).
        data_dir: folder holding the built-in sets' files (``MNIST/raw``, ``FashionMNIST/raw``)
            and the evaluation classifiers' cached weights.
        images, labels, test_images, test_labels, class_names: a set of one's own (see
            ``DataSource``); without test images a fixed seventh of the images is held out.
        batch_size: images per training batch.
        val_size: images of the training set held out for validation.
        split_seed: seed of the train/val split.
        image_size: side the images are resized to (28 keeps them as they are).
        download: fetch missing files.
        check_md5: check the files against the genuine sets' md5s.
        limit_train: use only the first N training images (None: all), for tests.
        shuffle_seed: seed of the training order (None: drawn at random once, then kept in
            the checkpoints, so a resumed run goes on with the same order).
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
        shuffle_seed: int | None = None,
        dataset: str = DEFAULT_DATASET,
        images: str | None = None,
        labels: str | None = None,
        test_images: str | None = None,
        test_labels: str | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be ≥ 1, got {batch_size}")
        self.source = DataSource(dataset, str(data_dir), images, labels, test_images, test_labels,
                                 tuple(class_names) if class_names is not None else None, download, check_md5)
        n_train = 60000 if limit_train is None else limit_train
        if not 1 <= val_size < n_train:
            raise ValueError(f"data.val_size must be in [1, {n_train - 1}] to leave training images, got {val_size}")
        self.save_hyperparameters()
        self._prepared = False
        self.image_set: ImageSet | None = None
        self.data_train: TensorDataset | None = None
        self.data_val = None
        self.data_test: TensorImages | None = None
        self.shuffle_seed = shuffle_seed if shuffle_seed is not None else secrets.randbelow(2**31)
        self.train_sampler: EpochShuffle | None = None
        self._resume_at: tuple[int, int] | None = None

    @property
    def dataset_name(self) -> str:
        return self.source.dataset

    @property
    def data_dir(self) -> Path:
        """The folder holding the built-in sets' files (and the evaluation classifiers' cached weights)."""
        return Path(self.hparams.data_dir)

    @property
    def raw_dir(self) -> Path:
        """The IDX files' folder of a built-in set (``<data_dir>/MNIST/raw``, ...)."""
        builtin = self.source.builtin
        if builtin is None:
            raise DataError(f"data.dataset={self.dataset_name} is a set of your own: its files are where data.images says")
        return self.data_dir / builtin.folder / "raw"

    def prepare_data(self) -> None:
        # train() calls this before Lightning does; the md5 check need not run twice.
        if not self._prepared:
            self.source.prepare()
            self._prepared = True

    def setup(self, stage: str | None = None) -> None:
        if self.data_train is not None:
            return
        # read without fetching or md5 (prepare_data did that once): a cheap presence check per rank
        self.image_set = images = replace(self.source, download=False, check_md5=False).load()
        size = self.hparams.image_size
        train, labels = images.train_images, images.train_labels
        if labels is None:  # a set without labels: −1 for each, which a conditional model refuses
            labels = torch.full((len(train),), -1, dtype=torch.long)
        if self.hparams.limit_train is not None:
            train, labels = train[: self.hparams.limit_train], labels[: self.hparams.limit_train]
        if self.hparams.val_size >= len(train):  # IDX files of one's own can be small
            raise DataError(f"data.val_size={self.hparams.val_size} leaves no training images of {len(train)}")
        full = TensorImages(to_model_range(train, size), labels)
        n_val = self.hparams.val_size
        self.data_train, self.data_val = random_split(
            full, [len(full) - n_val, n_val], generator=torch.Generator().manual_seed(self.hparams.split_seed)
        )
        test_labels = images.test_labels
        if test_labels is None:
            test_labels = torch.full((len(images.test_images),), -1, dtype=torch.long)
        self.data_test = TensorImages(to_model_range(images.test_images, size), test_labels)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        sampler = None
        if shuffle:
            replicas = self.trainer.world_size if self.trainer is not None else 1
            sampler = self.train_sampler = EpochShuffle(len(dataset), self.hparams.batch_size, self.shuffle_seed, replicas)
            if self._resume_at is not None:
                sampler.position, self._resume_at = self._resume_at, None
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory,
            persistent_workers=self.hparams.num_workers > 0,
            drop_last=shuffle,
            collate_fn=keep_batch,
        )

    def state_dict(self) -> dict[str, Any]:
        """The training order's seed and where the next batch comes from: ``(epoch, batch)``."""
        state: dict[str, Any] = {"shuffle_seed": self.shuffle_seed}
        trainer = self.trainer
        if trainer is not None and self.train_sampler is not None:
            epoch, done = trainer.current_epoch, training_batches_done(trainer)
            if done >= trainer.num_training_batches:  # saved at the epoch's end: the next one starts afresh
                epoch, done = epoch + 1, 0
            state["position"] = (epoch, done)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.shuffle_seed = int(state_dict.get("shuffle_seed", self.shuffle_seed))
        if "position" in state_dict:
            self._resume_at = tuple(int(v) for v in state_dict["position"])  # type: ignore[assignment]

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
