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

The same process removes what a publish made garbage (`retire`, `retire_on_replace`):
removing a 0.9 GB file frees its blocks, 0.2 s on ext4, which a writer paid under the lock
for every snapshot the history let go (`warehouse.history.prune`: about one per publish
once the history is full), every stale spare, and, without a history, the file each
publish replaced. Such a file is renamed (or, when it is the published file about to be
replaced, hard-linked) to `<name>.retired-<…>` beside it, and removed after the command;
a retired file left by a crash is removed by the next one (`sweep`).

Only `os` and the standard library: the copier starts in a few milliseconds."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path

from warehouse.readahead import copy_file, fsync_dir, pid_alive, prefetch

_SPARE = ".spare-"
_TEMP = ".spare-tmp-"
_RETIRED = ".retired-"
#: files published by the current process since the last `launch` (`want`)
_PENDING: list[Path] = []
#: folders where the current process retired files since the last `launch` (`retire`)
_SWEEP: list[Path] = []
_PENDING_LOCK = threading.Lock()
_RETIRED_SEQ = itertools.count()


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
    temporary files of copiers no longer running, are retired (removed after the command)."""
    path, work = Path(path), Path(work)
    try:
        current = spare_path(path, identity(path))
    except FileNotFoundError:
        current = None
    adopted = False
    for other in path.parent.glob(f"{path.name}{_SPARE}*"):
        if _RETIRED in other.name:
            continue  # retired already: the next sweep removes it
        if other.name.startswith(path.name + _TEMP):
            pid = other.name[len(path.name + _TEMP):]
            if pid.isdigit() and pid_alive(int(pid)):
                continue
        elif other == current:
            with contextlib.suppress(FileNotFoundError):
                os.replace(other, work)
                adopted = True
            continue
        retire(other)
    return adopted


def _retired_name(path: Path) -> Path:
    return path.with_name(f"{path.name}{_RETIRED}{os.getpid()}-{next(_RETIRED_SEQ)}")


def _sweep(folder: str | os.PathLike[str]) -> None:
    with _PENDING_LOCK:
        _SWEEP.append(Path(os.path.abspath(folder)))


def sweep_later(folder: str | os.PathLike[str]) -> None:
    """Have the process `launch` starts next remove the retired files of `folder`, if it
    holds any now (one listing of the folder: a crash's leftovers)."""
    with contextlib.suppress(OSError):
        if next(Path(folder).glob(f"*{_RETIRED}*"), None) is not None:
            _sweep(folder)


def retire(path: str | os.PathLike[str]) -> Path | None:
    """Take the file at `path` away now and remove it later, off the clock: renamed to
    `<name>.retired-<pid>-<n>` beside it (no block is freed by a rename), removed by the
    process `launch` starts next. Its new name, or None when it was gone already. A
    reader that has it open keeps reading it, as with a removal."""
    path = Path(path)
    target = _retired_name(path)
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    _sweep(path.parent)
    return target


def retire_on_replace(path: str | os.PathLike[str]) -> Path | None:
    """Before a file is renamed over the published file at `path`: hard-link the published
    file to a retired name, so that the rename frees none of its blocks (removed later,
    like `retire`'s). Nothing when another name holds it already (the history's snapshot:
    its blocks stay anyway), when there is no file, or where the file system has no hard
    links (the rename then frees them, as before)."""
    path = Path(path)
    try:
        if os.stat(path).st_nlink > 1:
            return None
        target = _retired_name(path)
        os.link(path, target)
    except OSError:
        return None
    _sweep(path.parent)
    return target


def sweep(folder: str | os.PathLike[str]) -> int:
    """Remove every retired file in `folder` (any process's: a retired file is read by
    no one who had not opened it before); how many."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in Path(folder).glob(f"*{_RETIRED}*"):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
    return removed


def prefetch_for_write(path: str | os.PathLike[str]) -> None:
    """Start reading what a write of the file at `path` will read first: its spare when
    there is one for the file published now, else the file (copied whole)."""
    with contextlib.suppress(OSError):
        spare = spare_path(path, identity(path))
        if spare.exists():
            prefetch(spare)
            return
    prefetch(path)


def publish(work: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Rename the finished working copy `work` over the published file at `path` and make
    the rename durable (its folder fsynced: the analyst file may live in a folder of its
    own): the replaced file's blocks are freed after the command (`retire_on_replace`),
    and the next `launch` makes the new file's spare (`want`)."""
    retire_on_replace(path)
    os.replace(work, path)
    fsync_dir(Path(path).parent)
    want(path)


def want(path: str | os.PathLike[str]) -> None:
    """Note that the file at `path` was just published: `launch` makes its spare, and
    removes the retired files of its folder (a crash's leftovers too)."""
    with _PENDING_LOCK:
        _PENDING.append(Path(os.path.abspath(path)))  # next to the name `adopt` looks beside
    sweep_later(Path(path).parent)


#: environment variable: "1" makes `launch` copy in the calling process before it returns
#: (the test suite sets it: a folder compared before and after a step must not gain a spare
#: meanwhile, and every write after the first then takes the spare path)
IN_PROCESS_ENV = "RESIDENTS_SPARES_IN_PROCESS"


def launch(enabled: bool = True) -> subprocess.Popen[bytes] | None:
    """Start one detached process making the spares of the files `want` noted (when
    `enabled`) and removing the files retired since the last launch, with any retired file
    left in their folders (returned, for tests to wait on); nothing when there is nothing
    to do. The process outlives a command that exits; its failure only means the next
    write copies, and the next launch in that folder removes what is left."""
    with _PENDING_LOCK:
        pending = list(dict.fromkeys(_PENDING)) if enabled else []
        folders = list(dict.fromkeys(_SWEEP))
        _PENDING.clear()
        _SWEEP.clear()
    if not pending and not folders:
        return None
    args = [str(p) for p in pending] + [arg for folder in folders for arg in ("--sweep", str(folder))]
    if os.environ.get(IN_PROCESS_ENV) == "1":
        main(args)
        return None
    args = [sys.executable, "-m", "warehouse.standby", *args]
    with contextlib.suppress(OSError):
        return subprocess.Popen(args, cwd=str(Path(__file__).resolve().parents[1]), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return None


def main(args: list[str]) -> int:
    """`python -m warehouse.standby [PATH ...] [--sweep FOLDER ...]`: make each file's
    spare, then remove the retired files of each folder."""
    failed = 0
    paths: list[str] = []
    folders: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg == "--sweep":
            folder = next(rest, None)
            if folder is not None:
                folders.append(folder)
        else:
            paths.append(arg)
    for path in paths:
        try:
            make(path)
        except OSError:
            failed += 1
    for folder in folders:
        sweep(folder)
    return 1 if failed else 0


if __name__ == "__main__":
    with contextlib.suppress(OSError):
        os.nice(10)  # after the command, beside whatever runs next: the lowest claim on the cores
    sys.exit(main(sys.argv[1:]))
