"""The storage-unit contract: every kind of storage implements these few methods.

A storage unit stores the objects of an image. Writers append object streams to an image
and make them durable only at ``commit``; until then ``abort`` (or a crash followed by
``sweep``) removes every byte written. This module imports nothing else of OpenXBSA.
"""

from __future__ import annotations

import errno
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import blake3

from openxbsa.errors import MediaWriteError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str) -> str:
    """``text`` with every character a file name should not carry replaced by ``_``."""
    return _UNSAFE.sub("_", text)


def image_name(backup_id: str) -> str:
    """``client/backup_id`` as file-system-safe names: where an image lives in a unit."""
    return f"{safe_name(backup_id.rsplit('_', 1)[0]) or 'client'}/{safe_name(backup_id)}"


def write_error(message: str, exc: OSError) -> MediaWriteError:
    """A failed write as NetBackup reports it: status 129 (disk full) for ENOSPC, else 84
    (media write error)."""
    return MediaWriteError(message, status=129 if exc.errno == errno.ENOSPC else 84)


def dedup_rate(received: int | None, after_dedup: int | None) -> float | None:
    """NetBackup's deduplication rate: the share (%) of received bytes already stored."""
    if not received:
        return None
    return round(100.0 * (1 - (after_dedup or 0) / received), 1)


@dataclass(frozen=True)
class StoredObject:
    """Where one object's bytes are inside an image, and their checksum."""

    offset: int
    size: int
    checksum: str


class ImageWriter(ABC):
    """Writes the objects of one image, one at a time."""

    location: str

    @abstractmethod
    def begin_object(self) -> None:
        """Start a new object stream after the previous one."""

    @abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes to the current object. Raises MediaWriteError on failure."""

    @abstractmethod
    def end_object(self) -> StoredObject:
        """Close the current object and say where it is."""

    @abstractmethod
    def commit(self) -> None:
        """Make every byte written so far durable (flushed to stable storage)."""

    @abstractmethod
    def abort(self) -> None:
        """Remove everything this writer wrote. Safe to call more than once."""

    def write_buffer(self, length: int) -> memoryview | None:
        """A buffer the next ``length`` bytes may be received into directly (saving a copy),
        followed by ``wrote(length)``; None when the writer has none: then ``write``."""
        return None

    def wrote(self, length: int) -> None:
        """``length`` bytes were received into the ``write_buffer`` view."""
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Bytes received, left after deduplication, and stored (after compression and
        with format overhead). A unit that neither deduplicates nor compresses stores
        what it receives."""
        n = self.received
        return {"received": n, "after_dedup": n, "stored": n}

    received: int = 0


class ObjectReader(ABC):
    """Reads one stored object; ``fileno``/``offset`` allow a zero-copy send when not None."""

    size: int

    @abstractmethod
    def read(self, n: int) -> bytes:
        """Up to ``n`` next bytes; b'' at the end."""

    def read_views(self, n: int) -> list[memoryview]:
        """The same bytes as ``read(n)``, as pieces a gathering send takes without joining
        them; kinds that hold decoded data in pieces override it to spare the copy."""
        data = self.read(n)
        return [memoryview(data)] if data else []

    def zero_copy(self) -> tuple[int, int] | None:
        """(file descriptor, offset) for os.sendfile, or None when the kind cannot."""
        return None

    def sent(self, n: int) -> None:
        """The next ``n`` bytes went out by zero-copy (a kind that checks what it sends
        reads them back meanwhile)."""

    def finish(self) -> None:
        """All of the object was sent; raise MediaReadError if it was not what was stored."""

    @abstractmethod
    def close(self) -> None:
        """Release the reader."""


class StorageUnit(ABC):
    """One place backups are written to: a directory, a dedup pool, a bucket, a tape library."""

    name: str
    media_id: str

    @abstractmethod
    def location_for(self, backup_id: str) -> str:
        """Where the image with this backup ID lives inside the unit (recorded in the catalog)."""

    @abstractmethod
    def open_writer(self, backup_id: str) -> ImageWriter:
        """A writer for a new image; nothing it writes is durable before ``commit``."""

    @abstractmethod
    def open_reader(self, location: str, stored: StoredObject) -> ObjectReader:
        """A reader of one committed object. Raises MediaReadError if it cannot be read."""

    @abstractmethod
    def release(self, location: str, stored: StoredObject) -> None:
        """Free the space of one deleted object of an image that lives on."""

    @abstractmethod
    def delete_image(self, location: str) -> None:
        """Remove an image and every byte of it. Missing images are not an error."""

    @abstractmethod
    def sweep(self, live: set[str]) -> list[str]:
        """Remove every image whose location is not in ``live``; returns what was removed."""

    def maintain(self) -> None:
        """Periodic housekeeping (garbage collection); the server calls it between jobs."""

    def verify_object(self, location: str, stored: StoredObject,
                      memo: dict | None = None) -> str | None:
        """Why this object cannot be restored intact, or None. Reads it back and compares
        its blake3 checksum; kinds that can check more cheaply override this."""
        reader = self.open_reader(location, stored)
        try:
            digest = blake3.blake3()
            while chunk := reader.read(1 << 20):
                digest.update(chunk)
        finally:
            reader.close()
        if digest.hexdigest() != stored.checksum:
            return "checksum mismatch: the stored bytes are damaged"
        return None
