"""Warehouse-side quality: warehouse-wide invariants, row-count changes, writing
expectation results, file-level findings and cross-source findings.

All functions take an open connection inside `warehouse.store.transaction` (or a
read-only one for the readers). The per-export suites (Great Expectations) are declared
and run in `pipelines/expectations.py`; `flows.py` wires the two.

Warehouse invariants (`warehouse_invariants(threshold)`, run by `check_invariants`) are
declared as data: one `Invariant` per check, named like a GE expectation (type and
kwargs) so that `quality.expectation_result` has one shape for export and warehouse
checks. Each kind of expectation is compiled to one aggregate DuckDB query on the table
(`_compile`); only counts and up to ten example values leave the database, and Great
Expectations is not imported. Counts and success follow GE's rules for map expectations:
nulls are not checked (except by not-null checks) and do not count towards
`unexpected_percent`; `mostly` is the share of checked values that must pass; a table
with no rows passes. Examples are distinct offending values in order (for a reference
check, the dangling value itself; none for a not-null check).

Cross-source findings (`refresh_cross_source_findings`, recomputed after every build
from `stg.mention`, scope `warehouse`):

* `id_conflict_birth_date`, `id_conflict_name`, `id_conflict_gender`: one valid
  citizen ID whose mentions in different departments state different birth dates,
  names (Simplified form) or genders;
* `birth_date_contradicts_id`, `gender_contradicts_id`: a mention whose stated birth
  date or gender differs from what its own valid ID encodes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import duckdb
import pandas as pd

from schemas.codes import CODE_TABLES
from schemas.mapping import load_mappings
from warehouse.ddl import EXPECTATION_RESULT, FINDING
from warehouse.digest import digest, digest_sql
from warehouse.frames import frame_table

__all__ = ["Invariant", "RESULT_COLUMNS", "warehouse_invariants", "check_invariants", "run_invariants",
           "write_expectation_results", "write_export_findings",
           "refresh_cross_source_findings", "FINDING_KINDS_ZH"]

#: one row per check, as `pipelines.expectations.RESULT_COLUMNS` (what `write_expectation_results` takes)
RESULT_COLUMNS = [c for c in EXPECTATION_RESULT.column_names if c not in ("run_id", "export_id", "evaluated_at")]

FINDING_KINDS_ZH = {
    "unknown_column": "未知列（已照常读入）",
    "duplicate_header": "重复的列名",
    "empty_header": "无列名但有数据的列",
    "hidden_sheet_skipped": "隐藏工作表已跳过",
    "sheet_without_header": "工作表没有表头",
    "formula_without_value": "公式单元格没有计算结果",
    "merged_non_household": "非户级列有合并单元格",
    "id_conflict_birth_date": "同一身份证号在不同部门的出生日期不一致",
    "id_conflict_name": "同一身份证号在不同部门的姓名不一致",
    "id_conflict_gender": "同一身份证号在不同部门的性别不一致",
    "birth_date_contradicts_id": "出生日期与身份证号不符",
    "gender_contradicts_id": "性别与身份证号不符",
}


# --------------------------------------------------------------------------------------
# row-count changes: per export loaded in the run (files only; incremental database
# reads vary by nature), its rows read against the previous export of the same source
# object (`change_ratio` = |new − old| / old)
# --------------------------------------------------------------------------------------
_ROW_COUNT_CHANGE = """
WITH cur AS (
  SELECT * FROM quality.load_ledger
  WHERE run_id = $run_id AND status = 'loaded' AND watermark_to IS NULL AND watermark_from IS NULL),
prev AS (
  SELECT c.export_id, p.source_object AS previous_source_object, p.rows_read AS previous_rows_read,
         row_number() OVER (PARTITION BY c.export_id
                            ORDER BY p.export_date DESC NULLS LAST, p.export_id DESC) AS rn
  FROM cur c JOIN quality.load_ledger p
    ON p.mapping = c.mapping AND p.export_id < c.export_id AND p.status <> 'failed'
   AND p.rows_read IS NOT NULL)
SELECT c.export_id, c.source_system, c.mapping, c.source_object, c.rows_read,
       p.previous_source_object, p.previous_rows_read,
       abs(c.rows_read - p.previous_rows_read) / greatest(p.previous_rows_read, 1)::DOUBLE AS change_ratio
