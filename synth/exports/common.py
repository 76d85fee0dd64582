"""Shared helpers of the department exports: file names, person views, xlsx cells, truth."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import NoiseConfig
from ..noise import WrittenIds, render_flat_addresses, render_ids, render_names, render_outside_addresses
from ..population import World

DATE_SUFFIXES = ("_%Y%m%d", "_%Y-%m-%d", "-%Y%m%d")


def file_name(stem: str, day: date, style: int, ext: str, suffix: str = "") -> str:
    return f"{stem}{day.strftime(DATE_SUFFIXES[style % len(DATE_SUFFIXES)])}{suffix}.{ext}"


def rng_for(seed: int, name: str) -> np.random.Generator:
    """An independent, reproducible random stream per named part of the generator."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def pick(rng: np.random.Generator, options, weights=None):
    if weights is None:
        return options[int(rng.integers(0, len(options)))]
    w = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


# ----------------------------------------------------------------------------------------
# Truth
# ----------------------------------------------------------------------------------------


@dataclass
class TruthLog:
    mentions: list[pd.DataFrame] = field(default_factory=list)
    addresses: list[pd.DataFrame] = field(default_factory=list)

    def add_mentions(self, system: str, obj: str, locators, role, persons, ids: WrittenIds,
                     names_written, name_quirks) -> None:
        self.mentions.append(pd.DataFrame({
            "source_system": system, "source_object": obj, "source_locator": np.asarray(locators, dtype=object),
            "role": role, "person": np.asarray(persons, dtype=np.int64), "id_written": ids.text,
            "id_quirk": ids.quirk, "name_written": np.asarray(names_written, dtype=object),
            "name_quirk": np.asarray(name_quirks, dtype=object),
        }))

    def add_addresses(self, system: str, obj: str, locators, field_name: str, flat_keys, written) -> None:
        written = np.asarray(written, dtype=object)
        keep = np.array([bool(w) for w in written], dtype=bool)
        self.addresses.append(pd.DataFrame({
            "source_system": system, "source_object": obj,
            "source_locator": np.asarray(locators, dtype=object)[keep], "field": field_name,
            "flat_key": np.asarray(flat_keys, dtype=object)[keep], "written": written[keep],
        }))

    def write(self, truth_dir: Path, world: World) -> tuple[int, int]:
        truth_dir.mkdir(parents=True, exist_ok=True)
        p = world.persons
        m = pd.concat(self.mentions, ignore_index=True)
        idx = m.person.to_numpy()
        cid = p.citizen_id.to_numpy()
        m.insert(4, "person_key", p.person_key.to_numpy()[idx])
        m["id_true"] = np.where(cid[idx] != "", cid[idx], p.doc_number.to_numpy()[idx])
        m["name_true"] = p.name.to_numpy()[idx]
        cols = ["source_system", "source_object", "source_locator", "role", "person_key", "id_written",
                "id_true", "id_quirk", "name_written", "name_true", "name_quirk"]
        m[cols].to_csv(truth_dir / "mentions.csv", index=False)
        a = pd.concat(self.addresses, ignore_index=True)
        a.to_csv(truth_dir / "addresses.csv", index=False)
        hh = world.households
        hkey = np.where(p.household.to_numpy() >= 0, hh.household_key.to_numpy()[np.maximum(p.household.to_numpy(), 0)], "")
        fkey = np.where(p.household.to_numpy() >= 0,
                        world.flats.flat_key.to_numpy()[hh.flat.to_numpy()[np.maximum(p.household.to_numpy(), 0)]], "")
        persons = pd.DataFrame({
            "person_key": p.person_key, "citizen_id": p.citizen_id, "name": p.name, "gender": p.gender,
            "birth_date": pd.Series(p.birth.to_numpy()).dt.strftime("%Y-%m-%d").to_numpy(),
            "death_date": pd.Series(p.death.to_numpy()).dt.strftime("%Y-%m-%d").fillna("").to_numpy(),
            "ethnicity": p.ethnicity, "household_key": hkey, "document_type": p.doc_type,
            "document_number": np.where(p.citizen_id == "", p.doc_number, ""), "nationality": p.nationality,
            "flat_key": fkey, "floating": p.floating.astype(int),
        })
        persons.to_csv(truth_dir / "persons.csv", index=False)
        return len(m), len(a)


# ----------------------------------------------------------------------------------------
# What an export sees of a person
# ----------------------------------------------------------------------------------------


@dataclass
class Written:
    """The written identity fields of a list of person mentions."""

    persons: np.ndarray
    ids: WrittenIds
    names: np.ndarray
    name_quirks: np.ndarray


