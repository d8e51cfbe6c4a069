#!/usr/bin/env python3
"""Sample XBSA application: list the objects whose name matches a pattern (* and ?).

    python examples/xbsa_query.py '/db/*'
"""

import argparse
import sys

from openxbsa.xbsa import (
    BSA_CopyType_ANY, BSA_ObjectDescriptor, BSA_ObjectName, BSA_ObjectOwner,
    BSA_ObjectStatus_ANY, BSA_ObjectStatus_MOST_RECENT, BSA_ObjectType_ANY, BSA_QueryDescriptor,
    BSA_RC_NO_MATCH, BSA_RC_NO_MORE_DATA, BSA_RC_SUCCESS, BSA_Vote_COMMIT, BSABeginTxn,
    BSAEndTxn, BSAGetLastError, BSAGetNextQueryObject, BSAInit, BSAQueryObject, BSATerminate,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("pattern", nargs="?", default="/*")
    p.add_argument("--object-space", default="*")
    p.add_argument("--service")
    args = p.parse_args()
    env = ["BSA_API_VERSION=1.1.0"] + ([f"BSA_SERVICE_HOST={args.service}"] if args.service else [])
    rc, handle = BSAInit(None, BSA_ObjectOwner("XBSA Client", "XBSA App"), env)
    if rc != BSA_RC_SUCCESS:
        sys.exit(f"BSAInit failed: {BSAGetLastError()[1]}")
    BSABeginTxn(handle)
    query = BSA_QueryDescriptor()
    query.objectOwner = BSA_ObjectOwner("*", "*")
    query.objectName = BSA_ObjectName(args.object_space, args.pattern)
    query.copyType, query.objectType = BSA_CopyType_ANY, BSA_ObjectType_ANY
    query.objectStatus = BSA_ObjectStatus_ANY
    desc = BSA_ObjectDescriptor()
    rc = BSAQueryObject(handle, query, desc)
    count = 0
    while rc == BSA_RC_SUCCESS:
        latest = "*" if desc.objectStatus == BSA_ObjectStatus_MOST_RECENT else " "
        print(f"{desc.copyId:>8} {latest} {desc.createTime:%Y-%m-%d %H:%M:%S} "
              f"{desc.objectName.objectSpaceName or '-':10} {desc.objectName.pathName}")
        count += 1
        rc = BSAGetNextQueryObject(handle, desc)
    if rc not in (BSA_RC_NO_MORE_DATA, BSA_RC_NO_MATCH):
        print(f"query failed: {BSAGetLastError()[1]}", file=sys.stderr)
    BSAEndTxn(handle, BSA_Vote_COMMIT)
    BSATerminate(handle)
    print(f"{count} object(s); * = most recent copy", file=sys.stderr)


if __name__ == "__main__":
    main()
