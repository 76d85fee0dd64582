"""Process-wide settings of a batch run (a sync, an officer's decision)."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: allocations between two collections of the youngest generation, then collections of
#: each generation before the next older one is collected (CPython's default: 700, 10, 10)
BATCH_GC_THRESHOLD = (700, 10, 1000)


def batch_gc(fn: F) -> F:
    """The cyclic garbage collector's thresholds for a batch run: the young generations
    as CPython has them, a full collection a hundred times rarer. A run allocates
    millions of short-lived objects (frames' cells, parsed addresses, Splink's SQL trees)
    in a process that holds a few million long-lived ones (pandas, Splink, sqlglot, the
    reference tables); with the default thresholds the collector traversed all of them
    in 14 full collections during the 1M nightly delta (1.1 s, most of it on the serial
    path). In-process, alternating three runs each in one hour: the delta 27.5 s with
    the defaults, 26.3 s with these, 27.4 s with young collections every 50 000
    allocations (50 000, 20, 10) — which also made an officer's link slower. Garbage in
    reference cycles is still collected young; only cycles that survive two collections
    wait longer. The full sync's peak: README, Benchmarks.

    A decorator: `fn` runs with these thresholds and the previous ones are put back after
    it, so a long-lived process that runs syncs and decisions in-process (`residents web`,
    a served deployment) keeps its own between them."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        before = gc.get_threshold()
        gc.set_threshold(*BATCH_GC_THRESHOLD)
        try:
            return fn(*args, **kwargs)
        finally:
            gc.set_threshold(*before)

    return run  # type: ignore[return-value]
