"""Retry a call on transient errors with exponential backoff (the one retry helper of the
connectors: source connections, transfers)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["retry"]

T = TypeVar("T")


def retry(fn: Callable[[], T], *, attempts: int, delay_s: float, transient: Callable[[BaseException], bool],
          on_retry: Callable[[int, BaseException], None] | None = None,
          sleep: Callable[[float], None] = time.sleep) -> T:
    """`fn()`; when it raises an error `transient` accepts, wait `delay_s`, 2·`delay_s`, …
    and call again, at most `attempts` calls in all. Other errors, and the last transient
    one, propagate, with an `attempts` attribute telling how many calls were made."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except BaseException as exc:  # noqa: BLE001 - filtered by `transient`
            if attempt == attempts or not transient(exc):
                exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            sleep(delay_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")
