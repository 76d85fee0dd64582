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
    "mart.load_summary": (
        "各来源每次装载的读取、接收、拒收行数",
        """SELECT l.run_id, l.source_system, l.mapping, l.source_object, l.export_date, l.status,
                  l.rows_read, l.rows_accepted, l.rows_rejected, l.rows_skipped, l.values_rejected, l.mentions,
                  l.loaded_at
           FROM quality.load_ledger l""",
    ),
}


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS mart")
    for stmt in MACROS:
        con.execute(stmt)
    for name, (comment, sql) in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
        con.execute(f"COMMENT ON VIEW {name} IS '{comment}'")
