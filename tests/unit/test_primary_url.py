"""The analytics' primary DSN is located once per process, not on every refresh."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import gateway.app as app_module
from gateway.core.settings import Settings
from gateway.migrations.location import DatabaseLocation


async def test_the_embedded_primary_is_located_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[Settings] = []

    def locate(settings: Settings) -> DatabaseLocation:
        calls.append(settings)
        return DatabaseLocation(url="postgresql://login@127.0.0.1:1/db", owner_url="", server=None)

    monkeypatch.setattr(app_module, "locate_database", locate)
    settings = Settings.from_env(
        {"SCHOOL_GATEWAY_DEV": "1", "SCHOOL_GATEWAY_DATA_DIR": str(tmp_path)}
    )
    settings = dataclasses.replace(settings, database_url=None)
    primary_url = app_module._primary_url(settings)
    urls = [await primary_url() for _ in range(3)]
    assert urls == ["postgresql://login@127.0.0.1:1/db"] * 3
    assert len(calls) == 1
