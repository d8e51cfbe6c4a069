"""Server configuration: the home directory layout and ``openxbsa.toml`` settings."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from typing import Any


from openxbsa.wire import PEER_TIMEOUT, default_address, default_home

KEEP_JOBS_HOURS = 78        # NetBackup's KEEP_JOBS_HOURS default
STOP_GRACE = 10.0           # seconds a stopping server waits for its sessions to end

__all__ = ["ConfigFileError", "Fields", "ServerConfig", "Settings", "default_address",
           "default_home", "load_toml", "read_settings"]


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
    keep_jobs_hours: int = KEEP_JOBS_HOURS       # finished jobs kept this long (bpdbjobs -clean)
    max_sessions: int = 512                      # connections served at once
    handshake_timeout: float = 30.0              # seconds a peer has to complete BSAInit
    peer_timeout: float = PEER_TIMEOUT           # seconds a TCP peer may stop answering
    stop_grace: float = STOP_GRACE               # seconds a stopping server waits for sessions

    @classmethod
    def load(cls, home: str, listen: str | None = None, catalog_url: str | None = None
             ) -> ServerConfig:
        """The settings of ``HOME/openxbsa.toml`` (all optional). A file that is not TOML,
        an unknown section or key, or a value of the wrong type or out of range raises
        ConfigFileError naming the key: a typo must not quietly leave, say, redirected
        restores on or the session limit at its default."""
        home = os.path.abspath(home)
        path = os.path.join(home, "openxbsa.toml")
        get = Settings(path, read_settings(path, KNOWN)).section
        top, access, scheduler, limits = get(""), get("access"), get("scheduler"), get("limits")
        # both read (and so checked) even when the command line overrides them
        file_listen, file_catalog = top.text("listen"), top.text("catalog")
        return cls(
            home=home,
            listen=listen or file_listen or default_address(home),
            catalog_url=catalog_url or file_catalog
            or "sqlite:///" + os.path.join(home, "catalog.db"),
            allow_redirected_restore=access.flag("redirected_restore", False),
            root_sees_all_users=access.flag("root_sees_all_users", True),
            features=get("features").names("enabled", ("DataStore",)),
            scheduler_interval=scheduler.number("interval", 30.0, 0.01, 86400),
            max_jobs_per_client=scheduler.count("max_jobs_per_client", 1, 1, 1000),
            backup_attempts=scheduler.count("backup_attempts", 2, 1, 100),
            attempt_period=scheduler.count("attempt_period", 12 * 3600, 1, 366 * 86400),
            retry_delay=scheduler.count("retry_delay", 600, 0, 7 * 86400),
            keep_jobs_hours=scheduler.count("keep_jobs_hours", KEEP_JOBS_HOURS, 1, 87600),
            max_sessions=limits.count("max_sessions", 512, 1, 100_000),
            handshake_timeout=limits.number("handshake_timeout", 30.0, 0.1, 3600),
            peer_timeout=limits.number("peer_timeout", PEER_TIMEOUT, 1, 86400),
            stop_grace=limits.number("stop_grace", STOP_GRACE, 0, 3600),
        )

    @property
    def storage_path(self) -> str:
        return os.path.join(self.home, "storage", "disk-default")


class ConfigFileError(ValueError):
    """openxbsa.toml cannot be used as it is (the message names the file and the key)."""


# section ("" for the top level) -> the keys it may hold
KNOWN = {
    "": {"listen", "catalog"},
    "access": {"redirected_restore", "root_sees_all_users"},
    "features": {"enabled"},
    "scheduler": {"interval", "max_jobs_per_client", "backup_attempts", "attempt_period",
                  "retry_delay", "keep_jobs_hours"},
    "limits": {"max_sessions", "handshake_timeout", "peer_timeout", "stop_grace"},
}


def load_toml(path: str) -> dict[str, Any]:
    """The TOML file at ``path``; ConfigFileError when it cannot be read or parsed (a missing
    file raises FileNotFoundError, which callers treat as they see fit)."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror}") from None


def read_settings(path: str, known: dict[str, set[str]]) -> dict[str, Any]:
    """A TOML settings file whose sections and keys must be among ``known`` (section ""
    for the top level); {} when there is no file; ConfigFileError otherwise."""
    try:
        settings = load_toml(path)
    except FileNotFoundError:
        return {}
    for key, value in settings.items():
        if key in known and key:
            if not isinstance(value, dict):
                raise ConfigFileError(f"{path}: [{key}] must be a section")
            unknown = set(value) - known[key]
            if unknown:
                raise ConfigFileError(f"{path}: unknown keys in [{key}]: "
                                      f"{', '.join(sorted(unknown))} (known: "
                                      f"{', '.join(sorted(known[key]))})")
        elif key not in known.get("", set()):
            sections = ", ".join(sorted(k for k in known if k)) or "none"
            raise ConfigFileError(f"{path}: unknown setting {key!r} (sections: {sections}; "
                                  f"top-level keys: {', '.join(sorted(known.get('', ())))})")
    return settings


class Fields:
    """Typed access to the values of one TOML table, each checked where it is read: a value
    of the wrong type or out of range raises ConfigFileError that names ``where`` (the file
    and section, or the policy or storage unit of a configuration file) and the key."""

    def __init__(self, where: str, table: dict[str, Any]) -> None:
        self.where, self.table = where, table

    def _bad(self, key: str, must: str) -> ConfigFileError:
        return ConfigFileError(f"{self.where}{key} must be {must}")

    def text(self, key: str, default: str | None = None, empty: bool = False) -> str | None:
        value = self.table.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not (value or empty):
            raise self._bad(key, "a string" if empty else "a non-empty string")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.table.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._bad(key, f"true or false, not {value!r}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        return self._ranged(key, default, low, high, (int, float), "number")

    def count(self, key: str, default: int, low: int, high: int) -> int:
        return int(self._ranged(key, default, low, high, (int,), "whole number"))

    def _ranged(self, key: str, default: float, low: float, high: float,
                kinds: tuple[type, ...], what: str) -> float:
        value = self.table.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
            raise self._bad(key, f"a {what} from {low:g} to {high:g}, not {value!r}")
        return value

    def names(self, key: str, default: tuple[str, ...] = (),
              what: str = "names") -> tuple[str, ...]:
        value = self.table.get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._bad(key, f"a list of {what}")
        return tuple(value)

    def tables(self, key: str, allowed: set[str]) -> list[dict[str, Any]]:
        """The array of tables ``[[key]]`` (none when absent), each holding only keys of
        ``allowed``."""
        tables = self.table.get(key, [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise self._bad(key, f"a list of tables ([[{key}]])")
        for t in tables:
            unknown = set(t) - allowed
            if unknown:
                raise ConfigFileError(f"{self.where}[[{key}]] {t.get('name', '?')!r}: unknown "
                                      f"keys {', '.join(sorted(unknown))}")
        return tables


class Settings:
    """The sections of a settings file read by ``read_settings``."""

    def __init__(self, path: str, settings: dict[str, Any]) -> None:
        self.path, self.settings = path, settings

    def section(self, name: str) -> Fields:
        """The section ``[name]`` ("" for the top-level keys)."""
        if not name:
            return Fields(f"{self.path}: ", self.settings)
        return Fields(f"{self.path}: [{name}] ", self.settings.get(name, {}))
