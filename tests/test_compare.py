"""python -m ddpm_lit.apps.compare: one table over models × samplers × steps, resumable."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import tiny_ddpm

from ddpm_lit.apps.compare import main, parse_grid, split_sampler


def _checkpoint(path: Path, callbacks=(), **kwargs) -> Path:
    model = tiny_ddpm(100, sample_every_n_epochs=0, **kwargs)
    data = torch.utils.data.TensorDataset(torch.rand(16, 1, 28, 28) * 2 - 1, torch.arange(16) % 10)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=list(callbacks))  # fmt: skip
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=8))
    trainer.save_checkpoint(path)
    return path


def test_grid_parsing_and_errors() -> None:
    assert parse_grid(["ddpm:10,1000", "dpmpp_2m:20"]) == [("ddpm", 10), ("ddpm", 1000), ("dpmpp_2m", 20)]
    assert parse_grid(["ddim/eta=1/spacing=quadratic:5"]) == [("ddim/eta=1/spacing=quadratic", 5)]
    assert split_sampler("ddim/eta=1/spacing=quadratic") == ("ddim", {"eta": 1.0, "spacing": "quadratic"})
    for bad in ("euler:10", "ddim", "ddim:ten", "ddim/eta:10", "ddim/=1:10"):
        with pytest.raises(SystemExit):
            parse_grid([bad])


def test_compare_tables_models_and_resumes(mnist_dir: Path, tmp_path: Path, caplog) -> None:
    plain = _checkpoint(tmp_path / "plain.ckpt")
    cond = _checkpoint(tmp_path / "cond.ckpt", num_classes=10)
    args = ["--model", f"plain={plain}", "--model", f"cond={cond}", "--grid", "ddim/eta=1:2", "dpmpp_2m:3",
            "--conditional-grid", "dpmpp_2m:2", "--guidance", "0,2", "--num-samples", "20", "--no-fid",
            "--reference-size", "200", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "out"), "--device", "cpu"]
    results = main(args)
    cells = results["cells"]
    assert set(cells) == {"plain|ddim/eta=1|2", "plain|dpmpp_2m|3", "cond|dpmpp_2m|2|w=0", "cond|dpmpp_2m|2|w=2"}
    assert all(c["mnist_fid"] > 0 for c in cells.values())
    assert cells["plain|ddim/eta=1|2"]["mnist_fid"] != cells["plain|dpmpp_2m|3"]["mnist_fid"]
    assert cells["plain|ddim/eta=1|2"]["class_accuracy"] is None
    assert 0 <= cells["cond|dpmpp_2m|2|w=2"]["class_accuracy"] <= 1
    assert len(cells["cond|dpmpp_2m|2|w=2"]["class_accuracy_per_digit"]) == 10
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.count("| plain |") == 3 and table.count("| cond |") == 3  # its model row and 2 cells
    assert f"{cells['plain|ddim/eta=1|2']['mnist_fid']:.3f}" in table
    assert json.loads((tmp_path / "out" / "results.json").read_text())["cells"] == json.loads(json.dumps(cells))

    caplog.clear()
    with caplog.at_level("INFO"):
        again = main(args)
    assert again["cells"] == json.loads(json.dumps(cells))
    assert caplog.text.count("done before, skipped") == 4
    with pytest.raises(SystemExit, match="other settings"):
        main([*args, "--seed", "1"])  # another seed cannot share the table


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
    common = ["--grid", "ddim:2", "--num-samples", "12", "--no-fid", "--reference-size", "100",
              "--data-dir", str(mnist_dir), "--device", "cpu"]  # fmt: skip
    results = main(["--model", f"ema={ckpt}", "--model-raw", f"raw={ckpt}", *common, "--out", str(tmp_path / "a")])
    assert results["models"]["ema"]["ema_weights"] and not results["models"]["raw"]["ema_weights"]
    assert results["cells"]["ema|ddim|2"]["mnist_fid"] != results["cells"]["raw|ddim|2"]["mnist_fid"]
    with pytest.raises(SystemExit, match="holds no EMA"):
        main(["--model-raw", f"raw={plain}", *common, "--out", str(tmp_path / "b")])
