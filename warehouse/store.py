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
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from warehouse import compaction, history, standby
from warehouse.exceptions import (WarehouseBusyError, WarehouseKeyError, WarehouseNotFoundError,
                                  WarehouseNotWritableError)
from warehouse.audit import fold_journal
from warehouse.migrations import migrate
from warehouse.runs import discard_pending_runs, fold_pending_runs
from warehouse.readahead import copy_file, fsync_dir, pid_alive, start_writeback


# --------------------------------------------------------------------------------------
# owner-only files and encryption at rest
# --------------------------------------------------------------------------------------
#: files the warehouse layer creates (warehouse, working copy, lock, analyst file,
#: reports) are owner-only unless `set_owner_only(False)` (setting `owner_only_files`)
_OWNER_ONLY = [True]
#: resolved warehouse path → encryption key (registered by the CLI / flows from the
#: settings; never stored in the file, never logged)
_KEYS: dict[Path, str] = {}

#: the DuckDB build whose extensions `duckdb-ext-httpfs` ships (pinned in pyproject.toml)
EXTENSION_PLATFORM = "linux_amd64"


#: whether each publish starts the copy of the next write's working copy (`warehouse.standby`)
_SPARES = [False]


def set_spare_copies(on: bool) -> None:
    """After each publish, copy the published files for the next write in a detached
    process (setting `spare_working_copy`); off: the next write copies them itself."""
    _SPARES[0] = bool(on)


#: DuckDB's memory limit for the warehouse connections this process opens (`set_memory_limit`);
#: None = DuckDB's default (80 % of the machine's memory)
_MEMORY_LIMIT: list[str | None] = [None]


def set_memory_limit(limit: str | None) -> None:
    """Bound the memory DuckDB keeps for each warehouse connection opened after this call
    (a DuckDB size such as ``'4GB'``). A sync stages and rebuilds inside one transaction;
    without a bound DuckDB holds all of it in memory up to 80 % of the machine. Beyond the
    bound it spills to ``<working copy>.tmp`` next to the warehouse (owner-only like it)."""
    _MEMORY_LIMIT[0] = limit


def bound_memory(con: duckdb.DuckDBPyConnection, limit: str | None) -> bool:
    """Bound `con`'s memory to `limit` from now on (None: back to the bound it was opened
    with, `set_memory_limit`, else DuckDB's default). A run that resolves and rebuilds only
    what changed reads a few tables' worth of rows, and DuckDB would keep every block it
    read cached up to the warehouse's bound: its memory would follow the warehouse, not
    the change. Best effort: when DuckDB cannot evict down to `limit`, the configured
    bound stays (False).

    Issued on a cursor of its own: a refused `SET memory_limit` aborts the transaction it
    runs in (the sync's whole transaction: at 3M residents every statement after a refused
    lowering failed with "Current transaction is aborted") and leaves the refused value in
    force, so a refusal restores the configured bound there too. The limit is an instance
    setting: the sync's connection is bound by it as well."""
    target = limit or _MEMORY_LIMIT[0]
    cur = con.cursor()
    try:
        try:
            cur.execute(_limit_sql(target))
            return True
        except duckdb.Error:
            with contextlib.suppress(duckdb.Error):
                cur.execute(_limit_sql(_MEMORY_LIMIT[0]))
            return False
    finally:
        cur.close()


def _limit_sql(limit: str | None) -> str:
    """The statement that puts `limit` in force (None: DuckDB's default)."""
    return f"SET memory_limit = {_sql_str(limit)}" if limit else "RESET memory_limit"


#: how long `checkpoint` waits for other connections of the instance to let go
CHECKPOINT_WAIT_S = 30.0


