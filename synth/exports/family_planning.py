"""计生 育龄妇女信息系统: a SQLite database with tables T_YLFN and T_ZN."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import NoiseConfig, PopulationConfig
from ..population import DAY, World, d64
from .common import TruthLog, hukou_addresses, household_flats, residence_addresses, write_identity

SYSTEM = "family_planning"
SECOND = np.timedelta64(1, "s")

DDL = """
CREATE TABLE T_YLFN (
    YLFN_ID INTEGER PRIMARY KEY,
    XM VARCHAR(50), SFZH VARCHAR(20), CSRQ VARCHAR(8), MZ CHAR(2), HYZK CHAR(2), CHRQ DATE,
    HJDZ VARCHAR(200), XJZDZ VARCHAR(200), LXDH VARCHAR(20),
    POXM VARCHAR(50), POSFZH VARCHAR(20), POCSRQ VARCHAR(8),
    XYZNS INTEGER, JYCS CHAR(2), GXSJ TIMESTAMP, SCBZ INTEGER DEFAULT 0
);
CREATE TABLE T_ZN (
    ZN_ID INTEGER PRIMARY KEY,
    YLFN_ID INTEGER REFERENCES T_YLFN (YLFN_ID),
    XM VARCHAR(50), XB CHAR(1), CSRQ DATE, SFZH VARCHAR(20), CSHC INTEGER,
    GXSJ TIMESTAMP, SCBZ INTEGER DEFAULT 0
);
CREATE INDEX IX_YLFN_GXSJ ON T_YLFN (GXSJ);
CREATE INDEX IX_ZN_GXSJ ON T_ZN (GXSJ);
"""
JYCS_CODES = ("00", "01", "02", "03", "04", "05", "06", "09")
JYCS_WEIGHTS = (0.25, 0.02, 0.12, 0.35, 0.03, 0.05, 0.15, 0.03)


def _timestamps(rng, world: World, n: int, recent_share: float = 0.3) -> np.ndarray:
    """GXSJ values: most rows last changed before the period, some during it."""
    hs, end = d64(world.period.history_start), d64(world.period.end)
    span = int((end - hs) / DAY) + 1
    old = hs - rng.integers(1, 3 * 365, n) * DAY
    recent = hs + rng.integers(0, span, n) * DAY
    day = np.where(rng.random(n) < recent_share, recent, old)
    return day.astype("datetime64[s]") + rng.integers(8 * 3600, 18 * 3600, n) * SECOND


def _fmt(values: np.ndarray, pattern: str) -> np.ndarray:
    s = pd.Series(pd.to_datetime(values)).dt.strftime(pattern)
    return s.where(s.notna(), None).to_numpy(dtype=object)


def _nullable(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=object)
    return np.where(pd.isna(a) | (a == ""), None, a).astype(object)


def write_family_planning(rng, world: World, inbox: Path, noise: NoiseConfig, truth: TruthLog,
                          cfg: PopulationConfig) -> list[Path]:
    folder = inbox / SYSTEM
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "family_planning.sqlite"
    path.unlink(missing_ok=True)
    p = world.persons
    age, g = p.age.to_numpy(), p.gender.to_numpy()
    women = np.flatnonzero((g == "2") & (age >= 15) & (age <= 49) & (p.household.to_numpy() >= 0)
                           & (p.citizen_id.to_numpy() != ""))
    # a few women were entered twice; the copy was later soft-deleted
    dup = women[rng.random(len(women)) < cfg.fp_soft_delete_rate / 2]
    rows = np.concatenate([women, dup])
    order = rng.permutation(len(rows))
    rows, is_dup = rows[order], (np.arange(len(rows)) >= len(women))[order]
    ylfn_id = np.arange(1001, 1001 + len(rows))
    ylfn = _women_table(rng, world, rows, is_dup, ylfn_id, noise, truth)
    zn = _children_table(rng, world, rows[~is_dup], ylfn_id[~is_dup], noise, truth, cfg)
    con = sqlite3.connect(path)
    try:
        con.executescript(DDL)
        con.executemany(f"INSERT INTO T_YLFN ({', '.join(ylfn.columns)}) VALUES ({', '.join('?' * len(ylfn.columns))})",
                        ylfn.itertuples(index=False, name=None))
        con.executemany(f"INSERT INTO T_ZN ({', '.join(zn.columns)}) VALUES ({', '.join('?' * len(zn.columns))})",
                        zn.itertuples(index=False, name=None))
        con.commit()
    finally:
        con.close()
    return [path]


def _women_table(rng, world: World, women: np.ndarray, is_dup: np.ndarray, ylfn_id: np.ndarray,
                 noise: NoiseConfig, truth: TruthLog) -> pd.DataFrame:
    p = world.persons
    n = len(women)
    w = write_identity(rng, world, women, noise, "sql")
    marital = p.marital.to_numpy()[women]
    hyzk = np.where(np.isin(marital, ["21", "22"]) & (rng.random(n) < 0.4), "20", marital)
    spouse = p.spouse.to_numpy()[women]
    has_spouse = (spouse >= 0) & (rng.random(n) >= 0.05)  # 5%: spouse never entered
    sp = np.flatnonzero(has_spouse)
    births = p.birth.to_numpy()[women]
    age_years = (d64(world.period.end) - births) / DAY / 365.25
    marriage_age = np.minimum(rng.uniform(20, 29, n), np.maximum(age_years - 0.3, 0))
    chrq = np.where(np.isin(marital, ["20", "21", "22", "30", "40"]),
                    births + (marriage_age * 365.25).astype(np.int64) * DAY, np.datetime64("NaT"))
    gxsj = _timestamps(rng, world, n)
    # women married or divorced during the period: the record changed after the event
    ev = world.marriages
    for kind, col in (("结婚登记", "woman"), ("离婚登记", "woman")):
        e = ev[ev.kind == kind]
        pos = pd.Series(np.arange(n), index=women).groupby(level=0).first()
        hit = e[e[col].isin(pos.index)]
        if len(hit):
            k = pos.loc[hit[col].to_numpy()].to_numpy()
            gxsj[k] = (hit.date.to_numpy().astype("datetime64[D]") + rng.integers(1, 8, len(k)) * DAY).astype("datetime64[s]") \
                + rng.integers(8 * 3600, 18 * 3600, len(k)) * SECOND
            if kind == "结婚登记":
                chrq[k] = np.where(hyzk[k] == "22", chrq[k], hit.date.to_numpy())
    gxsj = np.minimum(gxsj, (d64(world.period.end) + 1 * DAY).astype("datetime64[s]") - SECOND)
    death = p.death.to_numpy()[women]
    scbz = np.where(is_dup, 1, 0)
    dead = ~np.isnat(death) & (rng.random(n) < 0.7)
    scbz[dead] = 1
    gxsj[dead] = np.maximum(gxsj[dead], death[dead].astype("datetime64[s]") + 3 * 86400 * SECOND)
    gxsj[is_dup] = np.maximum(gxsj[is_dup], (d64(world.period.history_start) + 1 * DAY).astype("datetime64[s]"))

    sw = write_identity(rng, world, spouse[sp], noise, "sql")
    poxm = np.full(n, None, dtype=object)
    posfzh = np.full(n, None, dtype=object)
    pocsrq = np.full(n, None, dtype=object)
    poxm[sp] = _nullable(sw.names)
    posfzh[sp] = _nullable(sw.ids.text)
    pocsrq[sp] = _fmt(p.birth.to_numpy()[spouse[sp]], "%Y%m%d")
    children = pd.Series(p.mother.to_numpy()).value_counts()
    flats = household_flats(world, women)
    xjzdz, xkeys = residence_addresses(rng, world, flats, noise)
    hjdz, hkeys = hukou_addresses(rng, world, women, noise)
    xjzdz = np.where(rng.random(n) < 0.03, None, xjzdz)
    table = pd.DataFrame({
        "YLFN_ID": ylfn_id, "XM": _nullable(w.names), "SFZH": _nullable(w.ids.text),
        "CSRQ": _fmt(births, "%Y%m%d"), "MZ": p.ethnicity.to_numpy()[women], "HYZK": hyzk,
        "CHRQ": _fmt(chrq, "%Y-%m-%d"), "HJDZ": hjdz, "XJZDZ": xjzdz, "LXDH": p.phone.to_numpy()[women],
        "POXM": poxm, "POSFZH": posfzh, "POCSRQ": pocsrq,
        "XYZNS": children.reindex(women, fill_value=0).to_numpy(),
        "JYCS": np.asarray(JYCS_CODES, dtype=object)[rng.choice(len(JYCS_CODES), n, p=JYCS_WEIGHTS)],
        "GXSJ": _fmt(gxsj, "%Y-%m-%d %H:%M:%S"), "SCBZ": scbz,
    })
    loc = ylfn_id.astype(str)
    truth.add_mentions(SYSTEM, "T_YLFN", loc, "woman", women, w.ids, w.names, w.name_quirks)
    truth.add_mentions(SYSTEM, "T_YLFN", loc[sp], "spouse", spouse[sp], sw.ids, sw.names, sw.name_quirks)
    truth.add_addresses(SYSTEM, "T_YLFN", loc, "XJZDZ", xkeys, xjzdz)
    truth.add_addresses(SYSTEM, "T_YLFN", loc, "HJDZ", hkeys, hjdz)
    return table


def _children_table(rng, world: World, women: np.ndarray, ylfn_id: np.ndarray, noise: NoiseConfig,
                    truth: TruthLog, cfg: PopulationConfig) -> pd.DataFrame:
    p = world.persons
    mother_id = pd.Series(ylfn_id, index=women)
    mother = p.mother.to_numpy()
    kids = np.flatnonzero(np.isin(mother, women))
    kids = kids[np.lexsort((p.birth.to_numpy()[kids], mother[kids]))]
    dup = kids[rng.random(len(kids)) < cfg.fp_soft_delete_rate / 2]
    rows = np.concatenate([kids, dup])
    is_dup = np.arange(len(rows)) >= len(kids)
    n = len(rows)
    order_in_family = pd.Series(mother[kids]).groupby(mother[kids]).cumcount().to_numpy() + 1
    position = pd.Series(np.arange(len(kids)), index=kids)
    cshc = np.concatenate([order_in_family, order_in_family[position.loc[dup].to_numpy()]])
    w = write_identity(rng, world, rows, noise, "sql")
    newborn = p.age.to_numpy()[rows] < 1
    no_id = (newborn & (rng.random(n) < 0.8)) | (rng.random(n) < 0.03)
    ids = w.ids.take(np.arange(n))  # a copy
    ids.text[no_id], ids.quirk[no_id] = "", "empty"  # newborns often have no ID yet
    gxsj = _timestamps(rng, world, n, recent_share=0.25)
    registered = (p.birth.to_numpy()[rows] + rng.integers(1, 60, n) * DAY).astype("datetime64[s]")
    end = (d64(world.period.end) + 1 * DAY).astype("datetime64[s]") - SECOND
    gxsj = np.minimum(np.maximum(gxsj, registered), end)
    zn_id = np.arange(50001, 50001 + n)
    table = pd.DataFrame({
        "ZN_ID": zn_id, "YLFN_ID": mother_id.loc[mother[rows]].to_numpy(), "XM": _nullable(w.names),
        "XB": p.gender.to_numpy()[rows], "CSRQ": _fmt(p.birth.to_numpy()[rows], "%Y-%m-%d"),
        "SFZH": _nullable(ids.text), "CSHC": cshc.astype(np.int64), "GXSJ": _fmt(gxsj, "%Y-%m-%d %H:%M:%S"),
        "SCBZ": is_dup.astype(int),
    })
    truth.add_mentions(SYSTEM, "T_ZN", zn_id.astype(str), "child", rows, ids, w.names, w.name_quirks)
    return table
