"""Rebuild `core` from staging and the resolution result, in SQL.

Staging (`stg`) holds every accepted record and mention of every export that is
currently loaded; `core` is derived from it deterministically on every sync, so a
correction or a backfill is reflected everywhere and the same staging always gives
the same core. Only the person-id history (`core.person_xref` of the previous
publication, `core.person_merge_log`) carries state from one run to the next.

Survivorship rules for `core.person` (declared in `warehouse.sets.GOLDEN_PERSON`, documented
in the README):

* citizen_id: the valid ID shared by the person's mentions (most mentions win);
* gender and birth_date: from the valid citizen ID when there is one, else the value
  most mentions agree on (ties: most recent export);
* name: the Simplified form most mentions agree on (ties: most recent export);
* ethnicity, nationality: the value most mentions agree on;
* phone, hukou_address, current_address: the most recent non-empty value;
* death_date: civil affairs (cremation) only, the earliest stated death date;
* marital_status: the latest civil-affairs marriage event (结婚/补领结婚证 → 20 已婚,
  离婚 → 40 离婚, 撤销婚姻 → 10 未婚), else the latest family-planning HYZK.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pandas as pd

from schemas.mapping import SourceMapping, load_mappings
from warehouse.ddl import ADDRESS, ALERT, PERSON, PERSON_MERGE_LOG, PERSON_XREF, Table, core_tables, fact_table
from warehouse.frames import frame_table
from warehouse.migrations import empty_table
from warehouse.sets import (ADDRESS_INPUT_COLUMNS, ADDRESS_LEVELS, GOLDEN_INPUT_COLUMNS, ParquetEngine, SetStep,
                            best_address_sql, golden_person_sql, run_step)


def read_current_mentions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("SELECT * FROM stg.mention ORDER BY mention_id").df()


def read_stated_relationships(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("SELECT kind, from_mention_id, to_mention_id FROM stg.relationship").df()


#: a person's former ids: retired ids that were merged into it, most recent first
#: (comma-separated), so a split restores the id its records had before the merge
FORMER_IDS_SQL = ("(SELECT string_agg(l.from_person_id, ',' ORDER BY l.logged_at DESC) "
                  "FROM core.person_merge_log l WHERE l.event = 'merge' AND l.to_person_id = p.person_id "
                  "AND NOT EXISTS (SELECT 1 FROM core.person q WHERE q.person_id = l.from_person_id)) AS former_ids")


def read_previous_resolution(con: duckdb.DuckDBPyConnection, *, ids_only: bool = False
                             ) -> tuple[pd.DataFrame | None, pd.DataFrame | None, int]:
    """Last published xref and persons, and the next person-id sequence to issue
    (never reusing an id that was ever issued, retired ones included). `ids_only`:
    the sequence alone (no frames)."""
    xref = persons = None
    if not ids_only:
        xref = con.execute("SELECT mention_id, person_id, match_method, match_probability FROM core.person_xref").df()
        persons = con.execute(f"SELECT person_id, citizen_id, {FORMER_IDS_SQL} FROM core.person p").df()
    seq = con.execute(
        "SELECT coalesce(max(TRY_CAST(substr(pid, 2) AS BIGINT)), 0) + 1 FROM ("
        " SELECT person_id AS pid FROM core.person_xref UNION ALL SELECT person_id FROM core.person"
        " UNION ALL SELECT from_person_id FROM core.person_merge_log"
        " UNION ALL SELECT to_person_id FROM core.person_merge_log)"
    ).fetchall()[0][0]
    return xref, persons, int(seq)


def write_resolution(con: duckdb.DuckDBPyConnection, xref: pd.DataFrame, merge_log: pd.DataFrame,
                     run_id: str) -> None:
    """Replace core.person_xref; append the merge log."""
    empty_table(con, PERSON_XREF)
    insert_xref(con, xref)
    append_merge_log(con, merge_log, run_id)


def insert_xref(con: duckdb.DuckDBPyConnection, xref: pd.DataFrame) -> None:
    """Add xref rows (mention_id, person_id, match_method, match_probability), with each
    mention's lineage from staging."""
    with frame_table(con, "_xref", xref, via_arrow=True):
        con.execute(
            "INSERT INTO core.person_xref "
            "SELECT m.source_system, m.source_object, m.source_locator, m.role, m.mention_id, x.person_id, "
            "x.match_method, x.match_probability, coalesce(m.is_retracted, FALSE) "
            "FROM stg.mention m JOIN _xref x USING (mention_id)"
        )


def append_merge_log(con: duckdb.DuckDBPyConnection, merge_log: pd.DataFrame, run_id: str) -> None:
    if not merge_log.empty:
        with frame_table(con, "_log", merge_log):
            con.execute(
                f"INSERT INTO {PERSON_MERGE_LOG.qualified} SELECT now(), ?, event, from_person_id, "
                "to_person_id, reason FROM _log", [run_id])


# --------------------------------------------------------------------------------------
# the SQL of each derived table; executed in order by build_core
# --------------------------------------------------------------------------------------
#: the mention columns read from `pm`: the golden record's (`sets.GOLDEN_INPUT_COLUMNS`) and
#: the ID-conflict alert's, not all ~35 of stg.mention (the 1M delta's 155 000 rows
#: 0.58 -> 0.38 s; a full build's 848 000 no longer carry the rest)
_PM_COLUMNS = ", ".join(f"m.{c}" for c in sorted(
    (set(GOLDEN_INPUT_COLUMNS) - {"person_id", "recency", "has_valid_id"})
    | {"name_pinyin_alt", "source_object", "source_locator"}))

_PERSON_MENTIONS = """
CREATE OR REPLACE TEMP TABLE pm AS
SELECT x.person_id, """ + _PM_COLUMNS + """,
       -- the most recent statement wins; a retracted record's only when nothing else says it.
       -- Ranked within the person (only its own mentions are compared): the golden record's
       -- aggregations keep an integer per group, not a string (a full build's peak -1 GB)
       dense_rank() OVER (PARTITION BY x.person_id ORDER BY
         CASE WHEN coalesce(m.is_retracted, FALSE) THEN '0' ELSE '1' END ||
         coalesce(CAST(m.export_date AS VARCHAR), '') || '|' || m.mention_id) AS recency,
       m.id_status IN ('valid', 'upgraded_15') AS has_valid_id
FROM stg.mention m JOIN core.person_xref x USING (mention_id)
WHERE [[dp:x.person_id]]
"""


_MARRIAGE_STATUS = """
CREATE OR REPLACE TEMP VIEW marriage_status AS
WITH ev AS (
  SELECT man_person_id AS person_id, business_type, registration_date, certificate_no FROM core.marriage_registration
  UNION ALL
  SELECT woman_person_id, business_type, registration_date, certificate_no FROM core.marriage_registration)
SELECT person_id,
       CASE arg_max(business_type, (registration_date, certificate_no))
            WHEN 'divorce' THEN '40' WHEN 'annulment' THEN '10' ELSE '20' END AS marital_status
FROM ev WHERE person_id IS NOT NULL AND registration_date IS NOT NULL GROUP BY person_id
"""

