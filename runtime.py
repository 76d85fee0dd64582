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


#: the exit status of the command `run_command` ran; None: it ended otherwise (an uncaught
#: exception) and the interpreter ends the process as usual
_status: int | None = None


def run_command(main: Callable[[], Any]) -> None:
    """Run a command line's `main` and end the process, when it ends, without the
    interpreter's teardown.

    A command ends by freeing, one object at a time, everything its run imported or built
    (pandas, Splink and sqlglot, the division gazetteer's 84 000 entries, the name tables):
    0.4 s after a nightly delta at 1M residents, 0.15 s after an officer's link — time the
    officer waits for that changes nothing on disk. The exit handler registered here,
    before anything else registers one, runs last (handlers run last-registered first):
    the process still ends as Python ends it — non-daemon threads joined, worker pools
    stopped, every other exit handler run, the exit status the one `main` exited with —
    and then, with logging and the standard streams flushed, `os._exit` skips the
    teardown. The warehouse is never left to a destructor: every connection is closed
    (and checkpointed) by the code that opened it. A command that ends with an uncaught
    exception (a KeyboardInterrupt the command line did not turn into its exit) ends as
    usual."""
    import atexit

    global _status
    atexit.register(_exit_now)
    try:
        main()
    except SystemExit as exc:
        # as Python exits: None is success, an integer is the status, anything else is
        # printed and the status is 1
        code = exc.code
        _status = 0 if code is None else code if isinstance(code, int) else 1
        raise
    _status = 0


def _exit_now() -> None:
    import logging
    import os
    import sys

    if _status is None:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream: nothing more to write
            pass
    os._exit(_status)
