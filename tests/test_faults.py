"""Faults injected into real runs: SIGKILL at random instants, resumes mid-epoch, and the bit-exact
weights and data order they must leave (docs/reliability.md, "What happens when")."""

from __future__ import annotations

import csv
import errno
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import ROOT, TINY, compose_train_cfg, tiny_ddpm

from ddpm_lit.apps.train import train
from ddpm_lit.data.datamodule import EpochShuffle
from ddpm_lit.errors import OutputError, TrainingDiverged
from ddpm_lit.runs import Run
from ddpm_lit.training.checkpointing import AtomicCheckpointIO, nonfinite_weights

TESTS = Path(__file__).resolve().parent


def weights(ckpt: Path) -> dict[str, dict[str, torch.Tensor]]:
    """A checkpoint's EMA and raw weights, loaded as any app loads one (``weights_only=True``)."""
    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
    return {key: loaded[key] for key in ("state_dict", "current_model_state")}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    for key in wa:
        differ = [name for name in wa[key] if not torch.equal(wa[key][name], wb[key][name])]
        assert not differ, f"{key}: {len(differ)} tensors differ, e.g. {differ[:3]}"


EXACT = [*TINY, "trainer.limit_val_batches=1", "data.check_md5=false", "final_samples.num=0", "seed=3",
         "trainer.deterministic=true", "trainer.max_epochs=-1", "trainer.log_every_n_steps=1"]


def test_a_run_resumed_mid_epoch_ends_with_the_weights_of_one_never_stopped(synthetic_mnist_dir: Path,
                                                                             tmp_path: Path) -> None:
    # 8 batches an epoch; the stops at steps 7 and 13 are mid-epoch 0 and mid-epoch 1.
    base = [*EXACT, "logger=csv"]
    train(compose_train_cfg([*base, "trainer.max_steps=20"], tmp_path / "once", synthetic_mnist_dir))
    for steps, resume in ((7, []), (13, ["ckpt_path=last"]), (20, ["ckpt_path=last"])):
        metrics = train(compose_train_cfg([*base, f"trainer.max_steps={steps}", *resume], tmp_path / "stopped",
                                          synthetic_mnist_dir))
        assert metrics["global_step"] == steps
    assert_same_weights(tmp_path / "once" / "checkpoints" / "last.ckpt", tmp_path / "stopped" / "checkpoints" / "last.ckpt")
    # and the loss of every step, as logged
    once, stopped = ({int(r["step"]): r["train/loss"] for r in rows(path) if r.get("train/loss")}
                     for path in (tmp_path / "once" / "csv", tmp_path / "stopped" / "csv"))
    assert once == stopped and len(once) == 20


def rows(csv_dir: Path) -> list[dict[str, str]]:
    """Every row of every version's metrics.csv under ``csv_dir``, in version order."""
    out: list[dict[str, str]] = []
    for path in sorted(csv_dir.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])):
        with open(path, newline="") as f:
            out += list(csv.DictReader(f))
    return out


def test_the_training_order_depends_on_the_seed_and_epoch_alone_and_resumes_at_a_batch() -> None:
    a, b = EpochShuffle(100, 10, seed=1), EpochShuffle(100, 10, seed=1)
    torch.manual_seed(0)
    first = [list(a), list(a)]  # two epochs
    torch.manual_seed(123)  # the global generator plays no part
    assert [list(b), list(b)] == first and first[0] != first[1] and sorted(first[0]) == list(range(100))
    c = EpochShuffle(100, 10, seed=1)
    c.position = (1, 3)  # resumed in epoch 1 after 3 batches
    assert list(c) == first[1][30:] and list(c) == EpochShuffle(100, 10, seed=1).order(2).tolist()
    assert list(EpochShuffle(100, 10, seed=2)) != first[0]


