"""Past one machine: two "nodes" started by torchrun on this machine (one process each, gloo over
localhost), as a cluster starts them with `torchrun --nnodes 2 --rdzv-backend c10d`: one run dir,
one W&B run, the same weights on both ranks, kill -9 of both then a bit-exact resume, and a rank
that dies stopping the other in bounded time with one line."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY
from test_ddp import overridden
from test_faults import assert_same_weights

from ddpm_lit import launches
from ddpm_lit.errors import ConfigError

TESTS = Path(__file__).resolve().parent
NODES = 2
BATCH = 32
# 192 training images: 3 batches of 32 per rank and epoch; 80 to validate on
LIMIT_TRAIN, VAL_SIZE = 272, 80
STEPS_PER_EPOCH = (LIMIT_TRAIN - VAL_SIZE) // (NODES * BATCH)
ARGS = overridden(
    TINY, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", f"trainer.num_nodes={NODES}",
    "trainer.sync_batchnorm=false",  # SyncBatchNorm runs on GPUs only
    f"data.batch_size={BATCH}", f"data.limit_train={LIMIT_TRAIN}", f"data.val_size={VAL_SIZE}", "data.check_md5=false",
    "final_samples.num=0", "seed=3", "trainer.deterministic=true", "trainer.limit_val_batches=1",
    "trainer.max_epochs=-1", "trainer.log_every_n_steps=1",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


class Node:
    """One ``torchrun --nnodes 2 --nproc-per-node 1`` agent and its worker; output read as it comes."""

    def __init__(self, args: list[str], cwd: Path, port: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(TESTS), "PYTHONUNBUFFERED": "1"}
        for key in ("WANDB_MODE", "HYDRA_FULL_ERROR", "WANDB_SERVICE", "LOCAL_RANK", "RANK", "WORLD_SIZE",
                    "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
            env.pop(key, None)
        command = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={NODES}", "--nproc-per-node=1",
                   "--rdzv-backend=c10d", f"--rdzv-endpoint=localhost:{port}", "--max-restarts=0",
                   str(ROOT / "train.py"), *args]
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        self.chunks: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in iter(self.process.stdout.readline, ""):
            self.chunks.append(line)

    @property
    def output(self) -> str:
        return "".join(self.chunks)

    def worker(self) -> int | None:
        """The pid of the agent's worker (its train.py process), once started."""
        found = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()
        return int(found[0]) if found else None

    def finish(self, timeout: float = 300) -> str:
        self.process.wait(timeout=timeout)
        self.reader.join(timeout=30)
        return self.output


def worker_output(out: str) -> str:
    """What the worker wrote, without torchrun's own report of its failure that follows."""
    return out.split("Traceback (most recent call last):\n  File \"<frozen runpy>\"")[0]


def launch(args: list[str], cwd: Path) -> list[Node]:
    port = free_port()
    return [Node(args, cwd, port) for _ in range(NODES)]


def finish(nodes: list[Node], timeout: float = 300) -> list[str]:
    outputs = [node.finish(timeout) for node in nodes]
    for node, out in zip(nodes, outputs, strict=True):
        assert node.process.returncode == 0, worker_output(out)[-5000:]
    return outputs