def write_identity(rng, world: World, persons: np.ndarray, noise: NoiseConfig, channel: str,
                   excel_factor: float = 1.0) -> Written:
    p = world.persons
    persons = np.asarray(persons, dtype=np.int64)
    cid = p.citizen_id.to_numpy()[persons]
    foreign = cid == ""
    true_ids = np.where(foreign, p.doc_number.to_numpy()[persons], cid)
    ids = render_ids(rng, true_ids, foreign, p.birth.to_numpy()[persons], noise, channel, excel_factor)
    names, quirks = render_names(rng, p.name.to_numpy()[persons], noise, latin_ok=~foreign)
    return Written(persons, ids, names, quirks)


def flat_keys_of(world: World, flats: np.ndarray) -> np.ndarray:
    return world.flats.flat_key.to_numpy()[np.asarray(flats, dtype=np.int64)]


def residence_addresses(rng, world: World, flats: np.ndarray, noise: NoiseConfig) -> tuple[np.ndarray, np.ndarray]:
    flats = np.asarray(flats, dtype=np.int64)
    written = render_flat_addresses(rng, world.flats.iloc[flats], world.district, noise)
    return written, flat_keys_of(world, flats)


def hukou_addresses(rng, world: World, persons: np.ndarray, noise: NoiseConfig) -> tuple[np.ndarray, np.ndarray]:
    """The registered (hukou) address: the own flat for locals, another province for floating people.

    Persons without a household (foreign spouses) get an empty address."""
    p = world.persons
    hh = world.households
    persons = np.asarray(persons, dtype=np.int64)
    h = p.household.to_numpy()[persons]
    has_h = h >= 0
    hs = np.maximum(h, 0)
    floating = hh.floating.to_numpy()[hs] & has_h
    written = np.full(len(persons), None, dtype=object)
    keys = np.full(len(persons), "", dtype=object)
    loc = np.flatnonzero(has_h & ~floating)
    if len(loc):
        written[loc], keys[loc] = residence_addresses(rng, world, hh.flat.to_numpy()[hs[loc]], noise)
    out = np.flatnonzero(floating)
    if len(out):
        written[out] = render_outside_addresses(rng, hh.iloc[hs[out]], noise)
        keys[out] = hh.hukou_key.to_numpy()[hs[out]]
    return written, keys


def household_flats(world: World, persons: np.ndarray) -> np.ndarray:
    h = world.persons.household.to_numpy()[np.asarray(persons, dtype=np.int64)]
    return world.households.flat.to_numpy()[np.maximum(h, 0)]


# ----------------------------------------------------------------------------------------
# xlsx cells
# ----------------------------------------------------------------------------------------


class Sheet:
    """A thin wrapper over an xlsxwriter worksheet that writes a Python value by its type."""

    def __init__(self, workbook, name: str):
        self.ws = workbook.add_worksheet(name)
        self.name = name
        self.date_fmt = workbook.add_format({"num_format": "yyyy-mm-dd", "valign": "vcenter"})
        self.money_fmt = workbook.add_format({"num_format": "0.00", "valign": "vcenter"})
        self.text_fmt = workbook.add_format({"valign": "vcenter"})
        self.title_fmt = workbook.add_format({"bold": True, "align": "center", "font_size": 14})

    def title(self, row: int, text: str, ncols: int) -> None:
        self.ws.merge_range(row, 0, row, ncols - 1, text, self.title_fmt)

    def _fmt(self, value, money: bool):
        if isinstance(value, (date, datetime)):
            return self.date_fmt
        return self.money_fmt if money and isinstance(value, float) else self.text_fmt

    def cell(self, row: int, col: int, value, money: bool = False) -> None:
        if value is None or value == "":
            return
        if isinstance(value, str):
            self.ws.write_string(row, col, value)
        elif isinstance(value, (date, datetime)):
            self.ws.write_datetime(row, col, value, self.date_fmt)
        else:
            self.ws.write_number(row, col, value, self.money_fmt if money else None)

    def merged(self, first_row: int, last_row: int, col: int, value, money: bool = False) -> None:
        """A household cell merged vertically over its member rows.

        The range is registered without a format (so no blank cells are written below the
        anchor) and the anchor is then written as a normal cell: this keeps rows in order,
        which xlsxwriter's constant_memory mode needs."""
        if last_row > first_row:
            self.ws.merge_range(first_row, col, last_row, col, "", None)
        self.cell(first_row, col, value, money)


def fixed_properties(workbook, day: date) -> None:
    """Reproducible workbook metadata (so the same seed gives the same bytes)."""
    workbook.set_properties({"created": datetime(day.year, day.month, day.day, 8, 0, 0), "author": "export"})
