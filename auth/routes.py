"""Every sign-in route of the gateway, gathered for gateway.app."""

from __future__ import annotations

from starlette.routing import BaseRoute

from auth.client_routes import client_routes
from auth.dev_idp import dev_idp_routes
from auth.esia_routes import esia_routes
from auth.password_routes import password_routes
from auth.services import AuthServices
from auth.session_routes import session_routes


def auth_routes(services: AuthServices) -> list[BaseRoute]:
    """/auth/* routes, plus the development identity provider in dev mode."""
    routes: list[BaseRoute] = []
    # Filled in by the sign-in modules: esia_routes, password_routes, session_routes,
    # dev_idp_routes (only when services.settings.auth.dev_idp).
    routes += session_routes(services)
    routes += password_routes(services)
    routes += esia_routes(services)
    routes += dev_idp_routes(services)
    routes += client_routes(services)  # POST /oauth/token (machine clients)
    return routes
