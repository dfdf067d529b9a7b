"""Data: the sets' files (fetched, checked, read) and the LightningDataModule that serves them
(``ddpm_lit.data.datamodule.ImageDataModule``, the ``_target_`` of conf/data/)."""
