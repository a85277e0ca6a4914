"""The bundled ESIA-compatible development identity provider (dev mode only).

Mounted at /dev-idp inside the gateway when `settings.auth.dev_idp` (which
gateway.auth_settings refuses outside dev mode). It serves ESIA's endpoints with the
same parameters and claims: the authorization endpoint with a login page (SNILS or
phone + the demo password), the token endpoint (signed client secret, PKCE, id_token),
the person and contacts resources, and a JWKS for the id_token's signature. Its forms
are read as bounded streams (auth.bodies, 16 KiB): a larger body → 413.
"""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import OAuth2Error
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from auth.bodies import read_form
from auth.dev_idp.pages import error_page, login_page
from auth.dev_idp.persons import DEV_IDP_PASSWORD, DevPerson, dev_persons, find_person
from auth.dev_idp.server import DevAuthorizationServer, DevClient, Incoming
from auth.esia import (
    AUTHORIZE_PATH,
    CONTACTS_PATH,
    JWKS_PATH,
    PERSON_PATH,
    TOKEN_PATH,
    EsiaEndpoints,
)
from auth.services import AuthServices
from gateway.auth_settings import DEV_IDP_PATH
from gateway.errors import HttpError
from gateway.settings import Settings

__all__ = ["DEV_IDP_PASSWORD", "DevIdentityProvider", "dev_idp_routes"]

_FORM_FIELDS = frozenset({"login", "password", "action"})
_MAX_FORM_BYTES = 16384
_MAX_FORM_FIELDS = 40
_BAD_CREDENTIALS = "Неверный СНИЛС, телефон или пароль."


class DevIdentityProvider:
    """The handlers of the development identity provider."""

    def __init__(self, settings: Settings) -> None:
        auth = settings.auth
        self.base_url = auth.public_url + DEV_IDP_PATH
        self.persons: tuple[DevPerson, ...] = dev_persons(settings.today())
        self.server = DevAuthorizationServer(
            client=DevClient(auth.esia_client_id, auth.redirect_uri),
            persons=self.persons,
            issuer=EsiaEndpoints(self.base_url).issuer,
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Mount(
                DEV_IDP_PATH,
                routes=[
                    Route(AUTHORIZE_PATH, self.authorize, methods=["GET", "POST"]),
                    Route(TOKEN_PATH, self.token, methods=["POST"]),
                    Route(CONTACTS_PATH.replace("{oid}", "{oid:str}"), self.contacts),
                    Route(PERSON_PATH.replace("{oid}", "{oid:str}"), self.person),
                    Route(JWKS_PATH, self.jwks),
                ],
            )
        ]

    async def _incoming(self, request: Request, path: str) -> Incoming:
        form: dict[str, object] = {}
        if request.method == "POST":
            form = dict(
                await read_form(request, limit=_MAX_FORM_BYTES, max_fields=_MAX_FORM_FIELDS)
            )
        return Incoming(
            method=request.method,
            url=self.base_url + path,
            headers=dict(request.headers),
            query=dict(request.query_params),
            form={key: str(value) for key, value in form.items()},
        )

    async def authorize(self, request: Request) -> Response:
        try:
            incoming = await self._incoming(request, AUTHORIZE_PATH)
        except HttpError as error:
            return error_page(error.message, status=error.status)
        # The OAuth parameters: the query on GET, the form's hidden fields on POST.
        source = incoming.form if request.method == "POST" else incoming.query
        params = {k: v for k, v in source.items() if k not in _FORM_FIELDS}
        if not self.server.authorize_query_is_signed(params):
            return error_page("Подпись запроса клиента (client_secret) недействительна.")
        oauth = Incoming("GET", incoming.url, incoming.headers, params)
        try:
            grant = self.server.get_consent_grant(oauth)
        except OAuth2Error as error:
            return error_page(f"Некорректный запрос авторизации: {error.error}.")
        action = self.base_url + AUTHORIZE_PATH
        if request.method == "GET":
            return login_page(action=action, params=params, persons=self.persons)
        if incoming.form.get("action") == "deny":
            return self.server.create_authorization_response(oauth, grant_user=None, grant=grant)  # type: ignore[no-any-return]
        person = find_person(self.persons, incoming.form.get("login", ""))
        if person is None or incoming.form.get("password") != DEV_IDP_PASSWORD:
            return login_page(
                action=action, params=params, persons=self.persons, error=_BAD_CREDENTIALS
            )
        return self.server.create_authorization_response(oauth, grant_user=person, grant=grant)  # type: ignore[no-any-return]

    async def token(self, request: Request) -> Response:
        try:
            incoming = await self._incoming(request, TOKEN_PATH)
        except HttpError as error:
            body = {"error": "invalid_request", "error_description": error.code.value}
            return JSONResponse(body, status_code=error.status)
        return self.server.create_token_response(incoming)  # type: ignore[no-any-return]

    def _authorized(self, request: Request) -> DevPerson | None:
        person = self.server.person_of_token(request.headers.get("authorization"))
        if person is None or person.oid != request.path_params["oid"]:
            return None
        return person

    async def person(self, request: Request) -> Response:
        person = self._authorized(request)
        if person is None:
            return JSONResponse({"code": "ESIA-005", "message": "unauthorized"}, 401)
        return JSONResponse(person.person_json())

    async def contacts(self, request: Request) -> Response:
        person = self._authorized(request)
        if person is None:
            return JSONResponse({"code": "ESIA-005", "message": "unauthorized"}, 401)
        return JSONResponse(person.contacts_json())

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(self.server.jwks())


def dev_idp_routes(services: AuthServices) -> list[BaseRoute]:
    """The provider's routes when `settings.auth.dev_idp`, else none (404)."""
    if not services.settings.auth.dev_idp:
        return []
    return DevIdentityProvider(services.settings).routes()
