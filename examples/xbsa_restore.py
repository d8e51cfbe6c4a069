#!/usr/bin/env python3
"""Sample XBSA application: restore the most recent copy of an object (or one copy ID).

    python examples/xbsa_restore.py /db/nightly.dump > dump.sql
    python examples/xbsa_restore.py /db/nightly.dump --copy-id 42 --out restored.sql

Query (BSAQueryObject, MOST_RECENT) then BSAGetObject, BSAGetData until
BSA_RC_NO_MORE_DATA — whose buffer may still hold the last bytes — and BSAEndData.
"""

import argparse
import os
import sys

from openxbsa.xbsa import (
    BSA_CopyType_BACKUP, BSA_DataBlock32, BSA_ObjectDescriptor, BSA_ObjectName,
    BSA_ObjectOwner, BSA_ObjectStatus_MOST_RECENT, BSA_ObjectType_ANY, BSA_QueryDescriptor,
    BSA_RC_NO_MORE_DATA, BSA_RC_SUCCESS, BSA_Vote_ABORT, BSA_Vote_COMMIT, BSABeginTxn,
    BSAEndData, BSAEndTxn, BSAGetData, BSAGetLastError, BSAGetObject, BSAInit, BSAQueryObject,
    BSATerminate,
)


def fail(call: str, rc: int, handle: int | None = None, in_txn: bool = True,
         partial: str | None = None) -> None:
    print(f"{call} failed (rc {rc}): {BSAGetLastError()[1]}", file=sys.stderr)
    if handle is not None:
        if in_txn:
            BSAEndTxn(handle, BSA_Vote_ABORT)
        BSATerminate(handle)
    if partial is not None:             # no half-restored file left looking whole
        os.unlink(partial)
    sys.exit(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("path")
    p.add_argument("--copy-id", type=int, help="restore this copy instead of the newest")
    p.add_argument("--out", help="write here instead of standard output")
    p.add_argument("--buffer", type=int, default=1 << 20)
    p.add_argument("--service")
    p.add_argument("--object-space", default="")
    args = p.parse_args()

    env = ["BSA_API_VERSION=1.1.0"] + ([f"BSA_SERVICE_HOST={args.service}"] if args.service else [])
    owner = BSA_ObjectOwner("XBSA Client", "XBSA App")
    rc, handle = BSAInit(None, owner, env)
    if rc != BSA_RC_SUCCESS:
        fail("BSAInit", rc)
    rc = BSABeginTxn(handle)
    if rc != BSA_RC_SUCCESS:
        fail("BSABeginTxn", rc, handle, in_txn=False)
    desc = BSA_ObjectDescriptor()
    if args.copy_id:
        desc.copyId = args.copy_id
    else:
        query = BSA_QueryDescriptor()
        query.objectOwner = owner
        query.objectName = BSA_ObjectName(args.object_space, args.path)
        query.copyType = BSA_CopyType_BACKUP
        query.objectType = BSA_ObjectType_ANY
        query.objectStatus = BSA_ObjectStatus_MOST_RECENT
        rc = BSAQueryObject(handle, query, desc)
        if rc != BSA_RC_SUCCESS:
            fail("BSAQueryObject", rc, handle)
    block = BSA_DataBlock32()
    rc = BSAGetObject(handle, desc, block)
    if rc != BSA_RC_SUCCESS:
        fail("BSAGetObject", rc, handle)
    buf = bytearray(args.buffer)
    block.bufferLen, block.bufferPtr = len(buf), buf
    # into a file: written beside it and renamed once the object is read whole
    partial = f"{args.out}.partial" if args.out else None
    out = open(partial, "wb") if partial else sys.stdout.buffer
    total = 0
    while True:
        rc = BSAGetData(handle, block)
        if rc not in (BSA_RC_SUCCESS, BSA_RC_NO_MORE_DATA):
            fail("BSAGetData", rc, handle, partial=partial)
        start = block.headerBytes
        out.write(buf[start:start + block.numBytes])
        total += block.numBytes
        if rc == BSA_RC_NO_MORE_DATA:
            break
    out.flush()
    rc = BSAEndData(handle)
    if rc != BSA_RC_SUCCESS:
        fail("BSAEndData", rc, handle, partial=partial)
    if partial:
        out.close()
        os.replace(partial, args.out)
    BSAEndTxn(handle, BSA_Vote_COMMIT)
    BSATerminate(handle)
    print(f"restored {total} bytes of copyId {desc.copyId}", file=sys.stderr)


if __name__ == "__main__":
    main()