#: core.person from the golden record (`warehouse.sets.golden_person_sql`, computed into
#: the temp table `golden_person` by `build_core` on the build's engine)
_PERSON_ROWS = """
SELECT b.person_id, g_citizen_id, g_document_type, g_document_number, g_name, g_name_pinyin,
       coalesce(g_id_gender, g_gender), coalesce(g_id_birth, g_birth), g_ethnicity, g_nationality,
       coalesce(ms.marital_status, g_fp_marital), g_phone, g_hukou, g_current,
       g_death, g_death IS NOT NULL, b.systems, b.n, b.first_seen, b.last_seen
FROM golden_person b
LEFT JOIN marriage_status ms USING (person_id)
"""


#: the columns of core.person and core.address that a scoped build UPDATEs in place: what
#: every restatement of a person or an address changes (how often and when it was seen,
#: the text of its latest record). A row whose other columns changed is deleted and
#: inserted again (`_in_place_sql`).
IN_PLACE: dict[str, tuple[str, ...]] = {
    "core.person": ("mention_count", "first_seen_on", "last_seen_on", "current_address"),
    "core.address": ("mention_count", "example_raw_text"),
}


def _in_place_sql(table: Table, rows_sql: str, in_scope: str) -> str:
    """A scoped build's `table` (core.person, core.address: a PRIMARY KEY, one row per
    key): the rows of the keys in scope (`in_scope`, a condition on the alias ``p``) are
    derived (`rows_sql`, in the table's column order) into a temp table, and the table is
    brought to them — a row no longer derived (a retired person, an address without
    mentions) deleted, a new key inserted, a row whose changes are all in the table's
    `IN_PLACE` columns UPDATEd there, any other changed row deleted and inserted again.

    A DELETE from a keyed table removes each row from its index: at 1M residents a 低保
    month's ~36 500 changed persons took 1.3 s to delete and insert again in the plain
    file and 3.2 s in an encrypted one (DuckDB writes encrypted files in its 1.4 storage
    format, whose index deletes cost ~4× more); their four `IN_PLACE` columns UPDATEd
    0.04–0.11 s, the checkpoint after it the same (0.35–0.48 s). Only those columns: an
    UPDATE of every column of those rows (stop 34) made the checkpoint rewrite every
    column of every row group they are in, and the publish's reads of them slower; a
    LIST column (`source_systems`) DuckDB 1.4 updates at ~0.3 ms a row. Rows are matched
    by a join (`USING`): the same condition in an EXISTS took 0.2–0.3 s against
    0.05–0.07 s."""
    updated = IN_PLACE[table.qualified]
    others = [c.name for c in table.columns if c.name not in table.primary_key and c.name not in updated]
    key = " AND ".join(f"p.{k} = n.{k}" for k in table.primary_key)

    def differs(cols: Iterable[str]) -> str:
        return " OR ".join(f"p.{c} IS DISTINCT FROM n.{c}" for c in cols) or "FALSE"

    new = f"_in_place_{table.name}"
    return f"""
CREATE OR REPLACE TEMP TABLE {new} AS SELECT * FROM ({rows_sql}) AS n({", ".join(table.column_names)});
DELETE FROM {table.qualified} p WHERE {in_scope} AND NOT EXISTS (SELECT 1 FROM {new} n WHERE {key});
DELETE FROM {table.qualified} p USING {new} n WHERE {key} AND ({differs(others)});
UPDATE {table.qualified} p SET {", ".join(f"{c} = n.{c}" for c in updated)}
FROM {new} n WHERE {key} AND ({differs(updated)});
INSERT INTO {table.qualified} SELECT n.* FROM {new} n WHERE NOT EXISTS (SELECT 1 FROM {table.qualified} p WHERE {key});
DROP TABLE {new}"""


_MARRIAGE = """
INSERT INTO core.marriage_registration
SELECT r.certificate_no, r.business_type, r.registration_date,
       xm.person_id, xw.person_id, r.office, r.source_system, r.source_object, r.source_locator
FROM stg.marriage_registration r
LEFT JOIN core.person_xref xm ON xm.source_object = r.source_object AND xm.source_locator = r.source_locator AND xm.role = 'man'
LEFT JOIN core.person_xref xw ON xw.source_object = r.source_object AND xw.source_locator = r.source_locator AND xw.role = 'woman'
WHERE [[dr:r]] OR [[dp:xm.person_id]] OR [[dp:xw.person_id]]
"""

_CREMATION = """
INSERT INTO core.cremation
SELECT r.cremation_no, x.person_id, r.death_date, r.cremation_date, r.source_system, r.source_object, r.source_locator
FROM stg.cremation r
JOIN core.person_xref x ON x.source_object = r.source_object AND x.source_locator = r.source_locator AND x.role = 'deceased'
WHERE [[dr:r]] OR [[dp:x.person_id]]
"""

_LOW_INCOME_LINES = """
INSERT INTO core.low_income_roster_line
WITH rows AS (
  -- the roster columns the lines keep (the CTE is read twice: DuckDB materialises all it selects)
  SELECT r.period, r.household_seq, r.street, r.community, r.relationship, r.category, r.amount_yuan,
         r.covered_persons, r.approval_date, r.address, r.source_system, r.source_object, r.source_locator,
         x.person_id, x.role,
         r.source_object || '#' || split_part(r.source_locator, '!', 1) || '#' || CAST(r.household_seq AS VARCHAR) AS hh
  FROM stg.low_income_roster r
  JOIN core.person_xref x ON x.source_object = r.source_object AND x.source_locator = r.source_locator
                          AND x.role IN ('head', 'member')
  WHERE [[in:_dhh:r.source_object || '#' || split_part(r.source_locator, '!', 1) || '#' || CAST(r.household_seq AS VARCHAR)]]),
heads AS (SELECT hh, min(person_id) AS head_person_id FROM rows WHERE role = 'head' GROUP BY hh)
SELECT substr(r.period, 1, 7), CAST(substr(r.period, 1, 7) || '-01' AS DATE), r.person_id, r.role,
       h.head_person_id, CAST(r.household_seq AS VARCHAR), r.street, r.community, r.relationship,
       r.category, r.amount_yuan, r.covered_persons, r.approval_date, r.address,
       r.source_system, r.source_object, r.source_locator
FROM rows r LEFT JOIN heads h USING (hh)
-- a head named only in the household columns (no row of their own) heads the household
-- but is not a listed member: the row is the listed member's
WHERE NOT (r.role = 'head' AND coalesce(r.relationship, '') NOT IN ('01', '02'))
"""

