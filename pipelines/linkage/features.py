"""Person mentions → one linkage row per mention (the columns the comparisons read).

`linkage_frame(mentions, relationships)` derives, per mention:

* ``unique_id``        the mention id;
* ``cid``              the valid citizen ID (or NA); ``doc_key`` a non-resident document
                       (type:number, only when there is no valid ID) and ``doc_no`` its
                       number alone (the key the clusterer groups and separates on);
* ``id_kind``          ``valid`` | ``typo`` (a well-formed 18/15-digit value that failed a
                       check: one digit wrong somewhere) | ``partial`` (Excel-damaged or of a
                       wrong length: only the leading ``id_digits`` are trustworthy) | NA;
* ``id_digits``        the 17-digit body (valid / typo), or the trusted leading digits;
* ``id_p14``           region + birth date (first 14 digits) when trusted, for blocking;
* ``name_s``, ``name_py``, ``name_py_alt``, ``surname``: the Simplified name, its pinyin
                       keys (surname reading / plain reading) and the surname;
                       ``name_initial`` the first letter of the pinyin (a blocking key);
* ``birth``            birth date (written, else from the ID evidence), ``birth_year``;
* ``sex``              ``1``/``2`` (written, else from a valid ID), NA when unknown;
* ``phone``            normalised phone;
* ``addr_flats``       parsed ``address_key`` of the hukou and current address (list),
                       ``addr_blds`` the same keys without unit / floor / room;
* ``ctx``              keys of the persons this mention's record relates it to (spouse, head
                       of household, mother, child...): ``I:<citizen id>`` and
                       ``N:<pinyin>|<birth date>`` of each;
* ``source_object``    the export file or table (for the same-file link requirement);
* ``sole_in_household`` the mention comes from a household listing (a roster row with a
                       ``household_key``) whose household, in that file, holds no other
                       mention born on the same day: no twin is listed beside it. False when
                       one is; NA when the record lists no household or the birth date is
                       unknown. Computed over the whole file, which arrives whole.

Pure: frames in, frame out.
"""

from __future__ import annotations

import re

import pandas as pd

LINKAGE_COLUMNS = [
    "unique_id", "cid", "doc_key", "doc_no", "id_kind", "id_digits", "id_p14",
    "name_s", "name_py", "name_py_alt", "name_initial", "surname", "birth", "birth_year", "sex", "phone",
    "addr_flats", "addr_blds", "ctx", "source_object", "sole_in_household",
]

_TYPO_STATUSES = {"id_bad_checksum", "id_bad_region", "id_bad_birth_date"}
_SCI = re.compile(r"^([1-9][0-9]*)(?:[.,]([0-9]*))?E\+?([0-9]+)$")
_FLOAT = re.compile(r"^([0-9]+)[.,][0-9]+$")
_LEAD_DIGITS = re.compile(r"^([0-9]*)")


def _col(m: pd.DataFrame, name: str) -> pd.Series:
    if name in m.columns:
        return m[name]
    return pd.Series(pd.NA, index=m.index, dtype=object)


def _str(s: pd.Series) -> pd.Series:
    out = s.astype("string").str.strip()
    return out.mask(out.eq(""), pd.NA)


def _to_body(s: str) -> str:
    """An 18- or 15-digit value onto the 17-digit body layout."""
    if len(s) == 15:
        return s[:6] + "19" + s[6:15]
    return s[:17]


