"""Raw frame → normalised records → person mentions, executed from a `SourceMapping`.

Every source object runs through the same three pure steps:

1. `map_columns`   rename the source's headers to the mapping's fields (by alias);
2. `normalize_records`  run each field's normaliser (chosen by its *kind*), collecting
   value-level issues instead of raising;
3. `explode_mentions`   turn each record into its person mentions with roles
   (couple rows → two, roster rows → one head/member, T_YLFN → woman + spouse …),
   and `stated_relationships` into the relationships the record states.

`standardize` runs all three and splits records into accepted and rejected.
Nothing here touches files, connections or Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines.addresses import address_mentions
from pipelines.errors import error_message
from pipelines.normalize.address import DistrictContext
from pipelines.normalize.dispatch import normalize_kind
from schemas.mapping import SourceMapping
from schemas.regions import region_codes
from schemas.person import PERSON_FIELDS

LINEAGE = ["source_system", "source_object", "source_locator"]

#: Columns of the value-level issue frame (quality.rejected_record minus the raw row).
ISSUE_COLUMNS = [
    "source_system", "source_object", "source_locator", "source_column", "field",
    "raw_value", "error_code", "message", "is_row_rejected", "record_key",
]

#: Extra columns a person mention carries next to the PersonMention fields: the ID
#: evidence that survives from an unusable value and the name keys used for linkage.
MENTION_EXTRAS = [
    "mention_id", "record_key", "household_key", "id_raw", "id_status", "id_region_code",
    "id_birth_date", "id_gender", "id_sequence", "id_evidence_only",
    "name_raw", "name_simplified", "name_pinyin", "name_pinyin_alt",
]
MENTION_COLUMNS = LINEAGE + ["role"] + MENTION_EXTRAS + list(PERSON_FIELDS)


@dataclass
class Standardized:
    """What one raw frame becomes."""

    records: pd.DataFrame          # accepted records, one row per source record, fields normalised
    mentions: pd.DataFrame         # person mentions of the accepted records
    relationships: pd.DataFrame    # relationships stated by the accepted records
    issues: pd.DataFrame           # rejected rows and unusable values (ISSUE_COLUMNS + raw_row)
    addresses: pd.DataFrame | None = None  # address mentions of the accepted records
    rows_read: int = 0
    rows_rejected: int = 0
    rows_skipped: int = 0          # non-data rows (合计, blank): neither accepted nor rejected
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_accepted(self) -> int:
        return len(self.records)

    @property
    def values_rejected(self) -> int:
        """Unusable values in accepted records (the record is kept, the value is not)."""
        if self.issues.empty:
            return 0
        return int((~self.issues["is_row_rejected"].astype(bool)).sum())


# ---------------------------------------------------------------------------------
# 1. map columns
# ---------------------------------------------------------------------------------
def map_columns(raw: pd.DataFrame, mapping: SourceMapping) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rename source headers to fields. Returns the frame (every mapping field present,
    absent optional columns as None) and field → source header for the fields found."""
    data_cols = [c for c in raw.columns if c not in LINEAGE]
    header_map = mapping.match_headers(data_cols)
    out = pd.DataFrame(index=raw.index)
    for col in LINEAGE:
        out[col] = raw[col] if col in raw.columns else None
    field_to_header = {f: h for h, f in header_map.items()}
    for spec in mapping.columns:
        header = field_to_header.get(spec.field)
        out[spec.field] = raw[header] if header is not None else None
    return out, field_to_header


