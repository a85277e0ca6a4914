"""Every sign-in route of the gateway, gathered for gateway.app."""

from __future__ import annotations

from starlette.routing import BaseRoute

from auth.services import AuthServices


def auth_routes(services: AuthServices) -> list[BaseRoute]:
    """/auth/* routes, plus the development identity provider in dev mode."""
    routes: list[BaseRoute] = []
    # Filled in by the sign-in modules: esia_routes, password_routes, session_routes,
    # dev_idp_routes (only when services.settings.auth.dev_idp).
    return routes
