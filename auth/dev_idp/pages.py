"""The development identity provider's login page (Russian, no JavaScript)."""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

from auth.dev_idp.persons import DEV_IDP_PASSWORD, DevPerson
from auth.pages import html_page
from fixtures import snils as snils_util

_TITLE = "Вход через Госуслуги — учебный поставщик"


def _hidden(params: dict[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in params.items()
    )


def _person_item(person: DevPerson, action: str, params: dict[str, str]) -> str:
    mobile = escape(person.mobile) if person.mobile else "нет"
    status = "подтверждённая" if person.trusted else "НЕ подтверждённая"
    return (
        f'<li><form method="post" action="{escape(action)}">{_hidden(params)}'
        f'<input type="hidden" name="login" value="{escape(person.snils)}">'
        f'<input type="hidden" name="password" value="{escape(DEV_IDP_PASSWORD)}">'
        f'<button name="action" value="login">{escape(person.full_name)}</button></form>'
        f"<small>{escape(person.description)}. СНИЛС {escape(snils_util.formatted(person.snils))}, "
        f"телефон {mobile}, учётная запись {status}.</small></li>"
    )


def login_page(
    *,
    action: str,
    params: dict[str, str],
    persons: tuple[DevPerson, ...],
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The login form (SNILS or phone + password) and one-click demo persons."""
    error_html = f'<p class="error">{escape(error)}</p>' if error else ""
    items = "".join(_person_item(person, action, params) for person in persons)
    body = (
        f"<h1>{escape(_TITLE)}</h1>"
        "<p>Это учебный поставщик удостоверений, совместимый с ЕСИА. Он работает только "
        "в режиме разработки и знает лишь демонстрационных пользователей. "
        f"Пароль у всех: <code>{escape(DEV_IDP_PASSWORD)}</code>.</p>"
        f"{error_html}"
        f'<form id="login-form" method="post" action="{escape(action)}">{_hidden(params)}'
        "<label>СНИЛС или номер мобильного телефона<br>"
        '<input name="login" autocomplete="username" required></label>'
        '<label>Пароль<br><input type="password" name="password" '
        'autocomplete="current-password"></label>'
        '<button name="action" value="login">Войти</button>'
        '<button name="action" value="deny" formnovalidate>Отказать в доступе</button>'
        "</form>"
        f"<h2>Демонстрационные пользователи</h2><ul>{items}</ul>"
    )
    return html_page(_TITLE, body, status=status)


def error_page(message: str, status: int = 400) -> HTMLResponse:
    body = f'<h1>Ошибка запроса авторизации</h1><p class="error">{escape(message)}</p>'
    return html_page(_TITLE, body, status=status)
