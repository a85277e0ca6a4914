"""Where the database is, and the gateway's login role made ready on it.

With DATABASE_URL, the DSN the operator gives (DATABASE_OWNER_URL, or else DATABASE_URL, is
the owner's, for `seed` and `migrate`); on the embedded server, the role is created or
brought up to date at every start and its password kept in the data folder.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from gateway.core import embedded
from gateway.core.db_roles import read_or_create_secret, with_credentials
from gateway.core.settings import Settings
from gateway.migrations.apply import ensure_login_role

# Next to the embedded server's data: the gateway's database password (mode 0600).
GATEWAY_PASSWORD_FILE = "db-gateway-password"


@dataclass(frozen=True, slots=True)
class DatabaseLocation:
    """Where the database is: the gateway's login DSN (`url`: serving and the commands
    that act as the gateway), the owner's (`owner_url`: seeding and migrations), and the
    embedded server when there is one."""

    url: str
    owner_url: str
    server: embedded.EmbeddedServer | None


def locate_database(settings: Settings) -> DatabaseLocation:
    """`DATABASE_URL` when set, otherwise the embedded server (started if needed), whose
    login role is created or updated and given the password kept in its data folder.

    Blocking (it may start a server): call it from a thread when an event loop runs."""
    if settings.database_url is not None:
        owner = settings.database_owner_url or settings.database_url
        return DatabaseLocation(url=settings.database_url, owner_url=owner, server=None)
    server = embedded.start(settings.data_dir)
    url = asyncio.run(embedded_login(server, settings.gateway_role))
    return DatabaseLocation(url=url, owner_url=server.url, server=server)


async def embedded_login(server: embedded.EmbeddedServer, gateway_role: str) -> str:
    """The login DSN of the gateway's role on the embedded server (role made ready)."""
    password = read_or_create_secret(server.data_dir / GATEWAY_PASSWORD_FILE)
    return await prepare_login(server.url, gateway_role, password)


async def prepare_login(owner_url: str, gateway_role: str, password: str) -> str:
    """Create or update the login role with `password` (as the owner); its DSN."""
    conn = await asyncpg.connect(owner_url)
    try:
        await ensure_login_role(conn, gateway_role=gateway_role, gateway_password=password)
    finally:
        await conn.close()
    return with_credentials(owner_url, gateway_role, password)
