"""The 15 NetBackup XBSA extensions and the environment rules, against a real server."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from openxbsa import xbsa as X
from tests.conftest import (
    backup, configured_server, descriptor, find, init, query, read_all, restore, send_all,
)

OK, ICS = X.BSA_RC_SUCCESS, X.BSA_RC_INVALID_CALL_SEQUENCE


@pytest.fixture
def h(server):
    handle = init(server)
    yield handle
    X.BSATerminate(handle)


def env_of(h: int) -> dict[str, str]:
    return dict(e.split("=", 1) for e in X.BSAGetEnvironment(h)[2])


def test_every_call_exists_and_refuses_a_dead_handle():
    assert len(X.NBBSA_CALLS) == 15 and len(X.CORE_CALLS) == 16
    dead = 424242
    assert X.NBBSASetEnv(dead, "NBBSA_KEYWORD", "x") == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSAUpdateEnv(dead, []) == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSAGetEnv(dead, "BSA_API_VERSION")[0] == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSAGetJobId(dead)[0] == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSAGetJobInfo(dead)[0] == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSAGetServerError(dead)[0] == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSALogMsg(dead, X.MSERROR, "m", "s") == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSAValidateFeatureId(dead, "DataStore") == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSADeleteImage(dead, 1) == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSAGetMediaIds(dead, 1)[0] == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSAAddToMultiObjectRestoreList(dead, X.BSA_ObjectDescriptor(copyId=1)) == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSAGetMultipleObjects(dead) == X.BSA_RC_INVALID_HANDLE
    assert X.NBBSAEndGetMultipleObjects(dead) == X.BSA_RC_INVALID_HANDLE


# ------------------------------------------------------------------ error strings
def test_error_string_for_every_code_without_a_session():
    for code, name in X.RC_NAMES.items():
        rc, text = X.NBBSAGetErrorString(code)
        assert rc == OK and name in text and len(text) > len(name) + 5
    assert "unknown" in X.NBBSAGetErrorString(9999)[1]


def test_error_string_buffer_too_small_returns_the_needed_size():
    rc, text = X.NBBSAGetErrorString(X.BSA_RC_NO_MATCH)
    needed = len(text.encode()) + 1
    assert X.NBBSAGetErrorString(X.BSA_RC_NO_MATCH, size=needed - 1) == (X.BSA_RC_BUFFER_TOO_SMALL, needed)
    assert X.NBBSAGetErrorString(X.BSA_RC_NO_MATCH, size=needed) == (OK, text)
    assert X.NBBSAGetErrorString(X.BSA_RC_NO_MATCH, size=0) == (X.BSA_RC_BUFFER_TOO_SMALL, needed)


def test_server_error_reports_the_netbackup_status_of_the_last_operation(server):
    h = init(server, extra=["NBBSA_POLICY=no-such-policy"])
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor("/nb/x", 1), X.BSA_DataBlock32()) == X.BSA_RC_ABORT_SYSTEM_ERROR
    rc, code, text = X.NBBSAGetServerError(h)
    assert rc == OK and code == 198 and "no active policies" in text
    rc, needed = X.NBBSAGetServerError(h, size=3)[0], X.NBBSAGetServerError(h, size=3)[2]
    assert rc == X.BSA_RC_BUFFER_TOO_SMALL and needed == len(text.encode()) + 1
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    assert X.BSABeginTxn(h) == OK
    assert X.NBBSAGetServerError(h)[:2] == (OK, 0)
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    X.BSATerminate(h)


def test_a_commit_refused_for_a_server_status_reports_that_status(server):
    """An agent that learns of the failure only at BSAEndTxn (TRANSACTION_ABORTED) and then
    asks the server's status gets the status that doomed the transaction, not the success
    of the abort that followed; BSAGetLastError names it too."""
    h = init(server, extra=["NBBSA_POLICY=no-such-policy"])
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor("/nb/y", 1), X.BSA_DataBlock32()) == \
        X.BSA_RC_ABORT_SYSTEM_ERROR
    assert X.NBBSALogMsg(h, X.NBBSA_MS_ERROR, "create failed", "agent") == OK   # no reset
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == X.BSA_RC_TRANSACTION_ABORTED
    rc, code, text = X.NBBSAGetServerError(h)
    assert (rc, code) == (OK, 198) and "no active policies" in text
    assert "NetBackup status 198" in X.BSAGetLastError()[1]
    assert X.BSABeginTxn(h) == OK                       # the next transaction starts clean
    assert X.NBBSAGetServerError(h)[:2] == (OK, 0)
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    X.BSATerminate(h)


# ------------------------------------------------------------------ environment
KEYWORDS = {
    # keyword: (a valid new value, changeable between txns?, changeable inside a txn?)
    "BSA_API_VERSION": ("1.1.0-other", False, False),
    "NBBSA_LOG_DIRECTORY": ("/tmp/other-log-dir", False, False),
    "NBBSA_CLIENT_HOST": ("otherhost", True, False),
    "NBBSA_POLICY": ("openxbsa-default", True, False),
    "NBBSA_SCHEDULE": ("Default-Application-Backup", True, False),
    "NBBSA_KEYWORD": ("weekly", True, True),
    "NBBSA_FEATURE_ID": ("DataStore", True, True),
    "NBBSA_DB_TYPE": ("postgres", True, True),         # unknown NBBSA_* kept as given
}


@pytest.mark.parametrize("key", list(KEYWORDS))
def test_environment_table(server, tmp_path, key):
    value, between, inside = KEYWORDS[key]
    if key == "NBBSA_LOG_DIRECTORY":
        value = str(tmp_path / "changed")
    # at BSAInit every keyword may be given
    at_init = value if key != "BSA_API_VERSION" else "1.1.0"
    h = init(server, extra=[f"{key}={at_init}"] if key != "BSA_API_VERSION" else [])
    assert env_of(h)[key] == at_init
    assert X.NBBSAGetEnv(h, key) == (OK, at_init)
    new = value + "2" if key not in ("NBBSA_POLICY", "NBBSA_SCHEDULE", "NBBSA_FEATURE_ID") else value
    if key in ("NBBSA_POLICY", "NBBSA_SCHEDULE", "NBBSA_FEATURE_ID"):
        new = value
        assert X.NBBSASetEnv(h, key, "") == OK        # change it away first ...
    rc = X.NBBSASetEnv(h, key, new)                   # ... between transactions
    assert rc == (OK if between else ICS), X.BSAGetLastError()
    assert (X.NBBSAGetEnv(h, key)[1] == new) == between
    assert X.BSABeginTxn(h) == OK
    rc = X.NBBSAUpdateEnv(h, [f"{key}={new}-inside"])  # inside a transaction
    assert rc == (OK if inside else ICS), X.BSAGetLastError()
    assert (env_of(h)[key] == f"{new}-inside") == inside
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    X.BSATerminate(h)


def test_update_env_is_all_or_nothing_and_rejects_malformed_entries(h):
    assert X.NBBSAUpdateEnv(h, ["NBBSA_KEYWORD=a", "BAD ENTRY"]) == X.BSA_RC_INVALID_ENV
    assert X.NBBSAGetEnv(h, "NBBSA_KEYWORD") == (OK, "")
    assert X.NBBSAUpdateEnv(h, ["NBBSA_KEYWORD=a", "NBBSA_OTHER=b"]) == OK
    assert (env_of(h)["NBBSA_KEYWORD"], env_of(h)["NBBSA_OTHER"]) == ("a", "b")
    assert X.NBBSASetEnv(h, "NBBSA KEY", "x") == X.BSA_RC_INVALID_ENV
    assert X.NBBSASetEnv(h, None, "x") == X.BSA_RC_NULL_ARGUMENT
    assert X.NBBSAUpdateEnv(h, None) == X.BSA_RC_NULL_ARGUMENT
    assert X.NBBSASetEnv(h, "BSA_SERVICE_PROVIDER", "someone/else/1") == X.BSA_RC_INVALID_ENV
    assert X.NBBSAGetEnv(h, "NOT SET")[0] == X.BSA_RC_INVALID_ENV
    assert X.NBBSAGetEnv(h, None)[0] == X.BSA_RC_NULL_ARGUMENT


def test_get_env_buffer_size_convention(h):
    value = env_of(h)["BSA_SERVICE_HOST"]
    needed = len(value) + 1
    assert X.NBBSAGetEnv(h, "BSA_SERVICE_HOST", size=needed - 1) == (X.BSA_RC_BUFFER_TOO_SMALL, needed)
    assert X.NBBSAGetEnv(h, "BSA_SERVICE_HOST", size=needed) == (OK, value)


def test_policy_and_schedule_filled_in_by_the_service(server, h):
    assert "NBBSA_POLICY" not in env_of(h)
    backup(h, "/nb/policy", b"p")
    env = env_of(h)
    assert env["NBBSA_POLICY"] == "openxbsa-default"
    assert env["NBBSA_SCHEDULE"] == "Default-Application-Backup"
    assert X.NBBSAGetEnv(h, "NBBSA_POLICY") == (OK, "openxbsa-default")


def test_keyword_is_stored_with_the_image(server):
    h = init(server, extra=["NBBSA_KEYWORD=nightly-db1"])
    backup(h, "/nb/keyword", b"k")
    X.BSATerminate(h)
    assert json.loads(server.cli("images", "--json").stdout)[0]["keyword"] == "nightly-db1"


def test_a_keyword_phrase_holds_at_most_128_characters(server):
    """NetBackup's keyword phrase is at most 128 characters: that many (two-byte UTF-8
    ones here) are stored with the image, on SQLite and on PostgreSQL alike; one more is
    refused with BSA_RC_INVALID_ENV by BSAInit and NBBSASetEnv, and by the server from a
    peer that is not our library (before, PostgreSQL's refusal cost that peer its session)."""
    from openxbsa.xbsa._client import Connection, ServerError
    longest, too_long = "é" * 128, "NBBSA_KEYWORD=" + "k" * 129
    h = init(server, extra=[f"NBBSA_KEYWORD={longest}"])
    backup(h, "/nb/keyword-longest", b"k")
    assert X.NBBSASetEnv(h, "NBBSA_KEYWORD", "k" * 129) == X.BSA_RC_INVALID_ENV
    assert X.NBBSAGetEnv(h, "NBBSA_KEYWORD") == (OK, longest)
    X.BSATerminate(h)
    assert longest in [i["keyword"] for i in json.loads(server.cli("images", "--json").stdout)]
    rc, none = X.BSAInit(None, X.BSA_ObjectOwner(), [*server.xbsa_env, too_long])
    assert rc == X.BSA_RC_INVALID_ENV and none is None
    assert "at most 128" in X.BSAGetLastError()[1]
    conn = Connection(server.address)
    try:
        with pytest.raises(ServerError) as exc:
            conn.call("init", env=[*server.xbsa_env, too_long], owner=["", ""])
        assert exc.value.kind == "invalid_env"
        conn.call("init", env=server.xbsa_env, owner=["", ""])       # the session goes on
        with pytest.raises(ServerError) as exc:
            conn.call("setenv", env=[too_long])
        assert exc.value.kind == "invalid_env"
    finally:
        conn.close()


def test_service_host_may_change_between_transactions(server, tmp_path_factory):
    other = configured_server(tmp_path_factory)
    try:
        h = init(server)
        assert X.BSABeginTxn(h) == OK
        assert X.NBBSASetEnv(h, "BSA_SERVICE_HOST", other.address) == ICS
        assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
        assert X.NBBSASetEnv(h, "BSA_SERVICE_HOST", other.address) == OK
        d = backup(h, "/nb/moved", b"on the other server")
        assert env_of(h)["BSA_SERVICE_HOST"] == other.address
        X.BSATerminate(h)
        assert "/nb/moved" in other.cli("list", "--json").stdout
        assert "/nb/moved" not in server.cli("list", "--json").stdout
        h = init(other)
        assert restore(h, d.copyId) == b"on the other server"
        X.BSATerminate(h)
    finally:
        other.stop()


def test_log_directory_gets_the_library_debug_log(server, tmp_path):
    logdir = tmp_path / "xbsa-log"
    h = init(server, extra=[f"NBBSA_LOG_DIRECTORY={logdir}"])
    assert X.BSABeginTxn(h) == OK
    X.BSABeginTxn(h)                                  # a failure is logged with its words
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    X.BSATerminate(h)
    (log,) = list(logdir.glob(f"openxbsa-xbsa-{os.getpid()}.log"))
    text = log.read_text()
    assert "BSABeginTxn rc=0" in text and "BSABeginTxn rc=5" in text and "nest" in text


# ------------------------------------------------------------------ jobs
def test_job_id_is_valid_only_in_its_windows(server, h):
    assert X.NBBSAGetJobId(h)[0] == ICS
    assert X.BSABeginTxn(h) == OK
    assert X.NBBSAGetJobId(h)[0] == ICS                # no create yet
    d = descriptor("/nb/jobid", 4)
    assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
    rc, job_id = X.NBBSAGetJobId(h)
    assert rc == OK and job_id > 0
    send_all(h, b"jobs")
    assert X.BSAEndData(h) == OK
    assert X.NBBSAGetJobId(h) == (OK, job_id)
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    assert X.NBBSAGetJobId(h)[0] == ICS
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    assert [j for j in jobs if j["jobid"] == job_id][0]["type"] == "Backup"
    # restore window
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == OK
    rc, restore_job = X.NBBSAGetJobId(h)
    assert rc == OK and restore_job > job_id
    read_all(h)
    assert X.BSAEndData(h) == OK
    assert X.NBBSAGetJobId(h) == (OK, restore_job)
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    # delete transactions have no job
    assert X.BSABeginTxn(h) == OK
    assert X.BSADeleteObject(h, d.copyId) == OK
    assert X.NBBSAGetJobId(h)[0] == ICS
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_job_info_and_free(server, h):
    assert X.NBBSAGetJobInfo(h)[0] == ICS
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor("/nb/info", 3000), X.BSA_DataBlock32()) == OK
    send_all(h, b"i" * 3000)
    assert X.BSAEndData(h) == OK
    rc, live = X.NBBSAGetJobInfo(h)
    assert rc == OK and live.jobState == X.NBBSA_JOB_ACTIVE and live.jobType == X.NBBSA_JOB_BACKUP
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    rc, info = X.NBBSAGetJobInfo(h)
    assert rc == OK and info.jobId == live.jobId
    assert (info.jobState, info.jobStatus, info.numObjects, info.kiloBytes) == (X.NBBSA_JOB_DONE, 0, 1, 3)
    assert info.policyName == "openxbsa-default" and info.scheduleName == "Default-Application-Backup"
    assert info.clientName and info.backupId.startswith(info.clientName + "_")
    assert info.startTime <= info.endTime <= dt.datetime.now(dt.timezone.utc)
    assert X.NBBSAFreeJobInfo(info) == OK and info.jobId == 0
    assert X.NBBSAFreeJobInfo(None) == X.BSA_RC_NULL_ARGUMENT


