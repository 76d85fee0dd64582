"""The spare working copy made after a publish (`warehouse.standby`): whole or absent,
taken only for the file published now, owner-only, and a write that takes it publishes
what a write that copies would."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from warehouse import readahead, standby, store


def _payload(n: int) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(n))


def _spares(path: Path) -> list[str]:
    """The spares beside `path` (retired ones are gone for every reader of the folder)."""
    return sorted(p.name for p in path.parent.glob(path.name + ".spare-*") if ".retired-" not in p.name)


def _retired(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.retired-*"))


def test_make_writes_a_whole_owner_only_copy_named_by_the_published_files_identity(tmp_path):
    wh = tmp_path / "w.duckdb"
    wh.write_bytes(_payload(300_000))
    old = os.umask(0o077)
    try:
        spare = standby.make(wh)
    finally:
        os.umask(old)
    assert spare == standby.spare_path(wh, standby.identity(wh))
    assert spare.read_bytes() == wh.read_bytes()
    assert stat.S_IMODE(spare.stat().st_mode) == 0o600
    assert _spares(wh) == [spare.name]  # no temporary file left
    assert standby.make(wh) == spare     # already there: not copied again


def test_a_file_replaced_during_the_copy_gets_no_spare(tmp_path, monkeypatch):
    wh = tmp_path / "w.duckdb"
    wh.write_bytes(_payload(100_000))
    real = readahead.copy_file

    def copy_then_publish_again(src, dst, **kwargs):
        real(src, dst, **kwargs)
        newer = tmp_path / "newer"
        newer.write_bytes(_payload(100_001))
        os.replace(newer, wh)   # another write published meanwhile

    monkeypatch.setattr(standby, "copy_file", copy_then_publish_again)
    assert standby.make(wh) is None
    assert _spares(wh) == []


def test_adopt_takes_the_spare_of_the_file_published_now_and_removes_stale_ones(tmp_path):
    wh, work = tmp_path / "w.duckdb", tmp_path / "w.duckdb.building"
    wh.write_bytes(_payload(50_000))
    old_spare = standby.make(wh)
    newer = tmp_path / "newer"
    newer.write_bytes(_payload(60_000))
    os.replace(newer, wh)          # published since: the spare is of the old file
    assert not standby.adopt(wh, work)
    assert not work.exists() and not old_spare.exists()

    spare = standby.make(wh)
    assert standby.adopt(wh, work)
    assert work.read_bytes() == wh.read_bytes()
    assert not spare.exists() and _spares(wh) == []
    assert not standby.adopt(wh, tmp_path / "again")   # taken once


def test_adopt_leaves_a_running_copiers_temporary_file_and_removes_a_dead_ones(tmp_path):
    wh = tmp_path / "w.duckdb"
    wh.write_bytes(b"x" * 1000)
    running = wh.with_name(f"{wh.name}.spare-tmp-{os.getpid()}")
    dead = wh.with_name(f"{wh.name}.spare-tmp-{2 ** 22 + 12345}")   # above Linux's pid range
    running.write_bytes(b"half")
    dead.write_bytes(b"half")
    assert not standby.adopt(wh, tmp_path / "work")
    assert running.exists() and not dead.exists()


def test_the_detached_copier_makes_the_spares_of_the_files_published(tmp_path, monkeypatch):
    monkeypatch.delenv(standby.IN_PROCESS_ENV, raising=False)
    a, b = tmp_path / "w.duckdb", tmp_path / "w.analyst.duckdb"
    a.write_bytes(_payload(200_000))
    b.write_bytes(_payload(30_000))
    standby.want(a)
    standby.want(b)
    process = standby.launch(True)
    assert process is not None and process.wait(timeout=60) == 0
    for path in (a, b):
        assert standby.spare_path(path, standby.identity(path)).read_bytes() == path.read_bytes()
    standby.want(a)
    assert standby.launch(False) is None   # off: nothing started, and nothing left pending
    assert standby.launch(True) is None


def _rows(wh: Path) -> list[tuple]:
    con = store.connect_read_only(wh)
    try:
        return con.execute("SELECT * FROM core.note ORDER BY n").fetchall()
    finally:
        con.close()


def test_a_write_takes_the_spare_instead_of_copying_and_publishes_the_same(tmp_path, monkeypatch):
    wh = tmp_path / "w.duckdb"
    monkeypatch.setenv(standby.IN_PROCESS_ENV, "1")
    monkeypatch.setattr(store, "_SPARES", [True])
    with store.transaction(wh) as con:
        con.execute("CREATE TABLE core.note (n INTEGER)")
    assert _spares(wh) == [standby.spare_path(wh, standby.identity(wh)).name]

    def no_copy(*args, **kwargs):
        raise AssertionError("the write copied the warehouse although its spare was there")

    monkeypatch.setattr(store, "copy_file", no_copy)
    for n in (1, 2):
        with store.transaction(wh) as con:
            con.execute("INSERT INTO core.note VALUES (?)", [n])
    assert _rows(wh) == [(1,), (2,)]
    assert len(_spares(wh)) == 1   # the spare of the file published last, nothing else

    # a failed write consumed the spare and publishes nothing: the next write copies
    with pytest.raises(RuntimeError):
        with store.transaction(wh, fail_before_publish=True) as con:
            con.execute("INSERT INTO core.note VALUES (3)")
    monkeypatch.undo()
    monkeypatch.setattr(store, "_SPARES", [False])
    assert _spares(wh) == [] and _rows(wh) == [(1,), (2,)]
    with store.transaction(wh) as con:
        con.execute("INSERT INTO core.note VALUES (4)")
    assert _rows(wh) == [(1,), (2,), (4,)] and _spares(wh) == []   # spares off: none made


def test_a_file_written_in_place_after_its_spare_was_made_is_not_given_that_spare(tmp_path):
    """The name carries device, inode, size and modification time: a file written in place
    after its spare was made (same inode) has another identity."""
    wh, work = tmp_path / "w.duckdb", tmp_path / "w.duckdb.building"
    wh.write_bytes(_payload(10_000))
    standby.make(wh)
    time.sleep(0.01)
    with open(wh, "r+b") as fh:   # same inode, same size, written
        fh.write(b"changed")
    assert not standby.adopt(wh, work) and not work.exists()


@pytest.fixture
def nothing_pending():
    """The module's lists of what the next launch does start and end empty."""
    standby.launch(False)
    yield
    standby.launch(False)


