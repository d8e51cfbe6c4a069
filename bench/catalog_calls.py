"""What one catalog-bound XBSA call costs, on the embedded SQLite and on PostgreSQL.

    python bench/catalog_calls.py [--objects 2000] [--others 100000] [--postgres] [--dir DIR]

Backs up ``--others`` empty objects in one transaction (the user's other objects, among
which each lookup must find its own), and ``--objects`` empty objects, one per
transaction (one image each, as BSADeleteObject needs); then times, per call: BSAQueryObject of one name, BSAGetObject +
BSAEndData of one object, BSADeleteObject (one visibility lookup), and the commit of
the delete transaction per object deleted. Each is printed in microseconds and as a
multiple of the raw limit: one request and reply of the same small size across a Unix
socket between two processes. ``--postgres`` runs it again with the catalog on a
PostgreSQL of its own (tests/pg.py; scripts/setup.sh installs PostgreSQL).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import time

import _here  # noqa: E402  (this tree first on the path)

from openxbsa import xbsa as X  # noqa: E402


def ok(rc: int) -> None:
    if rc != X.BSA_RC_SUCCESS:
        raise SystemExit(f"XBSA call failed: {X.BSAGetLastError()[1]}")


def _echo(sock: socket.socket) -> None:
    while data := sock.recv(4096):
        sock.sendall(data)


def round_trip_us(n: int = 20_000) -> float:
    """One 100-byte request and its reply between two processes over a Unix socket."""
    a, b = socket.socketpair()
    p = multiprocessing.Process(target=_echo, args=(b,))
    p.start()
    msg = b"x" * 100
    t = time.perf_counter()
    for _ in range(n):
        a.sendall(msg)
        got = 0
        while got < len(msg):
            got += len(a.recv(4096))
    dt = time.perf_counter() - t
    p.terminate()           # (the child holds both ends since the fork: no EOF comes)
    p.join()
    a.close()
    b.close()
    return dt / n * 1e6


def create_empty(h: int, path: str) -> int:
    """Back up an empty object at ``path`` in the open transaction; its copy ID."""
    d = X.BSA_ObjectDescriptor(objectName=X.BSA_ObjectName("", path), copyType=3,
                               objectType=2, resourceType="bench", estimatedSize=0)
    ok(X.BSACreateObject(h, d, X.BSA_DataBlock32()))
    ok(X.BSAEndData(h))
    return d.copyId


def measure(home: str, objects: int, others: int) -> dict[str, float]:
    sock = os.path.join(home, "xbsa.sock")
    server = subprocess.Popen(_here.cli("server", "--home", home, "--listen", f"unix:{sock}",
                                        "--log-level", "WARNING"), env=_here.env())
    try:
        for _ in range(400):
            if os.path.exists(sock):
                break
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode}")
            time.sleep(0.05)
        rc, h = X.BSAInit(None, X.BSA_ObjectOwner("bench", ""),
                          ["BSA_API_VERSION=1.1.0", f"BSA_SERVICE_HOST=unix:{sock}"])
        ok(rc)
        ok(X.BSABeginTxn(h))
        for i in range(others):
            create_empty(h, f"/bench/other/{i}")
        ok(X.BSAEndTxn(h, X.BSA_Vote_COMMIT))
        ids = []
        for i in range(objects):
            ok(X.BSABeginTxn(h))
            ids.append(create_empty(h, f"/bench/{i}"))
            ok(X.BSAEndTxn(h, X.BSA_Vote_COMMIT))
        out: dict[str, float] = {}
        ok(X.BSABeginTxn(h))
        od = X.BSA_ObjectDescriptor()
        t = time.perf_counter()
        for i in range(objects):
            q = X.BSA_QueryDescriptor(objectName=X.BSA_ObjectName("", f"/bench/{i}"),
                                      copyType=1, objectType=1, objectStatus=1)
            ok(X.BSAQueryObject(h, q, od))
        out["BSAQueryObject, one match"] = time.perf_counter() - t
        ok(X.BSAEndTxn(h, X.BSA_Vote_COMMIT))
        ok(X.BSABeginTxn(h))
        t = time.perf_counter()
        for copy_id in ids:
            ok(X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=copy_id), X.BSA_DataBlock32()))
            ok(X.BSAEndData(h))
        out["BSAGetObject + BSAEndData"] = time.perf_counter() - t
        ok(X.BSAEndTxn(h, X.BSA_Vote_COMMIT))
        ok(X.BSABeginTxn(h))
        t = time.perf_counter()
        for copy_id in ids:
            ok(X.BSADeleteObject(h, copy_id))
        out["BSADeleteObject"] = time.perf_counter() - t
        t = time.perf_counter()
        ok(X.BSAEndTxn(h, X.BSA_Vote_COMMIT))
        out["delete commit, per object"] = time.perf_counter() - t
        X.BSATerminate(h)
        return {k: v / objects * 1e6 for k, v in out.items()}
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--others", type=int, default=100_000,
                    help="the user's other objects, backed up first in one transaction")
    ap.add_argument("--postgres", action="store_true", help="also with a PostgreSQL catalog")
    ap.add_argument("--dir", default=None, help="where server homes go (default: a temp dir)")
    args = ap.parse_args()
    rtt = round_trip_us()
    runs = {"SQLite": ""}
    pg = None
    if args.postgres:
        from tests.pg import Postgres
        pg = Postgres()
        runs["PostgreSQL"] = f'catalog = "{pg.new_database()}"\n'
    try:
        print(f"raw limit: a request and its reply over a Unix socket, {rtt:.0f} us")
        for name, settings in runs.items():
            home = tempfile.mkdtemp(prefix="openxbsa-bench-", dir=args.dir)
            try:
                if settings:
                    with open(os.path.join(home, "openxbsa.toml"), "w") as f:
                        f.write(settings)
                results = measure(home, args.objects, args.others)
            finally:
                shutil.rmtree(home, ignore_errors=True)
            print(f"{name} catalog, {args.objects} objects timed among "
                  f"{args.objects + args.others} of the user's:")
            for call, us in results.items():
                print(f"  {call:30s} {us:8.0f} us   {us / rtt:6.1f}x the round trip")
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
