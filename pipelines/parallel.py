"""Spread a pure, per-item Python function over the machine's cores.

Some normalisation is inherently one string at a time (parsing a free-text address walks
the division gazetteer character by character). On a district's first sync that is
hundreds of thousands of distinct strings; one core would spend minutes on it while the
others wait. `map_items` cuts a large list into chunks and maps them in worker processes
(forked: they start at once with the reference tables the parent already loaded, and
`spawn` would re-run the caller's main module; the function mapped must be pure Python
that touches no lock, connection or thread of the parent), keeping the order of the
input. Small lists (every nightly delta) stay in-process, where
starting workers would cost more than it saves.

The pool is created on first use and kept for the rest of the process, so the start-up
(imports, reference tables) is paid once per sync, not once per export. `RESIDENTS_WORKERS`
caps the number of workers (`1` turns the pool off).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

#: below this many items the work stays in the calling process
DEFAULT_MIN_ITEMS = 40_000
_pool: ProcessPoolExecutor | None = None
_pool_workers = 0


def worker_count() -> int:
    """Workers to use: `RESIDENTS_WORKERS` if set (≥ 1), otherwise the usable cores."""
    env = os.environ.get("RESIDENTS_WORKERS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _executor(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_workers
    if _pool is None or _pool_workers != workers:
        shutdown()
        import multiprocessing

        _pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                    initializer=_die_with_parent, initargs=(os.getpid(),))
        _pool_workers = workers
        _stop_before_children_are_joined()
    return _pool


_finalizer_for: list[int] = []


def _stop_before_children_are_joined() -> None:
    """A process started by multiprocessing (Prefect runs each flow run of a served
    deployment in one) ends by joining its child processes *before* atexit handlers run;
    the pool's workers wait for work, so it would wait forever, holding them. A
    multiprocessing finalizer with an exit priority runs before that join: the pool is
    stopped there (once per process)."""
    from multiprocessing import util

    if os.getpid() not in _finalizer_for:
        util.Finalize(None, shutdown, exitpriority=100)
        _finalizer_for.append(os.getpid())


def _die_with_parent(parent: int) -> None:
    """In each worker: exit as soon as the parent is gone. A sync killed with SIGKILL
    (an operator, the OOM killer) cannot stop its pool; without this its workers would
    live on as orphans, holding memory and the inputs they were given."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.1)
        os._exit(1)

    if os.getppid() != parent:  # the parent died while this worker was starting
        os._exit(1)
    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
    atexit.register(_exit_without_teardown)


def _exit_without_teardown() -> None:
    """A worker's last step, once the pool has stopped it: its results went back with each
    task, so nothing is left to do but exit. A spawned worker would otherwise end through
    the interpreter's full teardown, which for the `Deferred` worker (Great Expectations,
    scipy, pyspark imported) takes ~0.6 s — and the parent's exit waits for it. Standard
    streams and logging are flushed first. (A forked worker never gets here: it ends with
    `os._exit` already.)"""
    import logging
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


#: the process that runs `Deferred` work: started with `spawn`, not forked (see `Deferred`)
_deferred_pool: ProcessPoolExecutor | None = None


def _deferred_executor() -> ProcessPoolExecutor:
    global _deferred_pool
    if _deferred_pool is None:
        import multiprocessing

        _deferred_pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_deferred_worker, initargs=(os.getpid(),))
        _stop_before_children_are_joined()
    return _deferred_pool


#: how much lower the `Deferred` worker's scheduling priority is than the run's (`os.nice`)
DEFERRED_NICENESS = 10


def _deferred_worker(parent: int) -> None:
    """The `Deferred` worker's start: it exits with its parent, and it yields the cores to
    the run. Its work (Great Expectations' import, ~2.5 s of CPU, and the exports' checks)
    is collected only at the end of the run, while the run itself (the resolution, the
    build: DuckDB on both cores) waits for nothing else; at a lower priority the worker
    runs in the cores' idle time instead of beside the run's threads. At 1M residents
    (the nightly delta, 5 pairs alternated with the worker at the run's priority) the
    staging step went 0.90–1.05 → 0.82–0.92 s in every pair; the whole command's wall
    moved within the VM's noise (mean −0.3 s)."""
    _die_with_parent(parent)
    with contextlib.suppress(OSError):  # a priority that cannot be lowered further stays as it is
        os.nice(DEFERRED_NICENESS)


