"""A new department is a new YAML file (issue 13, item 3).

A sixth source folder (a 残疾人 roster of the disability federation, with 残疾类别 and
残疾等级) and its mapping in the settings' `mappings_dir` are added to an inbox whose
warehouse already exists: the next sync creates the department's staging and fact
tables, links its persons to the persons already there by ID, keeps its own attributes
queryable in `core` and `mart`, and names the department by its declared label. A
broken mapping fails its department alone, with a message naming the file and key.
No Python is written for the department: only the YAML below and the export file.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import openpyxl
import pandas as pd
import pytest

import synth
from flows import run_sync
from schemas.mapping import mapping_set, use_mappings_dir
from settings import load_settings
from warehouse.reports import write_reports

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

DISABILITY_YAML = """\
# 残联 · 持证残疾人名册 (xlsx, monthly snapshot): one certificate holder per row
source_system: disability
source_system_label_zh: 残联
source_object: 残疾人名册
label_zh: 持证残疾人名册
staging_table: disability_roster
format: xlsx
file_prefixes: [残疾人名册]
file_extensions: [.xlsx]
granularity: person_row
load_semantics: snapshot
record_key: certificate_no
role_labels_zh: {holder: 持证残疾人}
facts: {table: disability_certificate, label_zh: 残疾人证, role: holder}
columns:
  - {field: certificate_no, aliases: [残疾人证号], label_zh: 残疾人证号, required: true, not_null: true}
  - {field: name, aliases: [姓名], label_zh: 姓名, kind: name, required: true}
  - {field: gender, aliases: [性别], label_zh: 性别, kind: code, code_table: gender}
  - {field: citizen_id, aliases: [身份证号, 公民身份号码], label_zh: 身份证号, kind: citizen_id, required: true}
  - {field: category, aliases: [残疾类别], label_zh: 残疾类别, required: true}
  - {field: level, aliases: [残疾等级], label_zh: 残疾等级, kind: code, code_table: disability_level}
  - {field: issued_on, aliases: [发证日期], label_zh: 发证日期, kind: date}
  - {field: phone, aliases: [联系电话], label_zh: 联系电话, kind: phone}
persons:
  - role: holder
    fields: {name: name, gender: gender, citizen_id: citizen_id, phone: phone}
code_tables:   # the department's own vocabulary: code → label, and other spellings seen
  disability_level:
    label_zh: 残疾等级
    codes: {"1": 一级, "2": 二级, "3": 三级, "4": 四级}
    aliases: {壹级: "1", 贰级: "2", 叁级: "3", 肆级: "4", 一: "1", 二: "2", 三: "3", 四: "4"}
"""

CATEGORIES = ["视力残疾", "听力残疾", "言语残疾", "肢体残疾", "智力残疾", "精神残疾", "多重残疾"]
LEVELS = ["一级", "二级", "三级", "四级"]
#: how the roster writes each level: a label, a code, an alias, a label (mapped by the YAML's code table)
LEVELS_WRITTEN = ["一级", "2", "叁级", "四级"]
LEVEL_CODES = ["1", "2", "3", "4"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dept")
    inbox = root / "inbox"
    synth.generate(inbox, households=120, seed=5, noise="clean")
    warehouse = root / "warehouse.duckdb"
    summary = run_sync(load_settings(inbox=inbox, warehouse=warehouse, lock_timeout_s=30))
    assert summary.status == "succeeded"
    return {"root": root, "inbox": inbox, "warehouse": warehouse}


def _holders(warehouse: Path, n: int) -> pd.DataFrame:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(
            "SELECT person_id, citizen_id, name, gender FROM core.person WHERE citizen_id IS NOT NULL "
            "AND NOT is_deceased ORDER BY person_id LIMIT ?", [n]).df()
    finally:
        con.close()


def _write_roster(path: Path, holders: pd.DataFrame, *, unknown_level_at: int | None = None) -> None:
    """One row per holder; the row at `unknown_level_at` has a level no code table knows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "名册"
    ws.append(["持证残疾人名册（2026年11月）"])
    ws.append(["残疾人证号", "姓名", "性别", "身份证号", "残疾类别", "残疾等级", "发证日期", "联系电话"])
    for k, row in enumerate(holders.itertuples()):
        ws.append([f"{row.citizen_id}{k % 7 + 1}{k % 4 + 1}", row.name, "男" if row.gender == "1" else "女",
                   row.citizen_id, CATEGORIES[k % 7], "五级" if k == unknown_level_at else LEVELS_WRITTEN[k % 4],
                   "2020-05-0" + str(k % 9 + 1),
                   f"1390437{k:04d}"])
    wb.save(path)


