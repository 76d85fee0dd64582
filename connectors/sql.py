"""Read a source database table into a raw string frame (family_planning: T_YLFN, T_ZN).

Through SQLAlchemy, any backend (the demo's SQLite, MySQL, PostgreSQL, Oracle). The
table and its columns are found case-insensitively (PostgreSQL folds unquoted names
to lower case: `t_ylfn.xjzdz`). Frame columns carry the mapping's spelling of a
matched column (`XJZDZ`, the alias the mapping declares), so the frame is the same
whatever the backend's case; unknown columns keep the database's spelling.

Incremental reads select ``watermark > since`` ordered by watermark then primary key.
Rows with the delete flag set are returned like any other (retractions are the
pipeline's job). `metadata['max_watermark']` is the largest watermark returned (or
`since` when nothing is returned), as a `datetime`.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors.base import (
    ConnectorWarning,
    RawRead,
    build_frame,
    check_required,
    labels,
    render_number,
)
from connectors.exceptions import MissingColumnsError, SourceError, TableNotFoundError
from schemas.mapping import SourceMapping, normalize_header
from schemas.sources import SourceSpec

__all__ = ["count_changed", "open_engine", "read_table", "render_sql_value", "source_urls"]

_BATCH = 10_000


def open_engine(url: str | sa.URL, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for a source database URL (`sqlite:///x.sqlite`,
    `postgresql+psycopg://…`). `pool_pre_ping` guards long-lived nightly processes."""
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def source_urls(sources: Mapping[str, SourceSpec | str], env: Mapping[str, str]) -> dict[str, sa.URL]:
    """source system → SQLAlchemy URL of its database, the password (by reference:
    `password_env` / `password_file`) filled in. A `sa.URL` prints without its password,
    so it may be passed to tasks and shown in messages. Raises `SourceError` when the
    referenced credential is not there."""
    out = {}
    for system, source in sources.items():
        if isinstance(source, str):
            out[system] = sa.make_url(source)
            continue
        try:
            password = source.password(env)
        except (KeyError, OSError) as exc:
            raise SourceError(source.system, source.name, source.redacted_url, reason="credentials_missing",
                              detail=str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
        url = sa.make_url(source.url)
        out[system] = url.set(password=password) if password is not None else url
    return out


def read_table(engine: Engine, mapping: SourceMapping, *, since: dt.datetime | None = None) -> RawRead:
    """Rows of `mapping.table` (all, or with watermark > `since`) as a RawRead.

    `source_object` is the mapping's table name (`T_YLFN`), `source_locator` the primary
    key value. Raises `MissingColumnsError` when a required column is absent, and
    `SourceError` when the database cannot be reached or refuses the login.
    """
    if not mapping.table:
        raise ValueError(f"mapping {mapping.source_object} has no table")
    where = _url_text(engine)
    table = _reflect(engine, mapping, where)
    names = _column_names(mapping, table)                # db column name → frame column
    header_map = mapping.match_headers(list(names.values()))
    missing = check_required(mapping, header_map)
    if missing:
        raise MissingColumnsError(mapping.source_system, mapping.table, where, missing=missing,
                                  labels=labels(mapping), found=list(table.c.keys()))
    pk = _column_for(mapping, table, names, mapping.primary_key or mapping.record_key, where)
    watermark = _column_for(mapping, table, names, mapping.watermark, where) if mapping.watermark else None
    query = sa.select(*table.c)
    if watermark is not None and since is not None:
        query = query.where(watermark > _bind_since(watermark, since))
    query = query.order_by(*(c for c in (watermark, pk) if c is not None))
    columns: dict[str, list[str | None]] = {n: [] for n in names.values()}
    locators: list[str] = []
    max_wm: Any = None
    keys = list(names)
    pk_index = keys.index(pk.key)
    wm_index = keys.index(watermark.key) if watermark is not None else None
    targets = [columns[names[k]] for k in keys]
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(query)
        for row in result:
            for target, value in zip(targets, row):
                target.append(render_sql_value(value))
            locators.append(render_sql_value(row[pk_index]) or "")
            if wm_index is not None and row[wm_index] is not None:
                max_wm = row[wm_index] if max_wm is None else max(max_wm, row[wm_index])
    order = [names[k] for k in keys]
    frame = build_frame(columns, order, len(locators), mapping.source_system, mapping.table, locators)
    unknown = [c for c in order if c not in header_map]
    warnings = [ConnectorWarning("unknown_column",
                                 f"映射中没有的列，照常读入 / column not in the mapping, loaded anyway: {c}",
                                 source_object=mapping.table, column=c) for c in unknown]
    return RawRead(
        source_system=mapping.source_system,
        source_object=mapping.table,
        frame=frame,
        header_map=header_map,
        unknown_columns=unknown,
        rows_read=len(locators),
        warnings=warnings,
        metadata={
            "max_watermark": _as_datetime(max_wm) if max_wm is not None else since,
            "since": since,
            "table": table.name,
            "database": where,
        },
    )


def count_changed(engine: Engine, mapping: SourceMapping, *, since: dt.datetime | None = None) -> int:
    """How many rows `read_table(engine, mapping, since=since)` would return: one
    ``count(*)`` on the database, so a sync with nothing new reads no rows. A table
    without a watermark counts all its rows (it is re-read whole every time)."""
    if not mapping.table:
        raise ValueError(f"mapping {mapping.source_object} has no table")
    where = _url_text(engine)
    table = _reflect(engine, mapping, where)
    names = _column_names(mapping, table)
    query = sa.select(sa.func.count()).select_from(table)
    if mapping.watermark and since is not None:
        watermark = _column_for(mapping, table, names, mapping.watermark, where)
        query = query.where(watermark > _bind_since(watermark, since))
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


# -- reflection -------------------------------------------------------------------
def _url_text(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _reflect(engine: Engine, mapping: SourceMapping, where: str) -> sa.Table:
    """The table, found case-insensitively, reflected with its real name. The first
    contact with the database: a refused connection or login becomes a `SourceError`."""
    assert mapping.table is not None
    try:
        inspector = sa.inspect(engine)
    except sa.exc.OperationalError as exc:
        text = str(exc.orig).lower()
        denied = any(k in text for k in ("access denied", "password authentication failed", "ora-01017",
                                         "authentication failed"))
        raise SourceError(mapping.source_system, mapping.source_system, where,
                          reason="auth_failed" if denied else "unreachable",
                          detail=f"{type(exc.orig).__name__}: {exc.orig}") from None
    wanted = mapping.table.lower()
    name = next((t for t in inspector.get_table_names() if t.lower() == wanted), None)
    if name is None:
        raise TableNotFoundError(mapping.source_system, mapping.table, where, value=mapping.table)
    return sa.Table(name, sa.MetaData(), autoload_with=engine)


def _column_names(mapping: SourceMapping, table: sa.Table) -> dict[str, str]:
    """db column key → frame column: the mapping's alias spelling when it matches
    case-insensitively, else the database's own name."""
    aliases = {normalize_header(a).upper(): a for c in mapping.columns for a in c.aliases}
    return {c.key: aliases.get(normalize_header(c.name).upper(), c.name) for c in table.columns}


def _column_for(mapping: SourceMapping, table: sa.Table, names: dict[str, str], field: str,
                where: str) -> sa.Column:
    """The table column carrying a mapping field."""
    spec = mapping.column(field)
    wanted = {normalize_header(a).upper() for a in spec.aliases}
    for key, frame_name in names.items():
        if normalize_header(frame_name).upper() in wanted:
            return table.c[key]
    raise MissingColumnsError(mapping.source_system, mapping.table, where,
                              missing={field: spec.aliases}, labels=labels(mapping),
                              found=list(table.c.keys()))


def _bind_since(column: sa.Column, since: dt.datetime) -> Any:
    """`since` bound in the column's own type (text watermarks compare as text)."""
    if isinstance(column.type, (sa.DateTime, sa.Date)):
        return sa.literal(since, column.type)
    return sa.literal(since.strftime("%Y-%m-%d %H:%M:%S"), column.type)


def _as_datetime(value: Any) -> dt.datetime | Any:
    """A watermark value as datetime when it can be read as one."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return value
    return value


# -- values -----------------------------------------------------------------------
def render_sql_value(value: Any) -> str | None:
    """A database value as a raw string: dates ISO, timestamps `YYYY-MM-DD HH:MM:SS`,
    integers as digits, other numbers per the xlsx rule, NULL → None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.strftime("%H:%M:%S")
    if isinstance(value, decimal.Decimal):
        if value == value.to_integral_value():
            return str(value.quantize(decimal.Decimal(1)))
        return format(value.normalize(), "f")
    if isinstance(value, float):
        return render_number(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)
