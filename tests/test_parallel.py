"""pipelines.parallel: chunks mapped on worker processes come back whole and in order,
and the address parser gives the same frame on the worker path as in-process."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from pipelines import parallel
from pipelines.normalize import address


def _square_all(xs: list[int]) -> list[int]:
    return [x * x for x in xs]


def test_map_items_keeps_order_and_length_on_workers():
    items = list(range(1003))
    assert parallel.map_items(_square_all, items, min_items=10, workers=2) == [x * x for x in items]


def test_small_lists_stay_in_process(monkeypatch):
    monkeypatch.setattr(parallel, "_executor", lambda n: (_ for _ in ()).throw(AssertionError("pool started")))
    assert parallel.map_items(_square_all, [1, 2, 3], min_items=10, workers=2) == [1, 4, 9]


def test_workers_env(monkeypatch):
    monkeypatch.setenv("RESIDENTS_WORKERS", "1")
    assert parallel.worker_count() == 1
    monkeypatch.setenv("RESIDENTS_WORKERS", "x")
    assert parallel.worker_count() >= 1


def test_parse_addresses_same_on_workers_as_in_process(monkeypatch):
    raw = pd.Series(["吉林省辽源市龙山区东吉街道泰安社区人民大街125号3栋2单元501",
                     "龙山区福镇街道民主社区锦绣华庭11号楼4单元1701室", None, "林荫路269号10-2-101",
                     "内蒙古自治区包头市昆都仑区友谊大街12号", "xx"] * 7)
    serial = address.parse_addresses(raw)
    monkeypatch.setattr(address, "map_items",
                        lambda fn, items: parallel.map_items(fn, items, min_items=2, workers=2))
    pd.testing.assert_frame_equal(address.parse_addresses(raw), serial)


def test_parse_addresses_with_context_row_by_row_on_workers(monkeypatch):
    """Each row is its text parsed and finished in its own (town, community) context,
    whichever distinct texts and contexts the rows share and wherever they are finished;
    the key remembered for a text is the one it parses to without a context."""
    texts = ["人民大街125号3栋2单元501", "锦绣华庭11号楼4单元1701室", None, "林荫路269号10-2-101",
             "金沟村3组18号", "xx", "东吉街道泰安社区人民大街125号"]
    towns = ["东吉街道", None, "福镇街道", "", "碑院镇"]
    communities = ["泰安社区", "民主社区", None, "金沟村"]
    n = 91  # every text meets several contexts, not all of them
    raw = pd.Series([texts[i % len(texts)] for i in range(n)], index=range(1000, 1000 + n))
    context = pd.DataFrame({"街道": [towns[i % len(towns)] for i in range(n)],
                            "社区": [communities[(i // 3) % len(communities)] for i in range(n)]}, index=raw.index)
    rows = [address._finish(address.parse_one(t), address._ctx_value(c_t), address._ctx_value(c_c))
            for t, c_t, c_c in zip(raw, context["街道"], context["社区"])]
    expected = pd.DataFrame({c: pd.Series([r[c] for r in rows], index=raw.index,
                                          dtype=float if c == "confidence" else object) for c in address.COLUMNS})
    known = [t for t in texts if t is not None]
    plain = address.parse_addresses(pd.Series(known))
    plain_keys = {t: (k if e is None else None) for t, k, e in zip(known, plain["address_key"], plain["error"])}
    for on_workers in (False, True):
        if on_workers:
            monkeypatch.setattr(address, "map_items",
                                lambda fn, items: parallel.map_items(fn, items, min_items=2, workers=2))
        with address.remembered_keys():
            got = address.parse_addresses(raw, context=context)
            remembered = dict(address._REMEMBERED[-1][(None, None, None)])
        pd.testing.assert_frame_equal(got, expected)
        assert remembered == plain_keys


def _slow_pid_square(x: int) -> tuple[int, int]:
    import os
    import time

    time.sleep(0.3)
    return os.getpid(), x * x


def test_release_waits_for_deferred_work_and_its_results_stay(monkeypatch):
    """`release` stops the workers after the work given to them; a `Deferred` started
    before still returns its result, computed on a worker (not again here)."""
    import os

    monkeypatch.setenv("RESIDENTS_WORKERS", "2")
    pending = [parallel.Deferred(_slow_pid_square, i) for i in range(4)]
    assert all(d._future is not None for d in pending)
    # Deferred work runs on its own spawned worker (`_deferred_pool`), not the forked pool
    processes = list(parallel._deferred_pool._processes.values())
    parallel.release()
    assert parallel._pool is None and parallel._deferred_pool is None
    assert not any(p.is_alive() for p in processes)
    results = [d.result() for d in pending]
    assert [r[1] for r in results] == [0, 1, 4, 9]
    assert all(pid != os.getpid() for pid, _ in results)
    # answered: the inputs are not kept (a first load defers a check per export)
    assert all(d._call is None for d in pending)


class _Torn:
    """Says so when finalised: in a worker, only the interpreter's teardown would."""

    def __del__(self, _write=os.write) -> None:  # bound now: imports fail during a teardown
        _write(1, b"torn down")


