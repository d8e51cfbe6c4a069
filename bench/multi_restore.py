#!/usr/bin/env python3
"""Multiple-object restore (issue #3): NBBSAGetMultipleObjects against one BSAGetObject job
per object, restoring the same N small objects in one run; prints the speed-up (target >= 5).

    python bench/multi_restore.py [--objects 10000] [--size 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time

import _here  # noqa: E402  (this tree first on the path)

from openxbsa import xbsa as X  # noqa: E402


def ok(rc: int) -> None:
    if rc not in (X.BSA_RC_SUCCESS, X.BSA_RC_NO_MORE_DATA):
        raise SystemExit(f"XBSA call failed: {X.BSAGetLastError()[1]}")


def read_object(h: int, d: X.BSA_ObjectDescriptor, block: X.BSA_DataBlock32) -> int:
    ok(X.BSAGetObject(h, d, X.BSA_DataBlock32()))
    got = 0
    while True:
        rc = X.BSAGetData(h, block)
        ok(rc)
        got += block.numBytes
        if rc == X.BSA_RC_NO_MORE_DATA:
            break
    ok(X.BSAEndData(h))
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="openxbsa-bench-")
    server = subprocess.Popen(_here.cli("server", "--home", home, "--log-level", "WARNING"),
                              env=_here.env(), stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(f"{home}/xbsa.sock"):
                break
            time.sleep(0.05)
        rc, h = X.BSAInit(None, X.BSA_ObjectOwner("bench", ""),
                          ["BSA_API_VERSION=1.1.0", f"BSA_SERVICE_HOST=unix:{home}/xbsa.sock"])
        ok(rc)
        payload = os.urandom(args.size)
        descs = []
        ok(X.BSABeginTxn(h))
        for i in range(args.objects):
            d = X.BSA_ObjectDescriptor(objectName=X.BSA_ObjectName("", f"/bench/multi/{i}"),
                                       copyType=3, objectType=2, resourceType="bench",
                                       estimatedSize=args.size)
            ok(X.BSACreateObject(h, d, X.BSA_DataBlock32()))
            ok(X.BSASendData(h, X.BSA_DataBlock32(args.size, args.size, 0, 0, 0, payload)))
            ok(X.BSAEndData(h))
            descs.append(d)
        ok(X.BSAEndTxn(h, X.BSA_Vote_COMMIT))
        block = X.BSA_DataBlock32(65536, 0, 0, 0, 0, bytearray(65536))

        t = time.perf_counter()
        ok(X.BSABeginTxn(h))
        single = sum(read_object(h, d, block) for d in descs)
        ok(X.BSAEndTxn(h, X.BSA_Vote_COMMIT))
        t_single = time.perf_counter() - t

        t = time.perf_counter()
        ok(X.BSABeginTxn(h))
        for d in descs:
            ok(X.NBBSAAddToMultiObjectRestoreList(h, d))
        ok(X.NBBSAGetMultipleObjects(h))
        multi = sum(read_object(h, d, block) for d in descs)
        ok(X.NBBSAEndGetMultipleObjects(h))
        ok(X.BSAEndTxn(h, X.BSA_Vote_COMMIT))
        t_multi = time.perf_counter() - t
        X.BSATerminate(h)
        assert single == multi == args.objects * args.size
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(home, ignore_errors=True)
    n = args.objects
    print(f"{n} objects of {args.size} bytes")
    print(f"one restore job per object    {n / t_single:9.0f} objects/s")
    print(f"NBBSAGetMultipleObjects       {n / t_multi:9.0f} objects/s")
    print(f"speed-up                      {t_single / t_multi:9.1f}x   (target >= 5)")


if __name__ == "__main__":
    main()
