"""Training under SLURM, simulated: SLURM's variables as srun sets them, fake `srun` and `scontrol`
on PATH. Lightning's SLURMEnvironment takes rank and world size from them, SIGUSR1 (the time
limit coming) saves a checkpoint and requeues the job, and the requeued job continues in its own
run dir to the weights of a run never stopped. scripts/slurm_train.sbatch is run as sbatch runs it."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, compose_train_cfg
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from probes import SigtermAtStep
from test_ddp import overridden
from test_faults import EXACT, assert_same_weights

from ddpm_lit.apps.train import train
from ddpm_lit.launches import external_launch, is_rank_zero
from ddpm_lit.resolvers import _run_dir

TESTS = Path(__file__).resolve().parent
TEMPLATE = ROOT / "scripts" / "slurm_train.sbatch"
JOB = "4242"
LAUNCH_VARIABLES = ("SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_JOB_ID", "SLURM_JOB_NAME",
                    "SLURM_NNODES", "SLURM_NTASKS_PER_NODE", "SLURM_NODELIST", "SLURM_STEP_ID", "SLURM_ARRAY_JOB_ID",
                    "SLURM_ARRAY_TASK_ID", "TORCHELASTIC_RUN_ID", "RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE",
                    "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")


def slurm_task(procid: int = 0, ntasks: int = 1, per_node: int = 1, job: str = JOB, **extra: str) -> dict[str, str]:
    """What srun sets in task ``procid`` of a step of ``ntasks`` tasks, ``per_node`` to a node."""
    return {"SLURM_NTASKS": str(ntasks), "SLURM_PROCID": str(procid), "SLURM_LOCALID": str(procid % per_node),
            "SLURM_NODEID": str(procid // per_node), "SLURM_NNODES": str(max(ntasks // per_node, 1)),
            "SLURM_NTASKS_PER_NODE": str(per_node), "SLURM_JOB_ID": job, "SLURM_JOB_NAME": "ddpm-lit",
            "SLURM_NODELIST": "localhost", "SLURM_STEP_ID": "0", **extra}


def use_environment(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


TORCHRUN = {"TORCHELASTIC_RUN_ID": "none", "RANK": "1", "GROUP_RANK": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "WORLD_SIZE": "2"}


@pytest.mark.parametrize("variables, expected", [
    ({}, None),
    (slurm_task(3, ntasks=8, per_node=4), ("slurm", 3, 8)),
    ({**slurm_task(0, ntasks=2), "SLURM_JOB_NAME": "bash"}, None),  # an interactive allocation's shell
    ({**slurm_task(0, ntasks=2), "SLURM_JOB_NAME": "interactive"}, None),
    (TORCHRUN, ("torchrun", 1, 2)),
    ({k: v for k, v in TORCHRUN.items() if k != "TORCHELASTIC_RUN_ID"}, None),  # another launcher's RANK
    ({**TORCHRUN, **slurm_task(0, ntasks=1)}, ("torchrun", 1, 2)),  # torchrun inside a SLURM job: torchrun's ranks
    ({"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}, None),  # a rank Lightning started itself
])
def test_launches_are_told_apart_as_lightning_tells_them(monkeypatch, variables, expected) -> None:
    use_environment(monkeypatch, variables)
    launch = external_launch()
    assert (launch.by, launch.rank, launch.world_size) == expected if expected else launch is None
    # the same answer as Lightning's cluster environments, which pick the ranks in fit: the first of
    # them that detects its variables, in the order of its accelerator connector (torchrun's first)
    detected = [by for by, env in (("torchrun", TorchElasticEnvironment), ("slurm", SLURMEnvironment)) if env.detect()]
    assert (detected[0] if detected else None) == (expected[0] if expected else None)
    assert is_rank_zero() == (expected is None and variables.get("LOCAL_RANK", "0") == "0" or
                              expected is not None and expected[1] == 0)


def test_the_tasks_of_a_slurm_step_share_its_run_dir_and_a_requeued_job_gets_it_back(monkeypatch, tmp_path) -> None:
    runs = tmp_path / "runs"
    named = {}
    for procid in (1, 0):  # either may come first
        use_environment(monkeypatch, slurm_task(procid, ntasks=2))
        named[procid] = _run_dir(None, str(runs), "2026-12-05_12-00-00")
    assert named[0] == named[1] == str(runs / f"slurm-{JOB}.0") and Path(named[0]).is_dir()
    assert sorted(p.name for p in runs.iterdir()) == [f"slurm-{JOB}.0"]  # no dir of rank 1's own
    # an array job's task, and a single task continuing with ckpt_path=last: the step's own dir
    use_environment(monkeypatch, slurm_task(0, ntasks=1, SLURM_ARRAY_JOB_ID="77", SLURM_ARRAY_TASK_ID="3"))
    assert _run_dir("last", str(runs), "2026-12-05_12-00-00") == str(runs / "slurm-77_3.0")
    # a single task starting afresh: a dir of its own, as outside SLURM (two runs of one batch
    # script must not continue each other)
    assert _run_dir(None, str(runs), "2026-12-05_12-00-00") == str(runs / "2026-12-05_12-00-00")


@pytest.fixture()
def fake_scontrol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``scontrol`` on PATH that records its arguments and, as SLURM does to a job it requeues,
    sends the job's process a SIGTERM."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol_calls"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nkill -TERM $PPID\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_sigusr1_checkpoints_and_requeues_and_the_requeued_job_ends_as_one_never_stopped(
        synthetic_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_scontrol: Path) -> None:
    base = [*EXACT, "logger=csv", "trainer.max_steps=14"]
    train(compose_train_cfg(base, tmp_path / "once", synthetic_mnist_dir))

    use_environment(monkeypatch, slurm_task(0, ntasks=1))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # else Lightning sets it for the rest of the session
    run = tmp_path / "job"
    with pytest.raises(SystemExit) as stopped:  # SIGUSR1 after step 5 (mid-epoch 0), then scontrol's SIGTERM
        train(compose_train_cfg(base, run, synthetic_mnist_dir), extra_callbacks=[SigtermAtStep(5, "SIGUSR1")])
    assert stopped.value.code == 128 + 15
    assert fake_scontrol.read_text().split() == ["requeue", JOB]  # rank 0 requeued this job
    (hpc,) = run.glob("hpc_ckpt_*.ckpt")  # Lightning's checkpoint of the signal, in the run dir
    assert torch.load(hpc, map_location="cpu", weights_only=True)["global_step"] == 5

    # SLURM's SIGTERM stopped the run at the end of its step, where on_exception.ckpt was saved:
    # the requeued job continues from it (ckpt_path=last, the newest) and ends where the run
    # never stopped ends.
    fake_scontrol.unlink()
    signalled = run.with_name("job_killed_at_once")
    shutil.copytree(run, signalled)
    metrics = train(compose_train_cfg([*base, "ckpt_path=last"], run, synthetic_mnist_dir))
    assert metrics["global_step"] == 14 and not fake_scontrol.exists()  # no requeue without a signal
    assert_same_weights(tmp_path / "once" / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt")
    # A job SLURM killed before on_exception.ckpt was written continues from Lightning's checkpoint
    # of the signal, taken at the instant it came (mid-step: the run goes on, not bit for bit).
    (signalled / "checkpoints" / "on_exception.ckpt").unlink()
    metrics = train(compose_train_cfg([*base, "ckpt_path=last"], signalled, synthetic_mnist_dir))
    assert metrics["global_step"] == 14
    assert {p.name for p in (signalled / "checkpoints").iterdir()} >= {"last.ckpt"}


def run_template(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """scripts/slurm_train.sbatch run as sbatch runs it: bash, in the submission dir, with the job's variables."""
    environ = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES
               and k not in ("WANDB_MODE", "HYDRA_FULL_ERROR", "WANDB_SERVICE")}
    environ.update(env, PYTHON=sys.executable, PYTHONPATH=str(TESTS))
    return subprocess.run(["bash", str(TEMPLATE), *args], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=timeout)