# ---------------------------------------------------------------------------------
# 2. normalise
# ---------------------------------------------------------------------------------
def normalize_records(
    mapped: pd.DataFrame, mapping: SourceMapping, field_to_header: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Normalise every field by its kind. Returns (normalised frame, value issues).

    The normalised frame has, per field, the value column `<field>` and the
    normaliser's extra outputs as `<field>__<extra>` (e.g. `man_id__status`)."""
    out = mapped[LINEAGE].copy()
    issues = []
    birth_fields = {p.fields.get("birth_date") for p in mapping.persons}
    for spec in mapping.columns:
        raw = mapped[spec.field]
        options = {"birth_date": True} if spec.kind == "date" and spec.field in birth_fields else {}
        res = normalize_kind(spec.kind, raw, code_table=mapping.code_table_of(spec), **options)
        out[spec.field] = res["value"]
        out[f"{spec.field}__raw"] = raw
        for extra in res.columns:
            if extra not in ("value", "error"):
                out[f"{spec.field}__{extra}"] = res[extra]
        err = res["error"]
        missing = raw.isna() | raw.astype("string").str.strip().eq("")
        if spec.not_null:
            # a required value that is absent is a row-level problem
            err = err.where(~missing | err.notna(), "value_missing")
        bad = err.notna()
        if bad.any():
            issues.append(pd.DataFrame({
                "source_system": mapped.loc[bad, "source_system"],
                "source_object": mapped.loc[bad, "source_object"],
                "source_locator": mapped.loc[bad, "source_locator"],
                "source_column": field_to_header.get(spec.field, spec.header),
                "field": spec.field,
                "raw_value": raw[bad],
                "error_code": err[bad],
                "is_row_rejected": spec.not_null,
            }))
    issue_frame = pd.concat(issues, ignore_index=False) if issues else _empty_issues()
    if len(issue_frame):
        # the record's business key, so a later correction can close the problem
        issue_frame["record_key"] = mapped.loc[issue_frame.index, mapping.record_key].astype(object).to_numpy()
        issue_frame["message"] = [
            error_message(code, column=col, value=val)
            for code, col, val in zip(issue_frame["error_code"], issue_frame["source_column"],
                                      issue_frame["raw_value"])
        ]
    return out, issue_frame.reindex(columns=ISSUE_COLUMNS)


def _empty_issues() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ISSUE_COLUMNS})


# ---------------------------------------------------------------------------------
# 3. mentions and relationships
# ---------------------------------------------------------------------------------
_ID_EXTRAS = {
    "id_raw": "raw", "id_status": "status", "id_region_code": "region_code",
    "id_birth_date": "birth_date", "id_gender": "gender", "id_sequence": "sequence",
    "id_evidence_only": "evidence_only",
}
_NAME_EXTRAS = {"name_raw": "raw", "name_simplified": "simplified", "name_pinyin": "pinyin",
                "name_pinyin_alt": "pinyin_alt"}


def explode_mentions(records: pd.DataFrame, mapping: SourceMapping) -> pd.DataFrame:
    """One row per person mention of every record, with its role.

    A `per: household` rule gives one mention per household, at the household's first
    row, from its household columns (the 户主 named in 户主姓名/户主身份证号); with
    `unless_listed` only when no row of the household already is that person: no row
    has the rule's role, the same valid citizen ID or the same name (Simplified)."""
    parts = []
    ordered = sorted(mapping.persons, key=lambda p: p.per == "household")  # row rules first
    for person in ordered:
        rec = records
        if person.per == "household":
            rec = _household_first_rows(rec, mapping)
        if person.present_if_any:
            present = np.zeros(len(rec), dtype=bool)
            for f in person.present_if_any:
                present |= rec[f].notna().to_numpy()
            rec = rec[present]
        m = pd.DataFrame(index=rec.index)
        for col in LINEAGE:
            m[col] = rec[col]
        if person.role:
            m["role"] = person.role
        else:
            rule = person.role_rule
            m["role"] = np.where(rec[rule.field].isin(rule.codes), rule.role, rule.otherwise)
        m["record_key"] = rec[mapping.record_key].astype("string")
        m["household_key"] = _household_key(rec, mapping)
        for pf in PERSON_FIELDS:
            src = person.fields.get(pf)
            if src is not None:
                m[pf] = rec[src]
            elif pf in person.constants:
                m[pf] = person.constants[pf]
            else:
                m[pf] = None
        id_col = person.fields.get("citizen_id")
        for out_col, extra in _ID_EXTRAS.items():
            m[out_col] = rec.get(f"{id_col}__{extra}") if id_col else None
        name_col = person.fields.get("name")
        for out_col, extra in _NAME_EXTRAS.items():
            m[out_col] = rec.get(f"{name_col}__{extra}") if name_col else None
        doc_col = person.fields.get("document_type")
        _apply_document_type(m, rec, doc_col, id_col)
        if person.unless_listed and parts:
            m = m[~_listed(m, pd.concat(parts, ignore_index=True), person.roles[0])]
        parts.append(m)
    mentions = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=MENTION_COLUMNS)
    mentions["mention_id"] = (
        mentions["source_object"].astype(str) + "|" + mentions["source_locator"].astype(str)
        + "|" + mentions["role"].astype(str)
    )
    return mentions.reindex(columns=MENTION_COLUMNS)


