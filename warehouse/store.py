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

from warehouse.exceptions import WarehouseBusyError, WarehouseNotFoundError, WarehouseNotWritableError
from warehouse.audit import fold_journal
from warehouse.migrations import migrate
from warehouse.runs import discard_pending_runs, fold_pending_runs


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def working_path(path: Path) -> Path:
    return path.with_name(path.name + ".building")


@contextlib.contextmanager
def writer_lock(path: Path, *, timeout_s: float = 0.0, poll_s: float = 0.5, run_id: str | None = None,
                flow: str | None = None) -> Iterator[None]:
    """Exclusive advisory lock on the warehouse; raises WarehouseBusyError after timeout.

    While held, the lock file names the holder (`pid=… run=… flow=… since=…`); a clean
    release empties it. Text left in it when the lock is acquired means the previous
    holder was killed: its run is recorded as `interrupted` (`warehouse.runs`). A
    "busy" message names the process that really holds the lock (from /proc/locks),
    and says so when the text names a process that no longer exists."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(_lock_path(path), "a+")
    except OSError as exc:
        raise WarehouseNotWritableError(path=str(path), detail=exc.strerror or type(exc).__name__) from None
    deadline = time.monotonic() + timeout_s
    locked = False
    try:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    raise WarehouseBusyError(path=str(path), holder=describe_holder(fh.read().strip(),
                                                                                    _lock_path(path))) from None
                time.sleep(poll_s)
        fh.seek(0)
        left = fh.read().strip()
        if left:
            from warehouse.runs import record_interrupted_run

            record_interrupted_run(path, left)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid={os.getpid()} run={run_id or '-'} flow={flow or '-'} "
                 f"since={time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        fh.flush()
        yield
    finally:
        if locked:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()  # a clean release leaves no holder text behind
                fh.flush()
        with contextlib.suppress(OSError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_holders(lock_file: Path) -> list[int]:
    """Processes holding a flock on `lock_file`, from /proc/locks (Linux; else [])."""
    try:
        st = os.stat(lock_file)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    inode = f":{st.st_ino} "
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and (parts[5] + " ").endswith(inode):
            with contextlib.suppress(ValueError):
                out.append(int(parts[4]))
    return out


def describe_holder(text: str, lock_file: Path) -> str:
    """Who holds the lock, in words: the lock file's text when its process is alive;
    otherwise the real holder from /proc/locks, noting the stale text."""
    import re

    m = re.search(r"pid=(\d+)", text)
    holders = [p for p in _lock_holders(lock_file) if p != os.getpid()]
    if m and _pid_alive(int(m.group(1))) and (not holders or int(m.group(1)) in holders):
        return text
    real = "，".join(f"pid={p} {_cmdline(p)}".strip() for p in holders) or "未知进程"
    if m:
        return f"锁文件记录的进程 pid={m.group(1)} 已不存在（过期记录）；实际持有者：{real}"
    return f"持有者：{real}"


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(raw.decode("utf-8", "replace").split("\0")).strip()[:120]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def transaction(path: str | os.PathLike[str], *, lock_timeout_s: float = 0.0,
                fail_before_publish: bool = False, run_id: str | None = None,
                flow: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writable connection to a working copy, published atomically on success.

    `run_id`/`flow` name the holder in the lock file (an interrupted run is recorded
    under them). `fail_before_publish` is a test hook: raise after loading, before the rename."""
    path = Path(path)
    with writer_lock(path, timeout_s=lock_timeout_s, run_id=run_id, flow=flow):
        work = working_path(path)
        for stale in (work, work.with_name(work.name + ".wal")):
            stale.unlink(missing_ok=True)
        try:
            if path.exists():
                shutil.copy2(path, work)
            con = duckdb.connect(str(work))
        except (OSError, duckdb.IOException) as exc:
            work.unlink(missing_ok=True)
            raise WarehouseNotWritableError(path=str(path), detail=getattr(exc, "strerror", None) or str(exc)
                                            ) from None
        try:
            migrate(con)
            con.execute("BEGIN TRANSACTION")
            fold_pending_runs(con, path)
            fold_journal(con, path)  # audit entries written since the last publish (warehouse.audit)
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