def _stop(*, cancel: bool) -> None:
    global _pool, _deferred_pool
    for pool in (_pool, _deferred_pool):
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=cancel)
    _pool = _deferred_pool = None


def shutdown() -> None:
    """Stop the worker processes (also done at interpreter exit); work not started is dropped."""
    _stop(cancel=True)


def release() -> None:
    """Stop the worker processes once the work already given to them is done (results
    stay with their futures, `Deferred.result` still returns them). Before a step that
    needs all the memory it can get (a full resolution of a large population), the
    workers' memory (their reference tables, the exports they validated) goes back."""
    _stop(cancel=False)


atexit.register(shutdown)


def map_items(fn: Callable[[list[Any]], list[Any]], items: Sequence[Any], *,
              min_items: int = DEFAULT_MIN_ITEMS, workers: int | None = None) -> list[Any]:
    """`fn(items)` computed in chunks on the worker processes, results in input order.

    `fn` takes a list and returns a list of the same length; it must be a module-level
    function (workers import it by name). Lists shorter than `min_items`, or a single
    worker, run `fn` here directly.
    """
    n_workers = workers or worker_count()
    items = list(items)
    if n_workers <= 1 or len(items) < max(min_items, 2):
        return fn(items)
    # a few chunks per worker so that an uneven chunk does not leave a core idle
    n_chunks = n_workers * 4
    size = -(-len(items) // n_chunks)
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    out: list[Any] = []
    for part in _executor(n_workers).map(fn, chunks):
        out.extend(part)
    return out


def prepare_deferred(fn: Callable[[], Any]) -> None:
    """Start the `Deferred` worker now and have it run `fn` first (import what its work
    will need) while the caller goes on: nothing to collect. Without a second worker,
    nothing happens."""
    if worker_count() > 1:
        with contextlib.suppress(RuntimeError):  # pool shut down / broken: the work runs here later
            _deferred_executor().submit(fn)


class Deferred:
    """`fn(*args)` started on a worker process now, its result collected later with
    `result()`: work whose answer the caller needs only at the end of a run (validating
    an export while the run goes on resolving persons) overlaps with the rest. With one
    worker, or when the pool cannot take it, `fn` runs in-process at `result()`.

    Its worker is a process of its own started with `spawn`, not one of the forked
    `map_items` workers: deferred work imports heavy libraries there (Great Expectations
    pulls in scipy and pyspark), and importing extension modules in a child forked from
    a process with running threads (DuckDB's, Arrow's) can deadlock on a lock copied
    while held — a CI run hung forever that way, two forked workers stuck in scipy's
    import — or crash in the garbage collector. A spawned process inherits no locks."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = (fn, args, kwargs)
        self._future = None
        n_workers = worker_count()
        if n_workers > 1:
            try:
                self._future = _deferred_executor().submit(fn, *args, **kwargs)
            except RuntimeError:  # pool shut down / broken: run it here at result()
                self._future = None
            else:
                self._future.add_done_callback(self._forget_inputs)

    def _forget_inputs(self, future: Any) -> None:
        """Once the worker has answered, the inputs are only kept for a fallback that will
        not happen: a run that defers a check per export (all of a district's records on a
        first load) does not hold every export's records until its end."""
        if not future.cancelled() and future.exception() is None:
            self._call = None

    def result(self) -> Any:
        from concurrent.futures.process import BrokenProcessPool

        if self._future is not None:
            try:
                return self._future.result()
            except BrokenProcessPool:  # a worker died (killed, out of memory): do it here
                shutdown()
        assert self._call is not None  # dropped only with a result to return
        fn, args, kwargs = self._call
        return fn(*args, **kwargs)
