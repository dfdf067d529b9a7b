"""Data: the sets' files (fetched, checked, read) and the LightningDataModule that serves them."""

from ddpm_lit.data.datamodule import ImageDataModule, MNISTDataModule
from ddpm_lit.data.sets import BUILTIN_SETS, DataSource, ImageSet

__all__ = ["BUILTIN_SETS", "DataSource", "ImageDataModule", "ImageSet", "MNISTDataModule"]
