"""export.py and ddpm_lit.load_pretrained: a checkpoint shared as a Hugging Face style folder
(model.safetensors, config.json, scheduler_config.json, README.md), loaded back without Lightning
or Hydra to the same images, and every fault of such a folder told in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, run_command, tiny_ddpm

from ddpm_lit.errors import DataError
from ddpm_lit.generation.generate import image_generators
from ddpm_lit.generation.pretrained import load_pretrained, save_pretrained
from ddpm_lit.runs import Run
from ddpm_lit.training.loading import load_module, module_record

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def exported(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_run's last.ckpt (EMA weights) through `python export.py`."""
    out = tmp_path_factory.mktemp("exported") / "tiny-ddpm"
    proc = run_command("export.py", [f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}", f"out={out}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_the_folder_holds_the_hub_layout(exported: Path, tiny_run: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "samples.png", "scheduler_config.json"]
    config = json.loads((exported / "config.json").read_text())
    assert config["family"] == "ddpm" and config["ema_weights"] is True
    assert config["networks"]["net"]["class"] == "ddpm_lit.nets.unet.UNet"
    assert config["networks"]["net"]["config"]["base_channels"] == 8 and config["image_shape"] == [1, 28, 28]
    assert config["diffusion"]["timesteps"] == 100 and config["class_names"] == [str(d) for d in range(10)]
    assert config["training"]["command"] == " ".join(["python train.py", *Run(tiny_run).overrides()])
    assert config["training"]["run"] == "run" and config["training"]["global_step"] == Run(tiny_run).metrics()["global_step"]
    # the EMA weights, not the raw ones the checkpoint keeps beside them
    from safetensors.torch import load_file

    ckpt = torch.load(tiny_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    weights = load_file(exported / "model.safetensors")
    assert weights.keys() == ckpt["state_dict"].keys()
    assert all(torch.equal(weights[k], ckpt["state_dict"][k]) for k in weights)
    raw = ckpt["current_model_state"]
    assert any(not torch.equal(weights[k], raw[k]) for k in weights if k.endswith("weight"))


def test_the_model_card_has_hub_front_matter_the_grid_and_the_training_command(exported: Path) -> None:
    card = (exported / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "ddpm-lit" and "ddpm" in meta["tags"] and meta["datasets"] == ["ylecun/mnist"]
    assert meta["pipeline_tag"] == "unconditional-image-generation"
    assert "![samples](samples.png)" in body and "samples/final.png" in body
    assert "```bash\npython train.py" in body and "Not evaluated" in body
    assert "base_channels: 8" in body  # the composed config that trained it
    assert "load_pretrained(" in body and "DDPMScheduler.from_pretrained(" in body


def test_export_then_load_in_a_fresh_process_draws_the_checkpoints_images(exported: Path, tiny_run: Path,
                                                                           tmp_path: Path) -> None:
    """The done-when of sharing: the same images seed for seed, with Lightning and Hydra never imported."""
    script = f"""
import json, sys, torch
import ddpm_lit
from ddpm_lit.generation.generate import image_generators
model = ddpm_lit.load_pretrained({str(exported)!r})
drawn = {{
    "ddpm": model.sample(4, generator=image_generators(7, range(4)), steps=5),
    "ddim": model.sample(4, generator=image_generators(7, range(4)), sampler="ddim", steps=4),
}}
torch.save(drawn, {str(tmp_path / "drawn.pt")!r})
print(json.dumps({{"modules": [m for m in ("lightning", "hydra", "omegaconf", "wandb") if m in sys.modules],
                  "type": type(model).__name__, "diffusion": type(model.diffusion).__name__}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"modules": [], "type": "DiffusionModel", "diffusion": "GaussianDiffusion"}
    drawn = torch.load(tmp_path / "drawn.pt")
    module, ema = load_module(tiny_run / "checkpoints" / "last.ckpt", CPU)
    assert ema
    for sampler, steps in (("ddpm", 5), ("ddim", 4)):
        expected = module.sample(4, generator=image_generators(7, range(4)), sampler=sampler, steps=steps)
        assert torch.equal(drawn[sampler], expected), sampler


def test_sample_py_takes_the_folder_where_it_takes_the_checkpoint(exported: Path, tiny_run: Path,
                                                                  tmp_path: Path) -> None:
    import numpy as np

    arrays = {}
    for name, path in (("ckpt", tiny_run / "checkpoints" / "last.ckpt"), ("folder", exported)):
        proc = run_command("sample.py", [f"ckpt_path={path}", "n=6", "sampler.steps=3", "trajectory=0",
                                         "batch_size=6", f"hydra.run.dir={tmp_path / name}"])
        assert proc.returncode == 0, proc.stderr[-2000:]
        info = json.loads((tmp_path / name / "sample.json").read_text())
        assert info["ema_weights"] is True and info["family"] == "ddpm"
        with np.load(tmp_path / name / "samples.npz") as f:
            arrays[name] = f["arr_0"]
    assert arrays["ckpt"].shape == (6, 28, 28, 1) and np.array_equal(arrays["ckpt"], arrays["folder"])


def test_diffusers_reads_the_scheduler_config_as_our_process(exported: Path) -> None:
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDPMScheduler.from_pretrained(exported)
    model = load_pretrained(exported)
    assert scheduler.config.num_train_timesteps == model.diffusion.num_timesteps
    assert scheduler.config.prediction_type == "epsilon" and scheduler.config.clip_sample is True
    # diffusers computes ᾱ in float32, we in float64: the same process to float32's precision
    torch.testing.assert_close(scheduler.alphas_cumprod, model.diffusion.alphas_cumprod, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scheduler.betas, model.diffusion.betas, rtol=1e-5, atol=1e-7)


def test_a_conditional_v_model_on_the_linear_schedule_round_trips(tmp_path: Path) -> None:
    """save_pretrained -> load_pretrained of another configuration: labels, guidance and objective kept."""
    torch.manual_seed(0)
    module = tiny_ddpm(timesteps=50, schedule="linear", num_classes=10, objective="v", guidance_scale=2.0).eval()
    save_pretrained(module.standalone(), tmp_path / "m", lightning_module=module_record(module))
    scheduler = json.loads((tmp_path / "m" / "scheduler_config.json").read_text())
    assert scheduler["beta_schedule"] == "linear" and scheduler["prediction_type"] == "v_prediction"
    assert scheduler["beta_end"] == pytest.approx(0.02 * 1000 / 50)  # our end points scale with 1000 / T
    model = load_pretrained(tmp_path / "m")
    assert model.num_classes == 10 and model.guidance_scale == 2.0 and model.diffusion.objective == "v"
    labels = torch.tensor([3, 3, 7, 7])
    a = model.sample(4, generator=image_generators(1, range(4)), steps=3, class_labels=labels)
    b = module.sample(4, generator=image_generators(1, range(4)), steps=3, class_labels=labels)
    assert torch.equal(a, b)
    rebuilt, ema = load_module(tmp_path / "m", CPU)  # the apps' way: the LightningModule again
    assert type(rebuilt).__name__ == "DDPMModule" and rebuilt.hparams.guidance_scale == 2.0 and not ema
    assert torch.equal(rebuilt.sample(4, generator=image_generators(1, range(4)), steps=3, class_labels=labels), b)


# ---- a folder that does not fit: one line naming the file and the key ------------------------------
@pytest.fixture()
def folder(exported: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported, tmp_path / "copy"))


def _edit_config(folder: Path, edit) -> None:
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


def _edit_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors")


def _bad_shape(c):
    c["networks"]["net"]["config"]["base_channels"] = 16


def _foreign_class(c):
    c["networks"]["net"]["class"] = "os.system"


def _missing_key(w):
    del w["net.out.bias"]


def _extra_key(w):
    w["net.extra.weight"] = torch.zeros(2)


def _nan(w):
    w["net.out.weight"][0] = float("nan")


@pytest.mark.parametrize("fault, words", [
    (lambda f: (f / "model.safetensors").unlink(), r"copy: no model\.safetensors"),
    (lambda f: (f / "config.json").unlink(), r"copy: no config\.json"),
    (lambda f: _edit_config(f, _bad_shape), r"model\.safetensors: net\.\S+ has shape \(8, .*config\.json's network gives \(16,"),
    (lambda f: _edit_config(f, _foreign_class), r"config\.json: networks\.net\.class 'os\.system' is not a network of ddpm_lit"),
    (lambda f: _edit_weights(f, _missing_key), r"model\.safetensors: missing key net\.out\.bias"),
    (lambda f: _edit_weights(f, _extra_key), r"model\.safetensors: unexpected key net\.extra\.weight"),
    (lambda f: _edit_weights(f, _nan), r"model\.safetensors: net\.out\.weight has non-finite values"),
    (lambda f: (f / "config.json").write_text("{not json"), r"config\.json: not readable JSON"),
    (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 20), r"model\.safetensors: not a readable safetensors file"),
    (lambda f: _edit_config(f, lambda c: c.update(family="flow")), r"config\.json: family 'flow' is not one of"),
    (lambda f: _edit_config(f, lambda c: c["diffusion"].update(schedule="sigmoid")),
     r"config\.json: diffusion or sampling does not build a ddpm: unknown schedule 'sigmoid'"),
])  # fmt: skip
def test_a_bad_folder_is_one_line_naming_the_file_and_the_key(folder: Path, fault, words: str) -> None:
    fault(folder)
    with pytest.raises(DataError, match=words) as caught:
        load_pretrained(folder)
    assert "\n" not in str(caught.value)


def test_a_foreign_class_is_never_imported(folder: Path) -> None:
    _edit_config(folder, lambda c: c["networks"]["net"].update({"class": "tests_evil_module.Net"}))
    sys.modules.pop("tests_evil_module", None)
    with pytest.raises(DataError, match="not a network of ddpm_lit"):
        load_pretrained(folder)
    assert "tests_evil_module" not in sys.modules


def test_the_commands_stop_with_that_line_and_no_traceback(folder: Path, tmp_path: Path) -> None:
    _edit_weights(folder, _missing_key)
    for script in ("sample.py", "evaluate.py"):
        proc = run_command(script, [f"ckpt_path={folder}", f"hydra.run.dir={tmp_path / script}", "logger=csv"]
                           if script == "evaluate.py" else [f"ckpt_path={folder}", f"hydra.run.dir={tmp_path / script}"])
        assert proc.returncode != 0
        assert "missing key net.out.bias" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_push_to_hub_offline_is_one_line_and_the_folder_is_kept(tiny_run: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "pushed"
    proc = run_command("export.py", [f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}", f"out={out}",
                                     "push_to_hub=someone/tiny-ddpm", "grid_samples=0"])
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "push_to_hub" in line]
    assert len(lines) == 1 and "push_to_hub=someone/tiny-ddpm failed" in lines[0] and "offline" in lines[0].lower()
    assert "Traceback" not in proc.stderr and (out / "model.safetensors").is_file()


def test_training_refuses_an_exported_folder_in_one_line(exported: Path, tmp_path: Path) -> None:
    from ddpm_lit.training.checkpointing import read_checkpoint

    proc = run_command("train.py", [f"ckpt_path={exported}", "trainer=cpu", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode != 0 and "is a folder: an exported model (export.py) holds the weights alone" in proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(DataError, match="is a folder, not a checkpoint"):  # compare.py, shards, the pages
        read_checkpoint(exported)


@pytest.mark.parametrize("args, words", [
    ([], "give the checkpoint to export"),
    (["ckpt_path=x.ckpt", "push_to_hub=not a repo"], "push_to_hub must be a Hub repo id"),
])
def test_export_settings_are_checked_at_the_door(args: list[str], words: str, tmp_path: Path) -> None:
    proc = run_command("export.py", [*args, f"out={tmp_path / 'o'}"])
    assert proc.returncode != 0 and words in proc.stderr and not (tmp_path / "o" / "config.json").exists()


@pytest.mark.slow
def test_the_model_card_renders_as_markdown_with_its_grid_in_a_browser(exported: Path, tmp_path: Path) -> None:
    from ddpm_lit.reporting.model_card import card_html
    from ddpm_lit.reporting.screenshot import find_browser, load, main, open_browser

    if find_browser() is None:
        pytest.skip("no Chromium and chromedriver on PATH")
    page = tmp_path / "card.html"
    page.write_text(card_html((exported / "README.md").read_text(), exported))
    driver = open_browser()
    try:
        load(driver, page)
        widths = driver.execute_script("return [...document.images].map(i => i.naturalWidth)")
        headings = driver.execute_script("return [...document.querySelectorAll('h2')].map(h => h.textContent)")
        metadata = driver.execute_script("return document.querySelector('aside pre').textContent")
    finally:
        driver.quit()
    assert widths and all(w > 0 for w in widths)  # samples.png read from the folder
    assert headings == ["Use", "Scores", "Data", "Training", "Files"] and "library_name: ddpm-lit" in metadata
    main([str(exported / "README.md"), str(tmp_path / "card.png"), "--width", "1000"])
    from PIL import Image

    with Image.open(tmp_path / "card.png") as image:
        assert image.width == 1000 and image.height > 800


@pytest.mark.parametrize("kind, spacing", [("ddpm", None), ("ddim", "trailing"), ("dpmpp_2m", "trailing")])
def test_diffusers_schedulers_from_the_exported_folder_drive_its_network_to_our_images(exported: Path, kind: str,
                                                                                   spacing: str | None) -> None:
    """The second opinion on the exported model itself (tests/test_diffusers_parity.py: every case at tiny size)."""
    pytest.importorskip("diffusers")
    from ddpm_lit.core.samplers import SAMPLERS
    from ddpm_lit.generation.diffusers_bridge import STEP_KWARGS, diffusers_scheduler, sample_with_diffusers

    model = load_pretrained(exported)
    x_T = torch.randn(2, *model.image_shape, generator=torch.Generator().manual_seed(0))
    options = {} if spacing is None else {"spacing": spacing}
    ours = SAMPLERS[kind](model.net, model.diffusion, x_T, generator=torch.Generator().manual_seed(1), steps=5,
                          **options)
    scheduler = diffusers_scheduler(kind, exported, spacing)  # read from scheduler_config.json
    theirs = sample_with_diffusers(model.net, scheduler, x_T, 5, generator=torch.Generator().manual_seed(1),
                                   step_kwargs=STEP_KWARGS[kind])
    assert float((ours - theirs).abs().max()) <= 1e-4