def test_log_messages_go_into_the_job_log(server, h):
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor("/nb/log", 2), X.BSA_DataBlock32()) == OK
    job_id = X.NBBSAGetJobId(h)[1]
    assert X.NBBSALogMsg(h, X.MSERROR, "ERROR: the dump tool failed", "Backup") == OK
    assert X.NBBSALogMsg(h, X.MSWARNING, "slow disk", "Backup") == OK
    send_all(h, b"ok")
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    assert X.NBBSALogMsg(h, X.MSINFO, "after the job", "Backup") == OK
    assert X.NBBSALogMsg(h, X.MSINFO, None, "Backup") == X.BSA_RC_NULL_ARGUMENT
    assert X.BSABeginTxn(h) == OK     # a round trip: the posted messages are in
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    entries = json.loads(server.cli("jobs", "--log", str(job_id), "--json").stdout)
    lines = [(e["severity"], e["message"]) for e in entries]
    assert ("error", "[Backup] ERROR: the dump tool failed") in lines
    assert ("warning", "[Backup] slow disk") in lines
    assert ("info", "[Backup] after the job") in lines
    text = server.cli("jobs", "--log", str(job_id)).stdout
    assert "ERROR: the dump tool failed" in text


def test_log_message_while_reading_an_object_waits_for_its_end(server, h):
    d = backup(h, "/nb/log-restore", os.urandom(3 << 20))
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, d, X.BSA_DataBlock32()) == OK
    job_id = X.NBBSAGetJobId(h)[1]
    block = X.BSA_DataBlock32(4096, 0, 0, 0, 0, bytearray(4096))
    assert X.BSAGetData(h, block) == OK
    assert X.NBBSALogMsg(h, X.MSINFO, "restoring", "Restore") == OK
    assert X.BSAGetData(h, block) == OK            # the stream is undisturbed
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    entries = json.loads(server.cli("jobs", "--log", str(job_id), "--json").stdout)
    assert any(e["message"] == "[Restore] restoring" for e in entries)


