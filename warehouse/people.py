"""One resident in one window: searching persons and reading everything the warehouse
knows about one of them (the `residents web` page and `residents lookup`).

Each section of the resident page is declared once (`PERSON_SECTIONS`: title, SQL with
Chinese column names, taking the person id as its only parameter); `person_page` runs
them on one read-only connection and turns codes into their Chinese labels
(`LABELS`). These pages show full identities: officers only (the callers audit them).
`district_overview` is the de-identified page for analysts: counts only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from schemas.codes import CODE_TABLES
from schemas.person import ROLE_LABELS_ZH, SOURCE_SYSTEM_LABELS_ZH
from warehouse.store import connect_read_only

MATCH_METHOD_ZH = {"citizen_id": "身份证号一致", "probabilistic": "概率匹配", "must_link": "人工确认",
                   "singleton": "单独成人"}
RELATION_KIND_ZH = {"spouse": "配偶", "household_member": "户内成员", "parent_child": "父母子女"}
ADDRESS_KIND_ZH = {"hukou": "户籍", "residence": "居住", "household": "家庭住址（低保）", "last": "生前住址"}
ALERT_KIND_ZH = {"deceased_receiving_benefit": "死亡后仍领低保", "deceased_still_registered": "死亡后流动人口仍在住",
                 "id_conflict": "同一身份证号信息冲突", "marital_status_conflict": "婚姻状况冲突"}
REVIEW_REASON_ZH = {"uncertain": "不确定", "names_differ": "姓名不同但概率高"}

#: column (Chinese name) → code → label, applied to every section
LABELS: dict[str, dict[str, str]] = {
    "性别": CODE_TABLES["gender"].codes, "民族": CODE_TABLES["ethnicity"].codes,
    "婚姻状况": CODE_TABLES["marital_status"].codes, "与户主关系": CODE_TABLES["relationship"].codes,
    "保障类别": CODE_TABLES["low_income_category"].codes, "业务类型": CODE_TABLES["marriage_business"].codes,
    "居住事由": CODE_TABLES["residence_reason"].codes,
    "登记状态": CODE_TABLES["registration_status"].codes, "证件类型": CODE_TABLES["document_type"].codes,
    "来源": SOURCE_SYSTEM_LABELS_ZH, "角色": ROLE_LABELS_ZH, "匹配方式": MATCH_METHOD_ZH,
    "关系": RELATION_KIND_ZH, "地址类型": ADDRESS_KIND_ZH, "预警类型": ALERT_KIND_ZH,
}

#: the golden record, field by field (column of core.person → label)
GOLDEN_FIELDS = {
    "person_id": "人员编号", "citizen_id": "公民身份号码", "document_type": "证件类型", "document_number": "证件号码",
    "name": "姓名", "gender": "性别", "birth_date": "出生日期", "ethnicity": "民族", "nationality": "国籍",
    "marital_status": "婚姻状况", "phone": "联系电话", "hukou_address": "户籍地址", "current_address": "现居住地址",
    "death_date": "死亡日期", "is_deceased": "是否已死亡", "source_systems": "出现过的部门", "mention_count": "记录数",
    "first_seen_on": "最早出现", "last_seen_on": "最近出现",
}


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    sql: str  # one parameter: the person id
    empty: str = "无"


PERSON_SECTIONS: tuple[Section, ...] = (
    Section("records", "各部门记录（文件、工作表、行号）", """
        SELECT x.source_system AS 来源, x.source_object AS 文件或表, x.source_locator AS 位置, x.role AS 角色,
               m.name AS 姓名, m.citizen_id AS 身份证号, m.id_raw AS 身份证号原文, m.birth_date AS 出生日期,
               m.gender AS 性别, m.phone AS 电话, coalesce(m.current_address, m.hukou_address) AS 地址,
               m.export_date AS 导出日期, x.match_method AS 匹配方式, round(x.match_probability, 4) AS 匹配概率,
               x.mention_id AS 记录编号
        FROM core.person_xref x JOIN stg.mention m USING (mention_id)
        WHERE x.person_id = ? ORDER BY m.export_date, x.source_object, x.source_locator"""),
    Section("relationships", "家庭与关系", """
        SELECT r.kind AS 关系, CASE WHEN r.person_id_from = $1 THEN '本人 → 对方' ELSE '对方 → 本人' END AS 方向,
               o.person_id AS 对方人员编号, o.name AS 对方姓名, o.citizen_id AS 对方身份证号,
               r.valid_from AS 起始日期, r.valid_to AS 终止日期, r.source_system AS 来源, r.evidence AS 依据
        FROM core.relationship r
        JOIN core.person o ON o.person_id = CASE WHEN r.person_id_from = $1 THEN r.person_id_to ELSE r.person_id_from END
        WHERE $1 IN (r.person_id_from, r.person_id_to)
        ORDER BY r.kind, r.valid_from NULLS FIRST"""),
    Section("addresses", "地址及有效期", """
        SELECT pa.kind AS 地址类型, a.standard_text AS 标准地址, a.community AS 社区, pa.valid_from AS 起始日期,
               pa.valid_to AS 终止日期, CASE WHEN pa.valid_to IS NULL OR pa.valid_to > current_date THEN '有效' ELSE '已失效' END AS 状态,
               pa.source_system AS 来源, pa.evidence AS 依据, a.address_id AS 地址编号
        FROM core.person_address pa JOIN core.address a USING (address_id)
        WHERE pa.person_id = ? ORDER BY pa.valid_from NULLS FIRST, pa.kind"""),
    Section("low_income", "低保享受期间", """
        SELECT role AS 角色, head_person_id AS 户主人员编号, category AS 保障类别, amount_yuan AS 户月保障金额元,
               valid_from AS 起始月份, valid_to AS 终止月份, street AS 街道, community AS 社区
        FROM core.low_income_enrolment WHERE person_id = ? ORDER BY valid_from"""),
    Section("floating", "流动人口登记（历次版本）", """
        SELECT registration_no AS 登记编号, status AS 登记状态, current_address AS 现居住地址, updated_at AS 更新时间,
               valid_from AS 生效时间, valid_to AS 被取代时间, source_object AS 文件或表, source_locator AS 位置
        FROM core.floating_registration_history WHERE person_id = ? ORDER BY valid_from"""),
    Section("marriage", "婚姻登记", """
        SELECT certificate_no AS 登记证字号, business_type AS 业务类型, registration_date AS 登记日期,
               man_person_id AS 男方人员编号, woman_person_id AS 女方人员编号, office AS 登记机关,
               source_object AS 文件或表, source_locator AS 位置
        FROM core.marriage_registration WHERE ? IN (man_person_id, woman_person_id) ORDER BY registration_date"""),
    Section("family_planning", "计生（育龄妇女、子女）", """
        SELECT '育龄妇女' AS 类别, ylfn_id AS 编号, spouse_person_id AS 相关人员编号, marital_status AS 婚姻状况,
               CAST(children_count AS VARCHAR) AS 子女数或孩次, updated_at AS 更新时间, source_object AS 文件或表,
               source_locator AS 位置
        FROM core.fp_woman WHERE person_id = $1
        UNION ALL
        SELECT '子女', zn_id, mother_person_id, NULL, CAST(birth_order AS VARCHAR), updated_at, source_object, source_locator
        FROM core.fp_child WHERE person_id = $1
        ORDER BY 更新时间"""),
    Section("cremation", "火化（死亡）", """
        SELECT cremation_no AS 火化证明编号, death_date AS 死亡日期, cremation_date AS 火化日期,
               source_object AS 文件或表, source_locator AS 位置
        FROM core.cremation WHERE person_id = ?"""),
    Section("alerts", "跨部门预警", """
        SELECT alert_kind AS 预警类型, alert_date AS 日期, detail AS 说明, CAST(evidence AS VARCHAR) AS 依据
        FROM core.alert WHERE person_id = ? ORDER BY alert_date"""),
    Section("problems", "数据问题（拒收值与质量发现）", """
        WITH mine AS (SELECT source_object, source_locator FROM core.person_xref WHERE person_id = $1)
        SELECT r.source_object AS 文件或表, r.source_locator AS 位置, r.source_column AS 列, r.raw_value AS 原始值,
               r.message AS 问题说明, CASE WHEN r.is_row_rejected THEN '整行拒收' ELSE '该值不可用' END AS 处理,
               CASE r.status WHEN 'open' THEN '待处理' WHEN 'resolved' THEN '已由更正文件解决'
                    WHEN 'superseded' THEN '已被新一期花名册取代' ELSE r.status END AS 状态
        FROM quality.rejected_record r JOIN mine USING (source_object, source_locator)
        UNION ALL
        SELECT f.source_object, f.source_locator, f.source_column, f.raw_value, f.detail,
               CASE f.severity WHEN 'error' THEN '错误' WHEN 'warning' THEN '警告' ELSE '提示' END, '质量发现'
        FROM quality.finding f
        WHERE f.person_id = $1 OR f.citizen_id = (SELECT citizen_id FROM core.person WHERE person_id = $1)"""),
    Section("decisions", "人工关联决定", """
        WITH mine AS (SELECT mention_id FROM core.person_xref WHERE person_id = $1)
        SELECT CASE d.decision WHEN 'must_link' THEN '是同一人' ELSE '不是同一人' END AS 决定,
               d.mention_id_a AS 记录A, d.mention_id_b AS 记录B, d.decided_by AS 决定人, d.decided_at AS 决定时间,
               d.reason AS 理由, CASE WHEN d.is_active THEN '有效' ELSE '已被取代' END AS 状态
        FROM core.link_decision d
        WHERE d.mention_id_a IN (SELECT mention_id FROM mine) OR d.mention_id_b IN (SELECT mention_id FROM mine)
        ORDER BY d.decided_at DESC"""),
)


@dataclass
class PersonPage:
    person_id: str
    golden: list[tuple[str, str]]
    sections: list[tuple[Section, pd.DataFrame]] = field(default_factory=list)
    merged_into: str | None = None  # a retired/merged id: where it went


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    for col, labels in LABELS.items():
        if col in frame.columns and labels:
            frame[col] = frame[col].map(lambda v, lab=labels: lab.get(v, v) if isinstance(v, str) else v)
    return frame


def display(value: Any) -> str:
    """A cell for officers: dates as dates, lists joined, missing empty, booleans 是/否."""
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return ""
    if type(value).__name__ in ("NaTType", "NAType"):
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, (list, tuple)):
        return "、".join(SOURCE_SYSTEM_LABELS_ZH.get(str(v), str(v)) for v in value)
    if hasattr(value, "strftime"):
        if getattr(value, "hour", 0) or getattr(value, "minute", 0) or getattr(value, "second", 0):
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return value.strftime("%Y-%m-%d")
    if hasattr(value, "tolist"):
        return display(value.tolist())
    return str(value)


def person_page(path: str | os.PathLike[str], person_id: str) -> PersonPage | None:
    """Everything about one person, or None when the id is unknown (a merged or
    retired id answers with `merged_into` set and no sections)."""
    con = connect_read_only(path)
    try:
        cur = con.execute(f"SELECT {', '.join(GOLDEN_FIELDS)} FROM core.person WHERE person_id = ?", [person_id])
        row = cur.fetchone()
        if row is None:
            moved = con.execute("SELECT to_person_id FROM core.person_merge_log WHERE from_person_id = ? "
                                "AND to_person_id IS NOT NULL ORDER BY logged_at DESC LIMIT 1", [person_id]).fetchall()
            return PersonPage(person_id, [], merged_into=moved[0][0]) if moved else None
        golden = []
        for (col, label), value in zip(GOLDEN_FIELDS.items(), row):
            labels = LABELS.get(label, {})
            golden.append((label, labels.get(value, display(value)) if isinstance(value, str) else display(value)))
        page = PersonPage(person_id, golden)
        for section in PERSON_SECTIONS:
            page.sections.append((section, _labelled(con.execute(section.sql, [person_id]).df())))
        return page
    finally:
        con.close()


SEARCH_LIMIT = 50


def search_persons(path: str | os.PathLike[str], key: Any, *, limit: int = SEARCH_LIMIT) -> pd.DataFrame:
    """Persons matching a `pipelines.search.SearchKey`: by their golden values or any
    of their records (an ID, name or phone written by one department finds the person
    even when the golden record shows another department's value). Columns in Chinese."""
    con = connect_read_only(path)
    try:
        if key.kind == "citizen_id":
            where, params = ("p.citizen_id = ? OR p.person_id IN (SELECT x.person_id FROM core.person_xref x "
                             "JOIN stg.mention m USING (mention_id) WHERE m.citizen_id = ?)"), [key.citizen_id] * 2
        elif key.kind == "phone":
            where, params = ("p.phone = ? OR p.person_id IN (SELECT x.person_id FROM core.person_xref x "
                             "JOIN stg.mention m USING (mention_id) WHERE m.phone = ?)"), [key.phone] * 2
        elif key.kind == "name":
            keys = list(key.name_pinyin) or [""]
            marks = ", ".join("?" for _ in keys)
            conds = [f"m.name_pinyin IN ({marks})", f"m.name_pinyin_alt IN ({marks})"]
            params = keys + keys
            if key.name:
                conds[:0] = ["m.name = ?", "m.name_simplified = ?"]
                params = [key.name, key.name] + params
            inner = " OR ".join(conds)
            where = (f"p.person_id IN (SELECT x.person_id FROM core.person_xref x JOIN stg.mention m USING (mention_id) "
                     f"WHERE {inner})")
            if key.name:
                where += " OR p.name = ?"
                params.append(key.name)
        else:
            levels = key.address
            if levels:
                cond = " AND ".join(f"a.{lvl} = ?" for lvl in levels)
                params = list(levels.values())
            else:
                cond, params = "a.standard_text LIKE ?", [f"%{key.address_text}%"]
            where = (f"p.person_id IN (SELECT pa.person_id FROM core.person_address pa JOIN core.address a "
                     f"USING (address_id) WHERE {cond})")
        sql = f"""
            SELECT p.person_id AS 人员编号, p.name AS 姓名, p.citizen_id AS 身份证号, p.gender AS 性别,
                   p.birth_date AS 出生日期, p.phone AS 电话, coalesce(p.current_address, p.hukou_address) AS 地址,
                   p.source_systems AS 出现过的部门, p.is_deceased AS 已死亡
            FROM core.person p WHERE {where}
            ORDER BY p.name, p.birth_date, p.person_id LIMIT {int(limit)}"""
        return _labelled(con.execute(sql, params).df())
    finally:
        con.close()


def review_queue(path: str | os.PathLike[str], *, limit: int = 200) -> pd.DataFrame:
    """The review queue (both records of each pair, best candidates first)."""
    from warehouse.decisions import read_review_queue

    con = connect_read_only(path)
    try:
        return read_review_queue(con).head(limit)
    finally:
        con.close()


#: the analysts' page: counts over the district, nothing that names or identifies a person
OVERVIEW_SECTIONS: tuple[tuple[str, str], ...] = (
    ("人员与记录", """
        SELECT (SELECT count(*) FROM core.person) AS 人员数,
               (SELECT count(*) FROM core.person WHERE is_deceased) AS 已死亡人员数,
               (SELECT count(*) FROM core.person_xref) AS 来源记录数,
               (SELECT count(*) FROM core.address) AS 标准地址数,
               (SELECT count(*) FROM core.match_candidate) AS 待复核记录对"""),
    ("各部门记录数", """
        SELECT source_system AS 来源, count(*) AS 记录数, count(DISTINCT person_id) AS 人员数
        FROM core.person_xref GROUP BY 1 ORDER BY 1"""),
    ("跨部门预警（按类型）", """
        SELECT alert_kind AS 预警类型, count(*) AS 条数, count(DISTINCT person_id) AS 涉及人数
        FROM core.alert GROUP BY 1 ORDER BY 1"""),
    ("各社区概况", "SELECT * FROM mart.community_summary"),
)


def district_overview(path: str | os.PathLike[str]) -> list[tuple[str, pd.DataFrame]]:
    """Counts for analysts (no ID, name, phone, birth date or address of a person)."""
    con = connect_read_only(path)
    try:
        out = []
        for title, sql in OVERVIEW_SECTIONS:
            try:
                frame = con.execute(sql).df()
            except duckdb.CatalogException:
                continue
            out.append((title, _labelled(frame.rename(columns=_column_comments(con, frame, sql)))))
        return out
    finally:
        con.close()


def _column_comments(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, sql: str) -> dict[str, str]:
    """English column names of a mart view → their (short) Chinese comments."""
    if not sql.strip().startswith("SELECT * FROM mart."):
        return {}
    schema, name = sql.split("FROM ")[1].strip().split(".")
    rows = con.execute("SELECT column_name, comment FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?",
                       [schema, name]).fetchall()
    return {c: (comment or c).split("（")[0].split("：")[0] for c, comment in rows if c in frame.columns}
