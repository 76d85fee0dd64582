"""The shared lakehouse: the published warehouse copied into a DuckLake after each publish.

Analysts on other machines cannot open the DuckDB file of the sync machine. When the
settings name a lakehouse (`[lakehouse] catalog = "postgres:dbname=… host=… user=…"`,
`data_path = "/shared/lake/"`), every publish of the warehouse (`store.transaction`)
also writes the analyst-facing part of it into a DuckLake: its catalog lives in
PostgreSQL, its data as Parquet files under `data_path`. Readers `ATTACH
'ducklake:postgres:…' (READ_ONLY)` from anywhere, query while the nightly load writes,
and ask for an earlier snapshot (`AT (VERSION => n)` / `AT (TIMESTAMP => …)`).

What is published, in ONE DuckLake transaction (one snapshot) per publish:

* every table of `core` and `quality`, with its table and column comments;
* every `mart` view, materialised as a table of the same name with the view's column
  comments. DuckLake stores views but not functions (macros), and the mart views mask
  IDs and phones with the macros `mart.mask_id` / `mask_phone`; a lake view calling
  them would not bind for a reader, so the lake holds the views' results instead;
* `lake_meta.published`: one row per published object with the fingerprint of its
  content (row count, a hash over all rows, its columns and comments).

Cost follows the change: an object whose fingerprint equals the one in the lake is not
rewritten; a publish where nothing changed writes no snapshot at all. Fingerprinting
reads each object once (a hash aggregate, no copy).

A failure of the lake (catalog down, wrong password, shared storage not writable) never
touches the published warehouse: `publish` returns a failed `LakeOutcome` with a Chinese
message, the sync reports it (exit code 4, as a partially failed sync), and the next
run publishes whatever the lake is missing, because the fingerprints in the lake only
change when a lake transaction commits.

The `ducklake` and `postgres` extensions come from the PyPI packages
`duckdb-ext-ducklake` / `duckdb-ext-postgres` (built for DuckDB 1.4.4) and are loaded
by path: nothing is installed from the network. The catalog password is passed as a
temporary DuckDB secret, never written into the attach string, so no error message,
log or flow parameter carries it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import time
from datetime import datetime
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from warehouse.exceptions import LakehouseError

#: schemas whose tables are copied as they are; `mart` views are materialised
TABLE_SCHEMAS = ("core", "quality")
VIEW_SCHEMAS = ("mart",)
META_SCHEMA = "lake_meta"
ALIAS = "lake"
_SECRET = "residents_lake_catalog"

META_COMMENTS = {
    "object": "已发布的对象（模式.表名）",
    "kind": "在仓库中的类型：table 表 / view 视图（在数据湖中物化为表）",
    "fingerprint": "内容指纹（行数、全部行的哈希、列名、类型与注释）；相同则下次发布不重写",
    "row_count": "发布时的行数",
    "run_id": "发布该版本的运行编号",
    "published_at": "发布时间（UTC）",
}


@dataclass(frozen=True)
class LakeTarget:
    """Where to publish: the DuckLake catalog (a libpq connection string after
    `postgres:`, without password), the data path, and the password (by reference in the
    settings; resolved by the caller). `credential_problem`: why the password could not
    be resolved (the publish then fails alone with that message)."""

    catalog: str
    data_path: str
    password: str | None = field(default=None, repr=False)
    credential_problem: str | None = None

    @classmethod
    def from_config(cls, cfg: Any, env: Mapping[str, str]) -> "LakeTarget":
        """From the `[lakehouse]` settings (catalog, data_path, password(env)); a missing
        password reference becomes `credential_problem` (the publish fails alone)."""
        try:
            return cls(cfg.catalog, cfg.data_path, cfg.password(env))
        except (KeyError, OSError) as exc:
            return cls(cfg.catalog, cfg.data_path,
                       credential_problem=str(exc.args[0] if isinstance(exc, KeyError) else exc))

    @property
    def attach_uri(self) -> str:
        return "ducklake:" + self.catalog


@dataclass
class LakeOutcome:
    """What one publish to the lake did: `published` (a new snapshot), `unchanged`
    (nothing differed; no snapshot), `failed` (message says why, in Chinese)."""

    status: str
    snapshot: int | None = None
    replaced: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    kept: int = 0
    seconds: float = 0.0
    message: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    def line_zh(self) -> str:
        if self.status == "published":
            return (f"数据湖：已发布快照 {self.snapshot}（重写 {len(self.replaced)} 个对象，"
                    f"未变 {self.kept} 个，用时 {self.seconds:.1f} 秒）")
        if self.status == "unchanged":
            return f"数据湖：内容未变，未写新快照（当前快照 {self.snapshot}）"
        return f"数据湖发布失败（仓库已正常发布，下次运行自动补发）：{self.message}"


def extension_path(name: str) -> Path:
    """The `.duckdb_extension` file of `name` shipped by the PyPI package `duckdb-ext-<name>`
    for the running DuckDB version."""
    spec = importlib.util.find_spec("duckdb_ext")
    roots = list(spec.submodule_search_locations or []) if spec else []
    version = duckdb.__version__
    file = {"postgres": "postgres_scanner"}.get(name, name) + ".duckdb_extension"
    for root in roots:
        found = sorted(Path(root, "extensions", f"v{version}").glob(f"*/{file}"))
        if found:
            return found[0]
    raise LakehouseError(reason="extension_missing", catalog="-",
                         detail=f"找不到 DuckDB {version} 的 {name} 扩展（应由 PyPI 包 duckdb-ext-{name} 提供，"
                                f"请运行 make install）")


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _redact(text: str, target: LakeTarget) -> str:
    """An error's text without the password, cut to the server's own words when there
    are any (libpq repeats the connection string several times)."""
    if target.password:
        text = text.replace(target.password, "***")
    text = " ".join(text.split())
    for marker in ("FATAL:", "could not connect", "Connection refused"):
        if marker in text:
            text = text[text.index(marker):]
            break
    if "password authentication failed" in text:
        text = "密码错误（" + text + "）"
    elif "no password supplied" in text:
        text = "未提供密码（" + text + "）"
    return text


@contextlib.contextmanager
def attach(target: LakeTarget, *, base: str | os.PathLike[str] | None = None, read_only: bool = False,
           snapshot_version: int | None = None, snapshot_time: datetime | None = None
           ) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection with the lake attached as `lake` and, when `base`
    is given, the warehouse file attached read-only as the default database. Raises
    `LakehouseError`. `snapshot_version` / `snapshot_time` (read-only): the lake as it
    stood at that snapshot (the last one at or before that time)."""
    if target.credential_problem:
        raise LakehouseError(reason="credentials_missing", catalog=target.catalog, detail=target.credential_problem)
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        for ext in ("postgres", "ducklake"):
            con.execute(f"LOAD {_q(str(extension_path(ext)))}")
        options = [f"METADATA_PARAMETERS MAP {{'SECRET': {_q(_SECRET)}}}"]
        if target.password is not None:
            con.execute(f"CREATE OR REPLACE TEMPORARY SECRET {_SECRET} (TYPE postgres, PASSWORD {_q(target.password)})")
        else:
            con.execute(f"CREATE OR REPLACE TEMPORARY SECRET {_SECRET} (TYPE postgres)")
        if read_only:
            options.append("READ_ONLY")
            if snapshot_version is not None:
                options.append(f"SNAPSHOT_VERSION {int(snapshot_version)}")
            if snapshot_time is not None:
                options.append(f"SNAPSHOT_TIME {_q(snapshot_time.isoformat())}")
        else:
            Path(target.data_path).mkdir(parents=True, exist_ok=True)
            options.append(f"DATA_PATH {_q(target.data_path)}")
        con.execute(f"ATTACH {_q(target.attach_uri)} AS {ALIAS} ({', '.join(options)})")
        if base:
            from warehouse.store import _key_literal, httpfs_extension, key_for

            key = key_for(base)
            if key:   # an encrypted officer warehouse: attached with its key (httpfs writes/reads encryption)
                con.execute(f"LOAD {_q(str(httpfs_extension()))}")
                con.execute(f"ATTACH {_q(str(base))} AS wh (READ_ONLY, ENCRYPTION_KEY {_key_literal(key)})")
            else:
                con.execute(f"ATTACH {_q(str(base))} AS wh (READ_ONLY)")
            con.execute("USE wh")
    except LakehouseError:
        con.close()
        raise
    except (duckdb.Error, OSError) as exc:
        con.close()
        reason = "no_snapshot" if "No snapshot found" in str(exc) else "connect"
        raise LakehouseError(reason=reason, catalog=target.catalog, detail=_redact(str(exc), target)) from None
    try:
        yield con
    finally:
        con.close()