_LOW_INCOME_ENROLMENT = """
INSERT INTO core.low_income_enrolment
WITH months AS (SELECT month_start, row_number() OVER (ORDER BY month_start) AS mi
                FROM (SELECT DISTINCT month_start FROM core.low_income_roster_line)),
lines AS (
  SELECT l.person_id, l.role, coalesce(l.head_person_id, l.person_id) AS head_person_id,
         any_value(l.category) AS category, any_value(l.amount_yuan) AS amount_yuan,
         any_value(l.street) AS street, any_value(l.community) AS community, m.mi, l.month_start
  FROM core.low_income_roster_line l JOIN months m USING (month_start)
  WHERE [[dp:l.person_id]]
  GROUP BY ALL),
marked AS (
  SELECT *, CASE WHEN lag(mi) OVER w = mi - 1
                  AND lag(category) OVER w IS NOT DISTINCT FROM category
                  AND lag(amount_yuan) OVER w IS NOT DISTINCT FROM amount_yuan THEN 0 ELSE 1 END AS brk
  FROM lines WINDOW w AS (PARTITION BY person_id, role, head_person_id ORDER BY mi)),
islands AS (
  SELECT *, sum(brk) OVER (PARTITION BY person_id, role, head_person_id ORDER BY mi) AS island FROM marked),
periods AS (
  SELECT person_id, role, head_person_id, island, any_value(category) AS category,
         any_value(amount_yuan) AS amount_yuan, min(month_start) AS valid_from, max(mi) AS last_mi,
         arg_max(street, mi) AS street, arg_max(community, mi) AS community
  FROM islands GROUP BY ALL)
SELECT p.person_id, p.role, p.head_person_id, p.category, p.amount_yuan, p.valid_from,
       nxt.month_start AS valid_to, p.street, p.community
FROM periods p LEFT JOIN months nxt ON nxt.mi = p.last_mi + 1
"""

_FLOATING = """
INSERT INTO core.floating_registration_history
SELECT r.registration_no, x.person_id, r.status, r.current_address, r.updated_at, r.updated_at,
       lead(r.updated_at) OVER (PARTITION BY r.registration_no ORDER BY r.updated_at, r.export_date, r.source_object, TRY_CAST(r.source_locator AS BIGINT)),
       r.source_system, r.source_object, r.source_locator
FROM stg.floating_registration r
LEFT JOIN core.person_xref x ON x.source_object = r.source_object AND x.source_locator = r.source_locator AND x.role = 'registrant'
WHERE [[in:_dreg:r.registration_no]];

INSERT INTO core.floating_registration
SELECT registration_no, person_id, status, registration_date, cancelled_on, residence_reason, current_address,
       hukou_address, permit_no, permit_valid_until, employer, updated_at, source_system, source_object, source_locator
FROM (
  SELECT r.*, x.person_id,
         row_number() OVER (PARTITION BY r.registration_no
                            ORDER BY r.updated_at DESC, r.export_date DESC, r.source_object DESC,
                                     TRY_CAST(r.source_locator AS BIGINT) DESC) AS rn
  FROM stg.floating_registration r
  JOIN core.person_xref x ON x.source_object = r.source_object AND x.source_locator = r.source_locator AND x.role = 'registrant'
  WHERE [[in:_dreg:r.registration_no]])
WHERE rn = 1
"""

_FAMILY_PLANNING = """
INSERT INTO core.fp_woman
SELECT r.ylfn_id, xw.person_id, xs.person_id, r.marital_status, r.first_marriage_date, r.children_count,
       r.contraception, r.updated_at, r.source_system, r.source_object, r.source_locator
FROM (SELECT * FROM stg.fp_woman WHERE [[in:_dylfn:ylfn_id]]) r
-- the cross-references of those records only (a semi-join on one column, then the join)
JOIN core.person_xref xw ON xw.source_object = r.source_object AND xw.source_locator = r.source_locator AND xw.role = 'woman'
     AND [[in:_dylfnl:xw.source_locator]]
LEFT JOIN core.person_xref xs ON xs.source_object = r.source_object AND xs.source_locator = r.source_locator
     AND xs.role = 'spouse' AND [[in:_dylfnl:xs.source_locator]]
WHERE NOT coalesce(r.deleted, FALSE);

INSERT INTO core.fp_child
SELECT r.zn_id, r.ylfn_id, xc.person_id, w.person_id, r.birth_order, r.updated_at,
       r.source_system, r.source_object, r.source_locator
FROM stg.fp_child r
JOIN core.person_xref xc ON xc.source_object = r.source_object AND xc.source_locator = r.source_locator AND xc.role = 'child'
LEFT JOIN core.fp_woman w ON w.ylfn_id = r.ylfn_id
WHERE NOT coalesce(r.deleted, FALSE) AND ([[dr:r]] OR [[rw:r]] OR [[in:_dylfn:r.ylfn_id]])
"""

_RELATIONSHIP = """
INSERT INTO core.relationship
-- spouses from marriage registrations: the latest marriage of the pair, ended by a later divorce
SELECT 'spouse', man_person_id, woman_person_id,
       max(registration_date) FILTER (WHERE business_type IN ('marriage', 'reissue_marriage')),
       CASE WHEN max(registration_date) FILTER (WHERE business_type IN ('divorce', 'annulment'))
                 >= coalesce(max(registration_date) FILTER (WHERE business_type = 'marriage'), DATE '1900-01-01')
            THEN max(registration_date) FILTER (WHERE business_type IN ('divorce', 'annulment')) END,
       'civil_affairs', string_agg(source_object || '!' || source_locator, '; ' ORDER BY registration_date)
FROM core.marriage_registration
WHERE man_person_id IS NOT NULL AND woman_person_id IS NOT NULL
  AND ([[dp:man_person_id]] OR [[dp:woman_person_id]])
GROUP BY man_person_id, woman_person_id
UNION ALL
-- spouses stated by family planning
SELECT 'spouse', spouse_person_id, person_id, first_marriage_date, NULL, 'family_planning',
       source_object || '!' || source_locator
FROM core.fp_woman WHERE spouse_person_id IS NOT NULL AND ([[dp:spouse_person_id]] OR [[dp:person_id]])
UNION ALL
-- mother and child (family planning)
SELECT 'parent_child', mother_person_id, person_id, NULL, NULL, 'family_planning', source_object || '!' || source_locator
FROM core.fp_child WHERE mother_person_id IS NOT NULL AND person_id IS NOT NULL
  AND ([[dp:mother_person_id]] OR [[dp:person_id]])
UNION ALL
-- household members on the low-income roster, over the months they were listed together
SELECT 'household_member', head_person_id, person_id, min(valid_from),
       CASE WHEN bool_and(valid_to IS NOT NULL) THEN max(valid_to) END, 'low_income', 'low_income_enrolment'
FROM core.low_income_enrolment WHERE role = 'member' AND head_person_id <> person_id
  AND ([[dp:head_person_id]] OR [[dp:person_id]])
GROUP BY head_person_id, person_id
"""

