"""Data: MNIST's files (fetched, checked, read) and the LightningDataModule that serves them."""

from ddpm_lit.data.datamodule import MNISTDataModule

__all__ = ["MNISTDataModule"]