@dataclass(frozen=True)
class _Object:
    schema: str
    name: str
    kind: str                       # table / view
    comment: str | None
    columns: tuple[tuple[str, str, str | None], ...]   # name, type, comment

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def _objects(con: duckdb.DuckDBPyConnection) -> list[_Object]:
    """The warehouse objects to publish (the warehouse is the connection's main database)."""
    schemas = TABLE_SCHEMAS + VIEW_SCHEMAS
    rows = con.execute(
        """SELECT schema_name, table_name, 'table', comment FROM duckdb_tables()
             WHERE database_name = current_database() AND list_contains(?, schema_name)
           UNION ALL
           SELECT schema_name, view_name, 'view', comment FROM duckdb_views()
             WHERE database_name = current_database() AND NOT internal AND list_contains(?, schema_name)
           ORDER BY 1, 2""", [list(TABLE_SCHEMAS), list(VIEW_SCHEMAS)]).fetchall()
    cols: dict[tuple[str, str], list[tuple[str, str, str | None]]] = {}
    for s, t, c, typ, comment in con.execute(
            "SELECT schema_name, table_name, column_name, data_type, comment FROM duckdb_columns() "
            "WHERE database_name = current_database() AND list_contains(?, schema_name) "
            "ORDER BY schema_name, table_name, column_index", [list(schemas)]).fetchall():
        cols.setdefault((s, t), []).append((c, typ, comment))
    return [_Object(s, t, k, comment, tuple(cols.get((s, t), ()))) for s, t, k, comment in rows]


