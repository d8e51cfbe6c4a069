"""The catalog on a real PostgreSQL: the same conformance, semantics and extension suites
run against a server whose catalog is PostgreSQL instead of SQLite."""

from __future__ import annotations

import pytest

from tests.conftest import configured_server
from tests.pg import Postgres
from tests.test_nbbsa import *  # noqa: F403 - the suites, collected again on PostgreSQL
from tests.test_semantics import *  # noqa: F403
from tests.test_state_table import *  # noqa: F403


@pytest.fixture(scope="session")
def postgres():
    pg = Postgres()
    yield pg
    pg.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, postgres):  # noqa: F811 - this module's catalog is PostgreSQL
    srv = configured_server(tmp_path_factory, f'catalog = "{postgres.new_database()}"\n')
    yield srv
    srv.stop()


def test_the_server_really_uses_postgresql(server):
    import json
    from openxbsa.admin.views import open_catalog
    assert open_catalog(server.home).engine.dialect.name == "postgresql"
    assert json.loads(server.cli("policy", "list", "--json").stdout)[0]["name"] == "openxbsa-default"
