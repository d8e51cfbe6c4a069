"""The catalog on a real PostgreSQL: the same conformance, semantics and extension suites
run against a server whose catalog is PostgreSQL instead of SQLite."""

from __future__ import annotations

import pytest

from tests.conftest import configured_server
from tests.pg import Postgres
from tests.test_nbbsa import *  # noqa: F403 - the suites, collected again on PostgreSQL
from tests.test_semantics import *  # noqa: F403
from tests.test_state_table import *  # noqa: F403


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


def test_a_catalog_database_that_restarts_or_goes_down_costs_no_backup(tmp_path_factory):
    """PostgreSQL restarted under a running server (maintenance, a failover): the next
    backup works, on new connections. PostgreSQL down: the call that needs the catalog
    fails with BSA_RC_ABORT_SYSTEM_ERROR saying why (status 220, database system error),
    nothing is half-kept, and once PostgreSQL is back a new session backs up and restores."""
    from openxbsa import xbsa as X
    from tests.conftest import backup, find, init, query, restore
    pg = Postgres()                    # its own: it is taken down here
    srv = configured_server(tmp_path_factory, f'catalog = "{pg.new_database()}"\n')
    try:
        h = init(srv)
        first = backup(h, "/pg/before", b"a" * 100_000)
        pg.pg_ctl("restart")
        second = backup(h, "/pg/after-restart", b"b" * 100_000)   # not on a stale connection
        assert restore(h, first.copyId) == b"a" * 100_000
        pg.pg_ctl("stop")
        assert X.BSABeginTxn(h) == X.BSA_RC_SUCCESS
        d = X.BSA_ObjectDescriptor(objectName=X.BSA_ObjectName("", "/pg/while-down"),
                                   estimatedSize=10, copyType=X.BSA_CopyType_BACKUP,
                                   objectType=X.BSA_ObjectType_FILE, resourceType="test")
        assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == X.BSA_RC_ABORT_SYSTEM_ERROR
        assert "catalog database cannot be used" in X.BSAGetLastError()[1]
        assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == X.BSA_RC_SUCCESS
        X.BSATerminate(h)
        pg.pg_ctl("start")
        h = init(srv)
        assert restore(h, second.copyId) == b"b" * 100_000
        assert find(h, query("/pg/while-down"))[0] == X.BSA_RC_NO_MATCH
        backup(h, "/pg/after-start", b"c" * 10)
        X.BSATerminate(h)
    finally:
        srv.stop()
        pg.stop()


def test_a_delete_transaction_of_more_objects_than_a_statement_takes_parameters(server):
    """A delete transaction ends in one catalog transaction for all its objects; PostgreSQL
    takes at most 65,535 parameters per statement, and 66,000 objects deleted at once all
    go (before, the commit failed with status 220). The 66,000 objects are backed up
    through XBSA; the commit's catalog step is then driven directly (66,000 BSADeleteObject
    round trips would take a minute of the suite for the same statement)."""
    from openxbsa import xbsa as X
    from openxbsa.admin.views import open_catalog
    from tests.conftest import descriptor, find, init, query
    h = init(server)
    assert X.BSABeginTxn(h) == X.BSA_RC_SUCCESS
    ids = []
    for i in range(66_000):
        d = descriptor(f"/pg/many/{i}", 0)
        assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == X.BSA_RC_SUCCESS
        assert X.BSAEndData(h) == X.BSA_RC_SUCCESS
        ids.append(d.copyId)
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == X.BSA_RC_SUCCESS
    catalog = open_catalog(server.home)
    try:
        rows, emptied = catalog.delete_objects(ids)
    finally:
        catalog.dispose()
    assert len(rows) == 66_000 and len(emptied) == 1           # the image went with them
    assert find(h, query("/pg/many/*"))[0] == X.BSA_RC_NO_MATCH
    X.BSATerminate(h)

