"""A Pythonic API over ``openxbsa.xbsa`` for new agents written in Python.

    from openxbsa.session import Session

    with Session(service="unix:/var/lib/openxbsa/xbsa.sock") as s:
        with s.backup() as txn:                  # commits on success, aborts on exception
            with txn.create("/db/dump.sql") as f:
                f.write(data)
            copy_id = f.descriptor.copyId
        for d in s.query("/db/*"):               # descriptors, newest copies first or not
            print(d.copyId, d.objectName.pathName)
        with s.restore() as txn, txn.open(copy_id) as f:
            data = f.read()

Every failure raises ``XBSAError`` carrying the call's ``rc`` and the library's explanation.
"""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Iterator, Sequence
from typing import Any

from openxbsa import xbsa as X

CHUNK = 1 << 20


class XBSAError(Exception):
    """An XBSA call failed; ``rc`` is its BSA_RC_* code."""

    def __init__(self, call: str, rc: int) -> None:
        _, detail = X.BSAGetLastError()
        self.rc = rc
        self.call = call
        self.name = X.RC_NAMES.get(rc, str(rc))
        super().__init__(f"{call} failed with {self.name}: {detail or X.RC_TEXT.get(rc, '')}")


def _check(call: str, rc: int, ok: Sequence[int] = (X.BSA_RC_SUCCESS,)) -> int:
    if rc not in ok:
        raise XBSAError(call, rc)
    return rc


class Session:
    """An XBSA session (BSAInit … BSATerminate) as a context manager."""

    def __init__(self, service: str | None = None, owner: tuple[str, str] = ("", ""),
                 env: dict[str, str] | None = None) -> None:
        entries = {"BSA_API_VERSION": "1.1.0"}
        if service:
            entries["BSA_SERVICE_HOST"] = service
        entries.update(env or {})
        self.owner = X.BSA_ObjectOwner(*owner)
        rc, handle = X.BSAInit(None, self.owner, [f"{k}={v}" for k, v in entries.items()])
        _check("BSAInit", rc)
        self.handle: int = handle  # type: ignore[assignment]
        self._open = True

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            _check("BSATerminate", X.BSATerminate(self.handle))

    @property
    def environment(self) -> dict[str, str]:
        rc, _owner, env = X.BSAGetEnvironment(self.handle)
        _check("BSAGetEnvironment", rc)
        return dict(e.split("=", 1) for e in env or [])

    def backup(self) -> Transaction:
        return Transaction(self)

    def restore(self) -> Transaction:
        return Transaction(self)

    def transaction(self) -> Transaction:
        return Transaction(self)

    def query(self, path: str = "/*", *, object_space: str = "", owner: tuple[str, str] | None = None,
              status: int = X.BSA_ObjectStatus_ANY, copy_type: int = X.BSA_CopyType_ANY,
              object_type: int = X.BSA_ObjectType_ANY, since: _dt.datetime | None = None,
              until: _dt.datetime | None = None) -> Iterator[X.BSA_ObjectDescriptor]:
        """Matching descriptors, in a query transaction of their own."""
        with Transaction(self) as txn:
            yield from txn.query(path, object_space=object_space, owner=owner, status=status,
                                 copy_type=copy_type, object_type=object_type, since=since,
                                 until=until)

    def delete(self, *copy_ids: int) -> None:
        """Delete object copies in one transaction."""
        with Transaction(self) as txn:
            for copy_id in copy_ids:
                txn.delete(copy_id)


