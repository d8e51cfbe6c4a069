"""The 15 NetBackup XBSA extensions (nbbsa.h), with the Python convention of the core calls.

Calls that follow the C buffer-size convention (NBBSAGetEnv, NBBSAGetErrorString,
NBBSAGetServerError, NBBSAGetMediaIds) return their value; given the optional ``size`` a C
caller would pass, a value that does not fit returns (BSA_RC_BUFFER_TOO_SMALL, needed size).
"""

from __future__ import annotations

from typing import Any

from openxbsa import status as nbstatus
from openxbsa import wire
from openxbsa.wire import schema
from openxbsa.xbsa import _api
from openxbsa.xbsa import _constants as C
from openxbsa.xbsa._api import (
    B, B_OBJ, M, R, R_OBJ, S1, T0, D, _bad_handle, _fail, _request, _sequence, _session,
    _xbsa_call,
)
from openxbsa.xbsa._client import AuthError, Connection, ServerError
from openxbsa.xbsa._structs import BSA_ObjectDescriptor, NBBSA_JobInfo

# copy IDs per message of a multiple-object restore list (at most 9 bytes each packed: well
# inside the 1 MiB a control message may hold)
MULTI_PIECE = 65_536


def _too_small(size: Any, needed: int) -> bool:
    return size is not None and (type(size) is not int or size < needed)


def _sized(rc_value: tuple[int, Any], needed: int, size: Any) -> tuple[int, Any]:
    if _too_small(size, needed):
        return _fail(C.BSA_RC_BUFFER_TOO_SMALL,
                     f"the buffer holds {size} bytes; {needed} are needed"), needed
    return rc_value


# ====================================================================== environment
def _update_env(s: _api._Session, entries: Any) -> int:
    rc, parsed = _api._parse_env(entries)
    if rc != C.BSA_RC_SUCCESS:
        return _fail(rc, str(parsed))
    assert isinstance(parsed, dict)
    for key, value in parsed.items():
        refused = schema.env_change_problem(key, s.env.get(key), value, s.state != S1)
        if refused:
            return _fail(_api.KIND_RC[refused[0]], refused[1])
    new_host = parsed.get("BSA_SERVICE_HOST")
    if new_host is not None and new_host != s.env.get("BSA_SERVICE_HOST"):
        return _move(s, dict(s.env, **parsed))
    rc, reply = _request(s, "setenv", env=[f"{k}={v}" for k, v in parsed.items()])
    if rc == C.BSA_RC_SUCCESS and reply is not None:
        s.env = dict(reply["env"])
    return rc


def _move(s: _api._Session, env: dict[str, str]) -> int:
    """BSA_SERVICE_HOST changed between transactions: the session moves to that server."""
    address = env["BSA_SERVICE_HOST"]
    try:
        wire.parse_address(address)
        conn = Connection(address)
    except ValueError as exc:
        return _fail(C.BSA_RC_INVALID_ENV, f"BSA_SERVICE_HOST: {exc}")
    except (OSError, wire.ProtocolError) as exc:
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, f"cannot reach the backup service at {address}: {exc}")
    env.pop("BSA_SERVICE_PROVIDER", None)
    try:
        reply = conn.call("init", env=[f"{k}={v}" for k, v in env.items()],
                          owner=[s.owner.bsa_ObjectOwner, s.owner.app_ObjectOwner],
                          **conn.credentials())
    except AuthError as exc:
        conn.close()
        return _fail(C.BSA_RC_AUTHENTICATION_FAILURE, str(exc))
    except ServerError as exc:
        conn.close()
        return _fail(_api.KIND_RC.get(exc.kind, C.BSA_RC_ABORT_SYSTEM_ERROR), str(exc))
    except (OSError, wire.ProtocolError) as exc:
        conn.close()
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, f"session set-up failed: {exc}")
    old = s.conn
    try:
        if not s.broken:
            old.call("terminate")
    except (ServerError, OSError, wire.ProtocolError):
        pass
    old.close()
    s.conn, s.broken, s.env = conn, False, dict(reply["env"])
    return C.BSA_RC_SUCCESS


@_xbsa_call()
def NBBSASetEnv(bsaHandle: int, EnvVar: Any, EnvVal: Any) -> int:
    """Set one environment variable of the session (subject to when it may change)."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if EnvVar is None or EnvVal is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "NBBSASetEnv needs a variable and a value")
    var, val = _api._text(EnvVar), _api._text(EnvVal)
    if var is None or val is None:
        return _fail(C.BSA_RC_INVALID_ENV,
                     "the variable and value must be text (str, or UTF-8 bytes)")
    return _update_env(s, [f"{var}={val}"])


@_xbsa_call()
def NBBSAUpdateEnv(bsaHandle: int, envPtr: Any) -> int:
    """Set several variables from a list of KEY=value; the others keep their values."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if envPtr is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "NBBSAUpdateEnv needs an environment list")
    return _update_env(s, envPtr)


