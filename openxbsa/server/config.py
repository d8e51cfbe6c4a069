"""Server configuration: the home directory layout and ``openxbsa.toml`` settings."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from typing import Any


from openxbsa.wire import default_address, default_home

__all__ = ["ConfigFileError", "ServerConfig", "Settings", "default_address", "default_home",
           "read_settings"]


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
        """The settings of ``HOME/openxbsa.toml`` (all optional). A file that is not TOML,
        an unknown section or key, or a value of the wrong type or out of range raises
        ConfigFileError naming the key: a typo must not quietly leave, say, redirected
        restores on or the session limit at its default."""
        home = os.path.abspath(home)
        path = os.path.join(home, "openxbsa.toml")
        settings = read_settings(path, KNOWN)
        get = Settings(path, settings)
        file_listen, file_catalog = get.text("", "listen"), get.text("", "catalog")
        return cls(
            home=home,
            listen=listen or file_listen or default_address(home),
            catalog_url=catalog_url or file_catalog
            or "sqlite:///" + os.path.join(home, "catalog.db"),
            allow_redirected_restore=get.flag("access", "redirected_restore", False),
            root_sees_all_users=get.flag("access", "root_sees_all_users", True),
            features=get.names("features", "enabled", ("DataStore",)),
            scheduler_interval=get.number("scheduler", "interval", 30.0, 0.01, 86400),
            max_jobs_per_client=get.count("scheduler", "max_jobs_per_client", 1, 1, 1000),
            backup_attempts=get.count("scheduler", "backup_attempts", 2, 1, 100),
            attempt_period=get.count("scheduler", "attempt_period", 12 * 3600, 1, 366 * 86400),
            retry_delay=get.count("scheduler", "retry_delay", 600, 0, 7 * 86400),
            max_sessions=get.count("limits", "max_sessions", 512, 1, 100_000),
            handshake_timeout=get.number("limits", "handshake_timeout", 30.0, 0.1, 3600),
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
                  "retry_delay"},
    "limits": {"max_sessions", "handshake_timeout"},
}


def read_settings(path: str, known: dict[str, set[str]]) -> dict[str, Any]:
    """A TOML settings file whose sections and keys must be among ``known`` (section ""
    for the top level); {} when there is no file; ConfigFileError otherwise."""
    try:
        with open(path, "rb") as f:
            settings = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror}") from None
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


class Settings:
    """Typed access to the file's values, each checked where it is read."""

    def __init__(self, path: str, settings: dict[str, Any]) -> None:
        self.path, self.settings = path, settings

    def _value(self, section: str, key: str) -> Any:
        table = self.settings if not section else self.settings.get(section, {})
        return table.get(key)

    def _where(self, section: str, key: str) -> str:
        return f"{self.path}: {f'[{section}] ' if section else ''}{key}"

    def text(self, section: str, key: str) -> str | None:
        value = self._value(section, key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigFileError(f"{self._where(section, key)} must be a non-empty string")
        return value

    def flag(self, section: str, key: str, default: bool) -> bool:
        value = self._value(section, key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigFileError(f"{self._where(section, key)} must be true or false, "
                                  f"not {value!r}")
        return value

    def number(self, section: str, key: str, default: float, low: float, high: float) -> float:
        return self._ranged(section, key, default, low, high, (int, float), "number")

    def count(self, section: str, key: str, default: int, low: int, high: int) -> int:
        return int(self._ranged(section, key, default, low, high, (int,), "whole number"))

    def _ranged(self, section: str, key: str, default: float, low: float, high: float,
                kinds: tuple[type, ...], what: str) -> float:
        value = self._value(section, key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
            raise ConfigFileError(f"{self._where(section, key)} must be a {what} from "
                                  f"{low:g} to {high:g}, not {value!r}")
        return value

    def names(self, section: str, key: str, default: tuple[str, ...],
              what: str = "names") -> tuple[str, ...]:
        value = self._value(section, key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigFileError(f"{self._where(section, key)} must be a list of {what}")
        return tuple(value)
