"""Transient source faults: retried with backoff, then one structured error (the one
retry helper of the connectors: source connections, reads, transfers).

A database that is locked by another writer or refuses connections, or a file that
vanished or cannot be opened, is not bad data: `with_retries` tries again after each
of `delays` seconds and then raises `SourceUnavailableError` naming the source, the
kind of fault (locked, unreachable, permission, io, database), how many times it was
tried and the driver's one-line reason. Data problems (`ConnectorError`) are raised at
once, never retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from connectors.exceptions import ConnectorError, SourceError, SourceUnavailableError

__all__ = ["DEFAULT_DELAYS", "fault_kind", "retry", "with_retries", "sql_connect_args"]

T = TypeVar("T")

#: seconds to wait before the 2nd and 3rd attempt
DEFAULT_DELAYS: tuple[float, ...] = (2.0, 8.0)


def fault_kind(exc: BaseException) -> str | None:
    """The kind of a transient fault, or None when `exc` is not one."""
    if isinstance(exc, ConnectorError):
        return None
    if isinstance(exc, PermissionError):
        return "permission"
    text = str(getattr(exc, "orig", None) or exc).lower()
    if "locked" in text or "busy" in text or "lock timeout" in text:
        return "locked"
    if any(t in text for t in ("connection refused", "could not connect", "connection failed", "timeout",
                               "timed out", "could not translate host", "name or service not known",
                               "server closed the connection", "unable to open database")):
        return "unreachable"
    try:
        import sqlalchemy.exc as sa_exc
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        sa_exc = None
    if sa_exc is not None and isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return "database"
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return "unreachable"
    if isinstance(exc, OSError):
        return "io"
    return None


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:199] + "…"


def retry(fn: Callable[[], T], *, attempts: int, delay_s: float, transient: Callable[[BaseException], bool],
          on_retry: Callable[[int, BaseException], None] | None = None,
          sleep: Callable[[float], Any] = time.sleep) -> T:
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
    raise AssertionError("unreachable")  # pragma: no cover


def with_retries(fn: Callable[[], T], *, source_system: str | None, source_object: str | None, where: str | None,
                 delays: Sequence[float] = DEFAULT_DELAYS, sleep: Callable[[float], Any] = time.sleep) -> T:
    """`fn()`, retried after each of `delays` while it fails with a transient fault; the
    last one raised as `SourceUnavailableError`."""
    waits = iter(delays)
    try:
        return retry(fn, attempts=len(delays) + 1, delay_s=0.0, transient=_transient,
                     sleep=lambda _s: sleep(next(waits)))
    except Exception as exc:  # noqa: BLE001 - classified below; anything else re-raised
        kind = fault_kind(exc)
        if kind is None:
            raise
        raise SourceUnavailableError(source_system, source_object, where, kind=kind,
                                     attempts=getattr(exc, "attempts", 1), detail=_one_line(exc)) from None


def _transient(exc: BaseException) -> bool:
    """Worth another try: a transient driver or OS fault, or a source the connector
    itself found unreachable (a refused connection, not a refused login)."""
    if isinstance(exc, SourceError):
        return exc.reason == "unreachable"
    return isinstance(exc, Exception) and fault_kind(exc) not in (None, "permission")


def sql_connect_args(url: str, timeout_s: float) -> dict[str, Any]:
    """Driver options so that a locked or unreachable database fails within `timeout_s`
    (SQLite's busy wait; PostgreSQL's connect and lock-wait timeouts; MySQL's connect
    timeout) instead of hanging."""
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith("sqlite"):
        return {"timeout": timeout_s}
    if scheme.startswith("postgresql"):
        return {"connect_timeout": max(1, int(round(timeout_s))),
                "options": f"-c lock_timeout={max(1, int(timeout_s * 1000))}"}
    if scheme.startswith(("mysql", "mariadb")):
        return {"connect_timeout": max(1, int(round(timeout_s)))}
    return {}