def _id_evidence_one(status: str | None, clean: str | None) -> tuple[str | None, str | None]:
    """(kind, digits) of one unusable ID value (see module docstring)."""
    if not clean:
        return None, None
    if status in _TYPO_STATUSES and re.fullmatch(r"[0-9]{17}[0-9X]|[0-9]{15}", clean):
        return "typo", _to_body(clean)
    if status == "id_excel_truncated" and len(clean) == 18:
        return "partial", clean[:15]
    m = _SCI.match(clean)
    if m:
        integer, fraction, exp = m.group(1), m.group(2) or "", int(m.group(3))
        mantissa = integer + fraction
        n_digits = len(integer) + exp
        if n_digits not in (15, 18):
            return None, None
        shown = len(mantissa)
        trusted = shown if shown >= 14 else (6 if (n_digits == 18 and shown == 6) else shown - 1)
        trusted = min(trusted, 15, shown)
        digits = mantissa[:trusted]
        if n_digits == 15:
            digits = digits[:6] + "19" + digits[6:] if len(digits) > 6 else digits[:6]
        return ("partial", digits) if len(digits) >= 6 else (None, None)
    m = _FLOAT.match(clean)
    if m:
        integer = m.group(1)
        if len(integer) == 18:
            return "partial", integer[:15]
        if len(integer) == 15:
            return "partial", _to_body(integer)[:17]
        return None, None
    lead = _LEAD_DIGITS.match(clean).group(1)
    if len(lead) == 17 and len(clean) in (17, 18):
        return "partial", lead
    if len(lead) >= 6:
        return "partial", (_to_body(lead) if len(clean) == 15 and len(lead) > 8 else lead)[:6]
    return None, None


def id_evidence(mentions: pd.DataFrame) -> pd.DataFrame:
    """cid, id_kind, id_digits, id_p14 per mention (index kept)."""
    from pipelines.normalize.ids import clean_document_number

    cid = _str(_col(mentions, "citizen_id"))
    valid = cid.str.fullmatch(r"[0-9]{17}[0-9X]").fillna(False).astype(bool)
    cid = cid.where(valid, pd.NA)
    status = _str(_col(mentions, "id_status"))
    raw = _col(mentions, "id_raw")
    clean = clean_document_number(raw.astype(object).where(raw.notna(), None).astype("string"))
    kind = pd.Series(pd.NA, index=mentions.index, dtype=object)
    digits = pd.Series(pd.NA, index=mentions.index, dtype=object)
    kind[valid] = "valid"
    digits[valid] = cid[valid].str.slice(0, 17)
    todo = ~valid & clean.notna() & status.notna() & ~status.isin(["valid", "upgraded_15", "missing"])
    if todo.any():
        pairs = pd.DataFrame({"s": status[todo].astype(object), "c": clean[todo].astype(object)})
        uniq = pairs.drop_duplicates()
        res = {(s, c): _id_evidence_one(s, c) for s, c in uniq.itertuples(index=False)}
        ev = [res[(s, c)] for s, c in pairs.itertuples(index=False)]
        kind[todo] = [k for k, _ in ev]
        digits[todo] = [d for _, d in ev]
    kind = kind.where(digits.notna(), pd.NA)
    digits = digits.astype("string")
    # region + birth date (14 digits) only when trusted: valid or partial ≥ 14 digits
    p14 = digits.str.slice(0, 14).where((kind.isin(["valid", "partial"])) & (digits.str.len() >= 14), pd.NA)
    return pd.DataFrame({"cid": cid, "id_kind": kind.astype("string"), "id_digits": digits, "id_p14": p14},
                        index=mentions.index)


def _surname(name: pd.Series) -> pd.Series:
    from pipelines.normalize.names import COMPOUND_SURNAMES

    first2 = name.str.slice(0, 2)
    han = name.str.match(r"^[\u4e00-\u9fff]").fillna(False)
    dotted = name.str.contains("·", regex=False).fillna(False)
    sur = name.str.slice(0, 1).where(~first2.isin(list(COMPOUND_SURNAMES)), first2)
    return sur.where(han & ~dotted & (name.str.len() >= 2), pd.NA)


def _dates(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s.astype(object).where(s.notna(), None), errors="coerce").astype("datetime64[s]")