# ---- SIGKILL at random instants ------------------------------------------------------------
def start_train(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PYTHONUNBUFFERED": "1"}  # output as it happens
    # WANDB_SERVICE: the W&B service an in-process test of this worker started; a child sharing it
    # would find its killed predecessor's run still open there ("run ID is in use"), which a
    # user's shell, starting each run's own service, never does
    for key in ("WANDB_MODE", "HYDRA_FULL_ERROR", "WANDB_SERVICE"):
        env.pop(key, None)
    # one stream: Lightning's progress bars go to stdout, its log lines and tracebacks to stderr
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


PHASES = {"Sanity Checking": "sanity check", "Validation": "validation", "Epoch": "training steps",
          "sampling": "sampling", "samples written to": "figures", "Restor": "restoring a checkpoint"}
def phase(stderr: str) -> str:
    """What a run was doing when its output stopped: the last progress bar or log line it wrote."""
    found = {name: stderr.rfind(marker) for marker, name in PHASES.items()}
    name, at = max(found.items(), key=lambda item: item[1])
    return name if at >= 0 else "start-up"


class Watched:
    """A ``train.py`` process whose stderr is read as it comes (progress bars and log lines)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.process = start_train(args, cwd)
        self.chunks: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in iter(self.process.stdout.readline, ""):  # text mode: "\r" ends a line too
            self.chunks.append(line)

    def wait_for(self, marker: str, timeout: float = 300) -> bool:
        """Until ``marker`` is in the output (True) or the process has ended (False)."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            if any(marker in chunk for chunk in list(self.chunks)):
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def finish(self, timeout: float = 600) -> str:
        self.process.wait(timeout=timeout)
        self.reader.join(timeout=60)
        return "".join(self.chunks)


def kill_and_resume(args: list[str], cwd: Path, kills: int, span: float, seed: int
                    ) -> tuple[list[str], subprocess.CompletedProcess]:
    """Start ``train.py args`` and SIGKILL it ``kills`` times, resuming with ``ckpt_path=last``
    after each; then let the last start finish. The kills take the phases of a run in turn
    (training steps with their CSV and W&B writes, validation with its checkpoint saves,
    start-up; the last two: the final samples, the figures): each waits until the run's output
    shows its phase and strikes a random instant later (up to ``span`` seconds into start-up, up
    to 0.5 s into the others). A run that ends before the phase comes is not hit. Returns what
    each hit interrupted, and the finished run."""
    rng = random.Random(seed)
    cycle = ["Epoch", "Validation", None]  # None: start-up
    samples = [a for a in args if a.startswith("final_samples.num=")]  # the last one counts, as in Hydra
    finals = [] if samples and samples[-1] == "final_samples.num=0" else ["sampling", "samples written to"]
    plan = [cycle[i % 3] for i in range(kills - len(finals))] + finals
    hits: list[str] = []
    for attempt in range(kills + 1):
        run = Watched(args + (["ckpt_path=last"] if attempt else []), cwd)
        if attempt == kills:
            err = run.finish()
            return hits, subprocess.CompletedProcess(run.process.args, run.process.returncode, "", err)
        marker = plan[attempt]
        if marker is None:
            time.sleep(rng.uniform(0.5, span))
        elif run.wait_for(marker):
            time.sleep(rng.uniform(0, 0.5))
        alive = run.process.poll() is None
        if alive:
            run.process.send_signal(signal.SIGKILL)
        err = run.finish(timeout=60)
        if alive:
            hits.append(phase(err))
        # every checkpoint on disk loads, as an app loads it
        for ckpt in cwd.glob("logs/train/runs/*/checkpoints/*.ckpt"):
            torch.load(ckpt, map_location="cpu", weights_only=True)
    raise AssertionError("unreachable")


def check_killed_run(tmp_path: Path, args: list[str], steps: int, kills: int, seed: int) -> int:
    """The run of ``steps`` killed ``kills`` times finishes at that step with the weights of the
    run never killed, its CSV history whole and one W&B run id."""
    once = tmp_path / "once"
    once.mkdir()
    reference = Watched([*args, f"trainer.max_steps={steps}"], once)
    err = reference.finish()
    assert reference.process.returncode == 0, err[-3000:]
    span = 8.0  # seconds of start-up at most (imports, Hydra, data) on 2 cores
    args = [*args, f"trainer.max_steps={steps}"]

    killed = tmp_path / "killed"
    killed.mkdir()
    hits, final = kill_and_resume(args, killed, kills, span, seed)
    assert final.returncode == 0, final.stderr[-3000:]
    (run,) = (killed / "logs" / "train" / "runs").iterdir()
    (ref,) = (once / "logs" / "train" / "runs").iterdir()
    assert weights(run / "checkpoints" / "last.ckpt")["state_dict"]  # non-empty
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == steps
    assert_same_weights(ref / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt")
    assert not list(run.rglob(".*.part"))  # no staging file of a killed write is left
    history = rows(run / "csv")
    logged = {int(r["step"]) for r in history if r.get("train/loss")}
    assert logged == {int(r["step"]) for r in rows(ref / "csv") if r.get("train/loss")}, sorted(logged)  # none lost
    ids = {p.name.rsplit("-", 1)[1] for p in run.glob("wandb/offline-run-*")}
    assert ids == {Run(run).wandb_run_id()}, ids  # one W&B run, resumed each time
    where = ", ".join(f"{n} in {p}" for p, n in sorted(Counter(hits).items()))
    print(f"\nSIGKILL at random instants: {len(hits)} of {kills} hit a live run ({where}); finished at step {steps}, bit-exact")
    return len(hits)


KILL_ARGS = [*EXACT, "logger=[wandb,csv]"]


@pytest.mark.slow
def test_sigkill_at_random_instants_then_resume_ends_as_an_uninterrupted_run(synthetic_mnist_dir: Path,
                                                                             tmp_path: Path) -> None:
    args = [*KILL_ARGS, f"paths.data_dir={synthetic_mnist_dir}", f"paths.log_dir={tmp_path / 'x' / 'logs'}"]
    args = [a.replace(str(tmp_path / "x"), ".") for a in args]  # each run under its own cwd
    assert check_killed_run(tmp_path, args, steps=48, kills=3, seed=0) >= 1


@pytest.mark.slow
def test_sigkill_many_times_with_final_samples(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    args = [*KILL_ARGS, "final_samples.num=8", f"paths.data_dir={synthetic_mnist_dir}", "paths.log_dir=./logs"]
    assert check_killed_run(tmp_path, args, steps=120, kills=12, seed=1) >= 6


# ---- racing runs ---------------------------------------------------------------------------
def test_two_runs_started_in_the_same_second_get_a_run_dir_each(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    args = [*TINY, "logger=csv", "trainer.max_steps=2", "trainer.limit_val_batches=1", "data.check_md5=false",
            "final_samples.num=0", f"paths.data_dir={synthetic_mnist_dir}", f"paths.log_dir={tmp_path / 'logs'}"]
    # train.yaml's run dir with the timestamp both would read in one second (${now:} has one-second
    # resolution): the collision made certain rather than likely.
    runs_dir = tmp_path / "logs" / "train" / "runs"
    same_second = "hydra.run.dir='${run_dir:${ckpt_path}," + str(runs_dir) + ",2026-12-03_10-00-00}'"
    processes = [start_train([*args, same_second], tmp_path) for _ in range(2)]
    errors = [p.communicate(timeout=300)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), errors
    runs = sorted((tmp_path / "logs" / "train" / "runs").iterdir())
    assert [r.name for r in runs] == ["2026-12-03_10-00-00", "2026-12-03_10-00-00_2"]
    assert all(len(list(r.glob("checkpoints/last.ckpt"))) == 1 and (r / ".hydra" / "config.yaml").is_file() for r in runs)


RACE = """
import sys, time, torch
import ddpm_lit.evaluation.classifier as classifier
from ddpm_lit.evaluation.features import cached

def note(what):
    with open(sys.argv[3], "a") as f:
        f.write(what + "\\n")

def compute():
    note("computed")
    time.sleep(1.5)  # long enough for the other process to arrive
    return {"x": torch.arange(5)}

train = classifier.train_classifier
def counted(*args, **kwargs):
    note("trained")
    return train(*args, **kwargs)
classifier.train_classifier = counted

value = cached(sys.argv[1], "stats", "key", compute)["x"].sum().item()
model = classifier.load_or_train(sys.argv[2], epochs=1, download=False, check_md5=False)
print(value, sum(float(p.sum()) for p in model.state_dict().values()))
"""


def test_two_processes_needing_the_classifier_and_a_cache_entry_make_each_once(synthetic_mnist_dir: Path,
                                                                               tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    processes = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path / "cache"), str(synthetic_mnist_dir),
                                   str(notes)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err[-2000:] for _, err in outputs]
    assert sorted(notes.read_text().split()) == ["computed", "trained"]  # each made once, by one of them
    assert outputs[0][0] == outputs[1][0]  # and both got the same value and weights
    assert not [p for p in tmp_path.rglob("*.part")]


# ---- NaN and inf -------------------------------------------------------------------------------
class PoisonBatch(L.Callback):
    """Fill the images of the batch at optimizer step ``step`` with ``value`` (NaN, inf)."""

    def __init__(self, step: int, value: float = float("nan")) -> None:
        self.step, self.value = step, value

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            batch[0].fill_(self.value)


NAN_BASE = [*TINY, "logger=csv", "trainer.limit_val_batches=1", "data.check_md5=false", "final_samples.num=0",
            "trainer.max_epochs=-1", "trainer.log_every_n_steps=1"]


def all_finite(ckpt: Path) -> bool:
    return not nonfinite_weights(torch.load(ckpt, map_location="cpu", weights_only=True))


def test_a_nan_loss_stops_the_run_at_its_step_and_keeps_every_checkpoint_finite(synthetic_mnist_dir: Path,
                                                                                 tmp_path: Path) -> None:
    cfg = compose_train_cfg([*NAN_BASE, "trainer.max_steps=14"], tmp_path, synthetic_mnist_dir)
    with pytest.raises(TrainingDiverged) as error:
        train(cfg, extra_callbacks=[PoisonBatch(step=10)])
    message = str(error.value)
    assert message.startswith("non-finite loss nan at step 10 (epoch 1), timesteps in the batch [")
    assert f"the last good checkpoint is {tmp_path / 'checkpoints' / 'last.ckpt'}" in message
    ckpts = {p.name: torch.load(p, map_location="cpu", weights_only=True) for p in (tmp_path / "checkpoints").glob("*.ckpt")}
    assert ckpts["last.ckpt"]["global_step"] == 8 and ckpts["on_exception.ckpt"]["global_step"] == 10
    assert all(not nonfinite_weights(c) for c in ckpts.values())  # the EMA (state_dict) and the raw weights
    assert not list((tmp_path / "checkpoints").glob(".*"))


def test_skip_drops_the_poisoned_step_and_goes_on(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    cfg = compose_train_cfg([*NAN_BASE, "trainer.max_steps=14", "callbacks.nonfinite.action=skip"], tmp_path,
                            synthetic_mnist_dir)
    metrics = train(cfg, extra_callbacks=[PoisonBatch(step=10, value=float("inf"))])
    assert metrics["global_step"] == 14 and metrics["train/skipped_steps"] == 1
    assert all(all_finite(p) for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/loss"])


def test_the_checkpoint_writer_refuses_nan_weights_and_keeps_the_good_file(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    with pytest.raises(TrainingDiverged, match=r"not writing .*last.ckpt: its weights hold NaN or inf \(state_dict.w\)"):
        io.save_checkpoint({"state_dict": {"w": torch.tensor([1.0, float("nan"), 0.0])}, "global_step": 2}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# ---- full disk, read-only outputs --------------------------------------------------------------
@pytest.fixture()
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs (skipped where mounting needs rights the tests lack)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def every_writer(where: Path, size: int) -> dict[str, Callable[[], object]]:
    """Each kind of file a run writes, with ``size`` setting how big."""
    import matplotlib.pyplot as plt

    from ddpm_lit.evaluation.features import cached
    from ddpm_lit.generation.files import save_grid
    from ddpm_lit.io import write_text
    from ddpm_lit.reporting.figures import save_figure

    def figure() -> object:
        fig, ax = plt.subplots()
        ax.imshow(torch.rand(size, size).numpy())
        return save_figure(fig, where / "figures" / "loss_curves.png")

    return {
        "last.ckpt": lambda: AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.rand(size * 100)}},
                                                                   where / "checkpoints" / "last.ckpt"),
        "final.png": lambda: save_grid(torch.rand(size, 1, 28, 28), where / "samples" / "final.png"),
        "loss_curves.png": figure,
        "metrics.json": lambda: write_text(where / "metrics.json", '{"val/loss": 0.1}' + " " * size),
        "features": lambda: cached(where / "cache", "features", f"key{size}", lambda: torch.rand(size * 100)),
    }


def test_a_full_disk_fails_each_write_in_one_line_keeping_the_previous_files(small_disk: Path) -> None:
    for write in every_writer(small_disk, 8).values():
        write()
    before = {p: p.read_bytes() for p in small_disk.rglob("*") if p.is_file() and not p.name.startswith(".")}
    fill(small_disk)
    for name, write in every_writer(small_disk, 64).items():
        with pytest.raises(OutputError) as error:
            write()
        message = str(error.value)
        assert "the disk is full" in message and "\n" not in message, (name, message)
    after = {p: p.read_bytes() for p in small_disk.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert {p: after[p] for p in before} == before  # every previous file whole
    assert not list(small_disk.rglob("*.part"))  # and no staging file left

    (small_disk / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(OutputError, match="metrics.json: the file system is read-only"):
        every_writer(small_disk, 8)["metrics.json"]()


def test_an_injected_enospc_fails_in_one_line_and_keeps_the_file(tmp_path: Path, monkeypatch) -> None:
    writers = every_writer(tmp_path, 8)
    writers["last.ckpt"]()
    before = (tmp_path / "checkpoints" / "last.ckpt").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OutputError, match=r"last.ckpt: the disk is full \(No space left on device\); the previous"):
        writers["last.ckpt"]()
    assert (tmp_path / "checkpoints" / "last.ckpt").read_bytes() == before
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.ckpt"]


def test_training_on_a_full_disk_ends_in_one_line_with_loadable_checkpoints(synthetic_mnist_dir: Path,
                                                                             small_disk: Path) -> None:
    cfg = compose_train_cfg([*NAN_BASE, "trainer.max_steps=40"], small_disk / "run", synthetic_mnist_dir)
    with pytest.raises(OutputError, match="the disk is full"):
        train(cfg)
    for ckpt in (small_disk / "run" / "checkpoints").glob("*.ckpt"):
        torch.load(ckpt, weights_only=True)
    assert not list(small_disk.rglob("*.part"))


# ---- determinism ------------------------------------------------------------------------------
def test_the_same_seed_and_config_give_the_same_losses_weights_and_samples(synthetic_mnist_dir: Path,
                                                                           tmp_path: Path) -> None:
    base = [*EXACT, "logger=csv", "trainer.max_steps=12", "final_samples.num=6"]
    for name in ("a", "b"):
        train(compose_train_cfg(base, tmp_path / name, synthetic_mnist_dir))
    losses = [[(r["step"], r["train/loss"]) for r in rows(tmp_path / n / "csv") if r.get("train/loss")] for n in "ab"]
    assert losses[0] == losses[1] and len(losses[0]) == 12
    assert_same_weights(tmp_path / "a" / "checkpoints" / "last.ckpt", tmp_path / "b" / "checkpoints" / "last.ckpt")
    samples = [np.load(tmp_path / n / "samples" / "final.npz")["arr_0"] for n in "ab"]
    assert np.array_equal(samples[0], samples[1])
    other = compose_train_cfg([*base, "seed=4"], tmp_path / "c", synthetic_mnist_dir)
    train(other)
    assert not np.array_equal(samples[0], np.load(tmp_path / "c" / "samples" / "final.npz")["arr_0"])


def test_ddpm_samples_depend_on_the_batch_size_one_pass_models_do_not() -> None:
    # What docs/usage.md says of sample.py: the same seed and batch size give the same images; the
    # reverse chain draws each step's noise per batch, so another batch size gives other images.
    model = tiny_ddpm(20).eval()

    def draw(batch_size: int) -> torch.Tensor:
        return model.sample(6, generator=torch.Generator().manual_seed(0), steps=5, batch_size=batch_size)

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(6))


def test_a_run_without_validation_still_writes_its_checkpoint(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    cfg = compose_train_cfg([*TINY, "logger=csv", "trainer.max_epochs=1", "trainer.limit_val_batches=0",
                             "data.check_md5=false", "final_samples.num=0", "callbacks.model_checkpoint=null"],
                            tmp_path, synthetic_mnist_dir)
    metrics = train(cfg)
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == metrics["global_step"] > 0


class _NanGradient(L.LightningModule):
    """A finite loss (0) whose gradient is NaN at step ``at``: d/dw sqrt(0·w) = 0/0."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.w, self.at = torch.nn.Parameter(torch.ones(3)), at

    def training_step(self, batch, batch_idx):
        if self.global_step == self.at:
            return (self.w * 0).sqrt().sum()
        return (self.w ** 2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_nan_gradient_under_a_finite_loss_is_caught_too() -> None:
    from ddpm_lit.training.guards import NonFiniteGuard

    module = _NanGradient(at=2)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(8, 1)), batch_size=1)
    trainer = L.Trainer(max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[NonFiniteGuard()])
    with pytest.raises(TrainingDiverged, match=r"non-finite gradient in 1 tensor\(s\) \(loss 0.0\) at step 2"):
        trainer.fit(module, data)
    assert torch.isfinite(module.w).all() and torch.allclose(module.w, torch.full((3,), 0.8 ** 2))
