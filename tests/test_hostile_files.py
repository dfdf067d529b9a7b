"""Hostile and broken files: a pickle that would run code, truncated and foreign checkpoints, bad
samples files. Each ends with one ``error:`` line naming the file, exit code 2, nothing run and
nothing already written destroyed."""

from __future__ import annotations

import io
import math
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, Command, run_command
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ddpm_lit.errors import DataError
from ddpm_lit.generation.files import load_samples_npz
from ddpm_lit.training.checkpointing import read_checkpoint
from ddpm_lit.training.loading import load_module


class RunsACommand:
    """Pickles to a call of ``os.system``: loading it with ``weights_only=False`` runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture(scope="module")
def good_checkpoint(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = shutil.copytree(tiny_run, tmp_path_factory.mktemp("good") / "run")  # a hostile file is put beside its checkpoints
    return run / "checkpoints" / "last.ckpt"


def hostile_checkpoint(good: Path, path: Path, marker: Path) -> Path:
    """The good checkpoint's contents with one more entry whose unpickling touches ``marker``."""
    ckpt = torch.load(good, map_location="cpu", weights_only=True)
    ckpt["payload"] = RunsACommand(f"touch {marker}")
    torch.save(ckpt, path)
    return path


def test_every_checkpoint_train_py_writes_loads_with_weights_only(good_checkpoint: Path) -> None:
    for ckpt in good_checkpoint.parent.glob("*.ckpt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt) == []
        assert "state_dict" in read_checkpoint(ckpt)


def test_broken_checkpoints_are_named_with_what_is_wrong(good_checkpoint: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    hostile = hostile_checkpoint(good_checkpoint, tmp_path / "hostile.ckpt", marker)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good_checkpoint.read_bytes()[: good_checkpoint.stat().st_size // 2])
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"model": torch.zeros(3)}, foreign)
    cases = {hostile: r"refused unread: its pickle calls posix.system", truncated: "not a readable checkpoint",
             text: "not a readable checkpoint", foreign: "not a checkpoint of train.py",
             tmp_path / "missing.ckpt": "does not exist"}
    for path, message in cases.items():
        with pytest.raises(DataError, match=message) as error:
            load_module(path, torch.device("cpu"))
        assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()


def test_a_checkpoint_of_another_network_says_so(good_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = torch.load(good_checkpoint, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["net"]["base_channels"] = 16  # the weights are of 8 channels
    torch.save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(DataError, match=r"other.ckpt does not load as the ddpm_lit.training.module.DDPMModule"):
        load_module(tmp_path / "other.ckpt", torch.device("cpu"))


def run(script: str, args: list[str], cwd: Path) -> Command:
    return run_command(script, args, cwd)  # in this process: the pickle would run here, and write the marker


def test_a_pickle_that_runs_code_is_refused_by_sample_evaluate_and_a_resume(good_checkpoint: Path,
                                                                             tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    run_dir = good_checkpoint.parent.parent
    hostile = hostile_checkpoint(good_checkpoint, run_dir / "checkpoints" / "hostile.ckpt", marker)
    before = {p.name: p.read_bytes() for p in run_dir.glob("checkpoints/*.ckpt")}
    for script, args in (("sample.py", [f"ckpt_path={hostile}", "n=4"]),
                         ("evaluate.py", [f"ckpt_path={hostile}", "num_samples=4", "~logger"]),
                         ("train.py", [*TINY, "logger=csv", f"ckpt_path={hostile}", f"paths.data_dir={tmp_path / 'none'}"])):
        done = run(script, [*args, f"paths.log_dir={tmp_path / 'logs'}"], tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (script, done.stderr[-2000:])
        assert lines[-1].startswith("error: ") and "refused unread" in lines[-1] and str(hostile) in lines[-1]
        assert "Traceback" not in done.stderr, (script, done.stderr[-2000:])
        assert not marker.exists(), f"{script} ran the pickle's command"
    assert {p.name: p.read_bytes() for p in run_dir.glob("checkpoints/*.ckpt")} == before


# ---- samples files: whatever the bytes, a tensor in [-1, 1] or one DataError ------------------
def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


arrays = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int16, np.float32, np.float64, np.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=30),
    elements=None,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(arr=arrays, key=st.sampled_from(["arr_0", "arr_1", "images"]),
       cut=st.one_of(st.none(), st.integers(min_value=0, max_value=4000)))
def test_the_samples_loader_returns_images_or_one_data_error(tmp_path_factory, arr, key, cut) -> None:
    path = tmp_path_factory.mktemp("npz") / "samples.npz"
    data = _npz({key: arr})
    path.write_bytes(data if cut is None else data[:cut])
    try:
        images = load_samples_npz(path)
    except DataError as e:
        assert str(path) in str(e)
        return
    assert cut is None or cut >= len(data)
    assert key == "arr_0" and arr.dtype == np.uint8
    assert images.shape[1:] == (1, 28, 28) and len(images) == len(arr) >= 1
    assert torch.isfinite(images).all() and images.min() >= -1 and images.max() <= 1


def test_an_npz_holding_a_pickle_is_refused_unread(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "samples.npz"
    np.savez(path, arr_0=np.array([RunsACommand(f"touch {marker}")], dtype=object))
    with pytest.raises(DataError, match="arr_0 is not a readable array"):
        load_samples_npz(path)
    with zipfile.ZipFile(path, "a") as z:  # and a stray member beside it changes nothing
        z.writestr("arr_9.npy", b"junk")
    with pytest.raises(DataError):
        load_samples_npz(path)
    assert not marker.exists()


# ---- the config checks: whatever the values, pass exactly when valid, else one ConfigError ------
class _Chain:
    """What check_sampling reads of a DDPM checkpoint's module."""

    family, num_timesteps = "ddpm", 50

    def __init__(self, num_classes: int | None) -> None:
        self.num_classes = num_classes


values = st.one_of(st.none(), st.booleans(), st.integers(-5, 80), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=6))


@settings(max_examples=300, deadline=None)
@given(name=st.one_of(st.sampled_from(["ddpm", "ddim", "dpmpp_2m"]), st.text(max_size=8)), steps=values,
       guidance=values, conditional=st.booleans())
def test_the_sampling_checks_pass_exactly_the_valid_settings(name, steps, guidance, conditional) -> None:
    from omegaconf import OmegaConf

    from ddpm_lit.config.sampling import check_sampling
    from ddpm_lit.config.schema import SamplerSettings, guidance_scale
    from ddpm_lit.core.samplers import SAMPLERS
    from ddpm_lit.errors import ConfigError

    cfg = OmegaConf.create({"sampler": {"name": name, "steps": steps, "clip_denoised": None},
                            "guidance_scale": guidance, "ckpt_path": "model.ckpt"})
    number = isinstance(guidance, (int, float)) and not isinstance(guidance, bool) and math.isfinite(guidance)
    valid = (name in SAMPLERS
             and (guidance is None or (number and guidance >= 0 and conditional))
             and (steps is None or (type(steps) is int and 1 <= steps <= 50)))
    try:
        # at the door (the values alone), then against the checkpoint's model
        sampler, scale = SamplerSettings.parse(cfg.sampler), guidance_scale(cfg)
        check_sampling(sampler, scale, _Chain(10 if conditional else None), "model.ckpt")
    except ConfigError as e:
        assert not valid, f"refused a valid setting: {e}"
        assert "\n" not in str(e)
        return
    assert valid, (name, steps, guidance, conditional)


@settings(max_examples=300, deadline=None)
@given(items=st.one_of(values, st.lists(st.one_of(values, st.sampled_from(
    ["ddpm:10", "ddim/eta=1:2,3", "dpmpp_2m:", "euler:5", ":5", "ddim/eta:1", "ddim:1,x", "ddpm:3,,4"])), max_size=5)))
def test_the_grid_check_gives_cells_or_one_line(items) -> None:
    """compare's grid= (what Hydra makes of a command line: strings, numbers, lists of them): cells
    of a known sampler and integer steps, or one ConfigError line, never another exception."""
    from ddpm_lit.apps.compare import parse_grid, split_sampler
    from ddpm_lit.core.samplers import SAMPLERS
    from ddpm_lit.errors import ConfigError

    try:
        cells = parse_grid(items)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert cells and all(split_sampler(spec)[0] in SAMPLERS and type(steps) is int for spec, steps in cells), cells


def _literal(value):
    """``value`` as a config must hold it to mean that very string: ``${`` escaped (``\\${``), as a
    user writes a literal ``${`` in a YAML file or an override."""
    return value.replace("${", "\\${") if isinstance(value, str) else value


@settings(max_examples=200, deadline=None)
@given(budget=values, max_time=st.one_of(st.none(), st.just("00:00:10:00")))
def test_the_time_budget_check_passes_exactly_the_valid_budgets(budget, max_time) -> None:
    from omegaconf import OmegaConf

    from ddpm_lit.config.schema import time_budget as check_time_budget
    from ddpm_lit.errors import ConfigError

    cfg = OmegaConf.create({"time_budget_minutes": _literal(budget), "trainer": {"max_time": max_time}})
    assume(not isinstance(budget, str) or cfg.time_budget_minutes == budget)  # the escape keeps every drawn string
    positive = isinstance(budget, (int, float)) and not isinstance(budget, bool) and math.isfinite(budget) and budget > 0
    valid = budget is None or (positive and max_time is None)
    try:
        check_time_budget(cfg)
    except ConfigError as e:
        assert not valid and "\n" not in str(e)
        return
    assert valid, (budget, max_time)


@pytest.mark.parametrize("budget", ["${0", "${", "${oc.env:DDPM_LIT_UNSET_VARIABLE}", "${no.such.key}",
                                    "${oc.decode:${no.such.key}}"])
def test_a_budget_that_does_not_parse_or_resolve_is_one_config_error(budget, monkeypatch) -> None:
    """The strings that drew a grammar error from OmegaConf, and interpolations that cannot be
    resolved (``python train.py 'time_budget_minutes=${oc.env:UNSET}'``): one line naming the value."""
    from omegaconf import OmegaConf
    from omegaconf.errors import GrammarParseError

    from ddpm_lit.config.schema import time_budget as check_time_budget
    from ddpm_lit.errors import ConfigError

    monkeypatch.delenv("DDPM_LIT_UNSET_VARIABLE", raising=False)
    try:
        cfg = OmegaConf.create({"time_budget_minutes": budget, "trainer": {"max_time": None}})
    except GrammarParseError:  # OmegaConf refuses it on assignment: the config holds it escaped, as a literal
        cfg = OmegaConf.create({"time_budget_minutes": _literal(budget), "trainer": {"max_time": None}})
    with pytest.raises(ConfigError, match=r"time_budget_minutes must be a positive number or null, got '\$\{") as e:
        check_time_budget(cfg)
    assert "\n" not in str(e.value)