def test_a_sixth_department_loads_into_an_existing_warehouse_from_its_yaml_alone(world):
    root, inbox, warehouse = world["root"], world["inbox"], world["warehouse"]
    mappings_dir = root / "mappings"
    mappings_dir.mkdir()
    (mappings_dir / "disability_roster.yaml").write_text(DISABILITY_YAML, encoding="utf-8")
    holders = _holders(warehouse, 26)
    assert len(holders) == 26
    _write_roster(inbox / "disability" / "残疾人名册_202611.xlsx", holders, unknown_level_at=25)
    config = root / "residents.toml"
    config.write_text(f'mappings_dir = "{mappings_dir}"\n', encoding="utf-8")
    try:
        settings = load_settings(config, inbox=inbox, warehouse=warehouse, lock_timeout_s=30)
        summary = run_sync(settings)
        assert summary.status == "succeeded", [e.message for e in summary.exports if e.message]
        loaded = [e for e in summary.exports if e.source_system == "disability"]
        assert [e.status for e in loaded] == ["loaded"] and loaded[0].rows_accepted == 26

        con = duckdb.connect(str(warehouse), read_only=True)
        # linked by ID to the persons the warehouse already held: no new person
        xref = con.execute("SELECT source_locator, person_id, role FROM core.person_xref "
                           "WHERE source_system = 'disability'").df()
        assert len(xref) == 26 and set(xref["role"]) == {"holder"}
        assert set(xref["person_id"]) == set(holders["person_id"])
        # its own attributes, in core and (masked) in mart, with Chinese comments from the YAML;
        # the level through the department's own code table: label, code and alias all map to the code
        facts = con.execute("SELECT person_id, category, level, issued_on FROM core.disability_certificate").df()
        assert len(facts) == 26 and set(facts["category"]) == set(CATEGORIES)
        by_person = facts.set_index("person_id")
        for k in range(25):
            assert by_person.loc[holders.iloc[k].person_id, "level"] == LEVEL_CODES[k % 4]
        assert pd.isna(by_person.loc[holders.iloc[25].person_id, "level"])   # 五级: no such level
        first = holders.iloc[0]
        assert by_person.loc[first.person_id, "category"] == CATEGORIES[0]
        mart = con.execute("SELECT person_name, category, level, citizen_id_masked "
                           "FROM mart.disability_certificate WHERE person_id = ?", [first.person_id]).df()
        assert mart.iloc[0]["person_name"] == first["name"] and mart.iloc[0]["level"] == LEVEL_CODES[0]
        # the unknown level is an unusable value, named by file, row and column, in Chinese
        rejected = con.execute("SELECT source_object, source_locator, source_column, raw_value, error_code, message, "
                               "is_row_rejected FROM quality.rejected_record WHERE source_system = 'disability'").df()
        assert len(rejected) == 1, rejected
        bad = rejected.iloc[0]
        assert (bad["source_column"], bad["raw_value"], bad["error_code"]) == ("残疾等级", "五级", "code_unknown_disability_level")
        assert not bad["is_row_rejected"] and "残疾人名册_202611.xlsx" in bad["source_object"] + bad["source_locator"]
        assert "残疾等级无法识别" in bad["message"] and "一级、二级、三级、四级" in bad["message"]
        assert "*" in mart.iloc[0]["citizen_id_masked"]
        # fields taken into the person (name, ID, phone) are in core.person, not repeated as facts
        assert {"certificate_no", "category", "level", "issued_on"} <= set(con.execute(
            "SELECT * FROM core.disability_certificate LIMIT 0").df().columns)
        assert "phone" not in con.execute("SELECT * FROM core.disability_certificate LIMIT 0").df().columns
        comments = dict(con.execute(
            "SELECT column_name, comment FROM duckdb_columns() WHERE schema_name = 'core' "
            "AND table_name = 'disability_certificate'").fetchall())
        assert comments["category"].startswith("残疾类别") and comments["level"].startswith("残疾等级")
        # the queries docs/MAPPINGS.md shows for this department run
        text = (ROOT / "docs" / "MAPPINGS.md").read_text(encoding="utf-8")
        statements = [s for block in re.findall(r"```sql-declared\n(.*?)```", text, flags=re.S)
                      for s in block.split(";") if s.strip()]
        assert len(statements) == 2
        counts = con.execute(statements[0]).df()
        assert counts["holders"].sum() == 26
        con.execute(statements[1]).df()
        view_comments = con.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'mart' AND table_name = 'disability_certificate' "
            "AND (comment IS NULL OR comment = '')").fetchall()[0][0]
        assert view_comments == 0
        systems = con.execute("SELECT DISTINCT source_system FROM quality.load_ledger").df()["source_system"]
        assert "disability" in set(systems)
        con.close()
        # reports name the department by its declared label
        paths = write_reports(warehouse, root / "reports")
        assert "问题清单_残联.xlsx" in {p.name for p in paths}, paths
        html = next(p for p in paths if p.suffix == ".html").read_text(encoding="utf-8")
        assert "残联（disability）" in html

        # the next sync of the same inbox finds nothing new
        again = run_sync(settings)
        assert again.status == "unchanged"
    finally:
        use_mappings_dir(None)


