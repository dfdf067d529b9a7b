"""Data sets beyond MNIST: Fashion-MNIST's fetch and checks, sets of one's own by path, the
per-set evaluation classifier, and refusing to train or score a checkpoint on another set."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    TINY,
    compose_train_cfg,
    kept_classifier,
    make_synthetic_mnist,
    write_idx,
)
from PIL import Image

from ddpm_lit.config.build import build
from ddpm_lit.data.datamodule import ImageDataModule
from ddpm_lit.data.sets import DataSource
from ddpm_lit.data import fashion_mnist as fm
from ddpm_lit.data.files import md5sum
from ddpm_lit.errors import DataError


# ---- Fashion-MNIST: the genuine files, the Debian fallback, corrupted files --------------------
def test_real_fashion_mnist_files_are_genuine_and_read_with_their_classes(fashion_mnist_dir: Path) -> None:
    raw = fashion_mnist_dir / "FashionMNIST" / "raw"
    for name, (md5, _, _) in fm.FASHION_MNIST_FILES.items():
        assert md5sum(raw / name) == md5
    image_set = DataSource("fashion_mnist", str(fashion_mnist_dir)).load()
    assert image_set.train_images.shape == (60000, 28, 28) and image_set.test_images.shape == (10000, 28, 28)
    assert torch.bincount(image_set.train_labels).tolist() == [6000] * 10  # Fashion-MNIST is balanced
    assert image_set.class_names[9] == "Ankle boot" and image_set.title == "Fashion-MNIST"
    mnist = DataSource("mnist", str(fashion_mnist_dir))
    assert mnist.load().train_labels[:5].tolist() != image_set.train_labels[:5].tolist()  # not MNIST read twice


def _fake_debian(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A folder laid out as Debian's package installs it: each IDX file gzipped."""
    folder = tmp_path / "usr-share-datasets-fashion-mnist"
    folder.mkdir()
    for name, data in files.items():
        with gzip.open(folder / f"{name}.gz", "wb") as f:
            f.write(data)
    return folder


def _synthetic_files(n_train: int = 64, n_test: int = 16) -> dict[str, bytes]:
    """Valid IDX files of Fashion-MNIST's names (not its md5s: checked with check_md5=False)."""
    rng = np.random.default_rng(0)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))), ("labels-idx1", rng.integers(0, 10, n))):
            array = np.ascontiguousarray(array, dtype=np.uint8)
            header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            out[f"{prefix}-{kind}-ubyte"] = header + array.tobytes()
    return out


def _no_torchvision(monkeypatch) -> list[str]:
    calls = []

    def fails(root: Path) -> None:
        calls.append("torchvision")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no route to host")

    monkeypatch.setattr(fm, "_fetch_torchvision", fails)
    return calls


def test_without_torchvision_the_files_come_from_debians_package(monkeypatch, tmp_path: Path) -> None:
    calls = _no_torchvision(monkeypatch)
    files = _synthetic_files()
    monkeypatch.setattr(fm, "DEBIAN_DIR", _fake_debian(tmp_path, files))
    raw = fm.ensure_fashion_mnist(tmp_path / "data", check_md5=False)
    assert calls == ["torchvision"]  # tried first, then the package
    assert raw == tmp_path / "data" / "FashionMNIST" / "raw"
    for name, data in files.items():
        assert (raw / name).read_bytes() == data  # unzipped, byte for byte
    assert not list(raw.glob("*.part"))


def test_the_real_debian_package_gives_the_genuine_files(monkeypatch, tmp_path: Path) -> None:
    if not fm.DEBIAN_DIR.is_dir():
        pytest.skip(f"{fm.DEBIAN_DIR} missing: apt-get install {fm.DEBIAN_PACKAGE}")
    _no_torchvision(monkeypatch)
    raw = fm.ensure_fashion_mnist(tmp_path)  # md5-checked
    assert fm.check_fashion_mnist_files(raw) == {}


def test_neither_source_says_to_install_the_debian_package(monkeypatch, tmp_path: Path) -> None:
    _no_torchvision(monkeypatch)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "not-installed")
    with pytest.raises(DataError) as err:
        fm.ensure_fashion_mnist(tmp_path / "data")
    msg = str(err.value)
    assert "torchvision: RuntimeError" in msg and "not installed" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(tmp_path / "data" / "FashionMNIST" / "raw") in msg


