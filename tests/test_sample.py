"""sample.py: a grid, samples.npz in evaluate.py's layout, a trajectory, digits for conditional models."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import Command, run_command, tiny_ddpm
from PIL import Image

from ddpm_lit.apps.sample import parse_classes
from ddpm_lit.generation.generate import draw, image_generators, image_seed
from ddpm_lit.errors import ConfigError
from ddpm_lit.generation.files import load_samples_npz
from ddpm_lit.training.module import DDPMModule


def tiny_module(**kwargs) -> DDPMModule:
    return tiny_ddpm(100, sample_every_n_epochs=0, **kwargs)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints of an unconditional and a class-conditional tiny model (two optimizer steps each)."""
    out = {}
    folder = tmp_path_factory.mktemp("ckpts")
    for name, kwargs in (("uncond", {}), ("cond", {"num_classes": 10})):
        model = tiny_module(**kwargs)
        data = torch.utils.data.TensorDataset(torch.rand(16, 1, 28, 28) * 2 - 1, torch.arange(16) % 10)
        trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
        trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=8))
        out[name] = folder / f"{name}.ckpt"
        trainer.save_checkpoint(out[name])
    return out


def run_sample(args: list[str]) -> Command:
    return run_command("sample.py", args)  # in this process; tests/test_imports.py runs the real command line


