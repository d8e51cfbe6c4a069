"""Storage units: the interface in ``base`` and one module per kind, registered in KINDS."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from openxbsa.storage.base import ImageWriter, ObjectReader, StorageUnit, StoredObject
from openxbsa.storage.disk import DiskStorageUnit


def key_dir(home: str) -> str:
    """Where the server keeps the keys its storage units need (never inside a unit)."""
    return os.path.join(home, "keys")


def _dedup(name: str, path: str, home: str) -> StorageUnit:
    # imported on first use: its crypto and compression libraries are not needed otherwise
    from openxbsa.storage.dedup import DedupStorageUnit

    return DedupStorageUnit(name, path, key_dir=key_dir(home))


# kind -> factory(name, path, server home); keys a kind needs live in ``home/keys``
KINDS: dict[str, Callable[[str, str, str], StorageUnit]] = {
    "disk": lambda name, path, _home: DiskStorageUnit(name, path),
    "dedup": _dedup,
}


def open_unit(row: Mapping[str, Any], home: str) -> StorageUnit:
    """The storage unit a catalog row describes."""
    return KINDS[row["kind"]](row["name"], row["path"], home)


__all__ = ["KINDS", "ImageWriter", "ObjectReader", "StorageUnit", "StoredObject", "key_dir",
           "open_unit"]
