"""BasicDisk: each image is one file under the storage unit's directory."""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import os
from concurrent.futures import Future, ThreadPoolExecutor

import blake3

from openxbsa.errors import MediaReadError
from openxbsa.storage.base import (
    ImageWriter, ObjectReader, StorageUnit, StoredObject, image_name, write_error,
)

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """Give the blocks of a deleted object back to the file system (Linux fallocate)."""
    if length <= 0:
        return True
    try:
        fn = _libc.fallocate
    except AttributeError:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    rc = fn(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length)
    return rc == 0


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskImageWriter(ImageWriter):
    def __init__(self, root: str, location: str) -> None:
        self.location = location
        self.path = os.path.join(root, location)
        self._dir = os.path.dirname(self.path)
        try:
            os.makedirs(self._dir, exist_ok=True)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise write_error(f"cannot create image file {self.path}: {exc}", exc) from exc
        self.pos = 0
        self._start = 0
        self._hash = blake3.blake3()
        self._open = False

    def begin_object(self) -> None:
        self._start = self.pos
        self._hash = blake3.blake3()
        self._open = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        self._hash.update(view)
        try:
            while len(view):
                n = os.write(self.fd, view)
                view = view[n:]
                self.pos += n
                self.received += n
        except OSError as exc:
            raise write_error(f"write to {self.path} failed: {exc}", exc) from exc

    def end_object(self) -> StoredObject:
        self._open = False
        return StoredObject(self._start, self.pos - self._start, self._hash.hexdigest())

    def commit(self) -> None:
        try:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            fsync_dir(self._dir)
        except OSError as exc:
            raise write_error(f"flushing {self.path} failed: {exc}", exc) from exc

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class DiskObjectReader(ObjectReader):
    """Reads an object back from its image file and checks it against the checksum taken
    at backup: a restore of damaged bytes fails at its end (the client's last BSAGetData
    returns BSA_RC_ABORT_SYSTEM_ERROR) instead of handing them back as good. A restore
    still goes out by zero-copy sendfile; a thread of the reader reads the same bytes from
    the page cache and hashes them meanwhile."""

    QUEUED = 4                          # ranges waiting to be hashed (bounded memory)
    INLINE = 8 << 20                    # objects up to this size are hashed as they go out

    def __init__(self, path: str, stored: StoredObject) -> None:
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise MediaReadError(f"cannot open image file {path}: {exc}") from exc
        st = os.fstat(self.fd)
        if st.st_size < stored.offset + stored.size:
            os.close(self.fd)
            raise MediaReadError(f"image file {path} is truncated")
        self.path = path
        self.size = stored.size
        self.offset = stored.offset
        self._pos = 0                   # read() and read_views() position
        self._expected = stored.checksum
        self._hash = blake3.blake3() if stored.checksum else None
        self._checker: ThreadPoolExecutor | None = None
        self._checks: collections.deque[Future[None]] = collections.deque()
        self._checked = 0               # bytes handed to the checker

    def _pread(self, pos: int, n: int) -> bytes:
        """Bytes pos..pos+n of the object (fewer only where the file ends)."""
        try:
            data = os.pread(self.fd, n, self.offset + pos)
        except OSError as exc:
            raise MediaReadError(f"read failed: {exc}") from exc
        if not data:
            raise MediaReadError(f"image file {self.path} is truncated")
        return data

    def read(self, n: int) -> bytes:
        n = min(n, self.size - self._pos)
        if n <= 0:
            return b""
        data = self._pread(self._pos, n)
        self._pos += len(data)
        if self._hash is not None:
            self._hash.update(data)
            if self._pos == self.size:
                self._compare()
        return data

    def zero_copy(self) -> tuple[int, int] | None:
        return self.fd, self.offset

    def sent(self, n: int) -> None:
        if self._hash is None:
            return
        pos, self._checked = self._checked, self._checked + n
        if self.size <= self.INLINE:      # a thread would cost a small object more
            self._hash_range(pos, n)
            return
        if self._checker is None:
            self._checker = ThreadPoolExecutor(1, thread_name_prefix="disk-check")
        while len(self._checks) >= self.QUEUED:
            self._checks.popleft().result()
        self._checks.append(self._checker.submit(self._hash_range, pos, n))

    def _hash_range(self, pos: int, n: int) -> None:
        """Checker thread: hash bytes pos..pos+n of the object (one thread: in order)."""
        assert self._hash is not None
        self._hash.update(self._pread(pos, n))

    def finish(self) -> None:
        if self._hash is None or self._checked == 0:
            return
        while self._checks:
            self._checks.popleft().result()
        if self._checked == self.size:
            self._compare()

    def _compare(self) -> None:
        assert self._hash is not None
        if self._hash.hexdigest() != self._expected:
            raise MediaReadError(f"image file {self.path}: checksum mismatch: the stored "
                                 "bytes are damaged")

    def close(self) -> None:
        if self._checker is not None:
            for fut in self._checks:
                fut.cancel()
            self._checker.shutdown(wait=True)
            self._checker = None
            self._checks.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class DiskStorageUnit(StorageUnit):
    """Files under a directory; deleting an object punches a hole in its image file."""

    def __init__(self, name: str, path: str, media_id: str = "D00001") -> None:
        self.name = name
        self.root = os.path.abspath(path)
        self.media_id = media_id
        os.makedirs(self.root, exist_ok=True)

    def location_for(self, backup_id: str) -> str:
        return image_name(backup_id) + ".img"

    def open_writer(self, backup_id: str) -> DiskImageWriter:
        return DiskImageWriter(self.root, self.location_for(backup_id))

    def open_reader(self, location: str, stored: StoredObject) -> DiskObjectReader:
        return DiskObjectReader(os.path.join(self.root, location), stored)

    def verify_object(self, location: str, stored: StoredObject,
                      memo: dict | None = None) -> str | None:
        """Read the object through its reader, which checks the checksum as it reads (the
        base class would hash it a second time)."""
        if not stored.checksum:
            return super().verify_object(location, stored, memo)
        reader = self.open_reader(location, stored)
        try:
            while reader.read(1 << 20):
                pass
        except MediaReadError as exc:
            return exc.message
        finally:
            reader.close()
        return None

    def release(self, location: str, stored: StoredObject) -> None:
        try:
            fd = os.open(os.path.join(self.root, location), os.O_WRONLY)
        except FileNotFoundError:
            return
        try:
            _punch_hole(fd, stored.offset, stored.size)
        finally:
            os.close(fd)

    def delete_image(self, location: str) -> None:
        try:
            os.unlink(os.path.join(self.root, location))
        except FileNotFoundError:
            pass

    def sweep(self, live: set[str]) -> list[str]:
        removed = []
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                rel = os.path.relpath(os.path.join(dirpath, f), self.root)
                if rel not in live:
                    os.unlink(os.path.join(dirpath, f))
                    removed.append(rel)
        return removed