def test_a_broken_mapping_fails_its_department_alone_naming_file_and_key(world, tmp_path):
    inbox = tmp_path / "inbox"
    shutil.copytree(world["inbox"], inbox)
    shutil.rmtree(inbox / "disability", ignore_errors=True)
    mappings_dir = tmp_path / "mappings"
    mappings_dir.mkdir()
    broken = mappings_dir / "disability_roster.yaml"
    broken.write_text(DISABILITY_YAML.replace("load_semantics: snapshot", "load_semantics: monthly"), encoding="utf-8")
    _write_roster(inbox / "disability" / "残疾人名册_202611.xlsx", _holders(world["warehouse"], 5))
    warehouse = tmp_path / "warehouse.duckdb"
    try:
        settings = load_settings(inbox=inbox, warehouse=warehouse, mappings_dir=mappings_dir, lock_timeout_s=30)
        problems = mapping_set().problems
        assert len(problems) == 1
        message = str(problems[0])
        assert str(broken) in message and "load_semantics" in message
        assert "event / snapshot / delta_upsert / watermark" in message
        summary = run_sync(settings)
        failed = [e for e in summary.exports if e.status == "failed"]
        assert failed and all(e.source_system == "disability" for e in failed)
        assert any(str(broken) in (e.message or "") for e in failed)
        loaded = {e.source_system for e in summary.exports if e.status == "loaded"}
        assert {"civil_affairs", "low_income", "floating_population", "family_planning"} <= loaded
    finally:
        use_mappings_dir(None)


@pytest.mark.parametrize("change, key, allowed", [
    (("source_system_label_zh: 残联\n", ""), None, "source_system_label_zh"),
    (("role_labels_zh: {holder: 持证残疾人}\n", ""), "persons", "role_labels_zh"),
    (("granularity: person_row", "granularity: per_person"), "granularity", "person_row / household_rows"),
    (("kind: phone", "kind: telephone"), "columns.7.kind", "phone"),
    (("record_key: certificate_no\n", "record_key: certificate_no\nrecord_keys: x\n"), "record_keys",
     "record_key"),
    (("code_table: disability_level}", "}"), None, "code_table"),
    (("code_table: disability_level}", "code_table: disability_grade}"), "code_table", "disability_level"),
    (("  disability_level:\n", "  gender:\n"), "code_tables", "与内置代码表同名"),
    (('肆级: "4"', '肆级: "5"'), "aliases", "1 / 2 / 3 / 4"),
])
def test_each_mapping_problem_names_the_key_and_what_is_allowed(tmp_path, change, key, allowed):
    path = tmp_path / "m.yaml"
    path.write_text(DISABILITY_YAML.replace(*change), encoding="utf-8")
    try:
        use_mappings_dir(tmp_path)
        problems = mapping_set().problems
        assert len(problems) == 1, problems
        message = str(problems[0])
        assert str(path) in message and allowed in message, message
        if key:
            assert key.split(".")[0] in message
        assert not any(m.source_system == "disability" for m in mapping_set().mappings)
        assert len(mapping_set().mappings) == 6  # the built-in departments still load
    finally:
        use_mappings_dir(None)
