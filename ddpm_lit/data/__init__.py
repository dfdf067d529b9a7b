"""Data: the sets' files (fetched, checked, read) and the LightningDataModule that serves them."""

from typing import Any

from ddpm_lit.data.sets import BUILTIN_SETS, DataSource, ImageSet

__all__ = ["BUILTIN_SETS", "DataSource", "ImageDataModule", "ImageSet", "MNISTDataModule"]


def __getattr__(name: str) -> Any:
    """The data modules, imported when first asked for (``ddpm_lit.data.ImageDataModule``, the
    ``_target_`` of conf/data/): Lightning takes seconds to import and the sets alone never need it."""
    if name in ("ImageDataModule", "MNISTDataModule"):
        from ddpm_lit.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
