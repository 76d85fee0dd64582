"""Analyst views (`mart`), declared once: name, comment, SQL and the Chinese comment of
every column. They never show a full citizen ID or phone number.

A column passed through from a declared table inherits that table column's comment
(`View.sources`, looked up in `warehouse.ddl`); computed or renamed columns are
declared in `View.columns`. `create_views` fails on a view column with no comment, so
an analyst never meets an undocumented column, and `python -m warehouse.docs` renders
the same declarations into docs/WAREHOUSE.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

MACROS = [
    # 110105************: only the region kept. Keeping the last four too let anyone rebuild
    # the whole ID from mart alone (the hidden eight digits are the birth date that
    # mart.person shows), so the sequence and check digits are hidden as well
    "CREATE OR REPLACE MACRO mart.mask_id(s) AS CASE WHEN s IS NULL THEN NULL "
    "WHEN length(s) >= 10 THEN left(s, 6) || repeat('*', length(s) - 6) ELSE repeat('*', length(s)) END",
    # 138****5678, 0437-****234
    "CREATE OR REPLACE MACRO mart.mask_phone(s) AS CASE WHEN s IS NULL THEN NULL "
    "WHEN length(s) >= 7 THEN left(s, 3) || repeat('*', length(s) - 6) || right(s, 3) ELSE repeat('*', length(s)) END",
]

#: the street (街道/乡镇) a community belongs to, for addresses written without it: the one
#: street its other addresses name, when they name exactly one (a community name found
#: under two streets of a county stays without a street rather than being guessed)
COMMUNITY_TOWN = """
  community_town AS (
    SELECT county, community, any_value(town) AS town
    FROM core.address WHERE community IS NOT NULL AND town IS NOT NULL
    GROUP BY county, community HAVING count(DISTINCT town) = 1)"""


def current_residents(scope: str = "TRUE") -> str:
    """(person_id, address_id) once each: the current residence / household links of living
    persons; `scope` a condition on `address_id` as in `current_households`."""
    return f"""
    SELECT DISTINCT pa.person_id, pa.address_id
    FROM {_person_address(scope)} pa JOIN core.person p USING (person_id)
    WHERE pa.kind IN ('residence', 'household') AND (pa.valid_to IS NULL OR pa.valid_to > current_date)
      AND NOT coalesce(p.is_deceased, FALSE)"""


#: a household address lived in now: a current residence / household link of a living person
def current_households(scope: str = "TRUE", materialised: str | None = None, residents: str | None = None) -> str:
    """The `households` CTE; `scope`: a condition on `address_id` (the analyst file derives
    the aggregates again only for the communities a sync touched), TRUE for all.
    `materialised`: a table holding this CTE's rows already (`households_sql`, computed once
    for the analyst file's two tables that read them), read instead; `residents`: a table
    holding `current_residents(scope)`, whose addresses are the households."""
    if materialised:
        return f"\n  households AS (SELECT * FROM {materialised})"
    source = f"(SELECT DISTINCT address_id FROM {residents})" if residents else \
        f"(SELECT address_id FROM ({current_residents(scope)}))"
    return f"""
  households AS (
    SELECT a.address_id, a.county, coalesce(a.town, ct.town) AS town, a.community, a.road,
           a.house_number, a.estate, a.building, a.unit, a.room, a.rural_group, a.standard_text
    FROM core.address a
    LEFT JOIN community_town ct ON ct.county IS NOT DISTINCT FROM a.county AND ct.community = a.community
    WHERE a.address_id IN {source})"""


def _person_address(scope: str) -> str:
    # filtered before the joins: DuckDB would join every person-address row to its person first
    return "core.person_address" if scope == "TRUE" else f"(SELECT * FROM core.person_address WHERE {scope})"


def households_sql(scope: str = "TRUE", residents: str | None = None) -> str:
    """The rows of the `households` CTE, for `current_households(materialised=...)`;
    `residents` as there."""
    return f"WITH {COMMUNITY_TOWN}, {current_households(scope, residents=residents)} SELECT * FROM households"


def community_summary_sql(scope: str = "TRUE", households: str | None = None, residents: str | None = None) -> str:
    """mart.community_summary; `scope` as in `current_households` (a community's row needs
    every address of that community in scope), `households` its `materialised`, `residents`
    a table holding `current_residents(scope)` (the analyst file computes both once)."""
    return f"""WITH {COMMUNITY_TOWN},
            {current_households(scope, households, residents)},
              residents AS ({f"SELECT * FROM {residents}" if residents else current_residents(scope)})
            SELECT h.county, CASE WHEN h.community IS NOT NULL THEN h.town END AS town, h.community,
                   count(DISTINCT h.address_id) AS households, count(DISTINCT r.person_id) AS residents
            FROM households h JOIN residents r USING (address_id)
            GROUP BY ALL"""


def grid_sql(size: str, scope: str = "TRUE", households: str | None = None) -> str:
    """mart.grid for `size` households per grid (a SQL number); `scope` and `households` as
    in `community_summary_sql`."""
    return f"""