FROM cur c JOIN prev p ON p.export_id = c.export_id AND p.rn = 1
"""


# --------------------------------------------------------------------------------------
# warehouse invariants: declared as data, compiled to aggregate SQL
# --------------------------------------------------------------------------------------
UNIQUE = "expect_column_values_to_be_unique"
COMPOUND_UNIQUE = "expect_compound_columns_to_be_unique"
NOT_NULL = "expect_column_values_to_not_be_null"
IN_SET = "expect_column_values_to_be_in_set"
MATCH_REGEX = "expect_column_values_to_match_regex"
BETWEEN = "expect_column_values_to_be_between"

#: checked targets that are not tables: the query of their rows (`$run_id`: the run checked)
DERIVED_TARGETS = {"quality.row_count_change": _ROW_COUNT_CHANGE}
#: how many distinct offending values a result keeps as examples
EXAMPLES = 10


@dataclass(frozen=True)
class Invariant:
    """One warehouse-wide check on one target. `expectation` and `kwargs` are recorded
    as they are (a GE expectation type and its arguments). With `reference` (parent
    table, parent column) the checked column `<col>__exists` is true when `<col>` is
    null or found in the parent."""

    target: str                      # schema.table, or a key of DERIVED_TARGETS
    expectation: str                 # e.g. "expect_column_values_to_be_unique"
    kwargs: dict[str, Any] = field(hash=False)
    description: str                 # what it means, in Chinese (for the report)
    severity: str = "error"          # error | warning
    reference: tuple[str, str] | None = None
    #: with `reference`: the checked column and the parent's column are meant to hold the
    #: same values (every staged mention has its one xref row, every xref row its mention),
    #: so a check of the whole table first compares a digest of the two (`_same_values`)
    #: and passes on a match without joining them
    same_values: bool = False

    @property
    def column(self) -> str | None:
        if "column" in self.kwargs:
            return str(self.kwargs["column"])
        if "column_list" in self.kwargs:
            return ",".join(self.kwargs["column_list"])
        return None


_PERSON = ("core.person", "person_id")
_ADDRESS = ("core.address", "address_id")


def _codes(table: str) -> list[str]:
    return sorted(CODE_TABLES[table].codes)


def warehouse_invariants(row_count_change_threshold: float = 0.5) -> tuple[Invariant, ...]:
    """The checks on the built warehouse: unique keys, references between xref, persons,
    addresses and facts, value sets of every coded field, null rates, and the row-count
    change of each export loaded in the run against the previous export of its source."""
    def c(target: str, expectation: str, description: str, severity: str = "error", **kwargs: Any) -> Invariant:
        return Invariant(target, expectation, kwargs, description, severity)

    def exists(target: str, col: str, what: str, parent: tuple[str, str] = _PERSON,
               same_values: bool = False) -> Invariant:
        return Invariant(target, IN_SET, {"column": f"{col}__exists", "value_set": [True]},
                         f"{target}.{col}：{what}", reference=parent, same_values=same_values)

    return (
        c("core.person", UNIQUE, "人员编号唯一", column="person_id"),
        c("core.person", NOT_NULL, "人员编号不为空", column="person_id"),
        c("core.person", UNIQUE, "一个有效身份证号只对应一个人员", column="citizen_id"),
        c("core.person", MATCH_REGEX, "身份证号均为18位有效格式", column="citizen_id", regex=r"^\d{17}[\dX]$"),
        c("core.person", IN_SET, "性别为GB/T 2261.1代码", column="gender", value_set=_codes("gender")),
        c("core.person", IN_SET, "民族为GB 3304代码", column="ethnicity", value_set=_codes("ethnicity")),
        c("core.person", IN_SET, "婚姻状况为GB/T 2261.2代码", column="marital_status",
          value_set=_codes("marital_status")),
        c("core.person", NOT_NULL, "至少99%的人员有姓名", "warning", column="name", mostly=0.99),
        c("core.person", NOT_NULL, "至少90%的人员有出生日期", "warning", column="birth_date", mostly=0.9),
        c("core.person", NOT_NULL, "至少80%的人员有有效身份证号", "warning", column="citizen_id", mostly=0.8),
        c("core.person_xref", UNIQUE, "每个人员提及只有一行交叉索引", column="mention_id"),
        exists("core.person_xref", "person_id", "交叉索引指向的人员都存在"),
        exists("core.person_xref", "mention_id", "交叉索引对应的人员提及都在暂存层", ("stg.mention", "mention_id")),
        exists("stg.mention", "mention_id", "每个人员提及都已解析到人员", ("core.person_xref", "mention_id"),
               same_values=True),
        exists("core.address_xref", "address_id", "地址交叉索引指向的地址都存在", _ADDRESS),
        exists("core.person_address", "person_id", "人—地址关系的人员都存在"),
        exists("core.person_address", "address_id", "人—地址关系的地址都存在", _ADDRESS),
        exists("core.relationship", "person_id_from", "关系一方的人员都存在"),
        exists("core.relationship", "person_id_to", "关系另一方的人员都存在"),
        c("core.marriage_registration", NOT_NULL, "婚姻登记都有登记证字号", column="certificate_no"),
        exists("core.marriage_registration", "man_person_id", "男方人员都存在"),
        exists("core.marriage_registration", "woman_person_id", "女方人员都存在"),
        c("core.marriage_registration", IN_SET, "业务类型为标准代码", column="business_type",
          value_set=_codes("marriage_business")),
        c("core.cremation", UNIQUE, "火化证明编号唯一", column="cremation_no"),
        exists("core.cremation", "person_id", "逝者人员都存在"),
        c("core.low_income_roster_line", COMPOUND_UNIQUE, "花名册每行只装载一次",
          column_list=["source_object", "source_locator", "role"]),
        exists("core.low_income_roster_line", "person_id", "低保成员人员都存在"),
        c("core.low_income_roster_line", IN_SET, "保障类别为标准代码", column="category",
          value_set=_codes("low_income_category")),
        c("core.low_income_roster_line", IN_SET, "与户主关系为GB/T 4761代码", column="relationship_to_head",
          value_set=_codes("relationship")),
        c("core.floating_registration", UNIQUE, "流动人口登记编号唯一", column="registration_no"),
        exists("core.floating_registration", "person_id", "流动人口登记人员都存在"),
        c("core.floating_registration", IN_SET, "登记状态为 active/cancelled", column="status",
          value_set=["active", "cancelled"]),
        c("core.fp_woman", UNIQUE, "育龄妇女编号唯一", column="ylfn_id"),
        exists("core.fp_woman", "person_id", "育龄妇女人员都存在"),
        exists("core.fp_woman", "spouse_person_id", "配偶人员都存在"),
        c("core.fp_woman", IN_SET, "婚姻状况为GB/T 2261.2代码", column="marital_status",
          value_set=_codes("marital_status")),
        c("core.fp_child", UNIQUE, "子女编号唯一", column="zn_id"),
        exists("core.fp_child", "person_id", "子女人员都存在"),
        exists("core.fp_child", "mother_person_id", "母亲人员都存在"),
        c("core.alert", UNIQUE, "预警编号唯一", column="alert_id"),
        exists("core.alert", "person_id", "预警涉及的人员都存在"),
        c("quality.row_count_change", BETWEEN,
          f"与同一来源上一次导出相比，读取行数变化不超过{row_count_change_threshold:.0%}", "warning",
          column="change_ratio", min_value=0.0, max_value=float(row_count_change_threshold)),
    )


def check_invariants(con: duckdb.DuckDBPyConnection, run_id: str, *,
                     row_count_change_threshold: float = 0.5, scope: CheckScope | None = None) -> pd.DataFrame:
    """The warehouse invariants on the current warehouse, each as one aggregate query:
    one row per check (`RESULT_COLUMNS`, suite `warehouse`) for `write_expectation_results`.
    `run_id`: the run whose exports' row-count changes are checked. `scope`: what a scoped
    build wrote (`CheckScope`): a check that passed last time reads only those rows."""
    return run_invariants(con, warehouse_invariants(row_count_change_threshold), run_id=run_id, scope=scope)


#: `observed_value` of a check a scoped run read on the rows it wrote only
SCOPED_ONLY = "只检查了本次重算涉及的行（其余的行在上一次检查中已通过，本次未改变）"


@dataclass(frozen=True)
class CheckScope:
    """What a scoped build wrote, for the warehouse checks after it: the persons and the
    addresses whose rows it derived again (temp tables with one column `k`:
    `warehouse.build.build_scope`) and the run that loaded this run's exports.

    Every row such a build writes or deletes names one of those persons or addresses or
    comes from an export loaded in the run, and a row that refers to a person or an
    address it removed names that person or address; the other rows are as the last
    check found them (tests/test_incremental.py: a scoped build equals a full one). So a
    check that passed last time (`_passed_before`: the same target, expectation, column
    and arguments) can only fail now on those rows (`_row_scope`), and only those are
    read: at 1M residents the checks of an officer's link read a few rows instead of ~7
    million (0.9-1.3 s of the 5 s link). A check that failed last time, never ran, or
    changed reads its whole table, so a failure stays reported until the data is
    mended; so does a check on a table with no person or address column, a check on a
    share of the rows (`mostly`), every check of a full build, every check at the
    first run of a calendar month (what the premise would miss is found within a month),
    and every check after a build whose scope is large (`SCOPED_CHECK_MAX_SHARE`)."""

    persons: str
    addresses: str
    run_id: str


def _row_scope(table: Any, alias: str, scope: CheckScope) -> Any:
    """The rows of `table` (as `alias`) a scoped build may have written or whose
    reference it may have broken (see `CheckScope`); None when the table has no person or
    address column (read whole)."""
    terms = [f"{alias}.{_ident(c)} IN (SELECT k FROM {scope.persons})" for c in table.person_id_columns]
    if "address_id" in table.column_names:
        terms.append(f"{alias}.address_id IN (SELECT k FROM {scope.addresses})")
    if not terms:
        return None
    if "source_object" in table.column_names:
        terms.append(f"{alias}.source_object IN (SELECT source_object FROM quality.load_ledger "
                     f"WHERE run_id = {_literal(scope.run_id)})")
    return "(" + " OR ".join(terms) + ")"


def _definition(target: str, expectation: str, column: str | None, kwargs: Any) -> tuple[Any, ...]:
    loaded = json.loads(kwargs) if isinstance(kwargs, str) else kwargs
    return target, expectation, column, json.dumps(loaded, sort_keys=True, ensure_ascii=False, default=str)


def _passed_before(con: duckdb.DuckDBPyConnection, suite: str) -> set[tuple[Any, ...]]:
    """The definitions (`_definition`) of the checks of `suite` whose latest result passed
    and that read their whole table this calendar month (the first run of a month reads
    every table again: a safety net under the scoped checks' premise)."""
    rows = con.execute(
        f"SELECT target, expectation, column_name, CAST(kwargs AS VARCHAR), arg_max(success, evaluated_at), "
        f"bool_or(observed_value IS DISTINCT FROM ? AND date_trunc('month', evaluated_at) = "
        f"date_trunc('month', now()::TIMESTAMP)) "
        f"FROM {EXPECTATION_RESULT.qualified} WHERE suite = ? AND export_id IS NULL GROUP BY ALL",
        [SCOPED_ONLY, suite]).fetchall()
    return {_definition(t, e, c, k) for t, e, c, k, ok, whole in rows if ok and whole}


#: a scope above this share of the persons or of the addresses is checked whole: the
#: filters then cost what they save (1M residents, a 低保 month's 6.5 % of the persons:
#: the reference checks 0.5 s whole against 1.0 s scoped; a link's two persons 0.65 ->
#: 0.32 s)
SCOPED_CHECK_MAX_SHARE = 0.02


def _share(con: duckdb.DuckDBPyConnection, keys: str, table: str) -> float:
    n, total = con.execute(f"SELECT (SELECT count(*) FROM {keys}), (SELECT count(*) FROM {table})").fetchall()[0]
    return n / total if total else 1.0


def _scoped_checks(con: duckdb.DuckDBPyConnection, invariants: list[Invariant], suite: str,
                   scope: CheckScope | None) -> dict[int, Callable[[str], str]]:
    """position → the row scope (a condition on the given alias) of each check read on a
    scoped build's rows only (`CheckScope`)."""
    if scope is None or _share(con, scope.persons, "core.person") > SCOPED_CHECK_MAX_SHARE \
            or _share(con, scope.addresses, "core.address") > SCOPED_CHECK_MAX_SHARE:
        return {}
    from warehouse.ddl import all_tables

    tables = {t.qualified: t for t in all_tables()}
    passed = _passed_before(con, suite)
    out = {}
    for i, inv in enumerate(invariants):
        table = tables.get(inv.target)
        if table is None or float(inv.kwargs.get("mostly", 1.0)) < 1.0:
            continue
        if _row_scope(table, "t", scope) is not None and _definition(
                inv.target, inv.expectation, inv.column, inv.kwargs) in passed:
            out[i] = partial(_row_scope, table, scope=scope)
    return out


def run_invariants(con: duckdb.DuckDBPyConnection, invariants: Iterable[Invariant], *,
                   run_id: str | None = None, suite: str = "warehouse", scope: CheckScope | None = None
                   ) -> pd.DataFrame:
    """Evaluate `invariants` in the database; a second query fetches examples only for
    a check with offending values. The reference checks on one parent are counted in one
    query (`_reference_counts`: the parent's keys are hashed once, not once per child).
    `scope`: see `CheckScope`."""
    invariants = list(invariants)
    scoped = _scoped_checks(con, invariants, suite, scope)
    counted = _reference_counts(con, invariants, scoped)
    enforced = _primary_keys(con)
    rows: list[dict[str, Any]] = []
    for i, inv in enumerate(invariants):
        if inv.expectation in (UNIQUE, NOT_NULL) and (inv.target, inv.kwargs.get("column")) in enforced:
            # the database refuses a duplicate or null key of its own: nothing to count but the rows
            n = con.execute(f"SELECT count(*) FROM {_table(inv.target)}").fetchall()[0][0]
            rows.append(_invariant_result(suite, inv, n, n, 0, [], observed=ENFORCED_BY_KEY))
            continue
        compiled = _compile(inv, scoped.get(i))
        params = {"run_id": run_id} if inv.target in DERIVED_TARGETS else {}
        counts = counted.get(i) or con.execute(
            "SELECT coalesce(sum(n), 0)::BIGINT, coalesce(sum(n) FILTER (WHERE considered), 0)::BIGINT, "
            f"coalesce(sum(n) FILTER (WHERE bad), 0)::BIGINT FROM ({compiled.rows}) r", params).fetchall()[0]
        element, considered, unexpected = counts if counts else (0, 0, 0)
        examples: list[Any] = []
        if unexpected and compiled.examples:
            found = con.execute(f"SELECT DISTINCT v FROM ({compiled.rows}) r WHERE bad ORDER BY v LIMIT {EXAMPLES}",
                                params).fetchall()
            examples = [v for (v,) in found]
        rows.append(_invariant_result(suite, inv, element, considered, unexpected, examples,
                                      observed=SCOPED_ONLY if i in scoped else None))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


#: `observed_value` of a uniqueness or not-null check that the table's PRIMARY KEY enforces
ENFORCED_BY_KEY = "由主键约束保证（PRIMARY KEY）"


def _primary_keys(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(schema.table, column) of every single-column PRIMARY KEY of the database."""
    return {(f"{schema}.{table}", cols[0]) for schema, table, cols in con.execute(
        "SELECT schema_name, table_name, constraint_column_names FROM duckdb_constraints() "
        "WHERE constraint_type = 'PRIMARY KEY' AND len(constraint_column_names) = 1").fetchall()}


def _reference_counts(con: duckdb.DuckDBPyConnection, invariants: list[Invariant],
                      scoped: dict[int, Callable[[str], str]] | None = None) -> dict[int, tuple[int, int, int]]:
    """(element, considered, unexpected) of every reference check of `invariants` (by
    position), one query per parent table: the checked columns of all its children as
    one relation, each value tested against the parent's keys as `_checked_value` does;
    a child in `scoped` only in its rows there (`_scoped_checks`)."""
    scoped = scoped or {}
    by_parent: dict[tuple[str, str], list[int]] = {}
    for i, inv in enumerate(invariants):
        if inv.reference is not None and inv.expectation == IN_SET and inv.target not in DERIVED_TARGETS:
            by_parent.setdefault(inv.reference, []).append(i)
    out: dict[int, tuple[int, int, int]] = {}
    for (parent, parent_col), members in by_parent.items():
        for i in [i for i in members if invariants[i].same_values and i not in scoped]:
            found = _same_values(con, invariants[i])
            if found is not None:
                out[i] = found
                members.remove(i)
        if not members:
            continue
        children = " UNION ALL ".join(
            f"SELECT {i} AS i, t.{_ident(str(invariants[i].kwargs['column']).removesuffix('__exists'))} AS v "
            f"FROM {_table(invariants[i].target)} t" + (f" WHERE {scoped[i]('t')}" if i in scoped else "")
            for i in members)
        values = [list(invariants[i].kwargs["value_set"]) for i in members]
        ok = ("CASE i " + " ".join(f"WHEN {i} THEN x IN ({', '.join(_literal(v) for v in vs)})" if vs
                                   else f"WHEN {i} THEN FALSE" for i, vs in zip(members, values)) + " END")
        keys, values_of = f"SELECT {_ident(parent_col)} FROM {_table(parent)}", f"({children}) r"
        if all(i in scoped for i in members):
            # a scoped build's few values, once: the parent's keys among them, not all of
            # them hashed (a whole check streams its millions of values instead)
            keys += f" WHERE {_ident(parent_col)} IN (SELECT v FROM r)"
            values_of = "r"
        found = con.execute(
            (f"WITH r AS MATERIALIZED ({children}) " if values_of == "r" else "")
            + f"SELECT i, count(*)::BIGINT, count(x)::BIGINT, "
            f"count(*) FILTER (WHERE x IS NOT NULL AND NOT ({ok}))::BIGINT "
            f"FROM (SELECT i, (v IS NULL OR v IN ({keys})) AS x FROM {values_of}) c GROUP BY i").fetchall()
        out.update({i: (0, 0, 0) for i in members})
        out.update({int(i): (e, c, u) for i, e, c, u in found})
    return out


def _same_values(con: duckdb.DuckDBPyConnection, inv: Invariant) -> tuple[int, int, int] | None:
    """(element, considered, 0) of a whole-table reference check whose column holds the
    same non-null values as its parent's column (`Invariant.same_values`), from a digest
    of each (`warehouse.digest`), one scan of each column: the 848 000 staged mentions
    against their xref rows 0.03 s instead of the semi-join's 0.11-0.14 s, on every sync
    and decision. None when the digests differ (some value has no parent, or the parent
    holds more): the check then runs row by row, with its examples."""
    assert inv.reference is not None
    col = _ident(str(inv.kwargs["column"]).removesuffix("__exists"))
    parent, parent_col = inv.reference
    (rows, *child), = con.execute(f"SELECT count(*), {digest_sql(col)} FROM {_table(inv.target)}").fetchall()
    keys = digest(con, _table(parent), _ident(parent_col))
    return (rows, child[0], 0) if tuple(child) == keys else None


@dataclass(frozen=True)
class _Compiled:
    """A check as SQL: `rows` yields one row per checked value (or per group of equal
    values) with `v` (the value shown as an example), `n` (the rows it stands for),
    `considered` (checked at all: not null) and `bad` (violates the check)."""

    rows: str
    examples: bool = True


def _compile(inv: Invariant, within: Callable[[str], str] | None = None) -> _Compiled:
    """The one place where expectation kinds become SQL. `within(alias)`: a condition on
    the target's rows that limits the check to them (`_scoped_checks`); a uniqueness
    check then counts every row that shares a value with one of them."""
    kw = inv.kwargs
    src = f"({DERIVED_TARGETS[inv.target]}) t" if inv.target in DERIVED_TARGETS else f"{_table(inv.target)} t"
    if inv.expectation in (UNIQUE, COMPOUND_UNIQUE):
        names: list[str] = list(kw["column_list"]) if inv.expectation == COMPOUND_UNIQUE else [kw["column"]]
        cols = [f"t.{_ident(n)}" for n in names]
        if within is not None:
            same = " AND ".join(f"s.{_ident(n)} IS NOT DISTINCT FROM t.{_ident(n)}" for n in names)
            src = (f"(SELECT * FROM {_table(inv.target)} t WHERE EXISTS "
                   f"(SELECT 1 FROM {_table(inv.target)} s WHERE {within('s')} AND {same})) t")
        shown = cols[0] if inv.expectation == UNIQUE else \
            "{" + ", ".join(f"{_literal(n)}: {col}" for n, col in zip(names, cols)) + "}"
        # a row is skipped when its value is null (compound: when all its values are)
        considered = "(" + " OR ".join(f"{col} IS NOT NULL" for col in cols) + ")"
        return _Compiled(f"SELECT {shown} AS v, count(*) AS n, {considered} AS considered, "
                         f"{considered} AND count(*) > 1 AS bad FROM {src} GROUP BY {', '.join(cols)}")
    value, shown = _checked_value(inv)
    if within is not None:
        src = f"(SELECT * FROM {_table(inv.target)} t WHERE {within('t')}) t"
    checked = f"(SELECT {value} AS x, {shown} AS v FROM {src}) c"  # `value` (maybe a subquery) once
    if inv.expectation == NOT_NULL:
        return _Compiled(f"SELECT NULL AS v, 1 AS n, TRUE AS considered, x IS NULL AS bad FROM {checked}",
                         examples=False)
    if inv.expectation == IN_SET:
        values = list(kw["value_set"])
        ok = f"x IN ({', '.join(_literal(v) for v in values)})" if values else "FALSE"
    elif inv.expectation == MATCH_REGEX:
        ok = f"regexp_matches(CAST(x AS VARCHAR), {_literal(kw['regex'])})"
    elif inv.expectation == BETWEEN:
        ok = " AND ".join([
            f"x {'>' if kw.get('strict_min') else '>='} {_bound(kw['min_value'])}"
            if kw.get("min_value") is not None else "TRUE",
            f"x {'<' if kw.get('strict_max') else '<='} {_bound(kw['max_value'])}"
            if kw.get("max_value") is not None else "TRUE"])
    else:
        raise ValueError(f"no SQL for expectation {inv.expectation!r} ({inv.target})")
    return _Compiled(f"SELECT v, 1 AS n, x IS NOT NULL AS considered, x IS NOT NULL AND NOT ({ok}) AS bad "
                     f"FROM {checked}")


def _checked_value(inv: Invariant) -> tuple[str, str]:
    """(the checked expression, the value shown when it fails). `<col>__exists` with a
    reference: whether `<col>` is null or in the parent; shown: `<col>` itself."""
    column = str(inv.kwargs["column"])
    if inv.reference is None:
        col = f"t.{_ident(column)}"
        return col, col
    if not column.endswith("__exists"):
        raise ValueError(f"a reference check names its column <col>__exists, not {column!r} ({inv.target})")
    col = f"t.{_ident(column.removesuffix('__exists'))}"
    parent, parent_col = inv.reference
    return f"({col} IS NULL OR {col} IN (SELECT {_ident(parent_col)} FROM {_table(parent)}))", col


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table(qualified: str) -> str:
    return ".".join(_ident(part) for part in qualified.split("."))


def _literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {v!r}")


def _bound(v: Any) -> str:
    """A between bound: numbers as they are; ISO text and dates as timestamps (as GE reads them)."""
    if isinstance(v, (dt.date, dt.datetime)):
        v = v.isoformat()
    return f"CAST({_literal(v)} AS TIMESTAMP)" if isinstance(v, str) else _literal(v)


def _invariant_result(suite: str, inv: Invariant, element: int, considered: int, unexpected: int,
                      examples: list[Any], observed: str | None = None) -> dict[str, Any]:
    """GE's rules for map expectations: no rows or nothing checked passes; otherwise the
    passing share of checked values must reach `mostly` (default all)."""
    mostly = float(inv.kwargs.get("mostly", 1.0))
    success = element == 0 or considered == 0 or (considered - unexpected) / considered >= mostly
    return {
        "suite": suite, "target": inv.target, "expectation": inv.expectation, "column_name": inv.column,
        "kwargs": json.dumps(inv.kwargs, ensure_ascii=False, default=str), "description": inv.description,
        "severity": inv.severity, "success": bool(success), "element_count": element,
        "unexpected_count": unexpected,
        "unexpected_percent": unexpected / considered * 100 if element and considered else None,
        "observed_value": observed,
        "unexpected_examples": json.dumps([_json_value(v) for v in examples], ensure_ascii=False, default=str)
        if examples else None,
        "exception": None,
    }


def _json_value(v: Any) -> Any:
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    return v


# --------------------------------------------------------------------------------------
# writing results
# --------------------------------------------------------------------------------------
def write_expectation_results(con: duckdb.DuckDBPyConnection, results: pd.DataFrame, *, run_id: str,
                              export_id: int | None = None) -> None:
    """Append one validation's results (pipelines.expectations.RESULT_COLUMNS)."""
    if results is None or results.empty:
        return
    df = results.copy()
    df["run_id"] = run_id
    df["export_id"] = export_id
    for c in ("element_count", "unexpected_count"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    df["unexpected_percent"] = pd.to_numeric(df["unexpected_percent"], errors="coerce")
    df["success"] = df["success"].astype(bool)
    cols = [c for c in EXPECTATION_RESULT.column_names if c != "evaluated_at"]
    with frame_table(con, "_results", df.reindex(columns=cols)):
        names = ", ".join(f'"{c}"' for c in cols)
        con.execute(f"INSERT INTO {EXPECTATION_RESULT.qualified} ({names}, evaluated_at) "
                    f"SELECT {names}, now() FROM _results")


def write_export_findings(con: duckdb.DuckDBPyConnection, *, run_id: str, export_id: int, source_system: str,
                          source_object: str, warnings: Iterable[Mapping[str, Any]]) -> int:
    """File-level warnings of one export (connector `ConnectorWarning.to_dict()`s) as findings."""
    rows = []
    for w in warnings:
        sheet, row = w.get("sheet"), w.get("row")
        locator = f"{sheet}!{row}" if sheet and row is not None else (sheet or (str(row) if row is not None else None))
        code = w.get("code") or "warning"
        fid = f"{export_id}:{code}:{locator or ''}:{w.get('column') or ''}:{len(rows)}"
        rows.append({
            "finding_id": fid, "scope": "export", "finding_kind": code, "severity": "warning", "run_id": run_id,
            "export_id": export_id, "source_system": source_system,
            "source_object": w.get("source_object") or source_object, "source_locator": locator,
            "source_column": w.get("column"), "raw_value": w.get("value"), "citizen_id": None, "person_id": None,
            "detail": w.get("message") or FINDING_KINDS_ZH.get(code, code),
            "evidence": json.dumps(dict(w), ensure_ascii=False, default=str),
        })
    _insert_findings(con, rows)
    return len(rows)


def _insert_findings(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]] | pd.DataFrame) -> None:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    if df.empty:
        return
    with frame_table(con, "_findings", df.reindex(columns=FINDING.column_names)):
        names = ", ".join(f'"{c}"' for c in FINDING.column_names)
        con.execute(f"INSERT OR REPLACE INTO {FINDING.qualified} ({names}) SELECT {names} FROM _findings")


# --------------------------------------------------------------------------------------
# cross-source findings
# --------------------------------------------------------------------------------------
def _birth_gender_headers() -> pd.DataFrame:
    """(mapping, role) → the source's own header of the birth-date and gender fields."""
    rows = []
    for m in load_mappings():
        cols = {c.field: c for c in m.columns}
        for p in m.persons:
            roles = [p.role] if p.role else [p.role_rule.role, p.role_rule.otherwise]
            b, g = p.fields.get("birth_date"), p.fields.get("gender")
            for role in roles:
                rows.append({"mapping": m.source_object, "role": role,
                             "birth_header": cols[b].header if b in cols else None,
                             "gender_header": cols[g].header if g in cols else "（按角色）"})
    # one row per (mapping, role): a role taken by two rules (a roster's head row and the
    # head named only in the household columns) is described by the first
    return pd.DataFrame(rows).drop_duplicates(["mapping", "role"])


#: the mention columns the findings below read (not `m.*`: the delta's 112 000 mentions of
#: the IDs in scope carried ~35 columns, 0.45 -> 0.18 s)
_QM_COLUMNS = ("mention_id, export_id, source_system, source_object, source_locator, role, citizen_id, name, "
               "name_simplified, birth_date, id_birth_date, gender, id_gender")

_MENTIONS = """
CREATE OR REPLACE TEMP TABLE qm AS
SELECT m.*, l.mapping, x.person_id, h.birth_header, h.gender_header,
       CASE m.gender WHEN '1' THEN '男' WHEN '2' THEN '女' ELSE m.gender END AS gender_zh,
       CASE m.id_gender WHEN '1' THEN '男' WHEN '2' THEN '女' ELSE m.id_gender END AS id_gender_zh,
       m.source_object || '!' || m.source_locator AS rec
FROM (SELECT """ + _QM_COLUMNS + """ FROM stg.mention m  -- filtered before the joins: DuckDB would join every mention first
      WHERE m.citizen_id IS NOT NULL AND m.id_status IN ('valid', 'upgraded_15') AND {scope}) m
LEFT JOIN quality.load_ledger l USING (export_id)
LEFT JOIN core.person_xref x USING (mention_id)
LEFT JOIN _headers h ON h.mapping = l.mapping AND h.role = m.role
"""

_CONFLICT = """
SELECT 'warehouse:{kind}:' || citizen_id AS finding_id, 'warehouse' AS scope, '{kind}' AS finding_kind,
       'warning' AS severity, ? AS run_id, NULL::BIGINT AS export_id,
       NULL AS source_system, NULL AS source_object, NULL AS source_locator, NULL AS source_column,
       string_agg(DISTINCT {shown}, '、' ORDER BY {shown}) AS raw_value, citizen_id, min(person_id) AS person_id,
       '同一身份证号在不同部门登记的{what}不一致：' ||
         string_agg(DISTINCT {shown} || '（' || source_system || '：' || rec || '）', '；'
                    ORDER BY {shown} || '（' || source_system || '：' || rec || '）') AS detail,
       to_json(list({{source_system: source_system, record: rec, value: {shown}}} ORDER BY rec)) AS evidence
FROM qm WHERE {value} IS NOT NULL AND citizen_id IN (
  -- the few IDs in conflict first: the texts below are built for those alone
  SELECT citizen_id FROM qm WHERE {value} IS NOT NULL GROUP BY citizen_id
  HAVING count(DISTINCT {value}) > 1 AND count(DISTINCT source_system) > 1)
GROUP BY citizen_id
"""

_CONTRADICTION = """
SELECT 'warehouse:{kind}:' || mention_id, 'warehouse', '{kind}', 'warning', ?, export_id,
       source_system, source_object, source_locator, {header}, {shown_raw}, citizen_id, person_id,
       '{what}“' || {shown_raw} || '”与身份证号中的“' || {shown_id} || '”不符', 
       to_json({{stated: {shown_raw}, from_id: {shown_id}, record: rec}})
FROM qm WHERE {value} IS NOT NULL AND {id_value} IS NOT NULL AND {value} <> {id_value} {extra}
"""


def refresh_cross_source_findings(con: duckdb.DuckDBPyConnection, run_id: str, *,
                                  persons_table: str | None = None) -> dict[str, int]:
    """Recompute the warehouse-scope findings from the current staging; returns counts by
    kind. `persons_table` (a table with one column `k` of person ids: those a scoped
    build re-derived) limits the work to the citizen IDs those persons carry or carried."""
    if persons_table is None:
        con.execute(f"DELETE FROM {FINDING.qualified} WHERE scope = 'warehouse'")
        scope = "TRUE"
    else:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _dcid AS
            SELECT DISTINCT m.citizen_id AS k FROM stg.mention m JOIN core.person_xref x USING (mention_id)
            WHERE x.person_id IN (SELECT k FROM {persons_table}) AND m.citizen_id IS NOT NULL
            UNION SELECT citizen_id FROM {FINDING.qualified}
            WHERE scope = 'warehouse' AND person_id IN (SELECT k FROM {persons_table}) AND citizen_id IS NOT NULL""")
        con.execute(f"DELETE FROM {FINDING.qualified} WHERE scope = 'warehouse' AND (citizen_id IN (SELECT k FROM _dcid)"
                    f" OR person_id IN (SELECT k FROM {persons_table}))")
        scope = "m.citizen_id IN (SELECT k FROM _dcid)"
    with frame_table(con, "_headers", _birth_gender_headers()):
        con.execute(_MENTIONS.format(scope=scope))
        parts = [
            _CONFLICT.format(kind="id_conflict_birth_date", what="出生日期", value="birth_date",
                             shown="strftime(birth_date, '%Y-%m-%d')"),
            _CONFLICT.format(kind="id_conflict_name", what="姓名", value="coalesce(name_simplified, name)",
                             shown="coalesce(name_simplified, name)"),
            _CONFLICT.format(kind="id_conflict_gender", what="性别", value="nullif(nullif(gender, '0'), '9')",
                             shown="gender_zh"),
            _CONTRADICTION.format(kind="birth_date_contradicts_id", what="出生日期", value="birth_date",
                                  id_value="id_birth_date", header="birth_header",
                                  shown_raw="strftime(birth_date, '%Y-%m-%d')",
                                  shown_id="strftime(id_birth_date, '%Y-%m-%d')", extra=""),
            _CONTRADICTION.format(kind="gender_contradicts_id", what="性别", value="gender", id_value="id_gender",
                                  header="gender_header", shown_raw="gender_zh", shown_id="id_gender_zh",
                                  extra="AND gender IN ('1', '2') AND id_gender IN ('1', '2')"),
        ]
        n = len(parts)
        names = ", ".join(f'"{c}"' for c in FINDING.column_names)
        con.execute(f"INSERT OR REPLACE INTO {FINDING.qualified} ({names}) " + " UNION ALL ".join(parts),
                    [run_id] * n)
        con.execute("DROP TABLE IF EXISTS qm")
    return dict(con.execute(f"SELECT finding_kind, count(*) FROM {FINDING.qualified} WHERE scope = 'warehouse' "
                            "GROUP BY 1 ORDER BY 1").fetchall())