def sbatch_defaults() -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", TEMPLATE.read_text(), flags=re.M))


def test_the_sbatch_template_runs_one_task_per_device_and_asks_for_the_requeue_signal(tmp_path: Path) -> None:
    flags = sbatch_defaults()
    assert flags["signal"] == "USR1@90" and "--requeue" in TEMPLATE.read_text()
    assert SLURMEnvironment().requeue_signal.name == "SIGUSR1"  # the signal Lightning requeues on
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "srun_args"}\n')
    (bin_dir / "srun").chmod(0o755)
    job = {"SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "4", "SLURM_NTASKS": "8", "SLURM_JOB_ID": JOB,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = run_template(["schedule=cosine", "trainer.max_epochs=3"], job, tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "srun_args").read_text().splitlines() == [
        "--kill-on-bad-exit=1", sys.executable, "-m", "ddpm_lit.train", "trainer=ddp", "trainer.num_nodes=2", "trainer.devices=4",
        "ckpt_path=last", "schedule=cosine", "trainer.max_epochs=3"]


def free_port_in(low: int, high: int) -> int:
    for port in random.sample(range(low, high), high - low):  # at random: another run of the suite may be looking too
        with socket.socket() as s:
            try:
                s.bind(("localhost", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}–{high}")


def two_task_step(tmp_path: Path, data: Path) -> tuple[dict[str, str], list[str]]:
    """A fake ``srun`` that starts the step's tasks as processes on this machine, each with the
    variables SLURM gives it (their pids in ``<tmp>/task_<i>``), the job's variables for a step
    of two tasks on two "nodes", and the tiny run's overrides."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # srun's --kill-on-bad-exit=1 as SLURM does it: the first task to fail is reported, and the
    # step's other tasks get SIGTERM, then SIGKILL after KillWait (5 s here)
    (bin_dir / "srun").write_text(f"""#!/usr/bin/env bash
kill_on_bad_exit=0
while [[ $1 == --* ]]; do [[ $1 == --kill-on-bad-exit=1 ]] && kill_on_bad_exit=1; shift; done
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$((i % SLURM_NTASKS_PER_NODE)) SLURM_NODEID=$((i / SLURM_NTASKS_PER_NODE)) \\
        SLURM_STEP_ID=0 "$@" &
    pids+=($!)
    echo $! > {tmp_path}/task_$i
done
status=0
killing=0
for ((n = 0; n < SLURM_NTASKS; n++)); do
    wait -n -p ended; code=$?
    if ((code != 0 && !killing)); then
        status=$code
        for i in "${{!pids[@]}}"; do [[ ${{pids[$i]}} == "$ended" ]] && task=$i; done
        if ((code > 128)); then how=Killed; else how="Exited with exit code $code"; fi
        echo "srun: error: localhost: task $task: $how" >&2
        if ((kill_on_bad_exit)); then
            killing=1
            kill -TERM "${{pids[@]}}" 2>/dev/null
            (sleep 5; kill -KILL "${{pids[@]}}" 2>/dev/null) & disown
        fi
    fi
done
exit $status
""")
    (bin_dir / "srun").chmod(0o755)
    # Lightning takes rank 0's port from the job id's last four digits (+ 15000)
    job = str(10_000 + free_port_in(15_000, 16_000) - 15_000)
    env = {"SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NTASKS": "2", "SLURM_JOB_ID": job,
           "SLURM_JOB_NAME": "ddpm-lit", "SLURM_NODELIST": "localhost", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    tiny = [a for a in TINY if a != "trainer=cpu"]  # the template's trainer=ddp
    args = overridden(tiny, "trainer.accelerator=cpu", "trainer.sync_batchnorm=false", "data.check_md5=false",
                      "logger=csv", "data.limit_train=272", "data.val_size=80", "final_samples.num=0",
                      f"paths.data_dir={data}", f"paths.log_dir={tmp_path / 'logs'}")
    return env, args


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])  # a task that dies; one that hangs, neither dead nor answering
def test_a_slurm_task_that_dies_or_hangs_stops_the_other_in_one_line_naming_it(
        synthetic_mnist_dir: Path, tmp_path: Path, fault: str) -> None:
    env, args = two_task_step(tmp_path, synthetic_mnist_dir)
    environ = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES
               and k not in ("WANDB_MODE", "HYDRA_FULL_ERROR", "WANDB_SERVICE")}
    environ.update(env, PYTHON=sys.executable, PYTHONPATH=str(TESTS), PYTHONUNBUFFERED="1")
    timeout = 15  # trainer.strategy.timeout: how long a collective call waits for a rank that does not answer
    step = subprocess.Popen(["bash", str(TEMPLATE), *args, "trainer.max_epochs=1000",
                             f"trainer.strategy.timeout.seconds={timeout}"], cwd=tmp_path, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    for line in iter(step.stdout.readline, ""):  # "\r" ends a line too: the progress bars
        lines.append(line)
        if "Epoch 2:" in line:
            break
    task_1 = int((tmp_path / "task_1").read_text())
    os.kill(task_1, signal.Signals[fault])
    started = time.monotonic()
    try:
        out = "".join(lines) + step.communicate(timeout=180)[0]  # rank 0 fails, and srun ends the step
    finally:
        if step.poll() is None:
            os.kill(task_1, signal.SIGKILL)
    print(f"\n{fault} of rank 1: the step ended {time.monotonic() - started:.1f} s later")
    assert step.returncode != 0
    errors = [line for line in out.splitlines() if line.startswith(("error:", "srun: error:"))]
    if fault == "SIGKILL":  # srun names the task that died and ends the step at once
        assert "srun: error: localhost: task 1: Killed" in out, out[-3000:]
    else:  # the rank left waits for it in a collective call up to the timeout, names it and fails; srun ends the step
        assert "srun: error: localhost: task 0: Exited with exit code 2" in out, errors  # (after a progress bar's \r)
        ours = [line for line in errors if line.startswith("error:")]
        assert len(ours) == 1 and ours[0].startswith("error: rank 0 of 2 (slurm): rank 1 stopped at step"), out[-3000:]
        assert "ckpt_path=last" in ours[0]
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert not list(run.rglob(".*.part"))
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        torch.load(ckpt, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_two_slurm_tasks_started_by_srun_train_as_one_run(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    env, args = two_task_step(tmp_path, synthetic_mnist_dir)
    job = env["SLURM_JOB_ID"]
    args += ["trainer.max_epochs=2", "+callbacks.ddp_probe._target_=probes.DDPProbe",
             f"+callbacks.ddp_probe.out={tmp_path / 'probe'}"]
    proc = run_template(args, env, tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert run.name == f"slurm-{job}.0"
    assert list(run.rglob(".hydra")) == [run / ".hydra"] and (run / "train_rank_1.log").is_file()
    ranks = [json.loads((tmp_path / "probe" / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert [(r["global_rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]
    assert ranks[0]["end_weights"] == ranks[1]["end_weights"]
    assert (run / "checkpoints" / "last.ckpt").is_file() and [p.name for p in (run / "csv").iterdir()] == ["version_0"]
