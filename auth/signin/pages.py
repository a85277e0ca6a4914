"""Responses of the sign-in routes: a small HTML page for browsers, JSON for API clients.

Every outcome has a stable English code (gateway.core.errors.ErrorCode or SIGNED_IN) and a
Russian message; browsers get a page showing the message, API clients the same shape
as the GraphQL endpoint's errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.metrics import note_error_code

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;
color:#1d2733;line-height:1.45}
h1{font-size:1.4rem}.code{color:#6b7785;font-size:.85rem}
form{display:grid;gap:.6rem;margin:1rem 0}input,button{font:inherit;padding:.5rem}
button,.button{background:#0d4cd3;color:#fff;border:0;border-radius:.3rem;cursor:pointer;
text-decoration:none;padding:.55rem 1rem;display:inline-block}
.error{background:#fdecea;border-left:4px solid #d32f2f;padding:.6rem .8rem}
"""


def html_page(title: str, body_html: str, *, status: int = 200) -> HTMLResponse:
    """A complete HTML page; `body_html` must already be escaped where it holds data."""
    page = (
        '<!doctype html><html lang="ru"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body_html}</body></html>"
    )
    return HTMLResponse(page, status_code=status)


def wants_html(request: Request) -> bool:
    """A browser navigation (Accept names text/html before any JSON type)."""
    accept = request.headers.get("accept", "")
    html = accept.find("text/html")
    json = accept.find("json")
    return html >= 0 and (json < 0 or html < json)


def error_body(code: ErrorCode, message: str | None = None) -> dict[str, object]:
    """The JSON shape of a failure, the same as the GraphQL endpoint's errors."""
    return {"errors": [{"message": message or MESSAGES[code], "extensions": {"code": code.value}}]}


def outcome_response(
    request: Request,
    code: ErrorCode,
    status: int,
    *,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A failed sign-in step: an HTML page for browsers, JSON for API clients."""
    note_error_code(request.scope, code.value)
    text = message or MESSAGES[code]
    if wants_html(request):
        body = (
            "<h1>Вход не выполнен</h1>"
            f'<p class="error">{escape(text)}</p>'
            f'<p class="code">Код: {escape(code.value)}</p>'
            '<p><a class="button" href="/auth/login">Вернуться ко входу</a></p>'
        )
        response: Response = html_page("Вход не выполнен", body, status=status)
    else:
        response = Response(
            orjson.dumps(error_body(code, text)),
            status_code=status,
            media_type="application/json",
        )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
