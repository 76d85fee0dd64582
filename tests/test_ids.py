"""Golden tests of pipelines.normalize.ids, one case per line of tests/golden/ids*.tsv.

TSV cell escapes (so that invisible characters stay visible in the table):
``<None>`` is Python ``None``; ``\\t``, ``\\n`` and ``\\uXXXX`` are the characters.
An empty expected cell means NA.
"""

from __future__ import annotations


import pandas as pd
import pytest

from pipelines.errors import ERROR_CODES
from tests import golden_files
from pipelines.normalize.ids import (
    citizen_id_checksum,
    classify_document,
    normalize_citizen_ids,
    upgrade_15_to_18,
)

decode = golden_files.decode


def rows(name: str) -> list[dict[str, str]]:
    return golden_files.read_tsv(name)


def reference_check(body17: str) -> str:
    """Scalar GB 11643 check character, written independently of the module."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    return "10X98765432"[sum(int(c) * w for c, w in zip(body17, weights, strict=True)) % 11]


def na(value):
    return None if pd.isna(value) else value


ID_CASES = rows("ids.tsv")
EVIDENCE_CASES = rows("ids_evidence.tsv")
DOCUMENT_CASES = rows("ids_documents.tsv")


def test_golden_table_is_large_and_consistent():
    assert len(ID_CASES) >= 150
    assert len({c["note"] for c in ID_CASES}) == len(ID_CASES)
    for case in ID_CASES:  # expected values are real IDs: checked independently
        if case["expected_value"]:
            assert reference_check(case["expected_value"][:17]) == case["expected_value"][17]
    statuses = {c["expected_status"] for c in ID_CASES}
    assert {"valid", "upgraded_15", "missing"} | {c for c in ERROR_CODES if c.startswith("id_")} == statuses


@pytest.mark.parametrize("case", ID_CASES, ids=[c["note"] for c in ID_CASES])
def test_golden_id(case):
    raw = decode(case["raw"])
    out = normalize_citizen_ids(pd.Series([raw], index=[7], dtype=object)).loc[7]
    assert out["status"] == case["expected_status"], out["clean"]
    assert na(out["value"]) == (case["expected_value"] or None)
    expected_error = None if case["expected_status"] in ("valid", "upgraded_15", "missing") else case["expected_status"]
    assert out["error"] == expected_error


@pytest.mark.parametrize("case", EVIDENCE_CASES, ids=[c["note"] for c in EVIDENCE_CASES])
def test_golden_evidence(case):
    out = normalize_citizen_ids(pd.Series([decode(case["raw"])])).iloc[0]
    assert na(out["region_code"]) == (case["region_code"] or None)
    birth = na(out["birth_date"])
    assert (birth.strftime("%Y-%m-%d") if birth is not None else None) == (case["birth_date"] or None)
    assert na(out["gender"]) == (case["gender"] or None)
    assert na(out["sequence"]) == (case["sequence"] or None)
    assert bool(out["evidence_only"]) == (case["evidence_only"] == "True")


@pytest.mark.parametrize("case", DOCUMENT_CASES, ids=[c["note"] for c in DOCUMENT_CASES])
def test_golden_document(case):
    out = classify_document(pd.Series([decode(case["doc_type"])], dtype=object),
                            pd.Series([decode(case["number"])], dtype=object)).iloc[0]
    assert na(out["document_type"]) == (case["expected_type"] or None)
    assert na(out["document_number"]) == (case["expected_number"] or None)


def test_whole_table_at_once_matches_row_by_row():
    """The vectorised path on a mixed column gives the same answers as single rows."""
    raw = pd.Series([decode(c["raw"]) for c in ID_CASES], index=range(1000, 1000 + len(ID_CASES)))
    out = normalize_citizen_ids(raw)
    assert out.index.equals(raw.index)
    assert out["status"].tolist() == [c["expected_status"] for c in ID_CASES]
    assert [na(v) for v in out["value"]] == [c["expected_value"] or None for c in ID_CASES]


def test_output_contract():
    out = normalize_citizen_ids(pd.Series(["110105198001011238", None, "1.1E+17"], index=["a", "b", "c"]))
    assert list(out.columns) == ["value", "error", "status", "clean", "region_code",
                                 "birth_date", "gender", "sequence", "evidence_only"]
    assert list(out.index) == ["a", "b", "c"]
    assert str(out["birth_date"].dtype).startswith("datetime64")
    assert out["evidence_only"].dtype == bool
    assert out["error"].tolist() == [None, None, "id_excel_scientific"]


def test_empty_series():
    out = normalize_citizen_ids(pd.Series([], dtype=object))
    assert out.empty and "value" in out.columns


def test_non_string_input_does_not_raise():
    out = normalize_citizen_ids(pd.Series([110105198001011238, 1.10105198001011e17, float("nan"), None], dtype=object))
    assert out["status"].tolist() == ["valid", "id_excel_scientific", "missing", "missing"]


def test_today_bounds_birth_dates():
    raw = pd.Series(["110105202601010019"])
    assert normalize_citizen_ids(raw, today=pd.Timestamp("2026-01-01"))["status"].iloc[0] == "valid"
    assert normalize_citizen_ids(raw, today=pd.Timestamp("2025-12-31"))["status"].iloc[0] == "id_bad_birth_date"


def test_checksum_standard_example():
    # the worked example of GB 11643-1999
    assert citizen_id_checksum(pd.Series(["11010519491231002"])).tolist() == ["X"]
    out = citizen_id_checksum(pd.Series(["1101051949123100", "1101051949123100A", None], dtype=object))
    assert out.isna().all()


def test_upgrade_15_to_18():
    out = upgrade_15_to_18(pd.Series(["110105491231002", "11010549123100", None], dtype=object))
    assert na(out.iloc[0]) == "11010519491231002X"
    assert out.iloc[1:].isna().all()


def test_every_id_error_code_is_registered():
    for code in ("id_excel_scientific", "id_excel_truncated", "id_excel_float", "id_bad_checksum",
                 "id_bad_length", "id_bad_chars", "id_bad_birth_date", "id_bad_region"):
        entry = ERROR_CODES[code]
        assert entry.code == code and entry.message_zh and entry.advice_zh


def test_region_table_holds_current_historical_and_special_codes():
    from schemas.regions import load_regions, region_name

    regions = load_regions()
    assert list(regions.columns[:5]) == ["code", "name", "level", "first_year", "last_year"]
    assert regions["code"].is_unique and regions["code"].str.fullmatch(r"[1-9][0-9]{5}").all()
    assert region_name("220402") == "龙山区"
    assert region_name("110103") == "崇文区" and regions.at["110103", "last_year"] < 2025
    for code in ("110101", "110105", "330106", "810000", "820000", "830000"):
        assert region_name(code), code
    assert region_name("999999") is None
    assert set(regions["level"]) == {"province", "prefecture", "county"}
