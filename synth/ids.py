"""Citizen ID numbers (GB 11643) and other identity documents, vectorised with numpy."""

from __future__ import annotations

import numpy as np

WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
CHECK_CHARS = np.array(list("10X98765432"))
_POW10 = 10 ** np.arange(16, -1, -1, dtype=np.int64)


def ymd_parts(dates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day (int arrays) of a datetime64[D] array."""
    d = dates.astype("datetime64[D]")
    months = d.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (d - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def ymd_int(dates: np.ndarray) -> np.ndarray:
    y, m, d = ymd_parts(dates)
    return y * 10000 + m * 100 + d


def check_chars(body17: np.ndarray) -> np.ndarray:
    """MOD 11-2 check characters of 17-digit bodies given as int64."""
    digits = (body17[:, None] // _POW10) % 10
    return CHECK_CHARS[(digits @ WEIGHTS) % 11]


def check_char(body17: str) -> str:
    return str(CHECK_CHARS[sum(int(c) * int(w) for c, w in zip(body17, WEIGHTS)) % 11])


def compose_ids(region: np.ndarray, birth: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """18-character IDs from region codes (int or str), birth dates and 3-digit sequences."""
    region = np.asarray(region).astype(np.int64)
    body = region * 10**11 + ymd_int(birth) * 1000 + seq.astype(np.int64)
    return np.char.add(body.astype("U17"), check_chars(body)).astype(object)


def unique_sequences(rng: np.random.Generator, region: np.ndarray, birth: np.ndarray,
                     male: np.ndarray, fixed: np.ndarray | None = None) -> np.ndarray:
    """3-digit sequence numbers, odd for men and even for women, unique per region+birth date.

    ``fixed``: rows whose sequence is already taken elsewhere (never re-drawn)."""
    n = len(region)
    seq = rng.integers(0, 500, n) * 2 + male.astype(np.int64)
    key_base = np.asarray(region).astype(np.int64) * 10**8 + ymd_int(birth)
    for _ in range(50):
        key = key_base * 1000 + seq
        _, first = np.unique(key, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            return seq
        seq[dup] = rng.integers(0, 500, dup.sum()) * 2 + male[dup].astype(np.int64)
    raise RuntimeError("could not draw unique ID sequence numbers")


def to_old15(ids18: np.ndarray) -> np.ndarray:
    """The pre-1999 15-digit form: no century, no check digit."""
    return np.array([s[:6] + s[8:17] for s in ids18], dtype=object)


def passport_numbers(rng: np.random.Generator, prefixes: np.ndarray) -> np.ndarray:
    out = []
    for p, r in zip(prefixes, rng.integers(0, 10**9, len(prefixes))):
        out.append(p + str(r).zfill(9)[: 9 - len(p)])
    return np.array(out, dtype=object)


def permanent_residence_numbers(rng: np.random.Generator, country_codes: np.ndarray,
                                birth: np.ndarray, province: str = "22") -> np.ndarray:
    """2023-format 外国人永久居留身份证: 9 + province + country + birth + seq + check."""
    seq = rng.integers(0, 1000, len(birth))
    body = (np.int64(9) * 10**16 + np.int64(int(province)) * 10**14
            + country_codes.astype(np.int64) * 10**11 + ymd_int(birth) * 1000 + seq)
    return np.char.add(body.astype("U17"), check_chars(body)).astype(object)
