"""Storage units: the interface in ``base`` and one module per kind, registered in KINDS."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from openxbsa.storage.base import ImageWriter, ObjectReader, StorageUnit, StoredObject
from openxbsa.storage.dedup import DedupStorageUnit
from openxbsa.storage.disk import DiskStorageUnit

KINDS: dict[str, Callable[..., StorageUnit]] = {
    "disk": DiskStorageUnit,
    "dedup": DedupStorageUnit,
}


def open_unit(row: Mapping[str, Any], home: str) -> StorageUnit:
    """The storage unit a catalog row describes; keys a kind needs live in ``home/keys``."""
    kind = row["kind"]
    if kind == "dedup":
        return DedupStorageUnit(row["name"], row["path"], key_dir=os.path.join(home, "keys"))
    return KINDS[kind](row["name"], row["path"])


__all__ = ["KINDS", "ImageWriter", "ObjectReader", "StorageUnit", "StoredObject", "open_unit"]
