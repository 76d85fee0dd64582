"""The analysts' de-identified warehouse (`<warehouse stem>.analyst.duckdb`).

Officers keep the full warehouse; analysts get a separate file that holds only the
analysis layer and nothing that identifies a person (see docs/DEIDENTIFICATION.md for
the reasoning and tests/test_analyst_warehouse.py for the attacks it withstands):

* no citizen ID (not even masked), no document number, no phone, no name, no exact
  birth or death date, no free-text address, nothing of an address below the building
  (no house number, unit, floor, room or village group), no registration / permit /
  certificate numbers, no source row locators, no officer person id;
* a person appears under a pseudonymous key, `HMAC-SHA256(secret, person_id)`: stable
  across runs (so analysts can count and join over time), useless without the secret,
  which is kept outside both files (`Settings.resolved_pseudonym_key`);
* dates of a person are cut to the year (birth, death) or month (registrations,
  benefits, alerts).

The file is written from the committed working copy on every publish of the officer
warehouse (`store.transaction(before_publish=...)`) and renamed into place just before
it, so it is never half-written and never older than one sync. After a scoped (nightly)
build only the rows of the persons and addresses the build touched are derived again in
a copy of the published file (`_update`); `why_full` says when it is built in full
instead. Every table and column carries a Chinese comment, declared here.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from warehouse import standby
from warehouse.readahead import copy_file
from warehouse.store import checkpoint, commit_without_vacuum
from warehouse.views import community_summary_sql, current_residents, grid_sql, households_sql

#: the database name the analyst file is attached under while it is written
ALIAS = "analyst_out"
#: the analyst file is for other users: owner read-write, group read (put the analysts in
#: the file's group and its folder where they can reach it: setting `analyst_warehouse`)
ANALYST_FILE_MODE = 0o640
#: the current households of the communities in scope, computed once for the two tables
#: that read them (`community_summary`, `grid`: the join of every current person-address
#: link with its person and address is most of their cost)
HOUSEHOLDS = "_analyst_households"
#: the current residents (person, address) of the communities in scope, computed once for
#: the households above and `community_summary`'s head count
RESIDENTS = "_analyst_residents"


@dataclass(frozen=True)
class AnalystTable:
    """One table of the analyst file, declared; `build` and `_update` execute them all.

    `sql` reads the officer warehouse and selects, under each key column's name, the
    officer person id: the pseudonym is published in its place (a required key joins
    like an inner join: rows of persons no longer in core.person are left out; an
    optional one like a left join). `{scope}` in its WHERE is the row filter of an
    incremental update: TRUE in a full build, else "one of `scope_on` is a person (scope
    "person") or an address (scope "address") the sync changed". Aggregates by community
    (scope "community": `{scope}` stands for a condition on `address_id`) are derived again
    for every community that holds, before or after the sync, an address it changed or an
    address of a person it changed; tables of scope "all" in full on every publish. `{size}`
    is the grid size (`grid_households`).

    `changes_with_the_date`: SQL giving the person ids whose rows change merely because
    the date moved on since `$since` (the date of the previous build), e.g. a residence
    that ended yesterday is no longer current."""

    name: str
    comment: str
    sql: str
    columns: dict[str, str]        # column → Chinese comment (every column, in order)
    keys: dict[str, bool] = field(default_factory=dict)   # key column → required
    scope: str = "all"             # "person" | "address" | "community" | "all"
    scope_on: tuple[str, ...] = ()
    changes_with_the_date: str | None = None


PERSON_KEY = "人员假名键（以密钥对人员编号做 HMAC-SHA256，跨运行稳定；无密钥无法还原）"

TABLES: list[AnalystTable] = [
    AnalystTable(
        "person", "人员（去标识化）：每个解析后的人一行，不含姓名、证件号、电话、确切出生日期和地址",
        """SELECT p.person_id AS person_key, p.gender, year(p.birth_date) AS birth_year,
                  CASE WHEN p.birth_date IS NULL THEN NULL
                       ELSE (least((year(current_date) - year(p.birth_date)) // 5 * 5, 100)) END AS age_band,
                  p.ethnicity, p.nationality, p.marital_status, p.is_deceased, year(p.death_date) AS death_year,
                  p.source_systems, p.mention_count
           FROM core.person p WHERE {scope}""",
        {"person_key": PERSON_KEY, "gender": "性别", "birth_year": "出生年份（不含月日）",
         "age_band": "年龄段（当前年份减出生年份，按 5 岁分组的下限；100 表示 100 岁及以上）",
         "ethnicity": "民族", "nationality": "国籍", "marital_status": "婚姻状况",
         "is_deceased": "是否已死亡", "death_year": "死亡年份（不含月日）",
         "source_systems": "有该人记录的来源部门", "mention_count": "各部门记录条数"},
        keys={"person_key": True}, scope="person", scope_on=("p.person_id",)),
    AnalystTable(
        "address", "地址（只到楼栋）：每个标准地址一行；不含门牌号、单元、楼层、室、村民小组和原文",
        """SELECT address_id, province, city, county, town, community, road, estate, building,
                  province_code, city_code, county_code, town_code, status
           FROM core.address WHERE {scope}""",
        {"address_id": "地址编号（官员仓库中的同一地址；一套房一个编号，不含房号信息）", "province": "省",
         "city": "市", "county": "县区", "town": "街道/乡镇", "community": "社区/村", "road": "路/街",
         "estate": "小区", "building": "楼栋", "province_code": "省级区划代码", "city_code": "市级区划代码",
         "county_code": "县级区划代码", "town_code": "乡级区划代码", "status": "地址解析状态"},
        scope="address", scope_on=("address_id",)),
    AnalystTable(
        "person_address", "人员与地址的关系（户籍、居住、家庭住址、生前住址）：每个人—地址—关系—来源一行",
        """SELECT pa.person_id AS person_key, pa.address_id, pa.kind, pa.source_system,
                  CAST(date_trunc('month', pa.valid_from) AS DATE) AS valid_from_month,
                  CAST(date_trunc('month', pa.valid_to) AS DATE) AS valid_to_month,
                  (pa.kind IN ('residence', 'household') AND (pa.valid_to IS NULL OR pa.valid_to > current_date)
                   AND NOT coalesce(p.is_deceased, FALSE)) AS is_current
           FROM core.person_address pa JOIN core.person p USING (person_id) WHERE {scope}""",
        {"person_key": PERSON_KEY, "address_id": "地址编号", "kind": "关系类型（hukou 户籍、residence 居住、household 家庭住址（低保）、last 生前住址）",
         "source_system": "来源部门", "valid_from_month": "起始月份（该月 1 日）",
         "valid_to_month": "终止月份（该月 1 日；为空表示至今）",
         "is_current": "当前是否居住于此（有效的居住或家庭住址关系，且本人未死亡）"},
        keys={"person_key": True}, scope="person", scope_on=("pa.person_id",),
        changes_with_the_date=("SELECT person_id FROM core.person_address WHERE valid_to > $since "
                               "AND valid_to <= current_date")),
    AnalystTable(
        "relationship", "人员之间的关系（配偶、父母子女、户主与成员等）：每条关系一行",
        """SELECT r.kind, r.person_id_from AS person_key_from, r.person_id_to AS person_key_to, r.source_system
           FROM core.relationship r WHERE {scope}""",
        {"kind": "关系类型", "person_key_from": "关系一方的人员假名键", "person_key_to": "关系另一方的人员假名键",
         "source_system": "来源部门"},
        keys={"person_key_from": True, "person_key_to": True}, scope="person",
        scope_on=("r.person_id_from", "r.person_id_to")),
    AnalystTable(
        "low_income_enrolment", "低保在保时段：每人每段一行（不含地址原文）",
        """SELECT e.person_id AS person_key, e.role, e.head_person_id AS head_person_key, e.category, e.amount_yuan,
                  CAST(date_trunc('month', e.valid_from) AS DATE) AS valid_from_month,
                  CAST(date_trunc('month', e.valid_to) AS DATE) AS valid_to_month, e.street, e.community
           FROM core.low_income_enrolment e WHERE {scope}""",
        {"person_key": PERSON_KEY, "role": "角色（head 户主 / member 成员）", "head_person_key": "户主的人员假名键",
         "category": "保障类别", "amount_yuan": "月保障金额（元）", "valid_from_month": "起始月份",
         "valid_to_month": "终止月份（为空表示仍在保）", "street": "街道", "community": "社区"},
        keys={"person_key": True, "head_person_key": False}, scope="person",
        scope_on=("e.person_id", "e.head_person_id")),
    AnalystTable(
        "low_income_households_by_community", "各月各社区低保户数、人数与金额",
        "SELECT month, street, community, households, persons, amount_yuan FROM mart.low_income_households_by_community",
        {"month": "月份（YYYY-MM）", "street": "街道", "community": "社区", "households": "低保户数（不同户主）",
         "persons": "低保人数（户内全部成员）", "amount_yuan": "当月保障金额合计（元，按户主行计）"}),
    AnalystTable(
        "floating_registration", "流动人口登记（去标识化）：每条登记一行，不含登记号、证号、地址和单位",
        """SELECT f.person_id AS person_key, f.status,
                  CAST(date_trunc('month', f.registration_date) AS DATE) AS registration_month,
                  CAST(date_trunc('month', f.cancelled_on) AS DATE) AS cancelled_month, f.residence_reason
           FROM core.floating_registration f WHERE {scope}""",
        {"person_key": PERSON_KEY, "status": "登记状态", "registration_month": "登记月份",
         "cancelled_month": "注销月份", "residence_reason": "居住事由"},
        keys={"person_key": True}, scope="person", scope_on=("f.person_id",)),
    AnalystTable(
        "fp_woman", "育龄妇女（计生）：每人一行，不含计生编号和避孕情况",
        """SELECT w.person_id AS person_key, w.spouse_person_id AS spouse_person_key, w.marital_status,
                  w.children_count
           FROM core.fp_woman w WHERE {scope}""",
        {"person_key": PERSON_KEY, "spouse_person_key": "配偶的人员假名键", "marital_status": "婚姻状况",
         "children_count": "子女数"},
        keys={"person_key": True, "spouse_person_key": False}, scope="person",
        scope_on=("w.person_id", "w.spouse_person_id")),
    AnalystTable(
        "fp_child", "子女（计生）：每个子女一行",
        """SELECT c.person_id AS person_key, coalesce(c.mother_person_id, w.person_id) AS mother_person_key,
                  c.birth_order
           FROM core.fp_child c LEFT JOIN core.fp_woman w ON w.ylfn_id = c.ylfn_id WHERE {scope}""",
        {"person_key": PERSON_KEY, "mother_person_key": "母亲的人员假名键", "birth_order": "孩次"},
        keys={"person_key": True, "mother_person_key": False}, scope="person",
        scope_on=("c.person_id", "coalesce(c.mother_person_id, w.person_id)")),
    AnalystTable(
        "alert", "跨部门预警（去标识化）：每条发现一行，只有类型、人员假名键和月份（说明与依据留在官员仓库）",
        """SELECT a.alert_kind, a.person_id AS person_key, CAST(date_trunc('month', a.alert_date) AS DATE) AS alert_month
           FROM core.alert a WHERE {scope}""",
        {"alert_kind": "预警类型", "person_key": PERSON_KEY, "alert_month": "预警所指的月份"},
        keys={"person_key": True}, scope="person", scope_on=("a.person_id",)),
    AnalystTable(
        "community_summary", "各社区现住户数与人数：每个社区一行",
        f"SELECT county, town, community, households, residents FROM "
        f"({community_summary_sql('{scope}', HOUSEHOLDS, RESIDENTS)})",
        {"county": "县区", "town": "街道/乡镇", "community": "社区/村（为空：地址中未能确定社区的住户合计）",
         "households": "现住户数", "residents": "现住人数"}, scope="community"),
    AnalystTable(
        "grid", "网格划分：每个现住户（地址编号）属于社区内的哪个网格",
        f"SELECT county, town, community, grid_no, address_id FROM ({grid_sql('{size}', '{scope}', HOUSEHOLDS)})",
        {"county": "县区", "town": "街道/乡镇", "community": "社区/村", "grid_no": "网格号（社区内从 1 起）",
         "address_id": "地址编号"}, scope="community"),
    AnalystTable(
        "load_summary", "各来源每次装载的读取、接收、拒收行数",
        """SELECT run_id, source_system, mapping, export_date, status, rows_read, rows_accepted, rows_rejected,
                  rows_skipped, mentions, loaded_at FROM mart.load_summary""",
        {"run_id": "运行编号", "source_system": "来源部门", "mapping": "导出类型", "export_date": "导出日期",
         "status": "装载状态", "rows_read": "读取行数", "rows_accepted": "接收行数", "rows_rejected": "拒收行数",
         "rows_skipped": "跳过行数", "mentions": "人员提及数", "loaded_at": "装载时间"}),
]


def pseudonym(secret: bytes, person_id: str) -> str:
    """The analysts' key of one person: 'K' + the first 20 hex digits of
    HMAC-SHA256(secret, person_id) (80 bits: no collision to expect below 10^10 persons).
    `build` computes the same in SQL for every person at once."""
    return "K" + hmac.new(secret, person_id.encode(), hashlib.sha256).hexdigest()[:20]


def _hmac_pads(secret: bytes) -> tuple[bytes, bytes]:
    """HMAC's inner and outer padded keys (RFC 2104; a key longer than the block is hashed)."""
    key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


#: HMAC-SHA256(secret, person_id) in DuckDB: H(opad || H(ipad || m)), vectorised
#: (a million keys in SQL instead of a million Python calls), for the ids in `{ids}`;
#: `live`: the person is in core.person (only live persons get a key in the file).
#: `{keyed}`: ids already in the map, not hashed again (`_MORE_KEYS`)
_KEY_ROWS = """
SELECT i.person_id, 'K' || left(sha256($opad || unhex(sha256($ipad || encode(i.person_id)))), 20) AS person_key,
       p.person_id IS NOT NULL AS live
FROM (SELECT DISTINCT person_id FROM ({ids}) WHERE person_id IS NOT NULL{keyed}) i
LEFT JOIN core.person p USING (person_id)"""
_KEY_MAP = "CREATE OR REPLACE TEMP TABLE person_key_map AS" + _KEY_ROWS.replace("{keyed}", "")
_MORE_KEYS = "INSERT INTO person_key_map" + _KEY_ROWS.replace(
    "{keyed}", " AND person_id NOT IN (SELECT person_id FROM person_key_map)")

#: how the file was built, for the next publish to decide whether it can update it
INFO = AnalystTable(
    "build_info", "本文件的生成信息：由官员仓库的哪一次发布生成、何时、全量还是增量",
    "",
    {"generation": "生成本文件的官员仓库发布编号（quality.publish.generation）",
     "built_at": "生成时间", "build_date": "生成日期（“当前是否居住”等随日期变化的列以此日为准）",
     "mode": "生成方式：full 全量重建、incremental 只重算本次变化的人员和地址",
     "why_full": "全量重建的原因（增量时为空）", "persons_rebuilt": "本次重算的人员数",
     "tables_fingerprint": "表定义的指纹（定义改变后下一次发布全量重建）",
     "key_check": "假名密钥的校验值（换了密钥，下一次发布全量重建；由此无法推出密钥）"})

_INFO_SQL = f"""
CREATE TABLE IF NOT EXISTS {ALIAS}.main.build_info (generation VARCHAR, built_at TIMESTAMP, build_date DATE,
    mode VARCHAR, why_full VARCHAR, persons_rebuilt BIGINT, tables_fingerprint VARCHAR, key_check VARCHAR)"""


@dataclass(frozen=True)
class BuildReport:
    """What one publish did to the analyst file."""

    mode: str               # "full" | "incremental"
    why_full: str | None    # why not incremental (None when incremental)
    persons: int            # persons whose rows were derived again (every person in a full build)


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def tables_fingerprint(grid_households: int = 300) -> str:
    text = repr([(t.name, t.sql, t.columns, t.keys, t.scope, t.scope_on, t.changes_with_the_date) for t in TABLES]
                + [("grid_households", int(grid_households))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key_check(secret: bytes) -> str:
    """A value that changes with the key and tells nothing about it (letters only, so no
    check for identifiers in the file can mistake it for a number)."""
    digest = hmac.new(secret, b"residents-analyst-key-check", hashlib.sha256).hexdigest()[:20]
    return digest.translate(str.maketrans("0123456789", "ghijklmnop"))


#: the row filter of the aggregates by community in an update: the addresses of the
#: communities it touched (`_TOUCHED_COMMUNITIES`)
_IN_TOUCHED_COMMUNITIES = "address_id IN (SELECT k FROM _analyst_ca)"


def _row_filter(table: AnalystTable, dirty: tuple[str, str] | None) -> str:
    if dirty is None or table.scope == "all":
        return "TRUE"
    if table.scope == "community":
        return _IN_TOUCHED_COMMUNITIES
    keys = dirty[0] if table.scope == "person" else dirty[1]
    return "(" + " OR ".join(f"{e} IN (SELECT k FROM {keys})" for e in table.scope_on) + ")"


def _published(table: AnalystTable, source: str) -> str:
    """SELECT of `table`'s published columns from `source` (its rows with officer ids under
    the key columns), each key replaced by the person's pseudonym."""
    cols, joins = [], []
    for i, column in enumerate(table.columns):
        if column in table.keys:
            cols.append(f'k{i}.person_key AS "{column}"')
            joins.append(f'{"JOIN" if table.keys[column] else "LEFT JOIN"} person_key_map k{i} '
                         f'ON k{i}.person_id = r."{column}" AND k{i}.live')
        else:
            cols.append(f'r."{column}"')
    return f"SELECT {', '.join(cols)} FROM {source} r {' '.join(joins)}"


def _write_difference(con: duckdb.DuckDBPyConnection, target: str, table: AnalystTable, source: str) -> None:
    """Bring the rows of the touched communities (`_analyst_cc`) in `target` to `source`'s
    (their rows derived again; a community table has no key columns and no two equal rows):
    the rows no longer derived deleted, the new ones inserted, the others left alone."""
    cols = [f'"{c}"' for c in table.columns]
    same = " AND ".join(f"r.{c} IS NOT DISTINCT FROM t.{c}" for c in cols)
    touched = ("EXISTS (SELECT 1 FROM _analyst_cc c WHERE c.county IS NOT DISTINCT FROM t.county "
               "AND c.community IS NOT DISTINCT FROM t.community)")
    con.execute(f"DELETE FROM {target} t WHERE {touched} AND NOT EXISTS (SELECT 1 FROM {source} r WHERE {same})")
    con.execute(f"INSERT INTO {target} SELECT {', '.join(cols)} FROM {source} "
                f"EXCEPT ALL SELECT {', '.join(cols)} FROM {target} t WHERE {touched}")


def _comment(con: duckdb.DuckDBPyConnection, table: AnalystTable) -> None:
    con.execute(f"COMMENT ON TABLE {ALIAS}.main.{table.name} IS {_q(table.comment)}")
    for column, text in table.columns.items():
        con.execute(f'COMMENT ON COLUMN {ALIAS}.main.{table.name}."{column}" IS {_q(text)}')


def _check_columns(con: duckdb.DuckDBPyConnection, table: AnalystTable) -> None:
    got = [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ? "
        "ORDER BY column_index", [ALIAS, table.name]).fetchall()]
    if got != list(table.columns):
        raise ValueError(f"analyst table {table.name}: columns {got} differ from the declared "
                         f"{list(table.columns)} (warehouse/analyst.py)")


def _write_info(con: duckdb.DuckDBPyConnection, secret: bytes, generation: str | None, report: BuildReport,
                grid_households: int) -> None:
    con.execute(_INFO_SQL)
    con.execute(f"DELETE FROM {ALIAS}.main.build_info")
    con.execute(f"INSERT INTO {ALIAS}.main.build_info VALUES (?, now(), current_date, ?, ?, ?, ?, ?)",
                [generation, report.mode, report.why_full, report.persons, tables_fingerprint(grid_households),
                 key_check(secret)])
    _comment(con, INFO)


def _households(con: duckdb.DuckDBPyConnection, scope: str) -> None:
    """RESIDENTS and HOUSEHOLDS for the addresses `scope` (a condition on `address_id`)
    holds: the aggregates by community read them (one join of the person-address links
    with the persons for both)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {RESIDENTS} AS {current_residents(scope)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {HOUSEHOLDS} AS {households_sql(scope, RESIDENTS)}")


def _sql(table: AnalystTable, row_filter: str, grid_households: int) -> str:
    return table.sql.replace("{scope}", row_filter).replace("{size}", f"{int(grid_households)}.0")


def build(con: duckdb.DuckDBPyConnection, out: Path, secret: bytes, *, generation: str | None = None,
          why_full: str | None = None, grid_households: int = 300) -> BuildReport:
    """Write the analyst file at `out` (replaced if it exists) from the warehouse open on
    `con` (committed: DuckDB writes one attached database per transaction)."""
    out.unlink(missing_ok=True)
    out.with_name(out.name + ".wal").unlink(missing_ok=True)
    ipad, opad = _hmac_pads(secret)
    con.execute(_KEY_MAP.format(ids="SELECT person_id FROM core.person"), {"ipad": ipad, "opad": opad})
    con.execute(f"ATTACH {_q(str(out))} AS {ALIAS}")
    try:
        _households(con, "TRUE")
        for table in TABLES:
            source = "(" + _sql(table, "TRUE", grid_households) + ")"
            con.execute(f"CREATE TABLE {ALIAS}.main.{table.name} AS {_published(table, source)}")
            _check_columns(con, table)
            _comment(con, table)
        persons = con.execute("SELECT count(*) FROM person_key_map").fetchall()[0][0]
        report = BuildReport("full", why_full, persons)
        _write_info(con, secret, generation, report, grid_households)
        checkpoint(con, ALIAS)
    finally:
        con.execute(f"DETACH {ALIAS}")
        con.execute("DROP TABLE IF EXISTS temp.person_key_map")
        con.execute(f"DROP TABLE IF EXISTS temp.{HOUSEHOLDS}; DROP TABLE IF EXISTS temp.{RESIDENTS}")
    return report


#: the communities (county, community) whose aggregates an update derives again: those of
#: the changed addresses and of every address of a changed person, in the warehouse (after)
#: and in the analyst file being updated (before); and every address of those communities
_TOUCHED_COMMUNITIES = f"""
CREATE OR REPLACE TEMP TABLE _analyst_ta AS
SELECT k AS address_id FROM {{addresses}}
UNION SELECT address_id FROM core.person_address WHERE person_id IN (SELECT k FROM _analyst_dp)
UNION SELECT address_id FROM {ALIAS}.main.person_address WHERE person_key IN (SELECT k FROM _analyst_dk);
CREATE OR REPLACE TEMP TABLE _analyst_cc AS
SELECT county, community FROM core.address WHERE address_id IN (SELECT address_id FROM _analyst_ta)
UNION SELECT county, community FROM {ALIAS}.main.address WHERE address_id IN (SELECT address_id FROM _analyst_ta);
CREATE OR REPLACE TEMP TABLE _analyst_ca AS
SELECT address_id AS k FROM core.address a
WHERE EXISTS (SELECT 1 FROM _analyst_cc c WHERE c.county IS NOT DISTINCT FROM a.county
              AND c.community IS NOT DISTINCT FROM a.community)"""


def _update(con: duckdb.DuckDBPyConnection, out: Path, secret: bytes, scope: tuple[str, str], since: Any,
            generation: str | None, grid_households: int = 300) -> BuildReport:
    """Bring the analyst file at `out` (a copy of the one built from the previous publish)
    up to the warehouse on `con`: only the rows of the persons and addresses in `scope`
    (the sync's build scope) are deleted and derived again, the aggregates by community
    for the communities they touch (`_TOUCHED_COMMUNITIES`), the others in full."""
    persons, addresses = scope
    dated = [t.changes_with_the_date.replace("$since", f"DATE {_q(str(since))}")
             for t in TABLES if t.changes_with_the_date]
    con.execute("CREATE OR REPLACE TEMP TABLE _analyst_dp AS SELECT k FROM "
                + " UNION SELECT k FROM ".join([persons] + [f"({sql}) d(k)" for sql in dated]))
    dirty = ("_analyst_dp", addresses)
    staged = ["_analyst_ta", "_analyst_cc", "_analyst_ca"]
    ipad, opad = _hmac_pads(secret)
    con.execute(f"ATTACH {_q(str(out))} AS {ALIAS}")
    try:
        # the pseudonyms of the dirty persons first (their rows in the file are found by
        # them), then of everyone the derived rows name
        con.execute(_KEY_MAP.format(ids="SELECT k AS person_id FROM _analyst_dp"), {"ipad": ipad, "opad": opad})
        con.execute("CREATE OR REPLACE TEMP TABLE _analyst_dk AS SELECT person_key AS k FROM person_key_map")
        for stmt in _TOUCHED_COMMUNITIES.format(addresses=addresses).split(";\n"):
            con.execute(stmt)
        _households(con, _IN_TOUCHED_COMMUNITIES)
        for table in TABLES:
            name = f"_analyst_rows_{table.name}"
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS " + _sql(table, _row_filter(table, dirty),
                                                                          grid_households))
            staged.append(name)
        ids = " UNION ALL ".join(f'SELECT "{c}" AS person_id FROM _analyst_rows_{t.name}'
                                 for t in TABLES for c in t.keys)
        con.execute(_MORE_KEYS.format(ids=ids), {"ipad": ipad, "opad": opad})
        con.execute("BEGIN TRANSACTION")
        for table in TABLES:
            target = f"{ALIAS}.main.{table.name}"
            if table.scope == "all":
                con.execute(f"DELETE FROM {target}")
            elif table.scope == "person":
                con.execute(f"DELETE FROM {target} WHERE "
                            + " OR ".join(f'"{c}" IN (SELECT k FROM _analyst_dk)' for c in table.keys))
            elif table.scope == "community":
                # by difference: a household moving in renumbers the grid of its community
                # after it, not all of it (a nightly sync touches nearly every community:
                # ~12 000 of its 220 000 grid rows differ at 1M residents, not all of them)
                _write_difference(con, target, table, f"_analyst_rows_{table.name}")
                continue
            else:
                con.execute(f"DELETE FROM {target} WHERE address_id IN (SELECT k FROM {addresses})")
            con.execute(f"INSERT INTO {target} {_published(table, f'_analyst_rows_{table.name}')}")
        n = con.execute("SELECT count(*) FROM _analyst_dp").fetchall()[0][0]
        report = BuildReport("incremental", None, n)
        _write_info(con, secret, generation, report, grid_households)
        # no vacuum of the deleted rows (0.1-0.4 s of the 1M delta's publish): the file is
        # built anew every month (`why_full`), without them
        commit_without_vacuum(con, ALIAS)
    except BaseException:
        with contextlib.suppress(Exception):
            con.execute("ROLLBACK")
        raise
    finally:
        with contextlib.suppress(Exception):
            con.execute(f"DETACH {ALIAS}")
        for name in (*staged, "_analyst_dp", "_analyst_dk", "person_key_map", HOUSEHOLDS, RESIDENTS):
            con.execute(f"DROP TABLE IF EXISTS temp.{name}")
    return report


def _previous_build(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, Any] | None:
    """The build_info of the published analyst file at `path`, or None if unreadable."""
    try:
        con.execute(f"ATTACH {_q(str(path))} AS analyst_prev (READ_ONLY)")
    except duckdb.Error:
        return None
    try:
        cur = con.execute("SELECT * FROM analyst_prev.main.build_info")
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        return dict(zip(names, rows[0])) if len(rows) == 1 else None
    except duckdb.Error:
        return None
    finally:
        con.execute("DETACH analyst_prev")


def why_full(con: duckdb.DuckDBPyConnection, target: Path, secret: bytes, previous_generation: str | None,
             today: Any = None, grid_households: int = 300) -> str | None:
    """Why this publish must build the analyst file in full, or None when it may update
    the published one: it exists, was built from the previous publish (nothing was
    published since without it), with the same table declarations and key, this month
    (a monthly full build also compacts the file), and this sync's build was scoped."""
    from warehouse.build import build_scope

    if build_scope(con) is None:
        return "full_build"           # the officer build was full, or no build ran
    if not target.exists():
        return "no_file"
    info = _previous_build(con, target)
    if info is None:
        return "unreadable"
    today = today or con.execute("SELECT current_date").fetchall()[0][0]
    if previous_generation is None or info["generation"] != previous_generation:
        return "missed_publish"
    if info["tables_fingerprint"] != tables_fingerprint(grid_households):
        return "declarations_changed"
    if info["key_check"] != key_check(secret):
        return "key_changed"
    built = info["build_date"]
    if built is None or (built.year, built.month) != (today.year, today.month) or built > today:
        return "new_month"            # ages are by year; a monthly rebuild also compacts the file
    return None


def publisher(target: Path, secret: bytes, on_build: Callable[[BuildReport], None] | None = None, *,
              grid_households: int = 300) -> Callable[[duckdb.DuckDBPyConnection], Callable[[], None]]:
    """A `store.transaction(before_publish=...)` hook: writes `<target>.building` from the
    committed working copy — a copy of the published file brought up to date when
    `why_full` allows it, else built in full — and returns the function that renames it
    over `target`. `on_build` receives what was done."""
    work = target.with_name(target.name + ".building")
    standby.prefetch_for_write(target)  # copied at the end of the transaction: read it meanwhile

    def before_publish(con: duckdb.DuckDBPyConnection) -> Callable[[], None]:
        from warehouse.build import build_scope
        from warehouse.store import owner_only, publish_generations

        generation, previous = publish_generations(con)
        try:
            reason = why_full(con, target, secret, previous, grid_households=grid_households)
            report = None
            if reason is None:
                work.unlink(missing_ok=True)
                work.with_name(work.name + ".wal").unlink(missing_ok=True)
                if not standby.adopt(target, work):  # the spare made after the last publish, else a copy
                    copy_file(target, work)
                since = _previous_build(con, target)["build_date"]
                report = _update(con, work, secret, build_scope(con), since, generation, grid_households)
            else:
                report = build(con, work, secret, generation=generation, why_full=reason,
                               grid_households=grid_households)
        except BaseException:  # the sync fails and publishes nothing: no half-built file stays
            work.unlink(missing_ok=True)
            work.with_name(work.name + ".wal").unlink(missing_ok=True)
            raise
        with open(work, "rb+") as fh:
            os.fsync(fh.fileno())
        if owner_only():
            work.chmod(ANALYST_FILE_MODE)
        if on_build is not None:
            on_build(report)

        def publish() -> None:
            standby.publish(work, target)

        return publish

    return before_publish