def _household_first_rows(rec: pd.DataFrame, mapping: SourceMapping) -> pd.DataFrame:
    """The first row (in file order) of every household of a roster."""
    if rec.empty:
        return rec
    key = _household_key(rec, mapping)
    return rec[~key.duplicated(keep="first").to_numpy()]


def _listed(candidates: pd.DataFrame, mentions: pd.DataFrame, role: str) -> np.ndarray:
    """For each household-column mention: is the person already a row of its household
    (a row with `role`, the same valid citizen ID, or the same name)?"""
    def name(m: pd.DataFrame) -> pd.Series:
        return m["name_simplified"].astype(object).where(m["name_simplified"].notna(), m["name"].astype(object))

    def pairs(m: pd.DataFrame, value: pd.Series) -> tuple[np.ndarray, zip]:
        """Which rows have a value, and their (household, value) as Python tuples: a set
        of them is a hashed lookup (a MultiIndex `isin` took 0.2 s of a 1M district's
        roster month, pandas' `isin` of its strings 0.05 s)."""
        known = value.notna().to_numpy()
        return known, zip(m["household_key"].to_numpy(dtype=object)[known], value.to_numpy(dtype=object)[known])

    heads = set(mentions.loc[mentions["role"] == role, "household_key"].to_numpy(dtype=object))
    households = candidates["household_key"].to_numpy(dtype=object)
    listed = np.fromiter((h in heads for h in households), dtype=bool, count=len(households))
    for value in (lambda m: m["citizen_id"], name):
        seen = set(pairs(mentions, value(mentions))[1])
        known, mine = pairs(candidates, value(candidates))
        listed[known] |= np.fromiter((p in seen for p in mine), dtype=bool, count=int(known.sum()))
    return listed


def _household_key(rec: pd.DataFrame, mapping: SourceMapping) -> pd.Series | None:
    """Roster household: the roster file, the sheet and its 序号 (unique within a sheet)."""
    if mapping.granularity != "household_rows":
        return None
    sheet = rec["source_locator"].astype("string").str.rsplit("!", n=1).str[0]
    return rec["source_object"].astype(str) + "#" + sheet + "#" + rec[mapping.record_key].astype("string")


def _apply_document_type(m: pd.DataFrame, rec: pd.DataFrame, doc_col: str | None,
                         id_col: str | None) -> None:
    """Foreign and HK/Macao/Taiwan documents are kept as a document, not an ID error."""
    from pipelines.normalize.ids import classify_document

    if id_col is None:
        m["document_type"] = None
        return
    doc_raw = rec[doc_col] if doc_col else pd.Series(None, index=rec.index, dtype=object)
    # the type column was normalised as a kind; classify on its raw text
    if doc_col and f"{doc_col}__raw" in rec:
        doc_raw = rec[f"{doc_col}__raw"]
    cls = classify_document(doc_raw, rec[f"{id_col}__raw"])
    m["document_type"] = cls["document_type"].to_numpy()
    m["document_number"] = cls["document_number"].to_numpy()


