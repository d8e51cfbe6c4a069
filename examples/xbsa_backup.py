#!/usr/bin/env python3
"""Sample XBSA application: back up a file (or standard input) as one object.

    python examples/xbsa_backup.py /db/nightly.dump < dump.sql
    python examples/xbsa_backup.py /etc/hosts --file /etc/hosts --buffer 512

The faithful API, as the SDK's C samples use it: BSAInit, BSABeginTxn, BSACreateObject,
BSASendData with full buffers but the last, BSAEndData, BSAEndTxn(COMMIT), BSATerminate.
"""

import argparse
import sys

from openxbsa.xbsa import (
    BSA_CopyType_BACKUP, BSA_DataBlock32, BSA_ObjectDescriptor, BSA_ObjectName,
    BSA_ObjectOwner, BSA_ObjectType_FILE, BSA_RC_SUCCESS, BSA_Vote_ABORT, BSA_Vote_COMMIT,
    BSABeginTxn, BSACreateObject, BSAEndData, BSAEndTxn, BSAGetLastError, BSAInit,
    BSASendData, BSATerminate,
)


def fail(call: str, rc: int, handle: int | None = None, in_txn: bool = False) -> None:
    print(f"{call} failed (rc {rc}): {BSAGetLastError()[1]}", file=sys.stderr)
    if handle is not None:
        if in_txn:
            BSAEndTxn(handle, BSA_Vote_ABORT)
        BSATerminate(handle)
    sys.exit(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("path", help="object name (pathName), e.g. /db/nightly.dump")
    p.add_argument("--file", help="read this file instead of standard input")
    p.add_argument("--buffer", type=int, default=1 << 20, help="buffer size in bytes")
    p.add_argument("--service", help="BSA_SERVICE_HOST (default: the local server's socket)")
    p.add_argument("--object-space", default="")
    p.add_argument("--description", default="")
    args = p.parse_args()

    env = ["BSA_API_VERSION=1.1.0"] + ([f"BSA_SERVICE_HOST={args.service}"] if args.service else [])
    owner = BSA_ObjectOwner("XBSA Client", "XBSA App")
    rc, handle = BSAInit(None, owner, env)
    if rc != BSA_RC_SUCCESS:
        fail("BSAInit", rc)
    rc = BSABeginTxn(handle)
    if rc != BSA_RC_SUCCESS:
        fail("BSABeginTxn", rc, handle)

    desc = BSA_ObjectDescriptor()
    desc.objectOwner = owner
    desc.objectName = BSA_ObjectName(args.object_space, args.path)
    desc.copyType = BSA_CopyType_BACKUP
    desc.objectType = BSA_ObjectType_FILE
    desc.resourceType = "Stream"
    desc.objectDescription = args.description
    desc.estimatedSize = 1          # unknown for a stream; any non-zero estimate will do
    block = BSA_DataBlock32()
    rc = BSACreateObject(handle, desc, block)
    if rc != BSA_RC_SUCCESS:
        fail("BSACreateObject", rc, handle, True)

    source = open(args.file, "rb") if args.file else sys.stdin.buffer
    buf = bytearray(args.buffer)
    view = memoryview(buf)
    total = 0
    while True:
        n = 0
        while n < len(buf):             # fill the buffer: only the last may be short
            got = source.readinto(view[n:])
            if not got:
                break
            n += got
        if n:
            block.bufferLen, block.numBytes, block.bufferPtr = len(buf), n, buf
            rc = BSASendData(handle, block)
            if rc != BSA_RC_SUCCESS:
                fail("BSASendData", rc, handle, True)
            total += n
        if n < len(buf):
            break
    rc = BSAEndData(handle)
    if rc != BSA_RC_SUCCESS:
        fail("BSAEndData", rc, handle, True)
    rc = BSAEndTxn(handle, BSA_Vote_COMMIT)
    if rc != BSA_RC_SUCCESS:
        fail("BSAEndTxn", rc, handle)
    BSATerminate(handle)
    print(f"backed up {total} bytes as {args.path} copyId {desc.copyId} "
          f"created {desc.createTime:%Y-%m-%d %H:%M:%S} UTC")


if __name__ == "__main__":
    main()
