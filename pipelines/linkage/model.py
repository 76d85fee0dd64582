"""A Fellegi–Sunter person-linkage model on Splink 5 (DuckDB backend, in memory).

`LinkageModel.fit(lf)` trains on a linkage frame (`features.linkage_frame`):

* **u** (how often a level occurs among random pairs, i.e. non-matches) by random
  sampling of up to ``u_max_pairs`` pairs (`estimate_u_using_random_sampling`);
* **m** (how often it occurs among true matches) from the mentions that share a valid
  citizen ID: they are near-certain labels of the same person, and the other evidence
  of such pairs (name, birth date, phone, address...) is written independently of the
  ID (`estimate_m_from_label_column("cid")`). The ID comparison itself cannot be learnt
  from pairs labelled by it, so its m values are fixed priors (see `comparisons.py`);
* the prior probability that two random mentions match (λ): the pairs sharing a valid ID
  divided by the recall of the ID rule (the share of pairs where both mentions carry a
  valid ID, estimated as the squared share of mentions with one), over all pairs.

Trained values are shrunk towards the priors written in `comparisons.py` (a Dirichlet
prior worth ``m_prior_pairs`` labelled / ``u_prior_pairs`` random pairs), so that a model
trained on a small frame (a test, a small district) is still sensible, and an m is never
below its level's ``m_floor``.

`predict` scores the pairs found by the blocking rules; `predict_new` scores only
new × (new + existing) pairs for an incremental load; `explain` gives the per-comparison
levels and weights of one pair. Term frequencies of the Simplified name adjust the exact
name level (a shared 张伟 is weaker evidence than a shared 欧阳婧雯).
"""

from __future__ import annotations

import itertools
import logging
import math
from copy import deepcopy
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.linkage.comparisons import BLOCKING_RULES, COMPARISONS, BlockingRule, Comparison

__all__ = ["TRAINING_KEY", "LinkageModel", "register_functions"]

_UID = itertools.count()

#: `predict` scores the blocked pairs of at most this many mentions (the left-hand side)
#: at a time: Splink materialises a part's pairs with both records' matching columns, so
#: a million residents' 1.5 million pairs at once took +1.0 GB over the resolution's
#: frames; the parts together are the same pairs (a pair is blocked from its left-hand
#: record only). Measured on the 1M district's 848 000 mentions: 1, 2, 3 parts 11.6,
#: 12.4, 12.7 s and +1.05, +1.00, +0.62 GB; 4 to 6 parts ~20 s (+0.27 to +0.13 GB)
PREDICT_CHUNK_MENTIONS = 300_000

#: key of the training facts in stored settings (not a Splink setting: stripped on restore)
TRAINING_KEY = "residents_training"

_SCHEMA = pa.schema([
    ("unique_id", pa.string()), ("cid", pa.string()), ("doc_key", pa.string()), ("doc_no", pa.string()), ("id_kind", pa.string()),
    ("id_digits", pa.string()), ("id_p14", pa.string()), ("name_s", pa.string()), ("name_py", pa.string()),
    ("name_py_alt", pa.string()), ("name_initial", pa.string()), ("surname", pa.string()), ("birth", pa.date32()), ("birth_year", pa.int32()),
    ("sex", pa.string()), ("phone", pa.string()), ("addr_flats", pa.list_(pa.string())),
    ("addr_blds", pa.list_(pa.string())), ("ctx", pa.list_(pa.string())), ("source_object", pa.string()),
])


def _char_distance(a: pa.Array, b: pa.Array) -> pa.Array:
    from rapidfuzz.distance import Levenshtein

    dist = Levenshtein.distance
    out = [None if (x is None or y is None) else dist(x, y) for x, y in zip(a.to_pylist(), b.to_pylist())]
    return pa.array(out, type=pa.int32())


def register_functions(con: Any) -> None:
    """``zh_char_distance(a, b)``: Levenshtein distance on characters (rapidfuzz)."""
    from duckdb.sqltypes import INTEGER, VARCHAR

    try:
        con.create_function("zh_char_distance", _char_distance, [VARCHAR, VARCHAR], INTEGER, type="arrow",
                            side_effects=False)
    except Exception as exc:  # already registered on this connection
        if "already" not in str(exc).lower():
            raise


