"""Read-only access for analysts and the `status` / `query` commands."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import duckdb

from warehouse.exceptions import QueryRefusedError, ReadOnlyQueryError, WarehouseNotFoundError
from warehouse.store import connect_read_only, key_for, open_database

if TYPE_CHECKING:
    import pandas as pd

#: the stages a run records in quality.run (summary.stage_seconds), in pipeline order
STAGES = {"discover": "发现", "open": "打开（复制仓库）", "district": "辖区", "read": "读取", "standardize": "标准化",
          "expectations": "校验", "stage": "暂存", "resolve": "人员解析", "build": "构建", "quality": "质量检查",
          "compact": "整理表", "publish": "发布（提交、分析库、报告）", "total": "合计"}
#: quality.run with the runs of the side file (`warehouse.runs`): a side-file row of a run
#: already in quality.run (its publish timed, `runs.PublishTimer`) is shown instead
_RUNS = """(SELECT * FROM pending_run
          UNION ALL SELECT * FROM quality.run WHERE run_id NOT IN (SELECT run_id FROM pending_run))"""


def run_read_only(path: str | os.PathLike[str], sql: str, *, with_pending_runs: bool = False
                  ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one SQL statement on a read-only connection (writes are refused by DuckDB):
    (column names, rows). No pandas: the query command must start quickly.
    `with_pending_runs`: also a temp table `pending_run` (runs not folded into
    quality.run yet, see `warehouse.runs`)."""
    def prepare(con: duckdb.DuckDBPyConnection) -> None:
        if with_pending_runs:
            from warehouse.runs import load_pending_runs

            load_pending_runs(con, path)

    con = connect_read_only(path)
    try:
        return _fetch(con, sql, prepare)
    finally:
        con.close()


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, prepare: Callable[[duckdb.DuckDBPyConnection], None]
           ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """`prepare(con)`, then (column names, rows) of one statement; a DuckDB error in either
    becomes ReadOnlyQueryError (its first line)."""
    try:
        prepare(con)
        cur = con.execute(sql)
        return [d[0] for d in cur.description or []], cur.fetchall()
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(detail=str(exc).splitlines()[0]) from None


#: statement kinds a user may run: SELECT covers WITH, FROM-first, DESCRIBE, SHOW,
#: SUMMARIZE and PRAGMAs that DuckDB rewrites to table functions; EXPLAIN only of those
_READ_ONLY_KINDS = {"SELECT", "EXPLAIN"}
#: the session the user's statement runs in: no files, no other databases, no
#: extensions, and none of it can be switched back on (lock_configuration)
_LOCKED_SESSION = ("SET enable_external_access = false", "SET allow_community_extensions = false",
                   "SET lock_configuration = true")

_KIND_ZH = {"COPY": "COPY 会读写文件", "EXPORT": "EXPORT DATABASE 会写文件", "ATTACH": "不能附加其他数据库",
            "DETACH": "不能分离数据库", "LOAD": "不能安装或加载扩展", "SET": "不能修改设置",
            "CALL": "不能调用过程", "PRAGMA": "不能执行 PRAGMA", "INSERT": "不能写入", "UPDATE": "不能修改",
            "DELETE": "不能删除", "CREATE": "不能创建对象", "DROP": "不能删除对象", "ALTER": "不能修改结构",
            "TRANSACTION": "不能开启或结束事务", "VACUUM": "不能整理数据库", "ANALYZE": "不能分析表",
            "VARIABLE_SET": "不能设置变量", "UPDATE_EXTENSIONS": "不能更新扩展", "COPY_DATABASE": "不能复制数据库",
            "MULTI": "含多条语句（如 PIVOT 会先建临时对象）"}


def check_user_sql(sql: str) -> str:
    """The one statement `sql` holds, if it is of a read-only kind; else QueryRefusedError.

    Parsed with DuckDB's own parser (`extract_statements`) on a connection that opens
    nothing, so what is checked is exactly what would run."""
    import re

    con = duckdb.connect(config={"enable_external_access": False, "autoload_known_extensions": False,
                                 "autoinstall_known_extensions": False})
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise ReadOnlyQueryError(detail=str(exc).splitlines()[0]) from None
        if not statements:
            raise QueryRefusedError(reason="没有语句", reason_en="no statement")
        if len(statements) > 1:
            raise QueryRefusedError(reason=f"含 {len(statements)} 条语句（用分号分隔），一次只能执行一条",
                                    reason_en=f"{len(statements)} statements; one at a time")
        kind = statements[0].type.name
        if kind not in _READ_ONLY_KINDS:
            raise QueryRefusedError(reason=f"{kind} 语句：{_KIND_ZH.get(kind, '不是只读查询')}",
                                    reason_en=f"{kind} statements are not read-only")
        if kind == "EXPLAIN":  # EXPLAIN ANALYZE runs its statement: that one must be read-only too
            inner = re.sub(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+)?", "", sql, count=1, flags=re.IGNORECASE)
            try:
                inner_kinds = [st.type.name for st in con.extract_statements(inner)]
            except duckdb.Error:
                inner_kinds = ["?"]
            if inner_kinds != ["SELECT"]:
                raise QueryRefusedError(reason="EXPLAIN 只能用于只读查询",
                                        reason_en="EXPLAIN of a statement that is not a query")
        return sql
    finally:
        con.close()