def test_a_corrupted_package_file_fails_the_check_and_is_named(monkeypatch, tmp_path: Path) -> None:
    _no_torchvision(monkeypatch)
    files = _synthetic_files()
    files["t10k-labels-idx1-ubyte"] = files["t10k-labels-idx1-ubyte"][:-5]  # cut short
    monkeypatch.setattr(fm, "DEBIAN_DIR", _fake_debian(tmp_path, files))
    with pytest.raises(DataError, match=r"debian: fetched files failed the check: .*t10k-labels-idx1-ubyte.*truncated"):
        fm.ensure_fashion_mnist(tmp_path / "data", check_md5=False)


def test_a_corrupted_fashion_mnist_file_names_file_and_md5(fashion_mnist_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(fashion_mnist_dir / "FashionMNIST" / "raw", raw)
    path = raw / "train-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[100] = (data[100] + 1) % 10  # one label changed: still a valid IDX file
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        fm.ensure_fashion_mnist(tmp_path)
    msg = str(err.value)
    assert str(path) in msg and fm.FASHION_MNIST_FILES["train-labels-idx1-ubyte"][0] in msg
    assert "genuine Fashion-MNIST file" in msg and "t10k" not in msg


# ---- sets of one's own, by path -----------------------------------------------------------------
def _letters(tmp_path: Path, n: int = 70) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), rng.integers(0, 3, n).astype(np.uint8)
    write_idx(tmp_path / "images", images)
    write_idx(tmp_path / "labels", labels)
    return tmp_path / "images", tmp_path / "labels", images, labels


def test_an_idx_set_of_ones_own_holds_out_a_fixed_seventh_as_its_test_split(tmp_path: Path) -> None:
    images_path, labels_path, images, labels = _letters(tmp_path)
    source = DataSource("letters", str(tmp_path), images=str(images_path), labels=str(labels_path),
                        class_names=("a", "b", "c"))
    one, two = source.load(), source.load()
    assert one.class_names == ("a", "b", "c") and one.num_classes == 3 and one.title == "letters"
    assert len(one.test_images) == 10 and len(one.train_images) == 60
    assert torch.equal(one.test_images, two.test_images)  # the same hold-out every time
    rows = {bytes(x.numpy()) for x in one.train_images}
    assert not rows & {bytes(x.numpy()) for x in one.test_images}  # disjoint
    # every image is in one split with its own label
    for split_images, split_labels in ((one.train_images, one.train_labels), (one.test_images, one.test_labels)):
        for x, y in zip(split_images, split_labels):
            (i,) = np.nonzero((images == x.numpy()).all(axis=(1, 2)))[0]
            assert labels[i] == y
    # without labels: the same images, no classes
    bare = DataSource("letters", str(tmp_path), images=str(images_path)).load()
    assert bare.train_labels is None and bare.class_names is None and torch.equal(bare.test_images, one.test_images)


def _png_folder(root: Path, classes: dict[str, int] | None, size: int = 28) -> Path:
    rng = np.random.default_rng(2)
    if classes is None:
        root.mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (size, size)).astype(np.uint8), "L").save(root / f"{i:03d}.png")
        return root
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((size, size), (10 * i) % 256, np.uint8), "L").save(root / name / f"{i}.png")
    return root


