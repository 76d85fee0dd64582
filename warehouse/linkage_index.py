"""The persisted linkage index and the SQL that makes person resolution follow the change.

`stg.linkage_feature` holds, per mention, the columns the matching rules read
(`pipelines.linkage.features.linkage_frame`). A sync asks this module:

* `changes`: which mentions are new, which changed, which were removed (their export
  was superseded, reloaded or retracted by key), and which need their features
  (re)computed — those staged since their features were computed (new, or replaced by a
  newer version of their record) and the mentions related to them (a relationship puts
  the other person's keys in `ctx`); `inputs_of` a part of them: exactly the mention
  rows and relationships the computation needs;
* `blocked_with`: which existing mentions share a blocking key with a set of mentions
  (the blocking rules, given as SQL over ``l.``/``r.`` columns, run as DuckDB joins
  against the whole index: no pandas frame of the population);
* the slices of the previous resolution a local re-clustering needs, and
  `write_local_resolution` to replace just those rows of `core.person_xref`.

All functions take an open connection inside `warehouse.store.transaction`. Nothing
here imports `pipelines`: the rules and the feature computation are passed in.
"""

from __future__ import annotations

import re

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from warehouse.ddl import STG_LINKAGE_FEATURE
from warehouse.digest import digest, digest_sql, minus
from warehouse.frames import frame_table
from warehouse.migrations import empty_table

FEATURE_COLUMNS = [c for c in STG_LINKAGE_FEATURE.column_names if c != "export_id"]

#: the stg.mention columns `linkage_frame` reads
MENTION_INPUT_COLUMNS = [
    "mention_id", "source_object", "export_id", "citizen_id", "id_status", "id_raw", "document_type",
    "document_number", "name", "name_simplified", "name_pinyin", "name_pinyin_alt", "birth_date", "id_birth_date",
    "gender", "id_gender", "phone", "hukou_address", "current_address", "household_key",
]


@dataclass
class IndexChanges:
    """What changed since the last resolution, by mention id."""

    new: list[str]          # staged, never resolved
    changed: list[str]      # resolved before, staged again with other content (a newer version)
    removed: pd.DataFrame   # mention_id, person_id: resolved before, no longer staged
    #: the survey proved that the index holds no row of a mention gone but `removed`'s
    #: (`changes` with a run): the refresh drops those alone, without scanning the index
    exact: bool = False

    @property
    def dirty(self) -> list[str]:
        return self.new + self.changed

    def __bool__(self) -> bool:
        return bool(self.new or self.changed or len(self.removed))


def _ids(con: duckdb.DuckDBPyConnection, name: str, ids: Iterable[str]) -> str:
    """A temp table `name(id)` holding `ids` once each; returns its name. No key index: the
    table is only read by semi-joins, and building one costs more than the lookups it
    serves (0.6 s against 0.1 s for the ~120 000 ids of a roster month's resolution)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (id VARCHAR)")
    # as Arrow strings: DuckDB reads them without converting Python objects one by one
    # (0.10-0.12 -> 0.04-0.05 s for the 150 000 ids of a roster month's candidates)
    unique = pc.unique(pa.array(list(ids), type=pa.string(), from_pandas=True))  # NA, None: NULL
    if len(unique):
        with frame_table(con, "_ids_frame", pa.table({"id": unique})):
            con.execute(f"INSERT INTO {name} SELECT id FROM _ids_frame")
    return name


def is_complete(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the index holds a row for exactly the current mentions (a warehouse built
    before the index existed, or whose mentions changed without a resolution, gets it
    refilled first). Compared as a digest of each side's ids (`warehouse.digest`) in one
    scan of each id column: 0.03 s at 848 000 mentions, where the anti-join of the two
    took 0.11 s of every officer's decision."""
    return digest(con, "stg.mention", "mention_id") == digest(con, STG_LINKAGE_FEATURE.qualified, "unique_id")


def mention_count(con: duckdb.DuckDBPyConnection) -> int:
    """Current (staged) person mentions."""
    return con.execute("SELECT count(*) FROM stg.mention").fetchall()[0][0]


def no_removals() -> pd.DataFrame:
    """`IndexChanges.removed` when nothing was removed."""
    return pd.DataFrame({"mention_id": pd.Series(dtype=object), "person_id": pd.Series(dtype=object)})