def _fingerprint(con: duckdb.DuckDBPyConnection, obj: _Object) -> tuple[str, int]:
    """Content fingerprint of one object: rows, an order-free hash over all rows, its
    columns and comments. Equal fingerprints: nothing to rewrite."""
    n, total = con.execute(
        f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0)::VARCHAR "
        f"FROM {_ident(obj.schema)}.{_ident(obj.name)} AS t").fetchone()
    digest = hashlib.sha256(repr((n, total, obj.comment, obj.columns)).encode("utf-8")).hexdigest()
    return digest, int(n)


def _lake_state(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? "
                         "AND table_name = 'published'", [ALIAS, META_SCHEMA]).fetchone()[0]
    if not exists:
        return {}
    return dict(con.execute(f"SELECT object, fingerprint FROM {ALIAS}.{META_SCHEMA}.published").fetchall())


def current_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()[0])


def publish(warehouse: str | os.PathLike[str], target: LakeTarget, *, run_id: str | None = None) -> LakeOutcome:
    """Bring the lake up to the published warehouse in one DuckLake transaction.

    Never raises for a lake problem: the outcome says `failed` and why (in Chinese)."""
    t0 = time.perf_counter()
    try:
        outcome = _publish(Path(warehouse), target, run_id)
    except LakehouseError as exc:
        outcome = LakeOutcome("failed", message=str(exc))
    except duckdb.Error as exc:
        outcome = LakeOutcome("failed", message=str(LakehouseError(
            reason="publish", catalog=target.catalog, detail=_redact(str(exc), target))))
    outcome.seconds = time.perf_counter() - t0
    return outcome