def test_a_folder_set_takes_its_labels_from_its_subfolders(tmp_path: Path) -> None:
    train = _png_folder(tmp_path / "train", {"circle": 5, "square": 7})
    test = _png_folder(tmp_path / "test", {"circle": 2, "square": 3})
    image_set = DataSource("shapes", str(tmp_path), images=str(train), test_images=str(test)).load()
    assert image_set.class_names == ("circle", "square")
    assert image_set.train_labels.tolist() == [0] * 5 + [1] * 7 and image_set.test_labels.tolist() == [0, 0, 1, 1, 1]
    assert image_set.train_images.dtype == torch.uint8 and image_set.train_images[1, 0, 0] == 10
    flat = DataSource("noise", str(tmp_path), images=str(_png_folder(tmp_path / "flat", None))).load()
    assert flat.class_names is None and len(flat.train_images) + len(flat.test_images) == 20


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda t: {"dataset": "mnist", "images": str(t)}, "built-in set, which takes no images"),
        (lambda t: {"dataset": "letters"}, "not a built-in set (mnist, fashion_mnist)"),
        (lambda t: {"dataset": "letters", "images": str(t / "nowhere")}, "no such file or folder"),
        (lambda t: {"dataset": "letters", "images": str(_png_folder(t / "big", {"a": 3}, size=32))}, "every image must be 28×28"),
        (lambda t: {"dataset": "letters", "images": str(_letters(t)[0]), "labels": str(_short_labels(t))}, "70 labels expected"),
        (lambda t: {"dataset": "letters", "images": str(_letters(t)[0]), "labels": str(_letters(t)[1]),
                    "class_names": ("a", "b")}, "names 2 classes"),
        (lambda t: {"dataset": "letters", "images": str(_letters(t)[0]), "test_images": str(_letters(t)[0]),
                    "labels": str(_letters(t)[1])}, "give labels for both splits"),
        (lambda t: {"dataset": "letters", "images": str(_garbage_png(t))}, "not a readable image"),
    ],
)
def test_bad_sets_of_ones_own_are_refused_with_a_reason(make, words, tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        DataSource(data_dir=str(tmp_path), **make(tmp_path)).load()
    assert words in str(err.value)


def _short_labels(tmp_path: Path) -> Path:
    write_idx(tmp_path / "short", np.zeros(5, np.uint8))
    return tmp_path / "short"


def _garbage_png(tmp_path: Path) -> Path:
    folder = tmp_path / "garbage"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"not a png")
    return folder


def test_data_custom_trains_on_a_folder_of_ones_own(tmp_path: Path) -> None:
    """`data=custom` with a folder: the datamodule serves its images and subfolder labels, and a
    class-conditional model trains on them and records the set in its checkpoint."""
    from ddpm_lit.apps.train import train

    folder = _png_folder(tmp_path / "shapes", {"circle": 40, "square": 40})
    cfg = compose_train_cfg([*TINY, "data=custom", "data.dataset=shapes", f"data.images={folder}", "data.val_size=8",
                             "data.batch_size=16", "logger=csv", "trainer.max_steps=2", "model.net.num_classes=2",
                             "model.val_classifier_fid=false", "final_samples.num=4"], tmp_path / "run", tmp_path / "data")
    dm = build(cfg.data)
    dm.prepare_data()
    dm.setup()
    assert dm.image_set.class_names == ("circle", "square") and len(dm.data_test) == 11  # 80 / 7, held out
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and set(y.tolist()) <= {0, 1}
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["dataset"] == {"dataset": "shapes", "images": str(folder)}


def test_a_conditional_model_needs_labels_of_its_number_of_classes(tmp_path: Path) -> None:
    from ddpm_lit.apps.train import train

    folder = _png_folder(tmp_path / "noise", None)
    cfg = compose_train_cfg([*TINY, "data=custom", "data.dataset=noise", f"data.images={folder}", "data.val_size=4",
                             "data.batch_size=4", "logger=csv", "trainer.max_steps=1", "model.net.num_classes=10"],
                            tmp_path / "run", tmp_path / "data")
    with pytest.raises(DataError, match="conditional on 10 classes, but noise has no labels"):
        train(cfg)


