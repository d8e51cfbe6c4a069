"""Server configuration: the home directory layout and ``openxbsa.toml`` settings."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass


from openxbsa.wire import default_address, default_home

__all__ = ["ServerConfig", "default_address", "default_home"]


@dataclass
class ServerConfig:
    home: str
    listen: str
    catalog_url: str
    allow_redirected_restore: bool = False
    root_sees_all_users: bool = True
    features: tuple[str, ...] = ("DataStore",)   # licensed feature IDs (NBBSA_FEATURE_ID)
    scheduler_interval: float = 30.0             # seconds between schedule evaluations
    max_jobs_per_client: int = 1                 # NetBackup's default
    backup_attempts: int = 2                     # schedule backup attempts ...
    attempt_period: int = 12 * 3600              # ... per this many seconds
    retry_delay: int = 600                       # job retry delay, seconds
    max_sessions: int = 512                      # connections served at once
    handshake_timeout: float = 30.0              # seconds a peer has to complete BSAInit

    @classmethod
    def load(cls, home: str, listen: str | None = None, catalog_url: str | None = None
             ) -> ServerConfig:
        home = os.path.abspath(home)
        settings: dict = {}
        path = os.path.join(home, "openxbsa.toml")
        if os.path.exists(path):
            with open(path, "rb") as f:
                settings = tomllib.load(f)
        access = settings.get("access", {})
        return cls(
            home=home,
            listen=listen or settings.get("listen") or default_address(home),
            catalog_url=catalog_url or settings.get("catalog")
            or "sqlite:///" + os.path.join(home, "catalog.db"),
            allow_redirected_restore=bool(access.get("redirected_restore", False)),
            root_sees_all_users=bool(access.get("root_sees_all_users", True)),
            features=tuple(str(f) for f in settings.get("features", {}).get(
                "enabled", ["DataStore"])),
            scheduler_interval=float(settings.get("scheduler", {}).get("interval", 30.0)),
            max_jobs_per_client=int(settings.get("scheduler", {}).get("max_jobs_per_client", 1)),
            backup_attempts=int(settings.get("scheduler", {}).get("backup_attempts", 2)),
            attempt_period=int(settings.get("scheduler", {}).get("attempt_period", 12 * 3600)),
            retry_delay=int(settings.get("scheduler", {}).get("retry_delay", 600)),
            max_sessions=int(settings.get("limits", {}).get("max_sessions", 512)),
            handshake_timeout=float(settings.get("limits", {}).get("handshake_timeout", 30.0)),
        )

    @property
    def storage_path(self) -> str:
        return os.path.join(self.home, "storage", "disk-default")
