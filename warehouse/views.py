"""Analyst views (`mart`). They never show a full citizen ID or phone number."""

from __future__ import annotations

import duckdb

MACROS = [
    # 110105********1234: region and last four kept
    "CREATE OR REPLACE MACRO mart.mask_id(s) AS CASE WHEN s IS NULL THEN NULL "
    "WHEN length(s) >= 10 THEN left(s, 6) || repeat('*', length(s) - 10) || right(s, 4) ELSE repeat('*', length(s)) END",
    # 138****5678, 0437-****234
    "CREATE OR REPLACE MACRO mart.mask_phone(s) AS CASE WHEN s IS NULL THEN NULL "
    "WHEN length(s) >= 7 THEN left(s, 3) || repeat('*', length(s) - 6) || right(s, 3) ELSE repeat('*', length(s)) END",
]

VIEWS: dict[str, tuple[str, str]] = {
    "mart.person": (
        "人员（脱敏）：每个解析后的人一行",
        """SELECT person_id, mart.mask_id(citizen_id) AS citizen_id_masked, name, gender, birth_date, ethnicity,
                  marital_status, mart.mask_phone(phone) AS phone_masked, current_address, death_date, is_deceased,
                  source_systems, mention_count, first_seen_on, last_seen_on
           FROM core.person""",
    ),
    "mart.person_sources": (
        "人员在各部门的记录（居民360视图的明细）：每个人员提及一行",
        """SELECT x.person_id, x.source_system, x.source_object, x.source_locator, x.role, x.match_method,
                  x.match_probability, m.name, m.birth_date, m.export_date
           FROM core.person_xref x JOIN stg.mention m USING (mention_id)""",
    ),
    "mart.alerts": (
        "跨部门预警：每条发现一行（死亡后仍领低保、死亡后仍在住、身份证号信息冲突、婚姻状况冲突）",
        """SELECT a.alert_id, a.alert_kind, a.person_id, p.name, mart.mask_id(p.citizen_id) AS citizen_id_masked,
                  a.alert_date, a.detail, a.evidence
           FROM core.alert a LEFT JOIN core.person p USING (person_id)""",
    ),
    "mart.low_income_current": (
        "当前在保的低保对象（最新花名册月份仍在册）",
        """SELECT e.person_id, p.name, e.role, e.head_person_id, e.category, e.amount_yuan, e.valid_from,
                  e.street, e.community, p.is_deceased, p.death_date
           FROM core.low_income_enrolment e JOIN core.person p USING (person_id)
           WHERE e.valid_to IS NULL""",
    ),
    "mart.low_income_households_by_community": (
        "各月各社区低保户数、人数与金额",
        """SELECT month, street, community, count(DISTINCT head_person_id) AS households,
                  count(DISTINCT person_id) AS persons,
                  sum(amount_yuan) FILTER (WHERE role = 'head') AS amount_yuan
           FROM core.low_income_roster_line GROUP BY ALL""",
    ),
    "mart.floating_current": (
        "流动人口登记当前状态（脱敏）",
        """SELECT f.registration_no, f.person_id, p.name, f.status, f.registration_date, f.cancelled_on,
                  f.residence_reason, f.current_address, f.updated_at, p.is_deceased
           FROM core.floating_registration f JOIN core.person p USING (person_id)""",
    ),
    "mart.address": (
        "标准地址：每套房一行，含行政层级与楼栋单元室",
        """SELECT address_id, standard_text, province, city, county, town, community, road, house_number, estate,
                  building, unit, room, rural_group, county_code, town_code, confidence, status, mention_count,
                  source_systems
           FROM core.address""",
    ),
    "mart.address_residents": (
        "这套房住着谁（各部门口径）：每个人—地址关系一行",
        """SELECT a.address_id, a.standard_text, a.town, a.community, pa.person_id, p.name, p.gender, p.birth_date,
                  p.is_deceased, pa.kind, pa.source_system, pa.valid_from, pa.valid_to,
                  (pa.valid_to IS NULL OR pa.valid_to > current_date) AND NOT coalesce(p.is_deceased, FALSE) AS is_current
           FROM core.person_address pa JOIN core.address a USING (address_id) JOIN core.person p USING (person_id)""",
    ),
    "mart.community_summary": (
        "各社区户数（有现住人员的地址）与人数（按居住、家庭住址关系）",
        """SELECT a.county, a.town, a.community, count(DISTINCT pa.address_id) AS households,
                  count(DISTINCT pa.person_id) AS residents
           FROM core.person_address pa JOIN core.address a USING (address_id) JOIN core.person p USING (person_id)
           WHERE pa.kind IN ('residence', 'household') AND (pa.valid_to IS NULL OR pa.valid_to > current_date)
             AND NOT coalesce(p.is_deceased, FALSE)
           GROUP BY ALL""",
    ),
    "mart.load_summary": (
        "各来源每次装载的读取、接收、拒收行数",
        """SELECT l.run_id, l.source_system, l.mapping, l.source_object, l.export_date, l.status,
                  l.rows_read, l.rows_accepted, l.rows_rejected, l.rows_skipped, l.values_rejected, l.mentions,
                  l.loaded_at
           FROM quality.load_ledger l""",
    ),
}


GRID_VIEW = """
CREATE OR REPLACE VIEW mart.grid AS
WITH households AS (
  SELECT DISTINCT a.address_id, a.county, a.town, a.community, a.road, a.house_number, a.estate, a.building,
         a.unit, a.room, a.rural_group, a.standard_text
  FROM core.person_address pa JOIN core.address a USING (address_id) JOIN core.person p USING (person_id)
  WHERE pa.kind IN ('residence', 'household') AND (pa.valid_to IS NULL OR pa.valid_to > current_date)
    AND NOT coalesce(p.is_deceased, FALSE) AND a.community IS NOT NULL),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY county, town, community
            ORDER BY road NULLS LAST, TRY_CAST(house_number AS INTEGER) NULLS LAST, house_number, estate,
                     TRY_CAST(building AS INTEGER) NULLS LAST, building, TRY_CAST(unit AS INTEGER) NULLS LAST,
                     TRY_CAST(room AS INTEGER) NULLS LAST, room, rural_group, address_id) AS seq
  FROM households)
SELECT county, town, community, CAST(ceil(seq / {size}) AS INTEGER) AS grid_no, address_id, standard_text, seq
FROM ranked
"""


def create_views(con: duckdb.DuckDBPyConnection, *, grid_households: int = 300) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS mart")
    for stmt in MACROS:
        con.execute(stmt)
    for name, (comment, sql) in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
        con.execute(f"COMMENT ON VIEW {name} IS '{comment}'")
    create_grid_view(con, grid_households)


def create_grid_view(con: duckdb.DuckDBPyConnection, grid_households: int) -> None:
    """网格：each community's households in address order, cut into groups of `grid_households`."""
    size = int(grid_households)
    if size < 1:
        raise ValueError("grid_households must be at least 1")
    con.execute(GRID_VIEW.format(size=f"{size}.0"))
    con.execute(f"COMMENT ON VIEW mart.grid IS '网格划分：每个社区按地址顺序每 {size} 户一个网格'")
