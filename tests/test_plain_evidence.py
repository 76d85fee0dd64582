"""Recall where the evidence is plain (issue 13, item 5): a rare full name with the same
birth date and gender in two export files links when no valid ID contradicts it; twins
and common names do not; the name's frequency is computed from the data."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from pipelines.linkage import _with_plain_evidence, linkage_frame, name_bearers, plain_evidence


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
           "level_citizen_id": "null", "level_address": "null", "level_phone": "null", "level_context": "null"}
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


def _roster(*rows: tuple[str, str, str, str, str]) -> pd.DataFrame:
    """Roster mentions: (mention id, file, household, name, birth date); all men, one phone."""
    return pd.DataFrame([{"mention_id": m, "source_object": f, "household_key": f"{f}#{h}", "name": n,
                          "birth_date": b, "gender": "1", "phone": "15026318339", "role": "member"}
                         for m, f, h, n, b in rows])


def test_a_household_listing_knows_whether_anyone_else_in_it_was_born_that_day():
    lf = linkage_frame(_roster(("a", "04月", "1", "邹武连", "2005-05-31"), ("p", "04月", "1", "邹国", "1975-02-01"),
                               ("t1", "05月", "1", "邹武连", "2005-05-31"), ("t2", "05月", "1", "邹斌连", "2005-05-31"),
                               ("u", "06月", "9", "邹斌连", None)))
    # alone with his birth date; a twin pair listed together; birth date unknown: not known
    sole = lf.set_index("unique_id")["sole_in_household"]
    assert sole["a"] and sole["p"] and not sole["t1"] and not sole["t2"] and pd.isna(sole["u"])
    # no household column at all (a registration, one person per row): not known either
    assert linkage_frame(_roster(("r", "登记", "1", "刘春", "2000-08-19")).drop(columns="household_key"))[
        "sole_in_household"].isna().all()


def test_one_character_apart_in_two_roster_months_each_listing_no_twin_is_a_typo():
    lf = linkage_frame(_roster(("a", "04月", "1", "邹武连", "2005-05-31"), ("b", "05月", "1", "邹斌连", "2005-05-31"),
                               ("t1", "06月", "1", "邹武连", "2005-05-31"), ("t2", "06月", "1", "邹斌连", "2005-05-31")))
    pairs = pd.DataFrame([
        _pair("a", "b", name="one_char", phone="same"),                      # each month lists one: a typo
        _pair("a", "b", name="one_char", address="same_flat"),
        _pair("a", "b", name="pinyin", context="shared"),
        _pair("a", "b", name="one_char"),                                    # nothing else agrees: apart
        _pair("a", "b", name="one_char", phone="same", gender="null"),       # the gender must agree
        _pair("a", "b", name="one_char", phone="same", source="same_object"),
        _pair("a", "b", name="one_char", phone="same", citizen_id="different_valid"),
        _pair("a", "t2", name="one_char", phone="same"),                     # June lists both: twins
        _pair("t1", "t2", name="one_char", phone="same"),
        _pair("a", "b", name="surname", phone="same"),                       # more than one character apart
    ])
    assert plain_evidence(pairs, lf).tolist() == [True, True, True, False, False, False, False, False, False, False]


def test_the_gender_is_taken_only_from_a_valid_id():
    m = pd.DataFrame([{"mention_id": "v", "name": "杨志", "id_status": "valid", "citizen_id": "222401199807295674",
                       "id_raw": "222401199807295674", "id_gender": "1", "birth_date": "1998-07-29"},
                      {"mention_id": "x", "name": "杨志", "id_status": "id_bad_checksum", "id_raw": "222401199807295684",
                       "id_gender": "2", "birth_date": "1998-07-29"}])
    sex = linkage_frame(m).set_index("unique_id")["sex"]
    assert sex["v"] == "1" and pd.isna(sex["x"])   # a wrong digit may be the gender digit


def _lf_common(bearers: int = 60, *extra: tuple[str, str, str | None]) -> pd.DataFrame:
    """刘霞 born 2006-11-10 in a child record without ID ("a", T_ZN) and registered with
    an ID ("b"); `bearers` - 1 other 刘霞 born on other days; `extra`: more 刘霞 born that
    day (id, source object, citizen id)."""
    day = dt.date(2006, 11, 10)
    rows = [("a", "T_ZN", None, day), ("b", "流动人口登记-20260701.csv", "220402200611100724", day)]
    rows += [(u, obj, cid, day) for u, obj, cid in extra]
    rows += [(f"o{i}", "T_YLFN", None, dt.date(1925, 1, 1) + dt.timedelta(days=36525 * i // bearers))
             for i in range(bearers - 1)]
    rows += [("old", "x", None, dt.date(1920, 1, 1)), ("young", "x", None, dt.date(2020, 1, 1))]
    lf = pd.DataFrame(rows, columns=["unique_id", "source_object", "cid", "birth"])
    lf["birth"] = pd.to_datetime(lf["birth"])
    return lf.assign(name_s=["刘霞"] * (len(lf) - 2) + ["某", "某"], sex="2")


def test_a_common_name_links_on_birth_date_and_gender_when_no_namesake_is_seen():
    ab = pd.DataFrame([_pair("a", "b"), _pair("a", "b", gender="null")])
    # 60 bearers over a century: C(60, 2) / 36 525 ≫ 1/1000 (not rare), but 60 / 36 525
    # bearers born on a given day: one chance in 600 that another 刘霞 was born that day
    assert plain_evidence(ab, _lf_common()).tolist() == [True, False]   # the gender must be known
    # 200 bearers: one chance in 180 that another was born that day: too many
    assert plain_evidence(ab, _lf_common(200)).tolist() == [False, False]
    # a namesake seen: another 刘霞 born that day with another ID, or twice in one table
    assert not plain_evidence(ab, _lf_common(60, ("c", "婚姻登记.xlsx", "220402200611100999"))).any()
    assert not plain_evidence(ab, _lf_common(60, ("c", "T_ZN", None))).any()
    # the same person's own records in other files do not make the name ambiguous
    assert plain_evidence(ab, _lf_common(60, ("c", "T_YLFN", None), ("d", "火化信息.csv", "220402200611100724"))
                          ).tolist() == [True, False]


def _lf_sound(bearers: int = 60, *extra: tuple[str, str, str | None, str]) -> pd.DataFrame:
    """周影 born 2007-09-10 in a child record without ID ("a", T_ZN) and 周颖 registered with an
    ID ("b"): one sound, zhouying; `bearers` - 1 others of that sound (周英, 周莹, …) born on
    other days; `extra`: more born that day (id, source object, citizen id, name)."""
    day = dt.date(2007, 9, 10)
    rows = [("a", "T_ZN", None, day, "周影"), ("b", "T_YLFN", "220402200709100026", day, "周颖")]
    rows += [(u, obj, cid, day, name) for u, obj, cid, name in extra]
    rows += [(f"o{i}", "流动人口登记-20260701.csv", None, dt.date(1925, 1, 1) + dt.timedelta(days=36525 * i // bearers),
              ("周英", "周莹", "周瑛")[i % 3]) for i in range(bearers - 1)]
    rows += [("old", "x", None, dt.date(1920, 1, 1), "某"), ("young", "x", None, dt.date(2020, 1, 1), "某")]
    lf = pd.DataFrame(rows, columns=["unique_id", "source_object", "cid", "birth", "name_s"])
    lf["birth"] = pd.to_datetime(lf["birth"])
    return lf.assign(name_py=["mou" if n == "某" else "zhouying" for n in lf["name_s"]], sex="2")


def test_one_sound_links_like_one_name_homophones_and_romanised_spellings():
    """周影 / 周颖 (or 钟红璐 / ZHONG HONGLU): the same pinyin, birth date and gender in two files,
    few bearers of that sound per day and no two persons seen under it: plain."""
    ab = pd.DataFrame([_pair("a", "b", name="pinyin"), _pair("a", "b", name="pinyin", gender="null")])
    assert plain_evidence(ab, _lf_sound()).tolist() == [True, False]
    # 200 bearers of the sound: one chance in 180 that another was born that day
    assert plain_evidence(ab, _lf_sound(200)).tolist() == [False, False]
    # twins 周影 / 周颖 listed together in one table, or another valid ID under that sound and day
    assert not plain_evidence(ab, _lf_sound(60, ("c", "T_ZN", None, "周颖"))).any()
    assert not plain_evidence(ab, _lf_sound(60, ("c", "婚姻登记.xlsx", "220402200709100999", "周映"))).any()
    # only the polyphonic alternative reading agrees: not the same sound
    lf = _lf_sound()
    lf.loc[lf["unique_id"] == "a", "name_py"] = "zhouyingx"
    assert not plain_evidence(ab, lf).any()