#: core.address: every level from the best parse that has it (`warehouse.sets.best_address_sql`,
#: computed into the temp table `best_address` by `build_core` on the build's engine)
_ADDRESS_ROWS = """
SELECT address_id, """ + ", ".join(ADDRESS_LEVELS) + """, standard_text, address_key, confidence, status,
       n_mentions, systems, raw_text
FROM best_address
"""

_ADDRESSES = """
INSERT INTO core.address_xref
SELECT source_system, source_object, source_locator, field, address_id, raw_text, confidence, status
FROM stg.address_mention WHERE [[in:_dx:export_id]];

INSERT INTO core.person_address
WITH links AS (
  SELECT x.person_id, a.address_id, a.address_kind AS kind, a.valid_from, a.valid_to, a.source_system,
         a.source_object || '!' || a.source_locator AS ev,
         (l.export_date, a.valid_from, a.source_object, a.source_locator) AS ord
  -- the address mentions of the dirty persons' records first (one column's semi-join:
  -- DuckDB would otherwise probe every address mention)
  FROM (SELECT * FROM stg.address_mention WHERE [[in:_dpl:source_locator]]) a
  JOIN quality.load_ledger l USING (export_id)
  JOIN core.person_xref x ON x.source_object = a.source_object AND x.source_locator = a.source_locator
       AND list_contains(string_split(a.roles, ','), x.role)
  WHERE a.address_id IS NOT NULL AND [[dp:x.person_id]])
SELECT person_id, address_id, kind, min(valid_from), arg_max(valid_to, ord), source_system,
       string_agg(ev, '; ' ORDER BY ev)
FROM links GROUP BY person_id, address_id, kind, source_system;

-- low-income household addresses end when the person leaves the roster
UPDATE core.person_address pa SET valid_to = t.valid_to
FROM (
  WITH months AS (SELECT DISTINCT month_start FROM core.low_income_roster_line),
  last_seen AS (
    SELECT l.person_id, a.address_id, max(l.month_start) AS last_month
    FROM core.low_income_roster_line l
    JOIN stg.address_mention a ON a.source_object = l.source_object AND a.source_locator = l.source_locator
    WHERE [[dp:l.person_id]]
    GROUP BY ALL)
  SELECT s.person_id, s.address_id, (SELECT min(m.month_start) FROM months m WHERE m.month_start > s.last_month) AS valid_to
  FROM last_seen s) t
WHERE pa.kind = 'household' AND pa.person_id = t.person_id AND pa.address_id = t.address_id
"""

#: the two aggregations over every mention (`warehouse.sets`): run on the build's engine
_SET_STEPS = (
    SetStep("golden_person", "SELECT * FROM pm", GOLDEN_INPUT_COLUMNS, golden_person_sql),
    SetStep("best_address", "SELECT * FROM stg.address_mention WHERE address_id IS NOT NULL AND [[in:_da:address_id]]",
            ADDRESS_INPUT_COLUMNS, best_address_sql),
)

_ID_CONFLICTS = """
CREATE OR REPLACE TEMP VIEW id_name_conflict AS
WITH forms AS (
  SELECT DISTINCT person_id, source_system, coalesce(name_simplified, name) AS nm,
         coalesce(name_pinyin, lower(replace(name, ' ', ''))) AS py,
         coalesce(name_pinyin_alt, name_pinyin, lower(replace(name, ' ', ''))) AS py2
  FROM pm WHERE has_valid_id AND name IS NOT NULL)
SELECT a.person_id, a.nm AS name_a, b.nm AS name_b
FROM forms a JOIN forms b ON a.person_id = b.person_id AND a.source_system < b.source_system
WHERE a.nm <> b.nm
  AND NOT (a.py = b.py OR a.py = b.py2 OR a.py2 = b.py OR a.py2 = b.py2)
  AND NOT (length(a.nm) = length(b.nm)
           AND len(list_filter(range(1, length(a.nm) + 1), lambda i: substr(a.nm, i, 1) <> substr(b.nm, i, 1))) <= 1);

CREATE OR REPLACE TEMP VIEW id_birth_conflict AS
WITH births AS (SELECT DISTINCT person_id, source_system, birth_date FROM pm
                WHERE has_valid_id AND birth_date IS NOT NULL)
SELECT a.person_id, a.birth_date AS birth_a, b.birth_date AS birth_b
FROM births a JOIN births b ON a.person_id = b.person_id AND a.source_system < b.source_system
WHERE a.birth_date <> b.birth_date
"""

_ALERTS = """
INSERT INTO core.alert
-- on a low-income roster for a month that starts after the death date
SELECT 'deceased_receiving_benefit:' || p.person_id, 'deceased_receiving_benefit', p.person_id,
       min(l.month_start),
       '死亡日期 ' || strftime(p.death_date, '%Y-%m-%d') || ' 之后仍在低保花名册上：' ||
         string_agg(DISTINCT l.month, '、' ORDER BY l.month),
       to_json({death_date: p.death_date,
                death_records: (SELECT list(c.source_object || '!' || c.source_locator ORDER BY c.source_object, c.source_locator) FROM core.cremation c WHERE c.person_id = p.person_id),
                roster_records: list(l.source_object || '!' || l.source_locator ORDER BY l.month),
                months: list(DISTINCT l.month ORDER BY l.month)})
FROM core.person p JOIN core.low_income_roster_line l USING (person_id)
WHERE p.death_date IS NOT NULL AND l.month_start > p.death_date AND [[dp:p.person_id]]
GROUP BY p.person_id, p.death_date
UNION ALL
-- floating registration still 在住 after the death date
SELECT 'deceased_still_registered:' || p.person_id || ':' || f.registration_no, 'deceased_still_registered', p.person_id,
       p.death_date,
       '已于 ' || strftime(p.death_date, '%Y-%m-%d') || ' 死亡，流动人口登记 ' || f.registration_no || ' 仍为在住',
       to_json({death_date: p.death_date, registration_no: f.registration_no, updated_at: f.updated_at,
                registration_record: f.source_object || '!' || f.source_locator})
FROM core.person p JOIN core.floating_registration f USING (person_id)
WHERE p.death_date IS NOT NULL AND f.status = 'active' AND [[dp:p.person_id]]
UNION ALL
-- one valid ID, incompatible names or birth dates across departments. Names are
-- compatible when their Simplified forms, their pinyin keys (either surname reading) or
-- all but one character agree: a Traditional spelling, a homophone or a one-character
-- typo is data quality, not a conflict. Birth dates conflict when they differ.
SELECT 'id_conflict:' || person_id, 'id_conflict', person_id, NULL,
       '同一身份证号在不同部门登记的' ||
         CASE WHEN n_name_pairs > 0 AND n_birth_pairs > 0 THEN '姓名和出生日期'
              WHEN n_name_pairs > 0 THEN '姓名' ELSE '出生日期' END ||
         '不一致：' || names || CASE WHEN n_birth_pairs > 0 THEN '；' || births ELSE '' END,
       to_json({names: names, birth_dates: births, records: recs})
FROM (
  SELECT person_id, any_value(c.n_name_pairs) AS n_name_pairs, any_value(c.n_birth_pairs) AS n_birth_pairs,
         string_agg(DISTINCT coalesce(name_simplified, name) || '（' || source_system || '）', '、'
                    ORDER BY coalesce(name_simplified, name) || '（' || source_system || '）') AS names,
         string_agg(DISTINCT strftime(birth_date, '%Y-%m-%d') || '（' || source_system || '）', '、'
                    ORDER BY strftime(birth_date, '%Y-%m-%d') || '（' || source_system || '）') AS births,
         list(source_object || '!' || source_locator ORDER BY source_object, source_locator) AS recs
  -- only the persons with a conflicting pair are aggregated (the others have none to
  -- show); each conflict view is read once, its pairs counted by person
  FROM pm g
  JOIN (SELECT person_id, count(*) FILTER (WHERE kind = 'name') AS n_name_pairs,
               count(*) FILTER (WHERE kind = 'birth') AS n_birth_pairs
        FROM (SELECT person_id, 'name' AS kind FROM id_name_conflict
              UNION ALL SELECT person_id, 'birth' FROM id_birth_conflict) GROUP BY person_id) c USING (person_id)
  WHERE has_valid_id
  GROUP BY person_id) t
UNION ALL
-- family planning says 未婚 while a marriage is registered and not dissolved
SELECT 'marital_status_conflict:' || w.person_id, 'marital_status_conflict', w.person_id, r.valid_from,
       '计生系统婚姻状况为未婚，但民政有结婚登记（' || coalesce(strftime(r.valid_from, '%Y-%m-%d'), '日期不详') || '）',
       to_json({fp_record: w.source_object || '!' || w.source_locator, marriage_records: r.evidence})
FROM core.fp_woman w
JOIN (SELECT person_id_to AS pid, valid_from, evidence FROM core.relationship
      WHERE kind = 'spouse' AND source_system = 'civil_affairs' AND valid_to IS NULL
      UNION ALL
      SELECT person_id_from, valid_from, evidence FROM core.relationship
      WHERE kind = 'spouse' AND source_system = 'civil_affairs' AND valid_to IS NULL) r ON r.pid = w.person_id
WHERE w.marital_status = '10' AND [[dp:w.person_id]]
QUALIFY row_number() OVER (PARTITION BY w.person_id ORDER BY r.valid_from DESC NULLS LAST) = 1
"""


