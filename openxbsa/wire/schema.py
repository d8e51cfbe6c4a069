"""Message schemas shared by client and server: field limits and validation of descriptors.

Limits are the XBSA C array sizes, which include the terminating NUL, so the usable length
in bytes (UTF-8) is one less. The client maps a failed check to BSA_RC_INVALID_*; the server
re-checks everything, because a peer need not be our library.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

# C array sizes (bytes, NUL included)
OWNER_SIZE = 64
NAME_SIZE = 1024
RESOURCETYPE_SIZE = 31
DESCRIPTION_SIZE = 100
OBJECTINFO_SIZE = 256
KEYWORD_MAX = 128           # characters of a keyword phrase (policy, NBBSA_KEYWORD), as NetBackup

COPY_TYPES = {2, 3}                 # ARCHIVE, BACKUP
OBJECT_TYPES = {2, 3, 4}            # FILE, DIRECTORY, OTHER
ANY = 1
STATUSES = {1, 2, 3}                # ANY, MOST_RECENT, NOT_MOST_RECENT
U64_MAX = 2**64 - 1

# Wire keys of a descriptor sent with "create"
DESCRIPTOR_KEYS = ("bo", "ao", "sn", "pn", "ct", "es", "rt", "ot", "de", "oi")
QUERY_KEYS = ("bo", "ao", "sn", "pn", "tf", "tt", "ct", "ot", "st")


def text_problem(name: str, value: Any, size: int, required: bool = False) -> str | None:
    """Why ``value`` is not a valid C string of array size ``size``, or None."""
    if not isinstance(value, str):
        return f"{name} must be a string"
    if "\x00" in value:
        return f"{name} contains a NUL character"
    try:
        n = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{name} is not valid text"
    if n > size - 1:
        return f"{name} is {n} bytes long; at most {size - 1} fit"
    if required and not value:
        return f"{name} is mandatory and empty"
    return None


def descriptor_problem(d: Any) -> str | None:
    """Why a create-descriptor map is invalid, or None."""
    if not isinstance(d, dict) or any(k not in d for k in DESCRIPTOR_KEYS):
        return "descriptor map is incomplete"
    for key, name, size, req in (("bo", "objectOwner.bsa_ObjectOwner", OWNER_SIZE, False),
                                 ("ao", "objectOwner.app_ObjectOwner", OWNER_SIZE, False),
                                 ("sn", "objectName.objectSpaceName", NAME_SIZE, False),
                                 ("pn", "objectName.pathName", NAME_SIZE, True),
                                 ("rt", "resourceType", RESOURCETYPE_SIZE, True),
                                 ("de", "objectDescription", DESCRIPTION_SIZE, False)):
        problem = text_problem(name, d[key], size, req)
        if problem:
            return problem
    if type(d["ct"]) is not int or d["ct"] not in COPY_TYPES:
        return f"copyType {d['ct']!r} is not BSA_CopyType_BACKUP or BSA_CopyType_ARCHIVE"
    if type(d["ot"]) is not int or d["ot"] not in OBJECT_TYPES:
        return f"objectType {d['ot']!r} is not FILE, DIRECTORY or OTHER"
    if type(d["es"]) is not int or not 0 <= d["es"] <= U64_MAX:
        return "estimatedSize is not a 64-bit unsigned integer"
    if not isinstance(d["oi"], (bytes, bytearray)) or len(d["oi"]) > OBJECTINFO_SIZE:
        return f"objectInfo must be at most {OBJECTINFO_SIZE} bytes"
    return None


def query_problem(q: Any) -> str | None:
    """Why a query map is invalid, or None."""
    if not isinstance(q, dict) or any(k not in q for k in QUERY_KEYS):
        return "query map is incomplete"
    for key, name, size in (("bo", "objectOwner.bsa_ObjectOwner", OWNER_SIZE),
                            ("ao", "objectOwner.app_ObjectOwner", OWNER_SIZE),
                            ("sn", "objectName.objectSpaceName", NAME_SIZE),
                            ("pn", "objectName.pathName", NAME_SIZE)):
        problem = text_problem(name, q[key], size)
        if problem:
            return problem
    for key in ("tf", "tt"):
        if q[key] is not None and (type(q[key]) is not int or not -2**63 <= q[key] < 2**63):
            return "createTime bounds must be UNIX seconds"
    if type(q["ct"]) is not int or q["ct"] not in COPY_TYPES | {ANY}:
        return f"copyType {q['ct']!r} is not a BSA_CopyType"
    if type(q["ot"]) is not int or q["ot"] not in OBJECT_TYPES | {ANY}:
        return f"objectType {q['ot']!r} is not a BSA_ObjectType"
    if type(q["st"]) is not int or q["st"] not in STATUSES:
        return f"objectStatus {q['st']!r} is not a BSA_ObjectStatus"
    return None


def to_epoch(value: _dt.datetime) -> int:
    return int(value.timestamp())


def from_epoch(seconds: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)


def env_entry_problem(entry: Any) -> str | None:
    """Why an environment entry is not ``KEY=value`` (no spaces around '='), or None."""
    if not isinstance(entry, str):
        return "environment entries must be strings"
    if "\x00" in entry:
        return f"environment entry {entry!r} contains a NUL character"
    try:
        entry.encode("utf-8")
    except UnicodeEncodeError:
        return f"environment entry {entry!r} is not valid text"
    key, sep, value = entry.partition("=")
    if not sep:
        return f"environment entry {entry!r} is not KEY=value"
    if not key or key != key.strip() or any(c.isspace() for c in key):
        return f"environment entry {entry!r} has an empty or spaced keyword"
    if value[:1].isspace():
        return f"environment entry {entry!r} has a space after '='"
    if key == "NBBSA_KEYWORD":
        return keyword_problem(value)
    return None


def keyword_problem(keyword: str) -> str | None:
    """Why ``keyword`` is not a keyword phrase (at most KEYWORD_MAX characters), or None."""
    if len(keyword) > KEYWORD_MAX:
        return (f"the keyword phrase is {len(keyword)} characters long; at most "
                f"{KEYWORD_MAX} are allowed")
    return None


# When environment variables may change (reference §8.3), for the library and the server.
ENV_FIXED_AT_INIT = {"BSA_API_VERSION", "NBBSA_LOG_DIRECTORY", "BSA_DELIMITER"}
ENV_FIXED_IN_TXN = {"BSA_SERVICE_HOST", "NBBSA_CLIENT_HOST", "NBBSA_POLICY", "NBBSA_SCHEDULE"}
ENV_READ_ONLY = {"BSA_SERVICE_PROVIDER"}


def parse_env(entries: Any) -> tuple[dict[str, str], str | None]:
    """A list of KEY=value strings -> (the map, None), or ({}, why it is malformed)."""
    if not isinstance(entries, (list, tuple)):
        return {}, "the environment must be a list of 'KEY=value' strings"
    parsed: dict[str, str] = {}
    for entry in entries:
        problem = env_entry_problem(entry)
        if problem:
            return {}, problem
        key, _, value = entry.partition("=")
        parsed[key] = value
    return parsed, None


def version_problem(env: dict[str, str]) -> tuple[str, str] | None:
    """(error kind, why) when BSA_API_VERSION is missing, malformed or not 1.1.x."""
    version = env.get("BSA_API_VERSION")
    if version is None:
        return "invalid_env", "BSA_API_VERSION is mandatory (BSA_API_VERSION=1.1.0)"
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return "invalid_env", f"BSA_API_VERSION={version} is not three numbers"
    if parts[:2] != ["1", "1"]:
        return "version", f"BSA_API_VERSION {version} is not supported; 1.1.0 is"
    return None


def env_change_problem(key: str, old: str | None, new: str, in_txn: bool
                       ) -> tuple[str, str] | None:
    """(error kind, why) when ``key`` may not change from ``old`` to ``new`` now."""
    if old == new:
        return None
    if key in ENV_READ_ONLY:
        return "invalid_env", f"{key} is set by the service"
    if key in ENV_FIXED_AT_INIT:
        return "call_sequence", f"{key} can only be set at BSAInit"
    if key in ENV_FIXED_IN_TXN and in_txn:
        return "call_sequence", f"{key} can change only between transactions"
    return None
