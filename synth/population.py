"""The true district: flats, households, persons and the events of the period.

Everything is built column-wise with numpy; one row per flat / household / person.
The exports (see ``synth/exports``) only *observe* this world, each through its own
department's eyes and with its own noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from . import ids as idlib
from . import reference as ref
from .config import District, PopulationConfig

DAY = np.timedelta64(1, "D")


def d64(d: date) -> np.datetime64:
    return np.datetime64(d, "D")


def as_object_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Keep text columns as plain numpy object arrays (cheap ``to_numpy`` in hot loops)."""
    for col in df.columns:
        if df[col].dtype == "str" or pd.api.types.is_string_dtype(df[col].dtype):
            df[col] = pd.Series(df[col].to_numpy(dtype=object), index=df.index, dtype=object)
    return df


def choice_weighted(rng: np.random.Generator, items, weights, size: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return np.asarray(items, dtype=object)[rng.choice(len(items), size=size, p=w / w.sum())]


# ----------------------------------------------------------------------------------------
# The period
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: date  # first export day
    days: int  # number of export days
    roster_months: tuple[date, ...]  # first day of each 低保 roster month

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    @property
    def history_start(self) -> date:
        """Events (deaths, marriages, changes) happen from here up to ``end``."""
        return self.roster_months[0]

    @classmethod
    def make(cls, start: date, days: int, months: int) -> Period:
        end = start + timedelta(days=days - 1)
        firsts = []
        y, m = end.year, end.month
        for _ in range(months):
            firsts.append(date(y, m, 1))
            y, m = (y, m - 1) if m > 1 else (y - 1, 12)
        return cls(start, days, tuple(reversed(firsts)))


@dataclass
class World:
    district: District
    period: Period
    flats: pd.DataFrame
    households: pd.DataFrame
    persons: pd.DataFrame
    marriages: pd.DataFrame  # civil affairs events


# ----------------------------------------------------------------------------------------
# Flats
# ----------------------------------------------------------------------------------------


def _sample_distinct(rng, radices: tuple[int, ...], n: int) -> list[np.ndarray]:
    """``n`` distinct points of the grid ``radices`` (mixed-radix digits, one array per axis)."""
    space = int(np.prod(radices, dtype=np.int64))
    if n > space:
        raise ValueError(f"the district has room for {space} such flats, {n} were asked for")
    codes = rng.choice(space, size=n, replace=False)
    digits = []
    for r in reversed(radices):
        codes, d = np.divmod(codes, r)
        digits.append(d)
    return digits[::-1]


def build_flats(rng: np.random.Generator, district: District, n: int, cfg: PopulationConfig) -> pd.DataFrame:
    share = district.rural_share if district.rural_share is not None else cfg.rural_share
    n_rural = int(round(n * share)) if district.rural else 0
    n_estate = int(round((n - n_rural) * cfg.estate_share))
    n_road = n - n_rural - n_estate
    parts = [_road_flats(rng, district, n_road), _estate_flats(rng, district, n_estate),
             _rural_flats(rng, district, n_rural)]
    flats = pd.concat([p for p in parts if len(p)], ignore_index=True)
    for col in ("number", "building", "unit", "room", "group", "house_no"):
        flats[col] = flats[col].fillna(0).astype(np.int64) if col in flats else 0
    for col in ("road", "estate", "block"):
        flats[col] = flats[col].fillna("").astype(object) if col in flats else ""
    flats = flats.iloc[rng.permutation(len(flats))].reset_index(drop=True)
    flats.insert(0, "flat_key", [f"F{i:07d}" for i in range(len(flats))])
    return flats


def _road_flats(rng, district: District, n: int) -> pd.DataFrame:
    """Numbered buildings on roads (人民大街125号3号楼), ~20 households per building."""
    if n == 0:
        return pd.DataFrame()
    roads = [(si, road) for si, s in enumerate(district.subdistricts) if not s.rural for road in s.roads]
    road_i, number, building = _sample_distinct(rng, (len(roads), 399, 15), max(1, n // 20))
    sub = np.array([roads[r][0] for r in road_i])
    comm = np.array([rng.integers(0, len(district.subdistricts[s].communities)) for s in sub])
    b, unit, floor, door = _sample_distinct(rng, (len(sub), 6, 7, 2), n)
    return pd.DataFrame({"sub": sub[b], "comm": comm[b], "road": np.array([roads[r][1] for r in road_i], dtype=object)[b],
                         "number": number[b] + 1, "building": building[b] + 1, "unit": unit + 1,
                         "room": (floor + 1) * 100 + door + 1, "kind": "road"})


def _estate_flats(rng, district: District, n: int) -> pd.DataFrame:
    """Flats in named estates (金城花园B座2单元501室)."""
    if n == 0:
        return pd.DataFrame()
    estates = [(si, e, s.roads[k % len(s.roads)], 100 + 37 * k + si)
               for si, s in enumerate(district.subdistricts) if not s.rural for k, e in enumerate(s.estates)]
    est_comm = np.array([rng.integers(0, len(district.subdistricts[si].communities)) for si, *_ in estates])
    blocks = np.array(list("ABCDEFGH") + [str(i) for i in range(1, 41)], dtype=object)
    # 18-storey blocks; a district asked for more households than they hold (a city-sized
    # population in one county, for the sizing benchmarks) gets taller towers, up to 60
    # storeys, rather than failing (sizes that fit are generated exactly as before;
    # villages likewise, with more houses per 组)
    floors = 18
    while len(estates) * len(blocks) * 4 * floors * 4 < n and floors < 60:
        floors += 1
    e, blk, unit, floor, door = _sample_distinct(rng, (len(estates), len(blocks), 4, floors, 4), n)
    col = lambda k: np.array([x[k] for x in estates], dtype=object)[e]  # noqa: E731
    return pd.DataFrame({"sub": col(0).astype(int), "comm": est_comm[e], "estate": col(1), "road": col(2),
                         "number": col(3).astype(int), "block": blocks[blk], "unit": unit + 1,
                         "room": (floor + 1) * 100 + door + 1, "kind": "estate"})


def _rural_flats(rng, district: District, n: int) -> pd.DataFrame:
    """Village houses (寿山镇新立村三组18号)."""
    if n == 0:
        return pd.DataFrame()
    villages = [(si, ci) for si, s in enumerate(district.subdistricts) if s.rural for ci in range(len(s.communities))]
    houses = 600  # per 组; more (as the towers above) only when the villages have no room
    while len(villages) * 30 * houses < n:
        houses += 100
    v, group, house = _sample_distinct(rng, (len(villages), 30, houses), n)
    return pd.DataFrame({"sub": np.array([x[0] for x in villages])[v], "comm": np.array([x[1] for x in villages])[v],
                         "group": group + 1, "house_no": house + 1, "kind": "rural"})


# ----------------------------------------------------------------------------------------
# Households and persons
# ----------------------------------------------------------------------------------------


def _ages_to_birth(rng, ages: np.ndarray, ref_day: np.datetime64) -> np.ndarray:
    offset = (ages * 365.25 + rng.integers(0, 365, len(ages))).astype(np.int64)
    return ref_day - offset * DAY


def _given_names(rng, gender: np.ndarray) -> np.ndarray:
    n = len(gender)
    male = np.asarray(ref.GIVEN_MALE, dtype=object)
    female = np.asarray(ref.GIVEN_FEMALE, dtype=object)
    first = np.where(gender == "1", male[rng.integers(0, len(male), n)], female[rng.integers(0, len(female), n)])
    second = np.where(gender == "1", male[rng.integers(0, len(male), n)], female[rng.integers(0, len(female), n)])
    two = rng.random(n) < 0.75
    return np.where(two, first + second, first).astype(object)


def _household_skeleton(rng, n: int, cfg: PopulationConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Households and their members (roles, genders, ages) before names and IDs."""
    floating = rng.random(n) < cfg.floating_share
    head_age = np.where(floating, rng.integers(20, 56, n),
                        np.clip(rng.normal(52, 16, n), 20, 94).astype(int))
    head_male = rng.random(n) < 0.72
    has_spouse = rng.random(n) < cfg.spouse_rate
    hh = pd.DataFrame({"floating": floating, "head_age": head_age, "head_male": head_male})

    def members(idx, role, male, age, order=0):
        return pd.DataFrame({"household": idx, "role": role, "male": male, "age": age, "order": order})

    hidx = np.arange(n)
    parts = [members(hidx, "head", head_male, head_age)]
    s = hidx[has_spouse]
    sp_age = np.clip(head_age[s] + np.where(head_male[s], -2, 2) + rng.normal(0, 3, len(s)).astype(int), 18, 98)
    parts.append(members(s, "spouse", ~head_male[s], sp_age))
    mother_age = head_age.copy()
    mother_age[s] = np.where(head_male[s], sp_age, head_age[s])
    n_children = rng.choice([0, 1, 2, 3], size=n, p=[0.3, 0.47, 0.18, 0.05])
    for k in range(3):
        c = hidx[n_children > k]
        age = mother_age[c] - rng.integers(21, 38, len(c))
        ok = age >= 0
        parts.append(members(c[ok], "child", rng.random(ok.sum()) < 0.52, age[ok], k + 1))
    p = hidx[(rng.random(n) < cfg.parent_rate) & (head_age <= 66)]
    parts.append(members(p, "parent", rng.random(len(p)) < 0.4,
                         np.minimum(head_age[p] + rng.integers(22, 34, len(p)), 99)))
    people = pd.concat(parts, ignore_index=True)
    # twins: the first child gets a twin sibling
    first_children = people[(people.role == "child") & (people.order == 1)]
    twins = first_children[rng.random(len(first_children)) < cfg.twins_rate].copy()
    twins["order"] = 1
    twins["twin_of"] = twins.index
    twins["male"] = rng.random(len(twins)) < 0.5
    people["twin_of"] = -1
    people = pd.concat([people, twins], ignore_index=True)
    role_rank = people.role.map({"head": 0, "spouse": 1, "child": 2, "parent": 3})
    people = people.assign(_r=role_rank, _tw=people.twin_of >= 0)
    order = np.lexsort((people._tw.to_numpy(), people.order.to_numpy(), people._r.to_numpy(),
                        people.household.to_numpy()))
    old_to_new = np.empty(len(people), dtype=np.int64)
    old_to_new[order] = np.arange(len(people))
    people = people.iloc[order].drop(columns=["_r", "_tw"]).reset_index(drop=True)
    tw = people.twin_of.to_numpy()
    people["twin_of"] = np.where(tw >= 0, old_to_new[np.maximum(tw, 0)], -1)
    return hh, people


def build_population(rng: np.random.Generator, district: District, n_households: int,
                     cfg: PopulationConfig, period: Period) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Flats, households and persons (true values only)."""
    flats = build_flats(rng, district, int(n_households * 1.08) + 20, cfg)
    hh, people = _household_skeleton(rng, n_households, cfg)
    n, n_h = len(people), len(hh)
    h = people.household.to_numpy()
    role = people.role.to_numpy()
    age = people.age.to_numpy()
    gender = np.where(people.male.to_numpy(), "1", "2").astype(object)
    birth = _ages_to_birth(rng, age, d64(period.end))
    twin_of = people.twin_of.to_numpy()
    is_twin = twin_of >= 0
    birth[is_twin] = birth[twin_of[is_twin]]
    head_idx = np.flatnonzero(role == "head")
    spouse_of_h = np.full(n_h, -1)
    spouse_of_h[h[role == "spouse"]] = np.flatnonzero(role == "spouse")

    floating = hh.floating.to_numpy()
    hmt = floating & (rng.random(n_h) < cfg.hmt_share)
    if floating.sum() >= 10 and not hmt.any():
        hmt[np.flatnonzero(floating)[0]] = True  # small districts still show the case
    eth_codes, eth_weights = [e[0] for e in ref.ETHNICITIES], [e[3] for e in ref.ETHNICITIES]
    h_eth = choice_weighted(rng, eth_codes, eth_weights, n_h)
    h_eth[hmt] = "01"
    eth = h_eth[h]
    other_eth = (role == "spouse") & (rng.random(n) < 0.15)
    eth[other_eth] = choice_weighted(rng, eth_codes, eth_weights, int(other_eth.sum()))

    surname = _surnames(rng, h, role, gender, head_idx, spouse_of_h, hh.head_male.to_numpy(), h_eth)
    name, dotted = _names(rng, surname, h, role, gender, eth, twin_of)
    _namesakes(rng, name, birth, gender, age >= 18, dotted, cfg)

    outside = _outside_codes(district)
    h_region = np.asarray(outside, dtype=object)[rng.integers(0, len(outside), n_h)]
    region = _birth_regions(rng, district, h, floating, h_region, dotted, twin_of)
    male = gender == "1"
    citizen_id = idlib.compose_ids(region.astype(np.int64), birth,
                                   idlib.unique_sequences(rng, region.astype(np.int64), birth, male))
    docs = _hmt_documents(rng, citizen_id, name, birth, male, np.flatnonzero(hmt[h]), h)

    h_landline = np.where((rng.random(n_h) < 0.25) & ~floating,
                          [f"{district.phone_area}-{x}" for x in rng.integers(2_000_000, 8_999_999, n_h)], "")
    phone = _phones(rng, h, age, head_idx, h_landline)
    marital, spouse, mother = _family_links(rng, h, role, age, head_idx, spouse_of_h, hh.head_male.to_numpy())

    households = pd.DataFrame({
        "household_key": [f"H{i:07d}" for i in range(n_h)],
        "flat": rng.permutation(len(flats))[:n_h], "floating": floating, "hmt": hmt, "head": head_idx,
        "landline": h_landline, "ethnicity": h_eth,
    })
    _add_hukou_outside(rng, households, h_region)
    persons = pd.DataFrame({
        "person_key": [f"P{i:08d}" for i in range(n)],
        "household": h, "role": role, "gender": gender, "birth": birth, "age": age,
        "name": name, "ethnicity": eth, "citizen_id": citizen_id, **docs, "phone": phone, "marital": marital,
        "spouse": spouse, "mother": mother, "twin_of": twin_of,
        "floating": floating[h], "death": np.full(n, np.datetime64("NaT"), dtype="datetime64[D]"),
    })
    return flats, households, persons


def _outside_codes(district: District) -> list[str]:
    """Home counties of floating households: anywhere but the district's own city."""
    return [r[0] for r in ref.REGIONS if not r[0].startswith(district.code[:4])]


def _surnames(rng, h, role, gender, head_idx, spouse_of_h, head_male, h_eth) -> np.ndarray:
    """Children carry the male partner's surname; a head's father carries the head's."""
    surnames, weights = zip(*ref.SURNAMES)
    h_surname = choice_weighted(rng, surnames, weights, len(head_idx))
    korean = h_eth == "10"
    h_surname[korean] = np.asarray(ref.KOREAN_SURNAMES, dtype=object)[rng.integers(0, 10, korean.sum())]
    own = choice_weighted(rng, surnames, weights, len(h))
    family = h_surname.copy()
    female_head_with_spouse = (~head_male) & (spouse_of_h >= 0)
    family[female_head_with_spouse] = own[spouse_of_h[female_head_with_spouse]]
    surname = own.copy()
    surname[head_idx] = np.where(female_head_with_spouse, own[head_idx], h_surname)
    children = role == "child"
    surname[children] = family[h[children]]
    fathers = (role == "parent") & (gender == "1")
    surname[fathers] = surname[head_idx[h[fathers]]]
    return surname


def _names(rng, surname, h, role, gender, eth, twin_of) -> tuple[np.ndarray, np.ndarray]:
    """Full names; twins one character apart; Uyghur/Kazakh names with a middle dot."""
    n = len(h)
    given = _given_names(rng, gender)
    for r in np.flatnonzero(twin_of >= 0):
        sib = given[twin_of[r]]
        pool = ref.GIVEN_MALE if gender[r] == "1" else ref.GIVEN_FEMALE
        alt = pool[int(rng.integers(0, len(pool)))]
        while alt == sib[-1]:
            alt = pool[int(rng.integers(0, len(pool)))]
        given[r] = sib[:-1] + alt
    name = (surname + given).astype(object)
    dotted = np.isin(eth, list(ref.DOTTED_ETHNICITIES))
    if dotted.any():
        family_names = np.asarray(ref.DOTTED_FAMILY, dtype=object)
        h_family = family_names[rng.integers(0, len(family_names), h.max() + 1)]
        gm = np.asarray(ref.DOTTED_GIVEN_MALE, dtype=object)
        gf = np.asarray(ref.DOTTED_GIVEN_FEMALE, dtype=object)
        first = np.where(gender == "1", gm[rng.integers(0, len(gm), n)], gf[rng.integers(0, len(gf), n)])
        last = np.where(role == "spouse", family_names[rng.integers(0, len(family_names), n)], h_family[h])
        name[dotted] = (first + "·" + last)[dotted]
    return name, dotted


def _namesakes(rng, name, birth, gender, adult, dotted, cfg: PopulationConfig) -> None:
    """Some adults carry a very common name (张伟, 王芳); now and then two share the birth date."""
    cand = np.flatnonzero(adult & ~dotted & (rng.random(len(name)) < cfg.namesake_rate))
    common = {g: [c for c, gg in ref.COMMON_NAMES if gg == g] for g in ("1", "2")}
    for r in cand:
        pool = common[gender[r]]
        name[r] = pool[int(rng.integers(0, len(pool)))]
    first_of: dict[str, int] = {}
    for r in cand:
        if name[r] in first_of and rng.random() < 0.25:
            birth[r] = birth[first_of.pop(name[r])]
        else:
            first_of[name[r]] = r


def _birth_regions(rng, district: District, h, floating, h_region, dotted, twin_of) -> np.ndarray:
    """Region code of each ID: local counties for residents, the home county for floating people."""
    n = len(h)
    codes, weights = zip(*(district.birth_regions or ((district.code, 1.0),)))
    region = choice_weighted(rng, codes, weights, n)
    fl = floating[h] & (rng.random(n) < 0.85)
    region[fl] = h_region[h][fl]
    xj = dotted & (rng.random(n) < 0.8)
    region[xj] = np.asarray(ref.XINJIANG_REGIONS, dtype=object)[rng.integers(0, 2, xj.sum())]
    twins = twin_of >= 0
    region[twins] = region[twin_of[twins]]
    return region


def _hmt_documents(rng, citizen_id, name, birth, male, rows, h) -> dict[str, np.ndarray]:
    """Residents of Hong Kong, Macao, Taiwan: residence permits instead of IDs, Traditional names."""
    n = len(citizen_id)
    doc_type = np.full(n, "居民身份证", dtype=object)
    nationality = np.full(n, "中国", dtype=object)
    doc_number = citizen_id.copy()
    if len(rows):
        import opencc

        origin = rng.integers(0, len(ref.HMT_ORIGINS), h.max() + 1)[h[rows]]
        codes = np.array([ref.HMT_ORIGINS[o][0] for o in origin]).astype(np.int64)
        seq = idlib.unique_sequences(rng, codes, birth[rows], male[rows])
        doc_number[rows] = idlib.compose_ids(codes, birth[rows], seq)
        doc_type[rows] = [ref.HMT_ORIGINS[o][2] for o in origin]
        nationality[rows] = [ref.HMT_ORIGINS[o][1] for o in origin]
        citizen_id[rows] = ""
        name[rows] = opencc.OpenCC("s2t").convert("\n".join(name[rows])).split("\n")
    return {"doc_type": doc_type, "doc_number": doc_number, "nationality": nationality}


def _phones(rng, h, age, head_idx, h_landline) -> np.ndarray:
    """Adults have a mobile, children give the head's, some elderly the household landline."""
    mobiles = _mobiles(rng, len(h))
    phone = mobiles.copy()
    minors = age < 16
    phone[minors] = mobiles[head_idx[h[minors]]]
    elderly = (age >= 60) & (h_landline[h] != "") & (rng.random(len(h)) < 0.6)
    phone[elderly] = h_landline[h][elderly]
    return phone


def _family_links(rng, h, role, age, head_idx, spouse_of_h, head_male):
    """Marital status (GB/T 2261.2), spouse and mother of each person (-1: none)."""
    n = len(h)
    marital = np.where(age < 28, "10", np.where(age > 70, "30", "40")).astype(object)
    marital[(marital == "40") & (rng.random(n) < 0.5)] = "10"
    couple = (role == "spouse") | ((role == "head") & (spouse_of_h[h] >= 0))
    marital[couple] = np.where(rng.random(couple.sum()) < 0.85, "21", "22")
    marital[age < 18] = "10"
    spouse = np.full(n, -1)
    sp = np.flatnonzero(role == "spouse")
    spouse[sp] = head_idx[h[sp]]
    spouse[head_idx[h[sp]]] = sp
    mother = np.full(n, -1)
    children = np.flatnonzero(role == "child")
    mother[children] = np.where(head_male, spouse_of_h, head_idx)[h[children]]
    return marital, spouse, mother


def _mobiles(rng, n: int) -> np.ndarray:
    if n == 0:
        return np.empty(0, dtype=object)
    pre = np.asarray(ref.PHONE_PREFIXES, dtype=object)[rng.integers(0, len(ref.PHONE_PREFIXES), n)]
    rest = rng.integers(0, 10**8, n).astype("U8")
    return (pre + np.char.zfill(rest, 8).astype(object)).astype(object)


def _add_hukou_outside(rng, households: pd.DataFrame, h_region: np.ndarray) -> None:
    """Hukou address (outside the district) of each floating household."""
    n = len(households)
    regions = {r[0]: r for r in ref.REGIONS}
    rural = rng.random(n) < 0.6
    tw = np.asarray(ref.TOWNSHIP_WORDS, dtype=object)[rng.integers(0, len(ref.TOWNSHIP_WORDS), n)]
    vw = np.asarray(ref.VILLAGE_WORDS, dtype=object)[rng.integers(0, len(ref.VILLAGE_WORDS), n)]
    rw = np.asarray(ref.OUTSIDE_ROADS, dtype=object)[rng.integers(0, len(ref.OUTSIDE_ROADS), n)]
    g, no, b, u, room = (rng.integers(1, 12, n), rng.integers(1, 200, n), rng.integers(1, 20, n),
                         rng.integers(1, 6, n), rng.integers(1, 7, n) * 100 + rng.integers(1, 3, n))
    rest = [f"{t}{v}{gg}组{nn}号" if r else f"{road}{nn}号{bb}栋{uu}单元{rr}室"
            for r, t, v, road, gg, nn, bb, uu, rr in zip(rural, tw, vw, rw, g, no, b, u, room)]
    households["hukou_province"] = [regions[c][1] for c in h_region]
    households["hukou_city"] = [regions[c][2] for c in h_region]
    households["hukou_county"] = [regions[c][3] for c in h_region]
    households["hukou_rest"] = rest
    households["hukou_key"] = np.where(households.floating, [f"X{i:07d}" for i in range(n)], "")


# ----------------------------------------------------------------------------------------
# Low-income programme, deaths, marriages
# ----------------------------------------------------------------------------------------


def select_low_income(rng, households: pd.DataFrame, persons: pd.DataFrame, cfg: PopulationConfig) -> None:
    """Mark ~share of local households as 低保 recipients (older, smaller households likelier)."""
    size = persons.groupby("household").size().reindex(households.index, fill_value=0).to_numpy()
    head_age = persons.age.to_numpy()[households["head"].to_numpy()]
    w = np.where(households.floating, 0.0, 1.0) * (1 + (head_age > 60)) / np.sqrt(size)
    n_local = int((~households.floating).sum())
    k = min(n_local, max(3, int(round(n_local * cfg.low_income_share))))
    chosen = rng.choice(len(households), size=k, replace=False, p=w / w.sum())
    flag = np.zeros(len(households), dtype=bool)
    flag[chosen] = True
    households["low_income"] = flag


def assign_deaths(rng, persons: pd.DataFrame, households: pd.DataFrame, period: Period,
                  cfg: PopulationConfig) -> None:
    """Deaths during the period (age-weighted), always including some 低保 and floating people."""
    n = len(persons)
    hs, he = d64(period.history_start), d64(period.end)
    span = int((he - hs) / DAY) - 4
    years = max(span, 1) / 365.25
    age = persons.age.to_numpy()
    hazard = np.exp(0.095 * (age - 80.0))
    p = hazard / hazard.sum()
    expected = n * cfg.death_rate_per_year * years
    k = int(min(n // 20, max(3, rng.poisson(expected))))
    dead = set(rng.choice(n, size=k, replace=False, p=p).tolist())
    li_people = np.flatnonzero(households.low_income.to_numpy()[persons.household.to_numpy()]
                               & (persons.household.to_numpy() >= 0))
    fl_people = np.flatnonzero(persons.floating.to_numpy() & (age >= 18))
    for pool, want in ((li_people, 3), (fl_people, 3)):
        have = len(dead.intersection(pool.tolist()))
        extra = [x for x in rng.permutation(pool)[: want * 3].tolist() if x not in dead][: max(0, want - have)]
        dead.update(extra)
    dead_idx = np.array(sorted(dead), dtype=np.int64)
    offs = rng.integers(0, max(span, 1), len(dead_idx))
    # 低保 deaths early in the period, so that later monthly rosters exist
    li_mask = np.isin(dead_idx, li_people)
    early = max(1, min(span, 45))
    offs[li_mask] = rng.integers(0, early, li_mask.sum())
    death = persons.death.to_numpy().copy()
    death[dead_idx] = hs + offs * DAY
    persons["death"] = death
    persons["benefit_after_death"] = False
    persons.loc[dead_idx[li_mask], "benefit_after_death"] = rng.random(li_mask.sum()) < cfg.benefit_after_death_share
    if li_mask.any() and not persons.benefit_after_death.any():
        persons.loc[dead_idx[li_mask][0], "benefit_after_death"] = True
    spouse = persons.spouse.to_numpy()
    widowed = spouse[dead_idx]
    widowed = widowed[widowed >= 0]
    persons.loc[widowed, "marital"] = "30"


def _make_foreigners(rng, k: int, male: np.ndarray, birth: np.ndarray) -> pd.DataFrame:
    kind = rng.choice(3, size=k, p=[0.65, 0.25, 0.10])  # passport, HMT permit, permanent card
    kind[:1] = 0  # small districts still show a passport
    rows = []
    country_codes = {"韩国": 410, "俄罗斯": 643, "朝鲜": 408, "美国": 840, "日本": 392}
    for i in range(k):
        nat, dtype, names, prefixes = ref.FOREIGN_NATIONALS[int(rng.integers(0, len(ref.FOREIGN_NATIONALS)))]
        nm = names[int(rng.integers(0, len(names)))]
        if kind[i] == 0:
            number = idlib.passport_numbers(rng, np.array([prefixes[int(rng.integers(0, len(prefixes)))]]))[0]
        elif kind[i] == 1:
            code, nat, dtype = ref.HMT_ORIGINS[int(rng.integers(0, len(ref.HMT_ORIGINS)))]
            nm = ref.HMT_NAMES[int(rng.integers(0, len(ref.HMT_NAMES)))]
            seq = int(rng.integers(0, 500)) * 2 + int(male[i])
            number = idlib.compose_ids(np.array([int(code)]), birth[i:i + 1], np.array([seq]))[0]
        else:
            dtype = ref.PERMANENT_RESIDENT_TYPE
            number = idlib.permanent_residence_numbers(rng, np.array([country_codes[nat]]), birth[i:i + 1])[0]
        rows.append((nm, dtype, number, nat))
    names, dtypes, numbers, nats = zip(*rows) if rows else ((), (), (), ())
    return pd.DataFrame({"name": list(names), "doc_type": list(dtypes), "doc_number": list(numbers),
                         "nationality": list(nats)})


def assign_marriages(rng, persons: pd.DataFrame, district: District, period: Period,
                     cfg: PopulationConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Marriage registrations, divorces and certificate re-issues of the period.

    Returns (persons with foreign spouses appended, marriage events)."""
    n = len(persons)
    hs, he = d64(period.history_start), d64(period.end)
    span = max(1, int((he - hs) / DAY))
    years = span / 365.25
    age = persons.age.to_numpy()
    alive = np.isnat(persons.death.to_numpy())
    unmarried = np.isin(persons.marital.to_numpy(), ["10", "30", "40"]) & alive & (persons.household >= 0).to_numpy()
    unmarried &= persons.citizen_id.to_numpy() != ""
    g = persons.gender.to_numpy()
    men = rng.permutation(np.flatnonzero(unmarried & (g == "1") & (age >= 22) & (age <= 50)))
    women = rng.permutation(np.flatnonzero(unmarried & (g == "2") & (age >= 20) & (age <= 48)))
    k = int(min(len(men), len(women), max(3, rng.poisson(n * cfg.marriage_rate_per_year * years))))
    men, women = men[:k], women[:k]
    same_h = persons.household.to_numpy()[men] == persons.household.to_numpy()[women]
    women = np.where(same_h, np.roll(women, 1), women)
    foreign = rng.random(k) < cfg.foreign_spouse_share
    if k >= 3 and not foreign.any():
        foreign[0] = True
    foreign_is_woman = rng.random(k) < 0.6
    # foreign partners are new persons (not residents)
    nf = int(foreign.sum())
    f_male = ~foreign_is_woman[foreign]
    f_birth = _ages_to_birth(rng, rng.integers(22, 45, nf), d64(period.end))
    fdf = _make_foreigners(rng, nf, f_male, f_birth)
    fdf = fdf.assign(gender=np.where(f_male, "1", "2"), birth=f_birth, household=-1, role="outsider",
                     age=((d64(period.end) - f_birth) / DAY / 365.25).astype(int), ethnicity="",
                     citizen_id="", phone=_mobiles(rng, nf), marital="10", spouse=-1, mother=-1, twin_of=-1,
                     floating=False, death=np.full(nf, np.datetime64("NaT"), dtype="datetime64[D]"),
                     benefit_after_death=False)
    fdf.index = np.arange(n, n + nf)
    fdf["person_key"] = [f"P{i:08d}" for i in fdf.index]
    persons = pd.concat([persons, fdf[persons.columns]], axis=0)
    fpos = np.flatnonzero(foreign)
    men[fpos[f_male]] = fdf.index.to_numpy()[f_male]
    women[fpos[~f_male]] = fdf.index.to_numpy()[~f_male]

    events = [pd.DataFrame({"kind": "结婚登记", "man": men, "woman": women,
                            "date": hs + rng.integers(0, span, k) * DAY})]
    marital = persons.marital.to_numpy().copy()
    spouse = persons.spouse.to_numpy().copy()
    marital[men] = np.where(np.isin(marital[men], ["30", "40"]), "22", "21")
    marital[women] = np.where(np.isin(marital[women], ["30", "40"]), "22", "21")
    spouse[men], spouse[women] = women, men

    # existing couples: divorces and re-issued certificates
    is_couple_man = (spouse[:n] >= 0) & (persons.gender.to_numpy()[:n] == "1") & alive & (persons.role.to_numpy()[:n] != "outsider")
    couple_men = rng.permutation(np.flatnonzero(is_couple_man & ~np.isin(np.arange(n), men)))
    couple_men = couple_men[alive[spouse[couple_men]]]
    n_div = int(min(len(couple_men) // 2, max(1, rng.poisson(n * cfg.divorce_rate_per_year * years))))
    n_re = int(min(len(couple_men) - n_div, max(1, n_div // 2)))
    div_m, re_m = couple_men[:n_div], couple_men[n_div:n_div + n_re]
    events.append(pd.DataFrame({"kind": "离婚登记", "man": div_m, "woman": spouse[div_m],
                                "date": hs + rng.integers(0, span, n_div) * DAY}))
    events.append(pd.DataFrame({"kind": "补领结婚证", "man": re_m, "woman": spouse[re_m],
                                "date": hs + rng.integers(0, span, n_re) * DAY}))
    div_w = spouse[div_m]
    marital[div_m], marital[div_w] = "40", "40"
    spouse[div_m], spouse[div_w] = -1, -1
    persons["marital"], persons["spouse"] = marital, spouse

    ev = pd.concat(events, ignore_index=True).sort_values(["date", "kind"], kind="stable").reset_index(drop=True)
    prefix = {"结婚登记": "J", "离婚登记": "L", "补领结婚证": "BJ"}
    year = pd.to_datetime(ev.date).dt.year
    ev["cert_no"] = [f"{prefix[kd]}{district.code}-{y}-{i + 1:06d}" for i, (kd, y) in enumerate(zip(ev.kind, year))]
    return persons, ev