@_xbsa_call(outputs=1)
def NBBSAGetEnv(bsaHandle: int, envVariable: Any, size: int | None = None) -> tuple[int, Any]:
    """The value of one environment variable ('' when unset)."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle), None
    if envVariable is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "NBBSAGetEnv needs a variable name"), None
    name = _api._text(envVariable)
    if not name or "=" in name or any(c.isspace() for c in name):
        return _fail(C.BSA_RC_INVALID_ENV, f"{envVariable!r} is not a variable name"), None
    value = s.env.get(name, "")
    return _sized((C.BSA_RC_SUCCESS, value), len(value.encode()) + 1, size)


# ====================================================================== jobs and errors
@_xbsa_call(outputs=1)
def NBBSAGetJobId(bsaHandle: int) -> tuple[int, int | None]:
    """The job of the current backup (after BSACreateObject) or restore (after BSAGetObject
    or NBBSAGetMultipleObjects), until BSAEndTxn."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle), None
    if s.state not in (B, B_OBJ, R, R_OBJ) or not s.job_id:
        return _sequence(s, "NBBSAGetJobId outside a backup or restore job"), None
    return C.BSA_RC_SUCCESS, s.job_id


@_xbsa_call(outputs=1)
def NBBSAGetJobInfo(bsaHandle: int) -> tuple[int, NBBSA_JobInfo | None]:
    """The record of the transaction's job (or of the session's last job)."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle), None
    job_id = s.job_id or s.last_job_id
    if not job_id:
        return _sequence(s, "NBBSAGetJobInfo before any job of this session"), None
    rc, reply = _request(s, "jobinfo", job=job_id)
    if rc != C.BSA_RC_SUCCESS or reply is None:
        return rc, None
    j = reply["jobinfo"]
    return C.BSA_RC_SUCCESS, NBBSA_JobInfo(
        jobId=j["job_id"], jobType=j["job_type"], jobState=j["state"],
        jobStatus=j["status"] if j["status"] is not None else 0,
        policyName=j["policy"], scheduleName=j["schedule"], clientName=j["client"],
        serverName=j["server"], startTime=schema.from_epoch(j["started"]),
        endTime=schema.from_epoch(j["ended"]) if j["ended"] else None,
        kiloBytes=j["kbytes"], numObjects=j["files"], backupId=j["backup_id"] or "")


@_xbsa_call()
def NBBSAFreeJobInfo(jobInfo: Any) -> int:
    """Release what NBBSAGetJobInfo returned (in Python: checks it, and clears it)."""
    if jobInfo is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "NBBSAFreeJobInfo needs a job record")
    if not isinstance(jobInfo, NBBSA_JobInfo):
        return _fail(C.BSA_RC_NULL_ARGUMENT, "not a record from NBBSAGetJobInfo")
    jobInfo.__init__()  # type: ignore[misc]
    return C.BSA_RC_SUCCESS


@_xbsa_call(outputs=2)
def NBBSAGetServerError(bsaHandle: int, size: int | None = None) -> tuple[int, Any, Any]:
    """The NetBackup status code and its text for the session's last server operation."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle), None, None
    code = s.server_status
    text = nbstatus.describe(code).message
    if s.server_message and code:
        text = f"{text}: {s.server_message}"
    needed = len(text.encode()) + 1
    if _too_small(size, needed):
        return _fail(C.BSA_RC_BUFFER_TOO_SMALL, f"{needed} bytes are needed"), code, needed
    return C.BSA_RC_SUCCESS, code, text


@_xbsa_call(outputs=1)
def NBBSAGetErrorString(errCode: Any, size: int | None = None) -> tuple[int, Any]:
    """The text of a BSA_RC_* or NBBSA_RC_* code; no session needed."""
    if type(errCode) is not int:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "the error code must be an integer"), None
    name = C.RC_NAMES.get(errCode)
    text = f"{name}: {C.RC_TEXT[errCode]}" if name else f"unknown XBSA return code {errCode}"
    return _sized((C.BSA_RC_SUCCESS, text), len(text.encode()) + 1, size)


