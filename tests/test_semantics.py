"""The rules of reference §9–§11 and issue #2, one test per rule, against a real server."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time

import pytest

from openxbsa import xbsa as X
from tests.conftest import backup, descriptor, find, init, query, read_all, restore, send_all

OK = X.BSA_RC_SUCCESS


@pytest.fixture
def h(server):
    handle = init(server)
    yield handle
    X.BSATerminate(handle)


def unique(name: str) -> str:
    return f"/sem/{name}/{time.time_ns()}"


# ------------------------------------------------------------------ session-less calls
def test_api_version_is_1_1_0():
    rc, v = X.BSAQueryApiVersion()
    assert rc == OK and (v.issue, v.version, v.level) == (1, 1, 0)


def test_service_provider_is_three_field_hierarchical_name():
    rc, delim, provider = X.BSAQueryServiceProvider()
    assert rc == OK and delim == "/"
    assert len(provider.split(delim)) == 3


def test_structures_default_to_zero_values():
    d = X.BSA_ObjectDescriptor()
    assert (d.copyId, d.copyType, d.objectType, d.estimatedSize, d.createTime) == (0, 0, 0, 0, None)
    assert d.objectOwner == X.BSA_ObjectOwner("", "") and d.objectInfo == b""
    q = X.BSA_QueryDescriptor()
    assert q.createTime_from is None and q.objectStatus == 0
    b = X.BSA_DataBlock32()
    assert (b.bufferLen, b.numBytes, b.headerBytes, b.bufferPtr) == (0, 0, 0, None)


# ------------------------------------------------------------------ BSAInit and environment
def test_init_requires_api_version(server):
    rc, handle = X.BSAInit(None, X.BSA_ObjectOwner(), [f"BSA_SERVICE_HOST={server.address}"])
    assert rc == X.BSA_RC_INVALID_ENV and handle is None
    assert "BSA_API_VERSION" in X.BSAGetLastError()[1]


def test_init_rejects_unsupported_version(server):
    rc, _ = X.BSAInit(None, X.BSA_ObjectOwner(), ["BSA_API_VERSION=2.0.0",
                                                  f"BSA_SERVICE_HOST={server.address}"])
    assert rc == X.BSA_RC_VERSION_NOT_SUPPORTED


@pytest.mark.parametrize("entry", ["BSA_API_VERSION = 1.1.0", "NOEQUALS", "=value",
                                   "KEY= value", "K EY=v"])
def test_init_rejects_malformed_environment(server, entry):
    rc, _ = X.BSAInit(None, X.BSA_ObjectOwner(), server.xbsa_env + [entry])
    assert rc == X.BSA_RC_INVALID_ENV


def test_init_null_arguments(server):
    assert X.BSAInit(None, None, server.xbsa_env)[0] == X.BSA_RC_NULL_ARGUMENT
    assert X.BSAInit(None, X.BSA_ObjectOwner(), None)[0] == X.BSA_RC_NULL_ARGUMENT


def test_one_session_per_process(server, h):
    rc, _ = X.BSAInit(None, X.BSA_ObjectOwner(), server.xbsa_env)
    assert rc == X.BSA_RC_INVALID_CALL_SEQUENCE


def test_unreachable_service_is_a_system_error(tmp_path):
    rc, _ = X.BSAInit(None, X.BSA_ObjectOwner(), ["BSA_API_VERSION=1.1.0",
                                                  f"BSA_SERVICE_HOST=unix:{tmp_path}/none.sock"])
    assert rc == X.BSA_RC_ABORT_SYSTEM_ERROR
    assert "cannot reach" in X.BSAGetLastError()[1]


def test_environment_shows_values_the_service_filled_in(server):
    handle = init(server, owner=("XBSA Client", "XBSA App"), extra=["NBBSA_KEYWORD=nightly"])
    rc, owner, env = X.BSAGetEnvironment(handle)
    assert rc == OK and owner == X.BSA_ObjectOwner("XBSA Client", "XBSA App")
    values = dict(e.split("=", 1) for e in env)
    assert values["BSA_API_VERSION"] == "1.1.0"
    assert values["BSA_DELIMITER"] == "/"
    assert values["BSA_SERVICE_HOST"] == server.address
    assert values["BSA_SERVICE_PROVIDER"] == X.BSAQueryServiceProvider()[2]
    assert values["NBBSA_KEYWORD"] == "nightly"
    assert values["NBBSA_CLIENT_HOST"]
    X.BSATerminate(handle)


def test_invalid_handle_everywhere(h):
    bad = h + 1000
    assert X.BSABeginTxn(bad) == X.BSA_RC_INVALID_HANDLE
    assert X.BSAGetEnvironment(bad)[0] == X.BSA_RC_INVALID_HANDLE
    assert X.BSATerminate("nonsense") == X.BSA_RC_INVALID_HANDLE
    assert "handle" in X.BSAGetLastError()[1]


def test_terminated_handle_is_invalid(server):
    handle = init(server)
    assert X.BSATerminate(handle) == OK
    assert X.BSABeginTxn(handle) == X.BSA_RC_INVALID_HANDLE


# ------------------------------------------------------------------ descriptors
@pytest.mark.parametrize("change", [
    {"copyType": X.BSA_CopyType_ANY}, {"copyType": 0}, {"objectType": X.BSA_ObjectType_ANY},
    {"objectType": 9}, {"resourceType": ""}, {"resourceType": "r" * 31},
    {"objectDescription": "d" * 100}, {"objectInfo": b"i" * 257}, {"estimatedSize": -1},
    {"estimatedSize": 2**64}, {"objectName": X.BSA_ObjectName("", "")},
    {"objectName": X.BSA_ObjectName("", "/" + "p" * 1023)},
    {"objectName": X.BSA_ObjectName("s" * 1024, "/p")},
    {"objectOwner": X.BSA_ObjectOwner("o" * 64, "")},
    {"objectOwner": X.BSA_ObjectOwner("", "a\x00b")},
    {"objectName": X.BSA_ObjectName("", 42)},
])
def test_invalid_object_descriptor(h, change):
    assert X.BSABeginTxn(h) == OK
    d = descriptor("/sem/invalid", 10)
    for k, v in change.items():
        setattr(d, k, v)
    assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == X.BSA_RC_INVALID_OBJECTDESCRIPTOR
    assert X.BSAGetLastError()[1]
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_longest_valid_strings_are_accepted(h):
    d = descriptor("/" + "p" * 1022, 3, space="s" * 1023, owner=("o" * 63, "a" * 63),
                   resourceType="r" * 30, objectDescription="d" * 99, objectInfo=b"\x01" * 256)
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
    send_all(h, b"abc")
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    rc, found = find(h, query("/" + "p" * 1022, space="s" * 1023, owner=("o" * 63, "a" * 63)))
    got = [f for f in found if f.copyId == d.copyId][0]
    assert got.objectInfo == b"\x01" * 256 and got.objectDescription == "d" * 99
    assert got.resourceType == "r" * 30


def test_null_arguments(h):
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, None, X.BSA_DataBlock32()) == X.BSA_RC_NULL_ARGUMENT
    assert X.BSACreateObject(h, descriptor("/n"), None) == X.BSA_RC_NULL_ARGUMENT
    assert X.BSAQueryObject(h, None, X.BSA_ObjectDescriptor()) == X.BSA_RC_NULL_ARGUMENT
    assert X.BSAQueryObject(h, query("/*"), None) == X.BSA_RC_NULL_ARGUMENT
    assert X.BSAGetObject(h, None, X.BSA_DataBlock32()) == X.BSA_RC_NULL_ARGUMENT
    assert X.BSAGetNextQueryObject(h, None) == X.BSA_RC_NULL_ARGUMENT
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_create_fills_service_fields(h):
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    d = backup(h, unique("fields"), b"data")
    assert d.copyId > 0 and d.restoreOrder > 0
    assert d.objectStatus == X.BSA_ObjectStatus_MOST_RECENT
    assert d.createTime.tzinfo is not None and d.createTime.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= d.createTime <= dt.datetime.now(dt.timezone.utc)


def test_create_reports_buffer_needs_in_the_data_block(h):
    assert X.BSABeginTxn(h) == OK
    block = X.BSA_DataBlock32()
    assert X.BSACreateObject(h, descriptor("/sem/block", 5), block) == OK
    assert block.headerBytes == 0 and block.bufferLen > 0
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


# ------------------------------------------------------------------ data transfer
def test_only_the_last_buffer_may_be_short(h):
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor("/sem/short", 100), X.BSA_DataBlock32()) == OK
    buf = bytearray(100)
    assert X.BSASendData(h, X.BSA_DataBlock32(100, 40, 0, 0, 0, buf)) == OK
    assert X.BSASendData(h, X.BSA_DataBlock32(100, 40, 0, 0, 0, buf)) == X.BSA_RC_INVALID_DATABLOCK
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


@pytest.mark.parametrize("block", [
    X.BSA_DataBlock32(10, 20, 0, 0, 0, bytearray(10)),      # numBytes > bufferLen
    X.BSA_DataBlock32(10, 5, 8, 0, 0, bytearray(10)),       # header + data > bufferLen
    X.BSA_DataBlock32(10, 10, 0, 0, 0, None),               # no buffer
    X.BSA_DataBlock32(100, 100, 0, 0, 0, bytearray(10)),    # buffer smaller than said
    X.BSA_DataBlock32(-1, 0, 0, 0, 0, bytearray(10)),
])
def test_inconsistent_data_block(h, block):
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor("/sem/db", 100), X.BSA_DataBlock32()) == OK
    assert X.BSASendData(h, block) == X.BSA_RC_INVALID_DATABLOCK
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_header_bytes_are_skipped_when_sending_and_receiving(h):
    payload = os.urandom(1000)
    assert X.BSABeginTxn(h) == OK
    d = descriptor(unique("header"), len(payload))
    assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
    buf = bytearray(b"H" * 16) + payload
    assert X.BSASendData(h, X.BSA_DataBlock32(1016, 1000, 16, 0, 0, buf)) == OK
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == OK
    data, _ = read_all(h, buf_len=300, header=20)
    assert data == payload
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK


def test_empty_object_takes_no_data(h):
    assert X.BSABeginTxn(h) == OK
    d = descriptor(unique("empty"), 0)
    assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
    block = X.BSA_DataBlock32(10, 10, 0, 0, 0, bytearray(10))
    assert X.BSASendData(h, block) == X.BSA_RC_INVALID_CALL_SEQUENCE
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    assert restore(h, d.copyId) == b""


def test_get_data_fills_buffers_and_no_more_data_comes_with_the_last_bytes(h):
    payload = os.urandom(2500)
    d = backup(h, unique("fill"), payload)
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == OK
    data, sizes = read_all(h, buf_len=1000)
    assert data == payload and sizes == [1000, 1000, 500]
    # asking again after the end keeps saying so
    block = X.BSA_DataBlock32(10, 0, 0, 0, 0, bytearray(10))
    assert X.BSAGetData(h, block) == X.BSA_RC_NO_MORE_DATA and block.numBytes == 0
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK


def test_exact_multiple_of_the_buffer_ends_with_the_last_full_buffer(h):
    payload = os.urandom(3000)
    d = backup(h, unique("exact"), payload)
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == OK
    data, sizes = read_all(h, buf_len=1000)
    assert data == payload and sizes == [1000, 1000, 1000]
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_read_only_part_then_end_data_then_next_object(h):
    a = backup(h, unique("part-a"), os.urandom(5_000_000))
    b_payload = os.urandom(1234)
    b = backup(h, unique("part-b"), b_payload)
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=a.copyId), X.BSA_DataBlock32()) == OK
    block = X.BSA_DataBlock32(4096, 0, 0, 0, 0, bytearray(4096))
    assert X.BSAGetData(h, block) == OK and block.numBytes == 4096
    assert X.BSAEndData(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=b.copyId), X.BSA_DataBlock32()) == OK
    data, _ = read_all(h)
    assert data == b_payload
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK


def test_receive_buffer_must_be_writable(h):
    d = backup(h, unique("ro"), b"abc")
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == OK
    assert X.BSAGetData(h, X.BSA_DataBlock32(10, 0, 0, 0, 0, b"0123456789")) == X.BSA_RC_INVALID_DATABLOCK
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


# ------------------------------------------------------------------ transactions
def test_abort_nullifies_the_backup(server, h):
    path = unique("abort")
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor(path, 4), X.BSA_DataBlock32()) == OK
    send_all(h, b"gone")
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    assert find(h, query(path))[0] == X.BSA_RC_NO_MATCH


def test_terminate_inside_a_transaction_aborts_it(server):
    handle = init(server)
    path = unique("terminate")
    assert X.BSABeginTxn(handle) == OK
    assert X.BSACreateObject(handle, descriptor(path, 4), X.BSA_DataBlock32()) == OK
    send_all(handle, b"gone")
    assert X.BSAEndData(handle) == OK
    assert X.BSATerminate(handle) == OK
    handle = init(server)
    assert find(handle, query(path))[0] == X.BSA_RC_NO_MATCH
    X.BSATerminate(handle)


def test_commit_with_an_open_object_is_aborted(h):
    path = unique("open")
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor(path, 4), X.BSA_DataBlock32()) == OK
    send_all(h, b"half")
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == X.BSA_RC_TRANSACTION_ABORTED
    assert find(h, query(path))[0] == X.BSA_RC_NO_MATCH


def test_invalid_vote(h):
    assert X.BSABeginTxn(h) == OK
    assert X.BSAEndTxn(h, 7) == X.BSA_RC_INVALID_VOTE
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_conditional_vote_commits_with_partial_success(server, h):
    path = unique("conditional")
    assert X.BSABeginTxn(h) == OK
    d = descriptor(path, 2)
    assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
    send_all(h, b"ok")
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.NBBSA_Vote_CONDITIONAL) == OK
    assert restore(h, d.copyId) == b"ok"
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    assert any(j["status"] == 1 and j["type"] == "Backup" for j in jobs)


def test_transaction_type_is_fixed_by_the_first_operation(h):
    d = backup(h, unique("fixed"), b"x")
    assert X.BSABeginTxn(h) == OK                 # restore transaction
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == OK
    read_all(h)
    assert X.BSAEndData(h) == OK
    assert X.BSACreateObject(h, descriptor("/x"), X.BSA_DataBlock32()) == X.BSA_RC_INVALID_CALL_SEQUENCE
    assert X.BSADeleteObject(h, d.copyId) == X.BSA_RC_INVALID_CALL_SEQUENCE
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    assert X.BSABeginTxn(h) == OK                 # delete transaction
    assert X.BSADeleteObject(h, d.copyId) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == \
        X.BSA_RC_INVALID_CALL_SEQUENCE
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_queries_are_refused_in_a_backup_transaction(h):
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor("/q", 1), X.BSA_DataBlock32()) == OK
    send_all(h, b"q")
    assert X.BSAEndData(h) == OK
    assert X.BSAQueryObject(h, query("/*"), X.BSA_ObjectDescriptor()) == X.BSA_RC_INVALID_CALL_SEQUENCE
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_a_query_transaction_cannot_create(h):
    backup(h, unique("qt"), b"x")
    assert X.BSABeginTxn(h) == OK
    X.BSAQueryObject(h, query("/sem/*"), X.BSA_ObjectDescriptor())
    assert X.BSACreateObject(h, descriptor("/x"), X.BSA_DataBlock32()) == X.BSA_RC_INVALID_CALL_SEQUENCE
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK


def test_query_then_restore_then_query_in_one_transaction(h):
    path = unique("qrq")
    backup(h, path, b"restored")
    assert X.BSABeginTxn(h) == OK
    d = X.BSA_ObjectDescriptor()
    assert X.BSAQueryObject(h, query(path), d) == OK
    assert X.BSAGetObject(h, d, X.BSA_DataBlock32()) == OK
    assert read_all(h)[0] == b"restored"
    assert X.BSAEndData(h) == OK
    assert X.BSAQueryObject(h, query(path), X.BSA_ObjectDescriptor()) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK


# ------------------------------------------------------------------ images and jobs
def test_one_image_per_backup_transaction_with_a_netbackup_backup_id(server, h):
    assert X.BSABeginTxn(h) == OK
    for i in range(3):
        assert X.BSACreateObject(h, descriptor(unique(f"img{i}"), 1), X.BSA_DataBlock32()) == OK
        send_all(h, b"i")
        assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    images = json.loads(server.cli("images", "--json").stdout)
    newest = images[0]
    assert newest["num_files"] == 3
    assert re.fullmatch(r".+_\d{10}", newest["backupid"])
    client, ctime = newest["backupid"].rsplit("_", 1)
    assert client == newest["client"] and int(ctime) == newest["backup_time"]
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    job = [j for j in jobs if j["jobid"] == newest["jobid"]][0]
    assert (job["type"], job["state_name"], job["status"], job["files"]) == ("Backup", "Done", 0, 3)


def test_backup_ids_are_unique_within_a_second(server, h):
    for i in range(3):
        backup(h, unique(f"same-second{i}"), b"x")
    ids = [i["backupid"] for i in json.loads(server.cli("images", "--json").stdout)]
    assert len(ids) == len(set(ids))


def test_every_restore_is_a_job(server, h):
    d = backup(h, unique("restore-job"), b"r" * 3000)
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == OK
    rc, job_id = X.NBBSAGetJobId(h)
    assert rc == OK and read_all(h)[0] == b"r" * 3000
    assert X.BSAEndData(h) == OK and X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    (job,) = [j for j in json.loads(server.cli("jobs", "--json").stdout) if j["jobid"] == job_id]
    assert (job["type"], job["status"], job["files"], job["kbytes"]) == ("Restore", 0, 1, 3)


# ------------------------------------------------------------------ names, versions, queries
def test_duplicate_names_make_new_copies_and_most_recent_is_derived(h):
    path = unique("dup")
    first = backup(h, path, b"one")
    second = backup(h, path, b"two")
    assert first.copyId != second.copyId
    _, found = find(h, query(path))
    status = {d.copyId: d.objectStatus for d in found}
    assert status == {first.copyId: X.BSA_ObjectStatus_NOT_MOST_RECENT,
                      second.copyId: X.BSA_ObjectStatus_MOST_RECENT}
    _, recent = find(h, query(path, status=X.BSA_ObjectStatus_MOST_RECENT))
    assert [d.copyId for d in recent] == [second.copyId]
    _, older = find(h, query(path, status=X.BSA_ObjectStatus_NOT_MOST_RECENT))
    assert [d.copyId for d in older] == [first.copyId]
    # the same name under another owner is another object
    other = backup(h, path, b"three", owner=("other", ""))
    _, recent = find(h, query(path, owner=("*", "*"), status=X.BSA_ObjectStatus_MOST_RECENT))
    assert {d.copyId for d in recent} == {second.copyId, other.copyId}


def test_deleting_the_most_recent_copy_promotes_the_previous_one(h):
    path = unique("promote")
    first = backup(h, path, b"one")
    second = backup(h, path, b"two")
    assert X.BSABeginTxn(h) == OK
    assert X.BSADeleteObject(h, second.copyId) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    _, found = find(h, query(path, status=X.BSA_ObjectStatus_MOST_RECENT))
    assert [d.copyId for d in found] == [first.copyId]


def test_deleting_each_match_while_walking_the_query(h):
    """Greenplum's NetBackup delete helper: one transaction, BSAQueryObject on a wildcard,
    BSADeleteObject on each match, BSAGetNextQueryObject for the next; the deletes must not
    disturb the cursor, and take effect together at the commit (then the older copy of a
    name, not matched as MOST_RECENT before, becomes the most recent)."""
    base = unique("walkdel")
    older = backup(h, f"{base}/d1", b"old")
    newest = {name: backup(h, f"{base}/{name}", name.encode()) for name in ("d1", "d2", "d3")}
    assert X.BSABeginTxn(h) == OK
    d = X.BSA_ObjectDescriptor()
    walked = []
    rc = X.BSAQueryObject(h, query(f"{base}/*", status=X.BSA_ObjectStatus_MOST_RECENT), d)
    while rc == OK:
        walked.append(d.copyId)
        assert X.BSADeleteObject(h, d.copyId) == OK
        d = X.BSA_ObjectDescriptor()
        rc = X.BSAGetNextQueryObject(h, d)
    assert rc == X.BSA_RC_NO_MORE_DATA
    assert sorted(walked) == sorted(o.copyId for o in newest.values())
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    _, left = find(h, query(f"{base}/*", status=X.BSA_ObjectStatus_MOST_RECENT))
    assert [o.copyId for o in left] == [older.copyId]
    assert restore(h, older.copyId) == b"old"


def test_wildcards(h):
    base = unique("wild")
    for name in ("a1", "a2", "b1", "a10"):
        backup(h, f"{base}/{name}", b"w", space="vol1" if name != "b1" else "vol2")
    names = lambda q: sorted(d.objectName.pathName.rsplit("/", 1)[1] for d in find(h, q)[1])
    assert names(query(f"{base}/*", space="*")) == ["a1", "a10", "a2", "b1"]
    assert names(query(f"{base}/a?", space="*")) == ["a1", "a2"]
    assert names(query(f"{base}/a*", space="vol1")) == ["a1", "a10", "a2"]
    assert names(query(f"{base}/*", space="vol?")) == ["a1", "a10", "a2", "b1"]
    assert names(query(f"{base}/A*", space="*")) == []        # case-sensitive
    assert names(query(f"{base}/a%", space="*")) == []        # % and _ are literal
    assert names(query(f"{base}/a_", space="*")) == []


def test_a_pattern_with_a_literal_start_finds_exactly_the_names_that_match_it(h):
    """A pattern such as "/db/2026*" is looked up as the range of names that start so
    (an index seek rather than a walk through every object of the user): the range must
    neither lose nor add a name, whatever characters end its literal part — the largest
    code point, the last before the surrogates, LIKE's own % and _ — compared with a
    plain reading of the pattern (* any string, ? one character)."""
    base = unique("prefix")
    tails = ["a", "a\uffff", "a\U0010ffff", "a\U0010ffffz", "a\ud7ff", "a\ud7ffx", "a\ue000",
             "b", "a%", "a%b", "a_x", "ab", "a/c", "\U0010ffff", "A", "aa\U0010ffff"]
    for tail in tails:
        backup(h, f"{base}/{tail}", b"p")
    patterns = ["a*", "a\uffff*", "a\U0010ffff*", "a\ud7ff*", "a%*", "a_*", "a?*", "*", "a",
                "\U0010ffff*", "aa\U0010ffff*", "a/*", "?%*", "A*"]
    for pattern in patterns:
        rx = re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                                for c in pattern), re.DOTALL)
        want = sorted(t for t in tails if rx.fullmatch(t))
        got = sorted(d.objectName.pathName[len(base) + 1:]
                     for d in find(h, query(f"{base}/{pattern}"))[1])
        assert got == want, pattern


def test_empty_strings_match_only_empty(h):
    path = unique("empty-match")
    plain = backup(h, path, b"e")
    spaced = backup(h, path, b"e", space="vol")
    owned = backup(h, path, b"e", owner=("me", "app"))
    ids = lambda q: {d.copyId for d in find(h, q)[1]}
    assert ids(query(path)) == {plain.copyId}
    assert ids(query(path, space="vol")) == {spaced.copyId}
    assert ids(query(path, owner=("me", "app"))) == {owned.copyId}
    assert ids(query(path, owner=("*", "*"), space="*")) == {plain.copyId, spaced.copyId, owned.copyId}
    assert find(h, query(""))[0] == X.BSA_RC_NO_MATCH


def test_create_time_range(h):
    path = unique("time")
    d = backup(h, path, b"t")
    t = d.createTime
    ids = lambda **kw: {x.copyId for x in find(h, query(path, **kw))[1]}
    assert ids(createTime_from=t, createTime_to=t) == {d.copyId}
    assert ids(createTime_from=t + dt.timedelta(seconds=1)) == set()
    assert ids(createTime_to=t - dt.timedelta(seconds=1)) == set()
    assert ids(createTime_from=t - dt.timedelta(days=1)) == {d.copyId}


def test_query_filters_on_copy_and_object_type(h):
    path = unique("types")
    a = backup(h, path, b"a", copy_type=X.BSA_CopyType_ARCHIVE, object_type=X.BSA_ObjectType_OTHER)
    b = backup(h, path, b"b")
    ids = lambda **kw: {x.copyId for x in find(h, query(path, **kw))[1]}
    assert ids(copyType=X.BSA_CopyType_ARCHIVE) == {a.copyId}
    assert ids(objectType=X.BSA_ObjectType_FILE) == {b.copyId}
    assert ids(objectType=X.BSA_ObjectType_DIRECTORY) == set()


@pytest.mark.parametrize("change", [
    {"copyType": 0}, {"objectType": 0}, {"objectStatus": 0}, {"objectStatus": 4},
    {"createTime_from": dt.datetime(2020, 1, 1)},       # naive: not UTC
    {"objectName": X.BSA_ObjectName("", "/" + "x" * 1023)},
])
def test_invalid_query_descriptor(h, change):
    assert X.BSABeginTxn(h) == OK
    q = query("/*")
    for k, v in change.items():
        setattr(q, k, v)
    assert X.BSAQueryObject(h, q, X.BSA_ObjectDescriptor()) == X.BSA_RC_INVALID_QUERYDESCRIPTOR
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_query_returns_every_attribute(h):
    path = unique("attrs")
    d = backup(h, path, b"12345", space="db1", owner=("XBSA Client", "XBSA App"),
               objectDescription="nightly dump", objectInfo=b"\x00\x01meta",
               object_type=X.BSA_ObjectType_OTHER)
    _, found = find(h, query(path, space="db1", owner=("XBSA Client", "XBSA App")))
    (got,) = found
    assert got.copyId == d.copyId and got.createTime == d.createTime
    assert got.restoreOrder == d.restoreOrder
    assert got.objectOwner == X.BSA_ObjectOwner("XBSA Client", "XBSA App")
    assert got.objectName == X.BSA_ObjectName("db1", path)
    assert (got.copyType, got.objectType, got.estimatedSize) == (X.BSA_CopyType_BACKUP,
                                                                 X.BSA_ObjectType_OTHER, 5)
    assert got.resourceType == "test stream" and got.objectDescription == "nightly dump"
    assert got.objectInfo == b"\x00\x01meta"


def test_huge_estimated_size_is_kept_exactly(h):
    path = unique("u64")
    assert X.BSABeginTxn(h) == OK
    d = descriptor(path, 2**64 - 1)
    assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
    send_all(h, b"x")
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    assert find(h, query(path))[1][0].estimatedSize == 2**64 - 1


def test_get_next_without_query_and_after_the_end(h):
    path = unique("next")
    backup(h, path, b"n")
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetNextQueryObject(h, X.BSA_ObjectDescriptor()) == X.BSA_RC_INVALID_CALL_SEQUENCE
    assert X.BSAQueryObject(h, query(path), X.BSA_ObjectDescriptor()) == OK
    assert X.BSAGetNextQueryObject(h, X.BSA_ObjectDescriptor()) == X.BSA_RC_NO_MORE_DATA
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK


def test_unknown_copy_ids(h):
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=0), X.BSA_DataBlock32()) == X.BSA_RC_INVALID_COPYID
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=2**62), X.BSA_DataBlock32()) == \
        X.BSA_RC_OBJECT_NOT_FOUND
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    assert X.BSABeginTxn(h) == OK
    assert X.BSADeleteObject(h, 0) == X.BSA_RC_INVALID_COPYID
    assert X.BSADeleteObject(h, 2**62) == X.BSA_RC_OBJECT_NOT_FOUND
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


# ------------------------------------------------------------------ delete
def image_file_blocks(server, backupid: str) -> int | None:
    for root, _dirs, files in os.walk(os.path.join(server.home, "storage")):
        for f in files:
            if f.startswith(backupid):
                return os.stat(os.path.join(root, f)).st_blocks
    return None


def test_delete_takes_effect_at_commit_and_abort_keeps_the_object(h):
    path = unique("del")
    d = backup(h, path, b"keep me")
    assert X.BSABeginTxn(h) == OK
    assert X.BSADeleteObject(h, d.copyId) == OK
    assert X.BSAQueryObject(h, query(path), X.BSA_ObjectDescriptor()) == OK   # still visible
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    assert restore(h, d.copyId) == b"keep me"
    assert X.BSABeginTxn(h) == OK
    assert X.BSADeleteObject(h, d.copyId) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    assert find(h, query(path))[0] == X.BSA_RC_NO_MATCH
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == \
        X.BSA_RC_OBJECT_NOT_FOUND
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_delete_one_object_of_a_multi_object_image_reclaims_its_space(server, h):
    big, small = os.urandom(4 << 20), os.urandom(1000)
    assert X.BSABeginTxn(h) == OK
    a, b = descriptor(unique("big"), len(big)), descriptor(unique("small"), len(small))
    for d, data in ((a, big), (b, small)):
        assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
        send_all(h, data)
        assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    backupid = json.loads(server.cli("images", "--json").stdout)[0]["backupid"]
    before = image_file_blocks(server, backupid)
    assert X.BSABeginTxn(h) == OK
    assert X.BSADeleteObject(h, a.copyId) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    after = image_file_blocks(server, backupid)
    assert after is not None and before is not None
    assert (before - after) * 512 >= len(big) - 8192
    assert restore(h, b.copyId) == small
    # deleting the last object removes the image and its file
    assert X.BSABeginTxn(h) == OK
    assert X.BSADeleteObject(h, b.copyId) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    assert image_file_blocks(server, backupid) is None
    assert backupid not in server.cli("images", "--json").stdout


def test_last_error_is_per_process_words(h):
    assert X.BSABeginTxn(h) == OK
    X.BSABeginTxn(h)
    rc, message = X.BSAGetLastError()
    assert rc == OK and "BSA_RC_INVALID_CALL_SEQUENCE" in message and "nest" in message
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_no_exception_escapes_on_nonsense_arguments(h):
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, "not a descriptor", X.BSA_DataBlock32()) == X.BSA_RC_INVALID_OBJECTDESCRIPTOR
    assert X.BSAQueryObject(h, object(), X.BSA_ObjectDescriptor()) == X.BSA_RC_INVALID_QUERYDESCRIPTOR
    assert X.BSADeleteObject(h, "12") == X.BSA_RC_INVALID_COPYID
    assert X.BSAEndTxn(h, "1") == X.BSA_RC_INVALID_VOTE
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_many_objects_in_one_transaction_keep_service_assigned_fields(h):
    """More objects than one copy-ID grant: IDs unique, order increasing, times the server's."""
    base = unique("many")
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    assert X.BSABeginTxn(h) == OK
    made = []
    block = X.BSA_DataBlock32()
    for i in range(2500):
        d = descriptor(f"{base}/{i}", 3)
        assert X.BSACreateObject(h, d, block) == OK
        assert X.BSASendData(h, X.BSA_DataBlock32(3, 3, 0, 0, 0, b"%03d" % (i % 1000))) == OK
        assert X.BSAEndData(h) == OK
        made.append(d)
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    after = dt.datetime.now(dt.timezone.utc)
    assert len({d.copyId for d in made}) == 2500
    orders = [d.restoreOrder for d in made]
    assert orders == sorted(orders) and len(set(orders)) == 2500
    assert all(before <= d.createTime <= after for d in made)
    _, found = find(h, query(f"{base}/*"))
    by_id = {f.copyId: f for f in found}
    assert set(by_id) == {d.copyId for d in made}
    assert all(by_id[d.copyId].createTime == d.createTime and
               by_id[d.copyId].restoreOrder == d.restoreOrder for d in made)
    assert restore(h, made[1999].copyId) == b"999"


