"""page.html, the run and sweep pages: what they show, that they are one file asking no host, what
they say of a broken run, and (where Chromium is installed) how they behave in a real browser."""

from __future__ import annotations

import html as htmllib
import json
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import (
    CONF_DIR,
    ROOT,
    TINY,
    Command,
    compose_train_cfg,
    make_synthetic_mnist,
    run_command,
)
from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf, open_dict

from ddpm_lit.data.mnist import load_idx_split
from ddpm_lit.generation.files import save_grid
from ddpm_lit.reporting.pages import javascript_bundle, sweep_page_data, write_run_page
from ddpm_lit.reporting.screenshot import find_browser
from ddpm_lit.runs import Run, Sweep

MB = 1_000_000


def summarize_cli(path: Path) -> Command:
    """``python -m ddpm_lit.summarize dirs=<path> html=true``, in this process: the page of a run or a sweep."""
    return run_command("ddpm_lit.summarize", [f"dirs={path}", "html=true"])


def page_data(page: Path) -> dict:
    """The JSON the page's script reads (charts, jobs, grids)."""
    match = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', page.read_text(), re.S)
    assert match, f"{page} has no page data"
    return json.loads(match.group(1))


class Resources(HTMLParser):
    """Every tag and attribute of a page that could make the browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.fetching: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.links: list[str] = []
        self.scripts_with_src = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if tag == "a" and name == "href":
                self.links.append(value or "")
            elif name in ("src", "href", "srcset", "poster", "data", "action", "background"):
                self.fetching.append((tag, name, value or ""))
        if tag == "script" and any(name == "src" for name, _ in attrs):
            self.scripts_with_src += 1


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real multirun of train.py: the tiny model under both schedules, 3 epochs each; its sweep dir."""
    root = tmp_path_factory.mktemp("sweep")
    data = make_synthetic_mnist(root / "data")
    env_free = [sys.executable, str(ROOT / "train.py"), "-m", *TINY, "logger=csv", "data.check_md5=false",
                f"paths.data_dir={data}", f"paths.log_dir={root / 'logs'}", "trainer.max_epochs=3",
                "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
                "schedule=linear,cosine"]
    proc = subprocess.run(env_free, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = (root / "logs" / "train" / "multiruns").iterdir()
    return sweep_dir


def test_a_sweep_leaves_a_page_per_job_and_one_for_the_sweep(sweep: Path) -> None:
    jobs = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    for job in jobs:  # written by train.py at each job's end
        assert (job / "page.html").stat().st_mtime >= (job / "metrics.json").stat().st_mtime
    data = page_data(sweep / "page.html")  # written by the SweepPage Hydra callback at the multirun's end
    assert [j["name"] for j in data["jobs"]] == ["0", "1"]
    train_loss = next(c for c in data["charts"] if c["title"] == "train/loss")
    assert [s["name"] for s in train_loss["series"]] == ["0", "1"] and train_loss["x"] == "step"
    for series, job in zip(train_loss["series"], jobs):
        logged = [float(r["train/loss"]) for r in _csv_rows(job) if r.get("train/loss")]
        assert series["y"] == pytest.approx(logged)
    parser = Resources()
    parser.feed((sweep / "page.html").read_text())
    assert sorted(parser.links) == ["0/page.html", "1/page.html"]
    text = htmllib.unescape((sweep / "page.html").read_text())
    assert "schedule.name" in text and '"linear"' in text and '"cosine"' in text  # the setting that differs


def _csv_rows(run: Path) -> list[dict[str, str]]:
    import csv

    with (run / "csv" / "version_0" / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_pages_are_one_file_that_asks_no_host(sweep: Path) -> None:
    for page in [sweep / "page.html", sweep / "0" / "page.html"]:
        html = page.read_text()
        parser = Resources()
        parser.feed(html)
        assert parser.scripts_with_src == 0 and "<link" not in html
        if page.parent.name == "0":
            assert parser.fetching, "the run page shows its images"
        for tag, attribute, value in parser.fetching:
            assert value.startswith("data:"), f"{page.name}: <{tag} {attribute}={value[:60]}> is not inline"
        styles = re.findall(r"<style>(.*?)</style>", html, re.S) + re.findall(r'style="([^"]*)"', html)
        assert styles and not any(re.search(r"url\(|@import", style) for style in styles), "a style fetches a file"
        for link in parser.links:
            assert not re.match(r"[a-z]+:", link) and (page.parent / link).is_file(), link
        assert page.stat().st_size < 5 * MB


def test_the_run_page_shows_the_run(sweep: Path) -> None:
    job = sweep / "0"
    html = (job / "page.html").read_text()
    data = page_data(job / "page.html")
    metrics = json.loads((job / "metrics.json").read_text())
    assert "finished" in html and "not finished" not in html
    assert f"<td>val/loss</td><td class=\"num\">{metrics['val/loss']:.4g}</td>" in html
    titles = {c["title"]: c for c in data["charts"]}
    assert {"train/loss", "val/loss", "val/ssim"} <= set(titles) and titles["val/loss"]["x"] == "epoch"
    assert titles["val/loss"]["series"][0]["x"] == [0, 1, 2]
    grids = sorted((job / "samples").glob("epoch_*.png"))
    assert data["grids"] == [int(p.stem[6:]) for p in grids] == [0, 1, 2]
    assert html.count('id="final-grid"') == 1 and "Denoising trajectory" in html
    last = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert re.search(rf"<td>last\.ckpt</td>.*?<td class=\"num\">{last['global_step']}</td>", html, re.S)
    # The config: the keys the overrides set are highlighted, with the override that set them.
    rows = dict(re.findall(r'<tr class="overridden"><td>([^<]+)</td><td><code>[^<]*</code></td><td>([^<]+)</td>', html))
    assert rows["schedule.name"] == "schedule=linear" and rows["trainer.max_epochs"] == "trainer.max_epochs=3"
    assert rows["model.net.base_channels"] == "model.net.base_channels=8"
    assert "model.net.norm" not in rows and "seed" not in rows
    assert "not scored by evaluate.py yet" in html


def test_the_overrides_and_group_choices_are_hydras_saved_ones(sweep: Path) -> None:
    """A real multirun's jobs: their group choices read from .hydra/hydra.yaml (hydra.runtime.choices),
    the overrides from .hydra/overrides.yaml, and the keys each override set."""
    linear, cosine = Run(sweep / "0"), Run(sweep / "1")
    assert linear.choices()["schedule"] == "linear" and cosine.choices()["schedule"] == "cosine"
    assert cosine.choices()["trainer"] == "cpu" and cosine.choices()["hydra/launcher"] == "basic"
    assert "hydra/launcher" not in cosine.group_choices() and cosine.group_choices()["model"] == "unet"
    assert "schedule=cosine" in cosine.overrides() and "trainer.max_epochs=3" in cosine.overrides()
    marked = cosine.set_by(cosine.flat_config())
    assert marked["schedule.name"] == "schedule=cosine" and marked["trainer.accelerator"] == "trainer=cpu"
    assert marked["trainer.max_epochs"] == "trainer.max_epochs=3" and "model.net.norm" not in marked
    assert '<code>schedule=cosine</code>' in (sweep / "1" / "page.html").read_text()  # the page lists the choices


def _hydra_run(run: Path, overrides: list[str]) -> Run:
    """A run dir's .hydra folder as Hydra writes it for ``python train.py <overrides>`` (composed, not trained)."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "hydra.yaml").write_text(OmegaConf.to_yaml({"hydra": cfg.hydra}))
    with open_dict(cfg):
        del cfg["hydra"]  # as Hydra saves config.yaml: the task's config without its own node
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return Run(run)


def test_an_experiment_is_a_group_choice_and_a_key_override_marks_its_key(tmp_path: Path) -> None:
    """experiment=quick is recorded as Hydra's choice with the choices its defaults made (trainer=cpu,
    schedule=cosine); a later group choice (schedule=linear) marks its group's keys, a plain override its key."""
    run = _hydra_run(tmp_path / "run", ["experiment=quick", "schedule=linear", "seed=7", "model.net.base_channels=16"])
    assert run.choices()["experiment"] == "quick" and run.choices()["trainer"] == "cpu"  # the experiment's default
    assert run.choices()["schedule"] == "linear"  # the command line's, after the experiment's cosine
    marked = run.set_by(run.flat_config())
    assert marked["schedule.name"] == "schedule=linear" and marked["seed"] == "seed=7"
    assert marked["model.net.base_channels"] == "model.net.base_channels=16"
    assert "model.net.time_emb_dim" not in marked and "data.val_size" not in marked
    text = write_run_page(run.path).read_text()
    choices = re.search(r'<p id="group-choices">(.*?)</p>', text).group(1)
    assert "<code>experiment=quick</code>" in choices and "<code>trainer=cpu</code>" in choices
    assert "hydra/" not in choices and "hparams_search" not in choices  # Hydra's own groups, and those left null
    (run.path / ".hydra" / "hydra.yaml").write_text("hydra:\n  runtime: [\n")  # cut short by a kill
    assert run.choices() == {} and run.set_by(["seed"]) == {"seed": "seed=7"}  # the overrides alone still mark


def _fake_job(job: Path, optimized: str, metrics: dict) -> None:
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": optimized, "seed": int(job.name)}))
    (job / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.parametrize(("optimized", "best"), [("val/loss", "1"), ("val/classifier_fid", "2"), ("precision", "0"), ("val/ssim", None)])
def test_the_sweep_page_picks_the_best_job_by_the_objectives_direction(tmp_path: Path, optimized: str, best: str | None) -> None:
    """Lower is better for a loss or a FID, higher for precision (the metric catalogue says which); an SSIM
    against test images has no direction, and no job is called best. A NaN is never best."""
    jobs = [{"val/loss": 0.3, "val/classifier_fid": 30.0, "precision": 0.9, "val/ssim": 0.2},
            {"val/loss": 0.2, "val/classifier_fid": float("nan"), "precision": 0.1, "val/ssim": 0.5},
            {"val/loss": 0.25, "val/classifier_fid": 20.0, "precision": 0.5, "val/ssim": 0.3}]
    for n, metrics in enumerate(jobs):
        _fake_job(tmp_path / "sweep" / str(n), optimized, metrics)
    data = sweep_page_data(Sweep(tmp_path / "sweep"))
    assert data["objective"] == optimized and data["best"] == best
    assert summarize_cli(tmp_path / "sweep").returncode == 0
    text = (tmp_path / "sweep" / "page.html").read_text()
    if best is None:
        assert 'id="best-job"' not in text and 'class="best"' not in text
    else:
        assert re.search(rf'id="best-job"[^>]*>best by {optimized} \((lower|higher) is better\): job <strong>{best}</strong>', text)
        assert text.count('<tr class="best">') == 1


def test_a_crashed_run_with_a_torn_csv_still_gets_a_page(sweep: Path, tmp_path: Path) -> None:
    run = shutil.copytree(sweep / "0", tmp_path / "crashed")
    for gone in ("metrics.json", "page.html"):
        (run / gone).unlink()
    shutil.rmtree(run / "samples")
    shutil.rmtree(run / "figures")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    csv_file = run / "csv" / "version_0" / "metrics.csv"
    logged = [float(r["train/loss"]) for r in _csv_rows(run) if r.get("train/loss")]
    with csv_file.open("a") as f:
        f.write("2,,11,0.3x\n1.5e")  # a row that does not parse, then one cut mid-number by the kill
    proc = summarize_cli(run)
    assert proc.returncode == 0, proc.stderr
    html = (run / "page.html").read_text()
    assert "not finished: no metrics.json" in html
    assert "no validation sample grids" in html and "no final samples" in html and "no figures" in html
    assert "row(s) of the CSV history unreadable" in html
    assert re.search(r"<td>last\.ckpt</td>.*?is not a readable checkpoint", html, re.S)  # named, not fatal
    data = page_data(run / "page.html")
    loss = next(c for c in data["charts"] if c["title"] == "train/loss")
    assert loss["series"][0]["y"] == pytest.approx(logged)  # the rows before the tear, nothing of it
    # No CSV at all: the page says so and shows no chart.
    shutil.rmtree(run / "csv")
    assert summarize_cli(run).returncode == 0
    assert "no CSV history" in (run / "page.html").read_text() and page_data(run / "page.html")["charts"] == []


def test_the_run_page_shows_what_evaluate_scored(sweep: Path, mnist_dir: Path, tmp_path: Path) -> None:
    """evaluate.py run on a run's checkpoint (in outputs/evaluate beside outputs/train) rewrites the
    run's page, which shows its scores and figures; an evaluation of another checkpoint stays off it."""
    run = shutil.copytree(sweep / "0", tmp_path / "outputs" / "train" / "runs" / "job")
    shutil.copytree(sweep / "1", tmp_path / "outputs" / "train" / "runs" / "other")
    common = [f"paths.data_dir={mnist_dir}", "reference_size=100", "fid.enabled=false", "score_test=false",
              "num_samples=16", "nll.enabled=false", "logger=csv", "grid_size=16"]
    for name, ckpt in [("mine", "job/checkpoints/last.ckpt"), ("not_mine", "other/checkpoints/last.ckpt")]:
        proc = run_command("evaluate.py", [f"ckpt_path=outputs/train/runs/{ckpt}",
                                           f"hydra.run.dir={tmp_path / 'outputs' / 'evaluate' / 'runs' / name}",
                                           *common], cwd=tmp_path)  # a path relative to cwd
        assert proc.returncode == 0, proc.stderr[-2000:]
    text = (run / "page.html").read_text()  # rewritten by evaluate.py at its end
    scores = json.loads((tmp_path / "outputs" / "evaluate" / "runs" / "mine" / "metrics.json").read_text())
    assert "<summary>mine " in text and "<summary>not_mine " not in text
    assert f"<td>samples.classifier_fid</td><td class=\"num\">{scores['samples']['classifier_fid']:.4g}</td>" in text
    assert re.search(r'<img src="data:image/png;base64,[^"]+" alt="Samples">', text)  # evaluate's grid.png
    # the per-sample view: the confident share (higher is better) and the least-confident samples
    share = scores["samples"]["confident_share"]
    assert re.search(rf'<td>samples.confident_share</td><td class="num">{share:.4g}</td><td class="sub">[^<]*higher', text)
    assert re.search(r'<img src="data:image/png;base64,[^"]+" alt="Least-confident samples">', text)


@pytest.mark.parametrize("kind", ["empty folder", "file", "missing"])
def test_a_path_that_is_no_run_stops_with_one_line(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x"
    if kind == "empty folder":
        path.mkdir()
        (path / "notes.txt").write_text("no runs here")
    elif kind == "file":
        path.write_text("not a folder")
    proc = summarize_cli(path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {path}"), proc.stderr
    assert not (path / "page.html").exists() if path.is_dir() else True


def test_train_writes_the_page_also_when_the_run_fails(tmp_path: Path) -> None:
    """train(): the page is written in its `finally`, so a run that raised has one that says so."""
    import lightning as L

    from ddpm_lit.apps.train import train

    class Boom(L.Callback):
        def on_train_batch_start(self, trainer, *args) -> None:
            if trainer.global_step == 3:
                raise RuntimeError("injected failure at step 3")

    data = make_synthetic_mnist(tmp_path / "data")
    cfg = compose_train_cfg([*TINY, "logger=csv", "data.check_md5=false", "trainer.max_epochs=2",
                             "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                             "trainer.log_every_n_steps=1"], tmp_path / "run", data)
    with pytest.raises(RuntimeError, match="injected failure"):
        train(cfg, extra_callbacks=[Boom()])
    html = (tmp_path / "run" / "page.html").read_text()
    assert "not finished: no metrics.json" in html
    assert [p.stem for p in (tmp_path / "run" / "samples").glob("epoch_*.png")] == ["epoch_000"]
    assert page_data(tmp_path / "run" / "page.html")["grids"] == [0]
    assert "<td>trainer.limit_train_batches</td><td><code>2</code></td>" in html  # the config of train(cfg)


def _noisy_digit_grids(run: Path, mnist_dir: Path, epochs: int) -> None:
    """``epochs`` validation grids of 64 real test digits with Gaussian noise, σ 0.2 at the first
    epoch to 0.02 at the last (a PNG of them is larger than the quick run's own grids: 42-47 KB against 29-36 KB
    as data URIs)."""
    images, _ = load_idx_split(mnist_dir / "MNIST" / "raw", train=False)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        digits = images[epoch * 64 % 9000:][:64].float().div(255).unsqueeze(1)
        sigma = 0.2 - 0.18 * epoch / max(1, epochs - 1)
        noisy = digits + sigma * torch.randn(digits.shape, generator=generator)
        save_grid(noisy.clamp(0, 1), run / "samples" / f"epoch_{epoch:03d}.png")


@pytest.mark.parametrize("epochs", [50, 400])
def test_a_long_run_page_stays_light(sweep: Path, mnist_dir: Path, tmp_path: Path, epochs: int) -> None:
    """A 50-epoch run keeps every epoch's grid under 5 MB; 400 epochs are thinned to fit, and say so.
    The history: the study's batch 128 (469 steps an epoch), logged every 10 steps."""
    run = tmp_path / "long"
    shutil.copytree(sweep / "0" / ".hydra", run / ".hydra")
    shutil.copytree(sweep / "0" / "figures", run / "figures")
    _noisy_digit_grids(run, mnist_dir, epochs)
    rows = ["epoch,lr-Adam,step,train/loss,val/loss"]
    rng = np.random.default_rng(0)
    for step in range(9, epochs * 469, 10):
        rows.append(f"{step // 469},,{step},{0.03 + 0.5 / (1 + step / 200) + 0.01 * rng.random():.6f},")
        rows.append(f",{2e-4},{step},,")
    rows += [f"{e},,{(e + 1) * 469 - 1},,{0.04 + 0.1 / (e + 1):.6f}" for e in range(epochs)]
    (run / "csv" / "version_0").mkdir(parents=True)
    (run / "csv" / "version_0" / "metrics.csv").write_text("\n".join(rows) + "\n")
    start = time.perf_counter()
    bundle = javascript_bundle()  # built once a process; timed apart
    print(f"script bundle: {len(bundle) / MB:.2f} MB, built in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    page = write_run_page(run)
    seconds = time.perf_counter() - start
    size = page.stat().st_size
    data = page_data(page)
    print(f"{epochs} epochs: page.html {size / MB:.2f} MB, {len(data['grids'])} grids, written in {seconds:.1f} s")
    assert size < 5 * MB
    loss = next(c for c in data["charts"] if c["title"] == "train/loss")
    assert len(loss["series"][0]["x"]) <= 1500 and loss["series"][0]["x"][-1] == max(range(9, epochs * 469, 10))
    if epochs == 50:
        assert data["grids"] == list(range(50))
    else:
        assert data["grids"][0] == 0 and data["grids"][-1] == epochs - 1 and 20 < len(data["grids"]) < epochs
        assert f"{len(data['grids'])} of {epochs} epochs' grids" in page.read_text()


# ---------------------------------------------------------------------------------------------------------------
# In a real browser: Debian's chromium and chromium-driver, driven by selenium.

needs_browser = pytest.mark.skipif(find_browser() is None, reason="no chromium and chromedriver on PATH")


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium")
    from ddpm_lit.reporting.screenshot import open_browser

    driver = open_browser()
    yield driver
    driver.quit()


def _opened(browser, page: Path) -> None:
    from ddpm_lit.reporting.screenshot import load, requests

    requests(browser)  # forget the previous page's
    browser.get_log("browser")
    load(browser, page)
    errors = browser.execute_script("return window.dashboard.errors")
    assert errors == [], errors
    console = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert console == [], console
    asked = requests(browser)
    assert asked and all(url == page.resolve().as_uri() or url.startswith("data:") for url in asked), asked


def _lines(browser, chart_id: str) -> int:
    return browser.execute_script(f"return document.querySelectorAll('#{chart_id} g.mark-line path').length")


@pytest.mark.slow
@needs_browser
def test_run_page_in_a_browser(browser, sweep: Path) -> None:
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from ddpm_lit.reporting.screenshot import wait_until

    page = sweep / "0" / "page.html"
    _opened(browser, page)
    data = page_data(page)
    for chart in data["charts"]:  # every chart drew its line, and the picture is not blank
        assert _lines(browser, chart["id"]) >= 1, chart["title"]
    element = browser.find_element(By.ID, data["charts"][0]["id"])
    import io

    pixels = np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("L"))
    assert (pixels < 200).mean() > 0.01, "the chart's screenshot is blank"

    # Hover: the tooltip shows the series' value at the nearest point.
    loss = next(c for c in data["charts"] if c["title"] == "train/loss")
    svg = browser.find_element(By.CSS_SELECTOR, f"#{loss['id']} svg")
    plot = browser.find_element(By.CSS_SELECTOR, f"#{loss['id']} g.mark-line path")
    ActionChains(browser).move_to_element(plot).move_by_offset(1, 0).perform()
    text = wait_until(browser, "const t = document.getElementById('vg-tooltip-element');"
                               "return t && t.classList.contains('visible') && t.textContent")
    shown = float(re.search(r"train/loss\s*([-\d.e]+)", text).group(1))
    assert any(abs(shown - y) <= 1e-4 * abs(y) for y in loss["series"][0]["y"]), (text, loss["series"][0]["y"])
    assert svg.is_displayed()

    # The epoch slider changes the grid.
    slider = browser.find_element(By.ID, "epoch-slider")
    grid = browser.find_element(By.ID, "epoch-grid")
    last_src = grid.get_attribute("src")
    slider.send_keys(Keys.HOME)
    assert browser.find_element(By.ID, "epoch-label").text == "epoch 0"
    assert grid.get_attribute("src") != last_src and grid.get_attribute("src").startswith("data:image/png")

    # The log-scale switch redraws every chart on a log axis.
    drawn = int(browser.execute_script("return document.body.dataset.drawn"))
    browser.find_element(By.ID, "log-scale").click()
    wait_until(browser, f"return Number(document.body.dataset.drawn) > {drawn}")
    scale = browser.execute_script(f"return window.dashboard.views['{loss['id']}'].view.scale('y').type")
    assert scale == "log"
    browser.find_element(By.ID, "log-scale").click()

    # The config filter.
    browser.find_element(By.ID, "config-filter").send_keys("max_epochs")
    shown_rows = browser.execute_script(
        "return [...document.querySelectorAll('#config-table tbody tr')].filter(r => !r.hidden).map(r => r.cells[0].textContent)")
    assert shown_rows and all("max_epochs" in key for key in shown_rows)


@pytest.mark.slow
@needs_browser
def test_sweep_page_in_a_browser(browser, sweep: Path) -> None:
    from selenium.webdriver.common.by import By

    from ddpm_lit.reporting.screenshot import wait_until

    page = sweep / "page.html"
    _opened(browser, page)
    data = page_data(page)
    for chart in data["charts"]:  # one line per job
        assert _lines(browser, chart["id"]) == 2, chart["title"]
    # Unticking job 0 leaves one line on every chart; ticking it brings it back.
    toggle = browser.find_element(By.CSS_SELECTOR, '.job-toggle[data-job="0"]')
    drawn = int(browser.execute_script("return document.body.dataset.drawn"))
    toggle.click()
    wait_until(browser, f"return Number(document.body.dataset.drawn) > {drawn}")
    assert all(_lines(browser, chart["id"]) == 1 for chart in data["charts"])
    toggle.click()
    wait_until(browser, f"return Number(document.body.dataset.drawn) > {drawn + 1}")
    assert all(_lines(browser, chart["id"]) == 2 for chart in data["charts"])
    # A click on the objective's column sorts the jobs by it, a second click the other way.
    header = browser.find_element(By.XPATH, f"//table[@id='jobs-table']//th[text()='{data['objective']}']")
    column = browser.execute_script("return arguments[0].cellIndex", header)
    values = lambda: [float(v) for v in browser.execute_script(  # noqa: E731
        f"return [...document.querySelectorAll('#jobs-table tbody tr')].map(r => r.cells[{column}].textContent)")]
    header.click()
    assert values() == sorted(values())
    header.click()
    assert values() == sorted(values(), reverse=True)
    # The settings against the objective: a point per job.
    assert browser.execute_script("return document.querySelectorAll('#scatter-0 g.mark-symbol path').length") == 2


def test_series_are_drawn_per_epoch_when_logged_once_an_epoch() -> None:
    """val/loss (once an epoch, twice for the epoch a resumed run repeated) by epoch; train/loss
    (several steps an epoch) by step, the last value of a repeated step kept."""
    from ddpm_lit.reporting.pages import history_series

    history = [
        {"epoch": 0, "step": 4, "train/loss": 0.9}, {"epoch": 0, "step": 9, "train/loss": 0.8},
        {"epoch": 0, "step": 9, "val/loss": 0.7},
        {"epoch": 1, "step": 14, "train/loss": 0.6}, {"epoch": 1, "step": 19, "train/loss": 0.5},
        {"epoch": 1, "step": 19, "val/loss": 0.45},
        {"epoch": 1, "step": 14, "train/loss": 0.61}, {"epoch": 1, "step": 19, "train/loss": 0.51},  # resumed
        {"epoch": 1, "step": 19, "val/loss": 0.44},
        {"step": 19, "lr-Adam": 1e-3},
    ]
    series = history_series(history)
    assert series["val/loss"] == ("epoch", [0, 1], [0.7, 0.44])
    assert series["train/loss"] == ("step", [4, 9, 14, 19], [0.9, 0.8, 0.61, 0.51])
    assert series["lr-Adam"] == ("step", [19], [1e-3])


def test_a_sweep_with_a_diverged_and_an_unfinished_job_still_gets_its_page(sweep: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(sweep, tmp_path / "sweep")
    metrics = json.loads((copy / "1" / "metrics.json").read_text())
    (copy / "1" / "metrics.json").write_text(json.dumps({**metrics, "val/loss": float("nan")}))  # NaN, as json writes it
    (copy / "0" / "metrics.json").unlink()  # still going
    shutil.rmtree(copy / "0" / "csv")
    (copy / "page.html").unlink()
    proc = summarize_cli(copy)
    assert proc.returncode == 0, proc.stderr
    data = page_data(copy / "page.html")
    assert [c["series"][0]["name"] for c in data["charts"] if c["title"] == "train/loss"] == ["1"]
    assert data["scatter"][0]["points"] == []  # no job has a finite objective to plot
    text = (copy / "page.html").read_text()
    assert re.search(r'<td class="warn">not finished</td>', text) and ">nan</td>" in text


# Each file a run dir holds, and what a kill or a stray write could have left in it instead.
RUN_FILES = ["metrics.json", ".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml",
             "csv/version_0/metrics.csv", "samples/epoch_001.png", "samples/final.png", "figures/trajectory.png",
             "checkpoints/last.ckpt"]


@pytest.fixture(scope="module")
def run_files(sweep: Path) -> dict[str, bytes]:
    return {name: (sweep / "0" / name).read_bytes() for name in RUN_FILES}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.dictionaries(
    st.sampled_from(RUN_FILES),
    st.one_of(st.just("missing"), st.just("empty"), st.integers(min_value=1, max_value=400), st.binary(max_size=64),
              st.sampled_from(["{", "[1, 2", "- a\n  b: [", "NaN", "\x00\x00", "epoch,step\n1,\n\x00"])),
    min_size=1, max_size=5))
def test_any_damaged_run_dir_gets_a_page_or_one_line(run_files: dict[str, bytes], tmp_path_factory, damage) -> None:
    """Files missing, empty, cut short (an integer: the first bytes kept) or replaced: the page is
    written and says what is unusable; a folder left with nothing of a run is refused (NotARunError,
    which the command prints as one line: test_a_path_that_is_no_run_stops_with_one_line)."""
    from ddpm_lit.reporting.pages import NotARunError

    run = tmp_path_factory.mktemp("damaged")
    for name, content in run_files.items():
        harm = damage.get(name)
        if harm == "missing":
            continue
        if harm == "empty":
            content = b""
        elif isinstance(harm, int):
            content = content[:harm]
        elif isinstance(harm, (bytes, str)):
            content = harm if isinstance(harm, bytes) else harm.encode()
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(content)
    marks = [".hydra/config.yaml", "metrics.json", "csv/version_0/metrics.csv", "checkpoints/last.ckpt"]
    try:
        page = write_run_page(run)
    except NotARunError as err:
        assert all(damage.get(name) == "missing" for name in marks) and "is not a run dir" in str(err)
        return
    text = page.read_text()
    assert "<title>" in text and text.rstrip().endswith("</html>")
    metrics = json.loads(run_files["metrics.json"])
    if "metrics.json" not in damage:
        assert "<p class=\"status ok\">finished</p>" in text and f"{metrics['val/loss']:.4g}</td>" in text
    elif damage["metrics.json"] in ("missing", "empty"):
        assert "not finished: no metrics.json" in text
    if "samples/final.png" in damage:  # any of these leaves no PNG that decodes
        assert 'id="final-grid"' not in text and "no final samples" in text
    if "samples/epoch_001.png" in damage:
        assert 'id="epoch-slider"' not in text
    if damage.get(".hydra/config.yaml") in ("missing", "empty"):
        assert "no readable config" in text and page_data(page)["kind"] == "run"
    if damage.get("checkpoints/last.ckpt") not in (None, "missing"):
        assert re.search(r"<td>last\.ckpt</td>.*?is not a readable checkpoint", text, re.S)
    if damage.get("csv/version_0/metrics.csv") in ("missing", "empty"):
        assert page_data(page)["charts"] == []


def _hostile_sweep(sweep: Path, tmp_path: Path) -> Path:
    """A copy of the sweep whose job 1 has a setting that would end a <script> element early."""
    copy = shutil.copytree(sweep, tmp_path / "hostile")
    config = (copy / "1" / ".hydra" / "config.yaml").read_text()
    (copy / "1" / ".hydra" / "config.yaml").write_text(config.replace("seed: 42", 'seed: "<!--<script></script>"', 1))
    (copy / "page.html").unlink()
    return copy


def test_settings_that_look_like_html_stay_text(sweep: Path, tmp_path: Path) -> None:
    copy = _hostile_sweep(sweep, tmp_path)
    assert summarize_cli(copy).returncode == 0
    text = (copy / "page.html").read_text()
    assert "<!--<script>" not in text  # escaped in the table, \u003c in the page's JSON
    seed = next(item for item in page_data(copy / "page.html")["scatter"] if item["setting"] == "seed")
    assert seed["points"][1]["value"] == "<!--<script></script>"


def test_a_multi_objective_optuna_study_has_no_single_best(sweep: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(sweep, tmp_path / "multi")
    (copy / "optimization_results.yaml").write_text("name: optuna\nsolutions:\n- params: {a: 1}\n  values: [0.1, 0.2]\n")
    assert summarize_cli(copy).returncode == 0
    assert 'id="optuna-best"' not in (copy / "page.html").read_text()
    (copy / "optimization_results.yaml").write_text("name: optuna\nbest_params: {a: 1}\nbest_value: 0.25\n")
    assert summarize_cli(copy).returncode == 0
    assert "Optuna's best: 0.25 with" in (copy / "page.html").read_text()


@pytest.mark.slow
@needs_browser
def test_hostile_settings_and_smoothing_in_a_browser(browser, sweep: Path, tmp_path: Path) -> None:
    """A setting with <script> in it leaves the page working; a long per-step series is drawn raw
    and smoothed (two lines), and raw only once the smoothing slider is at 0."""
    from selenium.webdriver.common.by import By

    from ddpm_lit.reporting.screenshot import wait_until

    copy = _hostile_sweep(sweep, tmp_path)
    assert summarize_cli(copy).returncode == 0
    _opened(browser, copy / "page.html")
    assert all(_lines(browser, chart["id"]) == 2 for chart in page_data(copy / "page.html")["charts"])

    run = shutil.copytree(sweep / "0", tmp_path / "long")
    with (run / "csv" / "version_0" / "metrics.csv").open("a") as f:
        header = (run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
        for step in range(12, 112):
            row = {"epoch": "3", "step": str(step), "train/loss": f"{0.5 + 0.1 * ((step * 7) % 5):.3f}"}
            f.write(",".join(row.get(column, "") for column in header) + "\n")
    page = write_run_page(run)
    _opened(browser, page)
    loss = next(c for c in page_data(page)["charts"] if c["title"] == "train/loss")
    assert loss["smooth"] and _lines(browser, loss["id"]) == 2
    drawn = int(browser.execute_script("return document.body.dataset.drawn"))
    browser.execute_script("const s = document.getElementById('smoothing'); s.value = 0;"
                           "s.dispatchEvent(new Event('change'))")
    wait_until(browser, f"return Number(document.body.dataset.drawn) > {drawn}")
    assert _lines(browser, loss["id"]) == 1
    assert browser.find_element(By.ID, "smoothing").get_attribute("value") == "0"
