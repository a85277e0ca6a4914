"""Validated readers of one environment variable each, and the error every settings part raises.

Every part of the settings (gateway.core.settings, auth_settings, analytics_settings) reads
its variables from the same mapping with these functions; a bad value raises
`SettingsError` with a one-line message naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def read_bool(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    """1/true/yes/on or 0/false/no/off (any case); unset or empty: `default`."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def read_int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    """An integer in [low, high]; unset or empty: `default`."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def read_choice(
    env: Mapping[str, str], name: str, options: Mapping[str, T], *, default: T, expected: str
) -> T:
    """One of `options`' keys (trimmed, any case), mapped to its value; unset or blank: `default`.

    A value not among them raises "`name` must be `expected`, not '<value>'".
    """
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value not in options:
        raise SettingsError(f"{name} must be {expected}, not {value!r}")
    return options[value]


def read_dsn(env: Mapping[str, str], name: str) -> str | None:
    """A PostgreSQL DSN (postgresql:// or postgres://); unset or empty: None."""
    dsn = env.get(name) or None
    if dsn is not None and not dsn.startswith(_POSTGRES_SCHEMES):
        raise SettingsError(f"{name} must start with postgresql:// or postgres://")
    return dsn


def read_url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    """An http(s) URL without its trailing slash; unset or empty: `default`."""
    raw = env.get(name)
    if not raw:
        return default
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")