def run_user_query(path: str | os.PathLike[str], sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The door for any SQL a user types (`residents query`): exactly one statement of a
    read-only kind, run on a read-only connection with external access disabled and the
    configuration locked, so it cannot read or write files, attach databases, install
    extensions or turn any of that back on. Refused → QueryRefusedError, nothing run."""
    from pathlib import Path

    check_user_sql(sql)
    path = Path(path)
    if not path.exists():
        raise WarehouseNotFoundError(path=str(path))
    # its own instance: the locked settings below must not reach other connections
    con = open_database(path, read_only=True, key=key_for(path), isolated=True)
    def lock(con: duckdb.DuckDBPyConnection) -> None:
        for stmt in _LOCKED_SESSION:
            con.execute(stmt)

    try:
        return _fetch(con, sql, lock)
    finally:
        con.close()


def recent_runs(path: str | os.PathLike[str], limit: int = 10) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The latest runs: what they loaded and how they resolved."""
    return run_read_only(path, f"""
        SELECT run_id AS 运行编号, flow AS 流程, status AS 状态, started_at AS 开始时间,
               json_extract_string(summary, '$.resolution_mode') AS 解析方式,
               (SELECT sum(TRY_CAST(e->>'rows_read' AS BIGINT)) FROM
                  (SELECT unnest(CAST(json_extract(summary, '$.exports') AS JSON[])) AS e)) AS 读取行,
               json_extract_string(summary, '$.persons_after') AS 人员数,
               json_extract_string(summary, '$.persons_created') AS 新建人员
        FROM {_RUNS}
        ORDER BY started_at DESC LIMIT {int(limit)}""", with_pending_runs=True)


def recent_stage_times(path: str | os.PathLike[str], limit: int = 10) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Seconds each stage of the latest runs took (quality.run summary.stage_seconds)."""
    stages = ", ".join(
        f"round(TRY_CAST(json_extract_string(summary, '$.stage_seconds.{s}') AS DOUBLE), 1) AS \"{zh}\""
        for s, zh in STAGES.items())
    return run_read_only(path, f"""
        SELECT run_id AS 运行编号, {stages}
        FROM {_RUNS}
        ORDER BY started_at DESC LIMIT {int(limit)}""", with_pending_runs=True)


def ledger_overview(path: str | os.PathLike[str]) -> tuple[list[str], list[tuple[Any, ...]]]:
    return run_read_only(path, """
        SELECT source_system AS 来源系统, mapping AS 导出类型, status AS 状态, count(*) AS 导出数,
               sum(rows_read) AS 读取行, sum(rows_accepted) AS 接收行, sum(rows_rejected) AS 拒收行,
               sum(values_rejected) AS 不可用值, max(export_date) AS 最新导出日期
        FROM quality.load_ledger GROUP BY ALL ORDER BY source_system, mapping, status""")


def district_overview(path: str | os.PathLike[str]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The latest decisions on the district (quality.district), newest first."""
    _, rows = run_read_only(path, "SELECT count(*) FROM information_schema.tables "
                                  "WHERE table_schema = 'quality' AND table_name = 'district'")
    if not rows[0][0]:
        return ["辖区"], [("未确定",)]
    return run_read_only(path, """
        SELECT decided_at AS 时间, CASE method WHEN 'inferred' THEN '由数据推断' ELSE '配置文件 [district]' END AS 来源,
               concat_ws('', province, city, county) AS 辖区, county_code AS 区划代码, confidence AS 把握,
               warning AS 警告
        FROM quality.district ORDER BY decided_at DESC LIMIT 3""")


@dataclass
class ExplainInputs:
    """What explaining a person or a pair needs from the warehouse: the linkage rows of
    the mentions involved (from the linkage index), the term frequencies of their values
    over all current mentions, the stored model, and the pairs to explain."""

    features: pd.DataFrame
    term_frequencies: dict[str, pd.DataFrame]
    model_settings: dict | None
    pairs: list[tuple[str, str]]
    person_records: pd.DataFrame | None   # the person's mentions and how each was matched


def explain_inputs(path: str | os.PathLike[str], ref_a: str, ref_b: str | None = None, *,
                   tf_columns: tuple[str, ...] = (), max_pairs: int = 20) -> ExplainInputs:
    """For a person id: its mentions, each paired with the person's first one; for two
    references: that pair. Reads only the rows involved (quick on any warehouse size)."""
    from warehouse import linkage_index as index
    from warehouse.decisions import latest_model_settings, mentions_of

    con = connect_read_only(path)
    try:
        settings = latest_model_settings(con)
        records = None
        if ref_b is None and ref_a.startswith("P"):
            ids = mentions_of(con, ref_a)
            records = con.execute(
                "SELECT x.mention_id, x.source_system, x.source_locator, x.role, x.match_method, "
                "round(x.match_probability, 4) AS match_probability, m.name, m.citizen_id, m.id_status, m.birth_date "
                "FROM core.person_xref x JOIN stg.mention m USING (mention_id) WHERE x.person_id = ? "
                "ORDER BY x.mention_id", [ref_a]).df()
            pairs = [(ids[0], other) for other in ids[1:]]
        else:
            if ref_b is None:
                raise ValueError("explain needs a person id, or two mention ids")
            pairs = [(mentions_of(con, ref_a)[0], mentions_of(con, ref_b)[0])]
        pairs = pairs[:max_pairs]
        wanted = sorted({m for pair in pairs for m in pair})
        features = index.features(con, wanted)
        tf = index.term_frequencies(con, tf_columns, wanted)
    finally:
        con.close()
    return ExplainInputs(features, tf, settings, pairs, records)


def alert_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """core.alert's rows per kind (a run's summary)."""
    return dict(con.execute("SELECT alert_kind, count(*) FROM core.alert GROUP BY 1 ORDER BY 1").fetchall())


def person_and_alert_counts(path: str | os.PathLike[str]) -> tuple[int, dict[str, int]]:
    """Persons and alerts per kind of the published warehouse at `path` (a run that
    changed nothing reports them without opening a working copy)."""
    con = connect_read_only(path)
    try:
        return con.execute("SELECT count(*) FROM core.person").fetchall()[0][0], alert_counts(con)
    finally:
        con.close()