def _address_keys(mentions: pd.DataFrame, district=None) -> tuple[pd.Series, pd.Series]:
    """Lists of flat keys and building keys (hukou + current, in that order, each once)
    per mention. Each distinct address text is keyed once (`plain_keys`: without a
    context, as `parse_addresses` keys it); the lists are assembled from one array of
    keys per address column."""
    cols = [c for c in ("hukou_address", "current_address") if c in mentions.columns]
    if not cols:
        empty = pd.Series([[] for _ in range(len(mentions))], index=mentions.index, dtype=object)
        return empty, empty.copy()
    texts = [_str(mentions[c]) for c in cols]
    uniq = pd.Series(pd.concat(texts).dropna().unique(), dtype=object)
    if len(uniq):
        try:
            from pipelines.normalize.address import plain_keys

            # parsed while the sync standardised them, where it did (`remembered_keys`)
            k = pd.Series([flat_key(x) if isinstance(x, str) else None for x in plain_keys(uniq, district)],
                          dtype=object)
        except Exception:  # noqa: BLE001 - the parser is optional: fall back to normalised text
            k = _fallback_address_key(uniq)
        flat_of = {t: f for t, f in zip(uniq, k) if isinstance(f, str)}
    else:
        flat_of = {}
    bld_of = {f: building_key(f) for f in set(flat_of.values())}
    # per address column, the mention's flat key (None: no text, or not parsed to one)
    keyed = [[flat_of.get(t) for t in s.astype(object).where(s.notna(), None).to_numpy()] for s in texts]
    flats: list[list[str]] = []
    blds: list[list[str]] = []
    for row in zip(*keyed):
        f_row: list[str] = []
        b_row: list[str] = []
        for key in row:
            if key is None:
                continue
            if key not in f_row:
                f_row.append(key)
            b = bld_of[key]
            if b and b not in b_row:
                b_row.append(b)
        flats.append(f_row)
        blds.append(b_row)
    return (pd.Series(flats, index=mentions.index, dtype=object),
            pd.Series(blds, index=mentions.index, dtype=object))


def flat_key(address_key: str) -> str | None:
    """An address key without its administrative part: addresses of one flat are
    written with or without province / city / county, and a missing county makes the
    parser's admin segment differ; the road, number, building, unit and room do not."""
    parts = str(address_key).split("|")
    key = "|".join(p for p in parts[1:] if p and p != "f:")
    return key or None


def building_key(flat: str) -> str | None:
    """A flat key (see `flat_key`) without unit / floor / room: the building or house."""
    out, after_anchor = [], False
    for p in str(flat).split("|"):
        if p.startswith(("u:", "f:")):
            continue
        if p.startswith("r:") and after_anchor:  # the room, not the road
            continue
        out.append(p)
        after_anchor = after_anchor or p.startswith(("n:", "b:", "e:", "t:", "v:", "g:"))
    key = "|".join(out)
    return key or None


def _fallback_address_key(text: pd.Series) -> pd.Series:
    import unicodedata

    def norm(s: str) -> str:
        s = unicodedata.normalize("NFKC", s)
        s = re.sub(r"[\s,，。·\-]", "", s)
        s = re.sub(r"^.*?(区|县)", "", s)  # drop leading levels, they are often omitted
        return s.replace("室", "").replace("号楼", "栋").replace("幢", "栋")
    return text.map(norm)


def _context_keys(lf: pd.DataFrame, relationships: pd.DataFrame | None) -> pd.Series:
    ctx = pd.Series([[] for _ in range(len(lf))], index=lf.index, dtype=object)
    if relationships is None or len(relationships) == 0:
        return ctx
    ident = lf.set_index("unique_id")
    id_key = ("I:" + ident["cid"]).astype(object)
    name_key = ("N:" + ident["name_py"] + "|" + ident["birth"].dt.strftime("%Y-%m-%d")).astype(object)
    pos = {u: i for i, u in enumerate(lf["unique_id"].to_numpy())}
    id_of = {u: k for u, k in zip(ident.index, id_key.to_numpy()) if isinstance(k, str)}
    name_of = {u: k for u, k in zip(ident.index, name_key.to_numpy()) if isinstance(k, str)}
    rel = relationships[["from_mention_id", "to_mention_id"]].dropna()
    both = pd.concat([rel.rename(columns={"from_mention_id": "me", "to_mention_id": "other"}),
                      rel.rename(columns={"to_mention_id": "me", "from_mention_id": "other"})])
    lists = ctx.to_list()
    for me, other in zip(both["me"].to_numpy(), both["other"].to_numpy()):
        i = pos.get(me)
        if i is None or me == other or other not in pos:
            continue
        lst = lists[i]
        for k in (id_of.get(other), name_of.get(other)):
            if k is not None and k not in lst:
                lst.append(k)
    return pd.Series(lists, index=lf.index, dtype=object)