def test_one_delete_transaction_across_many_images_keeps_every_image_right(server, h):
    """One delete transaction over more images than the catalog handles in one statement
    (500): an image with objects left keeps them, with its object count and size updated;
    an image left empty goes from the image list; nothing else changes."""
    base = unique("many-images")
    keep_data, gone_data = os.urandom(3000), os.urandom(5000)
    assert X.BSABeginTxn(h) == OK
    kept = []
    for i in range(3):                   # an image of three, one of them deleted
        d = descriptor(f"{base}/kept/{i}", len(keep_data))
        assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
        send_all(h, keep_data)
        assert X.BSAEndData(h) == OK
        kept.append(d)
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    singles = [backup(h, f"{base}/single/{i}", gone_data) for i in range(520)]
    images = lambda: {i["backupid"]: i for i in json.loads(server.cli("images", "--json").stdout)}
    before = images()
    (kept_image,) = [b for b, i in before.items() if i["num_files"] == 3 and
                     i["kbytes"] == (3 * len(keep_data) + 1023) // 1024]
    assert X.BSABeginTxn(h) == OK
    for d in [kept[1], *singles]:
        assert X.BSADeleteObject(h, d.copyId) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    after = images()
    assert len(set(before) - set(after)) == 520 and set(after) <= set(before)  # the singles
    assert after[kept_image]["num_files"] == 2
    assert after[kept_image]["kbytes"] == (2 * len(keep_data) + 1023) // 1024
    assert {k: v for k, v in after.items() if k != kept_image} == {
        k: v for k, v in before.items() if k in after and k != kept_image}
    assert restore(h, kept[0].copyId) == keep_data and restore(h, kept[2].copyId) == keep_data
    assert find(h, query(f"{base}/single/*"))[0] == X.BSA_RC_NO_MATCH


def test_backup_ids_stay_in_creation_order_after_deletes(server, h):
    first = backup(h, unique("order-a"), b"a")
    backup(h, unique("order-b"), b"b")
    assert X.BSABeginTxn(h) == OK
    assert X.NBBSADeleteImage(h, first.copyId) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    newest = backup(h, unique("order-c"), b"c")
    images = json.loads(server.cli("images", "--json").stdout)
    ctimes = [i["backup_time"] for i in images]
    assert ctimes == sorted(ctimes, reverse=True) and len(set(ctimes)) == len(ctimes)
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    assert images[0]["jobid"] == max(j["jobid"] for j in jobs if j["type"] == "Backup")
    assert find(h, query(newest.objectName.pathName))[1][0].copyId == newest.copyId


def test_service_host_may_be_a_bare_host_name_as_netbackup_agents_write_it(server, monkeypatch):
    import socket
    monkeypatch.setenv("OPENXBSA_HOME", server.home)   # this machine's server
    rc, handle = X.BSAInit(None, X.BSA_ObjectOwner(), ["BSA_API_VERSION=1.1.0",
                                                       f"BSA_SERVICE_HOST={socket.gethostname()}"])
    assert rc == OK, X.BSAGetLastError()
    d = backup(handle, unique("bare-host"), b"via the local socket")
    assert restore(handle, d.copyId) == b"via the local socket"
    X.BSATerminate(handle)
    rc, _ = X.BSAInit(None, X.BSA_ObjectOwner(), ["BSA_API_VERSION=1.1.0",
                                                  "BSA_SERVICE_HOST=no-such-host.invalid"])
    assert rc == X.BSA_RC_ABORT_SYSTEM_ERROR and "no-such-host.invalid" in X.BSAGetLastError()[1]


def test_a_running_backup_records_its_progress(server, h):
    assert X.BSABeginTxn(h) == OK
    for i in range(3):
        assert X.BSACreateObject(h, descriptor(f"/sem/progress/{i}", 1), X.BSA_DataBlock32()) == OK
        send_all(h, os.urandom(300_000))
        assert X.BSAEndData(h) == OK
        time.sleep(1.1)                      # progress is recorded at most once a second
    assert X.BSABeginTxn(h) == X.BSA_RC_INVALID_CALL_SEQUENCE   # a round trip: all arrived
    job_id = X.NBBSAGetJobId(h)[1]

    def this_job() -> dict:
        (job,) = [j for j in json.loads(server.cli("jobs", "--json").stdout)
                  if j["jobid"] == job_id]
        return job
    job = this_job()
    assert job["state_name"] == "Active" and job["files"] >= 2 and job["kbytes"] >= 580
    assert job["current_object"].startswith("/sem/progress/")
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    job = this_job()
    assert job["state_name"] == "Done" and job["files"] == 3
    # KB/s over the whole seconds the job ran (one at least: a fast job is not 0 KB/s)
    assert job["kbpersec"] == job["kbytes"] // max(job["elapsed"], 1) > 0


def test_objects_recorded_during_a_long_transaction_stay_invisible_and_go_with_an_abort(server, h):
    base = unique("flushed")
    assert X.BSABeginTxn(h) == OK
    block = X.BSA_DataBlock32()
    for i in range(2100):                       # more than the server keeps in memory
        assert X.BSACreateObject(h, descriptor(f"{base}/{i}", 1), block) == OK
        assert X.BSASendData(h, X.BSA_DataBlock32(1, 1, 0, 0, 0, b"f")) == OK
        assert X.BSAEndData(h) == OK
    assert X.BSABeginTxn(h) == X.BSA_RC_INVALID_CALL_SEQUENCE   # a round trip: all arrived
    assert json.loads(server.cli("list", "--json", f"{base}/*").stdout) == []
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    from openxbsa.admin.views import open_catalog
    from openxbsa.catalog.schema import objects
    import sqlalchemy as sa
    with open_catalog(server.home).engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(objects)
                            .where(objects.c.path_name.like(f"{base}/%"))).scalar()
    assert left == 0