def citizen_id_count(con: duckdb.DuckDBPyConnection) -> int:
    """Distinct valid citizen IDs among the current mentions (the population a linkage
    model is judged stale against)."""
    return con.execute(f"SELECT count(DISTINCT cid) FROM {STG_LINKAGE_FEATURE.qualified}").fetchall()[0][0]


def changes(con: duckdb.DuckDBPyConnection, *, everything: bool = False, exports: Iterable[int] | None = None
            ) -> tuple[IndexChanges, list[str]]:
    """What changed since the last resolution, and the mentions whose features are to be
    computed again (call before `write_features`).

    Changes: new mentions (never resolved), changed ones (resolved, staged again with
    other content since the index was written) and removed ones (resolved, no longer
    staged). A mention resolved before but without features (a warehouse from before
    the index existed) is neither: its features are filled in as they are.
    Targets, ordered: the mentions without features or staged again since (`everything`:
    all mentions), and the mentions related to them.

    With `exports` (those a sync staged, `load.loaded_by_run`) only what they staged is
    surveyed (`_changes_of_run`), when digests prove that nothing else changed; otherwise
    one pass over every staged mention."""
    if exports is not None and not everything:
        found = _changes_of_run(con, exports)
        if found is not None:
            return found
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _survey AS
        SELECT m.mention_id, x.mention_id IS NOT NULL AS resolved, f.unique_id IS NOT NULL AS indexed,
               coalesce(f.export_id <> m.export_id, FALSE) AS restaged
        FROM stg.mention m
        LEFT JOIN (SELECT mention_id FROM core.person_xref) x USING (mention_id)
        LEFT JOIN (SELECT unique_id, export_id FROM {STG_LINKAGE_FEATURE.qualified}) f ON f.unique_id = m.mention_id
        WHERE x.mention_id IS NULL OR f.unique_id IS NULL OR f.export_id <> m.export_id""")
    removed = con.execute(
        "SELECT x.mention_id, x.person_id FROM core.person_xref x ANTI JOIN stg.mention m USING (mention_id) "
        "ORDER BY x.mention_id").df()
    return _from_survey(con, removed, exact=False, everything=everything)


def _from_survey(con: duckdb.DuckDBPyConnection, removed: pd.DataFrame, *, exact: bool, everything: bool = False
                 ) -> tuple[IndexChanges, list[str]]:
    """`changes` from the `_survey` table (one row per mention that is new, restaged or
    not indexed) and the removed mentions; `everything`: every mention a target."""
    new = [r[0] for r in con.execute(
        "SELECT mention_id FROM _survey WHERE NOT resolved ORDER BY mention_id").fetchall()]
    changed = [r[0] for r in con.execute(
        "SELECT mention_id FROM _survey WHERE resolved AND restaged ORDER BY mention_id").fetchall()]
    if everything:
        con.execute("CREATE OR REPLACE TEMP TABLE _target AS SELECT mention_id AS id FROM stg.mention")
    else:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _target AS
            WITH stale AS (SELECT mention_id AS id FROM _survey WHERE NOT indexed OR restaged)
            SELECT id FROM stale
            UNION SELECT r.to_mention_id FROM stg.relationship r JOIN stale s ON s.id = r.from_mention_id
            UNION SELECT r.from_mention_id FROM stg.relationship r JOIN stale s ON s.id = r.to_mention_id""")
    targets = [r[0] for r in con.execute("SELECT id FROM _target ORDER BY id").fetchall()]
    con.execute("DROP TABLE IF EXISTS temp._survey")
    return IndexChanges(new, changed, removed, exact=exact), targets


