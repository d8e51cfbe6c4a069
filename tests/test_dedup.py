"""The dedup storage unit (issue #6): byte-exact round trips, deduplication across images,
damage detected by verify and by restore, garbage collection racing a backup, crash
consistency, key handling and the reported statistics.

Unit-level tests drive the pool in-process (real files, real SQLite, the real threads);
the others go through a real server process and openxbsa.xbsa.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openxbsa import xbsa as X
from openxbsa.errors import MediaReadError, MediaWriteError
from openxbsa.storage.base import StoredObject
from openxbsa.storage.dedup import DedupImageWriter, DedupStorageUnit
from tests.conftest import (
    ServerProc, backup, descriptor, find, init, make_home, query, restore, send_all,
)

OK = X.BSA_RC_SUCCESS
MiB = 1 << 20


# ---------------------------------------------------------------------------- helpers
def new_unit(root: str, name: str = "pool") -> DedupStorageUnit:
    return DedupStorageUnit(name, os.path.join(root, "pool"), key_dir=os.path.join(root, "keys"))


def store(unit: DedupStorageUnit, backup_id: str, objects: list[bytes],
          pieces: list[int] | None = None) -> tuple[str, list[StoredObject], dict]:
    """Write objects as one image, feeding them in pieces of the given sizes, alternating
    between write() and the receive-in-place path; returns location, stored, stats."""
    w = unit.open_writer(backup_id)
    stored = []
    sizes = pieces or [65536]
    for data in objects:
        w.begin_object()
        pos, i = 0, 0
        while pos < len(data):
            n = min(sizes[i % len(sizes)], len(data) - pos)
            direct = w.write_buffer(n) if i % 2 else None
            if direct is not None:
                direct[:] = data[pos:pos + n]
                w.wrote(n)
            else:
                w.write(memoryview(data)[pos:pos + n])
            pos += n
            i += 1
        stored.append(w.end_object())
    w.commit()
    return w.location, stored, w.stats()


def load(unit: DedupStorageUnit, location: str, stored: StoredObject, n: int = MiB) -> bytes:
    r = unit.open_reader(location, stored)
    try:
        out = bytearray()
        while part := r.read(n):
            out += part
        return bytes(out)
    finally:
        r.close()


def pack_files(root: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _s, fs in os.walk(os.path.join(root, "pool", "packs"))
                  for f in fs)


def pack_path(root: str, name: str) -> str:
    return os.path.join(root, "pool", "packs", name[:2], name + ".pack")


def enospc_on_call(monkeypatch, name: str, n: int) -> list[int]:
    """Make os.<name> fail with ENOSPC on its n-th call (a full disk cannot be arranged
    safely on this machine); the file descriptors it was called with are listed."""
    real = getattr(os, name)
    calls: list[int] = []

    def failing(fd: int, *args):
        calls.append(fd)
        if len(calls) == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, *args)

    monkeypatch.setattr(os, name, failing)
    return calls


def backup_that_fails(unit: DedupStorageUnit, mib: int) -> tuple[DedupImageWriter, MediaWriteError]:
    """Back up ``mib`` MiB of random data as one object; the writer and the error it
    failed with (the test fails if it does not)."""
    w = unit.open_writer("host_1")
    w.begin_object()
    with pytest.raises(MediaWriteError) as err:
        for _ in range(mib):
            w.write(os.urandom(MiB))
        w.end_object()
        w.commit()
    return w, err.value


def _first_blob(root: str) -> tuple[str, int, int]:
    """The pack file, offset and stored size of the pool's first blob."""
    db = sqlite3.connect(os.path.join(root, "pool", "index.db"))
    name, offset, size = db.execute("SELECT p.name, b.offset, b.stored FROM blobs b JOIN packs p "
                                    "ON p.id = b.pack ORDER BY b.id LIMIT 1").fetchone()
    db.close()
    return pack_path(root, name), offset, size


def reseal_first_blob(root: str, unit: DedupStorageUnit, alter) -> None:
    """Decrypt the pool's first blob, let ``alter(flags, entries, payload)`` change its
    payload (a bytearray of its units, decrypted; entries are (chunk ID, length, length of
    the unit)), and seal it again under the pool key: the altered blob still authenticates."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from openxbsa.storage.dedup import (
        BLOB_HEAD, FLAG_FRAMES, FLAG_SEALED, FRAME_ENTRY, TABLE_ENTRY, _unit_nonce,
    )

    pack, offset, size = _first_blob(root)
    with open(pack, "r+b") as f:
        f.seek(offset)
        record = f.read(size)
        _magic, flags, nonce, count, _raw_len, _ct_len = BLOB_HEAD.unpack_from(record)
        entry = FRAME_ENTRY if flags & FLAG_FRAMES else TABLE_ENTRY
        table_end = BLOB_HEAD.size + count * entry.size
        rows = [entry.unpack_from(record, BLOB_HEAD.size + i * entry.size) for i in range(count)]
        entries = rows if flags & FLAG_FRAMES else [(cid, n, n) for cid, n in rows]
        aead = AESGCM(unit.key.enc_key)
        if not flags & FLAG_SEALED:
            payload = bytearray(aead.decrypt(nonce, record[table_end:], record[:table_end]))
            alter(flags, entries, payload)
            f.seek(offset + table_end)
            f.write(aead.encrypt(nonce, bytes(payload), record[:table_end]))
            return
        units, at = [], table_end + 16              # each unit sealed on its own
        for i, (cid, _n, stored) in enumerate(entries):
            units.append(aead.decrypt(_unit_nonce(nonce, i + 1), record[at:at + stored], cid))
            at += stored
        payload = bytearray(b"".join(units))
        alter(flags, [(cid, n, len(u)) for (cid, n, _st), u in zip(entries, units)], payload)
        f.seek(offset + table_end + 16)
        pos = 0
        for i, ((cid, _n, _st), u) in enumerate(zip(entries, units)):
            f.write(aead.encrypt(_unit_nonce(nonce, i + 1), bytes(payload[pos:pos + len(u)]), cid))
            pos += len(u)


def blob_flags(root: str) -> set[int]:
    """The flags of every blob the pool's index lists, read from the packs."""
    from openxbsa.storage.dedup import BLOB_HEAD
    db = sqlite3.connect(os.path.join(root, "pool", "index.db"))
    rows = db.execute("SELECT p.name, b.offset FROM blobs b JOIN packs p ON p.id = b.pack"
                      ).fetchall()
    db.close()
    flags = set()
    for name, offset in rows:
        with open(pack_path(root, name), "rb") as f:
            f.seek(offset)
            flags.add(BLOB_HEAD.unpack_from(f.read(BLOB_HEAD.size))[1])
    return flags


WORDS = [bytes(random.Random(i).choices(b"abcdefghijklmnopqrstuvwxyz", k=3 + i % 7))
         for i in range(400)]


def text_like(rng: random.Random, size: int) -> bytes:
    """Compressible bytes (log-like words and numbers): stored as zstd frames."""
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(WORDS, k=12)) + b" %d\n" % rng.randrange(10**9)
    return bytes(out[:size])


def edit(data: bytes, edits: list[tuple[int, int, int]], rng: random.Random) -> bytes:
    out = bytearray(data)
    for kind, at, n in edits:
        at = at % (len(out) + 1)
        if kind == 0:
            out[at:at] = rng.randbytes(n)                 # insert
        elif kind == 1:
            del out[at:at + n]                            # delete
        else:
            out[at:at + n] = rng.randbytes(len(out[at:at + n]))   # overwrite
    return bytes(out)


# ---------------------------------------------------------------------------- round trips
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(0, 3 * MiB), seed=st.integers(0, 2**32),
       edits=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4 * MiB),
                                st.integers(1, 200_000)), max_size=4),
       pieces=st.lists(st.integers(1, 300_000), min_size=1, max_size=4),
       text=st.booleans())