# ---- the per-set classifier ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion_classifier_dir(fashion_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding Fashion-MNIST's files and its classifier at test size (the real one
    trains on all 60,000 images: the slow tier's test below; <repo>/data's cache stays the real one)."""
    data_dir = tmp_path_factory.mktemp("fashion")
    shutil.copytree(fashion_mnist_dir / "FashionMNIST", data_dir / "FashionMNIST")
    kept_classifier(data_dir, "fashion_mnist")
    kept_classifier(data_dir, "fashion_mnist", judge=True)
    return data_dir


@pytest.mark.slow
def test_the_fashion_mnist_classifier_trains_on_the_whole_set(fashion_mnist_dir: Path, tmp_path: Path) -> None:
    from ddpm_lit.evaluation.classifier import load_or_train_for

    shutil.copytree(fashion_mnist_dir / "FashionMNIST", tmp_path / "FashionMNIST")
    model = load_or_train_for(DataSource("fashion_mnist", str(tmp_path)), epochs=1)
    record = json.loads((tmp_path / "classifier" / "fashion_mnist_cnn.json").read_text())
    assert record == model.record and record["epochs"] == 1 and record["training_seconds"] > 0
    assert 0.85 < record["test_accuracy"] < 0.99 and record["test_images"] == 10000


def test_each_set_gets_its_own_classifier_with_its_test_accuracy_recorded(fashion_classifier_dir: Path, monkeypatch) -> None:
    from ddpm_lit.evaluation import classifier as cls

    weights = fashion_classifier_dir / "classifier" / "fashion_mnist_cnn.pt"
    record = json.loads(weights.with_suffix(".json").read_text())
    assert record["dataset"] == "fashion_mnist" and record["class_names"][0] == "T-shirt/top"
    assert 0.7 < record["test_accuracy"] < 0.99 and record["test_images"] == 10000
    assert record["epochs"] is None  # loaded from the cache, not trained by load_or_train_for
    assert not (fashion_classifier_dir / "classifier" / "mnist_cnn.pt").exists()  # MNIST's is another file

    monkeypatch.setattr(cls, "train_classifier", lambda *a, **k: pytest.fail("retrained although cached"))
    model = cls.load_or_train_for(DataSource("fashion_mnist", str(fashion_classifier_dir)))
    assert model.record == record
    image_set = DataSource("fashion_mnist", str(fashion_classifier_dir)).load()
    from ddpm_lit.core.pixels import to_model_range

    x, y = to_model_range(image_set.test_images[:2000], 28), image_set.test_labels[:2000]
    assert cls.accuracy(model, x, y) == pytest.approx(record["test_accuracy"], abs=0.03)  # the weights the record is of


def _stripes(folder: Path, seed: int, n_train: int = 1200, n_test: int = 300) -> dict[str, str]:
    """IDX files of 3 classes told apart by where a bright stripe is (top, middle, bottom) in noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 3, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 9 * label + 1 : 9 * label + 8] = 255
        write_idx(folder / f"{split}-images", images)
        write_idx(folder / f"{split}-labels", labels)
        paths["images" if split == "train" else "test_images"] = str(folder / f"{split}-images")
        paths["labels" if split == "train" else "test_labels"] = str(folder / f"{split}-labels")
    return paths


def test_a_set_of_ones_own_gets_a_classifier_named_by_its_contents(tmp_path: Path) -> None:
    from ddpm_lit.evaluation.classifier import load_or_train_for, weights_path

    source = DataSource("stripes", str(tmp_path), class_names=("top", "middle", "bottom"), **_stripes(tmp_path / "a", 0))
    model = load_or_train_for(source, epochs=3)
    path = weights_path(source)
    assert path.name.startswith("stripes-") and path.name.endswith("_cnn.pt") and path.is_file()
    assert model.num_classes == 3 and model.record["class_names"] == ["top", "middle", "bottom"]
    assert model.record["dataset"] == "stripes" and model.record["test_accuracy"] > 0.6  # chance: 1/3
    assert model.record["epochs"] == 3 and model.record["training_seconds"] > 0  # trained now: how is recorded
    # other images under the same name: another file, not the stale weights
    changed = DataSource("stripes", str(tmp_path), **_stripes(tmp_path / "b", 1))
    assert weights_path(changed) != path
    bare = DataSource("bare", str(tmp_path), images=source.images)
    with pytest.raises(DataError, match="bare has no labels, so it has no evaluation classifier"):
        load_or_train_for(bare)


