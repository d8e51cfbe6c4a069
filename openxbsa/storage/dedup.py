"""The deduplicating pool: content-defined chunks, each stored once, compressed and encrypted.

How a stream is stored
    FastCDC cuts the stream into chunks (about 80 KiB: small enough that a database dump
    with a few changed pages shares most of its chunks with yesterday's). A chunk's ID is
    a keyed blake3 hash of its bytes, so IDs reveal nothing without the pool key. A chunk
    whose ID the pool already holds is not stored again: the object's *recipe* (its chunk
    IDs in order) refers to it. New chunks of a writer are grouped into *blobs* of about
    1 MiB, each chunk compressed with zstd as a frame of its own (as small as one frame of
    the whole blob on text) and sealed with AES-256-GCM on its own, the blob's header and
    chunk table under a tag of their own: a restore reads, decrypts and decodes only the
    chunks it uses. Blobs are appended to *pack files* of about
    32 MiB; one writer owns its pack files (each of its sealer threads one at a time), so
    concurrent backups never share a file.

Where things are
    ``<pool>/pool.json``  format, pool ID, chunker parameters, the key's fingerprint (after
                          a rotation also the pool key, sealed under the key file)
    ``<pool>/index.db``   SQLite: packs, blobs, chunks (with reference counts), recipes
                          (in pieces of PART_IDS chunk IDs), recipe records' places
    ``<pool>/packs/XX/`` the pack files
    ``<pool>/tmp/``       running backups' scratch databases (see _Scratch)
    ``<home>/keys/<unit>.key``  the pool key, held by the server, never in the pool

Recovery of the index
    At commit each image's recipes are also sealed into packs (*recipe records*), which
    collection keeps while any object of the image is left; ``rebuild_index`` rebuilds the
    index from the packs alone, taking the recipes the catalog still holds.

Crash consistency
    A writer's packs are fsynced before the one index transaction that records its blobs,
    chunks, recipes and reference counts; the catalog commits after that. A crash before
    the index commit leaves unreferenced pack files; one after it leaves recipes of an image
    the catalog does not know. ``sweep`` (at server start) removes both, so no chunk is
    ever referenced and missing, and nothing committed is lost.

Garbage collection
    Deleting an image drops its recipes and decrements its chunks' reference counts.
    ``collect`` removes chunks nobody references (except those a running backup has just
    deduplicated against: they are pinned, in its scratch, until it ends), then blobs
    without chunks, then packs without blobs; packs mostly dead are rewritten
    (*repacked*): live blobs copied sealed, blobs mostly dead sealed anew with their live
    chunks only.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import logging
import mmap
import os
import queue
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import blake3
import msgpack
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyfastcdc.cy import FastCDC

from openxbsa.errors import MediaReadError, MediaWriteError, OpenXBSAError
from openxbsa.server import faults
from openxbsa.storage.base import (
    ImageWriter, ObjectReader, StorageUnit, StoredObject, image_name, safe_name, write_error,
)
from openxbsa.storage.disk import fsync_dir

log = logging.getLogger("openxbsa.media")

FORMAT = 2                      # 2: sealed blobs (FLAG_SEALED); a pool of format 1 is
                                # upgraded when opened (its blobs are read as they are)
ID_LEN = 32
CHUNK_AVG = 64 << 10            # FastCDC's avg parameter; real average ≈ avg + min
CHUNK_MIN = 16 << 10
CHUNK_MAX = 256 << 10
SEGMENT = 4 << 20               # bytes cut at once (the last chunk waits for more data)
SEGMENTS = 6                    # segment buffers per writer: one filling, two handed to the
                                # cutter, three for the blobs in flight that point into them
CUTS_QUEUED = 2                 # full segments the session hands on before it waits
SEALERS = 2                     # threads compressing and encrypting blobs
SEALS_IN_FLIGHT = 8             # blobs handed to the sealers, unwritten (docs/dedup.md: not 3)
PREFETCH = 256                  # decoded chunks a reader keeps ready
HANDOVER = 16                   # chunks the prefetch thread hands the session at once: one
                                # wake-up per batch, not per chunk (docs/bench-history.md)
DECODERS = 2                    # threads reading and decoding blobs for one reader
LOOKAHEAD = 384                 # chunks planned ahead (their blobs decode meanwhile)
CHECKED_IDS = 1 << 16           # chunk IDs a reader remembers as checked (about 7 MB at
                                # most; beyond, it forgets them all and checks chunks again)
CACHED_BLOBS = 32               # decoded blobs a reader keeps (about 32 MiB)
BLOB_TARGET = 1 << 20           # raw bytes grouped and sealed together
PACK_TARGET = 32 << 20          # a writer starts a new pack file beyond this size
ZSTD_LEVEL = 1                  # measured: on text as small as level 3, 1.3x faster (docs/dedup.md)
TRIAL = 64 << 10                # sample compressed first to skip incompressible blobs
TRIAL_KEEP = 0.92               # a sample larger than this fraction: store the blob raw
REPACK_BELOW = 0.5              # repack a pack whose live share fell below this
REWRITE_BELOW = 0.5             # while repacking, rewrite a blob whose live share is below
LOOKUP_BATCH = 500              # chunk IDs per index query
PART_IDS = 1 << 16              # chunk IDs per stored piece of a recipe (2 MiB, ~5 GiB of data)
RECORD_TARGET = 4 << 20         # recipe-record payload beyond which a new record is started
ALIGN = 4096                    # direct I/O: offsets, lengths and buffers in multiples of it
CHECK_LISTED = 100              # problems of one kind `pool check` lists before counting
GC_BATCH = 10_000               # unreferenced chunks collected per index transaction
SCRATCH_CACHE_KIB = 8 << 10     # page cache of a writer's scratch database (8 MiB)
INDEX_VERSION = 2               # 2: recipes in pieces, several recipe records per image

PACK_MAGIC = b"OXPACK1\n"
BLOB_MAGIC = b"OXB1"
RECIPE_MAGIC = b"OXR1"          # an image's recipes, sealed like a blob with no chunk table
# blob record: magic, flags, nonce, chunk count, raw length, ciphertext length
BLOB_HEAD = struct.Struct("<4sB12sIII")
TABLE_ENTRY = struct.Struct(f"<{ID_LEN}sI")           # chunk ID, length
FRAME_ENTRY = struct.Struct(f"<{ID_LEN}sII")          # chunk ID, length, stored length
FLAG_ZSTD = 1       # the payload is one zstd frame of the whole blob (the first blobs)
FLAG_FRAMES = 2     # the payload is one unit per chunk (FRAME_ENTRY table), each a zstd frame
                    # when its stored length is less than its length, else the chunk itself
FLAG_SEALED = 4     # with FLAG_FRAMES: each unit sealed on its own (stored length includes its
                    # tag), the header and table by a tag of their own that opens the payload
                    # (see _unit_nonce): a restore reads and decrypts only the chunks it uses
HEAD_READ = 4096                # a sealed blob is read header first: this much at once
SPAN_GAP = 16 << 10             # units needed this close together are read in one pread
STAGING = 2 << 20               # a decoder's buffer for the units it reads of one blob

SCHEMA = """
CREATE TABLE IF NOT EXISTS packs (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY, pack INTEGER NOT NULL REFERENCES packs(id),
    offset INTEGER NOT NULL, stored INTEGER NOT NULL, raw INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS blobs_pack ON blobs(pack);
CREATE TABLE IF NOT EXISTS chunks (
    id BLOB PRIMARY KEY, blob INTEGER NOT NULL, off INTEGER NOT NULL,
    len INTEGER NOT NULL, refs INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_blob ON chunks(blob);
CREATE INDEX IF NOT EXISTS chunks_dead ON chunks(refs) WHERE refs <= 0;
CREATE TABLE IF NOT EXISTS recipes (
    location TEXT NOT NULL, seq INTEGER NOT NULL, size INTEGER NOT NULL,
    ids BLOB NOT NULL, PRIMARY KEY (location, seq));
CREATE TABLE IF NOT EXISTS recipe_parts (
    location TEXT NOT NULL, seq INTEGER NOT NULL, part INTEGER NOT NULL,
    ids BLOB NOT NULL, PRIMARY KEY (location, seq, part));
CREATE TABLE IF NOT EXISTS recipe_records (
    pack INTEGER NOT NULL REFERENCES packs(id), offset INTEGER NOT NULL,
    location TEXT NOT NULL, stored INTEGER NOT NULL, PRIMARY KEY (pack, offset));
CREATE INDEX IF NOT EXISTS recipe_records_location ON recipe_records(location);
"""

# A writer's working set until its commit (see _Scratch): never synced, never committed.
SCRATCH_SCHEMA = """
CREATE TABLE seen (id BLOB PRIMARY KEY, n INTEGER NOT NULL, new INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE blobs (id INTEGER PRIMARY KEY, pack TEXT NOT NULL, offset INTEGER NOT NULL,
                    stored INTEGER NOT NULL, raw INTEGER NOT NULL);
CREATE TABLE placed (blob INTEGER NOT NULL, id BLOB NOT NULL, off INTEGER NOT NULL,
                     len INTEGER NOT NULL);
CREATE INDEX placed_blob ON placed(blob);
CREATE TABLE parts (seq INTEGER NOT NULL, part INTEGER NOT NULL, ids BLOB NOT NULL,
                    PRIMARY KEY (seq, part));
"""


def _write_all(fd: int, parts: list[bytes | memoryview]) -> None:
    """writev until every byte of ``parts`` is written."""
    views = [memoryview(p) for p in parts]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def direct_io_works(directory: str) -> bool:
    """Whether files in ``directory`` can be written and read with direct I/O (O_DIRECT:
    the kernel moves the bytes between our buffers and the disk, no page cache between)."""
    if not hasattr(os, "O_DIRECT"):
        return False
    path = os.path.join(directory, f"direct-probe-{os.urandom(4).hex()}")
    buf = mmap.mmap(-1, ALIGN)
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
    except OSError:                     # refused, or a pool this process may only read
        buf.close()
        return False
    try:
        return os.write(fd, buf) == ALIGN and os.preadv(fd, [buf], 0) == ALIGN
    except OSError:
        return False
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):    # a starting server's sweep took it
            os.unlink(path)
        buf.close()


def wants_direct_io() -> bool:
    """Pack files bypass the page cache only when the server is started with
    OPENXBSA_DIRECT_IO=on (and the file system takes it). Measured with bench/vs_peers on
    this project's 2-vCPU VM (docs/dedup.md, "Direct I/O"): it saves the kernel's page-cache
    work on writes, and a backup no longer evicts the host's cache, but restores lose the
    page cache's help when they read a blob again (deduplicated data, the daily dumps):
    daily restores 1.84x borg buffered against 1.39x direct, text streams 1.57x against
    1.32x; backups the same either way. So buffered is the default."""
    return os.environ.get("OPENXBSA_DIRECT_IO", "").lower() in ("1", "on", "yes", "true")


class _PackOutput:
    """Appends records to one pack file at a time (a sealer's). With direct I/O the bytes
    go through an aligned staging buffer, kept from file to file: whole ALIGN blocks are
    written as they fill, the last partial block when the file is finished (padded, then
    the file cut back to its true length)."""

    def __init__(self, direct: bool) -> None:
        self.direct = direct
        self.fd = -1                            # the open pack file, -1 when none
        self.size = 0                           # bytes appended to it (its true length)
        self._stage: mmap.mmap | None = None     # direct: made at the first file
        self._fill = 0                          # staged bytes not yet written

    def start(self, fd: int) -> None:
        self.fd, self.size, self._fill = fd, 0, 0
        if self.direct and self._stage is None:
            self._stage = mmap.mmap(-1, 2 * BLOB_TARGET)

    def append(self, parts: list[bytes | memoryview]) -> None:
        n = sum(len(p) for p in parts)
        if self._stage is None:
            _write_all(self.fd, parts)
            self.size += n
            return
        if self._fill + n > len(self._stage):
            bigger = mmap.mmap(-1, _aligned(self._fill + n))
            bigger[:self._fill] = self._stage[:self._fill]
            self._stage.close()
            self._stage = bigger
        for p in parts:
            self._stage[self._fill:self._fill + len(p)] = p
            self._fill += len(p)
        self.size += n
        self._write_blocks(self._fill - self._fill % ALIGN)

    def _write_blocks(self, whole: int) -> None:
        if not whole:
            return
        assert self._stage is not None
        with memoryview(self._stage) as view:
            _write_all(self.fd, [view[:whole]])
        rest = self._fill - whole
        self._stage[:rest] = self._stage[whole:self._fill]
        self._fill = rest

    def finish(self) -> int:
        """Write what is staged; the file descriptor (to be synced and closed). No file is
        open after, even when this fails."""
        fd = self.fd
        try:
            if self._stage is not None and self._fill:
                end = _aligned(self._fill)
                self._stage[self._fill:end] = bytes(end - self._fill)
                self._fill = end
                self._write_blocks(end)
                os.ftruncate(fd, self.size)
        except BaseException:
            os.close(fd)
            raise
        finally:
            self.fd, self.size, self._fill = -1, 0, 0
        return fd

    def discard(self) -> None:
        """Close the file without writing what is staged (the writer aborts)."""
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.size, self._fill = -1, 0, 0


def _ids_in(db: sqlite3.Connection, select: str, ids: list[bytes]) -> set[bytes]:
    """The IDs ``select`` (a query ending in WHERE or AND) finds among ``ids``, asked
    LOOKUP_BATCH at a time."""
    found: set[bytes] = set()
    for i in range(0, len(ids), LOOKUP_BATCH):
        batch = ids[i:i + LOOKUP_BATCH]
        q = f"{select} id IN ({','.join('?' * len(batch))})"
        found.update(r[0] for r in db.execute(q, batch))
    return found


def _sample(views: list[memoryview], n: int) -> bytes | memoryview:
    """The first ``n`` bytes of the chunks ``views`` (fewer if they hold fewer)."""
    if len(views[0]) >= n or len(views) == 1:
        return views[0][:n]
    parts, have = [], 0
    for view in views:
        parts.append(view[:n - have])
        have += len(parts[-1])
        if have >= n:
            break
    return b"".join(parts)


def split_ids(ids: bytes) -> list[bytes]:
    """The chunk IDs of a recipe (or a piece of one), in order."""
    return [ids[i:i + ID_LEN] for i in range(0, len(ids), ID_LEN)]


def _count_refs(db: sqlite3.Connection, ids: bytes, sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) the references a recipe piece makes."""
    refs = collections.Counter(split_ids(ids))
    db.executemany("UPDATE chunks SET refs = refs + ? WHERE id = ?",
                   [(sign * n, cid) for cid, n in refs.items()])


def _put_piece(db: sqlite3.Connection, location: str, seq: int, size: int, part: int,
               ids: bytes) -> None:
    """Enter one piece of a recipe: the first with the object's size in ``recipes``, the
    others in ``recipe_parts``."""
    if part == 0:
        db.execute("INSERT INTO recipes(location, seq, size, ids) VALUES (?, ?, ?, ?)",
                   (location, seq, size, ids))
    else:
        db.execute("INSERT INTO recipe_parts(location, seq, part, ids) VALUES (?, ?, ?, ?)",
                   (location, seq, part, ids))


def recipe_checksum(ids: bytes) -> str:
    """The catalog checksum of a deduplicated object: blake3 of its chunk IDs in order
    (each chunk is itself verified against its ID when read)."""
    return blake3.blake3(ids).hexdigest()


def _write_failure(pool: str, exc: BaseException, doing: str = "writing to") -> OpenXBSAError:
    """A writer's failure as the session reports it: a full disk (the packs', or the
    working set's SQLite saying so) is status 129, anything else 84."""
    if isinstance(exc, OpenXBSAError):
        return exc
    if isinstance(exc, OSError):
        return write_error(f"{doing} dedup pool {pool} failed: {exc}", exc)
    if isinstance(exc, sqlite3.Error) and \
            getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return MediaWriteError(f"dedup pool {pool}: no space left for the backup's working "
                               f"set ({exc})", status=129)
    return MediaWriteError(f"dedup pool {pool}: {exc}")


@contextlib.contextmanager
def _media_errors(pool: str) -> Iterator[None]:
    """Inside: any storage or SQLite error (not already an XBSA one) leaves as the media
    error the session reports, so a pool that fails ends a transaction, not the session."""
    try:
        yield
    except OpenXBSAError:
        raise
    except Exception as exc:
        raise _write_failure(pool, exc) from exc


def _unit_nonce(nonce: bytes, i: int) -> bytes:
    """The nonce of part ``i`` of a sealed blob (0: its header and table; chunk k: k + 1):
    the blob's random 96-bit nonce with ``i`` added to its last 32 bits, so every part of
    every blob has a nonce of its own."""
    low = (int.from_bytes(nonce[8:], "little") + i) & 0xFFFFFFFF
    return nonce[:8] + low.to_bytes(4, "little")


def check_chunk(data: memoryview, cid: bytes, id_key: bytes, where: str) -> None:
    """Raise MediaReadError unless ``data`` hashes to its chunk ID ``cid``."""
    if blake3.blake3(data, key=id_key).digest() != cid:
        raise MediaReadError(f"{where}: chunk {cid.hex()[:16]} does not match its ID: "
                             "the stored bytes are damaged")


class PoolKey:
    """The pool key and what is derived from it: the chunk-ID key and the AES-256-GCM key."""

    def __init__(self, master: bytes) -> None:
        self.id_key = blake3.blake3(master, derive_key_context=(
            "OpenXBSA dedup pool 2026-11 chunk id")).digest()
        self.enc_key = blake3.blake3(master, derive_key_context=(
            "OpenXBSA dedup pool 2026-11 blob encryption")).digest()
        self.fingerprint = blake3.blake3(master, derive_key_context=(
            "OpenXBSA dedup pool 2026-11 key check")).hexdigest()[:32]

    @staticmethod
    def load_or_create(path: str, create: bool) -> bytes:
        try:
            with open(path) as f:
                text = f.read().strip()
        except FileNotFoundError:
            if not create:
                raise MediaReadError(f"the pool key {path} is missing: without it the pool "
                                     "cannot be read (restore the key file from its backup)")
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            master = os.urandom(32)
            try:
                PoolKey.write_new(path, master)
            except FileExistsError:            # created by another process meanwhile
                return PoolKey.load_or_create(path, False)
            return master
        try:
            master = bytes.fromhex(text)
        except ValueError:
            master = b""
        if len(master) != 32:
            raise MediaReadError(f"the pool key {path} is not 64 hexadecimal digits")
        return master

    @staticmethod
    def write_new(path: str, key: bytes) -> None:
        """Write a key file (0600) durably; it must not exist yet."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(os.path.dirname(path))


def _wrapping_key(kek: bytes) -> AESGCM:
    return AESGCM(blake3.blake3(kek, derive_key_context=(
        "OpenXBSA dedup pool 2026-11 key wrapping")).digest())


def wrap_key(kek: bytes, master: bytes, pool_id: bytes) -> str:
    """The pool key sealed under a key-encryption key (the key file after a rotation)."""
    nonce = os.urandom(12)
    return (nonce + _wrapping_key(kek).encrypt(nonce, master, b"pool key " + pool_id)).hex()


def unwrap_key(kek: bytes, wrapped: str, pool_id: bytes) -> bytes | None:
    """The pool key, or None when ``kek`` is not the key it was sealed under."""
    try:
        raw = bytes.fromhex(wrapped)
        return _wrapping_key(kek).decrypt(raw[:12], raw[12:], b"pool key " + pool_id)
    except (ValueError, InvalidTag):
        return None


class _Decoder:
    """Reads blobs back: authenticate, decompress, check every chunk against its ID."""

    def __init__(self, key: PoolKey) -> None:
        self.key = key
        self.aead = AESGCM(key.enc_key)
        self.dctx = zstandard.ZstdDecompressor()
        self._staging: memoryview | None = None

    def staging(self) -> memoryview:
        """This decoder's buffer for the units of the blob it opens (reused, blob after
        blob: fresh memory for each would cost a page fault per 4 KiB)."""
        if self._staging is None:
            self._staging = memoryview(bytearray(STAGING))
        return self._staging

    def open(self, data: bytes | memoryview, pos: int, where: str,
             magics: tuple[bytes, ...] = (BLOB_MAGIC,)
             ) -> tuple[bytes, int, int, int, bytes | memoryview, int]:
        """Authenticate the record at ``pos`` of ``data`` (a blob, or one of ``magics``):
        its magic, flags, chunk count, raw length, payload, and where it ends. The payload
        is decrypted, but for a sealed blob: there the header and table are authenticated
        and the payload is the sealed chunks (each authenticated when it is opened)."""
        if len(data) - pos < BLOB_HEAD.size:
            raise MediaReadError(f"{where}: the blob is truncated")
        magic, flags, nonce, count, raw_len, ct_len = BLOB_HEAD.unpack_from(data, pos)
        table_end = pos + BLOB_HEAD.size + count * _entry(flags).size
        end = table_end + ct_len
        if magic not in magics or end > len(data) or ct_len < 16:
            raise MediaReadError(f"{where}: the blob header is damaged")
        view = memoryview(data)
        if flags & FLAG_SEALED:
            self._authenticate(nonce, view[pos:table_end], view[table_end:table_end + 16],
                               where)
            return magic, flags, count, raw_len, view[table_end + 16:end], end
        try:
            payload = self.aead.decrypt(nonce, view[table_end:end], bytes(view[pos:table_end]))
        except InvalidTag:
            raise MediaReadError(f"{where}: authentication failed: the stored bytes are "
                                 "damaged or were altered") from None
        return magic, flags, count, raw_len, payload, end

    def _authenticate(self, nonce: bytes, head: memoryview, tag: memoryview, where: str) -> None:
        """Check a sealed blob's header and chunk table against their tag."""
        try:
            self.aead.decrypt(nonce, tag, bytes(head))
        except InvalidTag:
            raise MediaReadError(f"{where}: authentication failed: the stored bytes are "
                                 "damaged or were altered") from None

    @staticmethod
    def entries(data: bytes | memoryview, pos: int, count: int, flags: int
                ) -> list[tuple[bytes, int, int]]:
        """The chunk table of the (authenticated) record at ``pos``: (chunk ID, length,
        stored length) of each chunk, in order."""
        entry = _entry(flags)
        start = pos + BLOB_HEAD.size
        rows = [entry.unpack_from(data, start + i * entry.size) for i in range(count)]
        return rows if flags & FLAG_FRAMES else [(cid, n, n) for cid, n in rows]

    def blob(self, record: bytes | memoryview, where: str) -> _Blob:
        """The blob in ``record``, authenticated; its chunks are decoded when asked for."""
        _magic, flags, count, raw_len, payload, end = self.open(record, 0, where)
        if end != len(record):
            raise MediaReadError(f"{where}: the blob header is damaged")
        entries = self.entries(record, 0, count, flags)
        if sum(e[1] for e in entries) != raw_len:
            raise MediaReadError(f"{where}: the blob's chunk table is damaged")
        if flags & FLAG_SEALED:
            units = memoryview(payload)
            return _Blob(where, b"", entries, framed=True, nonce=BLOB_HEAD.unpack_from(record)[2],
                         source=lambda at, n: units[at:at + n], size=len(units))
        if flags & FLAG_FRAMES:
            if sum(e[2] for e in entries) != len(payload):
                raise MediaReadError(f"{where}: the blob's chunk table is damaged")
            return _Blob(where, payload, entries, framed=True)
        if flags & FLAG_ZSTD:
            payload = self.inflate(payload, raw_len, where, "the blob")
        elif len(payload) != raw_len:
            raise MediaReadError(f"{where}: the blob decodes to the wrong size")
        return _Blob(where, payload, entries, framed=False)

    def inflate(self, data: bytes | memoryview, n: int, where: str, what: str) -> bytes:
        """``data`` decompressed: ``n`` bytes, or MediaReadError."""
        try:
            out = self.dctx.decompress(data, max_output_size=n)
        except zstandard.ZstdError as exc:
            raise MediaReadError(f"{where}: decompression failed: {exc}") from None
        if len(out) != n:
            raise MediaReadError(f"{where}: {what} decodes to the wrong size")
        return out

    def sealed_blob(self, head: bytes, stored: int, where: str,
                    source: Callable[[int, int], bytes | memoryview]) -> _Blob:
        """A sealed blob of ``stored`` bytes from its header and chunk table (``head``, up
        to and with their tag), authenticated; ``source(at, n)`` gives the ``n`` bytes at
        ``at`` of its sealed chunks."""
        magic, flags, nonce, count, raw_len, ct_len = BLOB_HEAD.unpack_from(head)
        table_end = BLOB_HEAD.size + count * FRAME_ENTRY.size
        if magic != BLOB_MAGIC or flags != FLAG_FRAMES | FLAG_SEALED or ct_len < 16 \
                or table_end + ct_len != stored or len(head) < table_end + 16:
            raise MediaReadError(f"{where}: the blob header is damaged")
        view = memoryview(head)
        self._authenticate(nonce, view[:table_end], view[table_end:table_end + 16], where)
        entries = self.entries(head, 0, count, flags)
        if sum(e[1] for e in entries) != raw_len:
            raise MediaReadError(f"{where}: the blob's chunk table is damaged")
        return _Blob(where, b"", entries, framed=True, nonce=nonce, source=source,
                     size=ct_len - 16)

    def decode(self, record: bytes, where: str, verify: bool = True) -> bytes:
        """The blob's bytes, authenticated; with ``verify`` every chunk is also re-hashed
        against its ID (a reader instead checks the chunks it uses)."""
        blob = self.blob(record, where)
        chunks = []
        for cid, off, n in blob.chunks():
            chunks.append(blob.chunk(off, n, self))
            if verify:
                check_chunk(chunks[-1], cid, self.key.id_key, where)
        return b"".join(chunks) if blob.framed else blob.payload


def _entry(flags: int) -> struct.Struct:
    return FRAME_ENTRY if flags & FLAG_FRAMES else TABLE_ENTRY


class _Blob:
    """An authenticated blob. A framed blob (FLAG_FRAMES) decodes a chunk only when it is
    first asked for: a restore that needs three chunks of a blob (yesterday's dump, whose
    new chunks are spread over many blobs) decompresses those three, not the blob; a sealed
    one (FLAG_SEALED) also decrypts only those, taking their units from ``source``."""

    def __init__(self, where: str, payload: bytes, entries: list[tuple[bytes, int, int]],
                 framed: bool, nonce: bytes | None = None,
                 source: Callable[[int, int], bytes | memoryview] | None = None,
                 size: int = 0) -> None:
        self.where = where
        self.payload = payload              # framed: the units; else: the blob's bytes
        self.framed = framed
        self.nonce = nonce                  # sealed: each unit opened with its own nonce
        self._source = source or (lambda at, n: memoryview(self.payload)[at:at + n])
        # offset -> (unit number, ID, length, where its unit is, stored length)
        self._units: dict[int, tuple[int, bytes, int, int, int]] = {}
        off = at = 0
        for i, (cid, n, stored) in enumerate(entries):
            if nonce is not None and stored < 16:
                raise MediaReadError(f"{where}: the blob's chunk table is damaged")
            self._units[off] = (i, cid, n, at, stored)
            off += n
            at += stored
        if nonce is not None and at != size:
            raise MediaReadError(f"{where}: the blob's chunk table is damaged")
        self._decoded: dict[int, bytes | memoryview] = {}
        # units read ahead (sealed): unit start -> its bytes, maybe in the reading decoder's
        # staging buffer, so valid only until that decoder opens its next blob
        self.prefetched: dict[int, memoryview] = {}

    def chunks(self) -> list[tuple[bytes, int, int]]:
        """(chunk ID, offset, length) of every chunk, in order."""
        return [(cid, off, n) for off, (_i, cid, n, _at, _st) in self._units.items()]

    def spans(self, offsets: list[int], gap: int) -> list[tuple[int, int, list[tuple[int, int]]]]:
        """Where the units of the chunks at ``offsets`` lie in the payload, as reads: (start,
        end, [(unit start, stored length)]), units less than ``gap`` apart in one read."""
        units = sorted({(self._units[o][3], self._units[o][4]) for o in offsets
                        if o in self._units})
        out: list[tuple[int, int, list[tuple[int, int]]]] = []
        for at, stored in units:
            if out and at - out[-1][1] < gap:
                out[-1] = (out[-1][0], max(out[-1][1], at + stored), out[-1][2] + [(at, stored)])
            else:
                out.append((at, at + stored, [(at, stored)]))
        return out

    def chunk(self, off: int, length: int, decoder: _Decoder) -> memoryview:
        """The chunk at ``off`` (its place in the blob's bytes), decoded with ``decoder``
        (one per thread) if it is a unit not decoded before."""
        if not self.framed:
            if off + length > len(self.payload):
                raise MediaReadError(f"{self.where}: the blob has no chunk at offset {off}")
            return memoryview(self.payload)[off:off + length]
        got = self._decoded.get(off)
        if got is None:
            unit = self._units.get(off)
            if unit is None or unit[2] != length:
                raise MediaReadError(f"{self.where}: the blob has no chunk at offset {off}")
            got = self._open_unit(unit, decoder, decompress=True)
            self._decoded[off] = got
        return memoryview(got)

    def _open_unit(self, unit: tuple[int, bytes, int, int, int], decoder: _Decoder,
                   decompress: bool) -> bytes | memoryview:
        i, cid, n, at, stored = unit
        piece = self._source(at, stored)
        if self.nonce is not None:
            if len(piece) != stored:
                raise MediaReadError(f"{self.where}: the pack file is truncated")
            try:
                piece = decoder.aead.decrypt(_unit_nonce(self.nonce, i + 1), piece, cid)
            except InvalidTag:
                raise MediaReadError(f"{self.where}: authentication failed for chunk "
                                     f"{cid.hex()[:16]}: the stored bytes are damaged or "
                                     "were altered") from None
        if len(piece) < n and decompress:
            piece = decoder.inflate(piece, n, self.where, "a chunk")
        return piece

    def authenticate(self, decoder: _Decoder) -> None:
        """Check every unit of a sealed blob against its tag (nothing is decompressed)."""
        if self.nonce is not None:
            for unit in self._units.values():
                self._open_unit(unit, decoder, decompress=False)


class _SealContext:
    """What one sealer uses: compressors, the cipher, an output buffer and its own pack
    file (sealers append to different files, so the kernel writes them in parallel)."""

    def __init__(self, unit: DedupStorageUnit, size: int) -> None:
        self.zc = zstandard.ZstdCompressor(level=unit.zstd_level)
        self.trial = zstandard.ZstdCompressor(level=1)
        self.aead = AESGCM(unit.key.enc_key)
        self.out = bytearray(size + 16 * (size // unit.chunk_min + 2))   # a tag per chunk
        self.pack = ""                      # name of the open pack file, "" when none
        self.pack_out = _PackOutput(unit.direct_io)

    def seal(self, raw: memoryview | list[memoryview], items: list[tuple[bytes, int]],
             compress: bool, magic: bytes = BLOB_MAGIC) -> tuple[bytes, memoryview]:
        """One record of ``raw`` (the chunks ``items``, in order, a view each; or, with no
        items, the record's payload): its header with the chunk table, and what follows
        them (a view of ``out``, valid until the next seal).

        A blob is sealed chunk by chunk (FLAG_SEALED): a restore that needs three of its
        chunks reads and decrypts those three. Each chunk is compressed on its own when
        asked (measured on log text: the same ratio as the whole blob at once), and kept
        compressed only where that shrinks it. A record with no chunk table (an image's
        recipes) is sealed whole."""
        nonce = os.urandom(12)
        if not items:
            assert isinstance(raw, memoryview)
            head = BLOB_HEAD.pack(magic, 0, nonce, 0, len(raw), len(raw) + 16)
            sealed = self._room(len(raw) + 16)
            self.aead.encrypt_into(nonce, raw, head, sealed)
            return head, sealed
        units: list[bytes | memoryview] = []
        rows = []
        size = 0
        for (cid, n), unit in zip(items, raw):
            if compress:
                packed = self.zc.compress(unit)
                if len(packed) < n:
                    unit = packed
            units.append(unit)
            rows.append(FRAME_ENTRY.pack(cid, n, len(unit) + 16))
            size += n
        total = 16 + sum(len(unit) + 16 for unit in units)
        head = BLOB_HEAD.pack(magic, FLAG_FRAMES | FLAG_SEALED, nonce, len(items), size,
                              total) + b"".join(rows)
        sealed = self._room(total)
        self.aead.encrypt_into(nonce, b"", head, sealed[:16])
        pos = 16
        for i, ((cid, _n), unit) in enumerate(zip(items, units)):
            end = pos + len(unit) + 16
            self.aead.encrypt_into(_unit_nonce(nonce, i + 1), unit, cid, sealed[pos:end])
            pos = end
        return head, sealed

    def _room(self, n: int) -> memoryview:
        if len(self.out) < n:
            self.out = bytearray(n)
        return memoryview(self.out)[:n]


class _Scratch:
    """What a writer must remember until its commit, kept in a private SQLite file in the
    pool (``<pool>/tmp/``) rather than in memory, so that a backup of any size runs in the
    same few megabytes: the chunks it has seen (how often, and whether it stores them or
    found them in the pool — those are pinned against collection), where its blobs and
    their chunks went, and its recipes in pieces. Nothing in it is synced: a crash leaves
    a file that ``sweep`` removes. Every use holds ``lock``."""

    def __init__(self, root: str, location: str) -> None:
        directory = os.path.join(root, "tmp")
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"{safe_name(location)}-{os.urandom(4).hex()}.db")
        self.lock = threading.RLock()       # the commit holds it while reading pieces
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE",
                       f"cache_size=-{SCRATCH_CACHE_KIB}"):
            self.db.execute("PRAGMA " + pragma)
        self.db.executescript(SCRATCH_SCHEMA)
        self.db.execute("BEGIN")          # one transaction for its whole life

    def seen(self, ids: list[bytes]) -> set[bytes]:
        """Those of ``ids`` this writer has met before."""
        return _ids_in(self.db, "SELECT id FROM seen WHERE", ids)

    def pinned(self, ids: list[bytes]) -> set[bytes]:
        """Those of ``ids`` this writer found in the pool (it will reference them)."""
        return _ids_in(self.db, "SELECT id FROM seen WHERE new = 0 AND", ids)

    def pieces(self, recipes: list[tuple[int, int, int]]
               ) -> Iterator[tuple[int, int, int, bytes]]:
        """(object number, size, piece number, chunk IDs) of every piece of the writer's
        ``recipes`` ((object number, size, pieces) each), one read at a time."""
        for seq, size, parts in recipes:
            for part in range(parts):
                with self.lock:
                    (ids,) = self.db.execute("SELECT ids FROM parts WHERE seq = ? AND part = ?",
                                             (seq, part)).fetchone()
                yield seq, size, part, ids

    def batches(self, query: str, first: Any, size: int) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``query``, ``size`` at a time: its first column is a unique key it
        orders by, its one parameter the last key seen (``first`` before any)."""
        last = first
        while True:
            rows = self.db.execute(query + f" LIMIT {size}", (last,)).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def close(self) -> None:
        self.db.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class DedupImageWriter(ImageWriter):
    """Cuts, deduplicates and stores the objects of one image; nothing is visible before
    ``commit``.

    The work is shared by threads, each on data the others do not touch: the session
    thread receives into segment buffers; a cutter thread cuts a full segment into chunks,
    hashes and looks them up, and gathers the new ones into the pending blob (as views of
    the segment, which stays out of use until the blob is sealed); two sealer threads
    compress and encrypt blobs and append them, each to a pack file of its own.
    Cutting, hashing, compression, encryption and I/O all release the GIL, so the stages
    overlap. What must be remembered until the commit (chunks seen, blobs placed, recipes)
    goes to a scratch database, so memory does not grow with the size of the backup.
    """

    def __init__(self, unit: DedupStorageUnit, location: str) -> None:
        self.unit = unit
        self.location = location
        self.cdc = FastCDC(unit.chunk_avg, min_size=unit.chunk_min, max_size=unit.chunk_max)
        self.id_key = unit.key.id_key
        self.head = unit.chunk_max            # room before a segment's data for the tail
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(SEGMENTS):
            self._free.put(bytearray(self.head + unit.segment))
        # who still needs a segment: the session filling it, then the cut (or the tail it
        # leaves), and every blob with a chunk in it; at none it goes back to _free
        self._seg_refs: dict[int, int] = {}
        self._seg_lock = threading.Lock()
        self.seg = self._take()
        self.fill = self.head                 # where the next byte goes in self.seg
        self.tail = memoryview(b"")           # the cut-off last chunk of the previous segment
        self.tail_seg: bytearray | None = None
        self.scratch = _Scratch(unit.root, location)
        self.recipe = bytearray()                    # the open object's IDs not yet stored
        self.parts = 0                               # pieces of its recipe stored
        self.recipe_hash = blake3.blake3()
        self.recipes: list[tuple[int, int, int]] = []    # (seq, size, pieces)
        self.seq = -1
        self.obj_size = 0
        self._blob_bufs: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(SEALS_IN_FLIGHT + 2):
            self._blob_bufs.put(bytearray(BLOB_TARGET + unit.chunk_max))
        # the blob being gathered: its chunks, each a view of the segment being cut or of
        # ``pending`` (a copy, made when the cut of a segment ends: see _keep_pending)
        self.pending = self._blob_bufs.get()
        self.pending_copied = 0                      # bytes of ``pending`` in use
        self.pending_views: list[memoryview] = []
        self.pending_seg: bytearray | None = None    # the segment it holds, if any
        self.pending_fill = 0
        self.pending_ids: list[tuple[bytes, int]] = []
        self._all_contexts = [_SealContext(unit, BLOB_TARGET + unit.chunk_max)
                              for _ in range(SEALERS)]
        self._contexts: queue.SimpleQueue[_SealContext] = queue.SimpleQueue()
        for ctx in self._all_contexts:
            self._contexts.put(ctx)
        self._done_lock = threading.Lock()    # guards blobs, packs, stored (sealers add)
        self._compressing = False             # the last blob compressed well
        # blobs written and not yet entered in the scratch: (pack, offset, stored, raw,
        # [(chunk ID, offset, length)]); the cutter moves them there
        self._placed: list[tuple[str, int, int, int, list[tuple[bytes, int, int]]]] = []
        self.packs: list[str] = []                   # pack names, in order
        self.recipe_records: list[tuple[str, int, int]] = []   # pack, offset, length
        self.received = 0
        self.new_bytes = 0
        self.stored = 0
        self._cutter = ThreadPoolExecutor(1, thread_name_prefix="dedup-cut")
        self._sealer = ThreadPoolExecutor(SEALERS, thread_name_prefix="dedup-seal")
        # full packs are fsynced on their own thread: the disk works while the CPUs cut
        # and seal the next pack (an fsync under the pack lock stalled every stage)
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="dedup-flush")
        self._flushes: collections.deque[Future[None]] = collections.deque()
        self._cuts: collections.deque[Future[None]] = collections.deque()
        self._seals: collections.deque[Future[None]] = collections.deque()
        self._failed: BaseException | None = None
        self._done = False
        with unit._lock:
            unit._writers.add(self)

    # -------------------------------------------------------------- session thread
    def begin_object(self) -> None:
        self.seq += 1
        self.recipe = bytearray()
        self.parts = 0
        self.recipe_hash = blake3.blake3()
        self.obj_size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._raise_failure()
        view = memoryview(data)
        self.received += len(view)
        self.obj_size += len(view)
        while view:
            n = min(len(view), len(self.seg) - self.fill)
            self.seg[self.fill:self.fill + n] = view[:n]
            self.fill += n
            view = view[n:]
            if self.fill == len(self.seg):
                self._segment_full()

    def write_buffer(self, length: int) -> memoryview | None:
        if self._failed is not None or len(self.seg) - self.fill < length:
            return None
        return memoryview(self.seg)[self.fill:self.fill + length]

    def wrote(self, length: int) -> None:
        self.fill += length
        self.received += length
        self.obj_size += length
        if self.fill == len(self.seg):
            self._segment_full()

    def _segment_full(self) -> None:
        self._cuts.append(self._cutter.submit(self._cut, self.seg, self.fill, False))
        while len(self._cuts) > CUTS_QUEUED:
            self._wait(self._cuts)
        self.seg, self.fill = self._take(), self.head
        self._raise_failure()

    def end_object(self) -> StoredObject:
        while self._cuts:
            self._wait(self._cuts)
        self._raise_failure()
        try:
            self._cut(self.seg, self.fill, True)       # the cutter is idle: cut here
            with self.scratch.lock:
                self._store_piece(final=True)
        except Exception as exc:        # reported as a cutter thread's failure would be
            if self._failed is None:
                self._failed = exc
        self.seg = self._take()
        self.fill = self.head
        self._raise_failure()
        self.recipes.append((self.seq, self.obj_size, self.parts))
        self.recipe = bytearray()
        return StoredObject(self.seq, self.obj_size, self.recipe_hash.hexdigest())

    def _store_piece(self, final: bool) -> None:
        """Move full pieces of the open object's recipe (the last one too when ``final``;
        an empty object has one empty piece) to the scratch. Holds the scratch lock."""
        size = PART_IDS * ID_LEN
        while len(self.recipe) >= size or (final and (self.recipe or not self.parts)):
            piece = bytes(self.recipe[:size])
            del self.recipe[:size]
            self.scratch.db.execute("INSERT INTO parts(seq, part, ids) VALUES (?, ?, ?)",
                                    (self.seq, self.parts, piece))
            self.parts += 1

    def _wait(self, futures: collections.deque[Future[None]]) -> None:
        try:                        # the cutter may have taken the last seal meanwhile
            fut = futures.popleft()
        except IndexError:
            return
        exc = fut.exception()
        if exc is not None and self._failed is None:
            self._failed = exc

    def _raise_failure(self) -> None:
        for futures in (self._cuts, self._seals, self._flushes):
            while futures and futures[0].done():
                self._wait(futures)
        if self._failed is not None:
            raise self._failure(self._failed)

    def _failure(self, exc: BaseException, doing: str = "writing to") -> OpenXBSAError:
        return _write_failure(self.unit.name, exc, doing)

    # -------------------------------------------------------------- cutter thread
    def _cut(self, seg: bytearray, end: int, final: bool) -> None:
        try:
            self._cut_segment(seg, end, final)
        except BaseException:
            # every buffer goes back, so the session thread never waits for one; it learns
            # of the failure from the future (reported at BSAEndData or the commit)
            if self.tail_seg is not None and self.tail_seg is not seg:
                self._drop(self.tail_seg)
            self.tail = memoryview(b"")
            self.tail_seg = None
            self._drop(seg)
            if self.pending_seg is not None:     # the blob being gathered is lost anyway:
                self._drop(self.pending_seg)     # the backup fails at its next call
            self.pending_views, self.pending_seg, self.pending_ids = [], None, []
            self.pending_fill = self.pending_copied = 0
            raise

    def _take(self) -> bytearray:
        """A free segment, for the session thread to fill (it holds the one reference)."""
        seg = self._free.get()
        with self._seg_lock:
            self._seg_refs[id(seg)] = 1
        return seg

    def _hold(self, seg: bytearray) -> None:
        with self._seg_lock:
            self._seg_refs[id(seg)] += 1

    def _drop(self, seg: bytearray) -> None:
        with self._seg_lock:
            left = self._seg_refs[id(seg)] - 1
            if left:
                self._seg_refs[id(seg)] = left
                return
            del self._seg_refs[id(seg)]
        self._free.put(seg)

    def _cut_segment(self, seg: bytearray, end: int, final: bool) -> None:
        """Cut seg[head:end], after the previous segment's tail; recycle what is done."""
        start = self.head - len(self.tail)
        if self.tail:
            seg[start:self.head] = self.tail
            self.tail.release()
            self.tail = memoryview(b"")
        if self.tail_seg is not None:
            self._drop(self.tail_seg)
            self.tail_seg = None
        view = memoryview(seg)[start:end]
        cuts = [(c.offset, c.length) for c in self.cdc.cut_buf(view)]
        if not final and len(cuts) > 1:
            last_off, last_len = cuts.pop()
            self.tail = view[last_off:last_off + last_len]
            self.tail_seg = seg
        key = self.id_key
        chunks = [view[o:o + n] for o, n in cuts]
        ids = [blake3.blake3(c, key=key).digest() for c in chunks]
        new = self._classify(ids)
        for cid, chunk in zip(ids, chunks):
            if cid not in new:
                chunk.release()
                continue
            new.discard(cid)                    # stored once, however often it repeats
            if self.pending_seg is None:        # the blob points into the segment
                self._hold(seg)
                self.pending_seg = seg
            n = len(chunk)
            self.pending_views.append(chunk)
            self.pending_fill += n
            self.pending_ids.append((cid, n))
            self.new_bytes += n
            if self.pending_fill >= BLOB_TARGET:
                self._seal_pending()
        self._keep_pending()
        joined = b"".join(ids)
        self.recipe_hash.update(joined)
        self.recipe += joined
        if len(self.recipe) >= PART_IDS * ID_LEN:
            with self.scratch.lock:
                self._store_piece(final=False)
        view.release()                          # the chunks kept are views of their own
        if self.tail_seg is None:
            self._drop(seg)

    def _classify(self, ids: list[bytes]) -> set[bytes]:
        """Count the segment's chunk IDs in the scratch; return those never met before
        and not in the pool: this writer stores them. Those found in the pool are entered
        as pinned under the lock collection takes, in the same step as the lookup."""
        counts = collections.Counter(ids)
        unique = list(counts)
        scratch = self.scratch
        with scratch.lock:
            self._enter_placed()
            met = scratch.seen(unique) if unique else set()
        fresh = [cid for cid in unique if cid not in met]
        in_pool: set[bytes] = set()
        if fresh:
            with self.unit._lock:
                in_pool = self.unit._known(fresh)
                with scratch.lock:
                    scratch.db.executemany(
                        "INSERT INTO seen(id, n, new) VALUES (?, ?, ?)",
                        [(cid, counts[cid], cid not in in_pool) for cid in fresh])
        if met:
            with scratch.lock:
                scratch.db.executemany("UPDATE seen SET n = n + ? WHERE id = ?",
                                       [(counts[cid], cid) for cid in met])
        return {cid for cid in fresh if cid not in in_pool}

    def _enter_placed(self) -> None:
        """Move the blobs the sealers wrote into the scratch. Holds the scratch lock."""
        with self._done_lock:
            placed, self._placed = self._placed, []
        db = self.scratch.db
        for pack, offset, stored, raw, entries in placed:
            blob = db.execute("INSERT INTO blobs(pack, offset, stored, raw) VALUES (?, ?, ?, ?)",
                              (pack, offset, stored, raw)).lastrowid
            db.executemany("INSERT INTO placed(blob, id, off, len) VALUES (?, ?, ?, ?)",
                           [(blob, cid, off, n) for cid, off, n in entries])

    def pinned(self, ids: list[bytes]) -> set[bytes]:
        """Those of ``ids`` (unreferenced chunks, for collection) this writer will use."""
        with self.scratch.lock:
            return self.scratch.pinned(ids)

    def _keep_pending(self) -> None:
        """At the end of a segment's cut: the blob being gathered lets go of the segment,
        so that a blob slow to fill (few new chunks: a daily dump) never holds segments the
        session needs. Half full or more, it is sealed as it is; less, its chunks from the
        segment are copied into its own buffer."""
        seg = self.pending_seg
        if seg is None:
            return
        if self.pending_fill >= BLOB_TARGET // 2:
            self._seal_pending()
            return
        buf, pos = self.pending, self.pending_copied
        views = self.pending_views
        for i, chunk in enumerate(views):
            if chunk.obj is seg:
                n = len(chunk)
                buf[pos:pos + n] = chunk
                chunk.release()
                views[i] = memoryview(buf)[pos:pos + n]
                pos += n
        self.pending_copied = pos
        self.pending_seg = None
        self._drop(seg)

    def _seal_pending(self) -> None:
        if not self.pending_ids:
            return
        while len(self._seals) >= SEALS_IN_FLIGHT:     # bounded memory: wait for the oldest
            self._wait(self._seals)
        blob = (self.pending, self.pending_views, self.pending_seg, self.pending_fill,
                self.pending_ids)
        self.pending, self.pending_copied, self.pending_fill = self._blob_bufs.get(), 0, 0
        self.pending_views, self.pending_seg, self.pending_ids = [], None, []
        self._seals.append(self._sealer.submit(self._seal, *blob))

    # -------------------------------------------------------------- sealer thread
    def _seal(self, buf: bytearray, views: list[memoryview], seg: bytearray | None,
              size: int, items: list[tuple[bytes, int]]) -> None:
        """Compress (unless a sample shows the blob incompressible), encrypt and append
        one blob (its chunks ``views``, of ``seg`` or of ``buf``) to this writer's pack;
        the blob buffer and the segment go back after."""
        ctx = self._contexts.get()
        try:
            sample = _sample(views, TRIAL)
            # the trial is skipped while blobs keep compressing (one guess per writer;
            # a blob that does not shrink is stored raw all the same)
            compress = self._compressing or \
                len(ctx.trial.compress(sample)) < TRIAL_KEEP * len(sample)
            aad, sealed = ctx.seal(views, items, compress)
            if compress:                # what the chunks take, their tags left out
                self._compressing = len(sealed) - 16 * (len(items) + 1) < TRIAL_KEEP * size
            entries, off = [], 0
            for cid, n in items:
                entries.append((cid, off, n))
                off += n
            offset, record = self._append(ctx, aad, sealed)
            with self._done_lock:
                self.stored += record
                self._placed.append((ctx.pack, offset, record, size, entries))
            if ctx.pack_out.size >= PACK_TARGET:
                self._close_pack(ctx)
        except OSError as exc:
            raise self._failure(exc) from exc
        finally:
            for view in views:
                view.release()
            self._contexts.put(ctx)
            self._blob_bufs.put(buf)
            if seg is not None:
                self._drop(seg)

    def _write_recipe_records(self) -> None:
        """The image's recipes, sealed into packs too (records of about RECORD_TARGET, a
        large object's recipe spread over several): if the index is ever lost,
        ``rebuild_index`` finds them there (the index stays what restores use)."""
        self.recipe_records = []
        entries: list[list[Any]] = []
        size = 0
        for seq, obj_size, part, ids in self.scratch.pieces(self.recipes):
            entries.append([seq, obj_size, ids, part])
            size += len(ids) + 64
            if size >= RECORD_TARGET:
                self._seal_record(entries)
                entries, size = [], 0
        if entries:
            self._seal_record(entries)

    def _seal_record(self, entries: list[list[Any]]) -> None:
        payload = msgpack.packb({"location": self.location, "objects": entries},
                                use_bin_type=True)
        ctx = self._all_contexts[0]
        aad, sealed = ctx.seal(memoryview(payload), [], compress=False, magic=RECIPE_MAGIC)
        offset, length = self._append(ctx, aad, sealed)
        self.stored += length
        self.recipe_records.append((ctx.pack, offset, length))

    def _append(self, ctx: _SealContext, aad: bytes, sealed: memoryview) -> tuple[int, int]:
        """Append one sealed record to the context's pack (opened first if none is):
        where it starts and its length."""
        if ctx.pack_out.fd < 0:
            self._open_pack(ctx)
        offset = ctx.pack_out.size
        ctx.pack_out.append([aad, sealed])
        return offset, len(aad) + len(sealed)

    def _open_pack(self, ctx: _SealContext) -> None:
        name = os.urandom(16).hex()
        path = self.unit._pack_path(name, create_dir=True)
        direct = os.O_DIRECT if ctx.pack_out.direct else 0
        ctx.pack_out.start(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | direct, 0o600))
        ctx.pack = name
        with self._done_lock:
            self.packs.append(name)           # before any write: abort finds every file
        header = PACK_MAGIC + self.unit.pool_id
        ctx.pack_out.append([header])
        with self._done_lock:
            self.stored += len(header)

    def _close_pack(self, ctx: _SealContext) -> None:
        ctx.pack = ""
        fd = ctx.pack_out.finish()
        with self._done_lock:
            self._flushes.append(self._flusher.submit(self._flush_pack, fd))

    # -------------------------------------------------------------- flusher thread
    def _flush_pack(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            raise self._failure(exc, "flushing") from exc
        finally:
            os.close(fd)

    # -------------------------------------------------------------- commit / abort
    def commit(self) -> None:
        with _media_errors(self.unit.name):
            self._commit()

    def _commit(self) -> None:
        if self.fill != self.head or self.recipe:
            raise MediaWriteError("commit with an object still open")
        self._seal_pending()
        while self._seals:
            self._wait(self._seals)
        self._raise_failure()
        with self.scratch.lock:
            self._enter_placed()
        try:
            self._write_recipe_records()
        except OSError as exc:
            raise self._failure(exc) from exc
        for ctx in self._all_contexts:          # the sealers are idle: close their packs
            if ctx.pack_out.fd >= 0:
                self._close_pack(ctx)
        while self._flushes:
            self._wait(self._flushes)
        self._raise_failure()
        try:
            for d in {os.path.dirname(self.unit._pack_path(p)) for p in self.packs}:
                fsync_dir(d)
        except OSError as exc:
            raise self._failure(exc, "flushing") from exc
        faults.point("dedup:packs_durable")
        self.unit._commit_writer(self)
        self._finish()

    def abort(self) -> None:
        if self._done:
            return
        for futures in (self._cuts, self._seals):
            for fut in futures:
                fut.cancel()
        self._cutter.shutdown(wait=True)
        self._sealer.shutdown(wait=True)
        self._cuts.clear()
        self._seals.clear()
        for ctx in self._all_contexts:
            ctx.pack_out.discard()
        self._flusher.shutdown(wait=True)         # every flushed pack's fd is closed
        self._flushes.clear()
        for name in self.packs:
            self.unit._unlink_pack(name)
        self._finish()

    def _finish(self) -> None:
        self._done = True
        self._cutter.shutdown(wait=False)
        self._sealer.shutdown(wait=False)
        self._flusher.shutdown(wait=False)
        with self.unit._lock:
            self.unit._writers.discard(self)
        with self.scratch.lock:
            self.scratch.close()
        self.tail = memoryview(b"")
        self.tail_seg = None

    def stats(self) -> dict[str, int]:
        return {"received": self.received, "after_dedup": self.new_bytes,
                "stored": self.stored}


class DedupObjectReader(ObjectReader):
    """Reads one object back: a prefetch thread resolves, reads and decodes the blobs
    ahead of the session thread (every chunk authenticated and checked against its ID),
    so that decoding overlaps with sending."""

    def __init__(self, unit: DedupStorageUnit, location: str, stored: StoredObject) -> None:
        unit._checked_recipe(location, stored)
        self.unit = unit
        self._location, self._seq = location, stored.offset
        with unit._lock:                      # no blob is rewritten while this reader is open
            unit._readers += 1
        self._counted = True
        self.size = stored.size
        self._rest = memoryview(b"")
        self._batch: collections.deque[memoryview] = collections.deque()   # handed over, unread
        # batches of up to HANDOVER chunks, then None (the end) or the failure
        self._queue: queue.Queue[list[memoryview] | BaseException | None] = \
            queue.Queue(PREFETCH // HANDOVER)
        self._stop = threading.Event()
        self._fds: dict[str, int] = {}
        self._local = threading.local()
        self._thread = threading.Thread(target=self._prefetch, name="dedup-read", daemon=True)
        self._thread.start()

    def _decode(self, blob_id: int, earlier: Future[tuple[_Blob, frozenset[bytes]]] | None,
                wanted: list[tuple[bytes, int, int, int]], known: set[bytes]
                ) -> tuple[_Blob, frozenset[bytes]]:
        """Decoder thread: a blob's planned chunks decoded and (unless ``known``: this
        reader checked them before, from the same authenticated record) checked against
        their IDs here, in parallel, rather than one by one on the prefetch thread. The blob
        is read, or, for chunks planned after it was, taken from its ``earlier`` decode
        (queued first, so running or done, never waiting for this one). Returns the blob
        and every chunk ID checked in it."""
        decoder = self._decoder()
        if earlier is None:
            blob = self.unit._open_blob(blob_id, self._fds, decoder, [ref[2] for ref in wanted])
            verified: frozenset[bytes] = frozenset()
        else:
            blob, verified = earlier.result()
        checked: set[bytes] = set()     # a chunk planned twice (data repeating within the
        try:                            # lookahead) is checked once
            for cid, _blob, off, length in wanted:
                chunk = blob.chunk(off, length, decoder)
                if cid not in known and cid not in verified and cid not in checked:
                    check_chunk(chunk, cid, decoder.key.id_key, f"dedup pool {self.unit.name}")
                    checked.add(cid)
        finally:
            blob.prefetched.clear()     # this decoder's staging buffer takes the next blob
        return blob, verified | checked

    def _decoder(self) -> _Decoder:
        """This decoder thread's own decoder (zstd contexts are not shared)."""
        decoder = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._local.decoder = _Decoder(self.unit.key)
        return decoder

    def _prefetch(self) -> None:
        """Plan the chunks ahead, decode their blobs on DECODERS threads (in parallel, each
        blob once while cached; the planned chunks of a blob are decoded and checked there,
        those planned later too), check any other chunk used against its ID (once), hand
        the chunks over in order."""
        pool = ThreadPoolExecutor(DECODERS, thread_name_prefix="dedup-decode")
        blobs: collections.OrderedDict[int, Future[tuple[_Blob, frozenset[bytes]]]] = \
            collections.OrderedDict()
        planned: collections.Counter[int] = collections.Counter()
        plan: collections.deque[tuple[bytes, int, int, int]] = collections.deque()
        checked: set[bytes] = set()       # chunk IDs checked: each lives in one blob only
        id_key = self.unit.key.id_key
        decoder = _Decoder(self.unit.key)
        refs = self.unit._chunk_refs(self._location, self._seq)
        held = None                       # the first chunk of the next batch
        ready: list[memoryview] = []      # decoded and checked, not yet handed over
        try:
            more = True
            while more or plan:
                if more and len(plan) < LOOKAHEAD // 2:    # refill in batches, so that a
                    fresh: dict[int, list[tuple[bytes, int, int, int]]] = {}  # blob's
                    later: dict[int, list[tuple[bytes, int, int, int]]] = {}  # chunks go
                    while True:                                # with its decode
                        if held is not None:
                            ref, held = held, None
                        else:
                            ref = next(refs, None)
                        if ref is None:
                            more = False
                            break
                        # a batch ends where a blob does (its chunks decoded together)
                        if len(plan) >= LOOKAHEAD and (ref[1] not in fresh
                                                       or len(plan) >= 2 * LOOKAHEAD):
                            held = ref
                            break
                        plan.append(ref)
                        planned[ref[1]] += 1
                        if ref[1] in blobs:
                            later.setdefault(ref[1], []).append(ref)
                        else:
                            fresh.setdefault(ref[1], []).append(ref)
                    for blob_id, wanted in (*fresh.items(), *later.items()):
                        known = {ref[0] for ref in wanted if ref[0] in checked}
                        blobs[blob_id] = pool.submit(self._decode, blob_id, blobs.get(blob_id),
                                                     wanted, known)
                if not plan:
                    break
                cid, blob_id, off, length = plan.popleft()
                planned[blob_id] -= 1
                blob, verified = blobs[blob_id].result()
                blobs.move_to_end(blob_id)
                chunk = blob.chunk(off, length, decoder)
                if cid not in checked:
                    if cid not in verified:
                        check_chunk(chunk, cid, id_key, f"dedup pool {self.unit.name}")
                    if len(checked) >= CHECKED_IDS:         # bounded: may check again
                        checked.clear()
                    checked.add(cid)
                ready.append(chunk)
                if len(ready) >= HANDOVER:
                    if not self._put(ready):
                        return
                    ready = []
                while len(blobs) > CACHED_BLOBS:         # forget the oldest not planned
                    old = next((b for b in blobs if planned[b] <= 0), None)
                    if old is None:
                        break
                    del blobs[old]
                    del planned[old]
            if not ready or self._put(ready):
                self._put(None)
        except BaseException as exc:      # handed to the session thread, raised by read()
            if not ready or self._put(ready):    # the good chunks before it go first
                self._put(exc)
        finally:
            for fut in blobs.values():
                fut.cancel()
            pool.shutdown(wait=True)

    def _put(self, item: list[memoryview] | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def read(self, n: int) -> bytes:
        return b"".join(self.read_views(n))

    def read_views(self, n: int) -> list[memoryview]:
        parts = []
        need = n
        while need > 0:
            if not self._rest:
                if not self._batch:
                    item = self._queue.get()
                    if item is None:
                        self._queue.put(None)          # stays at the end for later reads
                        break
                    if isinstance(item, BaseException):
                        self._queue.put(item)
                        if isinstance(item, OpenXBSAError):
                            raise item
                        raise MediaReadError(f"reading from dedup pool {self.unit.name}: {item}")
                    self._batch.extend(item)
                self._rest = self._batch.popleft()
            part = self._rest[:need]
            parts.append(part)
            need -= len(part)
            self._rest = self._rest[len(part):]
        return parts

    def close(self) -> None:
        self._stop.set()
        self._batch.clear()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._counted:
            self._counted = False
            with self.unit._lock:
                self.unit._readers -= 1


class DedupStorageUnit(StorageUnit):
    """A deduplicating, compressing, encrypting pool in one directory."""

    def __init__(self, name: str, path: str, media_id: str = "P00001", *,
                 key_dir: str | None = None, open_index: bool = True) -> None:
        self.name = name
        self.root = os.path.abspath(path)
        self.media_id = media_id
        self.segment = SEGMENT
        key_dir = key_dir or os.path.join(self.root, "..", "keys")
        self.key_path = os.path.join(os.path.abspath(key_dir), safe_name(name) + ".key")
        self._lock = threading.RLock()
        self._writers: set[DedupImageWriter] = set()
        self._readers = 0                     # open readers: they hold chunk offsets
        self._gc_lock = threading.Lock()
        self._dirty = True                    # something may be collectable (start-up: yes)
        self._owner_fd = -1
        self._open_pool()
        self.direct_io = wants_direct_io() and direct_io_works(os.path.join(self.root, "tmp"))
        self._read_buffers = threading.local()    # direct reads: each thread's aligned buffer
        self._db: sqlite3.Connection = self._connect() if open_index else None  # type: ignore

    def _connect(self) -> sqlite3.Connection:
        path = os.path.join(self.root, "index.db")
        try:
            db = sqlite3.connect(path, timeout=60, check_same_thread=False,
                                 isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            with self._lock:
                self._upgrade(db)
        except sqlite3.DatabaseError as exc:
            raise MediaReadError(f"the index {path} of the dedup pool {self.name} cannot be "
                                 f"used ({exc}); `openxbsa pool rebuild-index {self.name}` "
                                 "rebuilds it from the pack files") from None
        return db

    @staticmethod
    def _upgrade(db: sqlite3.Connection) -> None:
        """Create the index, or bring one of an earlier version to INDEX_VERSION in one
        transaction (version 1 kept one recipe record per image, keyed by location)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            old = db.execute("SELECT sql FROM sqlite_master WHERE name = 'recipe_records'"
                             ).fetchone()
            migrate = version < 2 and old is not None and "location TEXT PRIMARY KEY" in old[0]
            if migrate:
                db.execute("DROP INDEX IF EXISTS recipe_records_pack")
                db.execute("ALTER TABLE recipe_records RENAME TO recipe_records_v1")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if migrate:
                db.execute("INSERT INTO recipe_records(pack, offset, location, stored) "
                           "SELECT pack, offset, location, stored FROM recipe_records_v1")
                db.execute("DROP TABLE recipe_records_v1")
            if version < INDEX_VERSION:
                db.execute(f"PRAGMA user_version = {INDEX_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -------------------------------------------------------------- pool files
    def _open_pool(self) -> None:
        os.makedirs(os.path.join(self.root, "packs"), exist_ok=True)
        meta_path = os.path.join(self.root, "pool.json")
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except FileNotFoundError:
            meta = None
        except (OSError, ValueError) as exc:
            raise MediaReadError(f"{meta_path} cannot be read: {exc}") from exc
        kek = PoolKey.load_or_create(self.key_path, create=meta is None)
        if meta is None:
            meta = {"format": FORMAT, "pool_id": os.urandom(16).hex(),
                    "key_fingerprint": PoolKey(kek).fingerprint, "created": int(time.time()),
                    "chunker": {"avg": CHUNK_AVG, "min": CHUNK_MIN, "max": CHUNK_MAX},
                    "zstd_level": ZSTD_LEVEL, "cipher": "AES-256-GCM",
                    "chunk_id": "keyed blake3"}
            self._write_meta(meta)
        self.key = PoolKey(self._pool_key(meta, kek))
        if meta.get("format") not in (1, FORMAT):
            raise MediaReadError(f"{meta_path}: pool format {meta.get('format')} is not one "
                                 f"this version reads (1 to {FORMAT})")
        if meta.get("key_fingerprint") != self.key.fingerprint:
            raise MediaReadError(f"the key {self.key_path} does not open the dedup pool "
                                 f"{self.root}: it belongs to another pool, or the pool's key "
                                 "was rotated since this copy was made")
        if meta["format"] != FORMAT:          # what it holds is read as it is; from now on
            meta["format"] = FORMAT           # it takes sealed blobs, which format 1 lacks
            self._write_meta(meta)
        self.pool_id = bytes.fromhex(meta["pool_id"])
        self.chunk_avg = int(meta["chunker"]["avg"])
        self.chunk_min = int(meta["chunker"]["min"])
        self.chunk_max = int(meta["chunker"]["max"])
        self.zstd_level = int(meta.get("zstd_level", ZSTD_LEVEL))

    def _write_meta(self, meta: dict[str, Any]) -> None:
        path = os.path.join(self.root, "pool.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(self.root)

    def _pool_key(self, meta: dict[str, Any], kek: bytes) -> bytes:
        """The pool key: the key file itself, or (after a rotation) what it unwraps from
        pool.json. A rotation cut short after pool.json was written is finished here."""
        wrapped = meta.get("wrapped_key")
        if wrapped is None:
            return kek
        pool_id = bytes.fromhex(meta["pool_id"])
        master = unwrap_key(kek, wrapped, pool_id)
        pending = self.key_path + ".new"
        if master is None and os.path.exists(pending):
            new_kek = PoolKey.load_or_create(pending, False)
            master = unwrap_key(new_kek, wrapped, pool_id)
            if master is not None:
                os.replace(pending, self.key_path)
                fsync_dir(os.path.dirname(self.key_path))
                log.warning("dedup pool %s: finished a key rotation that was cut short; "
                            "back up the key file %s", self.name, self.key_path)
        if master is None:
            raise MediaReadError(f"the key {self.key_path} does not open the dedup pool "
                                 f"{self.root}: it belongs to another pool, or the pool's key "
                                 "was rotated since this copy was made")
        return master

    def rekey(self) -> str:
        """Rotate the key file: a new key-encryption key seals the pool key in pool.json,
        the old key file stops opening the pool. Pack contents are not rewritten. Returns
        the key file's path. Safe against a crash at any step (see ``_pool_key``)."""
        lock = os.open(os.path.join(self.root, "rekey.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            meta_path = os.path.join(self.root, "pool.json")
            with open(meta_path) as f:
                meta = json.load(f)
            kek = PoolKey.load_or_create(self.key_path, False)
            master = self._pool_key(meta, kek)
            pending = self.key_path + ".new"
            if os.path.exists(pending):           # a rotation that never reached pool.json
                os.unlink(pending)
            new_kek = os.urandom(32)
            PoolKey.write_new(pending, new_kek)
            meta["wrapped_key"] = wrap_key(new_kek, master, bytes.fromhex(meta["pool_id"]))
            meta["key_rotated"] = int(time.time())
            self._write_meta(meta)
            faults.point("dedup:rekey_meta_written")
            os.replace(pending, self.key_path)
            fsync_dir(os.path.dirname(self.key_path))
            return self.key_path
        finally:
            os.close(lock)

    def _own(self) -> None:
        """Only one server writes a pool: an exclusive lock, taken by the first writer."""
        if self._owner_fd >= 0:
            return
        fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise MediaWriteError(f"the dedup pool {self.root} is in use by another "
                                  "OpenXBSA server") from None
        self._owner_fd = fd

    def _unlink_pack(self, name: str) -> None:
        try:
            os.unlink(self._pack_path(name))
        except FileNotFoundError:
            pass

    def _pack_path(self, name: str, create_dir: bool = False) -> str:
        d = os.path.join(self.root, "packs", name[:2])
        if create_dir:
            os.makedirs(d, exist_ok=True)
        return os.path.join(d, name + ".pack")

    # -------------------------------------------------------------- StorageUnit
    def location_for(self, backup_id: str) -> str:
        return image_name(backup_id)

    def open_writer(self, backup_id: str) -> DedupImageWriter:
        with self._lock:
            self._own()
        with _media_errors(self.name):       # its working set cannot be created, say
            return DedupImageWriter(self, self.location_for(backup_id))

    def open_reader(self, location: str, stored: StoredObject) -> DedupObjectReader:
        return DedupObjectReader(self, location, stored)

    def release(self, location: str, stored: StoredObject) -> None:
        self._drop_recipes("location = ? AND seq = ?", (location, stored.offset))

    def delete_image(self, location: str) -> None:
        self._drop_recipes("location = ?", (location,))

    def sweep(self, live: set[str]) -> list[str]:
        """At start-up: drop recipes of images the catalog does not know, pack files the
        index does not know and scratch files (a writer that crashed before its commit),
        then collect."""
        with self._lock:
            self._own()
            locations = [r[0] for r in self._db.execute("SELECT DISTINCT location FROM recipes")]
        removed = []
        for loc in locations:
            if loc not in live:
                self._drop_recipes("location = ?", (loc,))
                removed.append(loc)
        with self._lock:
            known = {r[0] for r in self._db.execute("SELECT name FROM packs")}
            busy = {p for w in self._writers for p in w.packs}
            scratch = {w.scratch.path for w in self._writers}
        tmp = os.path.join(self.root, "tmp")
        for f in os.listdir(tmp) if os.path.isdir(tmp) else []:
            if os.path.join(tmp, f) not in scratch:
                with contextlib.suppress(FileNotFoundError):    # its owner removed it
                    os.unlink(os.path.join(tmp, f))
        for dirpath, _dirs, files in os.walk(os.path.join(self.root, "packs")):
            for f in files:
                name = f.removesuffix(".pack")
                if name not in known and name not in busy:
                    os.unlink(os.path.join(dirpath, f))
                    removed.append(os.path.relpath(os.path.join(dirpath, f), self.root))
        self.collect()
        return removed

    def maintain(self) -> None:
        self.collect()

    # -------------------------------------------------------------- index
    def _known(self, ids: list[bytes]) -> set[bytes]:
        """Those of ``ids`` the index holds (the caller holds the lock)."""
        return _ids_in(self._db, "SELECT id FROM chunks WHERE", ids)

    def _locate(self, ids: list[bytes]) -> dict[bytes, tuple[int, int, int]]:
        with self._lock:
            q = "SELECT id, blob, off, len FROM chunks WHERE id IN (%s)" % ",".join("?" * len(ids))
            return {r[0]: (r[1], r[2], r[3]) for r in self._db.execute(q, ids)}

    def _blob_place(self, blob_id: int, fds: dict[str, int]) -> tuple[int, str, int, int]:
        """A blob's pack file, open (kept in ``fds``), what to call the blob in messages,
        where it starts and its stored length."""
        with self._lock:
            row = self._db.execute(
                "SELECT p.name, b.offset, b.stored FROM blobs b JOIN packs p ON p.id = b.pack "
                "WHERE b.id = ?", (blob_id,)).fetchone()
            if row is None:
                raise MediaReadError(f"blob {blob_id} is missing from the dedup pool {self.name}")
            name, offset, stored = row
            fd = fds.get(name)
            if fd is None:                       # opened under the lock: a repack cannot
                try:                             # remove the file between lookup and open
                    fd = os.open(self._pack_path(name),
                                 os.O_RDONLY | (os.O_DIRECT if self.direct_io else 0))
                except OSError as exc:
                    raise MediaReadError(f"pack {name} of the dedup pool {self.name} cannot "
                                         f"be opened: {exc}") from exc
                fds[name] = fd
        return fd, f"dedup pool {self.name}, pack {name}, offset {offset}", offset, stored

    def _pread(self, fd: int, n: int, offset: int, where: str) -> bytes:
        try:
            data = self._pread_direct(fd, n, offset) if self.direct_io \
                else os.pread(fd, n, offset)
        except OSError as exc:
            raise MediaReadError(f"{where}: read failed: {exc}") from exc
        if len(data) != n:
            raise MediaReadError(f"{where}: the pack file is truncated")
        return data

    def _read_record(self, blob_id: int, fds: dict[str, int]) -> tuple[bytes, str]:
        """A blob's record as stored, and where it is (for messages)."""
        fd, where, offset, stored = self._blob_place(blob_id, fds)
        return self._pread(fd, stored, offset, where), where

    def _open_blob(self, blob_id: int, fds: dict[str, int], decoder: _Decoder,
                   wanted: list[int]) -> _Blob:
        """A blob, authenticated, to take the chunks at the (raw) offsets ``wanted`` from.
        Of a sealed blob only the header and table and the units of those chunks are read
        (units close together in one read), any other unit when it is asked for; a blob
        of an earlier form is read whole."""
        fd, where, offset, stored = self._blob_place(blob_id, fds)
        head = self._pread(fd, min(stored, HEAD_READ), offset, where)
        if len(head) < BLOB_HEAD.size or not head[4] & FLAG_SEALED:      # head[4]: flags
            if stored > len(head):
                head += self._pread(fd, stored - len(head), offset + len(head), where)
            return decoder.blob(head, where)
        base = BLOB_HEAD.size + BLOB_HEAD.unpack_from(head)[3] * FRAME_ENTRY.size + 16
        if base > stored:
            raise MediaReadError(f"{where}: the blob header is damaged")
        if base > len(head):
            head += self._pread(fd, base - len(head), offset + len(head), where)

        # the units read ahead, in a dict of their own: were ``source`` to reach them
        # through the blob, blob and source would form a cycle, freed only by the cyclic
        # collector, which runs too rarely here: a restore's blobs would pile up (a 1 GiB
        # restore's server grew from 180 to 600 MB)
        ahead: dict[int, memoryview] = {}

        def source(at: int, n: int) -> bytes | memoryview:
            piece = ahead.pop(at, None)
            if piece is not None and len(piece) == n:
                return piece
            return self._pread(fd, n, offset + base + at, where)

        blob = decoder.sealed_blob(head[:base], stored, where, source)
        blob.prefetched = ahead
        staging = None if self.direct_io else decoder.staging()
        used = 0
        for start, end, units in blob.spans(wanted, SPAN_GAP):
            if staging is not None and used + end - start <= len(staging):
                data = staging[used:used + end - start]
                used += end - start
                self._pread_into(fd, data, offset + base + start, where)
            else:
                data = memoryview(self._pread(fd, end - start, offset + base + start, where))
            for at, n in units:
                blob.prefetched[at] = data[at - start:at - start + n]
        return blob

    @staticmethod
    def _pread_into(fd: int, buf: memoryview, offset: int, where: str) -> None:
        try:
            got = os.preadv(fd, [buf], offset)
        except OSError as exc:
            raise MediaReadError(f"{where}: read failed: {exc}") from exc
        if got != len(buf):
            raise MediaReadError(f"{where}: the pack file is truncated")

    def _pread_direct(self, fd: int, n: int, offset: int) -> bytes:
        """``n`` bytes at ``offset`` of a file open for direct I/O: the aligned blocks
        around them read into this thread's buffer, the bytes copied out (fewer at the end
        of the file, as pread)."""
        start = offset - offset % ALIGN
        span = _aligned(offset + n) - start
        buf = getattr(self._read_buffers, "buf", None)
        if buf is None or len(buf) < span:
            if buf is not None:
                buf.close()
            buf = self._read_buffers.buf = mmap.mmap(-1, max(span, 2 * BLOB_TARGET))
        with memoryview(buf) as view:
            got = os.preadv(fd, [view[:span]], start)
        return buf[offset - start:min(got, offset - start + n)]

    def _read_blob(self, blob_id: int, fds: dict[str, int], decoder: _Decoder) -> bytes:
        """A blob's bytes, every chunk checked against its ID."""
        return decoder.decode(*self._read_record(blob_id, fds))

    def _recipe_pieces(self, location: str, seq: int) -> Iterator[bytes]:
        """An object's chunk IDs, piece by piece (each read under the lock on its own)."""
        with self._lock:
            row = self._db.execute("SELECT ids FROM recipes WHERE location = ? AND seq = ?",
                                   (location, seq)).fetchone()
        if row is None:
            raise MediaReadError(f"the dedup pool {self.name} has no chunk list for object "
                                 f"{seq} of {location}")
        yield bytes(row[0])
        part = 1
        while True:
            with self._lock:
                row = self._db.execute("SELECT ids FROM recipe_parts WHERE location = ? AND "
                                       "seq = ? AND part = ?", (location, seq, part)).fetchone()
            if row is None:
                return
            yield bytes(row[0])
            part += 1

    def _checked_recipe(self, location: str, stored: StoredObject) -> None:
        """Check an object's chunk list against the catalog's record (its size and
        checksum), reading it piece by piece."""
        size = self.recipe_size(location, stored.offset)
        if size is None:
            raise MediaReadError(f"the dedup pool {self.name} has no chunk list for object "
                                 f"{stored.offset} of {location}")
        digest = blake3.blake3()
        for ids in self._recipe_pieces(location, stored.offset):
            digest.update(ids)
        if size != stored.size or digest.hexdigest() != stored.checksum:
            raise MediaReadError(f"the chunk list of object {stored.offset} of {location} "
                                 "does not match the catalog")

    def _chunk_refs(self, location: str, seq: int) -> Iterator[tuple[bytes, int, int, int]]:
        """(chunk ID, blob, offset, length) of each chunk of an object, in order."""
        for ids in self._recipe_pieces(location, seq):
            for start in range(0, len(ids), LOOKUP_BATCH * ID_LEN):
                batch = split_ids(ids[start:start + LOOKUP_BATCH * ID_LEN])
                where = self._locate(batch)
                for cid in batch:
                    loc = where.get(cid)
                    if loc is None:
                        raise MediaReadError(f"chunk {cid.hex()[:16]} is missing from the "
                                             f"dedup pool {self.name}")
                    yield (cid, *loc)

    def recipe_size(self, location: str, seq: int) -> int | None:
        """The size of an object the pool holds a chunk list for, else None."""
        with self._lock:
            row = self._db.execute("SELECT size FROM recipes WHERE location = ? AND seq = ?",
                                   (location, seq)).fetchone()
        return int(row[0]) if row else None

    def _commit_writer(self, w: DedupImageWriter) -> None:
        """The one index transaction that makes a writer's chunks and recipes durable.
        Everything is read from the writer's scratch in batches: memory stays flat."""
        scratch = w.scratch
        duplicate = 0
        with self._lock, scratch.lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                pack_ids = {}
                for name in w.packs:
                    size = os.path.getsize(self._pack_path(name))
                    cur = db.execute("INSERT INTO packs(name, size) VALUES (?, ?)", (name, size))
                    pack_ids[name] = cur.lastrowid
                # a backup running at the same time may have committed some of the same new
                # chunks first: its copy stays the one the index refers to, ours is garbage
                # (a blob left with no chunk is not recorded; its bytes go at the next repack)
                for blobs in scratch.batches("SELECT id, pack, offset, stored, raw FROM blobs "
                                             "WHERE id > ? ORDER BY id", -1, 32):
                    placed = collections.defaultdict(list)
                    for blob, cid, off, ln in scratch.db.execute(
                            "SELECT blob, id, off, len FROM placed WHERE blob BETWEEN ? AND ?",
                            (blobs[0][0], blobs[-1][0])):
                        placed[blob].append((cid, off, ln))
                    known = self._known([e[0] for entries in placed.values() for e in entries])
                    rows = []
                    for blob, pack, offset, stored, raw in blobs:
                        fresh = [e for e in placed[blob] if e[0] not in known]
                        duplicate += sum(e[2] for e in placed[blob] if e[0] in known)
                        if not fresh:
                            continue
                        cur = db.execute("INSERT INTO blobs(pack, offset, stored, raw) "
                                         "VALUES (?, ?, ?, ?)", (pack_ids[pack], offset, stored, raw))
                        rows += [(cid, cur.lastrowid, off, ln) for cid, off, ln in fresh]
                    db.executemany("INSERT OR IGNORE INTO chunks(id, blob, off, len, refs) "
                                   "VALUES (?, ?, ?, ?, 0)", rows)
                for seen in scratch.batches("SELECT id, n FROM seen WHERE id > ? ORDER BY id",
                                            b"", 5000):
                    db.executemany("UPDATE chunks SET refs = refs + ? WHERE id = ?",
                                   [(n, cid) for cid, n in seen])
                for seq, size, part, ids in scratch.pieces(w.recipes):
                    _put_piece(db, w.location, seq, size, part, ids)
                db.executemany("INSERT INTO recipe_records(pack, offset, location, stored) "
                               "VALUES (?, ?, ?, ?)",
                               [(pack_ids[pack], offset, w.location, length)
                                for pack, offset, length in w.recipe_records])
                faults.point("dedup:index_before_commit")
                db.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise MediaWriteError(f"the index of dedup pool {self.name} could not record "
                                      f"the image: {exc}") from exc
            if duplicate:
                self._dirty = True            # packs now empty or sparse: collect them
                w.new_bytes -= duplicate

    def _drop_recipes(self, where: str, args: tuple[Any, ...]) -> None:
        """Drop recipes (``where`` selects them by location and perhaps seq) and their
        references, one piece at a time, in one transaction."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                for table in ("recipes", "recipe_parts"):
                    for (ids,) in db.execute(f"SELECT ids FROM {table} WHERE {where}", args):
                        _count_refs(db, ids, -1)
                    db.execute(f"DELETE FROM {table} WHERE {where}", args)
                db.execute("DELETE FROM recipe_records WHERE NOT EXISTS "
                           "(SELECT 1 FROM recipes r WHERE r.location = recipe_records.location)")
                db.execute("COMMIT")
                self._dirty = True
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise MediaWriteError(f"dedup pool {self.name}: {exc}") from exc

    # -------------------------------------------------------------- garbage collection
    def collect(self) -> dict[str, int]:
        """Free what no image references. Safe while backups run: chunks a running backup
        found in the pool are pinned; its own new chunks are not in the index yet."""
        with self._gc_lock:
            with self._lock:
                if not self._dirty:              # nothing was deleted since the last run
                    return {"chunks": 0, "packs_removed": 0, "packs_repacked": 0}
                self._own()
                self._dirty = False
            dead = 0
            last: tuple[int, bytes] = (-(1 << 62), b"")
            while True:                          # GC_BATCH at a time: writers go on between
                with self._lock:
                    db = self._db
                    rows = db.execute("SELECT refs, id, blob FROM chunks WHERE refs <= 0 AND "
                                      "(refs, id) > (?, ?) ORDER BY refs, id LIMIT ?",
                                      (*last, GC_BATCH)).fetchall()
                    if not rows:
                        break
                    last = (rows[-1][0], rows[-1][1])
                    pinned: set[bytes] = set()
                    for w in self._writers:
                        pinned |= w.pinned([r[1] for r in rows])
                    gone = [(cid, blob) for _refs, cid, blob in rows if cid not in pinned]
                    if len(gone) < len(rows):
                        self._dirty = True       # pinned ones: try again later
                    if gone:
                        db.execute("BEGIN IMMEDIATE")
                        db.executemany("DELETE FROM chunks WHERE id = ?", [(c,) for c, _ in gone])
                        blobs = sorted({b for _, b in gone})
                        db.executemany("DELETE FROM blobs WHERE id = ? AND NOT EXISTS "
                                       "(SELECT 1 FROM chunks WHERE blob = ?)",
                                       [(b, b) for b in blobs])
                        db.execute("COMMIT")
                        dead += len(gone)
            with self._lock:
                empty = self._empty_packs()
            freed = self._drop_packs(empty)
            repacked = 0
            if self._readers:       # readers hold chunk offsets: repack once none is open
                self._dirty = True
            else:
                for pack_id, name in self._sparse_packs():
                    repacked += self._repack(pack_id, name)
        if dead or freed or repacked:
            log.info("dedup pool %s: %d chunks collected, %d packs removed, %d repacked",
                     self.name, dead, len(freed), repacked)
        return {"chunks": dead, "packs_removed": len(freed), "packs_repacked": repacked}

    def _empty_packs(self) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in self._db.execute(
            "SELECT id, name FROM packs p WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE pack = p.id) "
            "AND NOT EXISTS (SELECT 1 FROM recipe_records WHERE pack = p.id)")]

    def _drop_packs(self, packs: list[tuple[int, str]]) -> list[str]:
        if not packs:
            return []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM packs WHERE id = ?", [(p,) for p, _ in packs])
            self._db.execute("COMMIT")
        faults.point("dedup:gc_before_unlink")
        for _, name in packs:
            self._unlink_pack(name)
        return [n for _, n in packs]

    def _sparse_packs(self) -> list[tuple[int, str]]:
        """Packs whose live share fell below REPACK_BELOW; a blob counts by the share of
        its raw bytes still held by chunks, an image's recipe record whole."""
        with self._lock:
            rows = self._db.execute(
                "WITH l AS (SELECT blob, SUM(len) AS live FROM chunks GROUP BY blob), "
                "bl AS (SELECT b.pack AS pack, SUM(b.stored * COALESCE(l.live, 0) / b.raw) "
                "       AS live FROM blobs b LEFT JOIN l ON l.blob = b.id GROUP BY b.pack), "
                "rr AS (SELECT pack, SUM(stored) AS live FROM recipe_records GROUP BY pack) "
                "SELECT p.id, p.name, p.size, COALESCE(bl.live, 0) + COALESCE(rr.live, 0) "
                "FROM packs p LEFT JOIN bl ON bl.pack = p.id LEFT JOIN rr ON rr.pack = p.id"
            ).fetchall()
        return [(r[0], r[1]) for r in rows if r[3] < REPACK_BELOW * r[2]]

    def _repack(self, pack_id: int, name: str) -> int:
        """Move the live blobs of a sparse pack into a new pack, then retire the old one.
        A blob mostly live is copied as sealed (no decryption); one mostly dead is rewritten
        with its remaining chunks only (decrypted, checked, sealed anew), unless a reader
        is open: readers hold chunk offsets, so then the rewrite waits for a later run."""
        with self._lock:
            blobs = self._db.execute(
                "SELECT b.id, b.offset, b.stored, b.raw, COALESCE(SUM(c.len), 0) FROM blobs b "
                "LEFT JOIN chunks c ON c.blob = b.id WHERE b.pack = ? GROUP BY b.id "
                "ORDER BY b.offset", (pack_id,)).fetchall()
            records = self._db.execute("SELECT offset, stored FROM recipe_records "
                                       "WHERE pack = ? ORDER BY offset", (pack_id,)).fetchall()
        if not blobs and not records:
            return 0
        new = os.urandom(16).hex()
        path = self._pack_path(new, create_dir=True)
        moved: list[tuple[int, int, int, int]] = []     # blob, new offset, stored, raw
        chunk_offsets: list[tuple[int, bytes]] = []     # rewritten blobs' chunks: off, id
        empty: list[tuple[int]] = []                    # blobs no chunk refers to
        src = os.open(self._pack_path(name), os.O_RDONLY)
        try:
            dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                header = PACK_MAGIC + self.pool_id
                _write_all(dst, [header])
                pos = len(header)
                ctx: _SealContext | None = None
                decoder = _Decoder(self.key)
                for blob_id, offset, stored, raw, live in blobs:
                    if live == 0:            # left by a pool version that recorded them
                        empty.append((blob_id,))
                        continue
                    parts: list[bytes | memoryview] = [os.pread(src, stored, offset)]
                    if live < REWRITE_BELOW * raw:
                        ctx = ctx or _SealContext(self, BLOB_TARGET + self.chunk_max)
                        rewritten = self._rewrite_blob(blob_id, parts[0], name, offset,
                                                       decoder, ctx)
                        if rewritten is not None:
                            parts, raw, offsets = rewritten
                            chunk_offsets += offsets
                    size = sum(len(p) for p in parts)
                    _write_all(dst, parts)
                    moved.append((blob_id, pos, size, raw))
                    pos += size
                moved_records = []
                for offset, stored in records:               # copied sealed
                    _write_all(dst, [os.pread(src, stored, offset)])
                    moved_records.append((pos, offset))
                    pos += stored
                os.fsync(dst)
            finally:
                os.close(dst)
            fsync_dir(os.path.dirname(path))
        finally:
            os.close(src)
        faults.point("dedup:repack_copied")
        with self._lock:
            if chunk_offsets and self._readers:          # one opened meanwhile: next time
                self._unlink_pack(new)
                self._dirty = True
                return 0
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            if moved or moved_records:
                cur = db.execute("INSERT INTO packs(name, size) VALUES (?, ?)", (new, pos))
                db.executemany("UPDATE blobs SET pack = ?, offset = ?, stored = ?, raw = ? "
                               "WHERE id = ?",
                               [(cur.lastrowid, off, st, rw, b) for b, off, st, rw in moved])
                db.executemany("UPDATE chunks SET off = ? WHERE id = ?", chunk_offsets)
                db.executemany("UPDATE recipe_records SET pack = ?, offset = ? "
                               "WHERE pack = ? AND offset = ?",
                               [(cur.lastrowid, off, pack_id, old) for off, old in moved_records])
            db.executemany("DELETE FROM blobs WHERE id = ?", empty)
            db.execute("DELETE FROM packs WHERE id = ?", (pack_id,))
            db.execute("COMMIT")
        faults.point("dedup:gc_before_unlink")
        if not moved and not moved_records:
            self._unlink_pack(new)
        self._unlink_pack(name)
        return 1

    def _rewrite_blob(self, blob_id: int, record: bytes, pack: str, offset: int,
                      decoder: _Decoder, ctx: _SealContext
                      ) -> tuple[list[bytes | memoryview], int, list[tuple[int, bytes]]] | None:
        """The blob sealed anew with only the chunks the index still holds: (record parts,
        raw length, new chunk offsets). None (copy it as it is) when it does not decode or
        a chunk does not match its ID: verify and restore report such a blob, GC must not
        hide it."""
        with self._lock:
            chunks = self._db.execute("SELECT id, off, len FROM chunks WHERE blob = ? "
                                      "ORDER BY off", (blob_id,)).fetchall()
        try:
            raw = memoryview(decoder.decode(record, f"dedup pool {self.name}, pack {pack}, "
                                                    f"offset {offset}", verify=False))
            for cid, off, length in chunks:
                check_chunk(raw[off:off + length], cid, self.key.id_key, self.name)
        except MediaReadError as exc:
            log.warning("dedup pool %s: blob %d kept as it is while repacking: %s",
                        self.name, blob_id, exc.message)
            return None
        offsets, pos = [], 0
        for cid, _off, length in chunks:
            offsets.append((pos, cid))
            pos += length
        aad, sealed = ctx.seal([raw[off:off + length] for _cid, off, length in chunks],
                               [(c[0], c[2]) for c in chunks], compress=True)
        return [aad, bytes(sealed)], pos, offsets

    # -------------------------------------------------------------- index rebuild
    def rebuild_index(self, catalog_objects: dict[str, dict[int, tuple[int, str]]]
                      ) -> dict[str, Any]:
        """Rebuild ``index.db`` from the pack files, for when it is lost or damaged. Every
        record is authenticated; blobs give chunks and their places, images' recipe
        records give recipes, kept only where the catalog (``catalog_objects``: location ->
        {object number: (size, checksum)}) has that object with that checksum; reference
        counts are recounted. The old index is kept beside it (``index.db.replaced-*``).
        Needs the pool to itself (no server running on it). Recipes found are staged in
        the new index file and checked object by object: memory does not grow with the
        pool."""
        with self._lock:
            self._own()
            if self._db is not None:
                self._db.close()
        new_path = os.path.join(self.root, "index.db.rebuild")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(new_path + suffix):
                os.unlink(new_path + suffix)
        db = sqlite3.connect(new_path, isolation_level=None)
        self._upgrade(db)
        db.execute("CREATE TABLE found (location TEXT NOT NULL, seq INTEGER NOT NULL, "
                   "part INTEGER NOT NULL, ids BLOB NOT NULL, PRIMARY KEY (location, seq, part))")
        db.execute("BEGIN")
        report: dict[str, Any] = {"packs": 0, "blobs": 0, "chunks": 0, "objects": 0,
                                  "skipped": [], "lost": []}
        decoder = _Decoder(self.key)
        for dirpath, _dirs, files in os.walk(os.path.join(self.root, "packs")):
            for f in sorted(files):
                if not f.endswith(".pack"):
                    continue
                name = f.removesuffix(".pack")
                with open(os.path.join(dirpath, f), "rb") as pf:
                    data = pf.read()
                if not data.startswith(PACK_MAGIC + self.pool_id):
                    report["skipped"].append(f"{name}: not a pack of this pool")
                    continue
                pack_id = db.execute("INSERT INTO packs(name, size) VALUES (?, ?)",
                                     (name, len(data))).lastrowid
                report["packs"] += 1
                pos = len(PACK_MAGIC) + len(self.pool_id)
                while pos < len(data):
                    try:
                        magic, flags, count, raw_len, plain, end = decoder.open(
                            data, pos, f"pack {name}, offset {pos}", (BLOB_MAGIC, RECIPE_MAGIC))
                    except MediaReadError as exc:
                        report["skipped"].append(f"{exc.message}; the rest of the pack is "
                                                 "unreadable")
                        break
                    if magic == BLOB_MAGIC and flags & FLAG_SEALED:
                        try:
                            decoder.blob(memoryview(data)[pos:end],
                                         f"pack {name}, offset {pos}").authenticate(decoder)
                        except MediaReadError as exc:
                            report["skipped"].append(f"{exc.message}; the rest of the pack "
                                                     "is unreadable")
                            break
                    if magic == BLOB_MAGIC:
                        blob_id = db.execute(
                            "INSERT INTO blobs(pack, offset, stored, raw) VALUES (?, ?, ?, ?)",
                            (pack_id, pos, end - pos, raw_len)).lastrowid
                        report["blobs"] += 1
                        off = 0
                        for cid, n, _stored in decoder.entries(data, pos, count, flags):
                            db.execute("INSERT OR IGNORE INTO chunks(id, blob, off, len, refs) "
                                       "VALUES (?, ?, ?, ?, 0)", (cid, blob_id, off, n))
                            off += n
                    else:
                        rec = msgpack.unpackb(plain, raw=False)
                        location = rec["location"]
                        wanted = catalog_objects.get(location, {})
                        objects = [(seq, part[0] if part else 0, ids)  # part: version 2
                                   for seq, size, ids, *part in rec["objects"]
                                   if wanted.get(seq, (None,))[0] == size]
                        db.executemany("INSERT OR IGNORE INTO found(location, seq, part, ids) "
                                       "VALUES (?, ?, ?, ?)",
                                       [(location, *o) for o in objects])
                        if objects:
                            db.execute("INSERT INTO recipe_records(pack, offset, location, "
                                       "stored) VALUES (?, ?, ?, ?)",
                                       (pack_id, pos, location, end - pos))
                    pos = end
        for location, objs in sorted(catalog_objects.items()):
            for seq, (size, checksum) in sorted(objs.items()):
                problem = self._rebuilt_recipe(db, location, seq, size, checksum)
                if problem is None:
                    report["objects"] += 1
                else:
                    report["lost"].append(f"{location} object {seq}: {problem}")
        db.execute("DELETE FROM recipe_records WHERE location NOT IN "
                   "(SELECT DISTINCT location FROM recipes)")
        db.execute("DROP TABLE found")
        report["chunks"] = db.execute("SELECT COUNT(*) FROM chunks WHERE refs > 0").fetchone()[0]
        db.execute("COMMIT")
        db.close()
        old = os.path.join(self.root, "index.db")
        kept = f"{old}.replaced-{int(time.time())}"
        if os.path.exists(old):
            os.replace(old, kept)
            report["old_index"] = kept
        for suffix in ("-wal", "-shm"):
            if os.path.exists(old + suffix):
                os.replace(old + suffix, kept + suffix)
        os.replace(new_path, old)
        fsync_dir(self.root)
        self._db = self._connect()
        self._dirty = True
        return report

    @staticmethod
    def _rebuilt_recipe(db: sqlite3.Connection, location: str, seq: int, size: int,
                        checksum: str) -> str | None:
        """Enter one object's recipe, from the pieces ``rebuild_index`` found, in the new
        index and count its references; or say why it cannot be (nothing is entered)."""
        def pieces() -> Iterator[tuple[int, bytes]]:
            last = -1
            while True:
                row = db.execute("SELECT part, ids FROM found WHERE location = ? AND seq = ? "
                                 "AND part > ? ORDER BY part LIMIT 1",
                                 (location, seq, last)).fetchone()
                if row is None:
                    return
                last = row[0]
                yield row[0], bytes(row[1])

        digest, expected = blake3.blake3(), 0
        for part, ids in pieces():
            if part != expected:
                break                         # a piece is missing
            expected += 1
            digest.update(ids)
            wanted = split_ids(ids)
            if len(_ids_in(db, "SELECT id FROM chunks WHERE", wanted)) < len(set(wanted)):
                return "chunks are missing"
        if expected == 0 or digest.hexdigest() != checksum:
            return "no recipe record found"
        for part, ids in pieces():
            _put_piece(db, location, seq, size, part, ids)
            _count_refs(db, ids, 1)
        return None

    # -------------------------------------------------------------- checking and reporting
    def verify_object(self, location: str, stored: StoredObject,
                      memo: dict[int, str | None] | None = None) -> str | None:
        """Why this object cannot be restored intact, or None: every chunk of it is read,
        authenticated and checked against its ID (blobs checked once per ``memo``). A
        problem is confirmed by a second pass: the server's garbage collection may have
        moved a blob between this process's lookup and its read."""
        memo = {} if memo is None else memo
        problem = self._verify_pass(location, stored, memo)
        if problem is not None:
            again: dict[int, str | None] = {}
            problem = self._verify_pass(location, stored, again)
            memo.update(again)
        return problem

    def _verify_pass(self, location: str, stored: StoredObject,
                     memo: dict[int, str | None]) -> str | None:
        fds: dict[str, int] = {}
        decoder = _Decoder(self.key)
        try:
            self._checked_recipe(location, stored)
            for _cid, blob_id, _off, _len in self._chunk_refs(location, stored.offset):
                if blob_id not in memo:
                    try:
                        self._read_blob(blob_id, fds, decoder)
                        memo[blob_id] = None
                    except MediaReadError as exc:
                        memo[blob_id] = exc.message
                if memo[blob_id]:
                    return memo[blob_id]
        except MediaReadError as exc:         # chunk list or a chunk's place missing
            return exc.message
        finally:
            for fd in fds.values():
                os.close(fd)
        return None

    def usage(self) -> dict[str, Any]:
        """Pool usage (crcontrol --dsstat): what images hold, what the pool stores."""
        with self._lock:
            db = self._db
            logical, objects = db.execute(
                "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM recipes").fetchone()
            images = db.execute("SELECT COUNT(DISTINCT location) FROM recipes").fetchone()[0]
            chunks, unique = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(len), 0) FROM chunks WHERE refs > 0").fetchone()
            dead_chunks, dead_bytes = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(len), 0) FROM chunks WHERE refs <= 0").fetchone()
            packs, pack_bytes = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM packs").fetchone()
            blob_raw, blob_stored = db.execute(
                "SELECT COALESCE(SUM(raw), 0), COALESCE(SUM(stored), 0) FROM blobs").fetchone()
            unprotected = db.execute(
                "SELECT COUNT(DISTINCT location) FROM recipes r WHERE NOT EXISTS "
                "(SELECT 1 FROM recipe_records WHERE location = r.location)").fetchone()[0]
        index_bytes = sum(os.path.getsize(os.path.join(self.root, f))
                          for f in os.listdir(self.root) if f.startswith("index.db"))
        return {
            "name": self.name, "path": self.root, "images": images, "objects": objects,
            "logical_bytes": logical, "unique_bytes": unique, "chunks": chunks,
            "stored_bytes": pack_bytes, "index_bytes": index_bytes, "packs": packs,
            "garbage_chunks": dead_chunks, "garbage_bytes": dead_bytes,
            "images_without_record": unprotected,
            "dedup_ratio": round(logical / unique, 2) if unique else None,
            "compression_ratio": round(blob_raw / blob_stored, 2) if blob_stored else None,
            "space_saved_pct": round(100 * (1 - pack_bytes / logical), 1) if logical else None,
        }

    def check(self) -> list[str]:
        """Pool consistency: every referenced chunk present, reference counts right, every
        blob's pack known and every pack on disk. Returns the problems found (empty when
        consistent), at most CHECK_LISTED of each kind and then how many more.

        One read snapshot of the index (a server may commit meanwhile), and memory that
        does not grow with the pool: the references the recipes make are counted in a
        scratch database in ``<pool>/tmp/`` and compared with the index in SQL."""
        directory = os.path.join(self.root, "tmp")
        try:
            os.makedirs(directory, exist_ok=True)
            writable = os.access(directory, os.W_OK)
        except OSError:
            writable = False
        # an administrator allowed to read the pool but not to write it: SQLite's own
        # temporary file (in TMPDIR) does the counting instead
        path = os.path.join(directory, f"check-{os.urandom(4).hex()}.db") if writable else ""
        with self._lock:
            db = self._db
            db.execute("ATTACH DATABASE ? AS chk", (path,))
            try:
                for pragma in ("journal_mode=OFF", "synchronous=OFF",
                               f"cache_size=-{SCRATCH_CACHE_KIB}"):
                    db.execute("PRAGMA chk." + pragma)
                db.execute("CREATE TABLE chk.refs (id BLOB PRIMARY KEY, n INTEGER NOT NULL) "
                           "WITHOUT ROWID")
                db.execute("BEGIN")
                try:
                    return self._check_snapshot(db)
                finally:
                    db.execute("COMMIT")         # nothing of the index was written
            finally:
                db.execute("DETACH DATABASE chk")
                if path:                         # journal_mode=OFF: no journal beside it
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass

    def _check_snapshot(self, db: sqlite3.Connection) -> list[str]:
        """The problems ``check`` reports, inside its read transaction."""
        pieces = db.cursor()
        for (ids,) in pieces.execute("SELECT ids FROM recipes UNION ALL "
                                     "SELECT ids FROM recipe_parts"):
            db.executemany("INSERT INTO chk.refs(id, n) VALUES (?, 1) "
                           "ON CONFLICT(id) DO UPDATE SET n = n + 1",
                           ((ids[i:i + ID_LEN],) for i in range(0, len(ids), ID_LEN)))
        problems: list[str] = []

        def listed(rows: Iterator[tuple[Any, ...]], say: Any) -> None:
            """A problem for each row ``say`` names one for (it returns None when fine)."""
            found = 0
            for row in rows:
                problem = say(*row)
                if problem is not None:
                    found += 1
                    if found <= CHECK_LISTED:
                        problems.append(problem)
            if found > CHECK_LISTED:
                problems.append(f"... and {found - CHECK_LISTED} more like the one above")

        def on_disk(name: str, size: int) -> str | None:
            try:
                actual = os.path.getsize(self._pack_path(name))
            except OSError:
                return f"pack file {name} is missing"
            return f"pack file {name} is shorter than recorded" if actual < size else None

        listed(db.execute("SELECT r.id FROM chk.refs r WHERE NOT EXISTS "
                          "(SELECT 1 FROM chunks c WHERE c.id = r.id)"),
               lambda cid: f"chunk {cid.hex()[:16]} is referenced but missing")
        listed(db.execute("SELECT r.id, c.refs, r.n FROM chk.refs r JOIN chunks c "
                          "ON c.id = r.id WHERE c.refs != r.n"),
               lambda cid, refs, n: f"chunk {cid.hex()[:16]} has {refs} references "
                                    f"recorded, {n} real")
        listed(db.execute("SELECT c.id, c.refs FROM chunks c WHERE c.refs > 0 AND NOT EXISTS "
                          "(SELECT 1 FROM chk.refs r WHERE r.id = c.id)"),
               lambda cid, refs: f"chunk {cid.hex()[:16]} counts {refs} references, has none")
        listed(db.execute("SELECT c.id, c.blob FROM chunks c WHERE NOT EXISTS "
                          "(SELECT 1 FROM blobs b WHERE b.id = c.blob)"),
               lambda cid, blob: f"chunk {cid.hex()[:16]} is in blob {blob}, which is missing")
        listed(db.execute("SELECT b.id, b.pack FROM blobs b WHERE NOT EXISTS "
                          "(SELECT 1 FROM packs p WHERE p.id = b.pack)"),
               lambda blob, pack: f"blob {blob} is in pack {pack}, which is missing")
        listed(db.execute("SELECT r.location, r.pack FROM recipe_records r WHERE NOT EXISTS "
                          "(SELECT 1 FROM packs p WHERE p.id = r.pack)"),
               lambda loc, pack: f"the recipe record of {loc} is in pack {pack}, which is "
                                 "missing")
        listed(db.execute("SELECT name, size FROM packs ORDER BY id"), on_disk)
        return problems

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
            if self._owner_fd >= 0:
                os.close(self._owner_fd)
                self._owner_fd = -1