@dataclass(frozen=True)
class BuildScope:
    """What a sync changed, for a build that recomputes only that (see `build_core`).

    persons: the person ids whose mentions were re-clustered this run, before and after
    (merged, split, retired and new ones included); exports: the ledger ids staged this
    run. Everything else the build derives (records, households, months, registrations,
    family-planning women, addresses) follows from these two in SQL."""

    persons: frozenset[str]
    exports: frozenset[int]
    #: False when the run staged nothing (an officer's decision): no record was staged or
    #: retracted, so nothing is gone from staging and the anti-joins that look for it
    #: over every staged row are skipped
    staging_changed: bool = True


_MARKER = re.compile(r"\[\[(\w+):([^\]]*)\]\]")


def _scoped(sql: str, scope: BuildScope | None) -> str:
    """Expand the scope markers of the build SQL: ``[[dp:EXPR]]`` EXPR is a dirty person,
    ``[[dr:ALIAS]]`` ALIAS's record was staged this run, ``[[rw:ALIAS]]`` the resolution
    rewrote the xref of ALIAS's record (`_rewritten_records`), ``[[in:TABLE:EXPR]]`` EXPR is in
    the temp key table TABLE, ``[[gone:STG:ALIAS]]`` ALIAS's record is no longer staged,
    ``[[staged:EXPR]]`` EXPR, when the run changed staging at all (else FALSE).
    Without a scope (a full build) every marker is TRUE."""
    def expand(m: re.Match[str]) -> str:
        if scope is None:
            return "TRUE"
        kind, arg = m.group(1), m.group(2)
        if kind == "dp":
            return f"({arg} IN (SELECT k FROM _dp))"
        if kind in ("dr", "rw"):
            return (f"EXISTS (SELECT 1 FROM _{kind} d WHERE d.source_object = {arg}.source_object "
                    f"AND d.source_locator = {arg}.source_locator)")
        if kind == "in":
            table, expr = arg.split(":", 1)
            return f"({expr} IN (SELECT k FROM {table}))"
        if kind in ("gone", "staged") and not scope.staging_changed:
            return "FALSE"
        if kind == "staged":
            return f"({arg})"
        if kind == "gone":
            table, alias = arg.split(":", 1)
            return (f"NOT EXISTS (SELECT 1 FROM {table} g WHERE g.source_object = {alias}.source_object "
                    f"AND g.source_locator = {alias}.source_locator)")
        raise ValueError(f"unknown build scope marker {kind!r}")
    return _MARKER.sub(expand, sql)


#: a low-income household: roster file, sheet and 序号 (as the roster-line SQL groups them)
_HH = "source_object || '#' || split_part(source_locator, '!', 1) || '#' || CAST(household_seq AS VARCHAR)"
_HH_R = "r.source_object || '#' || split_part(r.source_locator, '!', 1) || '#' || CAST(r.household_seq AS VARCHAR)"