def test_round_trip_byte_exact_through_edits(tmp_path_factory, size, seed, edits, pieces, text):
    """Random bytes (blobs stored raw) or text (chunks compressed one by one; the second
    image uses some chunks of the first one's blobs, decoded alone)."""
    root = str(tmp_path_factory.mktemp("rt"))
    unit = new_unit(root)
    unit.segment = 256 << 10          # small segments: carry-over between segments exercised
    rng = random.Random(seed)
    base = text_like(rng, size) if text else rng.randbytes(size)
    changed = edit(base, edits, rng)
    loc1, st1, _ = store(unit, "host_1", [base, b"", base[: size // 3]], pieces)
    loc2, st2, _ = store(unit, "host_2", [changed], pieces)
    assert load(unit, loc1, st1[0], 100_000) == base
    assert load(unit, loc1, st1[1]) == b""
    assert load(unit, loc1, st1[2]) == base[: size // 3]
    assert load(unit, loc2, st2[0], 7) == changed if len(changed) < 50_000 else \
        load(unit, loc2, st2[0]) == changed
    assert unit.check() == []
    unit.close()


@pytest.mark.parametrize("segment", [256 << 10, 1 << 20])
def test_chunks_are_those_of_the_whole_stream_however_it_arrives(tmp_path, segment):
    """The writer cuts segment by segment, each segment's last chunk carried over to the
    next: its chunks must be exactly those of cutting the whole stream at once, or the same
    data sent in other pieces would not dedup."""
    import blake3
    from pyfastcdc.cy import FastCDC

    from openxbsa.storage.dedup import split_ids

    unit = new_unit(str(tmp_path))
    unit.segment = segment
    rng = random.Random(segment)
    data = rng.randbytes(3 * MiB) + text_like(rng, 2 * MiB) + bytes(300_000) + rng.randbytes(MiB)
    loc, stored, _ = store(unit, "host_1", [data], [70_000, 300_001, 4096])
    cdc = FastCDC(unit.chunk_avg, min_size=unit.chunk_min, max_size=unit.chunk_max)
    expected = [blake3.blake3(memoryview(data)[c.offset:c.offset + c.length],
                              key=unit.key.id_key).digest() for c in cdc.cut_buf(data)]
    got = [cid for piece in unit._recipe_pieces(loc, 0) for cid in split_ids(piece)]
    assert got == expected
    assert load(unit, loc, stored[0]) == data
    unit.close()


def test_large_object_round_trip_and_edit_dedup(tmp_path):
    unit = new_unit(str(tmp_path))
    rng = random.Random(5)
    base = rng.randbytes(20 * MiB)                        # spans several 8 MiB segments
    loc, stored, stats = store(unit, "host_1", [base], [MiB])
    assert load(unit, loc, stored[0]) == base
    assert stats["received"] == len(base) and stats["after_dedup"] == len(base)
    changed = base[:9 * MiB] + b"inserted" + base[9 * MiB:]
    loc2, stored2, stats2 = store(unit, "host_2", [changed], [MiB])
    assert load(unit, loc2, stored2[0]) == changed
    # one insertion costs a chunk or two, not the rest of the object
    assert stats2["after_dedup"] < 600_000
    unit.close()


# ---------------------------------------------------------------------------- the server
def dedup_server(tmp_path_factory, settings_text: str = "") -> ServerProc:
    home = make_home(tmp_path_factory)
    if settings_text:
        with open(os.path.join(home, "openxbsa.toml"), "w") as f:
            f.write(settings_text)
    srv = ServerProc(home=home, address=f"unix:{home}/xbsa.sock")
    add = srv.cli("stu", "add", "pool", "--kind", "dedup", "--path", os.path.join(home, "pool"))
    assert add.returncode == 0, add.stderr
    assert os.path.join(home, "keys", "pool.key") in add.stdout
    mod = srv.cli("policy", "modify", "openxbsa-default", "--stunit", "pool")
    assert mod.returncode == 0, mod.stderr
    srv.start()
    return srv


@pytest.fixture
def dsrv(tmp_path_factory):
    srv = dedup_server(tmp_path_factory)
    yield srv
    srv.stop()


def restored_after_start(srv: ServerProc, *copy_ids: int) -> list[bytes]:
    """Start the (stopped) server and restore these objects in one session."""
    srv.start()
    h = init(srv)
    try:
        return [restore(h, copy_id) for copy_id in copy_ids]
    finally:
        X.BSATerminate(h)


def cli_json(srv: ServerProc, *args: str):
    out = srv.cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_key_is_held_by_the_server_not_the_pool(dsrv):
    key = os.path.join(dsrv.home, "keys", "pool.key")
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert not any(f.endswith(".key") for _d, _s, fs in os.walk(os.path.join(dsrv.home, "pool"))
                   for f in fs)
    secret = bytes.fromhex(open(key).read().strip())
    data = b"the same plaintext, again and again " * 30000
    h = init(dsrv)
    backup(h, "/plain/text", data)
    X.BSATerminate(h)
    for path in pack_files(dsrv.home):
        blob = open(path, "rb").read()
        assert b"the same plaintext" not in blob and secret not in blob   # encrypted at rest


def test_key_rotation_retires_the_old_key_file(tmp_path_factory):
    """`openxbsa pool rekey` writes a new key file: backups made before and after restore
    with it, the old key file no longer opens the pool, pool.json holds the pool key only
    sealed, and a running server is not disturbed."""
    srv = dedup_server(tmp_path_factory)
    try:
        key = os.path.join(srv.home, "keys", "pool.key")
        old = open(key).read()
        before = os.urandom(3 * MiB)
        h = init(srv)
        d1 = backup(h, "/rekey/before", before)
        out = srv.cli("pool", "rekey", "pool")
        assert out.returncode == 0 and "back it up now" in out.stdout, out.stderr
        new = open(key).read()
        assert new != old and os.stat(key).st_mode & 0o777 == 0o600
        meta = open(os.path.join(srv.home, "pool", "pool.json")).read()
        assert old.strip() not in meta and new.strip() not in meta
        after = os.urandom(MiB) + before[:MiB]
        d2 = backup(h, "/rekey/after", after)                 # the server goes on
        X.BSATerminate(h)
        srv.stop()
        assert restored_after_start(srv, d1.copyId, d2.copyId) == [before, after]
        assert "consistent" in srv.cli("pool", "check").stdout
        srv.stop()
        with open(key, "w") as f:                             # a copy of the old key
            f.write(old)
        out = srv.cli("pool", "usage")
        assert out.returncode != 0 and "was rotated" in out.stderr
        with open(key, "w") as f:
            f.write(new)
        assert srv.cli("pool", "rekey", "pool").returncode == 0   # rotating again works
        assert restored_after_start(srv, d1.copyId) == [before]
    finally:
        srv.stop()


def test_key_rotation_cut_short_is_finished_at_next_open(tmp_path_factory):
    """The rotation killed after pool.json has the newly sealed key but before the new
    key file replaced the old one: the next open finishes it and nothing is lost."""
    srv = dedup_server(tmp_path_factory)
    try:
        data = os.urandom(2 * MiB)
        h = init(srv)
        d = backup(h, "/rekey/cut", data)
        X.BSATerminate(h)
        srv.stop()
        key = os.path.join(srv.home, "keys", "pool.key")
        old = open(key).read()
        marker = os.path.join(srv.home, "rekey.reached")
        env = dict(os.environ, OPENXBSA_FAULT="dedup:rekey_meta_written",
                   OPENXBSA_FAULT_FILE=marker)
        proc = subprocess.Popen([sys.executable, "-m", "openxbsa.cli.main", "pool", "rekey",
                                 "pool", "--home", srv.home], env=env)
        try:
            wait_marker(marker)
        finally:
            proc.kill()
            proc.wait()
        assert open(key).read() == old and os.path.exists(key + ".new")
        out = srv.cli("pool", "usage")                        # finishes the rotation
        assert out.returncode == 0, out.stderr
        assert open(key).read() != old and not os.path.exists(key + ".new")
        assert restored_after_start(srv, d.copyId) == [data]
    finally:
        srv.stop()


def test_index_rebuilt_from_the_packs_after_it_is_lost(tmp_path_factory):
    """index.db lost or damaged: `openxbsa pool rebuild-index` rebuilds it from the pack
    files (each image's recipes are sealed into a pack at commit): every object the catalog
    holds restores, deleted objects stay deleted, reference counts are right; objects whose
    packs are gone are named as lost (exit 1)."""
    srv = dedup_server(tmp_path_factory)
    try:
        common = os.urandom(3 * MiB)
        a, b, c = common + os.urandom(MiB), os.urandom(2 * MiB), common[:2 * MiB]
        h = init(srv)
        d1 = backup_image(h, [("/ri/a", a), ("/ri/b", b)])
        d2 = backup_image(h, [("/ri/c", c)])
        before = set(pack_files(srv.home))
        d3 = backup_image(h, [("/ri/d", os.urandom(2 * MiB))])
        only_d = set(pack_files(srv.home)) - before
        assert X.BSABeginTxn(h) == OK
        assert X.BSADeleteObject(h, d1[1].copyId) == OK       # b goes, a stays
        assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
        X.BSATerminate(h)
        srv.stop()
        index = os.path.join(srv.home, "pool", "index.db")
        for suffix in ("-wal", "-shm"):
            if os.path.exists(index + suffix):
                os.unlink(index + suffix)
        with open(index, "r+b") as f:                          # damaged beyond use
            f.write(b"this is not an SQLite database" * 100)
        out = srv.cli("pool", "usage")
        assert out.returncode != 0 and "rebuild-index pool" in out.stderr
        out = srv.cli("pool", "rebuild-index", "pool")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "3 objects recovered" in out.stdout and "previous index was kept" in out.stdout
        assert_pool_consistent(srv)
        assert restored_after_start(srv, d1[0].copyId, d2[0].copyId) == [a, c]
        (usage,) = cli_json(srv, "pool", "usage")
        assert usage["objects"] == 3 and usage["logical_bytes"] == len(a) + len(c) + 2 * MiB
        assert usage["images_without_record"] == 0
        srv.stop()
        for path in only_d:                                    # image 3's packs are lost too
            os.unlink(path)
        os.unlink(index)
        out = srv.cli("pool", "rebuild-index", "pool", "--json")
        assert out.returncode == 1
        report = json.loads(out.stdout)
        assert report["objects"] == 2 and len(report["lost"]) == 1
        assert "object 0" in report["lost"][0], report
        srv.start()
        h = init(srv)
        assert restore(h, d1[0].copyId) == a
        assert X.BSABeginTxn(h) == OK                         # the lost one fails clearly
        assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d3[0].copyId),
                              X.BSA_DataBlock32()) == X.BSA_RC_ABORT_SYSTEM_ERROR
        assert "no chunk list" in X.BSAGetLastError()[1]
        X.BSATerminate(h)
    finally:
        srv.stop()


def test_index_rebuild_reads_past_nothing_it_cannot_authenticate(tmp_path):
    """A pack cut short (or altered) part-way: the rebuild keeps every record before the
    damage, says where it stopped, and recovers the images whose records and chunks are
    elsewhere; an altered record is refused, not trusted."""
    root = str(tmp_path)
    unit = new_unit(root)
    first = os.urandom(3 * MiB)
    loc1, stored1, _ = store(unit, "host_1", [first])
    packs1 = set(pack_files(root))
    second = os.urandom(3 * MiB)
    loc2, stored2, _ = store(unit, "host_2", [second])
    (victim, *_rest) = sorted(set(pack_files(root)) - packs1)
    size = os.path.getsize(victim)
    with open(victim, "r+b") as f:                  # alter one byte past the pack header
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    catalog = {loc: {s.offset: (s.size, s.checksum)}
               for loc, (s,) in ((loc1, stored1), (loc2, stored2))}
    report = unit.rebuild_index(catalog)
    assert any("unreadable" in line and "authentication failed" in line
               for line in report["skipped"]), report
    assert report["objects"] == 1 and len(report["lost"]) == 1 and loc2 in report["lost"][0]
    assert load(unit, loc1, stored1[0]) == first
    assert unit.check() == [] and os.path.getsize(victim) == size
    unit.close()


def test_pool_check_names_every_kind_of_index_damage(tmp_path, monkeypatch):
    """`pool check` compares the index with itself and the pack files: each kind of damage
    is named (chunk gone, reference count wrong, references with no recipe, chunk in a
    blob or blob in a pack the index lacks, pack file missing or short), a long list is cut
    with a count, and its scratch file is gone afterwards."""
    root = str(tmp_path)
    unit = new_unit(root)
    store(unit, "host_1", [os.urandom(3 * MiB)])
    store(unit, "host_2", [os.urandom(2 * MiB)])
    assert unit.check() == []
    db = unit._db
    ids = [r[0] for r in db.execute("SELECT id FROM chunks ORDER BY id")]
    gone, miscounted, stray, orphan = ids[:4]
    db.execute("DELETE FROM chunks WHERE id = ?", (gone,))
    db.execute("UPDATE chunks SET refs = refs + 2 WHERE id = ?", (miscounted,))
    db.execute("INSERT INTO chunks(id, blob, off, len, refs) SELECT ?, blob, off, len, 1 "
               "FROM chunks WHERE id = ?", (b"\x01" * 32, stray))
    db.execute("UPDATE chunks SET blob = 999999 WHERE id = ?", (orphan,))
    db.execute("UPDATE blobs SET pack = 888888 WHERE id = (SELECT MAX(id) FROM blobs)")
    packs = db.execute("SELECT name FROM packs ORDER BY id").fetchall()
    os.unlink(pack_path(root, packs[0][0]))
    os.truncate(pack_path(root, packs[1][0]), 10)
    problems = unit.check()
    expected = [f"chunk {gone.hex()[:16]} is referenced but missing",
                f"chunk {miscounted.hex()[:16]} has 3 references recorded, 1 real",
                f"chunk {'01' * 8} counts 1 references, has none",
                f"chunk {orphan.hex()[:16]} is in blob 999999, which is missing",
                "which is missing", f"pack file {packs[0][0]} is missing",
                f"pack file {packs[1][0]} is shorter than recorded"]
    for want in expected:
        assert any(want in p for p in problems), (want, problems)
    assert any(re.fullmatch(r"blob \d+ is in pack 888888, which is missing", p)
               for p in problems)
    db.execute("UPDATE chunks SET refs = refs + 5")        # every chunk miscounted
    monkeypatch.setattr("openxbsa.storage.dedup.CHECK_LISTED", 3)
    problems = unit.check()
    wrong = [p for p in problems if "references recorded" in p]
    assert len(wrong) == 3
    more = len(ids) - 1 - 3                 # every referenced chunk left, less those listed
    assert f"... and {more} more like the one above" in problems
    assert os.listdir(os.path.join(root, "pool", "tmp")) == []
    unit.close()


def test_pool_check_where_it_cannot_create_its_scratch_file(tmp_path):
    """An administrator who may read a pool but not write into it still gets a full check:
    the counting moves to SQLite's own temporary file. (The tests run as root, whom file
    modes do not stop, so the pool's tmp directory is made impossible to create in: a
    plain file stands where it should be.)"""
    root = str(tmp_path)
    unit = new_unit(root)
    store(unit, "host_1", [os.urandom(2 * MiB)])
    tmp = os.path.join(root, "pool", "tmp")
    os.rmdir(tmp)
    with open(tmp, "w"):
        pass
    assert unit.check() == []
    unit._db.execute("UPDATE chunks SET refs = refs + 1 WHERE id = (SELECT MIN(id) FROM chunks)")
    assert [p for p in unit.check() if "references recorded" in p]
    unit.close()


def test_pool_check_memory_does_not_grow_with_the_pool(tmp_path):
    """`pool check` counts references in a scratch database, not in memory: on an index
    of a quarter million chunk references (about 20 GiB of backups) its Python allocations
    stay within a few megabytes (counting them in dicts took about 70 MB)."""
    import tracemalloc
    root = str(tmp_path)
    unit = new_unit(root)
    store(unit, "host_1", [os.urandom(MiB)])
    db = unit._db
    blob = db.execute("SELECT MIN(id) FROM blobs").fetchone()[0]
    per_piece = 1 << 16
    db.execute("BEGIN")
    for obj in range(4):
        ids = [os.urandom(32) for _ in range(per_piece)]
        db.execute("INSERT INTO recipes(location, seq, size, ids) VALUES ('synthetic', ?, ?, ?)",
                   (obj, per_piece * 80_000, b"".join(ids)))
        db.executemany("INSERT INTO chunks(id, blob, off, len, refs) VALUES (?, ?, 0, 1, 1)",
                       [(cid, blob) for cid in ids])
        del ids
    db.execute("COMMIT")
    tracemalloc.start()
    try:
        problems = unit.check()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problems == []
    assert peak < 8 * MiB, peak
    unit.close()


def test_pool_check_reads_one_snapshot_of_the_index(tmp_path):
    """A backup committed while `pool check` runs (the server writing, the CLI checking)
    does not show as damage: the check reads the recipes and the chunks at one instant."""
    root = str(tmp_path)
    server = new_unit(root)                     # holds the pool and writes
    store(server, "host_1", [os.urandom(2 * MiB)])
    cli = new_unit(root)                        # only checks
    real = cli._check_snapshot

    class CommitMidway:
        """The check's connection; the server commits a backup once the check has read
        the first recipe piece and before it reads the chunks."""

        def __init__(self, db):
            self.db, self.done = db, False

        def __getattr__(self, name):
            return getattr(self.db, name)

        def executemany(self, *args):
            if not self.done:
                self.done = True
                store(server, "host_2", [os.urandom(2 * MiB)])  # new chunks and references
            return self.db.executemany(*args)

    def commit_in_between(db):
        proxy = CommitMidway(db)
        problems = real(proxy)
        assert proxy.done
        return problems

    cli._check_snapshot = commit_in_between
    assert cli.check() == []
    cli._check_snapshot = real
    assert cli.check() == [] and server.check() == []
    cli.close()
    server.close()


def test_index_rebuild_names_an_object_whose_chunks_are_gone(tmp_path):
    """The recipe record survives but a pack of the object's data does not: the rebuild
    reports the object as LOST for missing chunks and enters nothing of it (pool check
    stays clean, the restore fails clearly), while other images are recovered."""
    root = str(tmp_path)
    unit = new_unit(root)
    keep = os.urandom(MiB // 2)
    loc1, (obj1,), _ = store(unit, "host_1", [keep])
    before = set(pack_files(root))
    loc2, (obj2,), _ = store(unit, "host_2", [os.urandom(3 * MiB)])
    record = unit._db.execute("SELECT p.name FROM recipe_records r JOIN packs p "
                              "ON p.id = r.pack WHERE r.location = ?", (loc2,)).fetchone()[0]
    victims = [p for p in set(pack_files(root)) - before if record not in p]
    assert victims
    for path in victims:
        os.unlink(path)
    report = unit.rebuild_index({loc1: {0: (obj1.size, obj1.checksum)},
                                 loc2: {0: (obj2.size, obj2.checksum)}})
    assert report["objects"] == 1
    assert report["lost"] == [f"{loc2} object 0: chunks are missing"], report
    assert unit.recipe_size(loc2, 0) is None and unit.check() == []
    assert load(unit, loc1, obj1) == keep
    with pytest.raises(MediaReadError, match="no chunk list"):
        load(unit, loc2, obj2)
    unit.close()


def test_large_objects_recipes_are_kept_in_pieces_and_several_records(tmp_path, monkeypatch):
    """A recipe is stored in pieces of PART_IDS chunk IDs and sealed into records of about
    RECORD_TARGET bytes (both lowered here, so that a few MiB stand for terabytes): restore,
    verify, pool check, the index rebuild and deletion all see the whole object."""
    from openxbsa.storage import dedup

    monkeypatch.setattr(dedup, "PART_IDS", 7)
    monkeypatch.setattr(dedup, "RECORD_TARGET", 500)
    unit = new_unit(str(tmp_path))
    big, small = os.urandom(5 * MiB), os.urandom(100_000)
    loc, stored, _ = store(unit, "host_1", [big, b"", small])
    db = unit._db
    assert db.execute("SELECT COUNT(*) FROM recipe_parts").fetchone()[0] >= 5
    assert db.execute("SELECT COUNT(*) FROM recipe_records WHERE location = ?",
                      (loc,)).fetchone()[0] >= 5
    assert [load(unit, loc, s) for s in stored] == [big, b"", small]
    assert unit.verify_object(loc, stored[0]) is None and unit.check() == []
    catalog = {loc: {s.offset: (s.size, s.checksum) for s in stored}}
    report = unit.rebuild_index(catalog)
    assert report["objects"] == 3 and report["lost"] == [], report
    assert [load(unit, loc, s) for s in stored] == [big, b"", small]
    assert unit.check() == []
    unit.delete_image(loc)
    unit.collect()
    assert unit.usage()["chunks"] == 0 and pack_files(str(tmp_path)) == []
    assert unit._db.execute("SELECT COUNT(*) FROM recipe_parts").fetchone()[0] == 0
    unit.close()


def test_a_recipe_piece_that_was_altered_is_not_trusted(tmp_path, monkeypatch):
    """A piece of a recipe changed in the index (its order, here) no longer matches the
    catalog's checksum: restore and verify refuse the object instead of sending other data."""
    from openxbsa.storage import dedup

    monkeypatch.setattr(dedup, "PART_IDS", 5)
    unit = new_unit(str(tmp_path))
    data = os.urandom(3 * MiB)
    loc, (obj,), _ = store(unit, "host_1", [data])
    unit._db.execute("UPDATE recipe_parts SET part = 101 WHERE part = 1")     # swap 1 and 2
    unit._db.execute("UPDATE recipe_parts SET part = 1 WHERE part = 2")
    unit._db.execute("UPDATE recipe_parts SET part = 2 WHERE part = 101")
    with pytest.raises(MediaReadError, match="does not match the catalog"):
        load(unit, loc, obj)
    assert "does not match the catalog" in unit.verify_object(loc, obj)
    unit.close()


def test_writer_memory_does_not_grow_with_the_backup(tmp_path, monkeypatch):
    """What a writer remembers until commit (chunks seen, where they went, recipes) is
    kept in its scratch database: with 1 KiB chunks, 64 MiB (as many chunks as ~4 GiB of
    real data) and 128 MiB take the same Python memory (before, a writer held ~500 bytes
    per chunk: +50 MiB here), and the scratch file is gone after."""
    import tracemalloc

    from openxbsa.storage import dedup

    monkeypatch.setattr(dedup, "CHUNK_AVG", 1024)
    monkeypatch.setattr(dedup, "CHUNK_MIN", 256)
    monkeypatch.setattr(dedup, "CHUNK_MAX", 4096)
    monkeypatch.setattr(dedup, "PART_IDS", 4096)            # both runs: many pieces
    monkeypatch.setattr(dedup, "RECORD_TARGET", 256 << 10)  # and many records
    unit = new_unit(str(tmp_path))
    peaks = []
    for i, mib in enumerate((64, 128)):
        w = unit.open_writer(f"host_{i}")
        tracemalloc.start()
        w.begin_object()
        for _ in range(mib):
            w.write(os.urandom(MiB))                 # new chunks all the way
        w.end_object()
        w.commit()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert unit.usage()["chunks"] > 140_000
    assert peaks[1] < 1.15 * peaks[0] and peaks[1] < 24 * MiB, peaks
    assert os.listdir(os.path.join(str(tmp_path), "pool", "tmp")) == []
    unit.close()


def test_an_index_of_the_first_format_is_upgraded(tmp_path):
    """Pools made before recipes were kept in pieces (one recipe record per image, keyed by
    image): the index is upgraded in place on open and everything in it still restores."""
    unit = new_unit(str(tmp_path))
    data = os.urandom(2 * MiB)
    loc, (obj,), _ = store(unit, "host_1", [data])
    rows = unit._db.execute("SELECT location, pack, offset, stored FROM recipe_records").fetchall()
    unit.close()
    db = sqlite3.connect(os.path.join(str(tmp_path), "pool", "index.db"), isolation_level=None)
    db.executescript("""
        DROP TABLE recipe_records; DROP TABLE recipe_parts;
        CREATE TABLE recipe_records (location TEXT PRIMARY KEY,
            pack INTEGER NOT NULL REFERENCES packs(id), offset INTEGER NOT NULL,
            stored INTEGER NOT NULL);
        CREATE INDEX recipe_records_pack ON recipe_records(pack);
        PRAGMA user_version = 0;""")
    db.executemany("INSERT INTO recipe_records VALUES (?, ?, ?, ?)", rows)
    db.close()
    unit = new_unit(str(tmp_path))
    assert unit._db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert unit._db.execute("SELECT location, pack, offset, stored FROM recipe_records"
                            ).fetchall() == rows
    assert load(unit, loc, obj) == data and unit.check() == []
    loc2, (obj2,), _ = store(unit, "host_2", [data + b"more"])
    assert load(unit, loc2, obj2) == data + b"more"
    report = unit.rebuild_index({loc: {0: (obj.size, obj.checksum)},
                                 loc2: {0: (obj2.size, obj2.checksum)}})
    assert report["objects"] == 2, report
    unit.close()


def test_cross_image_dedup_observable_in_stored_bytes(dsrv):
    rng = random.Random(11)
    data = rng.randbytes(8 * MiB)
    changed = bytearray(data)
    changed[3 * MiB:3 * MiB + 4096] = rng.randbytes(4096)
    h = init(dsrv)
    d1 = backup(h, "/db/monday", data)
    d2 = backup(h, "/db/tuesday", bytes(changed))
    X.BSATerminate(h)
    images = {i["backupid"]: i for i in cli_json(dsrv, "images")}
    first, second = sorted(images.values(), key=lambda i: i["backup_time"])
    assert first["bytes_received"] == second["bytes_received"] == 8 * MiB
    assert first["bytes_after_dedup"] == 8 * MiB
    assert second["bytes_after_dedup"] < 600_000                    # only the changed chunks
    assert second["bytes_stored"] < 700_000
    assert second["dedup_rate"] > 90
    jobs = {j["backupid"]: j for j in cli_json(dsrv, "jobs") if j["type"] == "Backup"}
    assert jobs[second["backupid"]]["dedup_rate"] == second["dedup_rate"]
    log = dsrv.cli("jobs", "--log", str(jobs[second["backupid"]]["jobid"])).stdout
    assert "deduplication rate" in log
    (usage,) = cli_json(dsrv, "pool", "usage")
    assert usage["logical_bytes"] == 16 * MiB
    assert usage["stored_bytes"] < 9 * MiB                           # both images, ~one copy
    assert 1.8 < usage["dedup_ratio"] < 2.1
    text = dsrv.cli("pool", "usage").stdout
    assert "dedup ratio" in text and "pool" in text

    h = init(dsrv)
    assert restore(h, d1.copyId) == data
    assert restore(h, d2.copyId) == bytes(changed)
    X.BSATerminate(h)
    assert dsrv.cli("pool", "check").returncode == 0


def test_usage_of_an_empty_pool_reads_as_nothing_stored(tmp_path):
    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "openxbsa.cli.main", *args, "--home",
                              str(tmp_path / "home")], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    cli("stu", "add", "empty-pool", "--kind", "dedup", "--path", str(tmp_path / "e"))
    (usage,) = json.loads(cli("pool", "usage", "empty-pool", "--json"))
    assert usage["images"] == usage["logical_bytes"] == usage["stored_bytes"] == 0
    assert usage["dedup_ratio"] is None                 # JSON: null, not a made-up ratio
    text = cli("pool", "usage", "empty-pool")
    assert "dedup ratio -" in text and "compression -" in text and "space saved -" in text
    assert "None" not in text


def test_identical_data_from_two_clients_is_stored_once(tmp_path_factory):
    srv = dedup_server(tmp_path_factory, "[access]\nroot_sees_all_users = true\n")
    try:
        data = os.urandom(4 * MiB)
        h = init(srv)
        backup(h, "/a/file", data)
        X.BSATerminate(h)
        h = init(srv, owner=("other-app", "x"))
        backup(h, "/b/file", data)
        X.BSATerminate(h)
        (usage,) = cli_json(srv, "pool", "usage")
        assert usage["logical_bytes"] == 8 * MiB and usage["unique_bytes"] == 4 * MiB
    finally:
        srv.stop()


def backup_image(h: int, objects: list[tuple[str, bytes]]) -> list[X.BSA_ObjectDescriptor]:
    """One transaction (one image) holding these objects."""
    assert X.BSABeginTxn(h) == OK
    ds = []
    for path, data in objects:
        d = descriptor(path, len(data))
        assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
        send_all(h, data)
        assert X.BSAEndData(h) == OK
        ds.append(d)
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    return ds


def corrupt(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def test_pack_corruption_found_by_verify_and_by_restore(dsrv):
    rng = random.Random(3)
    one, two = rng.randbytes(3 * MiB), rng.randbytes(3 * MiB)
    h = init(dsrv)
    ds = backup_image(h, [("/v/one", one), ("/v/two", two), ("/v/one-again", one)])
    X.BSATerminate(h)
    (image,) = cli_json(dsrv, "images")
    assert dsrv.cli("verify", "--backupid", image["backupid"]).returncode == 0
    # find, from the pool's index, a blob that only the second object uses
    db = sqlite3.connect(os.path.join(dsrv.home, "pool", "index.db"))
    recipes = {seq: bytes(ids) for seq, ids in db.execute("SELECT seq, ids FROM recipes")}
    def blobs_of(ids: bytes) -> set[int]:
        out = set()
        for i in range(0, len(ids), 32):
            out |= {r[0] for r in db.execute("SELECT blob FROM chunks WHERE id = ?", (ids[i:i + 32],))}
        return out
    by_seq = {seq: blobs_of(ids) for seq, ids in recipes.items()}
    seqs = sorted(by_seq)
    only_two = by_seq[seqs[1]] - by_seq[seqs[0]] - by_seq[seqs[2]]
    blob = sorted(only_two)[0]
    name, offset, stored = db.execute("SELECT p.name, b.offset, b.stored FROM blobs b JOIN packs p "
                                      "ON p.id = b.pack WHERE b.id = ?", (blob,)).fetchone()
    db.close()
    pack = pack_path(dsrv.home, name)
    corrupt(pack, offset + stored - 100)                       # inside the ciphertext
    out = dsrv.cli("verify", "--backupid", image["backupid"], "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    damaged = {o["path"] for o in report["objects"] if not o["ok"]}
    assert damaged == {"/v/two"}                              # exactly the damaged object
    problem = next(o["problem"] for o in report["objects"] if not o["ok"])
    assert "authentication failed" in problem and name in problem
    assert report["status"] == 85
    job = [j for j in cli_json(dsrv, "jobs") if j["jobid"] == report["job"]][0]
    assert job["type"] == "Verify" and job["status"] == 85
    h = init(dsrv)
    assert restore(h, ds[0].copyId) == one
    assert restore(h, ds[2].copyId) == one
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=ds[1].copyId), X.BSA_DataBlock32()) == OK
    buf = bytearray(65536)
    rc = OK
    while rc == OK:
        rc = X.BSAGetData(h, X.BSA_DataBlock32(65536, 0, 0, 0, 0, buf))
    assert rc == X.BSA_RC_ABORT_SYSTEM_ERROR
    rc, msg = X.BSAGetLastError()
    assert "authentication failed" in msg and "damaged" in msg
    X.BSATerminate(h)


@pytest.mark.parametrize("lookahead", [128, 2])
def test_a_chunk_that_does_not_match_its_id_is_refused(tmp_path, monkeypatch, lookahead):
    """A blob that authenticates but whose bytes do not hash to the chunk IDs it claims
    (a bug, or a forger holding the key) is refused by restore and by verify. The third
    chunk is damaged: with the usual lookahead it is checked with its blob's decode, with
    a lookahead of 2 it is planned after its blob was decoded and checked on its own."""
    from openxbsa.storage import dedup
    from openxbsa.storage.dedup import FLAG_FRAMES, FLAG_SEALED

    monkeypatch.setattr(dedup, "LOOKAHEAD", lookahead)

    root = str(tmp_path)
    unit = new_unit(root)
    data = os.urandom(2 * MiB)                             # incompressible: stored raw
    loc, stored, _ = store(unit, "host_1", [data])

    def damage_third(flags, entries, raw):
        assert flags == FLAG_FRAMES | FLAG_SEALED and len(entries) > 3
        assert all(n == unit for _cid, n, unit in entries)    # incompressible: stored raw
        third = sum(n for _cid, n, _stored in entries[:2])
        raw[third + 10] ^= 1                               # the content changes, IDs do not

    reseal_first_blob(root, unit, damage_third)
    with pytest.raises(MediaReadError, match="does not match its ID"):
        load(unit, loc, stored[0])
    assert "does not match its ID" in unit.verify_object(loc, stored[0])
    unit.close()


@pytest.mark.parametrize("short, bound", [(False, None), (True, None), (True, 3)])
def test_a_restore_forgets_checked_chunks_beyond_its_bound_and_checks_them_again(
        tmp_path, monkeypatch, short, bound):
    """A reader remembers which chunk IDs it has checked, so that data met again (a dump
    repeating itself) is not hashed twice: not when it is planned twice with one decode
    of its blob (the usual lookahead covers this whole object), nor when its blob has left
    the reader's cache and is decoded anew (``short``: a short lookahead and a cache of
    one blob); past CHECKED_IDS
    it forgets them, so a restore of any size holds a bounded set, and checks what it
    meets again. Either way the restore is byte-exact."""
    from openxbsa.storage import dedup

    if short:
        monkeypatch.setattr(dedup, "LOOKAHEAD", 8)
        monkeypatch.setattr(dedup, "CACHED_BLOBS", 1)
    if bound is not None:
        monkeypatch.setattr(dedup, "CHECKED_IDS", bound)
    checks: list[bytes] = []
    real = dedup.check_chunk

    def counting(data, cid, id_key, where):
        checks.append(cid)
        real(data, cid, id_key, where)

    monkeypatch.setattr(dedup, "check_chunk", counting)
    unit = new_unit(str(tmp_path))
    rng = random.Random(7)
    blocks = [rng.randbytes(MiB) for _ in range(4)]
    data = b"".join(blocks[i % 4] for i in range(16))          # each block four times
    loc, stored, _ = store(unit, "host_1", [data])
    assert load(unit, loc, stored[0]) == data
    distinct = len(set(checks))
    assert distinct > 8                                        # several chunks per block
    if bound is None:
        assert len(checks) == distinct                         # each checked once
    else:
        assert len(checks) > distinct                          # met again after forgetting
    unit.close()


class CountingDecompressor:
    """zstandard's decompressor, counting the bytes it produces (wraps the real one)."""

    produced = 0

    def __init__(self, *args, **kwargs) -> None:
        self._d = _REAL_ZSTD_DECOMPRESSOR(*args, **kwargs)

    def decompress(self, data, **kwargs):
        out = self._d.decompress(data, **kwargs)
        CountingDecompressor.produced += len(out)
        return out


_REAL_ZSTD_DECOMPRESSOR = zstandard.ZstdDecompressor


def test_a_restore_holds_only_the_blobs_it_caches(tmp_path):
    """A long restore's memory stays bounded by its blob cache, without relying on Python's
    cyclic collector (which may run rarely, or never, in a busy server): the blobs a reader
    has moved past are freed as soon as it drops them. A reference cycle between a blob and
    its reading function once let a 1 GiB restore's server grow from 180 to 600 MB."""
    import gc

    from openxbsa.storage import dedup

    unit = new_unit(str(tmp_path))
    data = os.urandom(128 * MiB)              # incompressible: about 128 blobs of 1 MiB
    loc, st, _ = store(unit, "b1", [data], pieces=[MiB])

    def live_blobs() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is dedup._Blob)

    gc.collect()
    gc.disable()
    try:
        r = unit.open_reader(loc, st[0])
        got = 0
        try:
            while got < 96 * MiB:
                got += len(r.read(MiB))
            in_use = live_blobs()
        finally:
            r.close()
        after = live_blobs()
    finally:
        gc.enable()
    assert in_use <= dedup.CACHED_BLOBS + 2 * dedup.DECODERS + 4, in_use
    assert after == 0, after


def test_a_restore_reads_and_decodes_only_the_chunks_it_uses(tmp_path, monkeypatch):
    """Each chunk is compressed as a zstd frame of its own and sealed on its own: yesterday's
    dump with a few pages changed today is restored by reading, decrypting and decoding the
    chunks it uses, not every blob that holds one of them (a daily restore used to decode
    2.4x the bytes it returned, and then to read and decrypt 2.2x what it needed)."""
    from openxbsa.storage import dedup
    from openxbsa.storage.dedup import BLOB_HEAD, FLAG_FRAMES, FLAG_SEALED

    root = str(tmp_path)
    unit = new_unit(root)
    rng = random.Random(11)
    day1 = text_like(rng, 6 * MiB)
    loc1, st1, stats1 = store(unit, "host_1", [day1], [MiB])
    assert stats1["stored"] < len(day1) / 2                   # compressed
    pack, offset, size = _first_blob(root)
    with open(pack, "rb") as f:
        f.seek(offset)
        assert BLOB_HEAD.unpack_from(f.read(size))[1] == FLAG_FRAMES | FLAG_SEALED
    # day 2: three chunks in four changed (a byte in the middle: the cut points stay), so
    # the unchanged quarter of day 2 lies in every one of day 1's blobs
    day2 = bytearray(day1)
    pos = 0
    for i, (_cid, _blob, _off, length) in enumerate(unit._chunk_refs(loc1, st1[0].offset)):
        if i % 4:
            day2[pos + length // 2] ^= 0x20
        pos += length
    day2 = bytes(day2)
    loc2, st2, stats2 = store(unit, "host_2", [day2], [MiB])
    assert 0.6 * len(day2) < stats2["after_dedup"] < 0.9 * len(day2)
    monkeypatch.setattr(dedup.zstandard, "ZstdDecompressor", CountingDecompressor)
    CountingDecompressor.produced = 0
    read = []                                       # bytes read from the packs
    real_pread, real_into = DedupStorageUnit._pread, DedupStorageUnit._pread_into
    monkeypatch.setattr(DedupStorageUnit, "_pread",
                        lambda self, fd, n, offset, where: read.append(n) or
                        real_pread(self, fd, n, offset, where))
    monkeypatch.setattr(DedupStorageUnit, "_pread_into",
                        staticmethod(lambda fd, buf, offset, where: read.append(len(buf)) or
                                     real_into(fd, buf, offset, where)))
    assert load(unit, loc2, st2[0]) == day2
    # each chunk decoded once: whole-blob decoding would also have produced the three
    # quarters of day 1 that day 2 does not use
    assert len(day2) <= CountingDecompressor.produced < 1.2 * len(day2)
    # and read once: day 2's own blobs and a quarter of day 1's (reading day 1's blobs
    # whole would be all of both), with each blob's header and chunk table
    assert stats2["stored"] + 0.2 * stats1["stored"] < sum(read) \
        < stats2["stored"] + 0.45 * stats1["stored"]
    assert unit.verify_object(loc2, st2[0]) is None
    unit.close()


def test_a_damaged_compressed_chunk_is_refused(tmp_path):
    """A chunk's zstd frame altered inside a blob that still authenticates (a bug, or a
    forger holding the key): restore and verify refuse it and say why; the chunks before
    it in the same blob still decode."""
    from openxbsa.storage.dedup import FLAG_FRAMES, FLAG_SEALED

    root = str(tmp_path)
    unit = new_unit(root)
    data = text_like(random.Random(3), 3 * MiB)
    loc, stored, _ = store(unit, "host_1", [data])

    def damage_third_frame(flags, entries, payload):
        assert flags == FLAG_FRAMES | FLAG_SEALED and len(entries) > 3
        third = sum(st for _cid, _n, st in entries[:2])
        assert entries[2][2] < entries[2][1]               # a zstd frame
        payload[third + entries[2][2] // 2] ^= 0xFF

    reseal_first_blob(root, unit, damage_third_frame)
    with pytest.raises(MediaReadError, match="decompression failed|does not match its ID|wrong size"):
        load(unit, loc, stored[0])
    problem = unit.verify_object(loc, stored[0])
    assert problem and re.search("decompression failed|does not match its ID|wrong size", problem)
    unit.close()


def _joined(raw):
    """A blob's bytes, whether the writer passes them whole or as a view per chunk."""
    return memoryview(b"".join(raw)) if isinstance(raw, list) else raw


def _seal_whole(self, raw, items, compress, magic=None):
    """How the first versions sealed a blob: compressed whole (FLAG_ZSTD), one record."""
    from openxbsa.storage.dedup import BLOB_HEAD, BLOB_MAGIC, FLAG_ZSTD, TABLE_ENTRY
    raw = _joined(raw)
    flags, payload = 0, bytes(raw)
    if compress:
        packed = zstandard.ZstdCompressor(level=1).compress(raw)
        if len(packed) < len(raw):
            flags, payload = FLAG_ZSTD, packed
    table = b"".join(TABLE_ENTRY.pack(cid, n) for cid, n in items)
    nonce = os.urandom(12)
    aad = BLOB_HEAD.pack(magic or BLOB_MAGIC, flags, nonce, len(items), len(raw),
                         len(payload) + 16) + table
    return aad, memoryview(self.aead.encrypt(nonce, payload, aad))


def _seal_frames(self, raw, items, compress, magic=None):
    """How pools of format 1 sealed a blob last: a zstd frame per chunk (FLAG_FRAMES), the
    frames encrypted together as one record."""
    from openxbsa.storage.dedup import BLOB_HEAD, BLOB_MAGIC, FLAG_FRAMES, FRAME_ENTRY
    raw = _joined(raw)
    units, rows, off = [], [], 0
    for cid, n in items:
        packed = zstandard.ZstdCompressor(level=1).compress(raw[off:off + n]) if compress else b""
        unit = packed if compress and len(packed) < n else bytes(raw[off:off + n])
        units.append(unit)
        rows.append(FRAME_ENTRY.pack(cid, n, len(unit)))
        off += n
    payload = b"".join(units)
    nonce = os.urandom(12)
    aad = BLOB_HEAD.pack(magic or BLOB_MAGIC, FLAG_FRAMES if items else 0, nonce, len(items),
                         len(raw), len(payload) + 16) + b"".join(rows)
    return aad, memoryview(self.aead.encrypt(nonce, payload, aad))


@pytest.mark.parametrize("legacy", ["whole", "frames"])
def test_blobs_of_earlier_versions_still_restore(tmp_path, monkeypatch, legacy):
    """Pools written by earlier versions hold blobs compressed as a whole (FLAG_ZSTD) or a
    frame per chunk encrypted together (FLAG_FRAMES), in a pool of format 1: they restore,
    verify, rebuild and repack (then in the new form) as before; the pool is upgraded to
    the current format when it is opened; a pool of a format yet unknown is refused."""
    from openxbsa.storage import dedup
    from openxbsa.storage.dedup import FLAG_FRAMES, FLAG_SEALED, FLAG_ZSTD

    root = str(tmp_path)
    rng = random.Random(8)
    old_data, new_data = text_like(rng, 3 * MiB), text_like(rng, 2 * MiB)
    with monkeypatch.context() as m:
        m.setattr(dedup._SealContext, "seal", _seal_whole if legacy == "whole" else _seal_frames)
        unit = new_unit(root)
        loc1, st1, _ = store(unit, "host_1", [old_data])
        unit.close()
    assert blob_flags(root) == {FLAG_ZSTD if legacy == "whole" else FLAG_FRAMES}
    meta_path = os.path.join(root, "pool", "pool.json")
    with open(meta_path) as f:
        meta = json.load(f)
    with open(meta_path, "w") as f:
        json.dump(dict(meta, format=1), f)
    unit = new_unit(root)
    with open(meta_path) as f:
        assert json.load(f)["format"] == dedup.FORMAT == 2
    loc2, st2, _ = store(unit, "host_2", [old_data[MiB:] + new_data])   # shares old chunks
    assert blob_flags(root) == {FLAG_ZSTD if legacy == "whole" else FLAG_FRAMES,
                                FLAG_FRAMES | FLAG_SEALED}
    assert load(unit, loc1, st1[0]) == old_data
    assert load(unit, loc2, st2[0]) == old_data[MiB:] + new_data
    assert unit.verify_object(loc1, st1[0]) is None
    assert unit.verify_object(loc2, st2[0]) is None
    unit.delete_image(loc1)
    monkeypatch.setattr(dedup, "REPACK_BELOW", 1.01)        # every pack repacked and every
    monkeypatch.setattr(dedup, "REWRITE_BELOW", 1.01)       # blob in it sealed anew
    assert unit.collect()["packs_repacked"] >= 1
    assert blob_flags(root) == {FLAG_FRAMES | FLAG_SEALED}   # the old blobs rewritten
    assert load(unit, loc2, st2[0]) == old_data[MiB:] + new_data
    assert unit.check() == []
    report = unit.rebuild_index({loc2: {st2[0].offset: (st2[0].size, st2[0].checksum)}})
    assert report["objects"] == 1 and not report["lost"], report
    assert load(unit, loc2, st2[0]) == old_data[MiB:] + new_data
    unit.close()
    with open(meta_path) as f:
        meta = json.load(f)
    with open(meta_path, "w") as f:
        json.dump(dict(meta, format=3), f)
    with pytest.raises(MediaReadError, match="pool format 3 is not one this version reads"):
        new_unit(root)


def test_truncated_pack_and_missing_key_give_clear_errors(dsrv):
    data = os.urandom(2 * MiB)
    h = init(dsrv)
    d = backup(h, "/t/file", data)
    X.BSATerminate(h)
    (image,) = cli_json(dsrv, "images")
    for pack in pack_files(dsrv.home):                  # one or two (one per sealer)
        os.truncate(pack, os.path.getsize(pack) // 2)
    report = json.loads(dsrv.cli("verify", "--backupid", image["backupid"], "--json").stdout)
    assert "truncated" in report["objects"][0]["problem"]
    check = dsrv.cli("pool", "check")
    assert check.returncode == 1 and "shorter than recorded" in check.stdout
    h = init(dsrv)
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == OK
    rc = OK
    while rc == OK:
        rc = X.BSAGetData(h, X.BSA_DataBlock32(65536, 0, 0, 0, 0, bytearray(65536)))
    assert rc == X.BSA_RC_ABORT_SYSTEM_ERROR and "truncated" in X.BSAGetLastError()[1]
    X.BSATerminate(h)
    dsrv.stop()
    key = os.path.join(dsrv.home, "keys", "pool.key")
    os.rename(key, key + ".away")
    out = dsrv.cli("pool", "usage")
    assert out.returncode != 0 and "pool.key is missing" in out.stderr
    with open(key, "w") as f:
        f.write(os.urandom(32).hex())                             # another pool's key
    out = dsrv.cli("pool", "usage")
    assert out.returncode != 0 and "does not open the dedup pool" in out.stderr


# ---------------------------------------------------------------------------- garbage collection
def test_gc_frees_space_of_deleted_images_and_repacks(tmp_path):
    root = str(tmp_path)
    unit = new_unit(root)
    rng = random.Random(8)
    keep, drop = rng.randbytes(3 * MiB), rng.randbytes(12 * MiB)
    loc, stored, _ = store(unit, "host_1", [drop, keep])
    loc2, stored2, _ = store(unit, "host_2", [keep])      # shares every chunk of `keep`
    before = unit.usage()["stored_bytes"]
    unit.release(loc, stored[0])                          # delete the big object only
    assert unit.usage()["garbage_bytes"] == 12 * MiB
    result = unit.collect()
    assert result["chunks"] > 0 and result["packs_repacked"] >= 1   # one pack per sealer
    after = unit.usage()
    assert after["garbage_bytes"] == 0 and after["stored_bytes"] < before - 11 * MiB
    assert load(unit, loc, stored[1]) == keep and load(unit, loc2, stored2[0]) == keep
    unit.delete_image(loc)
    unit.collect()
    assert load(unit, loc2, stored2[0]) == keep           # still referenced by host_2
    unit.delete_image(loc2)
    unit.collect()
    assert unit.usage()["chunks"] == 0 and pack_files(root) == []
    assert unit.check() == []
    unit.close()


def test_gc_reclaims_the_dead_part_of_blobs_still_in_use(tmp_path):
    """Blobs hold chunks of several objects. When most of a blob's chunks are dead, the
    repack rewrites it with the live ones only (a daily dump's old blobs are mostly dead
    but rarely all dead); while a reader is open the rewrite waits, and nothing it reads
    moves under it."""
    root = str(tmp_path)
    unit = new_unit(root)
    rng = random.Random(21)
    keep = [rng.randbytes(150_000) for _ in range(40)]
    drop = [rng.randbytes(450_000) for _ in range(40)]
    objects = [o for pair in zip(keep, drop) for o in pair]      # interleaved in the blobs
    loc_a, stored_a, _ = store(unit, "host_1", objects)
    loc_b, stored_b, _ = store(unit, "host_2", keep)            # shares the `keep` chunks
    before = unit.usage()["stored_bytes"]
    assert before > 0.95 * sum(map(len, objects))
    reader = unit.open_reader(loc_b, stored_b[3])
    assert reader.read(1000) == keep[3][:1000]
    unit.delete_image(loc_a)
    unit.collect()                                   # a reader is open: nothing rewritten
    assert unit.usage()["stored_bytes"] > 0.9 * before
    assert reader.read(len(keep[3])) == keep[3][1000:]
    reader.close()
    unit.collect()                                   # now the mostly dead blobs go
    after = unit.usage()
    assert after["stored_bytes"] < 0.4 * before, (before, after)
    assert after["stored_bytes"] >= sum(map(len, keep)) * 0.95
    assert unit.check() == []
    for s, data in zip(stored_b, keep):
        assert load(unit, loc_b, s) == data
        assert unit.verify_object(loc_b, s) is None
    unit.close()


def test_blobs_no_chunk_refers_to_are_collected(tmp_path):
    """Pools written before concurrent duplicates were handled at commit may hold blobs no
    chunk refers to (made here by hand in the index); collection removes them and their
    packs instead of keeping them forever."""
    root = str(tmp_path)
    unit = new_unit(root)
    loc_a, _stored_a, _ = store(unit, "host_1", [os.urandom(3 * MiB)])
    loc_b, stored_b, _ = store(unit, "host_2", [os.urandom(3 * MiB)])
    with unit._lock:
        unit._db.execute("INSERT INTO blobs(pack, offset, stored, raw) SELECT pack, offset, "
                         "stored, raw FROM blobs ORDER BY id LIMIT 1")   # a chunkless copy
    unit.delete_image(loc_a)
    unit.collect()
    with unit._lock:
        orphans = unit._db.execute("SELECT COUNT(*) FROM blobs b WHERE NOT EXISTS "
                                   "(SELECT 1 FROM chunks WHERE blob = b.id)").fetchone()[0]
    assert orphans == 0
    usage = unit.usage()
    assert usage["stored_bytes"] < 3.3 * MiB and unit.check() == []
    assert len(pack_files(root)) == usage["packs"]
    assert load(unit, loc_b, stored_b[0]) is not None
    unit.close()


def test_gc_racing_a_backup_of_the_same_data(tmp_path):
    """A backup deduplicating against an image that is deleted and collected meanwhile
    must still commit a complete, restorable image."""
    unit = new_unit(str(tmp_path))
    rng = random.Random(9)
    data = rng.randbytes(24 * MiB)
    old_loc, _old, _ = store(unit, "host_1", [data])
    w = unit.open_writer("host_2")
    w.begin_object()
    half = 12 * MiB
    for i in range(0, half, MiB):
        w.write(data[i:i + MiB])
    time.sleep(0.2)                                    # let the cutter look up the first half
    unit.delete_image(old_loc)                         # the old image goes away ...
    unit.collect()                                     # ... and its chunks are collected,
    for i in range(half, len(data), MiB):              # except those the backup pinned
        w.write(data[i:i + MiB])
    stored = w.end_object()
    w.commit()
    unit.collect()
    assert load(unit, w.location, stored) == data
    assert unit.check() == []
    unit.close()


def test_chunks_pinned_by_an_aborted_backup_are_collected_later(tmp_path):
    root = str(tmp_path)
    unit = new_unit(root)
    data = os.urandom(6 * MiB)
    loc, _stored, _ = store(unit, "host_1", [data])
    w = unit.open_writer("host_2")
    w.begin_object()
    w.write(data)
    w.end_object()                                   # every chunk found, and pinned
    unit.delete_image(loc)
    assert unit.collect()["chunks"] == 0             # pinned: kept
    w.abort()
    assert unit.collect()["chunks"] > 0              # no longer pinned: collected
    assert unit.usage()["chunks"] == 0 and pack_files(root) == []
    assert unit.collect() == {"chunks": 0, "packs_removed": 0, "packs_repacked": 0}
    unit.close()


def test_gc_in_a_loop_while_backups_run(tmp_path):
    unit = new_unit(str(tmp_path))
    rng = random.Random(10)
    blocks = [rng.randbytes(MiB) for _ in range(12)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def collector() -> None:
        while not stop.is_set():
            try:
                unit.collect()
            except BaseException as exc:       # noqa: BLE001 - reported by the test
                errors.append(exc)
            time.sleep(0.005)

    gc = threading.Thread(target=collector)
    gc.start()
    images = []
    try:
        for n in range(8):
            data = b"".join(rng.choice(blocks) for _ in range(10))
            loc, stored, _ = store(unit, f"host_{n}", [data], [300_000])
            images.append((loc, stored[0], data))
            if n % 2:                         # drop an older image while backups go on
                old = images.pop(0)
                unit.delete_image(old[0])
    finally:
        stop.set()
        gc.join()
    assert not errors
    unit.collect()
    for loc, stored, data in images:
        assert load(unit, loc, stored) == data
    assert unit.check() == []
    unit.close()


def test_concurrent_backups_into_one_pool(tmp_path):
    """Four backups at once, sharing much of their data: every image restores, the chunks
    they both stored are counted right, and a reader stopped early cleans up."""
    unit = new_unit(str(tmp_path))
    rng = random.Random(12)
    common = rng.randbytes(4 * MiB)
    datas = [common + rng.randbytes(2 * MiB) + common[:MiB] for _ in range(4)]
    results: dict[int, tuple[str, StoredObject]] = {}
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            loc, stored, _ = store(unit, f"host_{n}", [datas[n]], [200_000 + n])
            results[n] = (loc, stored[0])
        except BaseException as exc:          # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for n, (loc, stored) in results.items():
        assert load(unit, loc, stored) == datas[n]
    assert unit.check() == []
    usage = unit.usage()
    assert usage["logical_bytes"] == sum(len(d) for d in datas)
    assert usage["unique_bytes"] < 4 * MiB + 4 * 2 * MiB + MiB      # common part once
    loc, stored = results[0]
    reader = unit.open_reader(loc, stored)
    assert len(reader.read(100_000)) == 100_000
    reader.close()                                                 # stops its threads
    assert not reader._thread.is_alive()
    for loc, _stored in results.values():
        unit.delete_image(loc)
    unit.collect()
    assert unit.usage()["chunks"] == 0 and unit.check() == []
    unit.close()


def test_same_new_data_from_two_backups_at_once_is_kept_once(tmp_path):
    """Two backups store the same new data at the same time (neither saw the other's
    chunks in the pool): the first to commit keeps its copy, the second's copy is not
    recorded and its packs are collected; both restore, the pool holds the data once."""
    unit = new_unit(str(tmp_path))
    data = os.urandom(6 * MiB)
    writers = [unit.open_writer(f"host_{n}") for n in range(2)]
    for w in writers:
        w.begin_object()
        w.write(data)
    stored = [w.end_object() for w in writers]
    for w in writers:
        w.commit()
    first, second = (w.stats() for w in writers)
    assert first["after_dedup"] == len(data) and second["after_dedup"] == 0
    assert unit.usage()["unique_bytes"] == len(data)
    unit.collect()
    usage = unit.usage()
    assert usage["stored_bytes"] < 1.05 * len(data)            # one copy on disk, not two
    assert pack_files(str(tmp_path)) and unit.check() == []
    for w, s in zip(writers, stored):
        assert load(unit, w.location, s) == data
    unit.delete_image(writers[0].location)                     # the copy's owner goes
    unit.collect()
    assert load(unit, writers[1].location, stored[1]) == data  # the other still restores
    unit.delete_image(writers[1].location)
    unit.collect()
    assert unit.usage()["chunks"] == 0 and pack_files(str(tmp_path)) == []
    unit.close()


def test_expired_image_space_is_collected_by_the_server(tmp_path_factory):
    srv = dedup_server(tmp_path_factory, "[scheduler]\ninterval = 0.2\n")
    try:
        h = init(srv)
        backup(h, "/exp/a", os.urandom(3 * MiB))
        d = backup(h, "/exp/b", b"kept" * 100000)
        X.BSATerminate(h)
        first = sorted(cli_json(srv, "images"), key=lambda i: i["backup_time"])[0]
        assert srv.cli("expire", "--backupid", first["backupid"], "-d", "0").returncode == 0
        deadline = time.time() + 20
        while time.time() < deadline:
            (usage,) = cli_json(srv, "pool", "usage")
            if usage["images"] == 1 and usage["garbage_bytes"] == 0 and \
                    usage["stored_bytes"] < MiB:
                break
            time.sleep(0.2)
        assert usage["images"] == 1 and usage["stored_bytes"] < MiB
        h = init(srv)
        assert restore(h, d.copyId) == b"kept" * 100000
        X.BSATerminate(h)
    finally:
        srv.stop()


# ---------------------------------------------------------------------------- crashes
def wait_marker(marker: str) -> None:
    deadline = time.time() + 30
    while not os.path.exists(marker) and time.time() < deadline:
        time.sleep(0.02)
    assert os.path.exists(marker), "the server never reached the crash point"


def assert_pool_consistent(srv: ServerProc) -> None:
    out = srv.cli("pool", "check")
    assert out.returncode == 0, out.stdout
    db = sqlite3.connect(os.path.join(srv.home, "pool", "index.db"))
    known = {r[0] for r in db.execute("SELECT name FROM packs")}
    db.close()
    on_disk = {os.path.basename(p)[:-5] for p in pack_files(srv.home)}
    assert on_disk == known                                 # no orphaned pack files


def committed_baseline(srv: ServerProc, size: int) -> tuple[X.BSA_ObjectDescriptor, bytes]:
    data = os.urandom(size)
    h = init(srv)
    kept = backup(h, "/crash/kept", data)
    X.BSATerminate(h)
    return kept, data


@pytest.mark.parametrize("point", ["dedup:packs_durable", "dedup:index_before_commit",
                                   "commit:before_catalog"])
def test_server_killed_while_committing_to_the_pool(tmp_path_factory, point):
    srv = dedup_server(tmp_path_factory)
    try:
        kept, base = committed_baseline(srv, 3 * MiB)
        srv.stop()
        marker = os.path.join(srv.home, "fault.reached")
        srv.start({"OPENXBSA_FAULT": point, "OPENXBSA_FAULT_FILE": marker})
        h = init(srv)
        assert X.BSABeginTxn(h) == OK
        payload = base[:MiB] + os.urandom(2 * MiB)           # shares chunks with the kept one
        assert X.BSACreateObject(h, descriptor("/crash/lost", len(payload)), X.BSA_DataBlock32()) == OK
        send_all(h, payload)
        assert X.BSAEndData(h) == OK
        result: list[int] = []
        t = threading.Thread(target=lambda: result.append(X.BSAEndTxn(h, X.BSA_Vote_COMMIT)))
        t.start()
        wait_marker(marker)
        srv.kill()
        t.join(30)
        assert result == [X.BSA_RC_ABORT_SYSTEM_ERROR]     # the outcome is not known to it
        X.BSATerminate(h)
        srv.start()
        h = init(srv)
        assert restore(h, kept.copyId) == base
        assert find(h, query("/crash/lost"))[0] == X.BSA_RC_NO_MATCH     # nothing half-visible
        X.BSATerminate(h)
        assert_pool_consistent(srv)
        (usage,) = cli_json(srv, "pool", "usage")
        assert usage["images"] == 1 and usage["garbage_bytes"] == 0
    finally:
        srv.stop()


def test_server_killed_mid_stream_leaves_no_pack_behind(tmp_path_factory):
    srv = dedup_server(tmp_path_factory)
    try:
        kept, base = committed_baseline(srv, 2 * MiB)
        committed = pack_files(srv.home)
        h = init(srv)
        assert X.BSABeginTxn(h) == OK
        assert X.BSACreateObject(h, descriptor("/crash/mid", 64 * MiB), X.BSA_DataBlock32()) == OK
        send_all(h, os.urandom(40 * MiB))                     # packs written, not committed
        time.sleep(0.5)
        assert len(pack_files(srv.home)) > len(committed)
        scratch = os.path.join(srv.home, "pool", "tmp")
        assert len(os.listdir(scratch)) == 1                  # the writer's working set
        srv.kill()
        X.BSATerminate(h)
        assert restored_after_start(srv, kept.copyId) == [base]
        assert_pool_consistent(srv)
        assert pack_files(srv.home) == committed
        assert os.listdir(scratch) == []                      # swept at start-up
    finally:
        srv.stop()


@pytest.mark.parametrize("point", ["dedup:repack_copied", "dedup:gc_before_unlink"])
def test_server_killed_during_garbage_collection(tmp_path_factory, point):
    home_settings = "[scheduler]\ninterval = 0.2\n"
    srv = dedup_server(tmp_path_factory, home_settings)
    try:
        # small objects to keep between large ones to delete: the blobs holding them are
        # mostly dead, so the repack rewrites them (and copies the rest as sealed)
        keep = [os.urandom(100_000) for _ in range(12)]
        drop = [os.urandom(400_000) for _ in range(12)]
        objects = [(f"/gc/{kind}{i}", data) for i in range(12)
                   for kind, data in (("keep", keep[i]), ("drop", drop[i]))]
        h = init(srv)
        ds = backup_image(h, objects)
        X.BSATerminate(h)
        srv.stop()
        marker = os.path.join(srv.home, "fault.reached")
        srv.start({"OPENXBSA_FAULT": point, "OPENXBSA_FAULT_FILE": marker})
        h = init(srv)
        assert X.BSABeginTxn(h) == OK
        for d in ds[1::2]:
            assert X.BSADeleteObject(h, d.copyId) == OK      # most of the pack is garbage now
        assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
        X.BSATerminate(h)
        wait_marker(marker)                                   # the server's GC reached it
        srv.kill()
        assert restored_after_start(srv, *(d.copyId for d in ds[0::2])) == keep
        assert_pool_consistent(srv)
        (usage,) = cli_json(srv, "pool", "usage")
        assert usage["objects"] == 12
        deadline = time.monotonic() + 20             # the restarted server finishes the job
        while usage["stored_bytes"] > 0.5 * sum(map(len, keep + drop)):
            assert time.monotonic() < deadline, usage
            time.sleep(0.2)
            (usage,) = cli_json(srv, "pool", "usage")
        assert_pool_consistent(srv)
        srv.stop()                          # the repack moved the image's recipe record too
        os.unlink(os.path.join(srv.home, "pool", "index.db"))
        out = srv.cli("pool", "rebuild-index", "pool")
        assert out.returncode == 0 and "12 objects recovered" in out.stdout, out.stdout
    finally:
        srv.stop()


# ---------------------------------------------------------------------------- misuse
def test_misuse_of_the_pool_is_refused_clearly(tmp_path):
    unit = new_unit(str(tmp_path))
    loc, stored, _ = store(unit, "host_1", [b"x" * 100000])
    with pytest.raises(MediaReadError, match="no chunk list"):
        unit.open_reader(loc, StoredObject(5, 10, "0" * 64))
    with pytest.raises(MediaReadError, match="does not match the catalog"):
        unit.open_reader(loc, StoredObject(stored[0].offset, stored[0].size, "0" * 64))
    w = unit.open_writer("host_2")
    w.begin_object()
    w.write(b"abc")
    with pytest.raises(MediaWriteError, match="object still open"):
        w.commit()
    w.abort()
    other = DedupStorageUnit("pool", os.path.join(str(tmp_path), "pool"),
                             key_dir=os.path.join(str(tmp_path), "keys"))
    with pytest.raises(MediaWriteError, match="in use by another"):
        other.open_writer("host_3")                       # one writing server per pool
    assert load(other, loc, stored[0]) == b"x" * 100000   # reading is fine
    other.close()
    unit.close()


def test_failures_inside_the_pipeline_are_reported_not_hung(tmp_path):
    """A cutter failure (the index breaks) and a sealer failure (packs cannot be created)
    surface as MediaWriteError from the writer; nothing waits forever; abort cleans up."""
    root = str(tmp_path)
    unit = new_unit(root)
    store(unit, "host_1", [os.urandom(MiB)])
    w = unit.open_writer("host_2")
    w.begin_object()
    w.write(os.urandom(6 * MiB))
    db = sqlite3.connect(os.path.join(root, "pool", "index.db"))
    db.execute("ALTER TABLE chunks RENAME TO chunks_gone")      # the lookups now fail
    db.commit()
    with pytest.raises(MediaWriteError):
        for _ in range(20):
            w.write(os.urandom(MiB))
        w.end_object()
    w.abort()
    db.execute("ALTER TABLE chunks_gone RENAME TO chunks")
    db.commit()
    db.close()
    w = unit.open_writer("host_3")
    w.begin_object()
    packs = os.path.join(root, "pool", "packs")
    for d in os.listdir(packs):                                # new packs cannot be made
        os.rename(os.path.join(packs, d), os.path.join(packs, d + ".moved"))
    for i in range(256):
        with open(os.path.join(packs, f"{i:02x}"), "w"):
            pass
    with pytest.raises(MediaWriteError, match="dedup pool"):
        for _ in range(40):
            w.write(os.urandom(MiB))
        w.end_object()
        w.commit()
    w.abort()
    assert unit._writers == set()
    unit.close()


def test_a_seal_taken_by_the_cutter_meanwhile_does_not_break_the_session(tmp_path):
    """The session thread and the cutter both collect finished seals (the cutter when it
    waits for room): a seal the session saw done may be gone by the time it takes it.
    That is not a failure of the backup; the race is played here by a queue that empties
    right after it is looked at, as the cutter would empty it."""
    import collections
    from concurrent.futures import Future

    class TakenMeanwhile(collections.deque):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            self.clear()                       # the cutter takes it now
            return item

    unit = new_unit(str(tmp_path))
    w = unit.open_writer("host_1")
    w.begin_object()
    done: Future[None] = Future()
    done.set_result(None)
    w._seals = TakenMeanwhile([done])
    data = os.urandom(3 * MiB)
    w.write(data[:MiB])                        # looks at the seals first: no IndexError
    w._seals = collections.deque()
    w.write(data[MiB:])
    stored = w.end_object()
    w.commit()
    assert load(unit, w.location, stored) == data
    unit.close()


def test_a_pool_failure_at_an_objects_end_fails_its_transaction_not_the_session(dsrv):
    """The pool's index breaks under a running backup, so cutting the last (here the only)
    segment of an object fails at BSAEndData, which the server does not answer: the
    transaction is doomed and its commit says so (TRANSACTION_ABORTED), the job fails with a
    media status, nothing becomes visible, and the same session backs up and restores
    afterwards (no reply out of turn, no session lost)."""
    h = init(dsrv)
    first = backup(h, "/t/before", os.urandom(100_000))
    db = sqlite3.connect(os.path.join(dsrv.home, "pool", "index.db"))
    db.execute("ALTER TABLE chunks RENAME TO chunks_gone")        # the lookups now fail
    db.commit()
    assert X.BSABeginTxn(h) == OK
    d = descriptor("/t/broken", size=MiB)
    assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
    send_all(h, os.urandom(MiB))
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == X.BSA_RC_TRANSACTION_ABORTED
    assert "chunks" in X.BSAGetLastError()[1]
    db.execute("ALTER TABLE chunks_gone RENAME TO chunks")
    db.commit()
    db.close()
    assert find(h, query("/t/broken"))[0] == X.BSA_RC_NO_MATCH
    data = os.urandom(300_000)
    later = backup(h, "/t/after", data)
    assert restore(h, later.copyId) == data
    assert len(restore(h, first.copyId)) == 100_000
    X.BSATerminate(h)
    failed = [j for j in cli_json(dsrv, "jobs") if j["status"] not in (0, None)]
    assert [j["status"] for j in failed] == [84], failed


def test_a_pool_that_cannot_start_a_backup_refuses_it_and_the_session_goes_on(dsrv):
    """The pool cannot make a backup's working set (its tmp directory is a file): the
    object's creation is refused with a system error naming the pool, no image is left
    behind, the job fails with a media status, and the same session works once the pool
    can write again (before, the OSError ended the session as a broken connection)."""
    tmp = os.path.join(dsrv.home, "pool", "tmp")
    if os.path.isdir(tmp):
        os.rmdir(tmp)
    with open(tmp, "w"):
        pass
    h = init(dsrv)
    assert X.BSABeginTxn(h) == OK
    rc = X.BSACreateObject(h, descriptor("/t/refused", size=10), X.BSA_DataBlock32())
    assert rc == X.BSA_RC_ABORT_SYSTEM_ERROR and "dedup pool" in X.BSAGetLastError()[1]
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    os.unlink(tmp)
    data = os.urandom(200_000)
    d = backup(h, "/t/after", data)
    assert restore(h, d.copyId) == data
    X.BSATerminate(h)
    assert len(cli_json(dsrv, "images")) == 1
    catalog = sqlite3.connect(os.path.join(dsrv.home, "catalog.db"))
    assert catalog.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 1   # none pending
    catalog.close()
    failed = [j for j in cli_json(dsrv, "jobs") if j["status"] not in (0, None)]
    assert [j["status"] for j in failed] == [84], failed


def test_a_full_working_set_fails_the_backup_as_disk_full(tmp_path, monkeypatch):
    """A backup's working set (its scratch SQLite file in the pool) cannot grow: SQLite's
    own page limit stands in for a full disk here, and SQLite answers it as it would a full
    disk (SQLITE_FULL). The backup fails with status 129, as a full disk, not 84; abort
    leaves no pack and no scratch file."""
    from openxbsa.storage import dedup

    real_init = dedup._Scratch.__init__

    def limited(self, root: str, location: str) -> None:
        real_init(self, root, location)
        (pages,) = self.db.execute("PRAGMA page_count").fetchone()
        self.db.execute(f"PRAGMA max_page_count = {pages + 2}")

    monkeypatch.setattr(dedup._Scratch, "__init__", limited)
    root = str(tmp_path)
    unit = new_unit(root)
    w, err = backup_that_fails(unit, 64)
    assert err.status == 129 and "working set" in str(err)
    w.abort()
    assert pack_files(root) == [] and os.listdir(os.path.join(root, "pool", "tmp")) == []
    assert unit._writers == set()
    unit.close()


def test_a_pack_flush_failure_fails_the_commit_as_disk_full(tmp_path, monkeypatch):
    """Full packs are fsynced on their own thread; a failure there (here ENOSPC, injected:
    a full disk cannot be arranged safely on this machine) fails the commit with status 129,
    the image never appears and abort leaves no pack behind."""
    root = str(tmp_path)
    unit = new_unit(root)
    enospc_on_call(monkeypatch, "fsync", 2)       # the second pack's flush fails
    w, err = backup_that_fails(unit, 100)         # ~3 packs of random data
    assert err.status == 129 and "No space left" in str(err)
    w.abort()
    monkeypatch.undo()
    assert pack_files(root) == []
    assert unit.recipe_size(w.location, 0) is None
    assert unit._writers == set()
    unit.close()


def _open_flags(under: str) -> list[int]:
    """The open-file flags (O_DIRECT among them) of this process's open files under a
    directory, read from /proc/self/fdinfo."""
    flags = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            with open(f"/proc/self/fdinfo/{fd}") as f:
                info = f.read()
        except OSError:
            continue
        if target.startswith(under):
            flags.append(int(re.search(r"^flags:\s+([0-7]+)", info, re.M).group(1), 8))
    return flags


@pytest.mark.parametrize("mode", ["direct", "buffered"])
def test_pack_files_with_direct_io_or_buffered(tmp_path, monkeypatch, mode):
    """With OPENXBSA_DIRECT_IO=on, where the file system takes it (here: ext4), pack files
    are written and read with direct I/O, in aligned blocks, the last one padded and the
    file cut back to its true length; by default they are buffered. Either way every size round-trips byte for byte, every pack is exactly as
    long as the index records, `pool check` finds nothing, and a pool written one way is
    read, and written to, the other way."""
    from openxbsa.storage.dedup import direct_io_works

    def set_mode(direct: bool) -> None:
        if direct:
            monkeypatch.setenv("OPENXBSA_DIRECT_IO", "on")
        else:                                     # the default
            monkeypatch.delenv("OPENXBSA_DIRECT_IO", raising=False)

    root = str(tmp_path)
    direct = mode == "direct"
    assert direct_io_works(root), "this test's directory should take O_DIRECT (ext4 does)"
    set_mode(direct)
    unit = new_unit(root)
    assert unit.direct_io is direct
    rng = random.Random(7)
    text = b"".join(b"%d %s\n" % (i, rng.choice([b"alpha", b"beta", b"gamma"]) * 7)
                    for i in range(200_000))
    objects = [b"", b"x", rng.randbytes(4095), rng.randbytes(4097), rng.randbytes(3 * MiB + 123),
               text, rng.randbytes(40 * MiB + 1)]        # the last spans two pack files
    w = unit.open_writer("host_1")
    stored = []
    for data in objects:
        w.begin_object()
        w.write(data)
        stored.append(w.end_object())
        if len(data) > 32 * MiB:                 # a pack is open, and how it was opened
            packs_dir = os.path.join(root, "pool", "packs")
            flags = _open_flags(packs_dir)
            assert flags and all(bool(f & os.O_DIRECT) is direct for f in flags)
    w.commit()
    location = w.location
    db = sqlite3.connect(os.path.join(root, "pool", "index.db"))
    ends = dict(db.execute(          # where each pack's last record ends: no padding after
        "SELECT p.name, MAX(r.offset + r.stored) FROM packs p JOIN ("
        "SELECT pack, offset, stored FROM blobs UNION ALL "
        "SELECT pack, offset, stored FROM recipe_records) r ON r.pack = p.id GROUP BY p.id"))
    db.close()
    assert len(ends) >= 2
    assert {n: os.path.getsize(pack_path(root, n)) for n in ends} == ends
    assert unit.check() == []
    for obj, data in zip(stored, objects):
        assert load(unit, location, obj) == data
    unit.close()

    set_mode(not direct)                          # the same pool, the other way
    unit = new_unit(root)
    assert unit.direct_io is not direct
    for obj, data in zip(stored, objects):
        assert load(unit, location, obj, n=4093) == data
    edited = objects[-1][:5 * MiB] + b"changed" + objects[-1][5 * MiB:]
    loc2, (obj2,), _ = store(unit, "host_2", [edited], [333_333])
    assert load(unit, loc2, obj2) == edited
    assert unit.check() == []
    unit.close()


@pytest.mark.parametrize("mode", ["direct", "buffered"])
def test_a_pack_write_failure_fails_the_backup_as_disk_full(tmp_path, monkeypatch, mode):
    """A pack write that fails (ENOSPC, injected into os.writev: a full disk cannot be
    arranged safely on this machine) fails the backup with status 129, with direct I/O as
    buffered; abort leaves no pack file and no pack file open."""
    if mode == "direct":
        monkeypatch.setenv("OPENXBSA_DIRECT_IO", "on")
    root = str(tmp_path)
    unit = new_unit(root)
    assert unit.direct_io is (mode == "direct")
    calls = enospc_on_call(monkeypatch, "writev", 40)
    w, err = backup_that_fails(unit, 100)
    assert err.status == 129 and "No space left" in str(err)
    w.abort()
    monkeypatch.undo()
    assert len(calls) >= 40
    assert pack_files(root) == []
    assert _open_flags(os.path.join(root, "pool", "packs")) == []
    assert unit.recipe_size(w.location, 0) is None
    unit.close()


def test_aborted_backup_leaves_nothing(dsrv):
    h = init(dsrv)
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor("/abort/me", 5 * MiB), X.BSA_DataBlock32()) == OK
    send_all(h, os.urandom(5 * MiB))
    assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    X.BSATerminate(h)
    assert pack_files(dsrv.home) == []
    (usage,) = cli_json(dsrv, "pool", "usage")
    assert usage["chunks"] == 0 and usage["images"] == 0


def test_restore_reads_into_small_buffers(dsrv):
    data = os.urandom(MiB + 12345)
    h = init(dsrv)
    d = backup(h, "/small/buffers", data)
    assert restore(h, d.copyId, buf_len=1000) == data
    X.BSATerminate(h)


def test_a_segment_is_not_reused_while_a_blob_in_flight_points_into_it(tmp_path, monkeypatch):
    """New chunks go to the sealers as views of the segment they were received into, not
    copies: the segment must not be filled again before every blob pointing into it is
    sealed. Sealers slowed down keep many blobs in flight while the session goes on
    receiving; a segment reused too early would put later bytes into an earlier blob,
    and the restore (every chunk checked against its ID) would fail or differ."""
    from openxbsa.storage import dedup

    real_seal = dedup._SealContext.seal

    def slow_seal(self, raw, items, compress, magic=dedup.BLOB_MAGIC):
        time.sleep(0.02)
        return real_seal(self, raw, items, compress, magic)

    monkeypatch.setattr(dedup._SealContext, "seal", slow_seal)
    unit = new_unit(str(tmp_path))
    data = os.urandom(40 * MiB)                 # ten segments, forty blobs
    location, stored, stats = store(unit, "host_1", [data], pieces=[MiB, 65536, 3 * 65536])
    assert stats["after_dedup"] == len(data)
    assert load(unit, location, stored[0]) == data
    unit.close()


def test_a_blob_slow_to_fill_lets_go_of_its_segments(tmp_path):
    """A daily dump's backup meets a new chunk now and then: the blob gathering them would
    point into many segments, more than a writer has, and the session would wait for a
    free one for ever. Each segment's new chunks are copied out of it when its cut ends,
    so the backup (here a hundred segments long) finishes, stores each new chunk once,
    restores, and returns every segment."""
    from openxbsa.storage import dedup

    unit = new_unit(str(tmp_path))
    unit.segment = 256 << 10                    # small segments: many per blob
    rng = random.Random(5)
    base = rng.randbytes(24 * MiB)
    store(unit, "host_1", [base])
    day2 = bytearray(base)
    for at in range(0, len(day2), MiB):         # one changed page per MiB
        day2[at + 4096:at + 8192] = rng.randbytes(4096)
    day2 = bytes(day2)
    w = unit.open_writer("host_2")
    ended: list[StoredObject] = []

    def receive() -> None:
        w.begin_object()
        for pos in range(0, len(day2), 65536):
            w.write(day2[pos:pos + 65536])
        ended.append(w.end_object())

    session = threading.Thread(target=receive, daemon=True)
    session.start()
    session.join(120)
    assert ended, "the session waits for a free segment that never comes"
    obj = ended[0]
    assert len(w._seg_refs) == 1 and w._seg_refs[id(w.seg)] == 1     # only the one filling
    assert w._free.qsize() == dedup.SEGMENTS - 1
    w.commit()
    assert 0 < w.stats()["after_dedup"] < len(day2) // 4
    assert load(unit, w.location, obj) == day2
    unit.close()
