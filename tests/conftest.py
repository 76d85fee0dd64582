"""Shared fixtures: the PostgreSQL URL for `@pytest.mark.postgres` tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def pg_url() -> str:
    """`RESIDENTS_TEST_PG_URL` (set by `.ci/run`). Missing: skip locally, fail in CI."""
    url = os.environ.get("RESIDENTS_TEST_PG_URL")
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("RESIDENTS_TEST_PG_URL is not set but CI=true: PostgreSQL tests must run in CI")
        pytest.skip("RESIDENTS_TEST_PG_URL not set (start PostgreSQL as .ci/run does)")
    return url