def test_a_writer_retires_files_and_the_launch_removes_them_afterwards(tmp_path, monkeypatch, nothing_pending):
    """Removing a large file frees its blocks (0.2 s for 0.9 GB on ext4): under the writer
    lock a stale spare is only renamed; the process `launch` starts removes it."""
    monkeypatch.delenv(standby.IN_PROCESS_ENV, raising=False)
    wh, work = tmp_path / "w.duckdb", tmp_path / "w.duckdb.building"
    wh.write_bytes(_payload(50_000))
    stale = standby.make(wh)
    os.replace(_write(tmp_path / "newer", 60_000), wh)
    removed = []
    with monkeypatch.context() as patched:
        patched.setattr(Path, "unlink", lambda self, *a, **k: removed.append(self.name))
        assert not standby.adopt(wh, work)
    assert removed == [] and not stale.exists() and _spares(wh) == []
    assert [name.split(".retired-")[0] for name in _retired(tmp_path)] == [stale.name]
    process = standby.launch(False)          # spares off: the retired file is removed all the same
    assert process is not None and process.wait(timeout=60) == 0
    assert _retired(tmp_path) == []


def _write(path: Path, n: int) -> Path:
    path.write_bytes(_payload(n))
    return path


def test_the_file_a_publish_replaces_keeps_its_blocks_until_the_sweep(tmp_path, monkeypatch, nothing_pending):
    monkeypatch.setenv(standby.IN_PROCESS_ENV, "1")
    wh = _write(tmp_path / "w.duckdb", 40_000)
    old = wh.read_bytes()
    link = standby.retire_on_replace(wh)
    assert link is not None and os.path.samefile(link, wh)
    os.replace(_write(tmp_path / "new", 41_000), wh)
    assert link.read_bytes() == old                       # the rename freed nothing
    assert standby.retire_on_replace(tmp_path / "absent.duckdb") is None
    other = _write(tmp_path / "h.duckdb", 100)
    os.link(other, tmp_path / "h.snapshot")                # a second name (the history's) holds it anyway
    assert standby.retire_on_replace(other) is None
    standby.want(wh)
    standby.launch(False)
    assert not link.exists() and _retired(tmp_path) == []