def _close(db: Any) -> None:
    """Close a Splink DuckDB API's connection (its in-memory database goes with it)."""
    if db is not None:
        try:
            db.duckdb_con.close()
        except Exception:  # noqa: BLE001 - already closed; nothing else to free
            pass


def to_arrow(lf: pd.DataFrame) -> pa.Table:
    """The linkage frame as an Arrow table with fixed types (lists stay lists, even empty)."""
    cols = {}
    for f in _SCHEMA:
        s = lf[f.name]
        if pa.types.is_list(f.type):
            if isinstance(s.dtype, pd.ArrowDtype):  # the persisted index's lists: their buffers as they are
                arr = pa.chunked_array(pa.array(s.array)).combine_chunks().cast(f.type)
            else:
                arr = pa.array([v if isinstance(v, (list, tuple, np.ndarray)) else None for v in s], type=f.type)
            # a missing list is an empty one (the comparisons test len(...) = 0)
            cols[f.name] = pc.if_else(pc.is_null(arr), pa.scalar([], type=f.type), arr)
        elif pa.types.is_date32(f.type):
            d = pd.to_datetime(s, errors="coerce").astype("datetime64[s]")
            cols[f.name] = pa.array(d.to_numpy(), type=pa.timestamp("s"), from_pandas=True).cast(f.type)
        elif pa.types.is_integer(f.type):
            v = pd.to_numeric(s, errors="coerce").astype("Int64")
            cols[f.name] = pa.array(v, from_pandas=True).cast(f.type)
        elif isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow":
            # Arrow-backed strings (what DuckDB hands pandas): the buffers as they are
            cols[f.name] = pa.chunked_array(pa.array(s.array)).combine_chunks().cast(f.type)
        else:
            obj = s.astype(object)
            cols[f.name] = pa.array(obj.where(s.notna(), None).tolist(), type=f.type)
    return pa.table(cols, schema=_SCHEMA)


#: settings of the in-memory DuckDB databases the model trains and scores in
#: (`set_duckdb_options`): empty = DuckDB's defaults
_DUCKDB_OPTIONS: dict[str, str] = {}


def set_duckdb_options(*, memory_limit: str | None = None, temp_directory: str | None = None) -> None:
    """Bound the memory of the model's DuckDB databases; beyond it DuckDB spills to
    `temp_directory` (which the caller keeps private: the pairs hold personal data).
    Without a temp directory an in-memory database would spill to `./.tmp` of whatever
    directory the command runs in, so a limit is only set together with one."""
    _DUCKDB_OPTIONS.clear()
    if memory_limit and temp_directory:
        _DUCKDB_OPTIONS.update(memory_limit=memory_limit, temp_directory=temp_directory.replace("'", "''"))


def _level(comparison: dict[str, Any], label: str) -> dict[str, Any] | None:
    """The level labelled `label` of a trained comparison (Splink settings), or None."""
    return next((x for x in comparison["comparison_levels"] if x.get("label_for_charts") == label), None)


