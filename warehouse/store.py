"""Opening the warehouse: one writer at a time, atomic publish, read-only readers.

A sync never writes the published file. It takes an exclusive lock
(`<warehouse>.lock`), copies the published file to a working copy
(`<warehouse>.building`), loads into the copy, checkpoints it and atomically renames
it over the published file (`os.replace`). So:

* a crash or kill at any point leaves the published file exactly as it was (the
  stale working copy is discarded by the next sync);
* analysts who hold the published file open read-only are never blocked and never
  see a half-loaded state: they keep the old version until they reconnect;
* a second sync waits for the lock (up to `lock_timeout_s`) and then exits with a
  clear message, never corrupting anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from warehouse.exceptions import WarehouseBusyError, WarehouseNotFoundError
from warehouse.migrations import migrate
from warehouse.runs import discard_pending_runs, fold_pending_runs


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def working_path(path: Path) -> Path:
    return path.with_name(path.name + ".building")


@contextlib.contextmanager
def writer_lock(path: Path, *, timeout_s: float = 0.0, poll_s: float = 0.5) -> Iterator[None]:
    """Exclusive advisory lock on the warehouse; raises WarehouseBusyError after timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(_lock_path(path), "a+")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip()
                    raise WarehouseBusyError(path=str(path), holder=holder or None) from None
                time.sleep(poll_s)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid={os.getpid()} since={time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def transaction(path: str | os.PathLike[str], *, lock_timeout_s: float = 0.0,
                fail_before_publish: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writable connection to a working copy, published atomically on success.

    `fail_before_publish` is a test hook: raise after loading, before the rename."""
    path = Path(path)
    with writer_lock(path, timeout_s=lock_timeout_s):
        work = working_path(path)
        for stale in (work, work.with_name(work.name + ".wal")):
            stale.unlink(missing_ok=True)
        if path.exists():
            shutil.copy2(path, work)
        con = duckdb.connect(str(work))
        try:
            migrate(con)
            con.execute("BEGIN TRANSACTION")
            fold_pending_runs(con, path)
            yield con
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
            if fail_before_publish:
                raise RuntimeError("injected failure before publish (test hook)")
        except BaseException:
            with contextlib.suppress(Exception):
                con.close()
            work.unlink(missing_ok=True)
            work.with_name(work.name + ".wal").unlink(missing_ok=True)
            raise
        con.close()
        with open(work, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(work, path)
        _fsync_dir(path.parent)
        discard_pending_runs(path)


def connect_read_only(path: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published warehouse (what analysts use)."""
    path = Path(path)
    if not path.exists():
        raise WarehouseNotFoundError(path=str(path))
    return duckdb.connect(str(path), read_only=True)


def initialise(path: str | os.PathLike[str]) -> None:
    """Create (or migrate) the warehouse without loading anything."""
    with transaction(path):
        pass
