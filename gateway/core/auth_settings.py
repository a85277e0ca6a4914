"""Sign-in and session settings (`settings.auth`), read with the rest at start.

The development identity provider can only be switched on in dev mode: a production
configuration that sets SCHOOL_GATEWAY_DEV_IDP=1 by mistake fails at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.core.settings_readers import SettingsError, read_bool, read_int, read_url

DEV_IDP_PATH = "/dev-idp"
DEV_ESIA_CLIENT_ID = "school-gateway-dev"
DEFAULT_ESIA_SCOPE = "openid fullname birthdate snils mobile"
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Everything sign-in, sessions and throttling need. Build with `from_env`."""

    # The gateway's external base URL (redirect URI, Origin check, Secure cookies).
    public_url: str = "http://127.0.0.1:8000"
    # Origins allowed to POST /graphql with a cookie session (CSRF defence).
    allowed_origins: frozenset[str] = frozenset({"http://127.0.0.1:8000"})
    # The bundled ESIA-compatible identity provider, mounted at DEV_IDP_PATH (dev only).
    dev_idp: bool = False
    # ESIA (or the dev provider): base URL; None disables ESIA sign-in.
    esia_url: str | None = None
    esia_client_id: str = DEV_ESIA_CLIENT_ID
    esia_scope: str = DEFAULT_ESIA_SCOPE
    # ESIA requires a GOST signature of the client secret: an external command
    # (reads the text to sign on stdin, writes the base64url signature to stdout)
    # or an HTTP signer (POST text → signature). The dev provider accepts neither set.
    esia_signer_command: str | None = None
    esia_signer_url: str | None = None
    # ESIA: the hash of the client's certificate (client_certificate_hash parameter).
    esia_certificate_hash: str | None = None
    esia_timeout_seconds: int = 10
    # Sessions and tokens.
    access_ttl_seconds: int = 900
    refresh_ttl_seconds: int = 30 * 86400
    session_ttl_seconds: int = 12 * 3600
    session_cookie: str = "sg_session"
    cookie_secure: bool = False
    # Throttling of password sign-in (auth/store/throttle.py, docs/sign-in.md): failures per
    # login from untrusted clients and per device cookie before a lock; failures per
    # client address before its attempts are delayed (an address is never locked);
    # the longest delay; the device cookie's lifetime.
    login_max_failures: int = 5
    device_max_failures: int = 5
    address_free_failures: int = 30
    max_delay_ms: int = 2000
    failure_window_seconds: int = 900
    lockout_seconds: int = 900
    device_cookie_ttl_seconds: int = 180 * 86400
    # Starts of ESIA sign-in (GET /auth/esia/login) per client address and minute.
    esia_starts_per_minute: int = 120

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        dev_mode: bool,
        host: str,
        port: int,
    ) -> AuthSettings:
        """Read and validate the sign-in variables (`SettingsError` names a bad one).

        `dev_mode`, `host` and `port` are the main settings' (the public URL's default).
        """
        public_url = read_url(env, "SCHOOL_GATEWAY_PUBLIC_URL", None) or f"http://{host}:{port}"
        dev_idp = read_bool(env, "SCHOOL_GATEWAY_DEV_IDP", default=dev_mode)
        if dev_idp and not dev_mode:
            raise SettingsError(
                "SCHOOL_GATEWAY_DEV_IDP is only allowed in dev mode (SCHOOL_GATEWAY_DEV=1); "
                "production uses the real ESIA (SCHOOL_GATEWAY_ESIA_URL)"
            )
        default_esia = public_url + DEV_IDP_PATH if dev_idp else None
        esia_url = read_url(env, "SCHOOL_GATEWAY_ESIA_URL", default_esia)
        signer_command = env.get("SCHOOL_GATEWAY_ESIA_SIGNER_COMMAND") or None
        signer_url = read_url(env, "SCHOOL_GATEWAY_ESIA_SIGNER_URL", None)
        if signer_command and signer_url:
            raise SettingsError(
                "set either SCHOOL_GATEWAY_ESIA_SIGNER_COMMAND or "
                "SCHOOL_GATEWAY_ESIA_SIGNER_URL, not both"
            )
        using_dev_idp = dev_idp and esia_url == default_esia
        if esia_url is not None and not using_dev_idp and not (signer_command or signer_url):
            raise SettingsError(
                "real ESIA needs a signer of the client secret: set "
                "SCHOOL_GATEWAY_ESIA_SIGNER_COMMAND or SCHOOL_GATEWAY_ESIA_SIGNER_URL"
            )
        client_id = env.get("SCHOOL_GATEWAY_ESIA_CLIENT_ID", "")
        if esia_url is not None and not using_dev_idp and not client_id:
            raise SettingsError("SCHOOL_GATEWAY_ESIA_CLIENT_ID is required for real ESIA")
        if "SCHOOL_GATEWAY_ADDRESS_MAX_FAILURES" in env:
            raise SettingsError(
                "SCHOOL_GATEWAY_ADDRESS_MAX_FAILURES is gone: a client address is never locked "
                "any more, only slowed down; set SCHOOL_GATEWAY_ADDRESS_FREE_FAILURES (failures "
                "before delays start) instead"
            )
        origins = _origins(env, public_url)
        return cls(
            public_url=public_url,
            allowed_origins=origins,
            dev_idp=dev_idp,
            esia_url=esia_url,
            esia_client_id=client_id or DEV_ESIA_CLIENT_ID,
            esia_scope=env.get("SCHOOL_GATEWAY_ESIA_SCOPE", DEFAULT_ESIA_SCOPE),
            esia_signer_command=signer_command,
            esia_signer_url=signer_url,
            esia_certificate_hash=env.get("SCHOOL_GATEWAY_ESIA_CERTIFICATE_HASH") or None,
            esia_timeout_seconds=read_int(env, "SCHOOL_GATEWAY_ESIA_TIMEOUT", 10, low=1, high=120),
            access_ttl_seconds=read_int(env, "SCHOOL_GATEWAY_JWT_TTL", 900, low=60, high=86400),
            refresh_ttl_seconds=read_int(
                env, "SCHOOL_GATEWAY_REFRESH_TTL", 30 * 86400, low=3600, high=366 * 86400
            ),
            session_ttl_seconds=read_int(
                env, "SCHOOL_GATEWAY_SESSION_TTL", 12 * 3600, low=300, high=30 * 86400
            ),
            session_cookie=env.get("SCHOOL_GATEWAY_SESSION_COOKIE", "sg_session"),
            cookie_secure=read_bool(
                env, "SCHOOL_GATEWAY_COOKIE_SECURE", default=not _is_local(public_url)
            ),
            login_max_failures=read_int(
                env, "SCHOOL_GATEWAY_LOGIN_MAX_FAILURES", 5, low=1, high=1000
            ),
            device_max_failures=read_int(
                env, "SCHOOL_GATEWAY_DEVICE_MAX_FAILURES", 5, low=1, high=1000
            ),
            address_free_failures=read_int(
                env, "SCHOOL_GATEWAY_ADDRESS_FREE_FAILURES", 30, low=0, high=100000
            ),
            max_delay_ms=read_int(
                env, "SCHOOL_GATEWAY_SIGN_IN_MAX_DELAY_MS", 2000, low=0, high=30000
            ),
            failure_window_seconds=read_int(
                env, "SCHOOL_GATEWAY_FAILURE_WINDOW", 900, low=10, high=86400
            ),
            lockout_seconds=read_int(env, "SCHOOL_GATEWAY_LOCKOUT", 900, low=1, high=86400),
            device_cookie_ttl_seconds=read_int(
                env, "SCHOOL_GATEWAY_DEVICE_COOKIE_TTL", 180 * 86400, low=3600, high=400 * 86400
            ),
            esia_starts_per_minute=read_int(
                env, "SCHOOL_GATEWAY_ESIA_STARTS_PER_MINUTE", 120, low=1, high=100000
            ),
        )

    @property
    def redirect_uri(self) -> str:
        """Where ESIA sends the browser back (must be registered with ESIA)."""
        return self.public_url + "/auth/esia/callback"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _origins(env: Mapping[str, str], public_url: str) -> frozenset[str]:
    """The public URL's origin and SCHOOL_GATEWAY_ALLOWED_ORIGINS (http(s) URLs), lower-cased.

    An entry that is not an http(s) URL (`app.example.ru` without a scheme) would never
    match a browser's Origin: refused at start rather than silently ignored.
    """
    name = "SCHOOL_GATEWAY_ALLOWED_ORIGINS"
    items = [item.strip() for item in env.get(name, "").split(",") if item.strip()]
    extra: set[str] = set()
    for item in items:
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(f"{name}: {item!r} is not an http(s) origin")
        extra.add(_origin(item))
    return frozenset(origin.lower() for origin in (_origin(public_url), *extra))


def _is_local(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOCAL_HOSTS
