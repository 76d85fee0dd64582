"""Property tests of pipelines.normalize.ids (hypothesis).

Each property runs the vectorised function on a whole batch of generated values,
which also checks that rows never influence each other.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.normalize.ids import id_region_codes, normalize_citizen_ids

settings.register_profile("ids", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ids")

WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]
FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in "0123456789Xx'`=\""}
SPACES = [" ", "\u3000", "\t", "\u00a0", "\u200b", "\n"]
WRAPPERS = ["{}", "'{}", "`{}", '="{}"', '"{}"', "＇{}", "“{}”"]


def with_check(body17: str) -> str:
    return body17 + "10X98765432"[sum(int(c) * w for c, w in zip(body17, WEIGHTS, strict=True)) % 11]


def build(region: str, birth: dt.date, seq: int) -> str:
    return with_check(f"{region}{birth:%Y%m%d}{seq:03d}")


REGIONS = sorted(id_region_codes())
TODAY = dt.date.today()


@st.composite
def valid_ids(draw, min_year: int = 1900, max_year: int | None = None) -> str:
    """A valid ID; not ending in ``000`` (those count as Excel-truncated by rule)."""
    latest = TODAY if max_year is None else min(TODAY, dt.date(max_year, 12, 31))
    birth = draw(st.dates(min_value=dt.date(min_year, 1, 1), max_value=latest))
    ident = build(draw(st.sampled_from(REGIONS)), birth, draw(st.integers(0, 999)))
    return draw(st.just(ident).filter(lambda i: not i.endswith("000")))


@st.composite
def disguised(draw, ident: str) -> str:
    """``ident`` in any combination of the allowed disguises."""
    chars = list(ident)
    if chars[-1] == "X" and draw(st.booleans()):
        chars[-1] = "x"
    widen = draw(st.lists(st.booleans(), min_size=len(chars), max_size=len(chars)))
    chars = [FULL_WIDTH.get(c, c) if w else c for c, w in zip(chars, widen, strict=True)]
    for _ in range(draw(st.integers(0, 4))):  # inner whitespace
        chars.insert(draw(st.integers(0, len(chars))), draw(st.sampled_from(SPACES)))
    text = draw(st.sampled_from(WRAPPERS)).format("".join(chars))
    pad = st.text(st.sampled_from(SPACES), max_size=2)
    return draw(pad) + text + draw(pad)


def run(values: list) -> pd.DataFrame:
    return normalize_citizen_ids(pd.Series(values, dtype=object))


@given(st.lists(valid_ids().flatmap(lambda i: st.tuples(st.just(i), disguised(i))), min_size=1, max_size=20))
def test_disguised_valid_id_normalises_to_itself(pairs):
    out = run([raw for _, raw in pairs])
    assert out["status"].tolist() == ["valid"] * len(pairs), out["clean"].tolist()
    assert out["value"].tolist() == [ident for ident, _ in pairs]
    assert not out["evidence_only"].any()


@given(st.lists(valid_ids(max_year=1999).flatmap(lambda i: st.tuples(st.just(i), disguised(i[:6] + i[8:17]))),
                min_size=1, max_size=20))
def test_15_digit_form_upgrades_to_itself(pairs):
    out = run([raw for _, raw in pairs])
    assert out["status"].tolist() == ["upgraded_15"] * len(pairs)
    assert out["value"].tolist() == [ident for ident, _ in pairs]


@given(valid_ids(), st.integers(0, 17), st.sampled_from("0123456789X"))
def test_single_substitution_is_never_valid(ident, position, char):
    typo = ident[:position] + char + ident[position + 1:]
    out = run([typo, ident])
    if typo != ident:
        assert out["value"].isna().iloc[0]
        assert out["status"].iloc[0] not in ("valid", "upgraded_15")
    assert out["status"].iloc[1] == "valid"


@given(valid_ids(), st.integers(0, 16))
def test_adjacent_transposition_is_never_valid(ident, position):
    chars = list(ident)
    chars[position], chars[position + 1] = chars[position + 1], chars[position]
    swapped = "".join(chars)
    out = run([swapped])
    if swapped != ident:
        assert out["value"].isna().iloc[0]
        assert out["status"].iloc[0] not in ("valid", "upgraded_15")


def excel_corruptions(ident: str) -> list[str]:
    """What Excel, or a tool reading its numbers, makes of an 18-digit ID: the full
    number as a double, and Excel's 15-digit truncation, each rendered many ways."""
    number = float(int(ident[:17] + ("0" if ident[17] == "X" else ident[17])))
    truncated = ident[:15] + "000"
    stored = float(int(truncated))
    return [repr(number), f"{number:.5E}", f"{number:E}", f"{number:.1f}",
            truncated, repr(stored), str(stored), f"{stored:.5E}", f"{stored:.14e}", f"{stored:.1f}"]


@given(st.lists(valid_ids(), min_size=1, max_size=10))
def test_excel_corruption_is_never_valid(idents):
    values = [bad for ident in idents for bad in excel_corruptions(ident)]
    out = run(values)
    assert out["value"].isna().all()
    assert out["error"].str.startswith("id_excel_").all(), dict(zip(values, out["status"], strict=True))
    assert out["evidence_only"].all()


def excel_evidence_sources(ident: str) -> list[str]:
    """The corruptions whose surviving digits are unambiguous.  Left out: the repr of
    the *full* number's double when it happens to be 15 digits or fewer (e.g.
    ``1.1010120000102e+17`` for ``110101200001019998``); it cannot be told apart from
    Excel's stored 15 digits of another ID, and is read as those (documented in ids.py).
    """
    full = repr(float(int(ident[:17] + ("0" if ident[17] == "X" else ident[17]))))
    short = len(full.split("e")[0].replace(".", "")) <= 15
    return [c for c in excel_corruptions(ident) if not (short and c == full)]


@given(st.lists(valid_ids(), min_size=1, max_size=10))
def test_corrupted_evidence_agrees_with_the_true_id(idents):
    """Whatever survives of a corrupted ID is right (never a wrong region or date)."""
    values = [bad for ident in idents for bad in excel_evidence_sources(ident)]
    truth = run([ident for ident in idents for _ in excel_evidence_sources(ident)])
    out = run(values)
    for column in ("region_code", "birth_date", "sequence"):
        seen = out[column].notna()
        assert (out.loc[seen, column] == truth.loc[seen, column]).all(), column


ANY_VALUE = st.one_of(
    st.text(), st.none(), st.integers(), st.floats(),
    st.text(st.sampled_from("0123456789XxEe+-.,' 　０１２３４５６７８９ｘ=\"/无")),
)


@given(st.lists(ANY_VALUE, max_size=30))
def test_never_raises_and_keeps_the_contract(values):
    raw = pd.Series(values, dtype=object)
    out = normalize_citizen_ids(raw)
    assert out.index.equals(raw.index)
    valid = out["status"].isin(["valid", "upgraded_15"])
    assert (out["value"].notna() == valid).all()
    assert (out["error"].isna() == out["status"].isin(["valid", "upgraded_15", "missing"])).all()
    assert (out["evidence_only"] == out["error"].notna()).all()
    assert out.loc[valid, "value"].str.fullmatch(r"[0-9]{17}[0-9X]").all()