#: the dirty sets of a scoped build, derived in order from _dp0 (re-clustered persons)
#: and _dx (exports staged this run); each a temp table with one column `k`
_SCOPE_SETS = f"""
CREATE OR REPLACE TEMP TABLE _dr AS
SELECT DISTINCT source_object, source_locator FROM stg.mention WHERE export_id IN (SELECT k FROM _dx)
UNION SELECT DISTINCT source_object, source_locator FROM stg.address_mention WHERE export_id IN (SELECT k FROM _dx);

CREATE OR REPLACE TEMP TABLE _dp AS
SELECT k FROM _dp0
UNION SELECT x.person_id FROM core.person_xref x JOIN _dr d USING (source_object, source_locator);

-- households whose lines change. A household's lines follow from its staged rows and the
-- persons their mentions belong to: a row of it staged this run (or gone, see the scoped
-- delete), or a row whose mentions the resolution put in another person or dropped
-- (_rw: the records of the xref rows it rewrote). A person who merely gained a mention
-- keeps the lines of the months before (a roster month: ~35 000 lines, not the ~130 000
-- of every month its persons were listed in)
CREATE OR REPLACE TEMP TABLE _dhh AS
SELECT DISTINCT {_HH_R} AS k
FROM stg.low_income_roster r
WHERE EXISTS (SELECT 1 FROM _dr d WHERE d.source_object = r.source_object AND d.source_locator = r.source_locator)
   OR EXISTS (SELECT 1 FROM _rw w WHERE w.source_object = r.source_object AND w.source_locator = r.source_locator)
UNION SELECT {_HH} FROM core.low_income_roster_line t
WHERE EXISTS (SELECT 1 FROM _rw w WHERE w.source_object = t.source_object AND w.source_locator = t.source_locator);

-- roster months that appeared or disappeared, and their neighbours: the enrolment
-- periods of everyone on those months may end or continue differently
CREATE OR REPLACE TEMP TABLE _months_before AS SELECT DISTINCT month_start AS m FROM core.low_income_roster_line;
CREATE OR REPLACE TEMP TABLE _months_after AS
SELECT DISTINCT CAST(substr(period, 1, 7) || '-01' AS DATE) AS m FROM stg.low_income_roster;
CREATE OR REPLACE TEMP TABLE _months_touched AS
WITH changed AS ((SELECT m FROM _months_before EXCEPT SELECT m FROM _months_after)
                 UNION (SELECT m FROM _months_after EXCEPT SELECT m FROM _months_before))
SELECT m FROM changed
UNION SELECT (SELECT max(a.m) FROM _months_after a WHERE a.m < c.m) FROM changed c
UNION SELECT (SELECT min(a.m) FROM _months_after a WHERE a.m > c.m) FROM changed c;

INSERT INTO _dp
SELECT DISTINCT person_id FROM core.low_income_roster_line
WHERE month_start IN (SELECT m FROM _months_touched) OR {_HH} IN (SELECT k FROM _dhh)
UNION SELECT DISTINCT x.person_id FROM stg.low_income_roster r
JOIN core.person_xref x ON x.source_object = r.source_object AND x.source_locator = r.source_locator
WHERE CAST(substr(r.period, 1, 7) || '-01' AS DATE) IN (SELECT m FROM _months_touched)
   OR {_HH_R} IN (SELECT k FROM _dhh)
EXCEPT SELECT k FROM _dp;

-- registrations and family-planning women (with their children) follow, like the roster
-- lines, from their staged rows and the persons their mentions are in: derived again when
-- a row was staged, is gone, or had its xref rewritten (_rw), not because a person named
-- gained a mention elsewhere
CREATE OR REPLACE TEMP TABLE _dreg AS
SELECT DISTINCT r.registration_no AS k FROM stg.floating_registration r
WHERE EXISTS (SELECT 1 FROM _dr d WHERE d.source_object = r.source_object AND d.source_locator = r.source_locator)
   OR EXISTS (SELECT 1 FROM _rw w WHERE w.source_object = r.source_object AND w.source_locator = r.source_locator)
UNION SELECT registration_no FROM core.floating_registration_history h
WHERE EXISTS (SELECT 1 FROM _rw w WHERE w.source_object = h.source_object AND w.source_locator = h.source_locator)
   OR [[gone:stg.floating_registration:h]];

CREATE OR REPLACE TEMP TABLE _dylfn AS
SELECT DISTINCT r.ylfn_id AS k FROM stg.fp_woman r
WHERE EXISTS (SELECT 1 FROM _dr d WHERE d.source_object = r.source_object AND d.source_locator = r.source_locator)
   OR EXISTS (SELECT 1 FROM _rw w WHERE w.source_object = r.source_object AND w.source_locator = r.source_locator)
UNION SELECT ylfn_id FROM core.fp_woman w
WHERE EXISTS (SELECT 1 FROM _rw x WHERE x.source_object = w.source_object AND x.source_locator = w.source_locator)
   OR [[gone:stg.fp_woman:w]];

-- the locators of the dirty persons' records and of the family-planning records in
-- scope: one-column prefilters, so that a join reads those rows instead of probing a
-- whole table (the join conditions beside them decide)
CREATE OR REPLACE TEMP TABLE _dpl AS
SELECT DISTINCT source_locator AS k FROM core.person_xref WHERE person_id IN (SELECT k FROM _dp);
CREATE OR REPLACE TEMP TABLE _dylfnl AS
SELECT DISTINCT source_locator AS k FROM stg.fp_woman WHERE ylfn_id IN (SELECT k FROM _dylfn);

-- address_xref rows derived again (their mention staged this run) or gone (no longer staged),
-- shared by _da and the scoped delete. Every staged address mention has its derived row
-- (each build derives the mentions it staged), so such rows can only be in the source
-- objects whose mentions staged before this run no longer number their derived rows: the
-- anti-join over every address mention is confined to those (a roster month or a day
-- file is a new source object; 1M residents: 0.7-0.9 s -> ~0.01 s)
CREATE OR REPLACE TEMP TABLE _axref_objects AS
WITH kept AS (SELECT source_object, count(*) AS n FROM stg.address_mention
              WHERE export_id NOT IN (SELECT k FROM _dx) GROUP BY source_object),
     derived AS (SELECT source_object, count(*) AS n FROM core.address_xref GROUP BY source_object)
SELECT source_object AS k FROM derived FULL JOIN kept USING (source_object)
WHERE derived.n IS DISTINCT FROM kept.n;

CREATE OR REPLACE TEMP TABLE _axref_redo AS
SELECT x.source_object, x.source_locator, x.field, x.address_id FROM core.address_xref x
WHERE x.source_object IN (SELECT k FROM _axref_objects) AND [[staged:NOT EXISTS (SELECT 1 FROM stg.address_mention g WHERE g.source_object = x.source_object
                  AND g.source_locator = x.source_locator AND g.field = x.field AND g.export_id NOT IN (SELECT k FROM _dx))]];

CREATE OR REPLACE TEMP TABLE _da AS
SELECT DISTINCT address_id AS k FROM stg.address_mention WHERE export_id IN (SELECT k FROM _dx) AND address_id IS NOT NULL
UNION SELECT address_id FROM _axref_redo
"""

#: what a scoped build deletes before re-deriving it (a full build empties the tables)
_SCOPED_DELETES = f"""
DELETE FROM core.marriage_registration t WHERE [[dr:t]] OR [[dp:man_person_id]] OR [[dp:woman_person_id]]
  OR [[gone:stg.marriage_registration:t]];
DELETE FROM core.cremation t WHERE [[dr:t]] OR [[dp:person_id]] OR [[gone:stg.cremation:t]];
DELETE FROM core.low_income_roster_line t WHERE [[in:_dhh:{_HH}]] OR [[gone:stg.low_income_roster:t]];
DELETE FROM core.low_income_enrolment WHERE [[dp:person_id]];
DELETE FROM core.floating_registration_history WHERE [[in:_dreg:registration_no]];
DELETE FROM core.floating_registration WHERE [[in:_dreg:registration_no]];
DELETE FROM core.fp_child t WHERE [[dr:t]] OR [[rw:t]] OR [[in:_dylfn:ylfn_id]]
  OR [[gone:stg.fp_child:t]];
DELETE FROM core.fp_woman WHERE [[in:_dylfn:ylfn_id]];
DELETE FROM core.relationship WHERE [[dp:person_id_from]] OR [[dp:person_id_to]];
DELETE FROM core.address_xref x WHERE EXISTS (
  SELECT 1 FROM _axref_redo g WHERE g.source_object = x.source_object AND g.source_locator = x.source_locator
  AND g.field = x.field);
DELETE FROM core.person_address WHERE [[dp:person_id]];
DELETE FROM core.alert WHERE [[dp:person_id]]
"""