# ------------------------------------------------------------------ licensing
def test_feature_ids(server, h):
    assert X.NBBSAValidateFeatureId(h, "DataStore") == OK
    assert X.NBBSAValidateFeatureId(h, "NoSuchFeature") == X.NBBSA_RC_FEATURE_NOT_LICENSED
    assert X.NBBSAValidateFeatureId(h, None) == X.BSA_RC_NULL_ARGUMENT
    assert X.NBBSASetEnv(h, "NBBSA_FEATURE_ID", "NoSuchFeature") == OK
    assert X.BSABeginTxn(h) == X.NBBSA_RC_FEATURE_NOT_LICENSED
    assert "not licensed" in X.BSAGetLastError()[1]
    assert X.NBBSASetEnv(h, "NBBSA_FEATURE_ID", "DataStore") == OK
    assert X.BSABeginTxn(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_datastore_disabled_in_the_configuration(tmp_path_factory):
    srv = configured_server(tmp_path_factory, '[features]\nenabled = ["SomethingElse"]\n')
    try:
        h = init(srv)
        assert X.BSABeginTxn(h) == X.NBBSA_RC_FEATURE_NOT_LICENSED
        assert X.NBBSAValidateFeatureId(h, "SomethingElse") == OK
        X.BSATerminate(h)
    finally:
        srv.stop()


# ------------------------------------------------------------------ images and media
def test_delete_image_removes_the_whole_image_at_once(server, h):
    assert X.BSABeginTxn(h) == OK
    made = []
    for i in range(3):
        d = descriptor(f"/nb/img/{i}", 5)
        assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
        send_all(h, b"image")
        assert X.BSAEndData(h) == OK
        made.append(d)
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    keep = backup(h, "/nb/img/keep", b"keep")
    assert X.BSABeginTxn(h) == OK
    assert X.NBBSADeleteImage(h, made[1].copyId) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK       # not undone by an abort
    assert find(h, query("/nb/img/*"))[1][0].copyId == keep.copyId
    assert len(find(h, query("/nb/img/*"))[1]) == 1
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    assert jobs[0]["type"] == "Image Cleanup" and jobs[0]["status"] == 0 and jobs[0]["files"] == 3
    assert X.BSABeginTxn(h) == OK
    assert X.NBBSADeleteImage(h, made[0].copyId) == X.BSA_RC_OBJECT_NOT_FOUND
    assert X.NBBSADeleteImage(h, 0) == X.BSA_RC_INVALID_COPYID
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor("/nb/img/new", 1), X.BSA_DataBlock32()) == OK
    assert X.NBBSADeleteImage(h, keep.copyId) == ICS
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK


