"""Recall where the evidence is plain (issue 13, item 5): a rare full name with the same
birth date and gender in two export files links when no valid ID contradicts it; twins
and common names do not; the name's frequency is computed from the data."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from pipelines.linkage import _with_plain_evidence, name_bearers, plain_evidence


def _lf(extra_bearers: int = 0) -> pd.DataFrame:
    rows = [("a", "石娜桐", dt.date(1966, 3, 25)), ("b", "石娜桐", dt.date(1966, 3, 25)),
            ("t1", "石娜梅", dt.date(1966, 3, 25)), ("w1", "王伟", dt.date(1970, 1, 1)),
            ("w2", "王伟", dt.date(1970, 1, 1)), ("old", "某", dt.date(1920, 1, 1)), ("young", "某", dt.date(2020, 1, 1))]
    # other bearers of 王伟, each born on another day: a common name in this population
    rows += [(f"wx{i}", "王伟", dt.date(1950, 1, 1) + dt.timedelta(days=97 * i)) for i in range(40)]
    rows += [(f"sx{i}", "石娜桐", dt.date(1940, 1, 1) + dt.timedelta(days=211 * i)) for i in range(extra_bearers)]
    return pd.DataFrame(rows, columns=["unique_id", "name_s", "birth"])


def _pair(left: str, right: str, **levels: str) -> dict:
    out = {"unique_id_l": left, "unique_id_r": right, "match_probability": 0.2, "level_name": "exact",
           "level_birth_date": "exact", "level_gender": "same", "level_source": "different",
           "level_citizen_id": "null"}
    out.update({f"level_{k}": v for k, v in levels.items()})
    return out


def test_name_frequency_comes_from_the_data():
    bearers = name_bearers(_lf())
    assert bearers["石娜桐"] == 1 and bearers["王伟"] == 41


def test_rare_name_same_birth_and_gender_in_two_files_is_plain():
    pairs = pd.DataFrame([
        _pair("a", "b"),                                            # 石娜桐, one without an ID: plain
        _pair("a", "b", citizen_id="different_valid"),              # two valid IDs disagree: never
        _pair("a", "b", gender="different"),                        # the gender disagrees
        _pair("a", "b", source="same_object"),                      # two rows of one file
        _pair("a", "t1", name="one_char"),                          # twins 石娜桐 / 石娜梅: apart
        _pair("w1", "w2"),                                          # 王伟: too common to be plain
        _pair("a", "b", gender="null"),                             # gender missing on one side, rare name
        _pair("a", "b", birth_date="within_3_days"),                # not the exact birth date
    ])
    assert plain_evidence(pairs, _lf()).tolist() == [True, False, False, False, False, False, True, False]


def test_a_name_with_more_bearers_needs_the_gender_and_then_stops_being_rare():
    pairs = pd.DataFrame([_pair("a", "b"), _pair("a", "b", gender="null")])
    # 9 bearers over a century: C(9, 2) / 36 525 days ≈ 1e-3 → still rare with the gender only
    assert plain_evidence(pairs, _lf(extra_bearers=8)).tolist() == [True, False]
    assert plain_evidence(pairs, _lf(extra_bearers=12)).tolist() == [False, False]


def test_plain_pairs_are_kept_and_raised_to_the_threshold_others_filtered_by_score():
    pairs = pd.DataFrame([_pair("a", "b"), _pair("w1", "w2"),
                          {**_pair("w1", "w2"), "match_probability": 0.9995}])
    for c in ("citizen_id", "name", "birth_date", "gender", "phone", "address", "context", "source"):
        pairs[f"gamma_{c}"] = 0  # not used by the plain rule; `meets_requirements` reads them
    out = _with_plain_evidence(pairs, _lf(), floor=0.999, threshold=0.999)
    assert out["unique_id_l"].tolist() == ["a", "w1"]
    assert out["match_probability"].tolist() == [0.999, 0.9995]
    assert out["eligible"].tolist()[0]


def _lf_surnames() -> pd.DataFrame:
    rows = [("a", "李忠建", "李", dt.date(1987, 5, 20)), ("b", "季忠建", "季", dt.date(1987, 5, 20)),
            ("c", "李强", "李", dt.date(2001, 1, 15)), ("d", "季强", "季", dt.date(2001, 1, 15)),
            ("e", "石娜桐", "石", dt.date(1966, 3, 25)), ("f", "石娜梅", "石", dt.date(1966, 3, 25)),
            ("old", "某", "某", dt.date(1920, 1, 1)), ("young", "某", "某", dt.date(2020, 1, 1))]
    # 强 is a given name of many: the data says so
    rows += [(f"q{i}", f"{s}强", s, dt.date(1950, 1, 1) + dt.timedelta(days=89 * i))
             for i, s in enumerate("王张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏")]
    return pd.DataFrame(rows, columns=["unique_id", "name_s", "surname", "birth"])


def test_a_mistyped_surname_before_a_rare_given_name_is_plain_a_twin_is_not():
    lf = _lf_surnames()
    assert name_bearers(lf, "given")["忠建"] == 1 and name_bearers(lf, "given")["强"] > 40
    pairs = pd.DataFrame([
        _pair("a", "b", name="one_char"),                     # 李忠建 / 季忠建: one person, surname mistyped
        _pair("a", "b", name="one_char", gender="null"),      # gender missing on one side: still rare enough
        _pair("c", "d", name="one_char"),                     # 李强 / 季强: a one-character given name
        _pair("e", "f", name="one_char"),                     # twins 石娜桐 / 石娜梅: the given names differ
        _pair("a", "b", name="one_char", citizen_id="different_valid"),
    ])
    assert plain_evidence(pairs, lf).tolist() == [True, True, False, False, False]