def stated_relationships(mentions: pd.DataFrame, mapping: SourceMapping) -> pd.DataFrame:
    """Relationships a record states between its own mentions (spouse, household member)."""
    cols = ["source_system", "source_object", "source_locator", "kind", "from_mention_id",
            "to_mention_id", "record_key"]
    parts = []
    for rel in mapping.relationships:
        if rel.kind == "household_member":
            # roster: every member row relates to its household's head row
            heads = mentions[mentions["role"] == rel.from_role][["household_key", "mention_id"]]
            heads = heads.drop_duplicates("household_key")
            members = mentions[mentions["role"] == rel.to_role]
            j = members.merge(heads, on="household_key", suffixes=("", "_head"))
            parts.append(pd.DataFrame({
                "source_system": j["source_system"], "source_object": j["source_object"],
                "source_locator": j["source_locator"], "kind": rel.kind,
                "from_mention_id": j["mention_id_head"], "to_mention_id": j["mention_id"],
                "record_key": j["household_key"],
            }))
            continue
        a = mentions[mentions["role"] == rel.from_role]
        b = mentions[mentions["role"] == rel.to_role]
        j = a.merge(b, on=["source_object", "source_locator"], suffixes=("_a", "_b"))
        parts.append(pd.DataFrame({
            "source_system": j["source_system_a"], "source_object": j["source_object"],
            "source_locator": j["source_locator"], "kind": rel.kind,
            "from_mention_id": j["mention_id_a"], "to_mention_id": j["mention_id_b"],
            "record_key": j["record_key_a"],
        }))
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


# ---------------------------------------------------------------------------------
# all together
# ---------------------------------------------------------------------------------
def standardize(
    raw: pd.DataFrame,
    mapping: SourceMapping,
    *,
    unreadable_rows: pd.DataFrame | None = None,
    rejected_cells: pd.DataFrame | None = None,
    rows_skipped: int = 0,
    source_system: str | None = None,
    source_object: str | None = None,
    district: DistrictContext | None = None,
    period: str | None = None,
) -> Standardized:
    """Map, normalise, validate and explode one raw frame of one source object.

    `unreadable_rows` (source_locator, error_code, detail, raw_row) are rows the reader
    saw but could not put in the frame (e.g. a CSV row with the wrong field count):
    they count as read and rejected. `rejected_cells` (source_locator, source_column,
    raw_value, error_code, cell) are cells the reader passed on empty or cleaned (Excel
    error values, NUL bytes): each is a rejected value, and rejects its row when the
    field is required (instead of `value_missing`). `rows_skipped` counts non-data rows (合计).
    `district` fills the upper levels of addresses that omit them; `period` is the
    export's period (a roster's month)."""
    mapped, field_to_header = map_columns(raw, mapping)
    records, issues = normalize_records(mapped, mapping, field_to_header)
    if rejected_cells is not None and len(rejected_cells):
        issues = _with_rejected_cells(issues, rejected_cells, mapped, mapping, field_to_header)
    duplicates = duplicate_rows(raw, mapped, mapping)
    if len(duplicates):
        issues = pd.concat([issues, duplicates], ignore_index=True) if len(issues) else duplicates
    rejected_locators = set(issues.loc[issues["is_row_rejected"].astype(bool), "source_locator"])
    rejected_mask = records["source_locator"].isin(rejected_locators)
    accepted = records[~rejected_mask]
    # the raw row goes with every issue so an officer can see the whole record
    raw_rows = _raw_rows(raw, set(issues["source_locator"]))
    issues = issues.assign(raw_row=issues["source_locator"].map(raw_rows))
    n_unreadable = 0
    if unreadable_rows is not None and len(unreadable_rows):
        n_unreadable = len(unreadable_rows)
        extra = pd.DataFrame({
            "source_system": source_system or mapping.source_system,
            "source_object": source_object or mapping.source_object,
            "source_locator": unreadable_rows["source_locator"].to_numpy(),
            "source_column": None, "field": None, "raw_value": None,
            "error_code": unreadable_rows["error_code"].to_numpy(),
            "is_row_rejected": True,
            "raw_row": unreadable_rows["raw_row"].to_numpy(),
        })
        extra["message"] = [
            error_message(code, detail=detail)
            for code, detail in zip(unreadable_rows["error_code"], unreadable_rows["detail"])
        ]
        issues = pd.concat([issues, extra], ignore_index=True) if len(issues) else extra
    mentions = explode_mentions(accepted, mapping)
    issues = _drop_foreign_document_id_errors(issues, mentions, mapping)
    rels = stated_relationships(mentions, mapping)
    addresses = address_mentions(accepted, mapping, field_to_header, district=district, period=period)
    return Standardized(
        records=accepted.reset_index(drop=True),
        mentions=mentions,
        relationships=rels,
        addresses=addresses,
        issues=issues.reindex(columns=ISSUE_COLUMNS + ["raw_row"]).reset_index(drop=True),
        rows_read=len(records) + n_unreadable,
        rows_rejected=int(rejected_mask.sum()) + n_unreadable,
        rows_skipped=rows_skipped,
    )