FORK_SCRIPT = r"""
import json, os, sys
from openxbsa import xbsa as X
env = ["BSA_API_VERSION=1.1.0", "BSA_SERVICE_HOST=" + sys.argv[1]]
name = sys.argv[2]

def create(h, path, size):
    d = X.BSA_ObjectDescriptor(objectName=X.BSA_ObjectName("/fork", path), copyType=3,
                               objectType=2, resourceType="fork", estimatedSize=size)
    block = X.BSA_DataBlock32()
    assert X.BSACreateObject(h, d, block) == 0, X.BSAGetLastError()
    return d, block

def send(h, block, data):
    block.bufferLen = block.numBytes = len(data)
    block.bufferPtr = data
    return X.BSASendData(h, block)

rc, h = X.BSAInit(None, X.BSA_ObjectOwner("fork", ""), env)
assert rc == 0 and X.BSABeginTxn(h) == 0
parent, block = create(h, name + "/parent", 2000)
assert send(h, block, b"A" * 1000) == 0
r, w = os.pipe()
pid = os.fork()
if pid == 0:                                  # the child ends normally: no os._exit
    seen = {"parent_handle_send": send(h, block, b"X" * 1000),
            "parent_handle_terminate": X.BSATerminate(h)}
    rc, mine = X.BSAInit(None, X.BSA_ObjectOwner("fork", ""), env)
    seen["own_init"] = rc
    X.BSABeginTxn(mine)
    d, b = create(mine, name + "/child", 500)
    seen["own_send"] = send(mine, b, b"C" * 500)
    seen["own_commit"] = X.BSAEndData(mine) + X.BSAEndTxn(mine, X.BSA_Vote_COMMIT)
    seen["own_terminate"] = X.BSATerminate(mine)
    os.write(w, json.dumps(seen).encode())
    sys.exit(0)
os.close(w)
os.waitpid(pid, 0)
child = json.loads(os.read(r, 4096))
rcs = [send(h, block, b"B" * 1000), X.BSAEndData(h), X.BSAEndTxn(h, X.BSA_Vote_COMMIT)]
print(json.dumps({"child": child, "parent": rcs, "error": X.BSAGetLastError()[1],
                  "copyId": parent.copyId}))
X.BSATerminate(h)
"""


def test_a_forked_child_cannot_use_the_parents_session_but_may_open_its_own(server, tmp_path):
    """After fork the child shares the parent's connection but not its session: its calls
    on the parent's handle answer INVALID_HANDLE and send nothing, it opens a session of
    its own (C425's one per process holds per process), and when it ends the parent's
    object — half sent before the fork, half after — commits byte-exact."""
    name = unique("fork")
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    out = subprocess.run([sys.executable, str(script), server.address, name],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["child"] == {"parent_handle_send": X.BSA_RC_INVALID_HANDLE,
                            "parent_handle_terminate": X.BSA_RC_INVALID_HANDLE,
                            "own_init": OK, "own_send": OK, "own_commit": OK,
                            "own_terminate": OK}
    assert got["parent"] == [OK, OK, OK], got["error"]
    h = init(server, owner=("fork", ""))
    try:
        assert restore(h, got["copyId"]) == b"A" * 1000 + b"B" * 1000
        rc, found = find(h, query(name + "/*", "/fork"))
        assert rc == OK
        assert sorted(d.objectName.pathName for d in found) == [name + "/child",
                                                                name + "/parent"]
    finally:
        X.BSATerminate(h)
