"""The catalog: images, objects, jobs and configuration in SQL (SQLite embedded, PostgreSQL later)."""

from openxbsa.catalog.store import Catalog, ObjectRow, QueryFilter, Scope

__all__ = ["Catalog", "ObjectRow", "QueryFilter", "Scope"]