WITH {COMMUNITY_TOWN},
{current_households(scope, households)},
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY county, town, community
            ORDER BY road NULLS LAST, TRY_CAST(house_number AS INTEGER) NULLS LAST, house_number, estate,
                     TRY_CAST(building AS INTEGER) NULLS LAST, building, TRY_CAST(unit AS INTEGER) NULLS LAST,
                     TRY_CAST(room AS INTEGER) NULLS LAST, room, rural_group, address_id) AS seq
  FROM households WHERE community IS NOT NULL)
SELECT county, town, community, CAST(ceil(seq / {size}) AS INTEGER) AS grid_no, address_id, standard_text, seq
FROM ranked"""


@dataclass(frozen=True)
class View:
    name: str
    comment: str
    sql: str
    #: declared tables whose column comments pass-through columns inherit (first match wins)
    sources: tuple[str, ...] = ()
    #: comments of computed or renamed columns (and overrides of inherited ones)
    columns: dict[str, str] = field(default_factory=dict)


#: whether an address lies in the district in force (the latest row of quality.district,
#: configured or inferred); NULL when no district is known or the address has no county
IN_DISTRICT = ("(a.county_code = (SELECT county_code FROM quality.district ORDER BY decided_at DESC LIMIT 1))")
IN_DISTRICT_ZH = "是否在本辖区内（与 quality.district 当前辖区的县级代码比较；辖区未知或地址缺区县时为空）"

VIEW_LIST: list[View] = [
    View("mart.person", "人员（脱敏）：每个解析后的人一行",
         """SELECT person_id, mart.mask_id(citizen_id) AS citizen_id_masked, name, gender, birth_date, ethnicity,
                   marital_status, mart.mask_phone(phone) AS phone_masked, current_address, death_date, is_deceased,
                   source_systems, mention_count, first_seen_on, last_seen_on
            FROM core.person""",
         ("core.person",),
         {"citizen_id_masked": "公民身份号码（脱敏：只保留前 6 位行政区划码）",
          "phone_masked": "联系电话（脱敏：保留前 3 位与末 3 位）"}),
    View("mart.person_sources", "人员在各部门的记录（居民360视图的明细）：每个人员提及一行",
         """SELECT x.person_id, x.source_system, x.source_object, x.source_locator, x.role, x.match_method,
                   x.match_probability, m.name, m.birth_date, m.export_date
            FROM core.person_xref x JOIN stg.mention m USING (mention_id)""",
         ("core.person_xref", "stg.mention"),
         {"name": "该记录中的姓名（来源原样，经标准化）", "birth_date": "该记录中的出生日期"}),
    View("mart.alerts",
         "跨部门预警：每条发现一行（死亡后仍领低保、死亡后仍在住、身份证号信息冲突、婚姻状况冲突）",
         """SELECT a.alert_id, a.alert_kind, a.person_id, p.name, mart.mask_id(p.citizen_id) AS citizen_id_masked,
                   a.alert_date, a.detail, a.evidence
            FROM core.alert a LEFT JOIN core.person p USING (person_id)""",
         ("core.alert", "core.person"),
         {"citizen_id_masked": "公民身份号码（脱敏：只保留前 6 位行政区划码）"}),
    View("mart.low_income_current", "当前在保的低保对象（最新花名册月份仍在册）",
         """SELECT e.person_id, p.name, e.role, e.head_person_id, e.category, e.amount_yuan, e.valid_from,
                   e.street, e.community, p.is_deceased, p.death_date
            FROM core.low_income_enrolment e JOIN core.person p USING (person_id)
            WHERE e.valid_to IS NULL""",
         ("core.low_income_enrolment", "core.person")),
    View("mart.low_income_households_by_community", "各月各社区低保户数、人数与金额",
         """SELECT month, street, community, count(DISTINCT head_person_id) AS households,
                   count(DISTINCT person_id) AS persons,
                   sum(amount_yuan) FILTER (WHERE role = 'head') AS amount_yuan
            FROM core.low_income_roster_line GROUP BY ALL""",
         ("core.low_income_roster_line",),
         {"households": "低保户数（不同户主）", "persons": "低保人数（户内全部成员）",
          "amount_yuan": "当月保障金额合计（元，按户主行计）"}),
    View("mart.floating_current", "流动人口登记当前状态（脱敏）",
         """SELECT f.registration_no, f.person_id, p.name, f.status, f.registration_date, f.cancelled_on,
                   f.residence_reason, f.current_address, f.updated_at, p.is_deceased
            FROM core.floating_registration f JOIN core.person p USING (person_id)""",
         ("core.floating_registration", "core.person")),
    View("mart.address", "标准地址：每套房一行，含行政层级与楼栋单元室",
         f"""SELECT address_id, standard_text, province, city, county, town, community, road, house_number, estate,
                   building, unit, room, rural_group, county_code, town_code, confidence, status, mention_count,
                   source_systems, {IN_DISTRICT} AS in_district
            FROM core.address a""",
         ("core.address",), {"in_district": IN_DISTRICT_ZH}),
    View("mart.address_residents",
         "这套房住着谁：每个人—地址一行（各部门口径合并，列出关系类型与来源部门）",
         f"""WITH {COMMUNITY_TOWN}
            SELECT a.address_id, a.standard_text, a.county_code, a.county, {IN_DISTRICT} AS in_district,
                   coalesce(a.town, ct.town) AS town,
                   a.community, pa.person_id, p.name, p.gender, p.birth_date, p.is_deceased,
                   list(DISTINCT pa.kind ORDER BY pa.kind) AS kinds,
                   list(DISTINCT pa.source_system ORDER BY pa.source_system) AS source_systems,
                   min(pa.valid_from) AS valid_from,
                   CASE WHEN bool_or(pa.valid_to IS NULL) THEN NULL ELSE max(pa.valid_to) END AS valid_to,
                   bool_or(pa.kind IN ('residence', 'household')
                           AND (pa.valid_to IS NULL OR pa.valid_to > current_date))
                     AND NOT coalesce(p.is_deceased, FALSE) AS is_current
            FROM core.person_address pa JOIN core.address a USING (address_id) JOIN core.person p USING (person_id)
            LEFT JOIN community_town ct ON ct.county IS NOT DISTINCT FROM a.county AND ct.community = a.community
            GROUP BY a.address_id, a.standard_text, a.county_code, a.county, coalesce(a.town, ct.town), a.community,
                     pa.person_id, p.name, p.gender, p.birth_date, p.is_deceased""",
         ("core.address", "core.person"),
         {"in_district": IN_DISTRICT_ZH, "town": "街道/乡镇（地址未写时取该社区唯一所属的街道）",
          "kinds": "此人与此地址的关系类型（hukou 户籍、residence 居住、household 家庭住址（低保）、last 生前住址）",
          "source_systems": "记录此关系的来源部门",
          "valid_from": "最早起始日期（各来源中）", "valid_to": "最晚终止日期（不含；任一来源至今有效则为空）",
          "is_current": "当前是否居住于此（有效的居住或家庭住址关系，且本人未死亡）"}),
    View("mart.community_summary",
         "各社区现住户数与人数：每个社区一行（地址未写街道时归入该社区所属街道；社区不详的地址按县区合为一行，社区为空）",
         community_summary_sql(),
         ("core.address",),
         {"town": "街道/乡镇（地址未写时取该社区唯一所属的街道）",
          "community": "社区/村（为空：地址中未能确定社区的住户合计）",
          "households": "现住户数（有在世现住人员的地址数）", "residents": "现住人数（按居住、家庭住址关系，不重复计人）"}),
    View("mart.load_summary", "各来源每次装载的读取、接收、拒收行数",
         """SELECT l.run_id, l.source_system, l.mapping, l.source_object, l.export_date, l.status,
                   l.rows_read, l.rows_accepted, l.rows_rejected, l.rows_skipped, l.values_rejected, l.mentions,
                   l.loaded_at
            FROM quality.load_ledger l""",
         ("quality.load_ledger",)),
]

#: name → (comment, SQL), for callers that only need those
VIEWS: dict[str, tuple[str, str]] = {v.name: (v.comment, v.sql) for v in VIEW_LIST}

GRID_COMMENT = "网格划分：每个社区按地址顺序每 {size} 户一个网格（网格号在社区内唯一）"
GRID_VIEW = View(
    "mart.grid", GRID_COMMENT, grid_sql("{size}"),
    ("core.address",),
    {"town": "街道/乡镇（地址未写时取该社区唯一所属的街道）",
     "grid_no": "网格号（社区内从 1 起）", "seq": "户在社区内的顺序号（按路、门牌、楼栋、单元、室排序，社区内唯一）"})


def column_comment(view: View, column: str) -> str | None:
    """The Chinese comment of one column of `view`: declared, else inherited."""
    from warehouse.ddl import all_tables

    if column in view.columns:
        return view.columns[column]
    tables = {t.qualified: t for t in all_tables()}
    for source in view.sources:
        table = tables.get(source)
        for c in table.columns if table else ():
            if c.name == column:
                return c.comment
    return None


def _create(con: duckdb.DuckDBPyConnection, view: View, sql: str, comment: str) -> None:
    con.execute(f"CREATE OR REPLACE VIEW {view.name} AS {sql}")
    con.execute(f"COMMENT ON VIEW {view.name} IS {_q(comment)}")
    schema, name = view.name.split(".")
    columns = [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
        "AND database_name = current_database() ORDER BY column_index", [schema, name]).fetchall()]
    for column in columns:
        text = column_comment(view, column)
        if not text:
            raise ValueError(f"{view.name}.{column}: no comment declared (warehouse/views.py)")
        con.execute(f'COMMENT ON COLUMN {view.name}."{column}" IS {_q(text)}')


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def declared_fact_views() -> list[View]:
    """`mart.<facts.table>` for every mapping that declares `facts`: its core fact table
    with the person's name, ID and phone columns masked (kinds citizen_id and phone)."""
    from schemas.mapping import load_mappings
    from warehouse.ddl import fact_table

    views = []
    for m in load_mappings():
        if m.facts is None:
            continue
        table = fact_table(m)
        kinds = {c.field: c.kind for c in m.fact_columns}
        cols, declared = ["f.person_id", "p.name AS person_name",
                          "mart.mask_id(p.citizen_id) AS citizen_id_masked"], {
            "person_name": "姓名（core.person 中解析后的姓名）",
            "citizen_id_masked": "公民身份号码（脱敏：保留前 6 位行政区划码与末 4 位）"}
        for c in table.columns[1:]:
            kind = kinds.get(c.name)
            if kind in ("citizen_id", "phone"):
                masked = f"{c.name}_masked"
                cols.append(f'mart.mask_{"id" if kind == "citizen_id" else "phone"}(f."{c.name}") AS {masked}')
                declared[masked] = f"{c.comment}（脱敏）"
            else:
                cols.append(f'f."{c.name}"')
        views.append(View(f"mart.{m.facts.table}", table.comment,
                          f"SELECT {', '.join(cols)} FROM {table.qualified} f LEFT JOIN core.person p USING (person_id)",
                          (table.qualified,), declared))
    return views


def create_views(con: duckdb.DuckDBPyConnection, *, grid_households: int | None = 300) -> None:
    """Every `mart` view. `grid_households` None: `mart.grid` is left as it is (it was
    created with the district's configured size by the last build, `build_core`), or
    created with the default size where there is none yet."""
    con.execute("CREATE SCHEMA IF NOT EXISTS mart")
    for stmt in MACROS:
        con.execute(stmt)
    for view in [*VIEW_LIST, *declared_fact_views()]:
        _create(con, view, view.sql, view.comment)
    if grid_households is None:
        schema, name = GRID_VIEW.name.split(".")
        if con.execute("SELECT count(*) FROM duckdb_views() WHERE schema_name = ? AND view_name = ?",
                       [schema, name]).fetchall()[0][0]:
            return
        grid_households = 300
    create_grid_view(con, grid_households)


def create_grid_view(con: duckdb.DuckDBPyConnection, grid_households: int) -> None:
    """网格：each community's households in address order, cut into groups of `grid_households`."""
    size = int(grid_households)
    if size < 1:
        raise ValueError("grid_households must be at least 1")
    _create(con, GRID_VIEW, GRID_VIEW.sql.format(size=f"{size}.0"), GRID_COMMENT.format(size=size))