def test_media_ids(server, h):
    d = backup(h, "/nb/media", b"m")
    assert X.BSABeginTxn(h) == OK
    rc, media = X.NBBSAGetMediaIds(h, d.copyId)
    assert rc == OK and media and all(0 < len(m) <= 6 for m in media)
    images = json.loads(server.cli("images", "--json").stdout)
    assert images[0]["media_id"] in media
    needed = sum(len(m) + 1 for m in media) + 1       # "M1\0M2\0\0"
    assert X.NBBSAGetMediaIds(h, d.copyId, size=needed - 1) == (X.BSA_RC_BUFFER_TOO_SMALL, needed)
    assert X.BSAQueryObject(h, query("/nb/media"), X.BSA_ObjectDescriptor()) == OK  # media txn
    assert X.BSAGetObject(h, d, X.BSA_DataBlock32()) == ICS
    assert X.BSACreateObject(h, descriptor("/x"), X.BSA_DataBlock32()) == ICS
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    assert X.BSABeginTxn(h) == OK
    assert X.NBBSAGetMediaIds(h, 2**61)[0] == X.BSA_RC_OBJECT_NOT_FOUND
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK


# ------------------------------------------------------------------ multiple-object restore
def test_multi_object_restore_from_several_images_in_one_job(server, h):
    payloads = {}
    descs = []
    for img in range(3):                                   # three images
        assert X.BSABeginTxn(h) == OK
        for i in range(4):
            data = os.urandom(1000 * (img + 1) + i)
            d = descriptor(f"/nb/multi/{img}/{i}", len(data))
            assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
            send_all(h, data, 512)
            assert X.BSAEndData(h) == OK
            payloads[d.copyId] = data
            descs.append(d)
        assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    jobs_before = len(json.loads(server.cli("jobs", "--json").stdout))
    order = list(reversed(descs))
    assert X.BSABeginTxn(h) == OK
    assert X.NBBSAGetMultipleObjects(h) == ICS                   # empty list
    for d in order:
        assert X.NBBSAAddToMultiObjectRestoreList(h, d) == OK
    assert X.NBBSAGetMultipleObjects(h) == OK
    job_id = X.NBBSAGetJobId(h)[1]
    assert X.BSAGetObject(h, order[1], X.BSA_DataBlock32()) == ICS   # list order
    for d in order:
        assert X.BSAGetObject(h, d, X.BSA_DataBlock32()) == OK
        data, _ = read_all(h, 700)
        assert data == payloads[d.copyId]
        assert X.BSAEndData(h) == OK
    assert X.NBBSAEndGetMultipleObjects(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    assert len(jobs) == jobs_before + 1
    job = jobs[0]
    assert (job["jobid"], job["type"], job["status"], job["files"]) == (job_id, "Restore", 0, 12)


def test_multi_object_restore_errors(h):
    d = backup(h, "/nb/multi-err", b"x")
    assert X.BSABeginTxn(h) == OK
    assert X.NBBSAAddToMultiObjectRestoreList(h, None) == X.BSA_RC_NULL_ARGUMENT
    assert X.NBBSAAddToMultiObjectRestoreList(h, X.BSA_ObjectDescriptor()) == X.BSA_RC_INVALID_COPYID
    assert X.NBBSAAddToMultiObjectRestoreList(h, d) == OK
    assert X.NBBSAAddToMultiObjectRestoreList(h, X.BSA_ObjectDescriptor(copyId=2**61)) == OK
    assert X.NBBSAGetMultipleObjects(h) == X.BSA_RC_OBJECT_NOT_FOUND
    assert X.NBBSAEndGetMultipleObjects(h) == ICS
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    second = backup(h, "/nb/multi-err2", b"y")
    assert X.BSABeginTxn(h) == OK
    assert X.NBBSAAddToMultiObjectRestoreList(h, d) == OK
    assert X.NBBSAAddToMultiObjectRestoreList(h, second) == OK
    assert X.NBBSAGetMultipleObjects(h) == OK
    assert X.NBBSAAddToMultiObjectRestoreList(h, d) == ICS      # the list is running
    assert X.BSAGetObject(h, d, X.BSA_DataBlock32()) == OK
    assert X.NBBSAEndGetMultipleObjects(h) == ICS               # the object is still open
    assert X.BSAEndData(h) == OK
    assert X.NBBSAEndGetMultipleObjects(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    rc, info = X.NBBSAGetJobInfo(h)
    assert rc == OK and info.jobStatus == 1 and info.numObjects == 1   # one of two: partial


def test_a_multi_object_restore_list_longer_than_one_message(server, h):
    """A multiple-object restore of 250,000 objects: their copy IDs (over 1.1 MB packed)
    do not fit the 1 MiB a control message may hold, so the library sends the list in
    pieces and the server joins them into one job (before, the session was dropped as
    hostile). A list beyond the server's 1,000,000 is refused with a message saying so, and
    the session goes on."""
    from openxbsa import wire
    from openxbsa.xbsa._client import Connection, ServerError
    n = 250_000
    assert X.BSABeginTxn(h) == OK
    descs = []
    for i in range(n):
        d = descriptor(f"/nb/long-list/{i}", 0)
        assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
        assert X.BSAEndData(h) == OK
        descs.append(d)
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    assert len(wire.pack({"op": "multiget", "copy_ids": [d.copyId for d in descs]})) \
        > wire.MAX_CONTROL
    assert X.BSABeginTxn(h) == OK
    for d in descs:
        assert X.NBBSAAddToMultiObjectRestoreList(h, d) == OK
    assert X.NBBSAGetMultipleObjects(h) == OK, X.BSAGetLastError()
    for d in descs[:2]:                                   # read in list order
        assert X.BSAGetObject(h, d, X.BSA_DataBlock32()) == OK
        assert read_all(h, 100)[0] == b""
        assert X.BSAEndData(h) == OK
    assert X.NBBSAEndGetMultipleObjects(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    rc, info = X.NBBSAGetJobInfo(h)
    assert rc == OK and (info.jobStatus, info.numObjects) == (1, 2)
    log = server.cli("jobs", "--log", str(info.jobId)).stdout
    assert f"multiple-object restore of {n} objects" in log
    conn = Connection(server.address)        # past the limit, from a peer that sends it
    try:
        conn.call("init", env=server.xbsa_env, owner=["", ""])
        conn.call("begin")
        piece = [descs[0].copyId] * 100_000
        for _ in range(10):
            conn.call("multiadd", copy_ids=piece)
        with pytest.raises(ServerError) as exc:
            conn.call("multiget", copy_ids=[descs[0].copyId])
        assert "at most 1000000 objects" in str(exc.value)
        conn.call("multiget", copy_ids=[descs[-1].copyId])    # the pieces went with it
        conn.call("multiend")
    finally:
        conn.close()


def test_log_level_keeps_the_library_log_quieter(server, tmp_path):
    logdir = tmp_path / "quiet"
    h = init(server, extra=[f"NBBSA_LOG_DIRECTORY={logdir}", "NBBSA_LOG_LEVEL=WARNING"])
    assert X.BSABeginTxn(h) == OK
    X.BSABeginTxn(h)
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    X.BSATerminate(h)
    text = next(logdir.glob("openxbsa-xbsa-*.log")).read_text()
    assert "BSABeginTxn rc=5" in text and "rc=0" not in text
    rc, _ = X.BSAInit(None, X.BSA_ObjectOwner(), server.xbsa_env + [
        f"NBBSA_LOG_DIRECTORY={logdir}", "NBBSA_LOG_LEVEL=LOUD"])
    assert rc == X.BSA_RC_INVALID_ENV and "NBBSA_LOG_LEVEL" in X.BSAGetLastError()[1]


def test_python_strings_that_are_not_text_get_the_codes_of_bad_text(server):
    """A Python caller may hand over a str that is no text (a lone surrogate, as
    surrogateescape makes of undecodable bytes): it is refused as the C library refuses
    invalid UTF-8 — INVALID_ENV for environment entries and log messages, FEATURE_NOT_LICENSED
    for a feature ID — never an internal error, and the session goes on, its restore
    included (a refused log message is not left to fail later sends)."""
    rc, none = X.BSAInit(None, X.BSA_ObjectOwner(), [*server.xbsa_env, "NBBSA_KEYWORD=\udcff"])
    assert (rc, none) == (X.BSA_RC_INVALID_ENV, None)
    assert "not valid text" in X.BSAGetLastError()[1]
    h = init(server)
    assert X.NBBSASetEnv(h, "NBBSA_KEYWORD", "db\udcff") == X.BSA_RC_INVALID_ENV
    assert X.NBBSALogMsg(h, 0, "dump of db\udcff done", "Backup") == X.BSA_RC_INVALID_ENV
    assert X.NBBSAValidateFeatureId(h, "\udcff") == X.NBBSA_RC_FEATURE_NOT_LICENSED
    assert X.NBBSAValidateFeatureId(h, "DataStore") == OK
    d = backup(h, "/nb/not-text", b"still fine")
    assert restore(h, d.copyId) == b"still fine"
    X.BSATerminate(h)