def _publish(warehouse: Path, target: LakeTarget, run_id: str | None) -> LakeOutcome:
    with attach(target, base=warehouse) as con:
        objects = _objects(con)
        fingerprints = {o.qualified: _fingerprint(con, o) for o in objects}
        state = _lake_state(con)
        changed = [o for o in objects if state.get(o.qualified) != fingerprints[o.qualified][0]]
        dropped = sorted(set(state) - set(fingerprints))
        if not changed and not dropped:
            return LakeOutcome("unchanged", snapshot=current_snapshot(con), kept=len(objects))
        con.execute("BEGIN TRANSACTION")
        try:
            for schema in sorted({o.schema for o in changed} | {META_SCHEMA}):
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {ALIAS}.{_ident(schema)}")
            _create_meta(con)
            for obj in changed:
                name = f"{ALIAS}.{_ident(obj.schema)}.{_ident(obj.name)}"
                con.execute(f"CREATE OR REPLACE TABLE {name} AS "
                            f"SELECT * FROM {_ident(obj.schema)}.{_ident(obj.name)}")
                if obj.comment:
                    con.execute(f"COMMENT ON TABLE {name} IS {_q(obj.comment)}")
                for column, _typ, comment in obj.columns:
                    if comment:
                        con.execute(f"COMMENT ON COLUMN {name}.{_ident(column)} IS {_q(comment)}")
            for qualified in dropped:
                schema, name = qualified.split(".", 1)
                con.execute(f"DROP TABLE IF EXISTS {ALIAS}.{_ident(schema)}.{_ident(name)}")
            gone = [o.qualified for o in changed] + dropped
            con.execute(f"DELETE FROM {ALIAS}.{META_SCHEMA}.published WHERE list_contains(?, object)", [gone])
            if changed:
                con.executemany(
                    f"INSERT INTO {ALIAS}.{META_SCHEMA}.published VALUES (?, ?, ?, ?, ?, now()::TIMESTAMP)",
                    [[o.qualified, o.kind, *fingerprints[o.qualified], run_id] for o in changed])
            con.execute(f"CALL {ALIAS}.set_commit_message('residents', ?)",
                        [f"run {run_id or '-'}: {len(changed)} replaced, {len(dropped)} dropped"])
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
        return LakeOutcome("published", snapshot=current_snapshot(con), replaced=[o.qualified for o in changed],
                           dropped=dropped, kept=len(objects) - len(changed))


def _create_meta(con: duckdb.DuckDBPyConnection) -> None:
    table = f"{ALIAS}.{META_SCHEMA}.published"
    exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? "
                         "AND table_name = 'published'", [ALIAS, META_SCHEMA]).fetchone()[0]
    if exists:
        return
    con.execute(f"CREATE TABLE {table} (object VARCHAR, kind VARCHAR, fingerprint VARCHAR, row_count BIGINT, "
                f"run_id VARCHAR, published_at TIMESTAMP)")
    con.execute(f"COMMENT ON TABLE {table} IS {_q('数据湖中已发布的对象及其内容指纹（用于只重写变化的表）')}")
    for column, text in META_COMMENTS.items():
        con.execute(f"COMMENT ON COLUMN {table}.{column} IS {_q(text)}")


def query(target: LakeTarget, sql: str, *, snapshot_version: int | None = None,
          snapshot_time: datetime | None = None) -> tuple[list[str], list[tuple], dict]:
    """One read-only statement on the lake (its schemas unqualified: `mart.person`), at the
    current or an earlier snapshot: (columns, rows, the snapshot answered from)."""
    from warehouse.exceptions import ReadOnlyQueryError

    with attach(target, read_only=True, snapshot_version=snapshot_version, snapshot_time=snapshot_time) as con:
        con.execute(f"USE {ALIAS}")
        snap = con.execute(f"SELECT id, snapshot_time FROM {ALIAS}.current_snapshot() "
                           f"JOIN ducklake_snapshots({_q(ALIAS)}) ON snapshot_id = id").fetchone()
        try:
            cur = con.execute(sql)
            rows = cur.fetchall()
        except duckdb.Error as exc:
            raise ReadOnlyQueryError(detail=_redact(str(exc).splitlines()[0], target)) from None
        return [d[0] for d in cur.description or []], rows, {"snapshot": snap[0], "time": snap[1]}


def snapshots(target: LakeTarget) -> list[dict]:
    """The lake's snapshots, oldest first: id, time, what changed, commit message."""
    with attach(target, read_only=True) as con:
        rows = con.execute(f"SELECT snapshot_id, snapshot_time, changes, commit_message "
                           f"FROM ducklake_snapshots({_q(ALIAS)}) ORDER BY snapshot_id").fetchall()
    return [{"snapshot": r[0], "time": r[1], "changes": r[2], "message": r[3]} for r in rows]