def declared_facts_sql(mapping: SourceMapping) -> str:
    """`core.<facts.table>` of a mapping that declares `facts`, derived again in full (a
    declared department is small next to the person build; full and scoped builds agree):
    each staged record joined to the person of its fact-role mention."""
    table = fact_table(mapping)
    own = ", ".join(f'r."{c.field}"' for c in mapping.fact_columns)
    return f"""
DELETE FROM {table.qualified};
INSERT INTO {table.qualified} ({", ".join(f'"{c}"' for c in table.column_names)})
SELECT x.person_id, x.role, {own + ", " if own else ""}r.export_id, r.export_date, r.period,
       r.source_system, r.source_object, r.source_locator
FROM stg.{mapping.staging_table} r
JOIN core.person_xref x ON x.source_object = r.source_object AND x.source_locator = r.source_locator
                       AND x.role = '{mapping.fact_role}'
"""


def _run(con: duckdb.DuckDBPyConnection, sql: str, scope: BuildScope | None) -> None:
    for stmt in [s for s in _scoped(sql, scope).split(";\n") if s.strip()]:
        con.execute(stmt)


#: core tables a scoped build brings to their derived rows by difference instead of
#: deleting every row in scope and inserting them all again: most of their rows in scope
#: come out the same (1M residents, a 低保 month: 49 000 enrolment rows and 30 600
#: relationships of the dirty persons derived, 11 300 and 1 700 of them new). Their scoped
#: delete (`_SCOPED_DELETES`) says which rows are in scope; their statements insert into a
#: temp table (`_diffed_block`), and `_apply_difference` deletes the rows in scope that
#: were not derived again and inserts the derived rows that were not there — the same
#: rows as the delete and insert, without writing (and leaving dead) the unchanged ones.
#: Not core.person_address: its evidence column lists every record of the link, so a
#: roster month changes 40 000 of the 59 000 rows derived, and the difference (0.2 s)
#: cost more than it saved.
DIFFED = ("core.low_income_enrolment", "core.relationship")


def _diffed_delete(scope: BuildScope, table: str) -> tuple[str, str]:
    """(alias, condition) of `table`'s scoped delete, expanded for `scope`."""
    for delete in _scoped_deletes(scope):
        if delete.table == table:
            return delete.alias, delete.condition
    raise ValueError(f"no scoped delete for the diffed table {table}")


def _staged_name(table: str) -> str:
    return "_derived_" + table.split(".")[1]


def _diffed_block(sql: str) -> tuple[str, list[str]]:
    """`sql` with its INSERTs into and UPDATEs of `DIFFED` tables redirected to their temp
    tables, and the tables it so redirected."""
    hit = []
    for table in DIFFED:
        pattern = re.compile(rf"^(\s*(?:--[^\n]*\n\s*)*)(INSERT INTO|UPDATE) {re.escape(table)}\b", re.M)
        if pattern.search(sql):
            sql = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)} {_staged_name(table)}", sql)
            hit.append(table)
    return sql, hit


def _apply_difference(con: duckdb.DuckDBPyConnection, table: Table, scope: BuildScope) -> None:
    """Bring the rows of `table` in scope to the derived rows in its temp table, as a
    multiset (a row derived twice is kept twice): each copy is numbered among its equals
    on both sides and matched with its number."""
    alias, cond = _diffed_delete(scope, table.qualified)
    cols = ", ".join(f'"{c}"' for c in table.column_names)
    same = " AND ".join(f'o."{c}" IS NOT DISTINCT FROM n."{c}"' for c in table.column_names) + " AND o._dup = n._dup"
    rowid = f"{alias or table.qualified}.rowid"
    staged = _staged_name(table.qualified)
    for stmt in (
        f"CREATE OR REPLACE TEMP TABLE _diff_old AS SELECT {rowid} AS _rid, {cols}, "
        f"row_number() OVER (PARTITION BY {cols}) AS _dup FROM {table.qualified} {alias} WHERE {cond}",
        f"CREATE OR REPLACE TEMP TABLE _diff_new AS SELECT {cols}, row_number() OVER (PARTITION BY {cols}) AS _dup "
        f"FROM {staged}",
        f"DELETE FROM {table.qualified} WHERE rowid IN (SELECT o._rid FROM _diff_old o ANTI JOIN _diff_new n ON {same})",
        f"INSERT INTO {table.qualified} SELECT {', '.join(f'n.{c}' for c in cols.split(', '))} "
        f"FROM _diff_new n ANTI JOIN _diff_old o ON {same}",
        "DROP TABLE _diff_old", "DROP TABLE _diff_new", f"DROP TABLE {staged}",
    ):
        con.execute(stmt)


def _run_block(con: duckdb.DuckDBPyConnection, sql: str, scope: BuildScope | None) -> None:
    """One block of the build; in a scoped build, a block that derives a `DIFFED` table
    derives it into a temp table first and then applies the difference."""
    if scope is None:
        _run(con, sql, scope)
        return
    sql, diffed = _diffed_block(sql)
    for table in diffed:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_staged_name(table)} AS SELECT * FROM {table} LIMIT 0")
    _run(con, sql, scope)
    for table in [t for t in core_tables() if t.qualified in diffed]:
        _apply_difference(con, table, scope)


def _key_table(con: duckdb.DuckDBPyConnection, name: str, keys: frozenset, sql_type: str) -> None:
    """A temp table `name(k)` of the keys, inserted as one Arrow batch (`executemany`
    is one statement per row: tens of seconds for a roster month's 35,000 persons)."""
    import pyarrow as pa

    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (k {sql_type})")
    if keys:
        with frame_table(con, "_key_batch", pa.table({"k": sorted(keys)})):
            con.execute(f"INSERT INTO {name} SELECT CAST(k AS {sql_type}) FROM _key_batch")


#: temp tables a scoped build leaves on its connection: the persons (before and after,
#: retired ones included, and everyone named in a core row it removed) and the addresses
#: whose core rows it deleted and derived again.
#: Files derived from the warehouse at publish (warehouse.analyst) follow the same scope;
#: after a full build the tables do not exist (everything changed).
SCOPE_PERSONS, SCOPE_ADDRESSES = "build_scope_person", "build_scope_address"


_DELETE = re.compile(r"^\s*DELETE FROM (\w+\.\w+)(?:\s+(\w+))?\s+WHERE\s+(.*)$", re.S)


@dataclass(frozen=True)
class _ScopedDelete:
    """One statement of `_SCOPED_DELETES`, expanded for a scope, and what it deletes."""

    sql: str
    table: str
    alias: str
    condition: str