def wait_for(nodes: list[Node], marker: str, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(marker in node.output for node in nodes):
            return
        assert all(node.process.poll() is None for node in nodes), nodes[0].output[-3000:]
        time.sleep(0.02)
    raise AssertionError(f"no {marker!r} within {timeout} s")


def run_args(tmp: Path, data: Path, steps: int, probe: Path, *extra: str) -> list[str]:
    return [*ARGS, f"trainer.max_steps={steps}", f"paths.data_dir={data}", f"paths.log_dir={tmp / 'logs'}",
            "+callbacks.ddp_probe._target_=probes.DDPProbe", f"+callbacks.ddp_probe.out={probe}", *extra]


def the_run_dir(tmp: Path) -> Path:
    (run,) = (tmp / "logs" / "train" / "runs").iterdir()
    return run


@pytest.mark.slow
def test_two_torchrun_nodes_killed_then_resumed_end_as_an_uninterrupted_run(synthetic_mnist_dir: Path,
                                                                          tmp_path: Path) -> None:
    steps = 5 * STEPS_PER_EPOCH
    once = tmp_path / "once"
    once.mkdir()
    outputs = finish(launch(run_args(once, synthetic_mnist_dir, steps, once / "probe", "logger=[wandb,csv]"), once))
    run = the_run_dir(once)
    # one run dir, written by rank 0: its config once, rank 1's log beside rank 0's
    assert sorted(p.name for p in once.iterdir()) == ["logs", "probe"]
    assert list(run.rglob(".hydra")) == [run / ".hydra"]
    assert (run / "train.log").is_file() and (run / "train_rank_1.log").is_file()
    assert "run dir:" in outputs[0] + outputs[1] and "cpu × 2" in outputs[0] + outputs[1]
    # one W&B run and one CSV history, the checkpoints once
    assert len(list(run.glob("wandb/offline-run-*"))) == 1 and [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_004.ckpt", "last.ckpt"]
    # the two ranks: one world, the same weights at every epoch's end and at the end
    ranks = [json.loads((once / "probe" / f"rank_{r}.json").read_text()) for r in range(NODES)]
    assert [(r["global_rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]
    assert ranks[0]["pid"] != ranks[1]["pid"]
    assert [e["raw_weights"] for e in ranks[0]["epochs"]] == [e["raw_weights"] for e in ranks[1]["epochs"]]
    assert ranks[0]["end_weights"] == ranks[1]["end_weights"]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == steps

    # kill -9 of both workers mid-epoch (epoch 2, after the last.ckpt of epoch 1), then resume
    killed = tmp_path / "killed"
    killed.mkdir()
    args = run_args(killed, synthetic_mnist_dir, steps, killed / "probe", "logger=[wandb,csv]")
    nodes = launch(args, killed)
    wait_for(nodes, "Epoch 2:")
    time.sleep(random.Random(0).uniform(0, 0.3))
    workers = [node.worker() for node in nodes]
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    for node in nodes:
        node.finish(timeout=60)
        assert node.process.returncode != 0
    resumed_from = torch.load(the_run_dir(killed) / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < resumed_from < steps
    finish(launch([*args, "ckpt_path=last"], killed))
    run_k = the_run_dir(killed)  # the resumed run went on in the same dir
    assert torch.load(run_k / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == steps
    assert_same_weights(run / "checkpoints" / "last.ckpt", run_k / "checkpoints" / "last.ckpt")
    ids = {p.name.rsplit("-", 1)[1] for p in run_k.glob("wandb/offline-run-*")}
    assert len(ids) == 1  # the W&B run went on too
    assert not list(run_k.rglob(".*.part"))


@pytest.mark.slow
def test_a_rank_that_dies_stops_the_other_in_one_line_naming_it(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    nodes = launch(run_args(tmp_path, synthetic_mnist_dir, 10_000, tmp_path / "probe", "logger=csv"), tmp_path)
    wait_for(nodes, "Epoch 2:")
    ranks = {}
    for node in nodes:
        pid = node.worker()
        environ = dict(line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in line)
        ranks[int(environ["RANK"])] = (node, pid)
    lost_node, lost_pid = ranks[1]
    os.kill(lost_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    survivor, _ = ranks[0]
    out = survivor.finish(timeout=120)
    stopped_after = time.monotonic() - killed_at
    lost_node.finish(timeout=60)
    assert survivor.process.returncode != 0
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out[-3000:]
    assert "rank 0 of 2 (torchrun): rank 1 stopped at step" in errors[0] and "ckpt_path=last" in errors[0]
    assert "Traceback" not in out.split("error:")[0].split("Epoch 2:")[-1]  # no collective call's traceback before it
    print(f"\nrank 0 stopped {stopped_after:.1f} s after rank 1 was killed: {errors[0]}")
    # the checkpoints it left load, none half-written
    run = the_run_dir(tmp_path)
    assert not list(run.rglob(".*.part"))
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        torch.load(ckpt, map_location="cpu", weights_only=True)


# ---- the run dir, agreed through torchrun's store (fast) ----------------------------------------
def torchrun_worker(monkeypatch: pytest.MonkeyPatch, rank: int, port: int) -> None:
    """The variables torchrun gives worker ``rank`` of two whose agent serves a store at ``port``."""
    for name, value in {"TORCHELASTIC_RUN_ID": "none", "RANK": rank, "GROUP_RANK": rank, "LOCAL_RANK": 0,
                        "LOCAL_WORLD_SIZE": 1, "WORLD_SIZE": 2, "MASTER_ADDR": "localhost", "MASTER_PORT": port,
                        "TORCHELASTIC_USE_AGENT_STORE": "True"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr(launches, "_AGREED", {})  # a fresh process


def test_torchrun_ranks_take_the_run_dir_rank_0_names_and_say_when_it_never_comes(monkeypatch, tmp_path) -> None:
    port = free_port()
    agent_store = torch.distributed.TCPStore("localhost", port, is_master=True, wait_for_workers=False)
    named = []
    torchrun_worker(monkeypatch, 0, port)
    assert launches.agreed("run_dir", lambda: (named.append(0), str(tmp_path / "a"))[1]) == str(tmp_path / "a")
    torchrun_worker(monkeypatch, 1, port)
    assert launches.agreed("run_dir", lambda: (named.append(1), str(tmp_path / "b"))[1]) == str(tmp_path / "a")
    assert named == [0]  # rank 1 named none of its own
    # a rank 0 that never names it (it failed before): rank 1 says so in one line, in bounded time
    other = free_port()
    server = torch.distributed.TCPStore("localhost", other, is_master=True, wait_for_workers=False)
    torchrun_worker(monkeypatch, 1, other)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"rank 1 of 2 \(torchrun\): rank 0 did not name the run dir within 1 s"):
        launches.agreed("run_dir", lambda: "never", timeout=1.0)
    assert time.monotonic() - started < 30
    del agent_store, server


def test_the_ranks_left_hold_a_roll_call_that_names_the_missing_one(monkeypatch) -> None:
    port = free_port()
    store = torch.distributed.TCPStore("localhost", port, is_master=True, wait_for_workers=False)
    torchrun_worker(monkeypatch, 0, port)
    assert launches.missing_ranks(0, 2, wait=0.5) == [1]
    store.set("ddpm_lit/roll_call/1", "here")  # rank 1 alive and failing too
    assert launches.missing_ranks(0, 2, wait=0.5) == []
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")  # not under torchrun: the store given (the process group's), if any
    assert launches.missing_ranks(0, 2, wait=0.5) is None
    other = torch.distributed.TCPStore("localhost", free_port(), is_master=True, wait_for_workers=False)
    other.set("ddpm_lit/roll_call/2", "here")
    assert launches.missing_ranks(1, 3, store=other, wait=0.5) == [0]
    assert launches.lost_a_peer(RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:9618"))
    assert not launches.lost_a_peer(RuntimeError("CUDA out of memory")) and not launches.lost_a_peer(ValueError("Broken pipe"))
