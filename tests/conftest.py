"""Shared fixtures: URLs of the real servers (PostgreSQL, OpenSSH, MariaDB) started by `.ci/run`."""

from __future__ import annotations

import os

import pytest

# every publish makes the next write's spare working copy before it returns (in the
# process, not a detached copier: a folder compared before and after a step must not gain
# a file meanwhile), so every write after a suite's first takes the spare
# (`warehouse.standby`); tests/test_standby.py covers the detached copier
os.environ.setdefault("RESIDENTS_SPARES_IN_PROCESS", "1")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """`RESIDENTS_TEST_PG_URL` (set by `.ci/run`). Missing: skip locally, fail in CI."""
    url = os.environ.get("RESIDENTS_TEST_PG_URL")
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("RESIDENTS_TEST_PG_URL is not set but CI=true: PostgreSQL tests must run in CI")
        pytest.skip("RESIDENTS_TEST_PG_URL not set (start PostgreSQL as .ci/run does)")
    return url


def _server_env(names: tuple[str, ...], what: str) -> dict[str, str]:
    """The variables `tests/servers.py` exports. Missing: skip locally, fail in CI."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{', '.join(missing)} not set but CI=true: {what} tests must run in CI")
        pytest.skip(f"{what} not started (sudo python3 tests/servers.py start --dir DIR, as .ci/run does)")
    return {n: os.environ[n] for n in names}


@pytest.fixture(scope="session")
def sftp_server() -> dict[str, str]:
    """The OpenSSH server of `tests/servers.py`: host, port, user, password, key, root."""
    env = _server_env(tuple(f"RESIDENTS_TEST_SFTP_{k}" for k in ("HOST", "PORT", "USER", "PASSWORD", "KEY", "ROOT")),
                      "SFTP (OpenSSH)")
    env.update(_server_env(("RESIDENTS_TEST_SFTP_HOST_KEY",), "SFTP (OpenSSH)"))
    return {k.removeprefix("RESIDENTS_TEST_SFTP_").lower(): v for k, v in env.items()}


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """`RESIDENTS_TEST_MYSQL_URL`: the MariaDB of `tests/servers.py`."""
    return _server_env(("RESIDENTS_TEST_MYSQL_URL",), "MariaDB")["RESIDENTS_TEST_MYSQL_URL"]


@pytest.fixture
def mysql_db(mysql_url):
    """A fresh MariaDB database of its own (tests run in parallel): its URL."""
    import uuid

    import sqlalchemy as sa

    name = f"residents_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(mysql_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    yield sa.make_url(mysql_url).set(database=name)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name}")
    admin.dispose()


@pytest.fixture(scope="session")
def lake_login(pg_url) -> dict[str, str]:
    """The PostgreSQL role the lakehouse tests log in as with a password (`.ci/run` creates
    `RESIDENTS_TEST_LAKE_USER` with password auth, so a wrong password is refused):
    host, port, user, password, and the superuser URL that creates their catalogs."""
    import sqlalchemy as sa

    env = _server_env(("RESIDENTS_TEST_LAKE_USER", "RESIDENTS_TEST_LAKE_PASSWORD"), "lakehouse (PostgreSQL)")
    url = sa.make_url(pg_url)
    return {"host": url.host or "127.0.0.1", "port": str(url.port or 5432), "user": env["RESIDENTS_TEST_LAKE_USER"],
            "password": env["RESIDENTS_TEST_LAKE_PASSWORD"], "admin_url": pg_url}


@pytest.fixture
def lake_catalog(lake_login):
    """A fresh, empty DuckLake catalog database of its own (tests run in parallel),
    owned by the lake role: the libpq string after `postgres:` (no password)."""
    import uuid

    import sqlalchemy as sa

    name = f"residents_lake_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(lake_login["admin_url"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE {name} OWNER "{lake_login["user"]}"')
    yield f"postgres:dbname={name} host={lake_login['host']} port={lake_login['port']} user={lake_login['user']}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()