@_xbsa_call()
def NBBSALogMsg(bsaHandle: int, msgType: int, message: Any, source: Any) -> int:
    """Put the application's message into the job's log (openxbsa jobs --log JOBID)."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if message is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "NBBSALogMsg needs a message")
    text, src = _api._text(message), _api._text(source) if source is not None else ""
    if text is None or src is None or type(msgType) is not int:
        return _fail(C.BSA_RC_INVALID_ENV, "message and source must be text (str, or UTF-8 "
                                           "bytes), the type an int")
    if s.broken:
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, "the connection to the backup service is lost")
    s.pending_logs.append((msgType, text, src))
    if s.state != R_OBJ:   # while an object streams in, the message waits for its end
        try:
            _api._flush_logs(s)
        except (OSError, wire.ProtocolError) as exc:
            return _api._lost(s, exc)
    return C.BSA_RC_SUCCESS


@_xbsa_call()
def NBBSAValidateFeatureId(bsaHandle: int, featureId: Any) -> int:
    """SUCCESS if the feature is licensed on the server, else NBBSA_RC_FEATURE_NOT_LICENSED."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if featureId is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "NBBSAValidateFeatureId needs a feature ID")
    feature = _api._text(featureId) if isinstance(featureId, (str, bytes, bytearray)) \
        else str(featureId)
    if feature is None:
        return _fail(C.NBBSA_RC_FEATURE_NOT_LICENSED, "the feature ID is not text")
    if s.state == R_OBJ:
        return _sequence(s, "NBBSAValidateFeatureId while an object is being read")
    rc, _ = _request(s, "feature", feature=feature)
    return rc


# ====================================================================== images and media
@_xbsa_call()
def NBBSADeleteImage(bsaHandle: int, copyId: int) -> int:
    """Delete, now, the whole image holding the object copyId (only your own images)."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if s.state not in (T0, D):
        return _sequence(s, "NBBSADeleteImage")
    copy_id = _api._copy_id(copyId)
    if copy_id is None:
        return _fail(C.BSA_RC_INVALID_COPYID, f"copyId {copyId!r} is not valid")
    rc, _ = _request(s, "deleteimage", copy_id=copy_id)
    if rc == C.BSA_RC_SUCCESS:
        s.state = D
    return rc


@_xbsa_call(outputs=1)
def NBBSAGetMediaIds(bsaHandle: int, copyId: int, size: int | None = None) -> tuple[int, Any]:
    """The media IDs (at most six characters each) holding the image of copyId, as a list.
    In C the list is NUL-separated with a final extra NUL; ``size`` counts those bytes."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle), None
    if s.state not in (T0, M):
        return _sequence(s, "NBBSAGetMediaIds"), None
    copy_id = _api._copy_id(copyId)
    if copy_id is None:
        return _fail(C.BSA_RC_INVALID_COPYID, f"copyId {copyId!r} is not valid"), None
    rc, reply = _request(s, "mediaids", copy_id=copy_id)
    if rc != C.BSA_RC_SUCCESS or reply is None:
        return rc, None
    s.state = M
    media = list(reply["media"])
    needed = sum(len(m) + 1 for m in media) + 1
    return _sized((C.BSA_RC_SUCCESS, media), needed, size)


# ====================================================================== multiple-object restore
@_xbsa_call()
def NBBSAAddToMultiObjectRestoreList(bsaHandle: int, objectDescriptorPtr: Any) -> int:
    """Add an object (by its descriptor's copyId) to the list one restore job will read."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if objectDescriptorPtr is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "NBBSAAddToMultiObjectRestoreList needs a descriptor")
    if s.state not in (T0, R) or s.multi_active:
        return _sequence(s, "NBBSAAddToMultiObjectRestoreList")
    raw = objectDescriptorPtr.copyId if isinstance(objectDescriptorPtr, BSA_ObjectDescriptor) \
        else objectDescriptorPtr
    copy_id = _api._copy_id(raw)
    if copy_id is None:
        return _fail(C.BSA_RC_INVALID_COPYID, f"copyId {raw!r} is not valid")
    s.multi_list.append(copy_id)
    return C.BSA_RC_SUCCESS


@_xbsa_call()
def NBBSAGetMultipleObjects(bsaHandle: int) -> int:
    """Start one restore job for the list; then read each object, in list order, with
    BSAGetObject, BSAGetData and BSAEndData."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if s.state not in (T0, R) or s.multi_active or not s.multi_list:
        return _sequence(s, "NBBSAGetMultipleObjects" +
                         ("" if s.multi_list else " with an empty list"))
    ids = s.multi_list                  # a long list goes in pieces: a message is bounded
    last = (len(ids) - 1) // MULTI_PIECE * MULTI_PIECE
    for i in range(0, last, MULTI_PIECE):
        rc, _ = _request(s, "multiadd", copy_ids=ids[i:i + MULTI_PIECE])
        if rc != C.BSA_RC_SUCCESS:
            return rc
    rc, reply = _request(s, "multiget", copy_ids=ids[last:])
    if rc != C.BSA_RC_SUCCESS or reply is None:
        return rc
    s.multi_active = True
    s.state = R
    s.job_id = s.last_job_id = reply["job"]
    return C.BSA_RC_SUCCESS


@_xbsa_call()
def NBBSAEndGetMultipleObjects(bsaHandle: int) -> int:
    """End the multiple-object restore; its job ends (status 1 if objects were left unread)."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if s.state != R or not s.multi_active:
        return _sequence(s, "NBBSAEndGetMultipleObjects")
    rc, _ = _request(s, "multiend")
    s.multi_active, s.multi_list = False, []
    return rc
