"""Writing files so that a kill, a full disk or a parallel job never leaves half of one."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from filelock import FileLock, Timeout

from ddpm_lit.errors import OutputError

# Errors of the disk rather than of the program: said in one line, the previous file kept.
DISK_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
               errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", fsync: bool = False) -> Iterator[IO[Any]]:
    """Open a file to write ``path`` in one step: the bytes go to a hidden temporary file of
    its own beside ``path`` (``.<name>.<random>.part``), which replaces ``path`` with
    ``os.replace`` when the ``with`` block ends without an error and is removed when it raises.
    A reader finds the old file or the new one, never part of one, and parallel writers of the
    same path do not collide. A full disk, a read-only file system or a refused permission
    raises ``OutputError``, one line naming the file, with the previous file whole. ``fsync``:
    also force the bytes to disk before the swap (what a checkpoint needs to survive a power
    cut, not only a kill). ``mode``: ``"wb"`` or ``"w"``."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
        raise OutputError(f"cannot write {path}: {DISK_ERRORS[e.errno]} ({e.strerror}); {kept}. Free space or "
                          "write elsewhere (paths.log_dir=...)") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def remove_partial_files(folder: str | Path) -> list[Path]:
    """Delete the staging files (``.<name>.<random>.part``) that ``atomic_write`` left in
    ``folder`` and below it when its process was killed mid-write; returns them. Only for a
    folder no live process is writing into (a run dir when its run starts or resumes)."""
    stale = [p for p in Path(folder).rglob(".*.part") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_text(path: str | Path, text: str) -> Path:
    """``path.write_text(text)`` in one step (``atomic_write``): the old file or the new, never half."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


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