def checkpoint(con: duckdb.DuckDBPyConnection, database: str | None = None, *,
               wait_s: float = CHECKPOINT_WAIT_S) -> None:
    """CHECKPOINT `database` (None: `con`'s own), waiting while another connection of the
    same DuckDB instance holds it. A plain CHECKPOINT fails at once ("there are other
    write transactions active") when another connection holds the database's checkpoint
    lock, and a catalog query (`duckdb_tables()`, `information_schema`) on a cursor in
    another thread takes part in *every* attached database (plain reads of other tables
    did not, in the reproduction): the problem lists staged beside the analyst file
    (`warehouse.reports.alongside`) read the district through `information_schema` while
    the analyst file was checkpointed, and a sync of the test suite failed there once
    (tests/test_warehouse_store.py reproduces the race). Those statements are short: the
    checkpoint is tried again until `wait_s` has passed, then the last refusal is raised.
    Never FORCE CHECKPOINT: it would roll the other connections' transactions back (or,
    from a cursor, wait on itself)."""
    sql = "CHECKPOINT" + (f" {database}" if database else "")
    deadline = time.monotonic() + wait_s
    pause = 0.005
    while True:
        try:
            con.execute(sql)
            return
        except duckdb.TransactionException as exc:
            if "other write transactions" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor of `con` (for work handed to another thread) on `con`'s current database.
    DuckDB starts every cursor on the instance's default database, and a warehouse
    attached to an in-memory instance (encrypted, or opened `isolated`) is not that
    default: on a plain `con.cursor()` the reports staged beside the analyst file found
    none of the warehouse's tables, and the checkpoint beside it checkpointed the empty
    in-memory database, leaving the warehouse's to `con.close()`."""
    cur = con.cursor()
    try:
        database = con.execute("SELECT current_database()").fetchall()[0][0]
        cur.execute('USE "' + database.replace('"', '""') + '"')
    except BaseException:
        cur.close()
        raise
    return cur


@contextlib.contextmanager
def _instance_setting(con: duckdb.DuckDBPyConnection, name: str, value: Any) -> Iterator[None]:
    """`name` set to `value` for the whole DuckDB instance while the block runs, then put
    back to what it was (not RESET: a caller's own setting around it stands)."""
    before = con.execute(f"SELECT current_setting('{name}')").fetchall()[0][0]
    con.execute(f"SET {name} = '{value}'")
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"SET {name} = '{before}'")


def commit_without_vacuum(con: duckdb.DuckDBPyConnection, database: str | None = None) -> None:
    """COMMIT the transaction on `con`, then CHECKPOINT `database` (None: `con`'s own),
    without DuckDB's vacuum of deleted rows: at the commit's checkpoint it costs what the
    tables weigh, not what changed, and never reaches a keyed table — the warehouse
    rewrites its tables itself (`warehouse.compaction`), the analyst file is built anew
    every month. The setting belongs to the whole DuckDB instance: it is put back after."""
    with _instance_setting(con, "max_vacuum_tasks", 0):
        con.execute("COMMIT")
        checkpoint(con, database)


@contextlib.contextmanager
def committed_checkpointing_beside(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """COMMIT the transaction on `con` (without vacuum, as `commit_without_vacuum`), and
    checkpoint it on a second thread while the block runs, then wait for it: for work
    that only reads the committed warehouse (the analyst file and the officers' reports
    written before the publish), which then no longer waits for the checkpoint (1.9 s of
    the 1M nightly delta). DuckDB lets a checkpoint run beside read transactions; the
    COMMIT writes the transaction to the WAL first (0.8 s there), which the automatic
    checkpoint of a large commit would have skipped. A failed checkpoint is raised here,
    after the block."""
    from concurrent.futures import ThreadPoolExecutor

    with _instance_setting(con, "max_vacuum_tasks", 0):
        with _instance_setting(con, "checkpoint_threshold", "1TB"):  # the WAL only: no checkpoint in the COMMIT
            con.execute("COMMIT")
        beside = cursor(con)
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="checkpoint") as pool:
                done = pool.submit(checkpoint, beside)
                try:
                    yield
                except BaseException:  # the block's failure is the one raised, once the checkpoint ended
                    with contextlib.suppress(Exception):
                        done.result()
                    raise
                done.result()
        finally:
            beside.close()


