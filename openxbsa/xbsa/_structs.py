"""The XBSA structures as mutable dataclasses with the C field names.

Every field defaults to the value a C program's memset(0) would leave, so a fresh
structure is a valid starting point. BSA_UInt64 fields are Python ints, ``struct tm``
fields are timezone-aware UTC datetimes (None when unset), objectInfo is bytes.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BSA_ApiVersion:
    issue: int = 0
    version: int = 0
    level: int = 0


@dataclass
class BSA_ObjectOwner:
    bsa_ObjectOwner: str = ""
    app_ObjectOwner: str = ""


@dataclass
class BSA_ObjectName:
    objectSpaceName: str = ""
    pathName: str = ""


@dataclass
class BSA_ObjectDescriptor:
    rsv1: int = 0
    objectOwner: BSA_ObjectOwner = field(default_factory=BSA_ObjectOwner)
    objectName: BSA_ObjectName = field(default_factory=BSA_ObjectName)
    createTime: _dt.datetime | None = None
    copyType: int = 0
    copyId: int = 0
    restoreOrder: int = 0
    rsv2: str = ""
    rsv3: str = ""
    estimatedSize: int = 0
    resourceType: str = ""
    objectType: int = 0
    objectStatus: int = 0
    rsv4: str = ""
    objectDescription: str = ""
    objectInfo: bytes = b""


@dataclass
class BSA_QueryDescriptor:
    objectOwner: BSA_ObjectOwner = field(default_factory=BSA_ObjectOwner)
    objectName: BSA_ObjectName = field(default_factory=BSA_ObjectName)
    createTime_from: _dt.datetime | None = None
    createTime_to: _dt.datetime | None = None
    rsv1: _dt.datetime | None = None
    rsv2: _dt.datetime | None = None
    copyType: int = 0
    rsv3: str = ""
    rsv4: str = ""
    rsv5: str = ""
    objectType: int = 0
    objectStatus: int = 0
    rsv6: str = ""


@dataclass
class BSA_DataBlock32:
    """bufferPtr is the application's buffer: any bytes-like object to send, and a writable
    one (bytearray, memoryview) to receive; data lives at [headerBytes:headerBytes+numBytes]."""

    bufferLen: int = 0
    numBytes: int = 0
    headerBytes: int = 0
    shareId: int = 0
    shareOffset: int = 0
    bufferPtr: Any = None


@dataclass
class NBBSA_JobInfo:
    """NBBSAGetJobInfo's record of the transaction's job (free it with NBBSAFreeJobInfo)."""

    jobId: int = 0
    jobType: int = 0
    jobState: int = 0
    jobStatus: int = 0
    policyName: str = ""
    scheduleName: str = ""
    clientName: str = ""
    serverName: str = ""
    startTime: _dt.datetime | None = None
    endTime: _dt.datetime | None = None
    kiloBytes: int = 0
    numObjects: int = 0
    backupId: str = ""
