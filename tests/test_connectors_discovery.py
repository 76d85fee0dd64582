"""connectors.discovery: file-name dates, folders, problems, ordering."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors import (
    ExportFile,
    InvalidFileDateError,
    UnrecognizedFileError,
    WrongFolderError,
    discover_exports,
    parse_file_date,
)


def touch(root: Path, rel: str, content: bytes = b"x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# -- date spellings -----------------------------------------------------------------
@pytest.mark.parametrize("name, date, period, correction", [
    ("婚姻登记_20261121.xlsx", dt.date(2026, 11, 21), "2026-11-21", False),
    ("婚姻登记_2026-11-21.xlsx", dt.date(2026, 11, 21), "2026-11-21", False),
    ("婚姻登记-20261121.xlsx", dt.date(2026, 11, 21), "2026-11-21", False),
    ("婚姻登记_2026.11.21.xlsx", dt.date(2026, 11, 21), "2026-11-21", False),
    ("婚姻登记_20261121_补报.xlsx", dt.date(2026, 11, 21), "2026-11-21", True),
    ("婚姻登记_2026-11-21补报.xlsx", dt.date(2026, 11, 21), "2026-11-21", True),
    ("婚姻登记_20261121_v2.xlsx", dt.date(2026, 11, 21), "2026-11-21", False),
    ("婚姻登记_２０２６１１２１.xlsx", dt.date(2026, 11, 21), "2026-11-21", False),   # full-width digits
])
def test_date_spellings(tmp_path, name, date, period, correction):
    touch(tmp_path, f"civil_affairs/{name}")
    result = discover_exports(tmp_path)
    assert result.problems == []
    [f] = result.files
    assert (f.export_date, f.period, f.is_correction) == (date, period, correction)
    assert f.source_object == name and f.mapping == "婚姻登记" and f.source_system == "civil_affairs"


def test_monthly_roster_is_first_of_month(tmp_path):
    touch(tmp_path, "low_income/低保花名册_202610.xlsx")
    touch(tmp_path, "low_income/低保花名册_202611_补报.xlsx")
    files = discover_exports(tmp_path).files
    assert [(f.export_date, f.period, f.is_correction) for f in files] == [
        (dt.date(2026, 10, 1), "2026-10", False), (dt.date(2026, 11, 1), "2026-11", True)]


def test_invalid_and_missing_dates_are_problems(tmp_path):
    touch(tmp_path, "civil_affairs/婚姻登记_20260230.xlsx")
    touch(tmp_path, "civil_affairs/婚姻登记_最新.xlsx")
    touch(tmp_path, "civil_affairs/火化信息_20261121.csv")
    result = discover_exports(tmp_path)
    assert [f.source_object for f in result.files] == ["火化信息_20261121.csv"]
    by_name = {p.source_object: p for p in result.problems}
    bad = by_name["婚姻登记_20260230.xlsx"]
    assert isinstance(bad, InvalidFileDateError) and bad.date_text == "20260230"
    assert "20260230" in str(bad) and "日期无效" in str(bad)
    none = by_name["婚姻登记_最新.xlsx"]
    assert isinstance(none, InvalidFileDateError) and none.date_text is None


def test_wrong_folder_and_unrecognised_files(tmp_path):
    touch(tmp_path, "low_income/婚姻登记_20261121.xlsx")
    touch(tmp_path, "婚姻登记_20261122.xlsx")                  # inbox root
    touch(tmp_path, "civil_affairs/说明.docx")
    touch(tmp_path, "civil_affairs/婚姻登记_20261121.csv")     # right prefix, wrong extension
    result = discover_exports(tmp_path)
    assert result.files == []
    kinds = {(p.source_object, type(p)) for p in result.problems}
    assert kinds == {
        ("婚姻登记_20261121.xlsx", WrongFolderError),
        ("婚姻登记_20261122.xlsx", WrongFolderError),
        ("说明.docx", UnrecognizedFileError),
        ("婚姻登记_20261121.csv", UnrecognizedFileError),
    }
    wrong = next(p for p in result.problems if p.source_object == "婚姻登记_20261121.xlsx")
    assert (wrong.folder, wrong.expected_folder) == ("low_income", "civil_affairs")
    assert "civil_affairs" in str(wrong) and "low_income" in str(wrong)


def test_ignored_files(tmp_path):
    touch(tmp_path, "family_planning/family_planning.sqlite")
    touch(tmp_path, "civil_affairs/~$婚姻登记_20261121.xlsx")
    touch(tmp_path, "civil_affairs/.DS_Store")
    touch(tmp_path, ".hidden/婚姻登记_20261121.xlsx")
    touch(tmp_path, "_truth/mentions.csv")
    touch(tmp_path, "_truth/婚姻登记_20261121.xlsx")
    result = discover_exports(tmp_path)
    assert result.files == [] and result.problems == []
    assert len(result.ignored) == 6


def test_sorted_by_date_then_corrections_last_then_name_with_hash(tmp_path):
    touch(tmp_path, "civil_affairs/婚姻登记_20261121_补报.xlsx", b"b")
    touch(tmp_path, "civil_affairs/婚姻登记_20261121.xlsx", b"a")
    touch(tmp_path, "civil_affairs/火化信息_20261121.csv", b"c")
    touch(tmp_path, "floating_population/流动人口登记_20261120.csv", b"d")
    touch(tmp_path, "low_income/低保花名册_202610.xlsx", b"hello")
    files = discover_exports(tmp_path).files
    assert [f.source_object for f in files] == [
        "低保花名册_202610.xlsx", "流动人口登记_20261120.csv", "婚姻登记_20261121.xlsx",
        "火化信息_20261121.csv", "婚姻登记_20261121_补报.xlsx"]
    roster = files[0]
    assert isinstance(roster, ExportFile)
    assert roster.content_sha256 == hashlib.sha256(b"hello").hexdigest()
    assert roster.size_bytes == 5


def test_missing_inbox(tmp_path):
    with pytest.raises(FileNotFoundError):
        discover_exports(tmp_path / "nope")


# -- hypothesis: the date parser -------------------------------------------------------
SPELLINGS = {
    "compact": lambda d: d.strftime("%Y%m%d"),
    "dash": lambda d: d.strftime("%Y-%m-%d"),
    "dot": lambda d: d.strftime("%Y.%m.%d"),
    "underscore": lambda d: d.strftime("%Y_%m_%d"),
    "short_dash": lambda d: f"{d.year}-{d.month}-{d.day}",
    "chinese": lambda d: f"{d.year}年{d.month}月{d.day}日",
}


@given(
    date=st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2150, 12, 31)),
    spelling=st.sampled_from(sorted(SPELLINGS)),
    lead=st.sampled_from(["_", "-", "", "_导出_"]),
    suffix=st.sampled_from(["", "_补报", "补报", "-v2", "_补报(2)", " (1)"]),
)
def test_parse_file_date_every_spelling(date, spelling, lead, suffix):
    parsed = parse_file_date(f"{lead}{SPELLINGS[spelling](date)}{suffix}")
    assert parsed is not None
    assert parsed.date == date
    assert parsed.period == date.isoformat()
    assert parsed.is_correction == ("补报" in suffix)


@given(year=st.integers(1990, 2150), month=st.integers(1, 12), sep=st.sampled_from(["", "-", "."]),
       suffix=st.sampled_from(["", "_补报"]))
def test_parse_file_date_months(year, month, sep, suffix):
    parsed = parse_file_date(f"_{year}{sep}{month:02d}{suffix}")
    assert parsed is not None
    assert parsed.date == dt.date(year, month, 1)
    assert parsed.period == f"{year}-{month:02d}"


@given(year=st.integers(1990, 2150), month=st.integers(1, 12), day=st.integers(29, 35))
def test_parse_file_date_impossible_days_raise(year, month, day):
    try:
        dt.date(year, month, day)
    except ValueError:
        with pytest.raises(ValueError):
            parse_file_date(f"_{year}{month:02d}{day:02d}")
    else:
        assert parse_file_date(f"_{year}{month:02d}{day:02d}").date == dt.date(year, month, day)


@given(st.text(alphabet="abc补报_-. 最新版", max_size=12))
def test_parse_file_date_without_digits_is_none(text):
    assert parse_file_date(text) is None


# -- the digest memo: an export is hashed once, not on every sync -----------------------
def _memo_round(inbox: Path, memo_file: Path):
    from connectors.discovery import DigestMemo

    memo = DigestMemo.load(memo_file)
    result = discover_exports(inbox, memo=memo)
    memo.save(memo_file)
    return {f.source_object: f.content_sha256 for f in result.files}, result, memo


def test_the_memo_answers_for_unchanged_files_and_reads_changed_ones(tmp_path, monkeypatch):
    import os
    import time

    from connectors import discovery

    monkeypatch.setattr(discovery, "RACY_SECONDS", 0.0)
    inbox, memo_file = tmp_path / "inbox", tmp_path / "w.duckdb.digests.json"
    a = touch(inbox, "civil_affairs/婚姻登记_20261121.xlsx", b"first version")
    touch(inbox, "low_income/低保花名册_202610.xlsx", b"roster")
    first, _, memo = _memo_round(inbox, memo_file)
    assert memo.read == 2 and first["婚姻登记_20261121.xlsx"] == hashlib.sha256(b"first version").hexdigest()
    assert oct(memo_file.stat().st_mode & 0o777) == "0o600"

    again, _, memo = _memo_round(inbox, memo_file)
    assert again == first and memo.read == 0          # nothing read again

    # rewritten in place, same size, its modification time put back: the change time moved
    stat = a.stat()
    time.sleep(0.05)
    a.write_bytes(b"other version")
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed, _, memo = _memo_round(inbox, memo_file)
    assert memo.read == 1 and changed["婚姻登记_20261121.xlsx"] == hashlib.sha256(b"other version").hexdigest()

    # a file gone from the inbox is forgotten; a corrupt memo reads everything again
    (inbox / "low_income" / "低保花名册_202610.xlsx").unlink()
    _memo_round(inbox, memo_file)
    import json

    assert list(json.loads(memo_file.read_text(encoding="utf-8"))["files"]) == [str(a)]
    memo_file.write_text("{not json", encoding="utf-8")
    _, _, memo = _memo_round(inbox, memo_file)
    assert memo.read == 1


def test_a_file_changed_moments_ago_is_not_remembered(tmp_path):
    """Within the file system clock's tick a second change could leave the status as it
    was: a file that changed less than RACY_SECONDS ago is read again next time."""
    inbox, memo_file = tmp_path / "inbox", tmp_path / "memo.json"
    touch(inbox, "civil_affairs/婚姻登记_20261121.xlsx", b"fresh")
    _memo_round(inbox, memo_file)
    _, _, memo = _memo_round(inbox, memo_file)
    assert memo.read == 1


def test_a_remembered_file_that_became_unreadable_still_fails_alone(tmp_path, monkeypatch):
    from connectors import discovery
    from connectors.exceptions import SourceUnavailableError

    monkeypatch.setattr(discovery, "RACY_SECONDS", 0.0)
    inbox, memo_file = tmp_path / "inbox", tmp_path / "memo.json"
    victim = touch(inbox, "civil_affairs/婚姻登记_20261121.xlsx", b"content")
    _memo_round(inbox, memo_file)
    real_open = Path.open

    def denying(self, *args, **kwargs):
        if self == victim:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denying)
    _, result, _ = _memo_round(inbox, memo_file)
    assert result.files == [] and [type(p) for p in result.problems] == [SourceUnavailableError]


def test_the_memo_names_files_by_absolute_path_whatever_the_inbox_was_called(tmp_path, monkeypatch):
    import json

    from connectors import discovery

    monkeypatch.setattr(discovery, "RACY_SECONDS", 0.0)
    touch(tmp_path / "inbox", "civil_affairs/婚姻登记_20261121.xlsx")
    monkeypatch.chdir(tmp_path)
    _memo_round(Path("inbox"), tmp_path / "memo.json")
    [key] = json.loads((tmp_path / "memo.json").read_text(encoding="utf-8"))["files"]
    assert key == str(tmp_path / "inbox" / "civil_affairs" / "婚姻登记_20261121.xlsx")
    _, _, memo = _memo_round(Path("inbox"), tmp_path / "memo.json")
    assert memo.read == 0
