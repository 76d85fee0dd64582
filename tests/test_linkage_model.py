"""Probabilistic person linkage on small hand-built frames (pipelines.linkage)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.linkage import (
    LinkageModel,
    explain_pair,
    link_new_mentions,
    linkage_frame,
    probabilistic_clusters,
    resolve_frame,
    review_candidates,
)
from pipelines.normalize.ids import citizen_id_checksum, normalize_citizen_ids
from pipelines.normalize.names import normalize_names
from pipelines.resolve import assign_person_ids, resolve_persons


def cid(body17: str) -> str:
    return body17 + citizen_id_checksum(pd.Series([body17])).iloc[0]


def make_mentions(rows: list[dict]) -> pd.DataFrame:
    """Mention frames as standardize builds them, from raw-ish values."""
    df = pd.DataFrame(rows)
    for c in ["id", "name", "gender", "birth", "phone", "addr", "doc_type", "doc_no", "src"]:
        if c not in df:
            df[c] = None
    ids = normalize_citizen_ids(df["id"].astype(object))
    names = normalize_names(df["name"].astype(object))
    return pd.DataFrame({
        "source_system": "civil_affairs", "source_object": df["src"].fillna("export_" + df["mid"] + ".csv"), "source_locator": "2", "role": "x",
        "mention_id": df["mid"], "record_key": df["mid"], "household_key": None,
        "citizen_id": ids["value"], "id_raw": df["id"], "id_status": ids["status"],
        "id_region_code": ids["region_code"], "id_birth_date": ids["birth_date"], "id_gender": ids["gender"],
        "id_sequence": ids["sequence"], "id_evidence_only": ids["evidence_only"],
        "name": names["value"], "name_simplified": names["simplified"], "name_pinyin": names["pinyin"],
        "name_pinyin_alt": names["pinyin_alt"], "gender": df["gender"], "birth_date": pd.to_datetime(df["birth"]),
        "phone": df["phone"], "hukou_address": df["addr"], "current_address": None,
        "document_type": df["doc_type"].fillna("resident_id"), "document_number": df["doc_no"],
        "export_date": pd.Timestamp("2026-07-01"),
    })


ADDR = "吉林省辽源市龙山区人民大街125号3号楼2单元501室"
ROWS = [
    # twins: same birth date, surname, address, phone; IDs differ in the sequence digits
    dict(mid="tA1", id=cid("22040220150301123"), name="李宇勇", gender="1", birth="2015-03-01", phone="13912345678", addr=ADDR),
    dict(mid="tA2", id=cid("22040220150301123"), name="李宇勇", gender="1", birth="2015-03-01", phone="13912345678", addr="人民大街125号3-2-501"),
    dict(mid="tB1", id=cid("22040220150301145"), name="李宇宏", gender="1", birth="2015-03-01", phone="13912345678", addr=ADDR),
    dict(mid="tB2", id=None, name="李宇宏", gender="1", birth="2015-03-01", phone="13912345678", addr=ADDR),
    # a third twin-like sibling with no ID anywhere: must not join either
    dict(mid="tC1", id=None, name="李宇刚", gender="1", birth="2015-03-01", phone="13912345678", addr=ADDR),
    # Traditional name, missing ID ↔ the valid-ID records of the same person
    dict(mid="j1", id=cid("22040219880712242"), name="张静莉", gender="2", birth="1988-07-12", phone="13600001111", addr="龙山区东吉大街8号2栋1单元302室"),
    dict(mid="j2", id=cid("22040219880712242"), name="张静莉", gender="2", birth="1988-07-12", phone="13600001111"),
    dict(mid="j3", id="无", name="張靜莉", gender="2", birth="1988-07-12", addr="东吉大街8号2-1-302"),
    # Excel-truncated ID (last three digits 000)
    dict(mid="e1", id=cid("22040219700203361"), name="王建国", gender="1", birth="1970-02-03", phone="13700002222"),
    dict(mid="e2", id=cid("22040219700203361"), name="王建国", gender="1", birth="1970-02-03"),
    dict(mid="e3", id=cid("22040219700203361")[:15] + "000", name="王建国", gender="1", birth="1970-02-03"),
    # homophone typo, no ID; birth date and phone agree
    dict(mid="h1", id=cid("22040219820506151"), name="张伟", gender="1", birth="1982-05-06", phone="13800003333"),
    dict(mid="h2", id=cid("22040219820506151"), name="张伟", gender="1", birth="1982-05-06", phone="13800003333"),
    dict(mid="h3", id=None, name="章伟", gender="1", birth="1982-05-06", phone="13800003333"),
    # namesakes with different birth dates
    dict(mid="n1", id=cid("22040219800101242"), name="王芳", gender="2", birth="1980-01-01", phone="13500004444"),
    dict(mid="n2", id=cid("22040219800101242"), name="王芳", gender="2", birth="1980-01-01"),
    dict(mid="n3", id=None, name="王芳", gender="2", birth="1975-06-06", phone="13500005555"),
    # twins with homophone names on consecutive rows of one file: two people, not a typo
    dict(mid="s1", src="流动人口登记_20260701.csv", id=cid("12010120140328769"), name="陈利佳", gender="1",
         birth="2014-03-28", phone="18841079766", addr="龙山区南康路9号1栋1单元101室"),
    dict(mid="s2", src="流动人口登记_20260701.csv", id=None, name="陈利嘉", gender="1",
         birth="2014-03-28", phone="18841079766", addr="龙山区南康路9号1栋1单元101室"),
    # sisters with homophone names, same flat and phone, different birth dates
    dict(mid="w1", id=cid("22040219800601294"), name="汤莉", gender="2", birth="1980-06-01", phone="0437-2861702", addr="龙山区西宁大路3号2栋1单元201室"),
    dict(mid="w2", id=cid("22040219800601294"), name="汤莉", gender="2", birth="1980-06-01", phone="0437-2861702", addr="龙山区西宁大路3号2栋1单元201室"),
    dict(mid="w3", id="2.20402E+17", name="汤丽", gender="2", birth="1983-04-11", phone="0437-2861702", addr="龙山区西宁大路3号2栋1单元201室"),
    # a foreign spouse with a passport
    dict(mid="f1", id="E12345678", doc_type="passport", doc_no="E12345678", name="KIM SONG HUI", gender="2", birth="1990-09-09"),
    dict(mid="f2", id="E12345678", doc_type="passport", doc_no="E12345678", name="KIM SONG HUI", gender="2", birth="1990-09-09"),
]
# background residents: each written twice with a valid ID (labels for m), once without
_SURNAMES = "赵钱孙周吴郑冯陈褚卫蒋沈韩杨朱秦尤许何吕施"
_GIVEN = "明华国强军平刚杰涛斌辉敏静丽艳娟霞秀英梅"
for i in range(20):
    body = f"2204021{960 + i:03d}{(i % 12) + 1:02d}{(i % 27) + 1:02d}{300 + i * 7:03d}"[:17]
    bdate = f"{body[6:10]}-{body[10:12]}-{body[12:14]}"
    name = _SURNAMES[i] + _GIVEN[i] + _GIVEN[(i * 7) % 20]
    phone = f"1390000{i:04d}"
    sex = "1" if int(body[16]) % 2 else "2"
    ROWS.append(dict(mid=f"bg{i:02d}a", id=cid(body), name=name, gender=sex, birth=bdate, phone=phone))
    ROWS.append(dict(mid=f"bg{i:02d}b", id=cid(body), name=name, gender=sex, birth=bdate, addr=f"龙山区向阳路{i + 1}号"))
    ROWS.append(dict(mid=f"bg{i:02d}c", id=None, name=name, gender=sex, birth=bdate, phone=phone))
# and a crowd of residents mentioned once (they make u and the name frequencies realistic)
_rng = __import__("random").Random(4)
_MORE_SUR = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜戚谢邹喻柏水窦章云苏潘葛奚范彭郎"
_MORE_GIVEN = "明华国强军平刚杰涛斌辉敏静丽艳娟霞秀英梅文春林海波宁慧佳欣怡萱梓晨浩宇轩博雨诗琪瑶"
for i in range(300):
    y, mo, d = _rng.randint(1940, 2020), _rng.randint(1, 12), _rng.randint(1, 28)
    ROWS.append(dict(mid=f"z{i:03d}", id=None, name=_rng.choice(_MORE_SUR) + "".join(
        _rng.choice(_MORE_GIVEN) for _ in range(_rng.randint(1, 2))), gender=_rng.choice("12"),
        birth=f"{y}-{mo:02d}-{d:02d}", phone=f"15{_rng.randint(0, 999999999):09d}"))


@pytest.fixture(scope="module")
def mentions() -> pd.DataFrame:
    return make_mentions(ROWS)


@pytest.fixture(scope="module")
def model(mentions) -> LinkageModel:
    return LinkageModel().fit(linkage_frame(mentions))


@pytest.fixture(scope="module")
def clusters(mentions, model) -> pd.Series:
    out = probabilistic_clusters(mentions, model=model)
    assert list(out.columns) == ["mention_id", "cluster_label", "match_method", "match_probability"]
    assert out["mention_id"].tolist() == mentions["mention_id"].tolist()
    return out.set_index("mention_id")["cluster_label"]


def same(labels: pd.Series, *ids: str) -> bool:
    return labels[list(ids)].nunique() == 1


def test_twins_stay_apart(clusters) -> None:
    assert same(clusters, "tA1", "tA2")
    assert same(clusters, "tB1", "tB2")          # the ID-less mention joins the twin of its own name
    assert not same(clusters, "tA1", "tB1")
    assert clusters["tC1"] not in {clusters["tA1"], clusters["tB1"]}


def test_traditional_name_without_id_links(clusters) -> None:
    assert same(clusters, "j1", "j2", "j3")


def test_excel_truncated_id_links(clusters) -> None:
    assert same(clusters, "e1", "e2", "e3")


def test_homophone_typo_links(clusters) -> None:
    assert same(clusters, "h1", "h2", "h3")


def test_namesakes_with_different_birth_dates_stay_apart(clusters) -> None:
    assert same(clusters, "n1", "n2")
    assert not same(clusters, "n1", "n3")


def test_same_file_homophones_and_sisters_stay_apart(clusters) -> None:
    assert not same(clusters, "s1", "s2")
    assert same(clusters, "w1", "w2")
    assert not same(clusters, "w1", "w3")


def test_background_and_documents(clusters) -> None:
    for i in range(20):
        assert same(clusters, f"bg{i:02d}a", f"bg{i:02d}b", f"bg{i:02d}c")
    crowd = clusters[clusters.index.str.startswith("z")]
    assert crowd.nunique() >= 298  # random namesakes born the same day are possible, but not here
    assert clusters[~clusters.index.str.startswith("z")].nunique() == 20 + 2 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 2 + 2
    assert clusters["f1"] == clusters["f2"] == "DOC:E12345678"


def test_methods_and_probabilities(mentions, model) -> None:
    out = probabilistic_clusters(mentions, model=model).set_index("mention_id")
    assert out.loc["j1", "match_method"] == "citizen_id" and out.loc["j1", "match_probability"] == 1.0
    assert out.loc["j3", "match_method"] == "probabilistic" and out.loc["j3", "match_probability"] >= 0.999
    assert out.loc["tC1", "match_method"] == "singleton" and pd.isna(out.loc["tC1", "match_probability"])


def test_cannot_and_must_link_decisions(mentions, model) -> None:
    dec = pd.DataFrame({"mention_id_a": ["j3", "n3"], "mention_id_b": ["j1", "n1"],
                        "decision": ["cannot_link", "must_link"]})
    labels = probabilistic_clusters(mentions, decisions=dec, model=model).set_index("mention_id")
    assert labels.loc["j3", "cluster_label"] != labels.loc["j1", "cluster_label"]
    assert labels.loc["n3", "cluster_label"] == labels.loc["n1", "cluster_label"]
    assert labels.loc["n3", "match_method"] == "must_link"


def test_explain_pair(mentions, model) -> None:
    ex = explain_pair(mentions, "j1", "j3", model=model).set_index("comparison")
    assert ex.loc["name", "level"] == "exact"          # 張靜莉 is 张静莉 once simplified
    assert ex.loc["birth_date", "level"] == "exact"
    assert ex.loc["citizen_id", "level"] == "null"
    assert ex.loc["name", "match_weight"] > 0
    assert ex.loc["total", "match_probability"] >= 0.999
    parts = ex.drop(index="total")["match_weight"].sum()
    assert parts == pytest.approx(ex.loc["total", "match_weight"], abs=1e-6)


def test_review_candidates_hold_the_twin_pattern(mentions, model) -> None:
    rc = review_candidates(mentions, model=model)
    pairs = {frozenset(p) for p in zip(rc["mention_id_a"], rc["mention_id_b"])}
    assert any("tC1" in p for p in pairs)  # the ID-less sibling looks like his brothers
    assert set(rc["reason"]) <= {"uncertain", "names_differ"} | {r for r in rc["reason"] if r.startswith("refused:")}


def test_resolve_persons_accepts_the_clusterer(mentions) -> None:
    empty_x = pd.DataFrame(columns=["mention_id", "person_id"])
    empty_p = pd.DataFrame(columns=["person_id", "citizen_id"])
    res = resolve_persons(mentions, empty_x, empty_p, clusterer=probabilistic_clusters)
    pid = res.xref.set_index("mention_id")["person_id"]
    assert pid["j1"] == pid["j3"] and pid["tA1"] != pid["tB1"]


def test_link_new_mentions(mentions, model) -> None:
    old = mentions[~mentions["mention_id"].isin(["j3", "h3", "tB2"])]
    clusters = probabilistic_clusters(old, model=model)
    res = assign_person_ids(old, clusters, pd.DataFrame(columns=["mention_id", "person_id"]),
                            pd.DataFrame(columns=["person_id", "citizen_id"]))
    existing = old.merge(res.xref[["mention_id", "person_id"]], on="mention_id")
    new = mentions[mentions["mention_id"].isin(["j3", "h3", "tB2"])]
    links, review = link_new_mentions(new, existing, model=model)
    pid = existing.set_index("mention_id")["person_id"]
    got = links.set_index("mention_id")
    assert got.loc["j3", "person_id"] == pid["j1"]
    assert got.loc["h3", "person_id"] == pid["h1"]
    assert got.loc["tB2", "person_id"] == pid["tB1"]
    assert got.loc["j3", "match_method"] == "probabilistic"


# ----------------------------------------------------------------- a restored model
def _restored(model: LinkageModel) -> LinkageModel:
    import json

    return LinkageModel.from_settings(json.loads(json.dumps(model.stored_settings())))


@pytest.mark.parametrize("pair", [("j1", "j3"), ("h1", "h3"), ("tA1", "tB1"), ("bg03a", "bg03c"), ("n1", "n3")])
def test_a_restored_model_explains_a_pair_like_the_trained_one(mentions, model, pair) -> None:
    fresh = explain_pair(mentions, *pair, model=model).set_index("comparison")
    restored = explain_pair(mentions, *pair, model=_restored(model)).set_index("comparison")
    pd.testing.assert_series_equal(fresh["level"], restored["level"])
    for col in ("m_probability", "u_probability", "bayes_factor", "match_weight"):
        pd.testing.assert_series_equal(fresh[col], restored[col], check_exact=False, rtol=1e-9)
    assert restored.loc["total", "match_probability"] == pytest.approx(fresh.loc["total", "match_probability"])


def test_the_exact_name_level_weighs_by_name_frequency_in_a_restored_model(mentions, model) -> None:
    ex = explain_pair(mentions, "j1", "j3", model=_restored(model)).set_index("comparison")
    m, u = ex.loc["name", "m_probability"], ex.loc["name", "u_probability"]
    assert m > u and ex.loc["name", "bayes_factor"] > 1 and ex.loc["name", "match_weight"] > 0


def test_level_weights_are_the_trained_parameters(model) -> None:
    """`level_weight`: what `parameters()` lists for a level, 0 for a null level, and a
    clear error for a level the model does not have (a restatement reads the relatives'
    levels by name, `resolution._partial_context_restates`)."""
    params = model.parameters().set_index(["comparison", "level"])
    assert model.level_weight("context", "shared") == pytest.approx(params.loc[("context", "shared"), "match_weight"])
    assert model.level_weight("context", "shared") > model.level_weight("context", "different")
    assert model.level_weight("context", "null") == 0.0
    with pytest.raises(KeyError, match="no level 'partly'"):
        model.level_weight("context", "partly")


def test_a_restored_model_scores_like_the_trained_one(mentions, model) -> None:
    lf = linkage_frame(mentions)
    fresh = model.predict(threshold=0.01).set_index(["unique_id_l", "unique_id_r"]).sort_index()
    again = _restored(model).predict(lf, threshold=0.01).set_index(["unique_id_l", "unique_id_r"]).sort_index()
    assert fresh.index.equals(again.index)
    pd.testing.assert_series_equal(fresh["match_weight"], again["match_weight"], check_exact=False, rtol=1e-9)


@pytest.mark.parametrize("part", [7, 50, 10_000])
def test_scoring_in_parts_gives_the_pairs_of_one_pass(mentions, model, monkeypatch, part) -> None:
    """`PREDICT_CHUNK_MENTIONS`: the blocked pairs of the mentions in parts, each pair once,
    scored as in one pass; with the trained model's own frame and with a restored model."""
    import pipelines.linkage.model as m

    key = ["unique_id_l", "unique_id_r"]
    lf = linkage_frame(mentions)
    whole = _restored(model).predict(lf, threshold=0.01).sort_values(key).reset_index(drop=True)
    trained_whole = model.predict(threshold=0.01).sort_values(key).reset_index(drop=True)
    monkeypatch.setattr(m, "PREDICT_CHUNK_MENTIONS", part)
    for parts in (_restored(model).predict(lf, threshold=0.01), model.predict(threshold=0.01)):
        assert not parts.duplicated(key).any()
        parts = parts.sort_values(key).reset_index(drop=True)
        assert len(parts) > 50
        pd.testing.assert_frame_equal(parts, whole, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(trained_whole, whole, check_exact=False, rtol=1e-9)


def test_link_new_mentions_with_a_restored_model(mentions, model) -> None:
    new_ids = ["j3", "h3", "tB2"]
    old = mentions[~mentions["mention_id"].isin(new_ids)]
    res = assign_person_ids(old, probabilistic_clusters(old, model=model), pd.DataFrame(columns=["mention_id", "person_id"]),
                            pd.DataFrame(columns=["person_id", "citizen_id"]))
    existing = old.merge(res.xref[["mention_id", "person_id"]], on="mention_id")
    links, review = link_new_mentions(mentions[mentions["mention_id"].isin(new_ids)], existing,
                                      model=_restored(model))
    pid = existing.set_index("mention_id")["person_id"]
    got = links.set_index("mention_id")["person_id"]
    assert (got["j3"], got["h3"], got["tB2"]) == (pid["j1"], pid["h1"], pid["tB1"])
    assert set(review.columns) >= {"mention_id_a", "mention_id_b", "match_probability", "reason"}
    assert not review["mention_id_a"].str.startswith("P:").any()


# ----------------------------------------------------------------- review queue
def test_review_candidates_with_decisions(mentions, model) -> None:
    dec = pd.DataFrame({"mention_id_a": ["n1", "tA1"], "mention_id_b": ["n3", "tC1"],
                        "decision": ["must_link", "cannot_link"]})
    rc = review_candidates(mentions, decisions=dec, model=model)
    pairs = {frozenset(p) for p in zip(rc["mention_id_a"], rc["mention_id_b"])}
    assert frozenset({"tA1", "tC1"}) not in pairs and frozenset({"n1", "n3"}) not in pairs
    # everything decided: an empty queue keeps its columns
    everything = pd.DataFrame({"mention_id_a": rc["mention_id_a"], "mention_id_b": rc["mention_id_b"],
                               "decision": "cannot_link"})
    empty = review_candidates(mentions, decisions=pd.concat([dec, everything]), model=model)
    assert empty.empty and "match_probability" in empty.columns


def test_the_review_queue_comes_from_the_clustering_run(mentions, model) -> None:
    from pipelines.linkage import REVIEW_BAND, resolve_probabilistic, review_from

    result, pairs, _ = resolve_probabilistic(mentions, model=model, score_from=REVIEW_BAND[0])
    pd.testing.assert_frame_equal(review_from(result, pairs), review_candidates(mentions, model=model))
    # clustering is unaffected by scoring the review band too
    plain, _, _ = resolve_probabilistic(mentions, model=model)
    pd.testing.assert_frame_equal(plain.clusters, result.clusters)


def test_every_comparison_and_level_has_a_chinese_label_for_officers():
    from pipelines.linkage.comparisons import COMPARISONS
    from pipelines.linkage.labels_zh import COMPARISON_LABELS_ZH, LEVEL_LABELS_ZH, level_label

    missing = [c.name for c in COMPARISONS if c.name not in COMPARISON_LABELS_ZH]
    missing += [f"{c.name}.{lv.label}" for c in COMPARISONS for lv in c.levels
                if level_label(c.name, lv.label) == lv.label]
    assert not missing, f"add these to pipelines/linkage/labels_zh.py: {missing}"
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in v) for v in [*COMPARISON_LABELS_ZH.values(),
                                                                     *LEVEL_LABELS_ZH.values()])


