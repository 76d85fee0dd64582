"""A spare working copy of each published file, made after the publish, off the clock.

A write never touches the published warehouse: it copies it to a working copy, loads into
the copy and renames the copy over it (`store.transaction`; the analyst file the same way,
`analyst.publisher`). A published file is never written again — readers hold it open, the
history keeps it under a hard link (`warehouse.history`) — and ext4 shares no extents
between files, so every publish costs one whole copy of the file: at 1M residents 675 MB,
0.3 s from the page cache when the disk keeps up, 2.1–2.4 s when the kernel must first
write back what the previous run left dirty (measured back to back with `cp`). That copy
followed the warehouse, not the change, and an officer's decision waited for it.

So after a publish a detached process (`launch`: `python -m warehouse.standby`) copies each
file just published to a spare (`<file>.spare-<identity>`: written under a temporary name,
fsynced, then renamed, so a named spare is always whole), while nobody waits. The next
writer, holding the writer lock, renames the spare into place as its working copy when its
name carries the identity of the file published now (device, inode, size, modification
time: `identity`), and copies as before when there is none (a write right after another,
before the spare was finished; a failed copy; `spare_working_copy = false`). A spare of a
file published since is stale: removed by that writer. The disk holds one more copy of each
file (beside the history's snapshots); it is owner-only like the working copy.

Only `os` and the standard library: the copier starts in a few milliseconds."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

from warehouse.readahead import copy_file, fsync_dir, pid_alive, prefetch

_SPARE = ".spare-"
_TEMP = ".spare-tmp-"
#: files published by the current process since the last `launch` (`want`)
_PENDING: list[Path] = []
_PENDING_LOCK = threading.Lock()


def identity(path: str | os.PathLike[str] | int) -> str:
    """The published file's identity: device, inode, size and modification time (a path,
    or an open descriptor). A file replaced by a publish, or written, gets another."""
    st = os.fstat(path) if isinstance(path, int) else os.stat(path)
    return f"{st.st_dev:x}-{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"


def spare_path(path: str | os.PathLike[str], ident: str) -> Path:
    path = Path(path)
    return path.with_name(f"{path.name}{_SPARE}{ident}")


def make(path: str | os.PathLike[str]) -> Path | None:
    """Copy the file at `path` to its spare (its mode: 0666 less the umask, which the copier
    inherits from the writer: owner-only when the writer's files are); the spare's path, or
    None when the file was replaced or written during the copy (no spare then)."""
    path = Path(path)
    with open(path, "rb") as src:
        ident = identity(src.fileno())
        target = spare_path(path, ident)
        if target.exists():
            return target
        temp = path.with_name(f"{path.name}{_TEMP}{os.getpid()}")
        try:
            copy_file(path, temp, source_fd=src.fileno())
            with open(temp, "rb+") as fh:
                os.fsync(fh.fileno())
            if identity(src.fileno()) != ident or identity(path) != ident:
                temp.unlink(missing_ok=True)  # published again meanwhile: this copy is of the old one
                return None
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    with contextlib.suppress(OSError):
        fsync_dir(path.parent)
    return target


def adopt(path: str | os.PathLike[str], work: str | os.PathLike[str]) -> bool:
    """Under the writer lock: rename the spare of the file published at `path` to `work`
    (True), else False (copy it). Spares of files published before this one, and the
    temporary files of copiers no longer running, are removed."""
    path, work = Path(path), Path(work)
    try:
        current = spare_path(path, identity(path))
    except FileNotFoundError:
        current = None
    adopted = False
    for other in path.parent.glob(f"{path.name}{_SPARE}*"):
        if other.name.startswith(path.name + _TEMP):
            pid = other.name[len(path.name + _TEMP):]
            if pid.isdigit() and pid_alive(int(pid)):
                continue
        elif other == current:
            with contextlib.suppress(FileNotFoundError):
                os.replace(other, work)
                adopted = True
            continue
        with contextlib.suppress(FileNotFoundError):
            other.unlink()
    return adopted


def prefetch_for_write(path: str | os.PathLike[str]) -> None:
    """Start reading what a write of the file at `path` will read first: its spare when
    there is one for the file published now, else the file (copied whole)."""
    with contextlib.suppress(OSError):
        spare = spare_path(path, identity(path))
        if spare.exists():
            prefetch(spare)
            return
    prefetch(path)


def want(path: str | os.PathLike[str]) -> None:
    """Note that the file at `path` was just published: `launch` makes its spare."""
    with _PENDING_LOCK:
        _PENDING.append(Path(os.path.abspath(path)))  # next to the name `adopt` looks beside


#: environment variable: "1" makes `launch` copy in the calling process before it returns
#: (the test suite sets it: a folder compared before and after a step must not gain a spare
#: meanwhile, and every write after the first then takes the spare path)
IN_PROCESS_ENV = "RESIDENTS_SPARES_IN_PROCESS"


def launch(enabled: bool = True) -> subprocess.Popen[bytes] | None:
    """Start one detached process making the spares of the files `want` noted (returned,
    for tests to wait on); nothing when none or not `enabled`. The process outlives a
    command that exits; its failure only means the next write copies."""
    with _PENDING_LOCK:
        pending = list(dict.fromkeys(_PENDING))
        _PENDING.clear()
    if not pending or not enabled:
        return None
    if os.environ.get(IN_PROCESS_ENV) == "1":
        main([str(p) for p in pending])
        return None
    args = [sys.executable, "-m", "warehouse.standby", *map(str, pending)]
    with contextlib.suppress(OSError):
        return subprocess.Popen(args, cwd=str(Path(__file__).resolve().parents[1]), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return None


def main(paths: list[str]) -> int:
    """`python -m warehouse.standby PATH [PATH ...]`: make each file's spare."""
    failed = 0
    for path in paths:
        try:
            make(path)
        except OSError:
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    with contextlib.suppress(OSError):
        os.nice(10)  # after the command, beside whatever runs next: the lowest claim on the cores
    sys.exit(main(sys.argv[1:]))
