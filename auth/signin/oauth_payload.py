"""authlib's request payload over parameters already read (its servers are synchronous).

Shared by the client-credentials endpoint (auth.signin.client_routes) and the development
identity provider (fixtures.dev_idp.server): each reads the request body first, then hands
authlib a payload of single-valued string parameters.
"""

from __future__ import annotations

from authlib.oauth2.rfc6749 import OAuth2Payload


class DictPayload(OAuth2Payload):  # type: ignore[misc]
    """An OAuth 2.0 payload of single-valued parameters."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return self._values

    @property
    def datalist(self) -> dict[str, list[str]]:
        return {key: [value] for key, value in self._values.items()}
