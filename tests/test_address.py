"""Golden-file tests for the address parser (`tests/golden/addresses.tsv`).

Each row: the raw text, the default district (county code, or empty for none), optional
context (town / community), and the expected levels. In expected cells an empty value
means None, ``*`` means "not checked". ``flat`` groups rows that are variants of one flat:
they must share one address_key, and different flats must not.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

from pipelines.normalize.address import (
    COLUMNS,
    DistrictContext,
    address_id_from_key,
    forget_remembered_keys,
    parse_addresses,
    plain_keys,
    remembered_keys,
)

GOLDEN = Path(__file__).parent / "golden" / "addresses.tsv"
CHECKED = [
    "province", "city", "county", "county_code", "town", "community", "road", "house_number",
    "estate", "building", "unit", "floor", "room", "rural_group", "status", "standard_text", "error",
]


def _load() -> list[dict[str, str]]:
    with GOLDEN.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


CASES = _load()


def _raw(case: dict[str, str]) -> str | None:
    return None if case["raw"] == "<NONE>" else case["raw"]


@lru_cache(maxsize=None)
def _district(code: str) -> DistrictContext | None:
    return DistrictContext.from_code(code) if code else None


def _parse(case: dict[str, str]) -> dict:
    ctx = None
    if case["ctx_town"] or case["ctx_community"]:
        ctx = pd.DataFrame({"town": [case["ctx_town"] or None], "community": [case["ctx_community"] or None]})
    out = parse_addresses(pd.Series([_raw(case)], dtype=object), context=ctx,
                          default_district=_district(case["default"]))
    return out.iloc[0].to_dict()


def test_golden_file_is_large_enough():
    assert len(CASES) >= 300
    notes = {c["note"] for c in CASES}
    assert any("outside" in n for n in notes) and any("rural" in n for n in notes)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_golden(case):
    got = _parse(case)
    assert list(got) == COLUMNS
    problems = []
    for col in CHECKED:
        exp = case[col]
        if exp == "*":
            continue
        val = got[col]
        if (exp or None) != (None if val is None else str(val)):
            problems.append(f"{col}: expected {exp or None!r}, got {val!r}")
    assert not problems, f"{case['raw']!r} ({case['note']}):\n  " + "\n  ".join(problems)
    if got["status"] == "unparsed":
        assert got["confidence"] == 0.0
    else:
        assert 0.0 < got["confidence"] <= 1.0
    if got["error"] != "address_empty":
        assert got["address_key"]


def test_variants_of_one_flat_share_a_key_and_different_flats_do_not():
    by_flat: dict[str, set[str]] = {}
    for case in CASES:
        if not case["flat"]:
            continue
        by_flat.setdefault(case["flat"], set()).add(_parse(case)["address_key"])
    split = {f: keys for f, keys in by_flat.items() if len(keys) != 1}
    assert not split, split
    owners: dict[str, str] = {}
    for flat, keys in by_flat.items():
        (key,) = keys
        assert key not in owners, f"{flat} and {owners.get(key)} share {key}"
        owners[key] = flat


def test_batch_equals_row_by_row():
    """Parsing the whole golden set in one call (unique strings mapped back) gives the same rows."""
    for code in {c["default"] for c in CASES}:
        cases = [c for c in CASES if c["default"] == code and not c["ctx_town"] and not c["ctx_community"]]
        raw = pd.Series([_raw(c) for c in cases] * 2, index=range(1000, 1000 + 2 * len(cases)), dtype=object)
        out = parse_addresses(raw, default_district=_district(code))
        assert list(out.index) == list(raw.index)
        for i, case in enumerate(cases):
            one = _parse(case)
            for j in (i, i + len(cases)):
                row = out.iloc[j].to_dict()
                assert row == one, (case["raw"], row, one)


def test_empty_series_and_columns():
    out = parse_addresses(pd.Series([], dtype=object))
    assert list(out.columns) == COLUMNS and len(out) == 0


def test_context_rows_are_aligned_by_index():
    raw = pd.Series(["红旗村三组18号", "红旗村三组18号"], index=["a", "b"])
    ctx = pd.DataFrame({"town": ["工农乡", "寿山镇"]}, index=["b", "a"])
    out = parse_addresses(raw, context=ctx, default_district=_district("220402"))
    assert out.loc["a", "town"] == "寿山镇" and out.loc["b", "town"] == "工农乡"
    assert out.loc["a", "standard_text"] == "吉林省辽源市龙山区寿山镇红旗村3组18号"
    # the township is not part of the key (variants drop it): see the module docstring
    assert out.loc["a", "address_key"] == out.loc["b", "address_key"]


def test_address_id_is_stable():
    key = "220402|r:人民大街|n:125|b:3|u:2|f:|r:501"
    assert address_id_from_key(key) == address_id_from_key(key)
    assert address_id_from_key(key).startswith("A") and len(address_id_from_key(key)) == 17
    assert address_id_from_key(key) != address_id_from_key(key.replace("501", "502"))
    assert address_id_from_key(None) is None
    # pinned: an id seen by analysts must never change
    import hashlib
    assert address_id_from_key(key) == "A" + hashlib.sha1(key.encode()).hexdigest()[:16]


def test_district_context_by_names_only():
    d = DistrictContext(province="吉林省", city="辽源市", county="龙山区")
    assert d.codes() == ("220000", "220400", "220402")
    d2 = DistrictContext(province="吉林", city="辽源", county="龙山")
    assert d2.codes() == ("220000", "220400", "220402")


def _no_parse(*_args):
    raise AssertionError("parsed again: the key should have been remembered")


def test_plain_keys_are_the_keys_without_context():
    """`plain_keys`: each text's address_key as `parse_addresses` gives it without a
    context, None for texts that do not parse to one and for missing values."""
    unparsed = 0
    for code in {c["default"] for c in CASES}:
        raws = list(dict.fromkeys(r for r in (_raw(c) for c in CASES if c["default"] == code) if r is not None))
        texts = pd.Series(raws + [None], dtype=object)
        out = parse_addresses(texts, default_district=_district(code))
        expected = [k if e is None else None for k, e in zip(out["address_key"], out["error"])]
        assert plain_keys(texts, _district(code)) == expected
        assert expected[-1] is None
        unparsed += sum(k is None for k in expected[:-1])
    assert unparsed, "the golden set holds texts that parse to no key"


def test_remembered_keys_answer_without_parsing_again(monkeypatch):
    """Inside a `remembered_keys()` block, the texts `parse_addresses` parsed — with a
    context (a roster's township and community columns) or without — are keyed again
    without parsing, to the keys they parse to without a context; another district's
    texts, texts never parsed, and everything after `forget_remembered_keys` or outside
    the block are parsed."""
    import pipelines.normalize.address as address

    code = "220402"
    raws = list(dict.fromkeys(r for r in (_raw(c) for c in CASES if c["default"] == code) if r is not None))
    half = len(raws) // 2
    texts = pd.Series(raws, dtype=object)
    expected = plain_keys(texts, _district(code))
    ctx = pd.DataFrame({"town": ["寿山镇"] * half, "community": ["红旗村"] * half})
    with remembered_keys():
        parse_addresses(pd.Series(raws[:half], dtype=object), context=ctx, default_district=_district(code))
        parse_addresses(pd.Series(raws[half:], dtype=object), default_district=_district(code))
        with monkeypatch.context() as m:
            m.setattr(address, "parse_one", _no_parse)
            assert plain_keys(texts, _district(code)) == expected
            with pytest.raises(AssertionError, match="parsed again"):
                plain_keys(texts, None)  # remembered for 220402's default district only
            with pytest.raises(AssertionError, match="parsed again"):
                plain_keys(pd.Series(["人民大街999号"]), _district(code))
        forget_remembered_keys()
        with monkeypatch.context() as m:
            m.setattr(address, "parse_one", _no_parse)
            with pytest.raises(AssertionError, match="parsed again"):
                plain_keys(texts, _district(code))
    with monkeypatch.context() as m:
        m.setattr(address, "parse_one", _no_parse)
        with pytest.raises(AssertionError, match="parsed again"):
            plain_keys(texts, _district(code))
    assert plain_keys(texts, _district(code)) == expected
