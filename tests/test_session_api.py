"""The Pythonic API: sessions, transactions that commit or abort, files, iterators, errors."""

from __future__ import annotations

import io
import os

import pytest

from openxbsa import xbsa as X
from openxbsa.session import Session, XBSAError


def test_backup_query_restore_delete(server):
    data = os.urandom(3_500_000)
    with Session(service=server.address, owner=("py", "app")) as s:
        with s.backup() as txn:
            with txn.create("/py/a", description="first", info=b"meta") as f:
                for i in range(0, len(data), 100_000):
                    f.write(data[i:i + 100_000])
            with txn.create("/py/empty", size=0):
                pass
        copy_id = f.descriptor.copyId
        found = list(s.query("/py/*"))
        assert {d.objectName.pathName for d in found} == {"/py/a", "/py/empty"}
        assert [d.objectInfo for d in found if d.copyId == copy_id] == [b"meta"]
        with s.restore() as txn:
            with txn.open(copy_id) as r:
                assert r.read() == data
            with txn.open([d.copyId for d in found if d.objectName.pathName == "/py/empty"][0]) as r:
                assert r.read() == b""
        s.delete(copy_id)
        assert [d.objectName.pathName for d in s.query("/py/*")] == ["/py/empty"]


def test_an_exception_aborts_the_transaction(server):
    with Session(service=server.address) as s:
        with pytest.raises(ValueError):
            with s.backup() as txn, txn.create("/py/aborted") as f:
                f.write(b"never visible")
                raise ValueError("boom")
        assert list(s.query("/py/aborted")) == []


def test_errors_carry_the_rc(server):
    with Session(service=server.address) as s:
        with pytest.raises(XBSAError) as err:
            with s.restore() as txn:
                txn.open(2**60)
        assert err.value.rc == X.BSA_RC_OBJECT_NOT_FOUND and "OBJECT_NOT_FOUND" in str(err.value)


def test_file_objects_work_with_the_standard_library(server):
    import shutil
    src = io.BytesIO(os.urandom(2_000_003))
    with Session(service=server.address) as s:
        with s.backup() as txn, txn.create("/py/copyfileobj") as f:
            shutil.copyfileobj(src, f, 70_000)
        out = io.BytesIO()
        with s.restore() as txn, txn.open(f.descriptor.copyId) as r:
            shutil.copyfileobj(r, out, 33_333)
        assert out.getvalue() == src.getvalue()
        assert s.environment["BSA_API_VERSION"] == "1.1.0"


def test_session_refuses_a_bad_service_clearly(tmp_path):
    with pytest.raises(XBSAError) as err:
        Session(service=f"unix:{tmp_path}/absent.sock")
    assert err.value.rc == X.BSA_RC_ABORT_SYSTEM_ERROR and "cannot reach" in str(err.value)