def _scoped_deletes(scope: BuildScope) -> list[_ScopedDelete]:
    """`_SCOPED_DELETES` expanded for `scope`, statement by statement (what `_touched`,
    the deletes themselves and the diffed tables' scope all read)."""
    out = []
    for stmt in [x for x in _scoped(_SCOPED_DELETES, scope).split(";\n") if x.strip()]:
        m = _DELETE.match(stmt)
        if m is None:
            raise ValueError(f"scoped delete not understood: {stmt[:80]}")
        out.append(_ScopedDelete(stmt, m.group(1), m.group(2) or "", m.group(3)))
    return out


def _touched_by_deletes(con: duckdb.DuckDBPyConnection, scope: BuildScope) -> None:
    """`_touched`: every person named (in any person-id column) by a core row the scoped
    deletes are about to remove. A row can depend on a person through another row (a
    child's mother through the family-planning woman): whoever is named in a removed
    row may see their derived rows change, even when they are not re-clustered."""
    person_columns = {t.qualified: t.person_id_columns for t in core_tables()}
    con.execute("CREATE OR REPLACE TEMP TABLE _touched (k VARCHAR)")
    for delete in _scoped_deletes(scope):
        cols = person_columns.get(delete.table, [])
        if cols:
            con.execute(f"INSERT INTO _touched SELECT unnest([{', '.join(cols)}]) "
                        f"FROM {delete.table} {delete.alias} WHERE {delete.condition}")


def _rewritten_records(con: duckdb.DuckDBPyConnection) -> None:
    """`_rw`: the records whose xref rows the run's local resolutions rewrote
    (`linkage_index.REWRITTEN`, consumed here). Without it (a build scoped by hand, no
    resolution recorded what it rewrote) every record of a re-clustered person counts."""
    from warehouse.linkage_index import REWRITTEN

    have = con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?",
                       [REWRITTEN]).fetchall()[0][0]
    if have:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _rw AS SELECT DISTINCT source_object, source_locator "
                    f"FROM {REWRITTEN}")
        con.execute(f"DROP TABLE temp.{REWRITTEN}")
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE _rw AS "
                    "SELECT source_object, source_locator FROM core.person_xref WHERE person_id IN (SELECT k FROM _dp0) "
                    "UNION SELECT source_object, source_locator FROM core.low_income_roster_line "
                    "WHERE person_id IN (SELECT k FROM _dp0) OR head_person_id IN (SELECT k FROM _dp0)")


def _record_scope(con: duckdb.DuckDBPyConnection, scope: BuildScope | None) -> None:
    if scope is None:
        con.execute(f"DROP TABLE IF EXISTS temp.{SCOPE_PERSONS}; DROP TABLE IF EXISTS temp.{SCOPE_ADDRESSES}")
        return
    con.execute(f"CREATE OR REPLACE TEMP TABLE {SCOPE_PERSONS} AS "
                "SELECT k FROM _dp WHERE k IS NOT NULL UNION SELECT k FROM _touched WHERE k IS NOT NULL")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {SCOPE_ADDRESSES} AS SELECT DISTINCT k FROM _da WHERE k IS NOT NULL")


def scoped_build(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the build run on `con` was scoped (it changed a part of the warehouse)."""
    return build_scope(con) is not None


def build_scope(con: duckdb.DuckDBPyConnection) -> tuple[str, str] | None:
    """The temp tables (persons, addresses) of the scoped build run on `con`, or None when
    no build ran on it or the build was full."""
    have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()}
    return (SCOPE_PERSONS, SCOPE_ADDRESSES) if {SCOPE_PERSONS, SCOPE_ADDRESSES} <= have else None


def build_core(con: duckdb.DuckDBPyConnection, *, grid_households: int = 300,
               scope: BuildScope | None = None, sets: ParquetEngine | None = None,
               sets_dir: Path | None = None) -> dict[str, int]:
    """Derive every core table (except person_xref and the merge log) from staging.

    With a `scope` only the rows that the run's changes reach are deleted and derived
    again (the persons re-clustered, the records staged, and what follows from them:
    their households, the neighbouring roster months, registrations, family-planning
    women, addresses); the result equals a full build (tests/test_incremental.py).

    `sets`: the engine of a full build's two aggregations over every mention (golden
    records, best address parses; `warehouse.sets`), exchanging Parquet files in
    `sets_dir`; None (and every scoped build): this connection."""
    from warehouse.views import create_grid_view

    create_grid_view(con, grid_households)
    keep = {PERSON_XREF.qualified, PERSON_MERGE_LOG.qualified, "core.link_decision", "core.match_candidate"}
    if scope is None:
        for t in core_tables():
            if t.qualified not in keep:
                empty_table(con, t)
    else:
        _key_table(con, "_dp0", scope.persons, "VARCHAR")
        _key_table(con, "_dx", scope.exports, "BIGINT")
        _rewritten_records(con)
        _run(con, _SCOPE_SETS, scope)
        _touched_by_deletes(con, scope)
        # the diffed tables' rows in scope are replaced by difference (`_run_block`)
        for delete in _scoped_deletes(scope):
            if delete.table not in DIFFED:
                con.execute(delete.sql)
    _run(con, _PERSON_MENTIONS, scope)
    for step in _SET_STEPS:
        run_step(con, replace(step, source=_scoped(step.source, scope)), sets if scope is None else None, sets_dir)
    if scope is None:
        person, address = "INSERT INTO core.person" + _PERSON_ROWS, "INSERT INTO core.address" + _ADDRESS_ROWS
    else:
        person = _in_place_sql(PERSON, _PERSON_ROWS, "[[dp:p.person_id]]")
        address = _in_place_sql(ADDRESS, _ADDRESS_ROWS, "[[in:_da:p.address_id]]")
    for sql in (_MARRIAGE, _CREMATION, _LOW_INCOME_LINES, _LOW_INCOME_ENROLMENT, _FLOATING, _FAMILY_PLANNING,
                _ADDRESSES, address, _MARRIAGE_STATUS, person, _RELATIONSHIP, _ID_CONFLICTS, _ALERTS):
        _run_block(con, sql, scope)
    for mapping in load_mappings():
        if mapping.facts is not None:
            _run(con, declared_facts_sql(mapping), None)
    _record_scope(con, scope)
    counts = {}
    for t in core_tables():
        counts[t.qualified] = con.execute(f"SELECT count(*) FROM {t.qualified}").fetchall()[0][0]
    for view in ("id_name_conflict", "id_birth_conflict", "marriage_status"):
        con.execute(f"DROP VIEW IF EXISTS {view}")
    con.execute("DROP TABLE IF EXISTS pm")
    for step in _SET_STEPS:
        con.execute(f"DROP TABLE IF EXISTS {step.name}")
    return counts


__all__ = ["BuildScope", "build_core", "build_scope", "SCOPE_PERSONS", "SCOPE_ADDRESSES", "read_current_mentions",
           "read_previous_resolution", "write_resolution", "ALERT"]
