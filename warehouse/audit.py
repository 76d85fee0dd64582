"""The audit log: who looked at or changed a person, when, what and why.

Every officer action that reveals or changes a person (a lookup by ID, name, phone or
address, a resident page, an explanation, a link or unlink, a review decision or
import, a query) appends one entry. Readers hold the published warehouse read-only
and a sync replaces that file atomically, so an entry cannot be written into the
published file directly. Instead:

* every entry is first appended to the journal next to the warehouse,
  `<warehouse>.audit.jsonl` (owner-only, opened in append mode, one JSON line written
  under an exclusive `flock` of the journal and fsynced), *before* the action shows
  anything: when the journal cannot be written the action is refused (fail closed);
* every transaction on the warehouse (a sync, a backfill, a decision) folds the
  journal's entries that are not yet in `quality.audit` into its working copy, so they
  are published with it; the journal is never truncated, so an entry appended while a
  sync was running is folded by the next one and nothing is lost to a publish;
* `residents audit` reads `quality.audit` plus the journal's entries not folded yet.

Nothing in the program updates or deletes an audit entry (append-only by
construction; the journal keeps a second copy of every entry).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from warehouse.exceptions import WarehouseError
from warehouse.frames import frame_table

AUDIT_COLUMNS = ("audit_id", "occurred_at", "actor", "actor_role", "channel", "action", "target", "reason",
                 "outcome", "detail", "client")

#: Chinese names of the actions and outcomes (officer-facing listings)
ACTION_LABELS_ZH = {
    "lookup": "查找人员", "view_person": "查看人员页", "explain": "解释匹配", "link": "确认是同一人",
    "unlink": "确认不是同一人", "review_decide": "复核决定", "review_import": "导入复核表",
    "review_export": "导出复核表", "review_view": "查看待复核列表", "query": "执行查询",
    "login": "登录", "login_failed": "登录失败",
}
OUTCOME_LABELS_ZH = {"done": "完成", "refused": "被拒绝", "failed": "失败"}
CHANNEL_LABELS_ZH = {"cli": "命令行", "web": "网页"}
ROLE_LABELS_ZH = {"officer": "工作人员", "analyst": "分析人员"}


class AuditUnavailableError(WarehouseError):
    """The journal cannot be written: the action is refused rather than left unrecorded."""

    template = ("无法写入审计日志 {path}（{detail}），为保证每次查看和更改都有记录，本次操作未执行；"
                "请检查仓库目录的权限 / cannot write the audit journal {path} ({detail})")


@dataclass
class AuditEntry:
    """One audited action; `audit_id` and `occurred_at` are filled when recorded."""

    actor: str
    channel: str
    action: str
    target: str | None = None
    reason: str | None = None
    outcome: str = "done"
    detail: str | None = None
    actor_role: str | None = None
    client: str | None = None
    audit_id: str = field(default_factory=lambda: "")
    occurred_at: str = field(default_factory=lambda: "")

    def __post_init__(self) -> None:
        if self.action not in ACTION_LABELS_ZH:
            raise ValueError(f"unknown audit action {self.action!r}")
        if self.outcome not in OUTCOME_LABELS_ZH:
            raise ValueError(f"unknown audit outcome {self.outcome!r}")
        if self.channel not in CHANNEL_LABELS_ZH:
            raise ValueError(f"unknown audit channel {self.channel!r}")


def journal_path(warehouse: str | os.PathLike[str]) -> Path:
    p = Path(warehouse)
    return p.with_name(p.name + ".audit.jsonl")


def os_user() -> str:
    """Who runs a command: the login name (what `residents` records for the CLI)."""
    import getpass

    with contextlib.suppress(Exception):
        return getpass.getuser()
    return f"uid={os.getuid()}"


def cli_entry(action: str, **kwargs: Any) -> AuditEntry:
    """An entry for a command typed at the shell: the OS user on this host."""
    return AuditEntry(actor=os_user(), channel="cli", action=action, client=socket.gethostname(), **kwargs)


def record(warehouse: str | os.PathLike[str], entry: AuditEntry) -> AuditEntry:
    """Append `entry` to the journal (durable before this returns); raises
    AuditUnavailableError when it cannot be written."""
    now = dt.datetime.now()
    entry.occurred_at = now.isoformat(sep=" ", timespec="microseconds")
    entry.audit_id = "A" + now.strftime("%Y%m%d%H%M%S%f") + uuid.uuid4().hex[:8]
    for name in ("target", "reason", "detail"):
        value = getattr(entry, name)
        if value is not None and len(value) > 4000:
            setattr(entry, name, value[:4000] + "…")
    line = (json.dumps(asdict(entry), ensure_ascii=False) + "\n").encode("utf-8")
    path = journal_path(warehouse)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise AuditUnavailableError(path=str(path), detail=exc.strerror or type(exc).__name__) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a line torn by a crash stays alone on its line
        _write_all(fd, line)
        os.fsync(fd)
    except OSError as exc:
        raise AuditUnavailableError(path=str(path), detail=exc.strerror or type(exc).__name__) from None
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return entry


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def journal_table(warehouse: str | os.PathLike[str]) -> Any:
    """The journal's entries as an Arrow table of strings (Arrow's JSON reader: 100k
    entries in well under a second); a torn line from a crash mid-append is skipped."""
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pajson

    schema = pa.schema([(c, pa.string()) for c in AUDIT_COLUMNS])
    path = journal_path(warehouse)
    if not path.exists():
        return schema.empty_table()
    with open(path, "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        try:
            data = fh.read()
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    data = data[: data.rfind(b"\n") + 1]  # a torn last line is not an entry yet
    if not data.strip():
        return schema.empty_table()
    try:
        table = pajson.read_json(io.BytesIO(data), parse_options=pajson.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="ignore"))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        rows = []  # a torn line in the middle: line by line, skipping it
        for line in data.decode("utf-8", "replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                row = json.loads(line)
                if isinstance(row, dict):
                    rows.append({c: None if row.get(c) is None else str(row[c]) for c in AUDIT_COLUMNS})
        table = pa.Table.from_pylist(rows, schema=schema)
    return table.filter(pc.is_valid(table["audit_id"]))


def journal_entries(warehouse: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The journal's entries as dicts (tests, small journals)."""
    return journal_table(warehouse).to_pylist()