def _with_rejected_cells(issues: pd.DataFrame, cells: pd.DataFrame, mapped: pd.DataFrame, mapping: SourceMapping,
                        field_to_header: dict[str, str]) -> pd.DataFrame:
    """Issues plus one per rejected cell; a required field's cell replaces the
    `value_missing` its empty value caused (the cell says why it is empty)."""
    header_to_field = {h: f for f, h in field_to_header.items()}
    required = {c.field for c in mapping.columns if c.not_null}
    fields = cells["source_column"].map(header_to_field)
    rejects_row = fields.isin(required).to_numpy()
    keys = mapped.set_index("source_locator")[mapping.record_key] if mapping.record_key in mapped else None
    extra = pd.DataFrame({
        "source_system": mapping.source_system if mapped.empty else mapped["source_system"].iloc[0],
        "source_object": None if mapped.empty else mapped["source_object"].iloc[0],
        "source_locator": cells["source_locator"].to_numpy(),
        "source_column": cells["source_column"].to_numpy(),
        "field": fields.to_numpy(),
        "raw_value": cells["raw_value"].to_numpy(),
        "error_code": cells["error_code"].to_numpy(),
        "is_row_rejected": rejects_row,
        "record_key": (cells["source_locator"].map(keys).astype(object).to_numpy() if keys is not None
                       else None),
    })
    extra["message"] = [error_message(code, column=col, value=val, detail=f"单元格 {cell}" if cell else None)
                        for code, col, val, cell in zip(cells["error_code"], cells["source_column"],
                                                        cells["raw_value"], cells["cell"])]
    if len(issues):
        replaced = set(zip(extra.loc[rejects_row, "source_locator"], extra.loc[rejects_row, "field"]))
        drop = [(loc, f) in replaced and code == "value_missing"
                for loc, f, code in zip(issues["source_locator"], issues["field"], issues["error_code"])]
        issues = issues[~pd.Series(drop, index=issues.index, dtype=bool)]
        return pd.concat([issues, extra.reindex(columns=ISSUE_COLUMNS)], ignore_index=True)
    return extra.reindex(columns=ISSUE_COLUMNS)


#: document types whose number is not a GB 11643 citizen ID (no ID error is raised for them)
NON_ID_DOCUMENTS = ("passport", "foreign_permanent", "hk_macao_pass", "taiwan_pass", "other")