def test_a_retired_file_left_by_a_crash_is_removed_by_the_next_publish_in_its_folder(tmp_path, monkeypatch,
                                                                                   nothing_pending):
    monkeypatch.setenv(standby.IN_PROCESS_ENV, "1")
    wh = _write(tmp_path / "w.duckdb", 1000)
    left = _write(tmp_path / "w.duckdb.retired-4194999-0", 1000)
    keep = _write(tmp_path / "notes.txt", 10)
    standby.want(wh)
    standby.launch(True)
    assert not left.exists() and keep.exists() and len(_spares(wh)) == 1


def test_the_history_retires_what_it_lets_go_and_a_publish_with_no_history_frees_nothing_under_the_lock(
        tmp_path, monkeypatch, nothing_pending):
    from datetime import datetime, timedelta, timezone

    from warehouse import history

    monkeypatch.delenv(standby.IN_PROCESS_ENV, raising=False)
    wh = _write(tmp_path / "w.duckdb", 1000)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    keep = history.Retention(2, 0, "UTC")
    for day in range(4):
        os.replace(_write(tmp_path / "new", 1000 + day), wh)
        history.record(wh, keep, now=start + timedelta(days=day))
    folder = history.history_dir(wh)
    assert len(history.snapshots(wh)) == 3 and len(_retired(folder)) == 1   # the first, renamed only
    process = standby.launch(False)
    assert process is not None and process.wait(timeout=60) == 0
    assert _retired(folder) == [] and len(history.snapshots(wh)) == 3

    # no history: the file replaced by a publish is removed after it, by the sweep
    monkeypatch.setenv(standby.IN_PROCESS_ENV, "1")
    db = tmp_path / "db.duckdb"
    with store.transaction(db) as con:
        con.execute("CREATE TABLE core.note (n INTEGER)")
    unlinked = []
    real_sweep = standby.sweep
    monkeypatch.setattr(standby, "sweep", lambda f: unlinked.append(real_sweep(f)) or unlinked[-1])
    with store.transaction(db) as con:
        con.execute("INSERT INTO core.note VALUES (1)")
    assert unlinked == [1] and _retired(tmp_path) == [] and _rows(db) == [(1,)]


def test_a_publish_makes_its_rename_durable_in_the_published_files_own_folder(tmp_path, monkeypatch, nothing_pending):
    """The folder of the file published is fsynced after the rename, whichever folder it
    is in: the analyst file may be configured into a folder of its own
    (`analyst_warehouse`), whose rename the warehouse folder's fsync does not cover."""
    synced: list[tuple[Path, bytes]] = []
    monkeypatch.setattr(standby, "fsync_dir", lambda d: synced.append((Path(d), (Path(d) / "a.duckdb").read_bytes())))
    folder = tmp_path / "analysts"
    folder.mkdir()
    target = _write(folder / "a.duckdb", 100)
    work = _write(tmp_path / "a.duckdb.building", 200)
    standby.publish(work, target)
    assert synced == [(folder, target.read_bytes())] and len(target.read_bytes()) == 200  # after the rename


def test_a_sync_fsyncs_the_folder_of_an_analyst_file_kept_apart(tmp_path, monkeypatch):
    import synth
    from flows import run_sync
    from settings import load_settings

    synced: list[Path] = []
    real = standby.fsync_dir
    monkeypatch.setattr(standby, "fsync_dir", lambda d: (synced.append(Path(d).resolve()), real(d)))
    inbox = tmp_path / "inbox"
    synth.generate(inbox, households=12, seed=3, noise="realistic", days=1)
    apart = tmp_path / "analysts" / "district.analyst.duckdb"
    apart.parent.mkdir()
    settings = load_settings(inbox=inbox, warehouse=tmp_path / "wh" / "warehouse.duckdb", lock_timeout_s=30,
                             analyst_warehouse=apart, spare_working_copy=False,  # no copier to fsync it
                             env={"RESIDENTS_PSEUDONYM_KEY": "k"})
    assert run_sync(settings).status == "succeeded"
    assert apart.exists() and apart.parent.resolve() in synced and (tmp_path / "wh").resolve() in synced