def _register_journal(con: duckdb.DuckDBPyConnection, warehouse: str | os.PathLike[str], name: str,
                      like: str = "quality.audit") -> None:
    """A temp table `name` shaped like `like` holding the journal's entries."""
    arrow = journal_table(warehouse)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {like} LIMIT 0")
    if arrow.num_rows == 0:
        return
    with frame_table(con, "_audit_journal_arrow", arrow):
        casts = ", ".join(f"CAST({c} AS TIMESTAMP)" if c == "occurred_at" else c for c in AUDIT_COLUMNS)
        con.execute(f"INSERT INTO {name} ({', '.join(AUDIT_COLUMNS)}) SELECT {casts} FROM _audit_journal_arrow")


def fold_journal(con: duckdb.DuckDBPyConnection, warehouse: str | os.PathLike[str]) -> int:
    """Insert the journal's entries not yet in quality.audit (inside the caller's
    transaction on the working copy); returns how many were added."""
    _register_journal(con, warehouse, "_audit_journal")
    try:
        before = con.execute("SELECT count(*) FROM quality.audit").fetchall()[0][0]
        con.execute("INSERT INTO quality.audit SELECT j.* FROM _audit_journal j "
                    "WHERE j.audit_id NOT IN (SELECT audit_id FROM quality.audit)")
        return con.execute("SELECT count(*) FROM quality.audit").fetchall()[0][0] - before
    finally:
        con.execute("DROP TABLE IF EXISTS _audit_journal")


def list_entries(warehouse: str | os.PathLike[str], *, since: dt.date | None = None, actor: str | None = None,
                 action: str | None = None, target: str | None = None, limit: int = 100
                 ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The latest entries (table and unfolded journal), newest first, with Chinese
    headers and labels: (columns, rows)."""
    from warehouse.store import connect_read_only

    con = connect_read_only(warehouse)
    try:
        has_table = con.execute("SELECT count(*) FROM information_schema.tables "
                                "WHERE table_schema = 'quality' AND table_name = 'audit'").fetchall()[0][0]
        if not has_table:  # a warehouse published before the audit table existed
            con.execute("CREATE TEMP TABLE audit_base AS SELECT " + ", ".join(
                f"CAST(NULL AS {'TIMESTAMP' if c == 'occurred_at' else 'VARCHAR'}) AS {c}" for c in AUDIT_COLUMNS)
                + " LIMIT 0")
            base = "audit_base"
        else:
            base = "quality.audit"
        _register_journal(con, warehouse, "_audit_journal", like=base)
        where, params = [], []
        if since:
            where.append("occurred_at >= ?")
            params.append(since)
        for col, value in (("actor", actor), ("action", action)):
            if value:
                where.append(f"{col} = ?")
                params.append(value)
        if target:
            where.append("target LIKE ?")
            params.append(f"%{target}%")
        labels = {"action": ACTION_LABELS_ZH, "outcome": OUTCOME_LABELS_ZH, "channel": CHANNEL_LABELS_ZH,
                  "actor_role": ROLE_LABELS_ZH}

        def case(col: str) -> str:
            whens = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in labels[col].items())
            return f"CASE {col} {whens} ELSE {col} END"

        sql = f"""
            SELECT strftime(occurred_at, '%Y-%m-%d %H:%M:%S') AS 时间, actor AS 操作人, {case('actor_role')} AS 角色,
                   {case('channel')} AS 渠道, {case('action')} AS 操作, target AS 对象, reason AS 理由,
                   {case('outcome')} AS 结果, detail AS 说明, client AS 客户端, audit_id AS 审计编号
            FROM (SELECT * FROM {base} UNION ALL
                  SELECT * FROM _audit_journal WHERE audit_id NOT IN (SELECT audit_id FROM {base}))
            {'WHERE ' + ' AND '.join(where) if where else ''}
            ORDER BY occurred_at DESC, audit_id DESC LIMIT {int(limit)}"""
        cur = con.execute(sql, params)
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        con.close()
