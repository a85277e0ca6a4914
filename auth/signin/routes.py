"""Every sign-in route of the gateway, gathered for gateway.app."""

from __future__ import annotations

from starlette.routing import BaseRoute

from auth.signin.client_routes import client_routes
from auth.signin.deps import AuthServices
from auth.signin.esia_routes import esia_routes
from auth.signin.password_routes import password_routes
from auth.signin.session_routes import session_routes


def auth_routes(services: AuthServices) -> list[BaseRoute]:
    """/auth/* and /oauth/token routes (the development identity provider is mounted by
    gateway.app, in dev mode only)."""
    routes: list[BaseRoute] = []
    routes += session_routes(services)
    routes += password_routes(services)
    routes += esia_routes(services)
    routes += client_routes(services)  # POST /oauth/token (machine clients)
    return routes