_kept: list[_Torn] = []


def _print_unflushed(text: str) -> str:
    import sys

    _kept.append(_Torn())  # a module global of the worker: freed only by its teardown
    sys.stdout.write(text)  # no newline, no flush: left in the buffer for the worker's exit
    return text


def test_a_deferred_worker_exits_cleanly_without_the_teardown(monkeypatch, capfd):
    """The spawned worker ends with `os._exit` once the pool stops it, skipping the
    interpreter's teardown of Great Expectations and its imports (which the parent's
    exit waited for): nothing is finalised there, yet the exit status is still 0 and
    what it wrote still reaches the stream."""
    monkeypatch.setenv("RESIDENTS_WORKERS", "2")
    d = parallel.Deferred(_print_unflushed, "写在退出前")
    assert d.result() == "写在退出前"
    processes = list(parallel._deferred_pool._processes.values())
    parallel.shutdown()
    assert [p.exitcode for p in processes] == [0]
    out = capfd.readouterr().out
    assert "写在退出前" in out and "torn down" not in out


def _niceness() -> int:
    return os.nice(0)


def test_the_deferred_worker_runs_at_a_lower_priority_than_the_run(monkeypatch):
    """The checks collected at the end of a run (Great Expectations) yield the cores to
    the run itself; the run's own priority is left alone."""
    monkeypatch.setenv("RESIDENTS_WORKERS", "2")
    parallel.shutdown()
    ours = os.nice(0)
    d = parallel.Deferred(_niceness)
    assert d._future is not None  # on the worker, not here
    assert d.result() == min(ours + parallel.DEFERRED_NICENESS, 19)
    assert os.nice(0) == ours
    parallel.shutdown()


def _boom(x: int) -> int:
    raise ValueError(f"bad {x}")


def test_a_deferred_failure_is_raised_at_result():
    d = parallel.Deferred(_boom, 3)
    with pytest.raises(ValueError, match="bad 3"):
        d.result()


def _use_the_pool_and_return(conn) -> None:
    from pipelines import parallel as p

    conn.send(p.map_items(_square_all, list(range(50)), min_items=2, workers=2)[-1])
    conn.close()


def test_a_multiprocessing_child_that_used_the_pool_exits():
    """Prefect runs a served deployment's flow run in a spawned child process; a child
    process ends by joining its children before its atexit handlers run, and the pool's
    workers wait for work: without a multiprocessing finalizer stopping the pool first,
    the flow run never exited and kept its workers (found: a week of nightly runs leaves
    seven of them)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_use_the_pool_and_return, args=(child_end,))
    child.start()
    try:
        assert parent_end.poll(120) and parent_end.recv() == 49 * 49
        child.join(60)
        assert child.exitcode == 0, "the child that used the pool did not exit"
    finally:
        if child.is_alive():
            child.kill()
            child.join()
