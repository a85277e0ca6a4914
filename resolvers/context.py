"""The per-request context every resolver receives as `info.context`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import asyncpg

from auth.viewer import Viewer
from gateway.core.errors import UnauthenticatedError
from gateway.core.settings import Settings
from resolvers.services import AppServices

if TYPE_CHECKING:
    from resolvers.diary.loaders import Loaders


@dataclass(slots=True)
class Context:
    """Built once per request by the HTTP layer; loaders are never shared between requests."""

    viewer: Viewer | None
    loaders: Loaders
    pool: asyncpg.Pool
    settings: Settings
    today: date
    app: AppServices = field(default_factory=AppServices)

    def require_viewer(self) -> Viewer:
        """The authenticated viewer, or UNAUTHENTICATED."""
        if self.viewer is None:
            raise UnauthenticatedError()
        return self.viewer