# ---- one set's checkpoint on another ------------------------------------------------------------
def test_a_run_does_not_continue_on_another_data_set_unless_asked(tmp_path: Path) -> None:
    from conftest import train_tiny

    from ddpm_lit.apps.train import train

    ckpt = train_tiny(tmp_path / "a", ["trainer.max_steps=2", "model.val_classifier_fid=false"])  # synthetic MNIST
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["dataset"] == {"dataset": "mnist"}
    other = make_synthetic_mnist(tmp_path / "fm")
    (other / "MNIST").rename(other / "FashionMNIST")  # synthetic files under Fashion-MNIST's folder
    base = [*TINY, "logger=csv", "data=fashion_mnist", "data.check_md5=false", "model.val_classifier_fid=false",
            "trainer.max_steps=4", f"ckpt_path={ckpt}"]
    with pytest.raises(DataError, match="ckpt_path=.* was trained on mnist, the data is fashion_mnist"):
        train(compose_train_cfg(base, tmp_path / "b", other))
    train(compose_train_cfg([*base, "allow_other_dataset=true"], tmp_path / "c", other))
    again = torch.load(tmp_path / "c" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert again["dataset"] == {"dataset": "fashion_mnist"} and again["global_step"] == 4


def test_the_module_refuses_a_fit_on_another_set_outside_train_py(tmp_path: Path) -> None:
    """Lightning's own fit(ckpt_path=...) goes through the module's check too."""
    import lightning as L
    from conftest import train_tiny

    from ddpm_lit.training.loading import load_module

    ckpt = train_tiny(tmp_path / "a", ["trainer.max_steps=1", "model.val_classifier_fid=false"])
    module, _ = load_module(ckpt, torch.device("cpu"))
    assert module.trained_on == {"dataset": "mnist"}
    other = make_synthetic_mnist(tmp_path / "fm")
    (other / "MNIST").rename(other / "FashionMNIST")
    dm = ImageDataModule(str(other), dataset="fashion_mnist", batch_size=8, val_size=16, check_md5=False)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    with pytest.raises(DataError, match="the checkpoint was trained on mnist, the data is fashion_mnist"):
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt), weights_only=False)


def test_evaluate_scores_a_fashion_mnist_checkpoint_against_fashion_mnist(fashion_classifier_dir: Path, tmp_path: Path) -> None:
    """evaluate.py follows the checkpoint's set (its classifier, its class names) and refuses another unless asked."""
    from test_evaluation import run_evaluate

    from ddpm_lit.apps.train import train

    cfg = compose_train_cfg([*TINY, "logger=csv", "data=fashion_mnist", "data.limit_train=600", "model.val_classifier_fid=false",
                             "trainer.max_steps=2", "model.net.num_classes=10"], tmp_path / "run", fashion_classifier_dir)
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    common = [f"ckpt_path={ckpt}", f"paths.data_dir={fashion_classifier_dir}", f"cache_dir={tmp_path / 'cache'}",
              "reference_size=200", "num_samples=20", "sampler.steps=3", "fid.enabled=false", "nll.enabled=false",
              "score_test=true", "guidance_scale=2"]
    proc = run_evaluate([*common, f"hydra.run.dir={tmp_path / 'eval'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    src = metrics["source"]
    assert src["dataset"] == "fashion_mnist" and src["classifier"].startswith("fashion-mnist-cnn-")
    assert src["class_names"][9] == "Ankle boot" and 0.8 < src["classifier_test_accuracy"] < 0.99
    assert set(metrics["samples"]["class_accuracy_per_class"]) == {str(c) for c in range(10)}  # 2 of each class asked
    report = (tmp_path / "eval" / "evaluation.md").read_text()
    assert "Fashion-MNIST-FID (classifier features)" in report and "| 9: Ankle boot |" in report
    assert "MNIST-FID (classifier" not in report.replace("Fashion-MNIST-FID", "")
    assert (tmp_path / "eval" / "class_histogram.png").stat().st_size > 10_000

    proc = run_evaluate([*common, "data=mnist", f"hydra.run.dir={tmp_path / 'refused'}"])
    assert proc.returncode == 2 and "was trained on fashion_mnist, the data is mnist: data=fashion_mnist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_one_check_refuses_weights_of_another_set() -> None:
    """train.py, the module's fit, evaluate.py and compare all ask check_same_dataset."""
    from ddpm_lit.data.sets import check_same_dataset

    check_same_dataset({"dataset": "mnist"}, "mnist", False, "x.ckpt")
    check_same_dataset(None, "fashion_mnist", False, "x.ckpt")  # no record: nothing to check against
    check_same_dataset({"dataset": "mnist"}, "fashion_mnist", True, "x.ckpt")  # allow_other_dataset=true
    with pytest.raises(DataError, match=r"^x.ckpt was trained on mnist, the data is fashion_mnist: data=mnist "):
        check_same_dataset({"dataset": "mnist"}, "fashion_mnist", False, "x.ckpt")