def _changes_of_run(con: duckdb.DuckDBPyConnection, exports: Iterable[int]) -> tuple[IndexChanges, list[str]] | None:
    """`changes` from what a run staged (`exports`, those it loaded): their mentions are
    surveyed, and the resolved mentions it can have removed — those of the records it
    staged again (a newer version replaces a record's rows, which may name fewer persons),
    of the exports its exports superseded, and of the exports of a mapping a correction
    (`_补报`) of it replaces records of — looked up. None unless digests
    (`warehouse.digest`) prove the rest unchanged: every other staged mention resolved
    and indexed under its export, no other resolved mention gone, no other index row.
    Each digest is one scan of an id column (0.01-0.02 s at 848 000 mentions), where the
    survey of every mention joined the staged mentions, the xref and the index whole."""
    lf = STG_LINKAGE_FEATURE.qualified
    with frame_table(con, "_run_exports_frame", pd.DataFrame({"e": pd.Series(list(exports), dtype="int64")})):
        con.execute("CREATE OR REPLACE TEMP TABLE _run_exports AS SELECT e FROM _run_exports_frame")
    con.execute("CREATE OR REPLACE TEMP TABLE _run_mentions AS SELECT mention_id, source_object, source_locator, "
                "export_id FROM stg.mention WHERE export_id IN (SELECT e FROM _run_exports)")
    # each large table is read for the run's mentions only (a semi-join: the hash tables
    # hold tens of thousands of ids, not the 850 000 of the warehouse)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _survey AS
        SELECT m.mention_id, m.source_object, m.source_locator, x.mention_id IS NOT NULL AS resolved,
               f.unique_id IS NOT NULL AS indexed, coalesce(f.export_id <> m.export_id, FALSE) AS restaged
        FROM _run_mentions m
        LEFT JOIN (SELECT mention_id FROM core.person_xref
                   WHERE mention_id IN (SELECT mention_id FROM _run_mentions)) x USING (mention_id)
        LEFT JOIN (SELECT unique_id, export_id FROM {lf}
                   WHERE unique_id IN (SELECT mention_id FROM _run_mentions)) f ON f.unique_id = m.mention_id""")
    con.execute("DROP TABLE IF EXISTS temp._run_mentions")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _run_removed AS
        WITH maybe AS (
            SELECT x.mention_id, x.person_id FROM core.person_xref x
            JOIN (SELECT DISTINCT source_object, source_locator FROM _survey) s USING (source_object, source_locator)
            WHERE x.source_object IN (SELECT source_object FROM _survey)
            UNION
            SELECT mention_id, person_id FROM core.person_xref WHERE source_object IN (
                SELECT source_object FROM quality.load_ledger WHERE superseded_by IN (SELECT e FROM _run_exports)
                UNION
                SELECT source_object FROM quality.load_ledger WHERE mapping IN (
                    SELECT mapping FROM quality.load_ledger
                    WHERE export_id IN (SELECT e FROM _run_exports) AND is_correction)))
        SELECT * FROM maybe WHERE mention_id NOT IN (
            SELECT mention_id FROM stg.mention WHERE mention_id IN (SELECT mention_id FROM maybe))""")
    other = "stg.mention WHERE export_id NOT IN (SELECT e FROM _run_exports)"
    surveyed = "SELECT mention_id FROM _survey UNION ALL SELECT mention_id FROM _run_removed"
    # every resolved mention is a staged one of another export, one this run staged, or removed
    resolved_rest = minus(digest(con, "core.person_xref", "mention_id"), digest(con, "_run_removed", "mention_id"),
                          digest(con, "_survey WHERE resolved", "mention_id"))
    # every index row is that of a staged mention of another export (under that export),
    # of a mention this run staged, or of a removed mention
    indexed_rest = minus(digest(con, lf, "unique_id", "export_id"),
                         digest(con, f"{lf} WHERE unique_id IN ({surveyed})", "unique_id", "export_id"))
    (c1, h1, c2, h2), = con.execute(
        f"SELECT {digest_sql('mention_id')}, {digest_sql('mention_id', 'export_id')} FROM {other}").fetchall()
    proven = resolved_rest == (c1, h1) and indexed_rest == (c2, h2)
    removed = con.execute("SELECT mention_id, person_id FROM _run_removed ORDER BY mention_id").df() if proven else None
    con.execute("DROP TABLE IF EXISTS temp._run_removed")
    con.execute("DROP TABLE IF EXISTS temp._run_exports")
    if not proven:
        con.execute("DROP TABLE IF EXISTS temp._survey")
        return None
    return _from_survey(con, removed, exact=True)


