#!/usr/bin/env python3
"""Sample XBSA application: delete object copies by copy ID (effective at commit).

    python examples/xbsa_delete.py 42 43
"""

import argparse
import sys

from openxbsa.xbsa import (
    BSA_ObjectOwner, BSA_RC_SUCCESS, BSA_Vote_ABORT, BSA_Vote_COMMIT, BSABeginTxn,
    BSADeleteObject, BSAEndTxn, BSAGetLastError, BSAInit, BSATerminate,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("copy_ids", type=int, nargs="+")
    p.add_argument("--service")
    args = p.parse_args()
    env = ["BSA_API_VERSION=1.1.0"] + ([f"BSA_SERVICE_HOST={args.service}"] if args.service else [])
    rc, handle = BSAInit(None, BSA_ObjectOwner("XBSA Client", "XBSA App"), env)
    if rc != BSA_RC_SUCCESS:
        sys.exit(f"BSAInit failed: {BSAGetLastError()[1]}")
    BSABeginTxn(handle)
    for copy_id in args.copy_ids:
        rc = BSADeleteObject(handle, copy_id)
        if rc != BSA_RC_SUCCESS:
            print(f"BSADeleteObject({copy_id}) failed: {BSAGetLastError()[1]}", file=sys.stderr)
            BSAEndTxn(handle, BSA_Vote_ABORT)
            BSATerminate(handle)
            sys.exit(1)
    rc = BSAEndTxn(handle, BSA_Vote_COMMIT)
    BSATerminate(handle)
    if rc != BSA_RC_SUCCESS:
        sys.exit(f"BSAEndTxn failed: {BSAGetLastError()[1]}")
    print(f"deleted {len(args.copy_ids)} object(s)")


if __name__ == "__main__":
    main()
