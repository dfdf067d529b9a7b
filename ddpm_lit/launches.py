"""Which process of a multi-process launch this one is, known before Lightning starts.

``torchrun`` and SLURM's ``srun`` start every rank themselves, each running the whole command
from the top: Hydra composes the config and names the run dir in each of them, long before a
process group exists. What the ranks must agree on by then (the run dir) is agreed here:

- **torchrun** (``--nnodes N --nproc-per-node M``, any rendezvous backend that shares its
  store): rank 0 names the run dir and puts it in the store that torchrun's agents already
  serve to their workers (``TORCHELASTIC_USE_AGENT_STORE``; a fresh one for each restart); the
  other ranks read it from there.
- **SLURM** (``srun`` with several tasks): every task derives the same name from the job and
  its step, ``slurm-<job>.<step>``; a requeued job gets the same name back, so it continues in
  its own run dir.

The variables are read as Lightning's ``TorchElasticEnvironment.detect`` (torch's
``is_torchelastic_launched``) and ``SLURMEnvironment.detect`` read them, in the order Lightning
tries them (a test holds the two to the same answers), without importing Lightning: the
resolvers that name the run dir run before it is needed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from ddpm_lit.errors import ConfigError

# SLURMEnvironment: a job run from an interactive allocation's shell is not managed by SLURM
INTERACTIVE_JOB_NAMES = ("bash", "interactive")
# How long a rank waits for rank 0 to name the run dir (rank 0 imports, composes and checks first)
AGREE_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Launch:
    """A launch by torchrun or SLURM: who started this process, its global rank and the world size."""

    by: Literal["torchrun", "slurm"]
    rank: int
    world_size: int

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size} ({self.by})"


def external_launch(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The torchrun or SLURM launch this process belongs to; None when it was started otherwise
    (a plain command, or a rank Lightning itself started by rerunning the command line)."""
    env = os.environ if environ is None else environ
    # Lightning's order: torchrun's variables first (torchrun inside a SLURM job counts as torchrun's)
    if "TORCHELASTIC_RUN_ID" in env:
        return Launch("torchrun", int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")))
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in INTERACTIVE_JOB_NAMES:
        return Launch("slurm", int(env.get("SLURM_PROCID", "0")), int(env["SLURM_NTASKS"]))
    return None


def is_rank_zero(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is the one that writes a run's files: rank 0 of a torchrun or SLURM
    launch, or the process a user started (Lightning's own ranks 1… have ``LOCAL_RANK`` or
    ``NODE_RANK`` set above 0)."""
    env = os.environ if environ is None else environ
    launch = external_launch(env)
    if launch is not None:
        return launch.rank == 0
    return int(env.get("LOCAL_RANK", "0")) == 0 and int(env.get("NODE_RANK", "0")) == 0


def slurm_step_name(environ: Mapping[str, str] | None = None) -> str | None:
    """``slurm-<job>.<step>`` (``<array job>_<task>`` for an array job's task) in a job step that
    SLURM manages, the run dir name its tasks share and a requeued job's step gets back; None
    outside SLURM."""
    env = os.environ if environ is None else environ
    launch = external_launch(env)
    if launch is None or launch.by != "slurm":
        return None
    job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '0')}" if "SLURM_ARRAY_JOB_ID" in env
           else env.get("SLURM_JOB_ID", "0"))
    return f"slurm-{job}.{env.get('SLURM_STEP_ID', '0')}"


_AGREED: dict[str, str] = {}


def agreed(name: str, make: Callable[[], str], timeout: float = AGREE_TIMEOUT_SECONDS) -> str:
    """``make()`` in rank 0 of a torchrun launch, and the same string in its other ranks, read
    from torchrun's store; ``make()`` alone anywhere else. A rank of a torchrun launch asking
    again gets the same answer."""
    launch = external_launch()
    if launch is None or launch.by != "torchrun" or launch.world_size < 2:
        return make()
    if name not in _AGREED:  # rank 0 sets it once; the others read it once
        _AGREED[name] = _agree_over_torchrun(name, make, launch, timeout)
    return _AGREED[name]


def _torchrun_store(timeout: float) -> Any:
    """A client of the store torchrun's agents serve their workers (``TORCHELASTIC_USE_AGENT_STORE``),
    whose calls wait up to ``timeout`` seconds; None outside torchrun or where it shares none."""
    import torch.distributed as dist  # here: --help and the ranks outside torchrun never need it

    launch = external_launch()
    if launch is None or launch.by != "torchrun" or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                         timeout=timedelta(seconds=timeout))


def _agree_over_torchrun(name: str, make: Callable[[], str], launch: Launch, timeout: float) -> str:
    import torch.distributed as dist  # here: --help and the ranks outside torchrun never need it

    store = _torchrun_store(timeout)
    if store is None:
        raise ConfigError(f"{launch.describe()}: torchrun's rendezvous shares no store with its workers, so the ranks "
                          "cannot agree on a run dir; use --rdzv-backend c10d, or give them one with hydra.run.dir=...")
    key = f"ddpm_lit/{name}"
    if launch.rank == 0:
        value = make()
        store.set(key, value)
        return value
    try:
        return store.get(key).decode()  # waits until rank 0 has set it
    except dist.DistStoreError:
        raise ConfigError(f"{launch.describe()}: rank 0 did not name the {name.replace('_', ' ')} within "
                          f"{timeout:.0f} s (see rank 0's output for why)") from None


# What a collective call raises in a rank whose peer is gone: gloo's and NCCL's words for it
PEER_LOST_MARKERS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
                     "NCCL communicator was aborted", "remote process exited", "Socket Timeout",
                     "Timed out waiting", "Application timeout caused pair closure",
                     "Watchdog caught collective operation timeout")
ROLL_CALL_SECONDS = 5.0


def lost_a_peer(error: BaseException) -> bool:
    """Whether ``error`` is a collective call failing because another rank is gone (killed, or
    its node lost), not a failure of this rank's own."""
    return isinstance(error, RuntimeError) and any(m in str(error) for m in PEER_LOST_MARKERS)


def missing_ranks(rank: int, world_size: int, store: Any = None, wait: float = ROLL_CALL_SECONDS) -> list[int] | None:
    """After a lost peer: the ranks that do not answer a roll call within ``wait`` seconds
    (every live rank answers it as it fails), held in torchrun's store under torchrun, else in
    ``store`` (the process group's, which rank 0 hosts); None where it cannot be held (no store,
    or the store went with its node)."""
    try:
        torchrun = _torchrun_store(wait)
        store = torchrun if torchrun is not None else store
        if store is None:
            return None
        store.set(f"ddpm_lit/roll_call/{rank}", "here")
        keys = [f"ddpm_lit/roll_call/{r}" for r in range(world_size)]
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not store.check(keys):
            time.sleep(0.1)
        return [r for r, key in enumerate(keys) if not store.check([key])]
    except (RuntimeError, OSError, ValueError):  # torch's DistError is a RuntimeError
        return None