def inputs_of(con: duckdb.DuckDBPyConnection, targets: Iterable[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mention rows, relationships) from which the features of `targets` are computed:
    the targets, the mentions related to them or listed in their households, and those
    relationships (a mention's features read its own row, its partners' and, for
    ``sole_in_household``, its household's birth dates; nothing else)."""
    _ids(con, "_target", targets)
    rels = con.execute("""
        SELECT kind, from_mention_id, to_mention_id FROM stg.relationship
        WHERE from_mention_id IN (SELECT id FROM _target) OR to_mention_id IN (SELECT id FROM _target)""").df()
    cols = ", ".join(f"m.{c}" for c in MENTION_INPUT_COLUMNS)
    mentions = con.execute(f"""
        SELECT {cols} FROM stg.mention m
        WHERE m.mention_id IN (SELECT id FROM _target)
           OR m.mention_id IN (SELECT from_mention_id FROM stg.relationship
                               WHERE to_mention_id IN (SELECT id FROM _target))
           OR m.mention_id IN (SELECT to_mention_id FROM stg.relationship
                               WHERE from_mention_id IN (SELECT id FROM _target))
           OR m.household_key IN (SELECT household_key FROM stg.mention
                                  WHERE mention_id IN (SELECT id FROM _target) AND household_key IS NOT NULL)
        ORDER BY m.mention_id""").df()
    return mentions, rels


def write_features(con: duckdb.DuckDBPyConnection, features: pd.DataFrame | None, export_ids: pd.Series | None,
                   *, everything: bool = False, first: bool = True, gone: Iterable[str] | None = None) -> None:
    """Upsert the recomputed features (`features`: `linkage_frame` rows; `export_ids`:
    the export of each row's mention); with the `first` part of a refresh, drop the rows
    of mentions no longer staged: `gone` when the survey proved those are all
    (`IndexChanges.exact`), else found by a scan of the whole index (once per refresh)."""
    if everything:
        empty_table(con, STG_LINKAGE_FEATURE)
    elif first and gone is not None:
        _ids(con, "_gone", gone)
        con.execute(f"DELETE FROM {STG_LINKAGE_FEATURE.qualified} WHERE unique_id IN (SELECT id FROM _gone)")
    elif first:
        con.execute(f"DELETE FROM {STG_LINKAGE_FEATURE.qualified} f WHERE NOT EXISTS "
                    "(SELECT 1 FROM stg.mention m WHERE m.mention_id = f.unique_id)")
    if features is None or features.empty:
        return
    with frame_table(con, "_features", features.assign(export_id=export_ids.to_numpy()), via_arrow=True):
        con.execute(f"DELETE FROM {STG_LINKAGE_FEATURE.qualified} WHERE unique_id IN (SELECT unique_id FROM _features)")
        cols = STG_LINKAGE_FEATURE.column_names
        casts = ", ".join(f'CAST("{c}" AS {t.type}) AS "{c}"' for c, t in
                          zip(cols, STG_LINKAGE_FEATURE.columns))
        con.execute(f"INSERT INTO {STG_LINKAGE_FEATURE.qualified} SELECT {casts} FROM _features")


def _arrow_lists(arrow_type: Any) -> pd.ArrowDtype | None:
    """`to_pandas` types_mapper: list columns as `pd.ArrowDtype`, the rest as pandas reads them."""
    import pyarrow as pa

    return pd.ArrowDtype(arrow_type) if pa.types.is_list(arrow_type) else None


def features(con: duckdb.DuckDBPyConnection, ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The linkage frame of `ids` (all mentions when None), ordered by mention id. The list
    columns are Arrow lists (`pd.ArrowDtype`; a missing list is NULL, which the model
    reads as empty)."""
    cols = ", ".join(f'"{c}"' for c in FEATURE_COLUMNS)
    if ids is None:
        sql = f"SELECT {cols} FROM {STG_LINKAGE_FEATURE.qualified} ORDER BY unique_id"
    else:
        _ids(con, "_want", ids)
        sql = (f"SELECT {cols} FROM {STG_LINKAGE_FEATURE.qualified} "
               "WHERE unique_id IN (SELECT id FROM _want) ORDER BY unique_id")
    # through Arrow: half the time of `.df()` on the list columns, the same frame once
    # the dates and flags are typed below. The list columns stay Arrow lists
    # (`pd.ArrowDtype`): as NumPy arrays, one per cell, a million mentions' three lists
    # took 0.46 GB more, and the model hands them to its scoring database as they are
    # (`pipelines.linkage.model.to_arrow`)
    df = con.execute(sql).fetch_arrow_table().to_pandas(types_mapper=_arrow_lists)
    df["birth"] = pd.to_datetime(df["birth"]).astype("datetime64[s]")
    df["birth_year"] = df["birth_year"].astype("Int64")
    df["sole_in_household"] = df["sole_in_household"].astype("boolean")
    return df


def blocked_with(con: duckdb.DuckDBPyConnection, ids: Iterable[str], rules: Sequence[str]) -> list[str]:
    """Mentions outside `ids` that any of `rules` (SQL over ``l.``/``r.`` linkage
    columns; applied both ways round) pairs with a mention of `ids`."""
    lf = STG_LINKAGE_FEATURE.qualified
    _ids(con, "_block_ids", ids)
    # the columns the rules read, of the mentions asked about; every rule in one statement
    # (one distinct set, one answer: the rules' pairs overlap, ~600 000 ids for a roster
    # month's 16 000 new mentions fetched one rule at a time)
    used = sorted({c for rule in rules for c in re.findall(r"\b[lr]\.(\w+)", rule)} | {"unique_id"})
    con.execute(f"CREATE OR REPLACE TEMP TABLE _block_src AS SELECT {', '.join(used)} "
                f"FROM {lf} WHERE unique_id IN (SELECT id FROM _block_ids)")
    parts = []
    # rules that start with the same column's equality share one join on it (the rest of
    # each rule ORed after it): each join scans the whole index (1M delta: 12 joins 0.55 s,
    # 9 joins 0.43 s, the same mentions)
    by_key: dict[str, list[str]] = {}
    for rule in rules:
        key, rest = _leading_equality(rule)
        if key is not None:
            by_key.setdefault(key, []).append(rest or "TRUE")
        else:
            parts.append(f"SELECT r.unique_id AS id FROM _block_src l JOIN {lf} r ON {rule}")
        if not _symmetric(rule):  # e.g. `l.id_kind = 'partial'`: the other way round too
            parts.append(f"SELECT l.unique_id AS id FROM {lf} l JOIN _block_src r ON {rule}")
    for key, rests in by_key.items():
        parts.append(f"SELECT r.unique_id AS id FROM _block_src l JOIN {lf} r ON l.{key} = r.{key} "
                     f"AND ({' OR '.join(f'({rest})' for rest in rests)})")
    return [r[0] for r in con.execute(
        f"SELECT DISTINCT id FROM ({' UNION ALL '.join(parts)}) WHERE id NOT IN (SELECT id FROM _block_ids) "
        "ORDER BY id").fetchall()]


def restatements(con: duckdb.DuckDBPyConnection, ids: Iterable[str], exclude_persons: Iterable[str] = (), *,
                 partial_context: bool = False) -> pd.DataFrame:
    """mention_id, person_id: the mentions among `ids` (new ones) that restate a resolved
    mention, and the one person they therefore belong to. A restatement (most rows of a
    monthly roster) carries a valid citizen ID and has every linkage column but its
    source equal to a mention (its twin) of another export already in person P, matched
    there by that ID (``match_method = 'citizen_id'``: P holds two or more mentions with
    it) — its relatives' keys (``ctx``) equal too, or, with `partial_context`, a non-empty
    part of the twin's; no other person holds a mention with that ID; and no active
    officer decision names a mention of P; P not in `exclude_persons` (persons re-clustered
    anyway).

    A full run puts such a mention into P by its ID, matched 'citizen_id' with
    probability 1, and changes nothing else: its pairs score at most what its twin's
    did with the same mention (the same blocking keys, the same levels but the
    relatives', and a part of the twin's relatives shares with fewer mentions, never
    with more — so `partial_context` only where the model weighs relatives shared at
    least as much as relatives different; empty, it would not count as different where
    the twin's did, so it must not be), and those were weighed already: it brings no
    evidence joining P to anyone.
    The review pairs it would add join persons its twin's join already. The months of
    a roster differ most often there: a relative's ID missing one month (a 1M district's
    roster month: 3 000 of its 16 000 mentions to score)."""
    lf = STG_LINKAGE_FEATURE.qualified
    same = " AND ".join(f'o."{c}" IS NOT DISTINCT FROM n."{c}"' for c in FEATURE_COLUMNS
                        if c not in ("unique_id", "source_object", "cid", "ctx"))
    relatives = "o.ctx IS NOT DISTINCT FROM n.ctx"
    if partial_context:
        relatives += " OR (len(n.ctx) > 0 AND list_has_all(o.ctx, n.ctx))"
    same += f" AND ({relatives})"
    _ids(con, "_rs_ids", ids)
    _ids(con, "_rs_excluded", exclude_persons)
    return con.execute(f"""
        WITH new AS (SELECT * FROM {lf} WHERE unique_id IN (SELECT id FROM _rs_ids) AND cid IS NOT NULL),
        twin AS (
            SELECT n.unique_id AS mention_id, n.cid, x.person_id
            FROM new n JOIN {lf} o ON o.cid = n.cid AND o.source_object IS DISTINCT FROM n.source_object AND {same}
            JOIN core.person_xref x ON x.mention_id = o.unique_id AND x.match_method = 'citizen_id'),
        holders AS (
            SELECT f.cid, count(DISTINCT x.person_id) AS persons FROM {lf} f
            JOIN core.person_xref x ON x.mention_id = f.unique_id
            WHERE f.cid IN (SELECT cid FROM twin) GROUP BY f.cid),
        decided AS (
            SELECT person_id FROM core.person_xref WHERE mention_id IN (
                SELECT mention_id_a FROM core.link_decision WHERE is_active
                UNION SELECT mention_id_b FROM core.link_decision WHERE is_active))
        SELECT t.mention_id, min(t.person_id) AS person_id FROM twin t JOIN holders h USING (cid)
        WHERE h.persons = 1 AND t.person_id NOT IN (SELECT person_id FROM decided)
          AND t.person_id NOT IN (SELECT id FROM _rs_excluded)
        GROUP BY t.mention_id ORDER BY t.mention_id""").df()


def _leading_equality(rule: str) -> tuple[str | None, str]:
    """(X, its other conjuncts joined again, '' when none) of a rule that starts with
    ``l.X = r.X``; (None, the rule) otherwise, and for any rule with an OR (the rules
    are conjunctions; one that is not is left whole)."""
    first, *rest = _conjuncts(rule)
    m = re.fullmatch(r"l\.(\w+)\s*=\s*r\.(\w+)", first.strip())
    if m is None or m.group(1) != m.group(2) or re.search(r"\bOR\b", rule, flags=re.IGNORECASE):
        return None, rule
    return m.group(1), " AND ".join(rest)


def _conjuncts(rule: str) -> list[str]:
    """The conjuncts of a blocking rule, in order (split at its ANDs)."""
    return re.split(r"\s+AND\s+", rule.strip(), flags=re.IGNORECASE)


def _symmetric(rule: str) -> bool:
    """Whether a blocking rule (a conjunction over `l.`/`r.`) pairs the same records
    whichever side is `l`: its conjuncts, with `l.` and `r.` swapped and each equality
    read both ways, are the same set."""
    def conjuncts(sql: str) -> set[frozenset[str] | str]:
        out: set[frozenset[str] | str] = set()
        for c in _conjuncts(sql):
            sides = [x.strip() for x in c.split("=")]
            out.add(frozenset(sides) if len(sides) == 2 else " ".join(c.split()))
        return out

    swapped = re.sub(r"\b([lr])\.", lambda m: ("r." if m.group(1) == "l" else "l."), rule)
    return conjuncts(rule) == conjuncts(swapped)


def term_frequencies(con: duckdb.DuckDBPyConnection, columns: Sequence[str], ids: Iterable[str]) -> dict[str, pd.DataFrame]:
    """Per column, the share of all current mentions with each value, for the values the
    mentions `ids` carry (what a model trained on every mention would use). The values
    asked about are read once for every column, the totals in one scan."""
    columns = list(columns)
    if not columns:
        return {}
    lf = STG_LINKAGE_FEATURE.qualified
    _ids(con, "_tf_ids", ids)
    totals = con.execute("SELECT " + ", ".join(f'count("{c}")' for c in columns) + f" FROM {lf}").fetchall()[0]
    quoted = ", ".join(f'"{c}"' for c in columns)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _tf_wanted AS SELECT DISTINCT {quoted} "
                f"FROM {lf} WHERE unique_id IN (SELECT id FROM _tf_ids)")
    out = {}
    for col, total in zip(columns, totals):
        out[col] = con.execute(f"""
            SELECT f."{col}", count(*) / $total AS "tf_{col}" FROM {lf} f
            WHERE f."{col}" IN (SELECT "{col}" FROM _tf_wanted WHERE "{col}" IS NOT NULL)
            GROUP BY f."{col}" ORDER BY f."{col}" """, {"total": int(total)}).df()
    con.execute("DROP TABLE IF EXISTS temp._tf_wanted")
    return out


#: the given name of an index row (the name without its surname), as
#: `pipelines.linkage.given_names` cuts it: NULL when either is unknown or nothing is left
_GIVEN = ("CASE WHEN surname IS NOT NULL AND name_s IS NOT NULL AND length(name_s) > length(surname) "
          "THEN substr(name_s, length(surname) + 1) END")


#: `name_frequencies` copies out the rows sharing a name when it is asked about fewer
#: mentions than this share of the index, and counts through the whole index otherwise
_NF_COPY_SHARE = 0.01


def name_frequencies(con: duckdb.DuckDBPyConnection, ids: Iterable[str]
                     ) -> tuple[pd.Series, pd.Series, int, frozenset[str], pd.Series, frozenset[str]]:
    """For the full names, given names and full-name pinyin the mentions `ids` carry: how
    many distinct birth dates each is written with among all current mentions; the days
    all birth dates span (at least 365); and the ``name|birth|sex`` keys of those full
    names, and the ``pinyin|birth|sex`` keys of those sounds, that two persons are seen
    under (two valid IDs, or two rows of one source object) —
    `pipelines.linkage.name_frequencies` over the whole index, in the order of
    `pipelines.linkage.NameFrequencies`' fields.

    The counts read `_nf_rows`: for a few mentions (an officer's decision: under
    `_NF_COPY_SHARE` of the index) the index rows sharing a name, given name or sound
    with them, copied out in one pass; for more, a view of the index, each count through
    its own one-column semi-join — at a roster month nearly every row shares a given
    name, and copying them out cost more than the five scans (1M delta 1.7 → 1.2 s, a
    day file 0.73 → 0.61 s; a decision's 24 mentions 0.27 → 0.2 s the other way)."""
    lf = STG_LINKAGE_FEATURE.qualified
    _ids(con, "_nf_ids", ids)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _nf_wanted AS SELECT DISTINCT name_s, {_GIVEN} AS given, name_py "
                f"FROM {lf} WHERE unique_id IN (SELECT id FROM _nf_ids)")
    asked, indexed = con.execute(f"SELECT (SELECT count(*) FROM _nf_ids), (SELECT count(*) FROM {lf})").fetchall()[0]
    rows = f"SELECT name_s, {_GIVEN} AS given, name_py, birth, sex, cid, source_object FROM {lf}"
    copied = asked <= _NF_COPY_SHARE * indexed
    if copied:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _nf_rows AS {rows}
            WHERE name_s IN (SELECT name_s FROM _nf_wanted) OR {_GIVEN} IN (SELECT given FROM _nf_wanted)
               OR name_py IN (SELECT name_py FROM _nf_wanted)""")
    else:
        con.execute(f"CREATE OR REPLACE TEMP VIEW _nf_rows AS {rows}")
    out = []
    for col in ("name_s", "given", "name_py"):
        df = con.execute(f"""
            SELECT {col} AS v, count(DISTINCT birth) AS k FROM _nf_rows
            WHERE birth IS NOT NULL AND {col} IN (SELECT {col} FROM _nf_wanted WHERE {col} IS NOT NULL)
            GROUP BY 1""").df()
        out.append(pd.Series(df["k"].to_numpy(dtype="int64"), index=df["v"].astype(object).to_numpy()))
    span = con.execute(f"SELECT date_diff('day', min(birth), max(birth)) FROM {lf}").fetchall()[0][0]
    seen = []
    for col in ("name_s", "name_py"):
        # two hash aggregations, not a window over the rows (a sort): at a roster month
        # nearly every index row shares a name with an asked mention
        seen.append(frozenset(r[0] for r in con.execute(f"""
            WITH keyed AS (SELECT {col} AS v, birth, sex, cid, source_object FROM _nf_rows
                           WHERE {col} IN (SELECT {col} FROM _nf_wanted) AND birth IS NOT NULL AND sex IS NOT NULL),
            twice AS (
                SELECT v, birth, sex FROM keyed GROUP BY v, birth, sex HAVING count(DISTINCT cid) > 1
                UNION SELECT v, birth, sex FROM keyed GROUP BY v, birth, sex, source_object HAVING count(*) > 1)
            SELECT v || '|' || strftime(birth, '%Y-%m-%d') || '|' || sex FROM twice""").fetchall()))
    con.execute("DROP TABLE IF EXISTS temp._nf_rows" if copied else "DROP VIEW IF EXISTS temp._nf_rows")
    con.execute("DROP TABLE IF EXISTS temp._nf_wanted")
    return out[0], out[1], max(int(span or 0), 365), seen[0], out[2], seen[1]


# -------------------------------------------------------------------------------------
# slices of the previous resolution
# -------------------------------------------------------------------------------------
def person_of(con: duckdb.DuckDBPyConnection, mention_ids: Iterable[str]) -> pd.DataFrame:
    """mention_id, person_id, match_method, match_probability of these mentions."""
    _ids(con, "_po_ids", mention_ids)
    return con.execute("SELECT mention_id, person_id, match_method, match_probability FROM core.person_xref "
                       "WHERE mention_id IN (SELECT id FROM _po_ids) ORDER BY mention_id").df()


def mentions_of_persons(con: duckdb.DuckDBPyConnection, person_ids: Iterable[str]) -> list[str]:
    """The current (staged) mentions of these persons, ordered."""
    _ids(con, "_mp_ids", person_ids)
    # the persons' few mention ids are the hashed side, not every staged mention
    return [r[0] for r in con.execute(
        "SELECT m.mention_id FROM stg.mention m WHERE m.mention_id IN "
        "(SELECT mention_id FROM core.person_xref WHERE person_id IN (SELECT id FROM _mp_ids)) "
        "ORDER BY m.mention_id").fetchall()]


def persons(con: duckdb.DuckDBPyConnection, person_ids: Iterable[str]) -> pd.DataFrame:
    """person_id, citizen_id, document_number, former_ids (`build.FORMER_IDS_SQL`) of
    these (published) persons."""
    from warehouse.build import FORMER_IDS_SQL

    _ids(con, "_p_ids", person_ids)
    return con.execute(f"SELECT person_id, citizen_id, document_number, {FORMER_IDS_SQL} FROM core.person p "
                       "WHERE person_id IN (SELECT id FROM _p_ids) ORDER BY person_id").df()


def mention_facts(con: duckdb.DuckDBPyConnection, mention_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """mention_id, export_date, citizen_id (what stable id assignment reads) of these
    mentions (all when None), ordered by mention id."""
    if mention_ids is None:
        return con.execute("SELECT mention_id, export_date, citizen_id FROM stg.mention ORDER BY mention_id").df()
    _ids(con, "_mf_ids", mention_ids)
    return con.execute("SELECT mention_id, export_date, citizen_id FROM stg.mention "
                       "WHERE mention_id IN (SELECT id FROM _mf_ids) ORDER BY mention_id").df()


def decision_partners(con: duckdb.DuckDBPyConnection, mention_ids: Iterable[str]) -> list[str]:
    """Mentions an active officer decision pairs with one of `mention_ids`."""
    _ids(con, "_dp_ids", mention_ids)
    return [r[0] for r in con.execute("""
        SELECT mention_id_b FROM core.link_decision WHERE is_active AND mention_id_a IN (SELECT id FROM _dp_ids)
        UNION SELECT mention_id_a FROM core.link_decision WHERE is_active AND mention_id_b IN (SELECT id FROM _dp_ids)
        """).fetchall()]


#: temp table the local resolutions of a transaction leave on its connection: the records
#: (source_object, source_locator) whose xref rows they replaced or dropped, before and
#: after. What a scoped build derives from records and the persons their mentions belong
#: to (roster lines, floating registrations, family-planning women and children) changes
#: only for these and the records staged by the run; the build reads it and drops it
#: (`warehouse.build._rewritten_records`).
REWRITTEN = "resolution_rewritten_records"


def write_local_resolution(con: duckdb.DuckDBPyConnection, xref: pd.DataFrame, removed: Iterable[str],
                           merge_log: pd.DataFrame, run_id: str) -> None:
    """Replace the xref rows of the re-clustered mentions (`xref`: mention_id,
    person_id, match_method, match_probability) and drop those of removed mentions;
    append the merge log. Their records are added to `REWRITTEN`."""
    from warehouse.build import append_merge_log, insert_xref

    _ids(con, "_local_ids", [*xref["mention_id"], *removed])
    con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {REWRITTEN} (source_object VARCHAR, source_locator VARCHAR)")
    rewritten = (f"INSERT INTO {REWRITTEN} SELECT DISTINCT source_object, source_locator FROM core.person_xref "
                 "WHERE mention_id IN (SELECT id FROM _local_ids)")
    con.execute(rewritten)
    con.execute("DELETE FROM core.person_xref WHERE mention_id IN (SELECT id FROM _local_ids)")
    insert_xref(con, xref)
    con.execute(rewritten)
    append_merge_log(con, merge_log, run_id)


def next_person_sequence(con: duckdb.DuckDBPyConnection) -> int:
    from warehouse.build import read_previous_resolution

    return read_previous_resolution(con, ids_only=True)[2]
