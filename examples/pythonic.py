#!/usr/bin/env python3
"""The Pythonic API: a session, a transaction that commits or aborts, objects as files.

    python examples/pythonic.py [--service unix:/path/to/xbsa.sock]
"""

import argparse
import hashlib
import os

from openxbsa.session import Session, XBSAError
from openxbsa.xbsa import BSA_ObjectStatus_MOST_RECENT


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--service")
    args = p.parse_args()
    data = os.urandom(5_000_000)
    with Session(service=args.service, owner=("pythonic-example", "")) as s:
        with s.backup() as txn:
            with txn.create("/examples/pythonic.bin", description="sample") as f:
                f.write(data)
        copy_id = f.descriptor.copyId
        newest = [d for d in s.query("/examples/pythonic.bin", status=BSA_ObjectStatus_MOST_RECENT)]
        assert newest[0].copyId == copy_id
        with s.restore() as txn, txn.open(copy_id) as r:
            back = r.read()
        assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
        try:
            with s.backup() as txn, txn.create("/examples/never-committed") as f:
                f.write(b"partial")
                raise RuntimeError("the application changed its mind")
        except RuntimeError:
            pass
        assert not list(s.query("/examples/never-committed"))
        s.delete(copy_id)
        try:
            with s.restore() as txn:
                txn.open(copy_id)
        except XBSAError as exc:
            print(f"as expected after the delete: {exc.name}")
    print(f"backed up, restored ({len(back)} bytes, byte-exact) and deleted copyId {copy_id}")


if __name__ == "__main__":
    main()
