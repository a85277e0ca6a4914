"""Who the gateway is in the database: its least-privilege login role.

The gateway connects as a role that can log in and nothing else: not a superuser, no
CREATEROLE/CREATEDB/REPLICATION/BYPASSRLS, a member of no role (so `SET ROLE` and
`SET SESSION AUTHORIZATION` to anyone else fail), with the grants of gateway/migrations/roles.sql.
The schema owner (a superuser in the embedded server) is used only to seed and migrate.

Here: the SCRAM verifier of a password (what `ALTER ROLE ... PASSWORD` is given, so the
password itself never reaches the server's logs), secrets kept in the data folder, DSNs
with other credentials, and the check of whom a DSN logs in as.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)

SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)
_SECRET_BYTES = 32
_VERIFIER_RE = re.compile(r"^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")


class UnsafeLoginError(RuntimeError):
    """A DSN the gateway would serve with logs in as a superuser."""


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, 7677)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def set_password_sql(role: str, password: str) -> str:
    """`ALTER ROLE role PASSWORD '<verifier>'` (utility statements take no parameters; the
    verifier is base64 and punctuation only, checked before it is quoted)."""
    verifier = scram_verifier(password)
    if not _VERIFIER_RE.match(verifier) or '"' in role:
        raise ValueError("unexpected characters in a role name or verifier")
    return f"ALTER ROLE \"{role}\" PASSWORD '{verifier}'"


def read_or_create_secret(path: Path) -> str:
    """The secret kept in `path` (mode 0600), generated on first use.

    Created atomically (written aside, then linked into place), so processes starting at
    once all end up with the one secret that won.
    """
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        secret = ""
    if secret:
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(secrets.token_urlsafe(_SECRET_BYTES))
    try:
        os.link(aside, path)
    except FileExistsError:
        pass  # another process was first: use its secret
    finally:
        aside.unlink()
    return path.read_text(encoding="utf-8").strip()


def with_credentials(url: str, user: str, password: str) -> str:
    """`url` with its user and password replaced (host, port, database and options kept)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class LoginIdentity:
    """Whom a connection logged in as, and what that role could become."""

    user: str
    superuser: bool
    member_of: tuple[str, ...]


_IDENTITY_SQL = """
SELECT r.rolname AS "user", r.rolsuper AS superuser,
       coalesce(array_agg(g.rolname ORDER BY g.rolname) FILTER (WHERE g.rolname IS NOT NULL),
                '{}') AS member_of
FROM pg_roles r
LEFT JOIN pg_auth_members m ON m.member = r.oid
LEFT JOIN pg_roles g ON g.oid = m.roleid
WHERE r.rolname = session_user
GROUP BY r.rolname, r.rolsuper
"""


async def login_identity(conn: asyncpg.Connection) -> LoginIdentity:
    """The session user of `conn`: superuser or not, and the roles it is a member of."""
    row = await conn.fetchrow(_IDENTITY_SQL)
    assert row is not None
    return LoginIdentity(row["user"], row["superuser"], tuple(row["member_of"]))


def role_to_set(identity: LoginIdentity, gateway_role: str) -> str | None:
    """None when the DSN logs in as the gateway's role (nothing to switch). A superuser
    is refused. Any other login (an older deployment's owner DSN) still works, with a
    warning: its sessions switch to the gateway's role with SET ROLE and could switch back.
    """
    if identity.superuser:
        raise UnsafeLoginError(
            f"the database URL logs in as {identity.user!r}, a superuser: the gateway "
            f"connects only as its least-privilege login role {gateway_role!r} "
            "(create it with `school-gateway migrate` and DATABASE_OWNER_URL, "
            "see docs/read-contract.md)"
        )
    if identity.user == gateway_role:
        if identity.member_of:
            log.warning(
                "the gateway's role %s is a member of %s and could switch to it with SET "
                "ROLE; `school-gateway migrate` revokes the memberships",
                gateway_role,
                ", ".join(identity.member_of),
            )
        return None
    log.warning(
        "the database URL logs in as %s, not as the gateway's login role %s: sessions "
        "switch to it with SET ROLE and could switch back (docs/read-contract.md)",
        identity.user,
        gateway_role,
    )
    return gateway_role
