"""Property: whatever the object sizes and buffer sizes, restores are byte-exact."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openxbsa import xbsa as X
from tests.conftest import descriptor, init, read_all, send_all

OK = X.BSA_RC_SUCCESS

sizes = st.one_of(st.just(0), st.integers(1, 4096), st.integers(4097, 3 << 20))
buffers = st.one_of(st.just(512), st.integers(512, 8192), st.sampled_from([65536, 1 << 20]))


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(objects=st.lists(st.tuples(sizes, st.integers(0, 2**32)), min_size=1, max_size=4),
       send_buf=buffers, recv_buf=buffers, one_txn=st.booleans())
def test_round_trip_is_byte_exact(server, objects, send_buf, recv_buf, one_txn):
    h = init(server)
    created = []
    if one_txn:
        assert X.BSABeginTxn(h) == OK
    for i, (size, seed) in enumerate(objects):
        if not one_txn:
            assert X.BSABeginTxn(h) == OK
        d = descriptor(f"/prop/{seed}/{i}", size)
        assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
        data = payload(size, seed)
        if size:
            send_all(h, data, send_buf)
        assert X.BSAEndData(h) == OK
        if not one_txn:
            assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
        created.append((d.copyId, hashlib.sha256(data).digest(), size))
    if one_txn:
        assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    assert X.BSABeginTxn(h) == OK
    for copy_id, digest, size in created:
        assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=copy_id), X.BSA_DataBlock32()) == OK
        data, counts = read_all(h, recv_buf)
        assert len(data) == size and hashlib.sha256(data).digest() == digest
        assert all(c == recv_buf for c in counts[:-1])     # every buffer full but the last
        assert X.BSAEndData(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    X.BSATerminate(h)


def test_gathered_data_frames_arrive_whole_through_partial_sends():
    """The server sends a dedup restore's chunks as one frame gathered from many buffers
    (Channel.send_data_views). Over a real socket with a small send buffer and a timeout
    (so the kernel takes part of a sendmsg at a time), every frame arrives whole and in
    order; a frame larger than the protocol allows is refused before anything is sent."""
    import socket
    import threading

    from openxbsa import wire

    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    a.settimeout(10)
    sender, receiver = wire.Channel(a), wire.Channel(b)
    rng = random.Random(7)
    frames = [[rng.randbytes(rng.randrange(1, 200_000)) for _ in range(rng.randrange(1, 40))]
              for _ in range(6)]
    got: list[bytes] = []

    def receive() -> None:
        for _ in frames:
            ftype, length = receiver.read_header()
            assert ftype == wire.DATA
            buf = bytearray(length)
            receiver.readinto_exact(memoryview(buf))
            got.append(bytes(buf))

    t = threading.Thread(target=receive)
    t.start()
    for parts in frames:
        sender.send_data_views([memoryview(p) for p in parts])
    t.join(30)
    assert got == [b"".join(parts) for parts in frames]
    with pytest.raises(ValueError):
        sender.send_data_views([memoryview(bytes(wire.MAX_DATA_FRAME + 1))])
    a.close()
    b.close()


def test_a_disk_unit_that_runs_out_of_space_fails_the_commit_as_disk_full(tmp_path, monkeypatch):
    """The disk unit's flush at commit fails with ENOSPC (injected: a full disk cannot be
    arranged safely on this machine): status 129, disk full, as NetBackup reports it, not a
    generic media write error; abort removes the image file."""
    import errno
    import os

    from openxbsa.errors import MediaWriteError
    from openxbsa.storage.disk import DiskStorageUnit

    unit = DiskStorageUnit("disk", str(tmp_path))
    w = unit.open_writer("host_1")
    w.begin_object()
    w.write(b"x" * 100_000)
    w.end_object()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(MediaWriteError) as err:
        w.commit()
    assert err.value.status == 129 and "No space left" in str(err.value)
    monkeypatch.undo()
    w.abort()
    assert os.listdir(tmp_path) == [] or all(
        not files for _d, _s, files in os.walk(tmp_path))