@contextlib.contextmanager
def _committed_without_vacuum(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    commit_without_vacuum(con)
    yield


def commit_stage(con: duckdb.DuckDBPyConnection) -> None:
    """Inside `transaction`: make what the run has written so far part of the working
    copy's file (`commit_without_vacuum`) and go on in a new transaction. Nothing is
    published by it: the warehouse changes only when the working copy is renamed over it,
    and a run that fails later still leaves it as it was (the working copy is deleted).
    DuckDB holds a transaction's new rows in memory, or writes them to its spill folder,
    until the commit; committed, they are blocks of the file that it drops from memory
    when bounded and reads again when needed. A full sync commits its staged exports
    before resolving everyone (`cache_lent`: the warehouse's memory goes to the resolution)."""
    commit_without_vacuum(con)
    con.execute("BEGIN TRANSACTION")


#: what the warehouse connection keeps while a full resolution runs beside it (`cache_lent`)
LENT_FLOOR = "256MB"


@contextlib.contextmanager
def cache_lent(con: duckdb.DuckDBPyConnection, floor: str = LENT_FLOOR) -> Iterator[None]:
    """While the body runs on other memory (a full resolution of everyone in pandas and
    the linkage model's own databases) and makes no query on `con`, the warehouse
    connection keeps at most `floor`: its cached and uncommitted blocks beyond that are
    evicted to the database file or the spill folder, and the memory goes back to the
    process, instead of a sync's peak being the two summed. The bound the connection was
    opened with (`set_memory_limit`, else DuckDB's default) is restored after. Best effort:
    when DuckDB cannot evict that much, nothing changes."""
    lent = bound_memory(con, floor)
    try:
        yield
    finally:
        if lent:
            bound_memory(con, None)


def set_owner_only(enabled: bool) -> None:
    """Whether files and folders the warehouse writes are owner-only (0600 / 0700)."""
    _OWNER_ONLY[0] = bool(enabled)


def owner_only() -> bool:
    return _OWNER_ONLY[0]


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files created inside get 0600 and folders 0700 (when owner-only is on)."""
    if not _OWNER_ONLY[0]:
        yield
        return
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def make_private(path: Path) -> None:
    """Owner-only mode on an existing file (0600) or folder (0700), when owner-only is on."""
    if _OWNER_ONLY[0] and path.exists():
        path.chmod(0o700 if path.is_dir() else 0o600)


def make_dir(path: Path) -> None:
    """Create a folder (and its parents) for warehouse output; new ones are owner-only."""
    with private_umask():
        path.mkdir(parents=True, exist_ok=True)


def set_key(path: str | os.PathLike[str], key: str | None) -> None:
    """Register (or with None: forget) the encryption key of the warehouse at `path`."""
    resolved = Path(path).resolve()
    if key:
        _KEYS[resolved] = key
    else:
        _KEYS.pop(resolved, None)


def key_for(path: str | os.PathLike[str]) -> str | None:
    return _KEYS.get(Path(path).resolve())


def httpfs_extension() -> Path:
    """The httpfs extension file of the `duckdb-ext-httpfs` package for this DuckDB."""
    import importlib.util

    spec = importlib.util.find_spec("duckdb_ext")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        found = Path(root) / "extensions" / f"v{duckdb.__version__}" / EXTENSION_PLATFORM / "httpfs.duckdb_extension"
        if found.is_file():
            return found
    raise WarehouseKeyError(path="-", detail=f"需要加密，但找不到 DuckDB {duckdb.__version__} 的 httpfs 扩展"
                            "（duckdb-ext-httpfs 未安装或版本不符）",
                            detail_en=f"encryption needs the httpfs extension for DuckDB {duckdb.__version__}")


def _is_encrypted(path: Path) -> bool:
    """DuckDB's header flags an encrypted database; opening without a key says so."""
    try:
        duckdb.connect(str(path), read_only=True).close()
        return False
    except duckdb.Error as exc:
        return "encrypted" in str(exc).lower()


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def open_database(path: Path, *, read_only: bool, key: str | None, isolated: bool = False
                  ) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the file at `path`, encrypted with `key`
    when one is given (DuckDB 1.4 writes encrypted files only with httpfs loaded). Without
    a key an encrypted file is refused with a clear message, as is a wrong key.

    A plain file without `isolated` is opened as before (`duckdb.connect(path)`), sharing
    the process's database instance with other connections to it. With a key or
    `isolated`, the file is attached (as `warehouse`, then `USE`d) to a fresh in-memory
    instance with extension autoloading off: settings changed on it (the query door
    locks its configuration) affect no other connection of the process."""
    limit = {"memory_limit": _MEMORY_LIMIT[0]} if _MEMORY_LIMIT[0] and not read_only else {}
    if not key and not isolated:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            if limit:  # SET, not config: another connection of this process to the file may have none
                con.execute(f"SET memory_limit = {_sql_str(limit['memory_limit'])}")
            return con
        except duckdb.Error as exc:
            if "encrypted" in str(exc).lower():
                raise _no_key_error(path) from None
            raise
    con = duckdb.connect(config={"autoload_known_extensions": False, "autoinstall_known_extensions": False,
                                 **limit})
    try:
        options = ["READ_ONLY"] if read_only else []
        if key:
            con.execute(f"LOAD {_sql_str(str(httpfs_extension()))}")
            options.insert(0, f"ENCRYPTION_KEY {_key_literal(key)}")
        con.execute(f"ATTACH {_sql_str(str(path))} AS warehouse" + (f" ({', '.join(options)})" if options else ""))
        con.execute("USE warehouse")
    except duckdb.Error as exc:
        con.close()
        if not key:
            if "encrypted" in str(exc).lower():
                raise _no_key_error(path) from None
            raise
        # DuckDB's message may quote the key: it is never passed on
        if isinstance(exc, duckdb.IOException) and not path.exists():
            raise WarehouseNotWritableError(path=str(path), detail="无法创建或打开文件") from None
        plain = path.exists() and not _is_encrypted(path)
        raise WarehouseKeyError(
            path=str(path),
            detail="未加密，但提供了密钥：请去掉密钥（RESIDENTS_WAREHOUSE_KEY / warehouse_key_file），"
                   "或用 residents encrypt 加密" if plain else "无法用所给密钥打开（密钥错误或文件损坏）",
            detail_en="is not encrypted but a key was given" if plain else "cannot be opened with the given key"
        ) from None
    return con


def _no_key_error(path: Path) -> WarehouseKeyError:
    return WarehouseKeyError(
        path=str(path), detail="已加密，未提供密钥：请设置环境变量 RESIDENTS_WAREHOUSE_KEY 或配置项 warehouse_key_file",
        detail_en="is encrypted and no key was given (RESIDENTS_WAREHOUSE_KEY or warehouse_key_file)")


def _key_literal(key: str) -> str:
    """The key as a DuckDB BLOB literal: its UTF-8 bytes, every byte that is not plain
    ASCII (or is a quote or backslash) written as \\xHH."""
    out = "".join(c if c.isascii() and c.isprintable() and c not in "\\'" else
                  "".join(f"\\x{b:02X}" for b in c.encode()) for c in key)
    return f"'{out}'"


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
        make_dir(path.parent)
        with private_umask():
            fh = open(_lock_path(path), "a+")
        make_private(_lock_path(path))
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
    if m and pid_alive(int(m.group(1))) and (not holders or int(m.group(1)) in holders):
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


@contextlib.contextmanager
def transaction(path: str | os.PathLike[str], *, lock_timeout_s: float = 0.0,
                fail_before_publish: bool = False, run_id: str | None = None,
                flow: str | None = None, retention: history.Retention | None = None,
                before_publish: Callable[[duckdb.DuckDBPyConnection], Callable[[], None] | None] | None = None,
                lake: Any = None, on_lake: Callable[[Any], None] | None = None,
                after_publish: Callable[[], None] | None = None,
                checkpoint_beside: Callable[[duckdb.DuckDBPyConnection], bool] | None = None
                ) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writable connection to a working copy, published atomically on success.

    `run_id`/`flow` name the holder in the lock file (an interrupted run is recorded
    under them). `fail_before_publish` is a test hook: raise after loading, before the rename.
    `before_publish(con)` runs after the commit, before the rename (it writes files
    derived from the new warehouse, e.g. the analyst file) and may return a function
    that publishes them, called just before the warehouse itself is renamed. The
    warehouse is encrypted when a key is registered for it (`set_key`). `retention`:
    keep the published file as a snapshot for point-in-time queries, and thin the older
    ones, as it says (`warehouse.history`; None: no snapshot).

    `lake` (a `warehouse.lake.LakeTarget`): after the publish, still under the lock, the
    published file is written into the shared DuckLake; `on_lake` receives the
    `LakeOutcome`. A lake failure is reported there, never raised: the publish stands.
    `after_publish()` runs last, still under the lock (it records how long the publish
    took: `warehouse.runs.PublishTimer`); its failure is not raised either.
    `checkpoint_beside(con)`, asked at the commit: whether the working copy is checkpointed
    beside `before_publish` (`committed_checkpointing_beside`: a run that changed a part of
    the warehouse) rather than in the COMMIT (a full rebuild: its transaction written to
    the WAL first cost more than the overlap saved, 8.3 against 7.8 s at 1M residents)."""
    path = Path(path)
    key = key_for(path)
    with writer_lock(path, timeout_s=lock_timeout_s, run_id=run_id, flow=flow), private_umask():
        standby.prefetch_for_write(path)  # the copy below reads it all: start the read now
        work = working_path(path)
        for stale in (work, work.with_name(work.name + ".wal")):
            stale.unlink(missing_ok=True)
        try:
            # the spare copy made after the last publish (`warehouse.standby`), else a copy now
            if path.exists() and not standby.adopt(path, work):
                copy_file(path, work)
                start_writeback(work)  # fsynced before the rename: let the disk start now
            con = open_database(work, read_only=False, key=key)
            make_private(work)
        except (OSError, duckdb.IOException) as exc:
            work.unlink(missing_ok=True)
            raise WarehouseNotWritableError(path=str(path), detail=getattr(exc, "strerror", None) or str(exc)
                                            ) from None
        try:
            migrate(con)
            con.execute("BEGIN TRANSACTION")
            compaction.note(con)  # the tables' dead rows as published (`compaction.compact` reads it)
            fold_pending_runs(con, path)
            fold_journal(con, path)  # audit entries written since the last publish (warehouse.audit)
            yield con
            record_publish(con, run_id=run_id, flow=flow)
            beside = before_publish is not None and checkpoint_beside is not None and checkpoint_beside(con)
            with committed_checkpointing_beside(con) if beside else _committed_without_vacuum(con):
                if fail_before_publish:
                    raise RuntimeError("injected failure before publish (test hook)")
                publish_more = before_publish(con) if before_publish else None
        except BaseException:
            _discard(con)
            work.unlink(missing_ok=True)
            work.with_name(work.name + ".wal").unlink(missing_ok=True)
            raise
        con.close()
        with open(work, "rb+") as fh:
            os.fsync(fh.fileno())
        if publish_more:
            publish_more()
        make_private(work)
        standby.publish(work, path)  # durable; the replaced file's blocks freed after the command
        discard_pending_runs(path)
        history.record(path, retention)
        # the next write's working copy (and the analyst file's) copied now, and the files
        # this publish retired removed
        standby.launch(_SPARES[0])
        if lake is not None:
            _publish_lake(path, lake, run_id, on_lake)
        if after_publish is not None:
            with contextlib.suppress(Exception):  # the warehouse is published: that stands
                after_publish()


def _discard(con: duckdb.DuckDBPyConnection) -> None:
    """Close the connection to a working copy that is about to be deleted, without the
    checkpoint DuckDB makes when the last connection to a file closes: it writes back what
    the run's migration committed and vacuums every table with deleted rows (3.5 s of an
    officer's refused link at 1M residents, for a file deleted right after)."""
    with contextlib.suppress(Exception):
        con.execute("PRAGMA disable_checkpoint_on_shutdown")
    with contextlib.suppress(Exception):
        con.close()


_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def record_publish(con: duckdb.DuckDBPyConnection, *, run_id: str | None, flow: str | None) -> str:
    """Record this publish in quality.publish (a new random generation) and return it.

    Every publish writes one, whoever calls `transaction`, so a file derived from the
    warehouse (the analyst file) that records the generation it was built from can tell
    whether anything was published since without it."""
    generation = uuid.uuid4().hex.translate(_LETTERS)   # letters only: never mistaken for a number
    con.execute("INSERT INTO quality.publish SELECT coalesce(max(seq), 0) + 1, ?, now(), ?, ? FROM quality.publish",
                [generation, run_id, flow])
    return generation


def publish_generations(con: duckdb.DuckDBPyConnection) -> tuple[str | None, str | None]:
    """(this publish's generation, the one before it) — inside a transaction, after
    `record_publish`; None where there is none."""
    rows = [r[0] for r in con.execute("SELECT generation FROM quality.publish ORDER BY seq DESC LIMIT 2").fetchall()]
    rows += [None, None]
    return rows[0], rows[1]


def _publish_lake(path: Path, lake: Any, run_id: str | None, on_lake: Callable[[Any], None] | None) -> None:
    from warehouse import lake as lakehouse

    outcome = lakehouse.publish(path, lake, run_id=run_id)
    if on_lake:
        on_lake(outcome)


def catch_up_lake(path: str | os.PathLike[str], lake: Any, *, lock_timeout_s: float = 0.0,
                  run_id: str | None = None, flow: str | None = None,
                  on_lake: Callable[[Any], None] | None = None) -> None:
    """A run that published nothing still brings the lake up to the published warehouse
    (an earlier lake failure is retried here); under the writer lock, so no publish
    replaces the file while it is read."""
    path = Path(path)
    if not path.exists():
        return
    with writer_lock(path, timeout_s=lock_timeout_s, run_id=run_id, flow=flow):
        _publish_lake(path, lake, run_id, on_lake)


def connect_read_only(path: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published warehouse (what analysts use)."""
    path = Path(path)
    if not path.exists():
        raise WarehouseNotFoundError(path=str(path))
    return open_database(path, read_only=True, key=key_for(path))


def encrypt_existing(path: str | os.PathLike[str], key: str, *, lock_timeout_s: float = 0.0) -> None:
    """Encrypt a plain warehouse in place: every schema, table, view, macro and comment is
    copied into a new encrypted working copy (`COPY FROM DATABASE`), which is then renamed
    over the plain file, under the writer lock like a sync."""
    path = Path(path)
    if not path.exists():
        raise WarehouseNotFoundError(path=str(path))
    if _is_encrypted(path):
        raise WarehouseKeyError(path=str(path), detail="已经加密", detail_en="is already encrypted")
    with writer_lock(path, timeout_s=lock_timeout_s, flow="encrypt"), private_umask():
        work = working_path(path)
        work.unlink(missing_ok=True)
        con = open_database(work, read_only=False, key=key)
        try:
            con.execute(f"ATTACH {_sql_str(str(path))} AS plain_source (READ_ONLY)")
            con.execute("COPY FROM DATABASE plain_source TO warehouse")
            con.execute("DETACH plain_source")
            con.execute("CHECKPOINT")
        except BaseException:
            _discard(con)
            work.unlink(missing_ok=True)
            raise
        con.close()
        with open(work, "rb+") as fh:
            os.fsync(fh.fileno())
        make_private(work)
        # not `standby.publish`: its retired hard link would keep the plain file on disk
        # until the detached sweep; the plaintext goes with this rename
        os.replace(work, path)
        fsync_dir(path.parent)
        standby.want(path)
        standby.launch(_SPARES[0])  # the next write's working copy, copied now


def initialise(path: str | os.PathLike[str]) -> None:
    """Create (or migrate) the warehouse without loading anything."""
    with transaction(path):
        pass
