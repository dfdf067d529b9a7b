"""python -m ddpm_lit.compare: one table over models × samplers × steps, resumable."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import Command, run_command, tiny_ddpm

from ddpm_lit.apps.compare import parse_grid, split_sampler
from ddpm_lit.errors import ConfigError


def _checkpoint(path: Path, callbacks=(), **kwargs) -> Path:
    model = tiny_ddpm(100, sample_every_n_epochs=0, **kwargs)
    data = torch.utils.data.TensorDataset(torch.rand(16, 1, 28, 28) * 2 - 1, torch.arange(16) % 10)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=list(callbacks))  # fmt: skip
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=8))
    trainer.save_checkpoint(path)
    return path


def compare(tmp_path: Path, *args: str) -> Command:
    """``python -m ddpm_lit.compare <args>``, in this process, from an empty folder."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    proc = run_command("ddpm_lit.compare", list(args), cwd=cwd)
    assert list(cwd.iterdir()) == []  # Hydra wrote nothing of its own where the command ran
    return proc


def test_grid_parsing_and_errors() -> None:
    # grid=[ddpm:10,1000,dpmpp_2m:20] on a command line: Hydra reads the 1000 as a number of its own
    assert parse_grid(["ddpm:10", 1000, "dpmpp_2m:20"]) == [("ddpm", 10), ("ddpm", 1000), ("dpmpp_2m", 20)]
    assert parse_grid(["ddpm:10,1000"]) == [("ddpm", 10), ("ddpm", 1000)]  # quoted, or in the YAML file
    assert parse_grid("ddim:4") == [("ddim", 4)]
    assert parse_grid(["ddim/eta=1/spacing=quadratic:5"]) == [("ddim/eta=1/spacing=quadratic", 5)]
    assert split_sampler("ddim/eta=1/spacing=quadratic") == ("ddim", {"eta": 1.0, "spacing": "quadratic"})
    # booleans are booleans: the string "false" is truthy, and clipped as if it said true
    assert split_sampler("ddpm/clip_denoised=false") == ("ddpm", {"clip_denoised": False})
    assert split_sampler("ddim/clip_denoised=True") == ("ddim", {"clip_denoised": True})
    for bad in ("euler:10", "ddim", "ddim:ten", "ddim/eta:10", "ddim/=1:10", 10, 2.5):
        with pytest.raises(ConfigError, match="grid"):
            parse_grid([bad])


def test_compare_tables_models_and_resumes(mnist_dir: Path, tmp_path: Path) -> None:
    plain = _checkpoint(tmp_path / "plain.ckpt")
    cond = _checkpoint(tmp_path / "cond.ckpt", num_classes=10)
    args = [f"models={{plain:{plain},cond:{cond}}}", 'grid=["ddim/eta=1:2",dpmpp_2m:3]', "conditional_grid=[dpmpp_2m:2]",
            "guidance=[0,2]", "num_samples=20", "fid=false", "reference_size=200", f"paths.data_dir={mnist_dir}",
            f"out={tmp_path / 'out'}", "device=cpu"]
    proc = compare(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cells = json.loads((tmp_path / "out" / "results.json").read_text())["cells"]
    assert set(cells) == {"plain|ddim/eta=1|2", "plain|dpmpp_2m|3", "cond|dpmpp_2m|2|w=0", "cond|dpmpp_2m|2|w=2"}
    assert all(c["classifier_fid"] > 0 for c in cells.values())
    assert cells["plain|ddim/eta=1|2"]["classifier_fid"] != cells["plain|dpmpp_2m|3"]["classifier_fid"]
    assert cells["plain|ddim/eta=1|2"]["class_accuracy"] is None
    assert 0 <= cells["cond|dpmpp_2m|2|w=2"]["class_accuracy"] <= 1
    assert len(cells["cond|dpmpp_2m|2|w=2"]["class_accuracy_per_class"]) == 10
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.count("| plain |") == 3 and table.count("| cond |") == 3  # its model row and 2 cells
    assert f"{cells['plain|ddim/eta=1|2']['classifier_fid']:.3f}" in table

    again = compare(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "results.json").read_text())["cells"] == cells
    assert again.stderr.count("done before, skipped") == 4
    other = compare(tmp_path, *args, "seed=1")  # another seed cannot share the table
    assert other.returncode == 2 and "other settings" in other.stderr and "use another out=" in other.stderr


def test_raw_weights_of_an_ema_checkpoint(mnist_dir: Path, tmp_path: Path) -> None:
    from ddpm_lit.training.ema import EMA

    plain = _checkpoint(tmp_path / "plain.ckpt")
    ckpt = tmp_path / "ema.ckpt"
    model = tiny_ddpm(100, sample_every_n_epochs=0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(16, 1, 28, 28) * 2 - 1), batch_size=4)
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[EMA(decay=0.5)])  # fmt: skip
    trainer.fit(model, data)
    trainer.save_checkpoint(ckpt)  # after fit the module holds the average; save the raw weights beside it by hand
    state = torch.load(ckpt, weights_only=False)
    state["current_model_state"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(state, ckpt)
    common = ["grid=[ddim:2]", "num_samples=12", "fid=false", "reference_size=100", f"paths.data_dir={mnist_dir}",
              "device=cpu"]  # fmt: skip
    proc = compare(tmp_path, f"models={{ema:{ckpt}}}", f"raw_models={{raw:{ckpt}}}", *common, f"out={tmp_path / 'a'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["models"]["ema"]["ema_weights"] and not results["models"]["raw"]["ema_weights"]
    assert results["cells"]["ema|ddim|2"]["classifier_fid"] != results["cells"]["raw|ddim|2"]["classifier_fid"]
    proc = compare(tmp_path, f"raw_models={{raw:{plain}}}", *common, f"out={tmp_path / 'b'}")
    assert proc.returncode == 2 and "raw_models.raw: " in proc.stderr and "holds no EMA" in proc.stderr
