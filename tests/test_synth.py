"""Tests of the synthetic district generator (synth/)."""

from __future__ import annotations

import csv
import hashlib
import re
import sqlite3
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from synth import NoiseConfig, generate
from synth.ids import check_char

HOUSEHOLDS = 400
SEED = 11
ID_QUIRKS = {"clean", "lowercase_x", "fullwidth", "spaces", "apostrophe", "old15", "typo", "empty", "placeholder",
             "excel_scientific", "excel_truncated", "excel_numeric_cell", "foreign_document"}
CSV_ENCODING = {"civil_affairs": "utf-8-sig", "floating_population": "gb18030"}


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "inbox"
    generate(out, HOUSEHOLDS, SEED)
    return out


@pytest.fixture(scope="module")
def mentions(inbox) -> pd.DataFrame:
    return pd.read_csv(inbox / "_truth" / "mentions.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def persons(inbox) -> pd.DataFrame:
    return pd.read_csv(inbox / "_truth" / "persons.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def addresses(inbox) -> pd.DataFrame:
    return pd.read_csv(inbox / "_truth" / "addresses.csv", dtype=str, keep_default_na=False)


# --------------------------------------------------------------------------------------
# reading cells back as the connectors render them (ARCHITECTURE.md, "Raw frames")
# --------------------------------------------------------------------------------------


def render_xlsx(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d") if value.time() == datetime.min.time() else value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    x = float(value)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


class XlsxBook:
    """Cells of a workbook by (sheet, excel row, header text)."""

    def __init__(self, path: Path):
        self.wb = openpyxl.load_workbook(path)
        self.headers = {}
        for ws in self.wb.worksheets:
            header_row = 2 if ws.title == "婚姻登记" else 3
            self.headers[ws.title] = {render_xlsx(c.value): c.column for c in ws[header_row] if c.value is not None}

    def get(self, locator: str, header_options: tuple[str, ...]) -> str:
        sheet, row = locator.rsplit("!", 1)
        cols = self.headers[sheet]
        col = next(cols[h] for h in header_options if h in cols)
        return render_xlsx(self.wb[sheet].cell(int(row), col).value)


def read_csv_lines(path: Path, encoding: str) -> tuple[list[str], dict[int, dict[str, str]]]:
    with open(path, encoding=encoding, newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    return header, {i + 2: dict(zip(header, r)) for i, r in enumerate(rows[1:])}


NAME_COLUMNS = {
    ("civil_affairs", "man"): ("男方姓名",), ("civil_affairs", "woman"): ("女方姓名",),
    ("civil_affairs", "deceased"): ("逝者姓名", "姓名"),
    ("low_income", "head"): ("成员姓名",), ("low_income", "member"): ("成员姓名",),
    ("floating_population", "registrant"): ("姓名",),
}
ID_COLUMNS = {
    ("civil_affairs", "man"): ("男方证件号码", "男方身份证号"), ("civil_affairs", "woman"): ("女方证件号码", "女方身份证号"),
    ("civil_affairs", "deceased"): ("身份证号码", "公民身份号码"),
    ("low_income", "head"): ("成员身份证号",), ("low_income", "member"): ("成员身份证号",),
    ("floating_population", "registrant"): ("公民身份号码", "身份证号"),
}
SQL_COLUMNS = {("T_YLFN", "woman"): ("XM", "SFZH", "YLFN_ID"), ("T_YLFN", "spouse"): ("POXM", "POSFZH", "YLFN_ID"),
               ("T_ZN", "child"): ("XM", "SFZH", "ZN_ID")}


def _pick(row: dict[str, str], options: tuple[str, ...]) -> str:
    return next(row[h] for h in options if h in row)


def written_cells(inbox: Path, mentions: pd.DataFrame) -> list[tuple[str, str, str, str, str, str]]:
    """(object, locator, role, name read back, id read back, source of mismatch) for every mention."""
    out = []
    con = sqlite3.connect(inbox / "family_planning" / "family_planning.sqlite")
    for (system, obj), group in mentions.groupby(["source_system", "source_object"]):
        if system == "family_planning":
            for role, g in group.groupby("role"):
                name_col, id_col, pk = SQL_COLUMNS[(obj, role)]
                found = {str(k): (n or "", i or "") for k, n, i in
                         con.execute(f"SELECT {pk}, {name_col}, {id_col} FROM {obj}")}
                out += [(obj, loc, role, *found[loc]) for loc in g.source_locator]
        elif obj.endswith(".xlsx"):
            book = XlsxBook(inbox / system / obj)
            for loc, role in zip(group.source_locator, group.role):
                out.append((obj, loc, role, book.get(loc, NAME_COLUMNS[(system, role)]),
                            book.get(loc, ID_COLUMNS[(system, role)])))
        else:
            _, rows = read_csv_lines(inbox / system / obj, CSV_ENCODING[system])
            for loc, role in zip(group.source_locator, group.role):
                row = rows[int(loc)]
                out.append((obj, loc, role, _pick(row, NAME_COLUMNS[(system, role)]),
                            _pick(row, ID_COLUMNS[(system, role)])))
    con.close()
    return out


# --------------------------------------------------------------------------------------
# files and layouts
# --------------------------------------------------------------------------------------


def test_inbox_layout_and_file_names(inbox):
    names = {p.relative_to(inbox).as_posix() for p in inbox.rglob("*") if p.is_file()}
    assert "family_planning/family_planning.sqlite" in names
    assert {"_truth/mentions.csv", "_truth/persons.csv", "_truth/addresses.csv"} <= names
    patterns = {
        "civil_affairs": r"(婚姻登记\S+\.xlsx|火化信息\S+\.csv)",
        "low_income": r"低保花名册_\d{6}\.xlsx",
        "floating_population": r"流动人口登记\S+\.csv",
    }
    for folder, pattern in patterns.items():
        files = [n.split("/", 1)[1] for n in names if n.startswith(folder + "/")]
        assert files, folder
        assert all(re.fullmatch(pattern, f) for f in files), files
    assert len([n for n in names if n.startswith("low_income/")]) >= 3
    stems = " ".join(names)
    assert re.search(r"_\d{8}[._]", stems) and re.search(r"_\d{4}-\d{2}-\d{2}[._]", stems)
    assert re.search(r"-\d{8}[._]", stems)
    assert "_补报" in stems
    for name in names:
        assert any(k in name for k in ("婚姻登记", "火化信息", "低保花名册", "流动人口登记", "family_planning", "_truth"))


def test_csv_encodings(inbox):
    for path in (inbox / "civil_affairs").glob("*.csv"):
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf"), path.name
        raw.decode("utf-8-sig")
    floating = list((inbox / "floating_population").glob("*.csv"))
    assert len(floating) >= 5
    for path in floating:
        raw = path.read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf")
        text = raw.decode("gb18030")
        assert text.startswith("登记编号,")
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")


def test_roster_layout(inbox):
    for path in sorted((inbox / "low_income").glob("*.xlsx")):
        wb = openpyxl.load_workbook(path)
        month = re.search(r"_(\d{4})(\d{2})\.xlsx", path.name)
        for ws in wb.worksheets:
            merged = [r for r in ws.merged_cells.ranges]
            assert any(r.min_row == 1 and r.max_row == 1 and r.max_col == ws.max_column for r in merged)
            assert ws.cell(1, 1).value.endswith("花名册")
            assert ws.cell(2, 1).value.startswith(f"统计月份：{month[1]}年{int(month[2])}月")
            header = [c.value for c in ws[3]]
            assert "成员姓名" in header and "户主身份证号" in header
            amount_col = next(i for i, h in enumerate(header, 1) if h in ("月保障金额（元）", "月保障金", "保障金额"))
            last = ws.max_row
            assert "合计" in (ws.cell(last, 1).value, ws.cell(last, 2).value)
            amounts = [ws.cell(r, amount_col).value for r in range(4, last)]
            assert ws.cell(last, amount_col).value == pytest.approx(sum(a for a in amounts if a is not None))
        vertical = [r for ws in wb.worksheets for r in ws.merged_cells.ranges if r.max_row > r.min_row]
        assert vertical, f"no household merges in {path.name}"
    multi = [p for p in (inbox / "low_income").glob("*.xlsx") if len(openpyxl.load_workbook(p).sheetnames) > 1]
    assert multi, "some rosters have one sheet per 街道"
    assert all(n.endswith(("街道", "镇", "乡")) for p in multi for n in openpyxl.load_workbook(p).sheetnames)


def test_marriage_layout(inbox):
    files = list((inbox / "civil_affairs").glob("婚姻登记*.xlsx"))
    assert files
    for path in files:
        ws = openpyxl.load_workbook(path)["婚姻登记"]
        assert any(r.min_row == 1 and r.max_row == 1 and r.max_col == ws.max_column for r in ws.merged_cells.ranges)
        header = [c.value for c in ws[2]]
        assert header[0] in ("登记证字号", "证件编号") and "女方户籍所在地" in header


def test_family_planning_tables(inbox):
    con = sqlite3.connect(inbox / "family_planning" / "family_planning.sqlite")
    cols = [r[1] for r in con.execute("PRAGMA table_info(T_YLFN)")]
    assert cols == ["YLFN_ID", "XM", "SFZH", "CSRQ", "MZ", "HYZK", "CHRQ", "HJDZ", "XJZDZ", "LXDH", "POXM", "POSFZH",
                    "POCSRQ", "XYZNS", "JYCS", "GXSJ", "SCBZ"]
    assert [r[1] for r in con.execute("PRAGMA table_info(T_ZN)")] == [
        "ZN_ID", "YLFN_ID", "XM", "XB", "CSRQ", "SFZH", "CSHC", "GXSJ", "SCBZ"]
    assert con.execute("SELECT COUNT(*) FROM T_YLFN WHERE SCBZ = 1").fetchone()[0] > 0
    lo, hi = con.execute("SELECT MIN(GXSJ), MAX(GXSJ) FROM T_YLFN").fetchone()
    assert (datetime.fromisoformat(hi) - datetime.fromisoformat(lo)).days > 90
    assert all(re.fullmatch(r"\d{8}", c) for (c,) in con.execute("SELECT CSRQ FROM T_YLFN"))
    orphans = con.execute("SELECT COUNT(*) FROM T_ZN WHERE YLFN_ID NOT IN (SELECT YLFN_ID FROM T_YLFN)").fetchone()[0]
    assert orphans == 0
    # children are never updated before they were born
    assert con.execute("SELECT COUNT(*) FROM T_ZN WHERE GXSJ < CSRQ").fetchone()[0] == 0
    con.close()


# --------------------------------------------------------------------------------------
# truth
# --------------------------------------------------------------------------------------


def test_truth_columns(mentions, persons, addresses):
    assert list(mentions.columns[:10]) == ["source_system", "source_object", "source_locator", "role", "person_key",
                                           "id_written", "id_true", "id_quirk", "name_written", "name_true"]
    assert list(persons.columns[:8]) == ["person_key", "citizen_id", "name", "gender", "birth_date", "death_date",
                                         "ethnicity", "household_key"]
    assert list(addresses.columns) == ["source_system", "source_object", "source_locator", "field", "flat_key",
                                       "written"]
    assert not mentions.duplicated(["source_object", "source_locator", "role"]).any()
    assert set(mentions.person_key) <= set(persons.person_key)
    assert set(mentions.id_quirk) <= ID_QUIRKS


def test_every_mention_points_at_its_cell(inbox, mentions):
    cells = written_cells(inbox, mentions)
    assert len(cells) == len(mentions)
    truth = {(m.source_object, m.source_locator, m.role): (m.name_written, m.id_written)
             for m in mentions.itertuples()}
    bad = [(o, loc, r, n, i, truth[(o, loc, r)]) for o, loc, r, n, i in cells if truth[(o, loc, r)] != (n, i)]
    assert not bad, bad[:5]


def test_every_written_row_has_its_mentions(inbox, mentions):
    counts = mentions.groupby("source_object").size().to_dict()
    counts = defaultdict(int, counts)  # a day without changes gives a header-only file
    for path in (inbox / "civil_affairs").glob("*.csv"):
        assert counts[path.name] == len(read_csv_lines(path, "utf-8-sig")[1])
    for path in (inbox / "floating_population").glob("*.csv"):
        assert counts[path.name] == len(read_csv_lines(path, "gb18030")[1])
    for path in (inbox / "civil_affairs").glob("*.xlsx"):
        assert counts[path.name] == 2 * (openpyxl.load_workbook(path)["婚姻登记"].max_row - 2)
    for path in (inbox / "low_income").glob("*.xlsx"):
        wb = openpyxl.load_workbook(path)
        assert counts[path.name] == sum(ws.max_row - 4 for ws in wb.worksheets)
    con = sqlite3.connect(inbox / "family_planning" / "family_planning.sqlite")
    women, spouses = con.execute(
        "SELECT COUNT(*), SUM(POXM IS NOT NULL OR POSFZH IS NOT NULL) FROM T_YLFN").fetchone()
    assert counts["T_YLFN"] == women + spouses
    assert counts["T_ZN"] == con.execute("SELECT COUNT(*) FROM T_ZN").fetchone()[0]


def test_roster_roles_follow_relation(inbox, mentions):
    li = mentions[mentions.source_system == "low_income"]
    for obj, group in li.groupby("source_object"):
        book = XlsxBook(inbox / "low_income" / obj)
        for loc, role in zip(group.source_locator, group.role):
            relation = book.get(loc, ("与户主关系",))
            assert (relation in ("户主", "本人")) == (role == "head"), (obj, loc, relation, role)
            if role == "head":  # the head's household cells carry the same written values
                assert book.get(loc, ("户主身份证号",)) == book.get(loc, ("成员身份证号",))


def test_address_truth_points_at_cells(inbox, addresses):
    con = sqlite3.connect(inbox / "family_planning" / "family_planning.sqlite")
    for (system, obj), group in addresses.groupby(["source_system", "source_object"]):
        if system == "family_planning":
            for fld, g in group.groupby("field"):
                found = dict(con.execute(f"SELECT YLFN_ID, {fld} FROM T_YLFN"))
                assert all(found[int(loc)] == w for loc, w in zip(g.source_locator, g.written))
        elif obj.endswith(".xlsx"):
            book = XlsxBook(inbox / system / obj)
            assert all(book.get(loc, (fld,)) == w for loc, fld, w in zip(group.source_locator, group.field, group.written))
        else:
            _, rows = read_csv_lines(inbox / system / obj, CSV_ENCODING[system])
            assert all(rows[int(loc)][fld] == w for loc, fld, w in zip(group.source_locator, group.field, group.written))
    fields = set(addresses.field)
    assert {"家庭住址", "生前住址", "户籍地址", "XJZDZ", "HJDZ", "男方户籍所在地"} <= fields
    assert {"现居住地址", "现住址"} <= fields  # the floating system renamed its header mid-period
    assert addresses.flat_key.str.match(r"^[FX]\d{7}$").all()


def test_true_ids_are_valid(persons):
    cid = persons.citizen_id[persons.citizen_id != ""]
    assert len(cid) > 0.95 * len(persons)
    assert cid.is_unique
    for s, gender, birth in zip(cid, persons.gender[cid.index], persons.birth_date[cid.index]):
        assert re.fullmatch(r"\d{17}[\dX]", s)
        assert check_char(s[:17]) == s[17]
        assert int(s[16]) % 2 == (1 if gender == "1" else 0)
        assert s[6:14] == birth.replace("-", "")
    docs = persons[persons.citizen_id == ""]
    assert len(docs) and (docs.document_number != "").all()


# --------------------------------------------------------------------------------------
# quirks and look-alikes
# --------------------------------------------------------------------------------------


def test_every_id_quirk_appears(mentions):
    assert set(mentions.id_quirk) == ID_QUIRKS
    q = mentions.set_index("id_quirk")
    assert all(w == t[:-1] + "x" for w, t in zip(q.loc["lowercase_x", "id_written"], q.loc["lowercase_x", "id_true"]))
    assert all(re.fullmatch(r"\d\.\d*E\+\d\d", w) for w in q.loc[["excel_scientific"], "id_written"])
    assert all(w.endswith("000") for w in q.loc[["excel_truncated"], "id_written"])
    assert all("e+17" in w for w in q.loc[["excel_numeric_cell"], "id_written"])
    assert all(len(w) == 15 for w in q.loc[["old15"], "id_written"])
    assert set(q.loc[["placeholder"], "id_written"]) <= {"无", "不详", "/"}
    foreign = q.loc[["foreign_document"], "id_written"]
    assert any(w[:6] in ("810000", "820000", "830000") for w in foreign)
    assert any(re.fullmatch(r"[A-Z]*\d+", w) and len(w) < 18 for w in foreign)
    # Excel damage only where Excel was involved
    excel = mentions[mentions.id_quirk.str.startswith("excel")]
    assert set(excel.source_system) <= {"civil_affairs", "low_income"}
    assert excel[excel.id_quirk == "excel_numeric_cell"].source_object.str.endswith(".xlsx").all()


def test_name_quirks_appear(mentions):
    assert {"traditional", "spaces", "dot_variant", "homophone", "lookalike", "latin"} <= set(mentions.name_quirk)
    dotted = mentions[mentions.name_true.str.contains("·")]
    assert {"•", "．", "."} & set("".join(dotted.name_written))
    latin = mentions[mentions.name_quirk == "latin"]
    assert all(re.fullmatch(r"[A-Za-z ]+", n) for n in latin.name_written)


def test_value_styles_vary(inbox, addresses):
    written = " ".join(addresses.written)
    for token in ("栋", "幢", "号楼", "座", "单元", "组", "〇"):
        assert token in written, token
    assert re.search(r"\d+-\d+-\d+", written)
    assert re.search(r"[０-９]", written)
    assert any(not w.startswith("吉林") and "省" in w for w in addresses.written)  # hukou elsewhere
    texts = []
    for path in (inbox / "civil_affairs").glob("*.csv"):
        texts.append(path.read_text("utf-8-sig"))
    for path in (inbox / "floating_population").glob("*.csv"):
        texts.append(path.read_text("gb18030"))
    text = "\n".join(texts)
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", text)
    assert re.search(r",\d{4}-\d{2}-\d{2},", text) and re.search(r",\d{8},", text)
    assert "+86" in text or ",86" in text
    assert "已注销" in text and "在住" in text
    headers = {read_csv_lines(p, "gb18030")[0][5] for p in (inbox / "floating_population").glob("*.csv")}
    assert headers == {"公民身份号码", "身份证号"}
    cells = []
    for path in (inbox / "low_income").glob("*.xlsx"):
        for ws in openpyxl.load_workbook(path).worksheets:
            cells += [c for row in ws.iter_rows(min_row=4) for c in row]
    assert any(isinstance(c.value, datetime) for c in cells)  # Excel date cells
    assert "0437" in text + " ".join(str(c.value) for c in cells)  # district landlines


def test_lookalike_people(persons):
    adults = persons.assign(surname=persons.name.str[0])
    twins = adults[adults.household_key != ""].groupby(["household_key", "birth_date", "surname"]).filter(
        lambda g: len(g) >= 2)
    assert len(twins) >= 2
    for _, g in twins.groupby(["household_key", "birth_date"]):
        ids = sorted(g.citizen_id)
        assert ids[0][:14] == ids[1][:14] and ids[0] != ids[1]
    namesakes = persons[persons.name.isin(["张伟", "王伟", "李强", "刘洋", "王磊", "张勇", "王芳", "李娜", "张敏",
                                           "李静", "王静", "刘丽"])]
    assert namesakes.name.duplicated().any()


def test_cross_department_cases(inbox, mentions, persons):
    dead = persons[persons.death_date != ""].set_index("person_key").death_date
    assert len(dead) >= 3
    cremated = set(mentions[mentions.role == "deceased"].person_key)
    assert set(dead.index) == cremated
    roster = mentions[(mentions.source_system == "low_income") & mentions.person_key.isin(dead.index)]
    month_start = roster.source_object.str.extract(r"_(\d{4})(\d{2})\.xlsx").apply(lambda r: f"{r[0]}-{r[1]}-01", axis=1)
    assert (month_start.to_numpy() > dead[roster.person_key].to_numpy()).any(), "deceased_receiving_benefit"
    floating = mentions[(mentions.source_system == "floating_population") & mentions.person_key.isin(dead.index)]
    latest_status = {}
    for obj, g in floating.groupby("source_object"):
        _, rows = read_csv_lines(inbox / "floating_population" / obj, "gb18030")
        for loc, key in zip(g.source_locator, g.person_key):
            row = rows[int(loc)]
            prev = latest_status.get(key)
            if prev is None or row["更新时间"] > prev[0]:
                latest_status[key] = (row["更新时间"], row["登记状态"])
    assert "在住" in {s for _, s in latest_status.values()}, "deceased floating resident still 在住"
    reissued = mentions[mentions.source_system == "floating_population"].person_key.value_counts()
    assert (reissued > 1).any()
    assert {"man", "woman", "deceased", "head", "member", "registrant", "woman", "spouse", "child"} <= set(mentions.role)


# --------------------------------------------------------------------------------------
# determinism and presets
# --------------------------------------------------------------------------------------


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_deterministic_for_a_seed(tmp_path):
    generate(tmp_path / "a", 80, 5)
    generate(tmp_path / "b", 80, 5)
    generate(tmp_path / "c", 80, 6)
    a, b, c = _digests(tmp_path / "a"), _digests(tmp_path / "b"), _digests(tmp_path / "c")
    assert a == b
    assert a["_truth/persons.csv"] != c["_truth/persons.csv"]


def test_clean_preset_has_no_noise(tmp_path):
    summary = generate(tmp_path / "clean", 120, 3, noise="clean", days=3)
    m = pd.read_csv(tmp_path / "clean" / "_truth" / "mentions.csv", dtype=str, keep_default_na=False)
    assert summary.mentions == len(m)
    assert set(m.id_quirk) <= {"clean", "foreign_document", "empty"}  # newborns without an ID yet
    assert set(m[m.id_quirk == "empty"].role) <= {"child"}
    assert set(m.name_quirk) == {"clean"}
    assert (m.name_written == m.name_true).all()


def test_noise_config_overrides():
    cfg = NoiseConfig("hard", id_typo=0.5)
    assert cfg.id_typo == 0.5 and cfg.id_empty == NoiseConfig("hard").id_empty
    assert NoiseConfig().level == "realistic" and NoiseConfig("clean").id_empty == 0
    with pytest.raises(ValueError):
        NoiseConfig("chaotic")
