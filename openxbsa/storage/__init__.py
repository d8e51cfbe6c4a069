"""Storage units: the interface in ``base`` and one module per kind, registered in KINDS."""

from __future__ import annotations

from collections.abc import Callable

from openxbsa.storage.base import ImageWriter, ObjectReader, StorageUnit, StoredObject
from openxbsa.storage.disk import DiskStorageUnit

KINDS: dict[str, Callable[..., StorageUnit]] = {
    "disk": DiskStorageUnit,
}

__all__ = ["KINDS", "ImageWriter", "ObjectReader", "StorageUnit", "StoredObject"]