def test_sample_writes_a_grid_an_npz_and_a_trajectory(checkpoints, tmp_path: Path) -> None:
    args = [f"ckpt_path={checkpoints['uncond']}", "n=10", "batch_size=4", "device=cpu"]
    proc = run_sample([*args, "seed=0", f"hydra.run.dir={tmp_path / 'a'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sampling: 100%" in proc.stderr and "300/300" in proc.stderr  # the progress bar: 3 batches × 100 steps
    out = tmp_path / "a"
    samples = load_samples_npz(out / "samples.npz")  # what evaluate.py samples_path= reads
    assert samples.shape == (10, 1, 28, 28)
    with np.load(out / "samples.npz") as f:
        assert f["arr_0"].dtype == np.uint8 and "arr_1" not in f.files
    # 10 images, 8 per row, 28 px with 2 px padding: 2 rows
    assert Image.open(out / "samples.png").size == (8 * 30 + 2, 2 * 30 + 2)
    assert Image.open(out / "trajectory.png").size[0] > 400
    info = json.loads((out / "sample.json").read_text())
    assert info["n"] == 10 and info["ema_weights"] is False and info["classes"] is None

    same = run_sample([*args, "seed=0", f"hydra.run.dir={tmp_path / 'b'}"])
    other = run_sample([*args, "seed=1", "sampler=ddim", "sampler.steps=5", "trajectory=0", f"hydra.run.dir={tmp_path / 'c'}"])
    assert same.returncode == 0 and other.returncode == 0, other.stderr[-3000:]
    assert torch.equal(load_samples_npz(tmp_path / "b" / "samples.npz"), samples)  # a seed fixes the images
    assert not torch.equal(load_samples_npz(tmp_path / "c" / "samples.npz"), samples)
    assert not (tmp_path / "c" / "trajectory.png").exists()
    assert json.loads((tmp_path / "c" / "sample.json").read_text())["sampler"]["name"] == "ddim"


@pytest.mark.parametrize("key", ["classes", "digits"])  # digits= is MNIST's name for classes=
def test_conditional_model_draws_the_classes_asked_for(key: str, checkpoints, tmp_path: Path) -> None:
    proc = run_sample([f"ckpt_path={checkpoints['cond']}", "n=6", f"{key}=[3,7]", "guidance_scale=2", "sampler.steps=5",
                       "device=cpu", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "samples.npz") as f:
        assert f["arr_1"].tolist() == [3, 7, 3, 7, 3, 7] and f["arr_0"].shape == (6, 28, 28, 1)
    info = json.loads((tmp_path / "sample.json").read_text())
    assert info["classes"] == [3, 7, 3, 7, 3, 7] and info["guidance_scale"] == 2


@pytest.mark.parametrize(
    "args, words",
    [
        ([], "give the checkpoint"),
        (["ckpt_path=missing.ckpt"], "does not exist"),
        (["CKPT", "n=0"], "n must be an integer ≥ 1"),
        (["CKPT", "digits=3"], "need a class-conditional model"),
        (["CKPT", "classes=3"], "need a class-conditional model"),
        (["CKPT", "classes=3", "digits=3"], "not both"),
        (["CKPT", "sampler.steps=1000"], "sampler.steps must be in [1, 100]"),
        (["CKPT", "sampler.name=euler"], "sampler.name must be one of"),
    ],
)
def test_bad_input_prints_one_message(args, words, checkpoints, tmp_path: Path) -> None:
    args = [f"ckpt_path={checkpoints['uncond']}" if a == "CKPT" else a for a in args]
    proc = run_sample([*args, f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_parse_classes() -> None:
    assert parse_classes(None, 12, 10).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert parse_classes(7, 3, 10).tolist() == [7, 7, 7]
    assert parse_classes([3, 7], 5, 10).tolist() == [3, 7, 3, 7, 3]
    for bad in (10, [1, -1], [], "3", True):
        with pytest.raises(ConfigError, match="classes"):
            parse_classes(bad, 4, 10)


def test_draw_keeps_the_trajectory_every_tenth_of_the_chain() -> None:
    torch.manual_seed(0)
    module = tiny_module().eval()
    drawn = draw(module, 5, seed=3, trajectory=2, every=10, batch_size=3)
    assert drawn.timesteps == [100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    assert drawn.frames.shape == (11, 2, 1, 28, 28)
    # the last frame is the samples themselves (before the final clamp), the first the starting noise
    assert torch.equal(drawn.frames[-1].clamp(-1, 1), drawn.samples[:2])
    assert drawn.frames[0].std() > 0.8 and drawn.samples.shape == (5, 1, 28, 28)
    again = draw(module, 5, seed=3, trajectory=0, batch_size=3)
    assert torch.equal(again.samples, drawn.samples) and again.timesteps == []


def test_an_image_depends_on_its_index_only_not_on_the_batch_or_the_others_drawn() -> None:
    """Per-image noise: a draw of 6 in batches of 4 (the last padded, as for a compiled network),
    of 6 in one batch and of images 3–5 alone give the same images 3–5, with every step's noise."""
    torch.manual_seed(0)
    module = tiny_module().eval()
    whole = draw(module, 6, seed=5, trajectory=0, batch_size=6).samples
    padded = draw(module, 6, seed=5, trajectory=0, batch_size=4, fixed_batch=True).samples
    part = draw(module, 6, seed=5, trajectory=0, indices=[3, 4, 5], batch_size=2).samples
    assert padded.shape == whole.shape == (6, 1, 28, 28)
    torch.testing.assert_close(padded, whole, rtol=0, atol=1e-5)
    torch.testing.assert_close(part, whole[3:], rtol=0, atol=1e-5)
    other = draw(module, 6, seed=6, trajectory=0, batch_size=6).samples
    assert (other - whole).abs().mean() > 0.1  # another seed, other images
    assert len({image_seed(0, i) for i in range(1000)} | {image_seed(1, i) for i in range(1000)}) == 2000


def test_per_row_generators_draw_each_row_from_its_own() -> None:
    from ddpm_lit.core.diffusion import randn

    gens = image_generators(3, [0, 1, 2])
    rows = randn((3, 2, 4), gens, torch.device("cpu"))
    for i in range(3):
        assert torch.equal(rows[i], torch.randn(2, 4, generator=torch.Generator().manual_seed(image_seed(3, i))))
    with pytest.raises(ValueError, match="2 generators for 3 rows"):
        randn((3, 2), gens[:2], torch.device("cpu"))


@pytest.mark.slow
def test_two_gloo_ranks_draw_what_one_rank_draws(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """``sample.py devices=2``: each rank draws its batches of a conditional model (labels and
    noise follow the image's index), rank 0 writes them: the same samples.npz bit for bit."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "WANDB_SERVICE")}

    def sample(devices: int) -> Path:
        out = tmp_path / f"ranks{devices}"
        proc = subprocess.run([sys.executable, str(ROOT / "sample.py"), f"ckpt_path={checkpoints['cond']}", "n=11",
                               "batch_size=2", "sampler=dpmpp_2m", "sampler.steps=3", "speed=off", f"devices={devices}",
                               f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return out

    one, two = sample(1), sample(2)
    with np.load(one / "samples.npz") as a, np.load(two / "samples.npz") as b:
        assert a["arr_0"].shape == (11, 28, 28, 1) and np.array_equal(a["arr_0"], b["arr_0"])
        assert np.array_equal(a["arr_1"], b["arr_1"])
    assert json.loads((two / "sample.json").read_text())["ranks"] == 2