def _drop_foreign_document_id_errors(issues: pd.DataFrame, mentions: pd.DataFrame,
                                     mapping: SourceMapping) -> pd.DataFrame:
    """A passport (or other non-ID document) number in an ID column is kept as the
    mention's document, not reported as a bad citizen ID."""
    if issues.empty or mentions.empty:
        return issues
    id_fields: dict[str, set[str]] = {}  # role → its ID columns (a roster's head: row and household columns)
    for p in mapping.persons:
        for p_role in p.roles:
            id_fields.setdefault(p_role, set()).add(p.fields.get("citizen_id"))
    # without a document-type column only a number that is recognisably a foreign
    # document (a passport-like number such as E12345678 or 618182637 that does not start
    # with a region code) counts; anything else in an ID column stays an ID problem
    typed = {r for p in mapping.persons if "document_type" in p.fields for r in p.roles}
    explicit = mentions["role"].isin(typed)
    number = mentions["document_number"].astype("string")
    looks_like_id = number.str.slice(0, 6).isin(region_codes()).fillna(False)  # e.g. a truncated ID
    passport_like = number.str.fullmatch(r"[A-Za-z]{0,2}\d{6,10}").fillna(False)
    not_an_id_attempt = (mentions["document_type"] == "other") & passport_like & ~looks_like_id
    foreign = mentions[(explicit & mentions["document_type"].isin(NON_ID_DOCUMENTS))
                       | mentions["document_type"].isin(("passport", "foreign_permanent")) | not_an_id_attempt]
    drop = {(loc, f) for loc, role in zip(foreign["source_locator"], foreign["role"]) for f in id_fields.get(role, ())}
    if not drop:
        return issues
    keep = [not (str(code).startswith("id_") and (loc, f) in drop)
            for code, loc, f in zip(issues["error_code"], issues["source_locator"], issues["field"])]
    return issues[keep]


def duplicate_rows(raw: pd.DataFrame, mapped: pd.DataFrame, mapping: SourceMapping) -> pd.DataFrame:
    """Rows identical (every source column) to an earlier row of the same export: the
    repeats are rejected (`row_duplicate`, naming the first row), the first is kept."""
    data_cols = [c for c in raw.columns if c not in LINEAGE]
    if len(raw) < 2 or not data_cols:
        return _empty_issues().iloc[0:0]
    hashes = pd.util.hash_pandas_object(raw[data_cols].astype(object).where(raw[data_cols].notna(), None),
                                        index=False)
    dup = hashes.duplicated(keep="first").to_numpy()
    if not dup.any():
        return _empty_issues().iloc[0:0]
    first = pd.Series(raw["source_locator"].to_numpy(), index=hashes.to_numpy())
    first = first[~first.index.duplicated(keep="first")]
    rows = raw[dup]
    firsts = first.reindex(hashes[dup].to_numpy()).to_numpy()
    return pd.DataFrame({
        "source_system": rows["source_system"].to_numpy(), "source_object": rows["source_object"].to_numpy(),
        "source_locator": rows["source_locator"].to_numpy(), "source_column": None, "field": None,
        "raw_value": None, "error_code": "row_duplicate",
        "message": [error_message("row_duplicate", detail=f"与第 {f} 行相同") for f in firsts],
        "is_row_rejected": True,
        "record_key": mapped.loc[rows.index, mapping.record_key].astype(object).to_numpy(),
    }).reindex(columns=ISSUE_COLUMNS)


def _raw_rows(raw: pd.DataFrame, locators: set[str]) -> pd.Series:
    """source_locator → the raw row as JSON text (source headers as keys), for `locators`."""
    import json

    data_cols = [c for c in raw.columns if c not in LINEAGE]
    raw = raw[raw["source_locator"].isin(locators)]
    values = raw[data_cols].to_numpy(dtype=object)
    texts = [json.dumps(dict(zip(data_cols, row)), ensure_ascii=False) for row in values]
    return pd.Series(texts, index=raw["source_locator"].to_numpy())