class LinkageModel:
    """Settings built from the declarative comparisons; train, predict, explain."""

    def __init__(self, comparisons: tuple[Comparison, ...] = COMPARISONS,
                 blocking_rules: tuple[BlockingRule, ...] = BLOCKING_RULES, *,
                 u_max_pairs: float = 2e6, m_prior_pairs: float = 30.0, u_prior_pairs: float = 2000.0,
                 seed: int = 42, scorer: Any = None):
        self.comparisons = comparisons
        #: where `predict` generates and scores the pairs: None = Splink on DuckDB in this
        #: process; a `pipelines.linkage.spark.SparkScorer` = Splink on a Spark session
        #: (training stays here either way, so both engines weigh evidence identically)
        self.scorer = scorer
        self.blocking_rules = blocking_rules
        self.u_max_pairs = u_max_pairs
        self.m_prior_pairs = m_prior_pairs
        self.u_prior_pairs = u_prior_pairs
        self.seed = seed
        self.settings: dict[str, Any] | None = None  # trained Splink settings (JSON-able)
        self.tf_tables: dict[str, pd.DataFrame] = {}  # term frequencies (name_s, name_py)
        #: how many persons bear each name, over every current mention
        #: (`pipelines.linkage.NameFrequencies`): set by the caller when it scores a part
        #: of the mentions (a local resolution), so that the plain-evidence rule judges a
        #: name as rare or common exactly as a full run does; None: from the frame scored
        self.name_frequencies: Any = None
        self.training: dict[str, float] = {}

    @property
    def engine(self) -> str:
        return getattr(self.scorer, "engine", "duckdb")

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None, **kw: Any) -> "LinkageModel":
        """A model restored from stored settings (`settings`, as `fit` left them).

        The term frequencies are not part of the settings: they are computed from the
        mentions the restored model is given to score (see `term_frequencies`)."""
        model = cls(**kw)
        if settings:
            settings = deepcopy(settings)
            model.training = settings.pop(TRAINING_KEY, None) or {}
            model.settings = settings
        return model

    def stored_settings(self) -> dict[str, Any] | None:
        """The settings to store (`from_settings` restores them): Splink's settings plus,
        under ``TRAINING_KEY``, what the model was trained on (``mentions``: how many)."""
        if self.settings is None:
            return None
        return {**deepcopy(self.settings), TRAINING_KEY: dict(self.training)}

    # ------------------------------------------------------------------ settings
    def _settings_creator(self, lam: float) -> Any:
        from splink import SettingsCreator

        return SettingsCreator(
            link_type="dedupe_only",
            unique_id_column_name="unique_id",
            comparisons=[c.to_splink() for c in self.comparisons],
            blocking_rules_to_generate_predictions=[b.sql for b in self.blocking_rules],
            probability_two_random_records_match=lam,
            retain_matching_columns=True,  # gamma_* (the levels) are only kept with the matching columns
            retain_intermediate_calculation_columns=True,
        )

    @staticmethod
    def _db() -> Any:
        from splink import DuckDBAPI

        db = DuckDBAPI(":memory:")
        for name, value in _DUCKDB_OPTIONS.items():  # memory limit, spill folder (`set_duckdb_options`)
            db.duckdb_con.execute(f"SET {name} = '{value}'")
        register_functions(db.duckdb_con)
        return db

    def release_training(self) -> None:
        """Drop what `fit` keeps for scoring its own frame (`predict()` without a frame):
        Splink's linker and its in-memory DuckDB database, which holds the training frame
        as Arrow and the tables of the estimation. The linker is a reference cycle (its
        components point back at it), so without this its database lives on until the
        garbage collector's next full pass: at a million residents 0.6 GB of the full
        resolution, carried into the build. The trained settings stay."""
        db = self.__dict__.pop("_db_api", None)
        self.__dict__.pop("_linker", None)
        self.__dict__.pop("_fit_frame", None)
        _close(db)

    @staticmethod
    def _quiet() -> None:
        logging.getLogger("splink").setLevel(logging.WARNING)

    # ------------------------------------------------------------------ training
    def fit(self, lf: pd.DataFrame) -> "LinkageModel":
        from splink import Linker

        self._quiet()
        n = len(lf)
        total_pairs = n * (n - 1) / 2
        cid = lf["cid"].dropna()
        sizes = cid.value_counts()
        label_pairs = float((sizes * (sizes - 1) / 2).sum())
        share_valid = len(cid) / n if n else 0.0
        recall = max(share_valid ** 2, 0.05)
        lam = label_pairs / recall / total_pairs if label_pairs and total_pairs else (1.0 / max(n, 2))
        lam = float(min(max(lam, 1e-9), 0.5))

        db = self._db()
        table = db.register(to_arrow(lf), table_name="__linkage_input")
        linker = Linker(table, self._settings_creator(lam), log_level=logging.WARNING)
        u_pairs = min(self.u_max_pairs, total_pairs)
        if total_pairs >= 1:
            linker.training.estimate_u_using_random_sampling(max_pairs=u_pairs, seed=self.seed)
        if label_pairs:
            try:
                linker.training.estimate_m_from_label_column("cid")
            except Exception:  # noqa: BLE001 - no usable labels: priors only
                label_pairs = 0.0
        self._shrink(linker, label_pairs, u_pairs)
        self.settings = linker.misc.save_model_to_json()
        self.tf_tables = {col: self._tf_table(lf, col) for col in self.tf_columns()}
        self.training = {"mentions": n, "citizen_ids": int(sizes.size), "label_pairs": label_pairs,
                         "u_pairs": u_pairs, "lambda": lam, "share_valid_id": share_valid}
        self._linker, self._db_api, self._fit_frame = linker, db, lf
        return self

    def _shrink(self, linker: Any, label_pairs: float, u_pairs: float) -> None:
        """Trained m/u towards the declared priors; m floors; unseen levels handled."""
        from splink.internals.constants import LEVEL_NOT_OBSERVED_TEXT

        km, ku = self.m_prior_pairs, self.u_prior_pairs
        for cc, spec in zip(linker._settings_obj.comparisons, self.comparisons):
            levels = {lv.label: lv for lv in spec.levels}
            ms = {}
            for cl in cc._comparison_levels_excluding_null:
                lv = levels[cl._label_for_charts]
                m_hat = cl._m_probability
                m_hat = 0.0 if (m_hat is None or m_hat == LEVEL_NOT_OBSERVED_TEXT) else float(m_hat)
                if lv.fix_m:
                    m = lv.m
                elif lv.m is not None:
                    m = (m_hat * label_pairs + km * lv.m) / (label_pairs + km)
                else:
                    m = m_hat
                ms[cl] = max(m, lv.m_floor)
                u_hat = cl._u_probability
                u_hat = 0.0 if (u_hat is None or u_hat == LEVEL_NOT_OBSERVED_TEXT) else float(u_hat)
                if lv.fix_u:
                    u = lv.u
                elif lv.u is not None:
                    u = (u_hat * u_pairs + ku * lv.u) / (u_pairs + ku)
                else:
                    u = u_hat
                cl.u_probability = max(u, 1e-9)
            total = sum(ms.values())
            for cl, m in ms.items():
                cl.m_probability = m / total

    def tf_columns(self) -> list[str]:
        return sorted({lv.tf for c in self.comparisons for lv in c.levels if lv.tf})

    @staticmethod
    def _tf_table(lf: pd.DataFrame, col: str) -> pd.DataFrame:
        s = lf[col].dropna()
        tf = (s.value_counts() / max(len(s), 1)).rename(f"tf_{col}").reset_index()
        return tf.rename(columns={tf.columns[0]: col})

    def term_frequencies(self, *frames: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """The term-frequency lookups to score with: those of the training frame for a
        model trained here; for a model restored from stored settings (which carry m and
        u but no frequencies) they are computed from `frames` — the current mentions,
        exactly as training on them would — and kept for the model's later calls."""
        if not self.tf_tables:
            frames = tuple(f for f in frames if f is not None and len(f))
            if not frames:
                raise ValueError("term frequencies need the mentions the model scores")
            lf = frames[0] if len(frames) == 1 else pd.concat([f[self.tf_columns()] for f in frames])
            self.tf_tables = {col: self._tf_table(lf, col) for col in self.tf_columns()}
        return self.tf_tables

    def _linker_for(self, table: Any, *tf_frames: pd.DataFrame) -> Any:
        """A linker over `table` with the trained settings and registered term frequencies
        (Splink's predict_within / predict_between / score_pair never derive them from the
        records they score: without them an exact common name would weigh like a unique one,
        or — in score_pair — like a name shared by everybody)."""
        from splink import Linker

        tf_tables = self.term_frequencies(*tf_frames)
        # the settings were checked when the model was trained: validating them again for
        # every scoring call costs seconds of SQL parsing (an officer's link waits on it)
        linker = Linker(table, deepcopy(self.settings), log_level=logging.WARNING, validate_settings=False)
        db = linker._db_api
        for col, frame in tf_tables.items():
            tf = db.register(frame, table_name=f"__tf_{col}_{next(_UID)}")
            linker.table_management.register_term_frequency_lookup(tf, col)
        return linker

    # ------------------------------------------------------------------ scoring
    def predict(self, lf: pd.DataFrame | None = None, *, threshold: float = 0.0) -> pd.DataFrame:
        """Scored blocked pairs: unique_id_l, unique_id_r, match_weight, match_probability,
        gamma_<comparison> (the level of each comparison)."""
        self._require_trained()
        if self.scorer is not None:
            frame = lf if lf is not None else getattr(self, "_fit_frame", None)
            if frame is None:
                raise RuntimeError("a restored model scores the mentions it is given: predict(lf)")
            pairs = self.scorer.predict(self.settings, to_arrow(frame), self.term_frequencies(frame),
                                        self._pair_columns(), threshold)
            self.last_pairs = len(pairs)
            return self._ordered(pairs)
        if lf is None:
            if not hasattr(self, "_linker"):
                raise RuntimeError("a restored model scores the mentions it is given: predict(lf)")
            linker = self._linker
            db = None
        else:
            db = self._db()
            linker = self._linker_for(db.register(to_arrow(lf), table_name="__linkage_input"), lf)
        records = len(lf) if lf is not None else len(getattr(self, "_fit_frame", ()))
        chunks = max(1, math.ceil(records / PREDICT_CHUNK_MENTIONS))
        try:
            # one left-hand part at a time: each part's scored pairs leave the scoring
            # database before the next is blocked (`PREDICT_CHUNK_MENTIONS`)
            parts = [self._pairs(linker.inference.predict_chunk(
                left_chunk=(i, chunks), right_chunk=(1, 1), threshold_match_probability=threshold or None,
                warning_mode="never"), ordered=False) for i in range(1, chunks + 1)]
        finally:
            _close(db)  # a scoring database of its own (a cycle, like the training one)
        scored = [p for p in parts if len(p)] or parts[:1]  # an empty part's columns are untyped
        pairs = self._ordered(pd.concat(scored, ignore_index=True) if len(scored) > 1 else scored[0])
        self.last_pairs = len(pairs)  # how many pairs scored at or above `threshold` (benchmarks)
        return pairs

    def predict_new(self, new_lf: pd.DataFrame, existing_lf: pd.DataFrame, *, threshold: float = 0.0
                    ) -> pd.DataFrame:
        """Pairs new × existing and new × new (blocked); existing × existing is never compared."""
        self._require_trained()
        if self.scorer is not None:
            pairs = self.scorer.predict_new(self.settings, to_arrow(new_lf), to_arrow(existing_lf),
                                            self.term_frequencies(new_lf, existing_lf), self._pair_columns(),
                                            threshold)
            return self._ordered(pairs)
        db = self._db()
        try:
            new_t = db.register(to_arrow(new_lf), table_name="__linkage_new")
            old_t = db.register(to_arrow(existing_lf), table_name="__linkage_existing")
            linker = self._linker_for(new_t, new_lf, existing_lf)
            parts = [self._pairs(linker.inference.predict_within(
                new_t, threshold_match_probability=threshold or None, warning_mode="never"))]
            if len(existing_lf):
                parts.append(self._pairs(linker.inference.predict_between(
                    new_t, old_t, threshold_match_probability=threshold or None, warning_mode="never")))
        finally:
            _close(db)
        return pd.concat(parts, ignore_index=True)

    def _pair_columns(self) -> list[str]:
        return ["unique_id_l", "unique_id_r", "match_weight", "match_probability"] + [
            f"gamma_{c.name}" for c in self.comparisons]

    def _pairs(self, sdf: Any, *, ordered: bool = True) -> pd.DataFrame:
        keep = self._pair_columns()
        con = sdf.db_api.duckdb_con if hasattr(sdf, "db_api") else self._db_api.duckdb_con
        df = con.execute(f"SELECT {', '.join(keep)} FROM {sdf.physical_name}").df()
        sdf.drop_table_from_database_and_remove_from_cache()
        return self._ordered(df) if ordered else df

    @staticmethod
    def _ordered(df: pd.DataFrame) -> pd.DataFrame:
        """Lower id on the left, like Splink's dedupe output; each pair once."""
        swap = df["unique_id_l"].astype(str) > df["unique_id_r"].astype(str)
        if swap.any():
            a = df.loc[swap, "unique_id_l"].copy()
            df.loc[swap, "unique_id_l"] = df.loc[swap, "unique_id_r"]
            df.loc[swap, "unique_id_r"] = a
        return df.drop_duplicates(["unique_id_l", "unique_id_r"]).reset_index(drop=True)

    def explain(self, lf: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
        """Per comparison: level, m, u, Bayes factor, match weight; last row the total."""
        self._require_trained()
        rows = lf[lf["unique_id"].isin([a, b])]
        if len(rows) != 2:
            raise KeyError(f"mentions not found: {a!r}, {b!r}")
        db = self._db()
        try:
            left = db.register(to_arrow(rows[rows["unique_id"] == a]), table_name="__explain_l")
            right = db.register(to_arrow(rows[rows["unique_id"] == b]), table_name="__explain_r")
            linker = self._linker_for(left, lf)
            scored = linker.inference.score_pair(left, right).as_pandas_dataframe().iloc[0]
        finally:
            _close(db)
        out = []
        lam = self.settings["probability_two_random_records_match"]
        for spec, cc in zip(self.comparisons, self.settings["comparisons"]):
            g = int(scored[f"gamma_{spec.name}"])
            label = spec.label_of(g)
            lv = _level(cc, label)
            if lv.get("is_null_level"):
                m = u = None
                bf = 1.0
            else:
                m, u = lv["m_probability"], lv["u_probability"]
                mw = float(scored.get(f"mw_{spec.name}", math.log2(m / u)))
                tf = scored.get(f"mw_tf_adj_{spec.name}")
                if tf is not None and not pd.isna(tf):
                    mw += float(tf)  # term-frequency adjustment (a common name weighs less)
                bf = 2 ** mw
            out.append({"comparison": spec.name, "level": label, "m_probability": m, "u_probability": u,
                        "bayes_factor": bf, "match_weight": math.log2(bf)})
        out.insert(0, {"comparison": "prior", "level": "probability_two_random_records_match",
                       "m_probability": None, "u_probability": None, "bayes_factor": lam / (1 - lam),
                       "match_weight": math.log2(lam / (1 - lam))})
        total_w = float(scored["match_weight"])
        out.append({"comparison": "total", "level": "", "m_probability": None, "u_probability": None,
                    "bayes_factor": 2 ** total_w, "match_weight": total_w,
                    "match_probability": float(scored["match_probability"])})
        return pd.DataFrame(out)

    def parameters(self) -> pd.DataFrame:
        """The trained m and u of every level, with its Bayes factor and match weight."""
        self._require_trained()
        rows = []
        for cc in self.settings["comparisons"]:
            for lv in cc["comparison_levels"]:
                if lv.get("is_null_level"):
                    continue
                m, u = lv["m_probability"], lv["u_probability"]
                rows.append({"comparison": cc["output_column_name"], "level": lv["label_for_charts"],
                             "m_probability": m, "u_probability": u, "bayes_factor": m / u,
                             "match_weight": math.log2(m / u)})
        return pd.DataFrame(rows)

    def level_weight(self, comparison: str, level: str) -> float:
        """The trained match weight (log2 of m / u) of `level` of `comparison`; 0 for its
        null level (no evidence)."""
        self._require_trained()
        cc = next((c for c in self.settings["comparisons"] if c["output_column_name"] == comparison), None)
        lv = _level(cc, level) if cc else None
        if lv is None:
            raise KeyError(f"the linkage model has no level {level!r} of comparison {comparison!r}")
        return 0.0 if lv.get("is_null_level") else math.log2(lv["m_probability"] / lv["u_probability"])

    def _require_trained(self) -> None:
        if self.settings is None:
            raise RuntimeError("the linkage model is not trained: call fit() first")