def test_citizen_id_levels_evaluate_on_digit_strings_of_every_length():
    """DuckDB evaluates both sides of an AND on whole vectors: a 1M-resident full sync
    failed with "Strings must be of equal length" from `hamming` on pairs of IDs of
    different lengths. Every level of the citizen-ID comparison, evaluated as Splink's
    CASE over all pairs of digit strings of lengths 6–18, must run and give the levels
    the lengths allow."""
    import random

    import duckdb

    from pipelines.linkage.comparisons import CITIZEN_ID

    rnd = random.Random(5)
    base = "".join(rnd.choice("0123456789") for _ in range(17))
    ids = [base, base[:16] + str((int(base[16]) + 1) % 10)]          # one sequence digit apart
    ids += ["".join(rnd.choice("0123456789") for _ in range(n)) for n in [6, 8, 14, 15, 16, 18] * 300]
    ids += ["".join(rnd.choice("0123456789") for _ in range(17)) for _ in range(1500)]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, d VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(ids)))
    case = "CASE " + " ".join(f"WHEN {lv.sql} THEN '{lv.label}'" for lv in CITIZEN_ID.levels) + " END"
    got = con.execute(f"""
        WITH pairs AS (
            SELECT l.i AS i_l, r.i AS i_r, l.d AS id_digits_l, r.d AS id_digits_r,
                   'typo' AS id_kind_l, 'typo' AS id_kind_r, NULL AS cid_l, NULL AS cid_r
            FROM t l, t r WHERE l.i < r.i AND l.i < 60)
        SELECT i_l, i_r, length(id_digits_l) = 17 AND length(id_digits_r) = 17, {case} FROM pairs""").fetchall()
    levels = {(a, b): lv for a, b, _, lv in got}
    assert levels[(0, 1)] == "sequence_edit"
    assert all(lv not in ("one_edit", "sequence_edit", "two_edits") for _, _, both_17, lv in got if not both_17)


def test_scoring_closes_the_databases_it_opens(mentions, model, monkeypatch) -> None:
    """Splink's linker is a reference cycle: a database the model opens for a scoring (or
    keeps from training) is closed when it is done with, not left to the garbage
    collector with its copy of the frames (0.6 GB at a million residents)."""
    import duckdb

    opened = []
    real_db = LinkageModel._db

    def recording_db():
        db = real_db()
        opened.append(db)
        return db

    monkeypatch.setattr(LinkageModel, "_db", staticmethod(recording_db))
    lf = linkage_frame(mentions)
    restored = _restored(model)
    restored.predict(lf, threshold=0.5)
    restored.predict_new(lf.iloc[:5], lf.iloc[5:], threshold=0.5)
    restored.explain(lf, str(lf["unique_id"].iloc[0]), str(lf["unique_id"].iloc[1]))
    _, _, trained = resolve_frame(lf)  # trains a model of its own, scores, then releases it
    assert len(opened) == 4
    for db in opened:
        with pytest.raises(duckdb.ConnectionException):
            db.duckdb_con.execute("SELECT 1")
    assert trained.settings and not hasattr(trained, "_db_api") and not hasattr(trained, "_linker")
