"""Schema assembly: the strawberry schema the HTTP layer serves, and its SDL."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig

from gateway.core.settings import Settings
from gateway.execution.settling import SettlingExecutionContext
from resolvers.analytics.queries import AnalyticsQuery
from resolvers.changes.queries import ChangesQuery, Subscription
from resolvers.changes.types import EVENT_TYPES, SCALARS
from resolvers.common.scalars import DATE_SCALARS
from resolvers.dashboard.queries import DashboardQuery
from resolvers.diary.queries import Query as FamilyQuery


# The root Query: one base class per domain (families' diaries; school dashboards and
# regional analytics add theirs as further bases).
@strawberry.type(description="Diary queries for families; school and regional queries for staff.")
class Query(FamilyQuery, ChangesQuery, DashboardQuery, AnalyticsQuery):
    pass


Extension = type[SchemaExtension] | SchemaExtension
ExtensionFactory = Callable[[], SchemaExtension]


def _factory(extension: Extension) -> type[SchemaExtension] | ExtensionFactory:
    """Strawberry wants classes or factories; an instance is wrapped (and shared)."""
    if isinstance(extension, SchemaExtension):
        return lambda: extension
    return extension


def _assemble(extensions: Sequence[Extension]) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        subscription=Subscription,
        types=EVENT_TYPES,
        config=StrawberryConfig(scalar_map={**DATE_SCALARS, **SCALARS}),
        extensions=[_factory(ext) for ext in extensions],
        # Sibling work is settled, never cancelled before it starts (gateway.execution.settling).
        execution_context_class=SettlingExecutionContext,
    )


def build_schema(settings: Settings, *, extensions: Sequence[Extension] = ()) -> strawberry.Schema:
    """The served schema; `extensions` (limits, masking, introspection) never change its SDL.

    `settings` is accepted so that schema-level options can follow configuration; the
    types themselves do not depend on it (per-request values come from the Context).
    """
    del settings
    return _assemble(extensions)


def served_schema() -> strawberry.Schema:
    """The served schema without extensions (what the SDL and schema checks read)."""
    return _assemble(())


def export_sdl() -> str:
    """The schema's SDL as committed in `schema.graphql` (ends with a newline)."""
    return _assemble(()).as_str().rstrip("\n") + "\n"
