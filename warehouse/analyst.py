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

The file is rebuilt from the committed working copy on every publish of the officer
warehouse (`store.transaction(before_publish=...)`) and renamed into place just before
it, so it is never half-written and never older than one sync. Every table and column
carries a Chinese comment, declared here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

#: the database name the analyst file is attached under while it is written
ALIAS = "analyst_out"
#: the analyst file is for other users: owner read-write, group read (put the analysts in
#: the file's group and its folder where they can reach it: setting `analyst_warehouse`)
ANALYST_FILE_MODE = 0o640


@dataclass(frozen=True)
class AnalystTable:
    name: str
    comment: str
    sql: str                       # reads the officer warehouse and `person_key_map`
    columns: dict[str, str]        # column → Chinese comment (every column, in order)


PERSON_KEY = "人员假名键（以密钥对人员编号做 HMAC-SHA256，跨运行稳定；无密钥无法还原）"

TABLES: list[AnalystTable] = [
    AnalystTable(
        "person", "人员（去标识化）：每个解析后的人一行，不含姓名、证件号、电话、确切出生日期和地址",
        """SELECT k.person_key, p.gender, year(p.birth_date) AS birth_year,
                  CASE WHEN p.birth_date IS NULL THEN NULL
                       ELSE (least((year(current_date) - year(p.birth_date)) // 5 * 5, 100)) END AS age_band,
                  p.ethnicity, p.nationality, p.marital_status, p.is_deceased, year(p.death_date) AS death_year,
                  p.source_systems, p.mention_count
           FROM core.person p JOIN person_key_map k USING (person_id)""",
        {"person_key": PERSON_KEY, "gender": "性别", "birth_year": "出生年份（不含月日）",
         "age_band": "年龄段（当前年份减出生年份，按 5 岁分组的下限；100 表示 100 岁及以上）",
         "ethnicity": "民族", "nationality": "国籍", "marital_status": "婚姻状况",
         "is_deceased": "是否已死亡", "death_year": "死亡年份（不含月日）",
         "source_systems": "有该人记录的来源部门", "mention_count": "各部门记录条数"}),
    AnalystTable(
        "address", "地址（只到楼栋）：每个标准地址一行；不含门牌号、单元、楼层、室、村民小组和原文",
        """SELECT address_id, province, city, county, town, community, road, estate, building,
                  province_code, city_code, county_code, town_code, status
           FROM core.address""",
        {"address_id": "地址编号（官员仓库中的同一地址；一套房一个编号，不含房号信息）", "province": "省",
         "city": "市", "county": "县区", "town": "街道/乡镇", "community": "社区/村", "road": "路/街",
         "estate": "小区", "building": "楼栋", "province_code": "省级区划代码", "city_code": "市级区划代码",
         "county_code": "县级区划代码", "town_code": "乡级区划代码", "status": "地址解析状态"}),
    AnalystTable(
        "person_address", "人员与地址的关系（户籍、居住、家庭住址、生前住址）：每个人—地址—关系—来源一行",
        """SELECT k.person_key, pa.address_id, pa.kind, pa.source_system,
                  CAST(date_trunc('month', pa.valid_from) AS DATE) AS valid_from_month,
                  CAST(date_trunc('month', pa.valid_to) AS DATE) AS valid_to_month,
                  (pa.kind IN ('residence', 'household') AND (pa.valid_to IS NULL OR pa.valid_to > current_date)
                   AND NOT coalesce(p.is_deceased, FALSE)) AS is_current
           FROM core.person_address pa JOIN core.person p USING (person_id)
           JOIN person_key_map k USING (person_id)""",
        {"person_key": PERSON_KEY, "address_id": "地址编号", "kind": "关系类型（hukou 户籍、residence 居住、household 家庭住址（低保）、last 生前住址）",
         "source_system": "来源部门", "valid_from_month": "起始月份（该月 1 日）",
         "valid_to_month": "终止月份（该月 1 日；为空表示至今）",
         "is_current": "当前是否居住于此（有效的居住或家庭住址关系，且本人未死亡）"}),
    AnalystTable(
        "relationship", "人员之间的关系（配偶、父母子女、户主与成员等）：每条关系一行",
        """SELECT r.kind, a.person_key AS person_key_from, b.person_key AS person_key_to, r.source_system
           FROM core.relationship r JOIN person_key_map a ON a.person_id = r.person_id_from
           JOIN person_key_map b ON b.person_id = r.person_id_to""",
        {"kind": "关系类型", "person_key_from": "关系一方的人员假名键", "person_key_to": "关系另一方的人员假名键",
         "source_system": "来源部门"}),
    AnalystTable(
        "low_income_enrolment", "低保在保时段：每人每段一行（不含地址原文）",
        """SELECT k.person_key, e.role, h.person_key AS head_person_key, e.category, e.amount_yuan,
                  CAST(date_trunc('month', e.valid_from) AS DATE) AS valid_from_month,
                  CAST(date_trunc('month', e.valid_to) AS DATE) AS valid_to_month, e.street, e.community
           FROM core.low_income_enrolment e JOIN person_key_map k USING (person_id)
           LEFT JOIN person_key_map h ON h.person_id = e.head_person_id""",
        {"person_key": PERSON_KEY, "role": "角色（head 户主 / member 成员）", "head_person_key": "户主的人员假名键",
         "category": "保障类别", "amount_yuan": "月保障金额（元）", "valid_from_month": "起始月份",
         "valid_to_month": "终止月份（为空表示仍在保）", "street": "街道", "community": "社区"}),
    AnalystTable(
        "low_income_households_by_community", "各月各社区低保户数、人数与金额",
        "SELECT month, street, community, households, persons, amount_yuan FROM mart.low_income_households_by_community",
        {"month": "月份（YYYY-MM）", "street": "街道", "community": "社区", "households": "低保户数（不同户主）",
         "persons": "低保人数（户内全部成员）", "amount_yuan": "当月保障金额合计（元，按户主行计）"}),
    AnalystTable(
        "floating_registration", "流动人口登记（去标识化）：每条登记一行，不含登记号、证号、地址和单位",
        """SELECT k.person_key, f.status, CAST(date_trunc('month', f.registration_date) AS DATE) AS registration_month,
                  CAST(date_trunc('month', f.cancelled_on) AS DATE) AS cancelled_month, f.residence_reason
           FROM core.floating_registration f JOIN person_key_map k USING (person_id)""",
        {"person_key": PERSON_KEY, "status": "登记状态", "registration_month": "登记月份",
         "cancelled_month": "注销月份", "residence_reason": "居住事由"}),
    AnalystTable(
        "fp_woman", "育龄妇女（计生）：每人一行，不含计生编号和避孕情况",
        """SELECT k.person_key, s.person_key AS spouse_person_key, w.marital_status, w.children_count
           FROM core.fp_woman w JOIN person_key_map k USING (person_id)
           LEFT JOIN person_key_map s ON s.person_id = w.spouse_person_id""",
        {"person_key": PERSON_KEY, "spouse_person_key": "配偶的人员假名键", "marital_status": "婚姻状况",
         "children_count": "子女数"}),
    AnalystTable(
        "fp_child", "子女（计生）：每个子女一行",
        """SELECT k.person_key, m.person_key AS mother_person_key, c.birth_order
           FROM core.fp_child c JOIN person_key_map k USING (person_id)
           LEFT JOIN core.fp_woman w ON w.ylfn_id = c.ylfn_id
           LEFT JOIN person_key_map m ON m.person_id = coalesce(c.mother_person_id, w.person_id)""",
        {"person_key": PERSON_KEY, "mother_person_key": "母亲的人员假名键", "birth_order": "孩次"}),
    AnalystTable(
        "alert", "跨部门预警（去标识化）：每条发现一行，只有类型、人员假名键和月份（说明与依据留在官员仓库）",
        """SELECT a.alert_kind, k.person_key, CAST(date_trunc('month', a.alert_date) AS DATE) AS alert_month
           FROM core.alert a JOIN person_key_map k USING (person_id)""",
        {"alert_kind": "预警类型", "person_key": PERSON_KEY, "alert_month": "预警所指的月份"}),
    AnalystTable(
        "community_summary", "各社区现住户数与人数：每个社区一行",
        "SELECT county, town, community, households, residents FROM mart.community_summary",
        {"county": "县区", "town": "街道/乡镇", "community": "社区/村（为空：地址中未能确定社区的住户合计）",
         "households": "现住户数", "residents": "现住人数"}),
    AnalystTable(
        "grid", "网格划分：每个现住户（地址编号）属于社区内的哪个网格",
        "SELECT county, town, community, grid_no, address_id FROM mart.grid",
        {"county": "县区", "town": "街道/乡镇", "community": "社区/村", "grid_no": "网格号（社区内从 1 起）",
         "address_id": "地址编号"}),
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
#: (a million keys in SQL instead of a million Python calls)
_KEY_MAP = """
CREATE OR REPLACE TEMP TABLE person_key_map AS
SELECT person_id, 'K' || left(sha256($opad || unhex(sha256($ipad || encode(person_id)))), 20) AS person_key
FROM core.person"""


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def build(con: duckdb.DuckDBPyConnection, out: Path, secret: bytes) -> None:
    """Write the analyst file at `out` (replaced if it exists) from the warehouse open on
    `con` (committed: DuckDB writes one attached database per transaction)."""
    out.unlink(missing_ok=True)
    out.with_name(out.name + ".wal").unlink(missing_ok=True)
    ipad, opad = _hmac_pads(secret)
    con.execute(_KEY_MAP, {"ipad": ipad, "opad": opad})
    con.execute(f"ATTACH {_q(str(out))} AS {ALIAS}")
    try:
        for table in TABLES:
            con.execute(f"CREATE TABLE {ALIAS}.main.{table.name} AS {table.sql}")
            con.execute(f"COMMENT ON TABLE {ALIAS}.main.{table.name} IS {_q(table.comment)}")
            got = [r[0] for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ? "
                "ORDER BY column_index", [ALIAS, table.name]).fetchall()]
            if got != list(table.columns):
                raise ValueError(f"analyst table {table.name}: columns {got} differ from the declared "
                                 f"{list(table.columns)} (warehouse/analyst.py)")
            for column, text in table.columns.items():
                con.execute(f'COMMENT ON COLUMN {ALIAS}.main.{table.name}."{column}" IS {_q(text)}')
        con.execute(f"CHECKPOINT {ALIAS}")
    finally:
        con.execute(f"DETACH {ALIAS}")
        con.execute("DROP TABLE IF EXISTS temp.person_key_map")


def publisher(target: Path, secret: bytes) -> Callable[[duckdb.DuckDBPyConnection], Callable[[], None]]:
    """A `store.transaction(before_publish=...)` hook: builds `<target>.building` from the
    committed working copy and returns the function that renames it over `target`."""
    work = target.with_name(target.name + ".building")

    def before_publish(con: duckdb.DuckDBPyConnection) -> Callable[[], None]:
        try:
            build(con, work, secret)
        except BaseException:  # the sync fails and publishes nothing: no half-built file stays
            work.unlink(missing_ok=True)
            work.with_name(work.name + ".wal").unlink(missing_ok=True)
            raise
        with open(work, "rb+") as fh:
            os.fsync(fh.fileno())
        from warehouse.store import owner_only

        if owner_only():
            work.chmod(ANALYST_FILE_MODE)

        def publish() -> None:
            os.replace(work, target)

        return publish

    return before_publish
