"""BasicDisk: each image is one file under the storage unit's directory."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

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
    def __init__(self, path: str, stored: StoredObject) -> None:
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise MediaReadError(f"cannot open image file {path}: {exc}") from exc
        st = os.fstat(self.fd)
        if st.st_size < stored.offset + stored.size:
            os.close(self.fd)
            raise MediaReadError(f"image file {path} is truncated")
        self.size = stored.size
        self.offset = stored.offset
        self._pos = 0

    def read(self, n: int) -> bytes:
        n = min(n, self.size - self._pos)
        if n <= 0:
            return b""
        try:
            data = os.pread(self.fd, n, self.offset + self._pos)
        except OSError as exc:
            raise MediaReadError(f"read failed: {exc}") from exc
        self._pos += len(data)
        return data

    def zero_copy(self) -> tuple[int, int] | None:
        return self.fd, self.offset

    def close(self) -> None:
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
