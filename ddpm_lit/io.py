"""Writing files so that a kill, a full disk or a parallel job never leaves half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from filelock import FileLock, Timeout


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", fsync: bool = False) -> Iterator[IO[Any]]:
    """Open a file to write ``path`` in one step: the bytes go to a hidden temporary file of
    its own beside ``path`` (``.<name>.<random>.part``), which replaces ``path`` with
    ``os.replace`` when the ``with`` block ends without an error and is removed when it raises.
    A reader finds the old file or the new one, never part of one, and parallel writers of the
    same path do not collide. ``fsync``: also force the bytes to disk before the swap (what a
    checkpoint needs to survive a power cut, not only a kill). ``mode``: ``"wb"`` or ``"w"``."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def only_one_at_a_time(path: str | Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock of ``path`` (the file ``.<name>.lock`` beside it, ``filelock``'s ``fcntl``
    lock, released when the process dies) for the ``with`` block: two processes that would both
    create ``path`` (train the classifier, compute a cache entry) take turns, and the second finds
    the first's file. ``waiting`` is called once when another process holds the lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path.parent / f".{path.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if waiting is not None:
            waiting()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
