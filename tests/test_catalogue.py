"""The metric catalogue: every metric a family logs or a table shows has one entry, and a metric
reads alike (title, format, scale) in evaluation.md, the families table, compare's table,
the runs table and the sweep page; the figure catalogue is what run_figures writes and the pages caption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ddpm_lit.catalogue import (
    BY_KEY,
    FIGURES,
    METRICS,
    figure_order,
    figures_of,
    metric,
)
from ddpm_lit.reporting.tables import (
    EVALUATION_ROWS,
    FAMILY_COLUMNS,
    RUN_COLUMNS,
    compare_table,
    evaluation_report,
    families_table,
    runs_table,
)
from ddpm_lit.runs import Sweep


def test_one_entry_per_key() -> None:
    assert len(BY_KEY) == len(METRICS)
    with pytest.raises(KeyError, match="not in the metric catalogue"):
        metric("val/made_up")


def test_every_metric_a_family_logs_is_in_the_catalogue_for_that_family() -> None:
    """What a checkpoint or a sweep may monitor (``monitorable_metrics``): a sweep page ranks its jobs by it."""
    from ddpm_lit.training.gan import GANModule
    from ddpm_lit.training.module import DDPMModule
    from ddpm_lit.training.vae import VAEModule

    for module in (DDPMModule, VAEModule, GANModule):
        for key in module.monitorable_metrics():
            assert key in BY_KEY and metric(key).applies_to(module.family), (module.family, key)


def test_the_tables_show_the_catalogues_entries() -> None:
    for shown in (RUN_COLUMNS, EVALUATION_ROWS, FAMILY_COLUMNS):
        assert all(BY_KEY[m.key] is m for m in shown)


def test_scales_formats_directions_and_families() -> None:
    assert metric("params").show(1_234_567) == "1.23" and metric("fit_seconds").show(90) == "1.5"
    assert metric("global_step").show(12) == "12" and metric("val/classifier_fid").show(None) == "–"
    assert metric("val/loss").best({"a": 0.3, "b": float("nan"), "c": 0.2}) == "c"
    assert metric("precision").best({"a": 0.3, "b": 0.9, "c": None}) == "b"
    assert metric("val/ssim").best({"a": 0.3, "b": 0.9}) is None  # no direction: no best
    assert metric("bpd").applies_to("vae") and not metric("bpd").applies_to("gan")
    assert metric("iwae_bpd").applies_to("vae") and not metric("iwae_bpd").applies_to("ddpm")
    assert metric("classifier_fid").label("Fashion-MNIST") == "Fashion-MNIST-FID"


def _results(dataset_title: str = "MNIST") -> dict:
    """evaluate.py's metrics.json at its smallest."""
    return {"samples": {"num_images": 16, "fid": 7.891, "classifier_fid": 12.34567, "classes_present": 10},
            "timings": {"sampling": 1.0},
            "source": {"ckpt_path": "x.ckpt", "samples_path": None, "sampler": None, "ema_weights": False,
                       "reference_size": 100, "reference_seed": 0, "inception": None, "classifier": "c",
                       "dataset_title": dataset_title}}


def test_a_metric_reads_alike_in_every_table() -> None:
    """The same FID and MNIST-FID, printed by evaluation.md, the families table and compare's table."""
    report = evaluation_report(_results())
    assert "| FID (TF-Inception-v3) | 7.89 |" in report and "| MNIST-FID (classifier features) | 12.346 |" in report
    assert "| classes present (≥ 2 % of the images) | 10 |" in report
    row = {"family": "ddpm", "seed": 0, "fid": 7.891, "classifier_fid": 12.34567, "collapsed": None}
    setup = {"budget": "b", "seeds": [0], "num_samples": 1, "reference_size": 1, "nll_images": 1, "iwae": 1,
             "ddpm_steps": 1, "machine": "m"}
    summary = {"ddpm": {"fid": {"mean": 7.891, "std": None}, "classifier_fid": {"mean": 12.34567, "std": None},
                        "classifier_fid_range": [12.34567, 12.34567], "collapsed": {}}}
    summary["ddpm"]["confident_share"] = {"mean": 0.81234, "std": 0.01}
    families = families_table({"summary": summary, "runs": [row], "setup": setup, "test": {"confident_share": 0.9784}})
    assert "| FID | 7.89 |" in families and "| MNIST-FID | 12.346 |" in families
    assert "| confident share | 0.812 ± 0.010 | 0.978 |" in families
    assert "| ddpm | 0 | 7.89 | 12.346 |" in families
    cell = {"model": "m", "sampler": "ddpm", "steps": 10, "guidance": None, "classifier_fid": 12.34567, "fid": 7.891,
            "recall": 0.8768, "confident_share": 0.81234, "class_accuracy": None, "sampling_seconds": 3.2}
    compare = compare_table({"cells": {"m|ddpm|10": cell}, "dataset_title": "MNIST", "test_confident_share": 0.9784},
                            fid=True)
    assert ("| model | sampler | steps | guidance | MNIST-FID | FID | recall | confident share | accuracy | sampling (s) |"
            in compare)
    assert "| m | ddpm | 10 | – | 12.346 | 7.89 | 0.877 | 0.812 | – | 3 |" in compare
    assert "(real test images: 0.978)" in compare


def test_the_fid_of_the_classifier_is_titled_by_the_data_set() -> None:
    assert "| Fashion-MNIST-FID (classifier features) | 12.346 |" in evaluation_report(_results("Fashion-MNIST"))
    assert "| Fashion-MNIST-FID |" in compare_table({"cells": {}, "dataset_title": "Fashion-MNIST"}, fid=False)


def test_the_runs_table_and_the_sweep_page_show_the_same_columns(tmp_path: Path) -> None:
    from ddpm_lit.reporting.pages import sweep_page_data

    for n, loss in enumerate((0.25, 0.5)):
        job = tmp_path / "sweep" / str(n)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": n}))
        (job / "metrics.json").write_text(json.dumps({"val/loss": loss, "params": 2_500_000, "fit_seconds": 150}))
    sweep = Sweep(tmp_path / "sweep")
    header, _, first, _ = runs_table(sweep.runs()).splitlines()
    data = sweep_page_data(sweep)
    assert header == "| run | seed | " + " | ".join(data["columns"]) + " |"
    assert first == "| 0 | 0 | " + " | ".join(data["jobs"][0]["metrics"]) + " |"
    assert "| 2.50 | – | – | 2.5 |" in first and "| 0.2500 |" in first  # params in M, fit in minutes


def test_the_figure_catalogue_is_what_run_figures_writes_and_the_pages_caption(tmp_path: Path) -> None:
    from PIL import Image

    from ddpm_lit.reporting import run_figures
    from ddpm_lit.reporting.pages import pictures_of

    assert run_figures.FIGURES == figures_of("run_figures") == (
        "loss_curves", "trajectory", "ssim_histogram", "forward_process", "schedules", "two_mode_diffusion")
    assert set(figures_of("evaluate")) == {"ssim_histogram", "least_confident", "class_histogram", "nearest_training",
                                           "bound_terms", "grid"}
    assert sorted(["zeta", "grid", "loss_curves"], key=figure_order) == ["loss_curves", "grid", "zeta"]
    paths = []
    for name in ("trajectory", "mine"):
        paths.append(tmp_path / f"{name}.png")
        Image.new("L", (4, 4)).save(paths[-1])
    assert [p.caption for p in pictures_of(paths)] == [next(f.caption for f in FIGURES if f.name == "trajectory"), "mine"]
