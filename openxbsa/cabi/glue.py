"""The C entry points of libxbsa64.so: C structures in, ``openxbsa.xbsa`` calls, C out.

Conversions only: every rule lives in ``openxbsa.xbsa``. A NULL pointer becomes None, so
the Python call answers BSA_RC_NULL_ARGUMENT in the same order of checks; an
unterminated C string becomes a string with a NUL, which the descriptor checks refuse.
Data moves without copies through cffi buffers over the application's memory, and
BSAGetData writes only numBytes bytes after headerBytes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from openxbsa import xbsa as X
from openxbsa.server import faults
from openxbsa.xbsa import _api, _client

RC_NULL = X.BSA_RC_NULL_ARGUMENT
ENV_SLOT = 256          # bytes we may write into each BSAGetEnvironment buffer
MAX_ENV_ENTRIES = 4096  # a C array must end at NULL well before this


def install(ffi: Any, lib: Any) -> None:
    """Define every call's Python side (PREFIX + its name, which the library's C function
    of the API's name calls), then tell the C side that Python has started: until then
    its calls answer BSA_RC_ABORT_SYSTEM_ERROR."""
    from openxbsa.cabi.build import PREFIX

    faults.point("cabi:start")        # a test makes the start fail here
    _client.watch_connection = lib.oxb_watch_connection   # for the child of a C fork()

    def extern(fn: Any) -> Any:
        return ffi.def_extern(name=PREFIX + fn.__name__, error=X.BSA_RC_ABORT_SYSTEM_ERROR)(fn)
    utc_name = ffi.new("char[]", b"UTC")
    keep = [utc_name]   # noqa: F841 - lives as long as the library

    # ------------------------------------------------------------------ conversions
    def text(arr: Any) -> str:
        raw = bytes(ffi.buffer(arr))
        end = raw.find(b"\x00")
        if end < 0:
            return raw.decode("utf-8", "replace") + "\x00"   # unterminated: refused later
        try:
            return raw[:end].decode("utf-8")
        except UnicodeDecodeError:
            return "\x00invalid UTF-8"

    def put(arr: Any, value: str | bytes) -> None:
        data = value.encode("utf-8") if isinstance(value, str) else value
        size = ffi.sizeof(arr)
        data = data[: size - 1] if isinstance(value, str) else data[:size]
        ffi.memmove(arr, data + b"\x00" * (size - len(data)), size)

    def cstr(ptr: Any) -> str | None:
        if ptr == ffi.NULL:
            return None
        try:
            return ffi.string(ptr).decode("utf-8")
        except UnicodeDecodeError:
            return "\x00invalid UTF-8"

    def strings(env: Any) -> list[str] | None:
        """A NULL-terminated C array of strings (NULL itself -> None)."""
        if env == ffi.NULL:
            return None
        out = []
        for i in range(MAX_ENV_ENTRIES):
            if env[i] == ffi.NULL:
                break
            out.append(cstr(env[i]) or "")
        return out

    def u64(v: Any) -> int:
        return (v.left << 32) | v.right

    def set_u64(v: Any, value: int) -> None:
        v.left, v.right = (value >> 32) & 0xFFFFFFFF, value & 0xFFFFFFFF

    def tm_in(tm: Any) -> dt.datetime | None:
        fields = (tm.tm_sec, tm.tm_min, tm.tm_hour, tm.tm_mday, tm.tm_mon, tm.tm_year)
        if not any(fields):
            return None
        try:
            return dt.datetime(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                               tm.tm_min, min(tm.tm_sec, 59), tzinfo=dt.timezone.utc)
        except (ValueError, OverflowError):
            return dt.datetime(1970, 1, 1)   # naive: refused as an invalid query time

    def tm_out(tm: Any, value: dt.datetime | None) -> None:
        ffi.memmove(ffi.addressof(tm), b"\x00" * ffi.sizeof(tm), ffi.sizeof(tm))
        if value is None:
            return
        t = value.astimezone(dt.timezone.utc).timetuple()
        tm.tm_sec, tm.tm_min, tm.tm_hour = t.tm_sec, t.tm_min, t.tm_hour
        tm.tm_mday, tm.tm_mon, tm.tm_year = t.tm_mday, t.tm_mon - 1, t.tm_year - 1900
        tm.tm_wday, tm.tm_yday, tm.tm_isdst = (t.tm_wday + 1) % 7, t.tm_yday - 1, 0
        tm.tm_gmtoff, tm.tm_zone = 0, utc_name

    def owner_in(o: Any) -> X.BSA_ObjectOwner:
        return X.BSA_ObjectOwner(text(o.bsa_ObjectOwner), text(o.app_ObjectOwner))

    def descriptor_in(p: Any) -> X.BSA_ObjectDescriptor | None:
        if p == ffi.NULL:
            return None
        return X.BSA_ObjectDescriptor(
            rsv1=p.rsv1, objectOwner=owner_in(p.objectOwner),
            objectName=X.BSA_ObjectName(text(p.objectName.objectSpaceName),
                                        text(p.objectName.pathName)),
            createTime=None, copyType=int(p.copyType), copyId=u64(p.copyId),
            restoreOrder=u64(p.restoreOrder), estimatedSize=u64(p.estimatedSize),
            resourceType=text(p.resourceType), objectType=int(p.objectType),
            objectStatus=int(p.objectStatus), objectDescription=text(p.objectDescription),
            objectInfo=bytes(ffi.buffer(p.objectInfo)).rstrip(b"\x00"))

    def descriptor_out(p: Any, d: X.BSA_ObjectDescriptor) -> None:
        p.rsv1 = 0
        put(p.objectOwner.bsa_ObjectOwner, d.objectOwner.bsa_ObjectOwner)
        put(p.objectOwner.app_ObjectOwner, d.objectOwner.app_ObjectOwner)
        put(p.objectName.objectSpaceName, d.objectName.objectSpaceName)
        put(p.objectName.pathName, d.objectName.pathName)
        tm_out(p.createTime, d.createTime)
        p.copyType = d.copyType
        set_u64(p.copyId, d.copyId)
        set_u64(p.restoreOrder, d.restoreOrder)
        for rsv in (p.rsv2, p.rsv3, p.rsv4):
            put(rsv, "")
        set_u64(p.estimatedSize, d.estimatedSize)
        put(p.resourceType, d.resourceType)
        p.objectType, p.objectStatus = d.objectType, d.objectStatus
        put(p.objectDescription, d.objectDescription)
        put(p.objectInfo, d.objectInfo)

    def service_fields_out(p: Any, d: X.BSA_ObjectDescriptor) -> None:
        tm_out(p.createTime, d.createTime)
        set_u64(p.copyId, d.copyId)
        set_u64(p.restoreOrder, d.restoreOrder)
        p.objectStatus = d.objectStatus

    def block_in(p: Any, writable: bool) -> X.BSA_DataBlock32 | None:
        if p == ffi.NULL:
            return None
        b = X.BSA_DataBlock32(p.bufferLen, p.numBytes, p.headerBytes, p.shareId, p.shareOffset)
        if p.bufferPtr != ffi.NULL:
            size = p.bufferLen if writable else min(p.headerBytes + p.numBytes, 0xFFFFFFFF)
            if not writable and p.headerBytes + p.numBytes > p.bufferLen:
                size = 0   # inconsistent: refused before any byte is read
            b.bufferPtr = ffi.buffer(ffi.cast("char *", p.bufferPtr), size)
            if not writable and size < p.headerBytes + p.numBytes:
                b.bufferPtr = b""  # makes the check fail with a clear message
        return b

    def block_out(p: Any, b: X.BSA_DataBlock32) -> None:
        p.bufferLen, p.numBytes, p.headerBytes = b.bufferLen, b.numBytes, b.headerBytes
        p.shareId, p.shareOffset = b.shareId, b.shareOffset

    def sized(size_ptr: Any, out: Any, data: bytes) -> int:
        """The buffer-size convention: copy if it fits, else BUFFER_TOO_SMALL and the size."""
        needed = len(data)
        if size_ptr[0] < needed or out == ffi.NULL:
            size_ptr[0] = needed
            return _api._fail(X.BSA_RC_BUFFER_TOO_SMALL,
                              f"the buffer is too small; {needed} bytes are needed")
        ffi.memmove(out, data, needed)
        size_ptr[0] = needed
        return X.BSA_RC_SUCCESS

    # ------------------------------------------------------------------ core calls
    @extern
    def BSAQueryApiVersion(p: Any) -> int:
        if p == ffi.NULL:
            return _api._fail(RC_NULL, "BSAQueryApiVersion needs a BSA_ApiVersion")
        rc, v = X.BSAQueryApiVersion()
        p.issue, p.version, p.level = v.issue, v.version, v.level
        return rc

    @extern
    def BSAQueryServiceProvider(size_ptr: Any, delimiter: Any, provider: Any) -> int:
        if size_ptr == ffi.NULL or delimiter == ffi.NULL:
            return _api._fail(RC_NULL, "BSAQueryServiceProvider needs sizePtr and delimiter")
        rc, delim, name = X.BSAQueryServiceProvider()
        delimiter[0] = delim.encode()
        return sized(size_ptr, provider, name.encode() + b"\x00")

    @extern
    def BSAGetLastError(size_ptr: Any, out: Any) -> int:
        if size_ptr == ffi.NULL:
            return _api._fail(RC_NULL, "BSAGetLastError needs sizePtr")
        _, message = X.BSAGetLastError()
        if not message:
            size_ptr[0] = 0
            return X.BSA_RC_SUCCESS
        data = message.encode() + b"\x00"
        if size_ptr[0] < len(data) or out == ffi.NULL:
            size_ptr[0] = len(data)
            return X.BSA_RC_BUFFER_TOO_SMALL     # keeps the message: not a new failure
        ffi.memmove(out, data, len(data))
        size_ptr[0] = len(data)
        return X.BSA_RC_SUCCESS

    @extern
    def BSAInit(handle_ptr: Any, token: Any, owner: Any, env: Any) -> int:
        if handle_ptr == ffi.NULL:
            return _api._fail(RC_NULL, "BSAInit needs bsaHandlePtr")
        entries = strings(env)
        # NetBackup ignores the security token, and so does this library: it is not even
        # read, for an agent may pass a pointer to anything (or uninitialised)
        rc, handle = X.BSAInit(None, None if owner == ffi.NULL else owner_in(owner), entries)
        if rc == X.BSA_RC_SUCCESS:
            handle_ptr[0] = handle
        return rc

    @extern
    def BSATerminate(handle: int) -> int:
        return X.BSATerminate(handle)

    @extern
    def BSAGetEnvironment(handle: int, owner: Any, env: Any) -> int:
        rc, o, entries = X.BSAGetEnvironment(handle)
        if rc != X.BSA_RC_SUCCESS:
            return rc
        if owner == ffi.NULL or env == ffi.NULL:
            return _api._fail(RC_NULL, "BSAGetEnvironment needs an owner and an environment array")
        put(owner.bsa_ObjectOwner, o.bsa_ObjectOwner)
        put(owner.app_ObjectOwner, o.app_ObjectOwner)
        # The buffer-size convention, for an array of fixed-size buffers: what fits is
        # filled; an array with fewer buffers than entries, or an entry longer than a
        # buffer, is BUFFER_TOO_SMALL rather than an environment silently cut short.
        slots = 0
        while slots < len(entries) and env[slots] != ffi.NULL:
            slots += 1
        cut = []
        for i, entry in enumerate(entries[:slots]):
            data = entry.encode()
            if len(data) >= ENV_SLOT:
                cut.append(entry.split("=", 1)[0])
            data = data[: ENV_SLOT - 1] + b"\x00"
            ffi.memmove(env[i], data, len(data))
        if slots < len(entries):
            return _api._fail(X.BSA_RC_BUFFER_TOO_SMALL,
                              f"BSAGetEnvironment has {len(entries)} entries and the array "
                              f"holds {slots} buffers (NULL-terminated)")
        if cut:
            return _api._fail(X.BSA_RC_BUFFER_TOO_SMALL,
                              f"BSAGetEnvironment: {', '.join(cut)} longer than the "
                              f"{ENV_SLOT - 1} characters a buffer holds; cut short")
        return X.BSA_RC_SUCCESS

    @extern
    def BSABeginTxn(handle: int) -> int:
        return X.BSABeginTxn(handle)

    @extern
    def BSAEndTxn(handle: int, vote: int) -> int:
        return X.BSAEndTxn(handle, int(vote))

    @extern
    def BSACreateObject(handle: int, dp: Any, bp: Any) -> int:
        d, b = descriptor_in(dp), block_in(bp, False)
        rc = X.BSACreateObject(handle, d, b)
        if rc == X.BSA_RC_SUCCESS:
            service_fields_out(dp, d)
            block_out(bp, b)
        return rc

    @extern
    def BSASendData(handle: int, bp: Any) -> int:
        return X.BSASendData(handle, block_in(bp, False))

    @extern
    def BSAEndData(handle: int) -> int:
        return X.BSAEndData(handle)

    @extern
    def BSAGetObject(handle: int, dp: Any, bp: Any) -> int:
        d = None if dp == ffi.NULL else X.BSA_ObjectDescriptor(copyId=u64(dp.copyId))
        b = block_in(bp, True)
        rc = X.BSAGetObject(handle, d, b)
        if rc == X.BSA_RC_SUCCESS:
            block_out(bp, b)
        return rc

    @extern
    def BSAGetData(handle: int, bp: Any) -> int:
        b = block_in(bp, True)
        rc = X.BSAGetData(handle, b)
        if b is not None and rc in (X.BSA_RC_SUCCESS, X.BSA_RC_NO_MORE_DATA):
            bp.numBytes = b.numBytes
        return rc

    @extern
    def BSAQueryObject(handle: int, qp: Any, dp: Any) -> int:
        q = None
        if qp != ffi.NULL:
            q = X.BSA_QueryDescriptor(
                objectOwner=owner_in(qp.objectOwner),
                objectName=X.BSA_ObjectName(text(qp.objectName.objectSpaceName),
                                            text(qp.objectName.pathName)),
                createTime_from=tm_in(qp.createTime_from), createTime_to=tm_in(qp.createTime_to),
                copyType=int(qp.copyType), objectType=int(qp.objectType),
                objectStatus=int(qp.objectStatus))
        d = None if dp == ffi.NULL else X.BSA_ObjectDescriptor()
        rc = X.BSAQueryObject(handle, q, d)
        if rc == X.BSA_RC_SUCCESS:
            descriptor_out(dp, d)
        return rc

    @extern
    def BSAGetNextQueryObject(handle: int, dp: Any) -> int:
        d = None if dp == ffi.NULL else X.BSA_ObjectDescriptor()
        rc = X.BSAGetNextQueryObject(handle, d)
        if rc == X.BSA_RC_SUCCESS:
            descriptor_out(dp, d)
        return rc

    @extern
    def BSADeleteObject(handle: int, copy_id: Any) -> int:
        return X.BSADeleteObject(handle, u64(copy_id))

    # ------------------------------------------------------------------ NetBackup extensions
    @extern
    def NBBSASetEnv(handle: int, var: Any, val: Any) -> int:
        return X.NBBSASetEnv(handle, cstr(var), cstr(val))

    @extern
    def NBBSAUpdateEnv(handle: int, env: Any) -> int:
        return X.NBBSAUpdateEnv(handle, strings(env))

    @extern
    def NBBSAGetEnv(handle: int, var: Any, size_ptr: Any, out: Any) -> int:
        rc, value = X.NBBSAGetEnv(handle, cstr(var))
        if rc != X.BSA_RC_SUCCESS:
            return rc
        if size_ptr == ffi.NULL:
            return _api._fail(RC_NULL, "NBBSAGetEnv needs sizePtr")
        return sized(size_ptr, out, value.encode() + b"\x00")

    @extern
    def NBBSAGetErrorString(code: int, size_ptr: Any, out: Any) -> int:
        if size_ptr == ffi.NULL:
            return _api._fail(RC_NULL, "NBBSAGetErrorString needs sizePtr")
        _, message = X.NBBSAGetErrorString(code)
        return sized(size_ptr, out, message.encode() + b"\x00")

    @extern
    def NBBSAGetServerError(handle: int, status_ptr: Any, size_ptr: Any, out: Any) -> int:
        rc, status, message = X.NBBSAGetServerError(handle)
        if rc != X.BSA_RC_SUCCESS:
            return rc
        if status_ptr == ffi.NULL or size_ptr == ffi.NULL:
            return _api._fail(RC_NULL, "NBBSAGetServerError needs ServerStatus and sizePtr")
        status_ptr[0] = status
        return sized(size_ptr, out, message.encode() + b"\x00")

    @extern
    def NBBSAGetJobId(handle: int, job_ptr: Any) -> int:
        rc, job_id = X.NBBSAGetJobId(handle)
        if rc != X.BSA_RC_SUCCESS:
            return rc
        if job_ptr == ffi.NULL:
            return _api._fail(RC_NULL, "NBBSAGetJobId needs jobId")
        job_ptr[0] = job_id
        return rc

    @extern
    def NBBSAGetJobInfo(handle: int, info_ptr: Any) -> int:
        if info_ptr == ffi.NULL:
            if _api._session(handle) is None:
                return _api._bad_handle(handle)
            return _api._fail(RC_NULL, "NBBSAGetJobInfo needs jobInfoPtr")
        rc, info = X.NBBSAGetJobInfo(handle)
        if rc != X.BSA_RC_SUCCESS:
            return rc
        raw = lib.calloc(1, ffi.sizeof("NBBSA_JOB_INFO"))
        if raw == ffi.NULL:
            return _api._fail(X.BSA_RC_ABORT_SYSTEM_ERROR, "out of memory")
        p = ffi.cast("NBBSA_JOB_INFO *", raw)
        p.jobId, p.jobType, p.jobState, p.jobStatus = (info.jobId, info.jobType, info.jobState,
                                                       info.jobStatus)
        put(p.policyName, info.policyName)
        put(p.scheduleName, info.scheduleName)
        put(p.clientName, info.clientName)
        put(p.serverName, info.serverName)
        tm_out(p.startTime, info.startTime)
        tm_out(p.endTime, info.endTime)
        set_u64(p.kiloBytes, info.kiloBytes)
        set_u64(p.numObjects, info.numObjects)
        put(p.backupId, info.backupId)
        info_ptr[0] = p
        return rc

    @extern
    def NBBSAFreeJobInfo(p: Any) -> int:
        if p == ffi.NULL:
            return _api._fail(RC_NULL, "NBBSAFreeJobInfo needs the record NBBSAGetJobInfo gave")
        lib.free(p)
        return X.BSA_RC_SUCCESS

    @extern
    def NBBSALogMsg(handle: int, msg_type: int, message: Any, source: Any) -> int:
        return X.NBBSALogMsg(handle, msg_type, cstr(message), cstr(source) or "")

    @extern
    def NBBSAValidateFeatureId(handle: int, feature: Any) -> int:
        return X.NBBSAValidateFeatureId(handle, cstr(feature))

    @extern
    def NBBSADeleteImage(handle: int, copy_id: Any) -> int:
        return X.NBBSADeleteImage(handle, u64(copy_id))

    @extern
    def NBBSAGetMediaIds(handle: int, copy_id: Any, size_ptr: Any, out: Any) -> int:
        if size_ptr == ffi.NULL:
            if _api._session(handle) is None:
                return _api._bad_handle(handle)
            return _api._fail(RC_NULL, "NBBSAGetMediaIds needs sizePtr")
        rc, media = X.NBBSAGetMediaIds(handle, u64(copy_id))
        if rc != X.BSA_RC_SUCCESS:
            return rc
        data = b"".join(m.encode() + b"\x00" for m in media) + b"\x00"
        return sized(size_ptr, out, data)

    @extern
    def NBBSAAddToMultiObjectRestoreList(handle: int, dp: Any) -> int:
        d = None if dp == ffi.NULL else X.BSA_ObjectDescriptor(copyId=u64(dp.copyId))
        return X.NBBSAAddToMultiObjectRestoreList(handle, d)

    @extern
    def NBBSAGetMultipleObjects(handle: int) -> int:
        return X.NBBSAGetMultipleObjects(handle)

    @extern
    def NBBSAEndGetMultipleObjects(handle: int) -> int:
        return X.NBBSAEndGetMultipleObjects(handle)

    lib.oxb_started()