def linkage_frame(mentions: pd.DataFrame, relationships: pd.DataFrame | None = None, *,
                  district=None) -> pd.DataFrame:
    """The linkage row of every mention (see the module docstring); same order as `mentions`."""
    m = mentions.reset_index(drop=True)
    ev = id_evidence(m)
    doc_type = _str(_col(m, "document_type"))
    doc_no = _str(_col(m, "document_number"))
    doc_ok = doc_no.notna() & doc_type.notna() & ~doc_type.eq("resident_id") & ev["cid"].isna()
    name_s = _str(_col(m, "name_simplified")).fillna(_str(_col(m, "name")))
    py = _str(_col(m, "name_pinyin"))
    py_alt = _str(_col(m, "name_pinyin_alt")).fillna(py)
    birth = _dates(_col(m, "birth_date"))
    id_birth = _dates(_col(m, "id_birth_date"))
    birth = birth.fillna(id_birth)
    sex = _str(_col(m, "gender"))
    # the gender of the ID only from a valid one: in an ID with a wrong digit, the wrong
    # digit may be the gender digit (杨志's 17th digit typed odd for even), and a
    # "different" gender outweighs everything else
    id_sex = _str(_col(m, "id_gender")).where(ev["id_kind"].eq("valid").fillna(False).to_numpy(), pd.NA)
    sex = sex.where(sex.isin(["1", "2"]), pd.NA).fillna(id_sex.where(id_sex.isin(["1", "2"]), pd.NA))
    phone = _str(_col(m, "phone"))
    lf = pd.DataFrame({
        "unique_id": m["mention_id"].astype(str).to_numpy(),
        "cid": ev["cid"],
        # the number alone: one passport is typed 护照 in one system and 其他 in another
        "doc_key": (doc_type + ":" + doc_no).where(doc_ok, pd.NA),
        "doc_no": doc_no.where(doc_ok, pd.NA),
        "id_kind": ev["id_kind"],
        "id_digits": ev["id_digits"],
        "id_p14": ev["id_p14"],
        "name_s": name_s,
        "name_py": py.fillna(name_s),
        "name_py_alt": py_alt.fillna(name_s),
        "name_initial": py.fillna(name_s).str.slice(0, 1).str.lower(),
        "surname": _surname(name_s),
        "birth": birth,
        "birth_year": birth.dt.year.astype("Int64"),
        "sex": sex,
        "phone": phone,
    })
    flats, blds = _address_keys(m, district)
    lf["addr_flats"] = flats.to_numpy()
    lf["addr_blds"] = blds.to_numpy()
    lf["ctx"] = _context_keys(lf, relationships).to_numpy()
    lf["source_object"] = _str(_col(m, "source_object")).to_numpy()
    lf["sole_in_household"] = _sole_in_household(_str(_col(m, "household_key")), birth).to_numpy()
    return lf[LINKAGE_COLUMNS]


def _sole_in_household(household: pd.Series, birth: pd.Series) -> pd.Series:
    """Per mention: alone in its listed household with its birth date (see
    ``sole_in_household`` in the module docstring). Gender is left out on purpose: a
    household listing a boy and a girl born the same day lists twins, and neither is
    then "sole"."""
    known = household.notna() & birth.notna()
    out = pd.Series(pd.NA, index=household.index, dtype="boolean")
    if known.any():
        keys = pd.DataFrame({"h": household[known], "b": birth[known]})
        out[known] = keys.groupby(["h", "b"])["h"].transform("size").to_numpy() == 1
    return out