class Transaction:
    """BSABeginTxn … BSAEndTxn: commits when the block succeeds, aborts on an exception."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.handle = session.handle

    def __enter__(self) -> Transaction:
        _check("BSABeginTxn", X.BSABeginTxn(self.handle))
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            _check("BSAEndTxn", X.BSAEndTxn(self.handle, X.BSA_Vote_COMMIT))
        else:
            X.BSAEndTxn(self.handle, X.BSA_Vote_ABORT)

    def create(self, path: str, *, object_space: str = "", size: int = 1,
               copy_type: int = X.BSA_CopyType_BACKUP, object_type: int = X.BSA_ObjectType_FILE,
               resource_type: str = "OpenXBSA stream", description: str = "",
               info: bytes = b"", owner: tuple[str, str] | None = None) -> ObjectWriter:
        """A new object, written as a binary file; ``size=0`` creates an empty object."""
        d = X.BSA_ObjectDescriptor()
        d.objectOwner = X.BSA_ObjectOwner(*(owner or (self.session.owner.bsa_ObjectOwner,
                                                      self.session.owner.app_ObjectOwner)))
        d.objectName = X.BSA_ObjectName(object_space, path)
        d.copyType, d.objectType, d.estimatedSize = copy_type, object_type, size
        d.resourceType, d.objectDescription, d.objectInfo = resource_type, description, info
        block = X.BSA_DataBlock32()
        _check("BSACreateObject", X.BSACreateObject(self.handle, d, block))
        return ObjectWriter(self.handle, d, block.bufferLen or CHUNK)

    def open(self, copy_id: int) -> ObjectReader:
        """Read an object's data as a binary file."""
        d = X.BSA_ObjectDescriptor(copyId=copy_id)
        block = X.BSA_DataBlock32()
        _check("BSAGetObject", X.BSAGetObject(self.handle, d, block))
        return ObjectReader(self.handle, block.bufferLen or CHUNK)

    def query(self, path: str = "/*", *, object_space: str = "",
              owner: tuple[str, str] | None = None, status: int = X.BSA_ObjectStatus_ANY,
              copy_type: int = X.BSA_CopyType_ANY, object_type: int = X.BSA_ObjectType_ANY,
              since: _dt.datetime | None = None, until: _dt.datetime | None = None
              ) -> Iterator[X.BSA_ObjectDescriptor]:
        q = X.BSA_QueryDescriptor()
        q.objectOwner = X.BSA_ObjectOwner(*(owner or (self.session.owner.bsa_ObjectOwner,
                                                      self.session.owner.app_ObjectOwner)))
        q.objectName = X.BSA_ObjectName(object_space, path)
        q.createTime_from, q.createTime_to = since, until
        q.copyType, q.objectType, q.objectStatus = copy_type, object_type, status
        d = X.BSA_ObjectDescriptor()
        rc = X.BSAQueryObject(self.handle, q, d)
        if rc == X.BSA_RC_NO_MATCH:
            return
        _check("BSAQueryObject", rc)
        while True:
            yield d
            d = X.BSA_ObjectDescriptor()
            rc = X.BSAGetNextQueryObject(self.handle, d)
            if rc == X.BSA_RC_NO_MORE_DATA:
                return
            _check("BSAGetNextQueryObject", rc)

    def delete(self, copy_id: int) -> None:
        _check("BSADeleteObject", X.BSADeleteObject(self.handle, copy_id))


class ObjectWriter(io.RawIOBase):
    """The data stream of an object being created; closing it ends the object."""

    def __init__(self, handle: int, descriptor: X.BSA_ObjectDescriptor, buffer_len: int) -> None:
        self.handle = handle
        self.descriptor = descriptor
        self._buf = bytearray(buffer_len)
        self._fill = 0
        self._block = X.BSA_DataBlock32(bufferLen=buffer_len, bufferPtr=self._buf)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        size = len(self._buf)
        while len(view):
            if self._fill == 0 and len(view) >= size:   # whole buffers go straight out
                self._send(view[:size], size)
                view = view[size:]
                continue
            n = min(size - self._fill, len(view))
            self._buf[self._fill:self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == size:
                self._send(self._buf, size)
                self._fill = 0
        return total

    def _send(self, data: Any, n: int) -> None:
        self._block.bufferPtr, self._block.numBytes = data, n
        self._block.bufferLen = len(self._buf)
        _check("BSASendData", X.BSASendData(self.handle, self._block))

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._fill:
                self._send(self._buf, self._fill)
                self._fill = 0
            _check("BSAEndData", X.BSAEndData(self.handle))
        finally:
            super().close()


class ObjectReader(io.RawIOBase):
    """The data stream of an object being restored; closing it ends the object."""

    def __init__(self, handle: int, buffer_len: int) -> None:
        self.handle = handle
        self._buf = bytearray(buffer_len)
        self._block = X.BSA_DataBlock32(bufferLen=buffer_len, bufferPtr=self._buf)
        self._pos = 0
        self._len = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        if self._pos == self._len:
            if self._eof:
                return 0
            rc = X.BSAGetData(self.handle, self._block)
            _check("BSAGetData", rc, (X.BSA_RC_SUCCESS, X.BSA_RC_NO_MORE_DATA))
            self._eof = rc == X.BSA_RC_NO_MORE_DATA
            self._pos, self._len = 0, self._block.numBytes
            if self._len == 0:
                return 0
        n = min(len(view), self._len - self._pos)
        view[:n] = self._buf[self._pos:self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        if self.closed:
            return
        try:
            _check("BSAEndData", X.BSAEndData(self.handle))
        finally:
            super().close()
