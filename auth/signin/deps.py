"""What the sign-in routes share: settings, the pool, the recorder (one per application)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from auth.store.audit import Recorder
from gateway.core.settings import Settings


@dataclass(slots=True)
class AuthServices:
    """Built by gateway.app.create_app; `pool()` is valid once the app has started."""

    settings: Settings
    pool: Callable[[], asyncpg.Pool]
    recorder: Recorder
