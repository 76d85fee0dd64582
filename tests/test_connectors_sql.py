"""connectors.sql: SQLite (tmp file) and PostgreSQL (`@pytest.mark.postgres`)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from connectors import MissingColumnsError, TableNotFoundError, open_engine, read_table
from schemas.mapping import mapping_for

WOMEN = mapping_for("T_YLFN")
CHILDREN = mapping_for("T_ZN")

T0 = dt.datetime(2026, 11, 20, 9, 0, 0)


def women_table(metadata: sa.MetaData, upper: bool = True, drop: tuple[str, ...] = ()) -> sa.Table:
    def c(name: str, type_, **kw) -> sa.Column:
        return sa.Column(name if upper else name.lower(), type_, **kw)

    cols = [c("YLFN_ID", sa.Integer, primary_key=True), c("XM", sa.String(50)), c("SFZH", sa.String(18)),
            c("CSRQ", sa.Date), c("MZ", sa.String(2)), c("HYZK", sa.String(2)), c("XJZDZ", sa.String(200)),
            c("POXM", sa.String(50)), c("XYZNS", sa.Integer), c("GXSJ", sa.DateTime), c("SCBZ", sa.String(1)),
            c("BZ", sa.String(50))]
    return sa.Table("T_YLFN" if upper else "t_ylfn", metadata, *[x for x in cols if x.name.upper() not in drop])


def women_rows(upper: bool = True) -> list[dict]:
    rows = [
        dict(YLFN_ID=3, XM="王芳", SFZH="220402199001011246", CSRQ=dt.date(1990, 1, 1), MZ="01", HYZK="20",
             XJZDZ="人民大街125号", POXM="张伟", XYZNS=2, GXSJ=T0, SCBZ="0", BZ=None),
        dict(YLFN_ID=1, XM="李娜", SFZH=None, CSRQ=dt.date(1985, 5, 6), MZ="03", HYZK="10",
             XJZDZ=None, POXM=None, XYZNS=0, GXSJ=T0 + dt.timedelta(hours=1), SCBZ="1", BZ="迁出"),
        dict(YLFN_ID=2, XM="刘洋", SFZH="220402199203031234", CSRQ=None, MZ="01", HYZK="21",
             XJZDZ="", POXM=None, XYZNS=None, GXSJ=T0 + dt.timedelta(hours=1), SCBZ="0", BZ=None),
        dict(YLFN_ID=4, XM="赵敏", SFZH="220402199304041234", CSRQ=dt.date(1993, 4, 4), MZ="01", HYZK="20",
             XJZDZ="西宁路1号", POXM="钱强", XYZNS=1, GXSJ=T0 + dt.timedelta(days=1, seconds=5), SCBZ="0", BZ=None),
    ]
    return rows if upper else [{k.lower(): v for k, v in r.items()} for r in rows]


def create(engine: sa.Engine, upper: bool = True, drop: tuple[str, ...] = ()) -> None:
    md = sa.MetaData()
    table = women_table(md, upper, drop)
    md.create_all(engine)
    rows = [{k: v for k, v in r.items() if k.upper() not in drop} for r in women_rows(upper)]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'family_planning.sqlite'}")
    yield engine
    engine.dispose()


def check_full_read(r) -> None:
    """Shared expectations for a full read of the women table (any backend)."""
    f = r.frame
    assert r.source_object == "T_YLFN" and set(f["source_object"]) == {"T_YLFN"}
    assert set(f["source_system"]) == {"family_planning"}
    # ordered by watermark then primary key; SCBZ=1 rows are returned too
    assert f["source_locator"].tolist() == ["3", "1", "2", "4"]
    assert f["YLFN_ID"].tolist() == ["3", "1", "2", "4"]
    assert f["SCBZ"].tolist() == ["0", "1", "0", "0"]
    assert f["CSRQ"].tolist() == ["1990-01-01", "1985-05-06", None, "1993-04-04"]
    assert f["GXSJ"].tolist() == ["2026-11-20 09:00:00", "2026-11-20 10:00:00", "2026-11-20 10:00:00",
                                  "2026-11-21 09:00:05"]
    assert f["XYZNS"].tolist() == ["2", "0", None, "1"]
    assert f["SFZH"].tolist()[1] is None
    assert f["XJZDZ"].tolist()[2] is None            # '' → None, like the file readers
    assert r.header_map["XJZDZ"] == "current_address"
    assert [c.upper() for c in r.unknown_columns] == ["BZ"]   # unknown: the database's spelling
    assert r.metadata["max_watermark"] == T0 + dt.timedelta(days=1, seconds=5)
    assert r.rows_read == len(f) and r.skipped == []
    for col in f.columns:
        assert all(v is None or isinstance(v, str) for v in f[col]), col


# -- SQLite -----------------------------------------------------------------------------
def test_sqlite_full_read(sqlite_engine):
    create(sqlite_engine)
    check_full_read(read_table(sqlite_engine, WOMEN))


def test_sqlite_incremental_since_watermark(sqlite_engine):
    create(sqlite_engine)
    r = read_table(sqlite_engine, WOMEN, since=T0)
    assert r.frame["source_locator"].tolist() == ["1", "2", "4"]      # strictly greater
    r2 = read_table(sqlite_engine, WOMEN, since=r.metadata["max_watermark"])
    assert len(r2.frame) == 0 and r2.rows_read == 0
    assert r2.metadata["max_watermark"] == r.metadata["max_watermark"]   # nothing new: keep it
    assert "XM" in r2.frame.columns


def test_sqlite_lowercase_names_get_mapping_spelling(sqlite_engine):
    create(sqlite_engine, upper=False)
    check_full_read(read_table(sqlite_engine, WOMEN))


def test_sqlite_text_watermark_column(sqlite_engine):
    """Older databases keep GXSJ as text: compared as text, still strictly greater."""
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE T_ZN (ZN_ID INTEGER PRIMARY KEY, YLFN_ID INTEGER, XM TEXT, "
                             "CSRQ VARCHAR(8), GXSJ VARCHAR(19), SCBZ INTEGER)")
        conn.exec_driver_sql("INSERT INTO T_ZN VALUES (1, 3, '张小明', '20200101', '2026-11-20 09:00:00', 0),"
                             " (2, 3, '张小红', '20220202', '2026-11-21 09:00:00', 1)")
    r = read_table(sqlite_engine, CHILDREN, since=dt.datetime(2026, 11, 20, 9, 0, 0))
    assert r.frame["XM"].tolist() == ["张小红"]
    assert r.frame["CSRQ"].tolist() == ["20220202"]
    assert r.frame["SCBZ"].tolist() == ["1"]
    assert r.metadata["max_watermark"] == dt.datetime(2026, 11, 21, 9, 0, 0)


def test_sqlite_missing_required_column(sqlite_engine):
    create(sqlite_engine, drop=("SFZH",))
    with pytest.raises(MissingColumnsError) as info:
        read_table(sqlite_engine, WOMEN)
    assert "citizen_id" in info.value.missing
    assert "SFZH" in str(info.value) and "T_YLFN" in str(info.value)


def test_sqlite_table_not_found(sqlite_engine):
    with pytest.raises(TableNotFoundError) as info:
        read_table(sqlite_engine, WOMEN)
    assert "T_YLFN" in str(info.value)


# -- PostgreSQL ------------------------------------------------------------------------
@pytest.fixture
def pg_engine(pg_url):
    """An engine whose search_path is a fresh schema (tests may run in parallel)."""
    schema = f"conn_{uuid.uuid4().hex[:10]}"
    admin = open_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = open_engine(pg_url, connect_args={"options": f"-csearch_path={schema}"})
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@pytest.mark.postgres
def test_postgres_lowercase_columns_full_and_incremental(pg_engine):
    with pg_engine.begin() as conn:  # unquoted DDL, as the department's DBA would write it
        conn.exec_driver_sql(
            "CREATE TABLE T_YLFN (YLFN_ID integer PRIMARY KEY, XM varchar(50), SFZH varchar(18), CSRQ date,"
            " MZ varchar(2), HYZK varchar(2), XJZDZ varchar(200), POXM varchar(50), XYZNS integer,"
            " GXSJ timestamp, SCBZ char(1), BZ varchar(50))")
    table = women_table(sa.MetaData(), upper=False)
    with pg_engine.begin() as conn:
        conn.execute(table.insert(), women_rows(upper=False))
        names = [r[0] for r in conn.exec_driver_sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 't_ylfn'")]
    assert "xjzdz" in names                                    # PostgreSQL folded the names
    check_full_read(read_table(pg_engine, WOMEN))
    r = read_table(pg_engine, WOMEN, since=T0)
    assert r.frame["source_locator"].tolist() == ["1", "2", "4"]
    assert r.frame["SCBZ"].tolist() == ["1", "0", "0"]          # the retraction is returned
    assert read_table(pg_engine, WOMEN, since=r.metadata["max_watermark"]).frame.empty


@pytest.mark.postgres
def test_postgres_children_table(pg_engine):
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t_zn (zn_id bigint PRIMARY KEY, ylfn_id integer, xm text, xb text,"
                             " csrq date, sfzh text, cshc smallint, gxsj timestamp(6), scbz integer)")
        conn.exec_driver_sql("INSERT INTO t_zn VALUES (10, 3, '张小明', '1', '2020-01-01', NULL, 1,"
                             " '2026-11-20 09:00:00.250', 0)")
    r = read_table(pg_engine, CHILDREN)
    assert r.frame[["ZN_ID", "XM", "CSRQ", "SFZH", "CSHC", "GXSJ", "SCBZ"]].iloc[0].tolist() == [
        "10", "张小明", "2020-01-01", None, "1", "2026-11-20 09:00:00", "0"]
    assert r.metadata["max_watermark"] == dt.datetime(2026, 11, 20, 9, 0, 0, 250000)
    # the watermark keeps sub-second precision: the same row is not read again
    assert read_table(pg_engine, CHILDREN, since=r.metadata["max_watermark"]).frame.empty


# -- MariaDB (the 前置机 exchange database) ----------------------------------------------
@pytest.mark.mysql
def test_mariadb_full_and_incremental_read_with_password_by_reference(mysql_db):
    from connectors.exceptions import SourceError
    from connectors.sql import source_urls
    from schemas.sources import SourceSpec

    spec = SourceSpec(name="wis", system="family_planning",
                      url=mysql_db._replace(password=None).render_as_string(hide_password=False),
                      password_env="WIS_PASSWORD")
    url = source_urls({"family_planning": spec}, {"WIS_PASSWORD": mysql_db.password})["family_planning"]
    assert mysql_db.password not in str(url) and mysql_db.password not in repr(url)   # printed without it
    engine = open_engine(url)
    try:
        create(engine)                                   # T_YLFN with upper-case names, DATETIME GXSJ
        check_full_read(read_table(engine, WOMEN))
        r = read_table(engine, WOMEN, since=T0)
        assert r.frame["source_locator"].tolist() == ["1", "2", "4"]
        assert r.frame["SCBZ"].tolist() == ["1", "0", "0"]      # the soft delete is returned, as declared
        assert read_table(engine, WOMEN, since=r.metadata["max_watermark"]).frame.empty
    finally:
        engine.dispose()
    with pytest.raises(SourceError) as info:
        source_urls({"family_planning": spec}, {})
    assert info.value.reason == "credentials_missing" and "WIS_PASSWORD" in str(info.value)


@pytest.mark.mysql
def test_mariadb_wrong_password_and_unreachable_host_in_chinese(mysql_db):
    from connectors.exceptions import SourceError

    engine = open_engine(mysql_db.set(password="not-the-password"))
    try:
        with pytest.raises(SourceError) as info:
            read_table(engine, WOMEN)
    finally:
        engine.dispose()
    assert info.value.reason == "auth_failed" and "not-the-password" not in str(info.value)
    assert str(info.value).startswith("数据来源拒绝登录（用户名、密码或密钥不正确）：来源 family_planning（计生）")
    import socket

    with socket.create_server(("127.0.0.1", 0)) as s:
        closed_port = s.getsockname()[1]
    engine = open_engine(mysql_db.set(port=closed_port), connect_args={"connect_timeout": 5})
    try:
        with pytest.raises(SourceError) as info:
            read_table(engine, WOMEN)
    finally:
        engine.dispose()
    assert info.value.reason == "unreachable" and str(info.value).startswith("无法连接数据来源")
