"""Errors the API reports: a stable English `extensions.code` and a Russian message."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from graphql import GraphQLError


class ErrorCode(enum.StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    DATE_RANGE_REVERSED = "DATE_RANGE_REVERSED"
    DATE_RANGE_TOO_LONG = "DATE_RANGE_TOO_LONG"
    DATE_OUT_OF_RANGE = "DATE_OUT_OF_RANGE"
    LIMIT_OUT_OF_RANGE = "LIMIT_OUT_OF_RANGE"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
    TOO_MANY_ALIASES = "TOO_MANY_ALIASES"
    TOO_MANY_TOKENS = "TOO_MANY_TOKENS"
    BAD_REQUEST = "BAD_REQUEST"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE"
    TIMEOUT = "TIMEOUT"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    # Sign-in and sessions. Also the outcome codes of recorded sign-in events.
    ESIA_NOT_CONFIGURED = "ESIA_NOT_CONFIGURED"
    ESIA_UNAVAILABLE = "ESIA_UNAVAILABLE"
    ESIA_DENIED = "ESIA_DENIED"
    ESIA_STATE_MISMATCH = "ESIA_STATE_MISMATCH"
    ESIA_ACCOUNT_NOT_CONFIRMED = "ESIA_ACCOUNT_NOT_CONFIRMED"
    NOT_IN_REGISTRY = "NOT_IN_REGISTRY"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    STUDENT_MUST_USE_ESIA = "STUDENT_MUST_USE_ESIA"
    SIGN_IN_LOCKED = "SIGN_IN_LOCKED"
    REFRESH_TOKEN_INVALID = "REFRESH_TOKEN_INVALID"
    SESSION_REVOKED = "SESSION_REVOKED"
    CSRF_REJECTED = "CSRF_REJECTED"
    # Machine clients (OAuth client credentials) and query cost limits.
    INVALID_CLIENT = "INVALID_CLIENT"
    INVALID_SCOPE = "INVALID_SCOPE"
    UNSUPPORTED_GRANT_TYPE = "UNSUPPORTED_GRANT_TYPE"
    CLIENT_REVOKED = "CLIENT_REVOKED"
    QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
    # Regional analytics.
    RATE_LIMITED = "RATE_LIMITED"
    # Refused documents, bodies and outages.
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    # Trusted documents (gateway.http.persisted).
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_HASH_MISMATCH = "PERSISTED_QUERY_HASH_MISMATCH"
    DOCUMENT_NOT_REGISTERED = "DOCUMENT_NOT_REGISTERED"
    # The change feed (resolvers.changes, gateway.http.streams).
    CURSOR_EXPIRED = "CURSOR_EXPIRED"
    SLOW_CONSUMER = "SLOW_CONSUMER"
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"


MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.UNAUTHENTICATED: "Требуется вход в систему.",
    ErrorCode.TOKEN_EXPIRED: "Срок действия токена истёк. Обновите токен или войдите снова.",
    ErrorCode.FORBIDDEN: "Недостаточно прав для просмотра этих данных.",
    ErrorCode.NOT_FOUND: "Запрошенные данные не найдены.",
    ErrorCode.BAD_USER_INPUT: "Некорректные входные данные.",
    ErrorCode.DATE_RANGE_REVERSED: "Дата начала периода позже даты окончания.",
    ErrorCode.DATE_RANGE_TOO_LONG: "Слишком длинный период.",
    ErrorCode.DATE_OUT_OF_RANGE: "Дата вне допустимого диапазона.",
    ErrorCode.LIMIT_OUT_OF_RANGE: "Недопустимое значение ограничения количества.",
    ErrorCode.GRAPHQL_PARSE_FAILED: "Синтаксическая ошибка в запросе GraphQL.",
    ErrorCode.GRAPHQL_VALIDATION_FAILED: "Запрос не соответствует схеме.",
    ErrorCode.QUERY_TOO_DEEP: "Слишком большая глубина вложенности запроса.",
    ErrorCode.TOO_MANY_ALIASES: "Слишком много псевдонимов в запросе.",
    ErrorCode.TOO_MANY_TOKENS: "Запрос слишком большой.",
    ErrorCode.BAD_REQUEST: "Некорректный HTTP-запрос.",
    ErrorCode.METHOD_NOT_ALLOWED: "Метод не поддерживается.",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "Неподдерживаемый тип содержимого.",
    ErrorCode.NOT_ACCEPTABLE: "Неподдерживаемый формат ответа.",
    ErrorCode.TIMEOUT: "Запрос выполнялся слишком долго. Попробуйте сузить период.",
    ErrorCode.INTERNAL_SERVER_ERROR: "Внутренняя ошибка сервера.",
    ErrorCode.ESIA_NOT_CONFIGURED: "Вход через Госуслуги (ЕСИА) не настроен на этом сервере.",
    ErrorCode.ESIA_UNAVAILABLE: "Сервис Госуслуг (ЕСИА) временно недоступен. Попробуйте позже.",
    ErrorCode.ESIA_DENIED: "Вход через Госуслуги (ЕСИА) не выполнен: доступ не предоставлен.",
    ErrorCode.ESIA_STATE_MISMATCH: (
        "Сеанс входа устарел или был прерван. Начните вход через Госуслуги заново."
    ),
    ErrorCode.ESIA_ACCOUNT_NOT_CONFIRMED: (
        "Для доступа вам необходимо пройти процедуру проверки своих данных и подтверждения "
        "личности. Если вы только что подтвердили свою личность, то вам нужно войти в "
        "систему повторно."
    ),
    ErrorCode.NOT_IN_REGISTRY: (
        "Ваша учётная запись не найдена в электронной школе. Обратитесь к сотруднику школы, "
        "ответственному за внесение данных о родителях в АИС «Электронная школа», чтобы "
        "проверить наличие номера СНИЛС в вашей учётной записи."
    ),
    ErrorCode.INVALID_CREDENTIALS: "Неверный логин или пароль.",
    ErrorCode.STUDENT_MUST_USE_ESIA: (
        "Ученикам старше 14,5 лет вход по школьному логину и паролю недоступен. "
        "Используйте кнопку «Вход для пользователей старше 14,5 лет» (Госуслуги)."
    ),
    ErrorCode.SIGN_IN_LOCKED: (
        "Слишком много неудачных попыток входа. Вход временно заблокирован, попробуйте позже."
    ),
    ErrorCode.REFRESH_TOKEN_INVALID: (
        "Токен обновления недействителен или уже использован. Войдите снова."
    ),
    ErrorCode.SESSION_REVOKED: "Сеанс завершён. Войдите снова.",
    ErrorCode.CSRF_REJECTED: (
        "Запрос отклонён: он отправлен не со страницы электронного дневника."
    ),
    ErrorCode.INVALID_CLIENT: "Неверный идентификатор или секрет клиента.",
    ErrorCode.INVALID_SCOPE: "Запрошенные области доступа (scope) недоступны этому клиенту.",
    ErrorCode.UNSUPPORTED_GRANT_TYPE: "Поддерживается только grant_type=client_credentials.",
    ErrorCode.CLIENT_REVOKED: "Доступ клиента отозван.",
    ErrorCode.QUERY_TOO_COSTLY: (
        "Запрос слишком тяжёлый: его оценочная стоимость превышает допустимую. "
        "Сократите период, число элементов или набор полей."
    ),
    ErrorCode.RATE_LIMITED: (
        "Слишком много аналитических запросов. Повторите запрос немного позже."
    ),
    ErrorCode.SERVICE_UNAVAILABLE: (
        "Сервис временно недоступен. Повторите запрос через несколько секунд."
    ),
    ErrorCode.REQUEST_TIMEOUT: "Запрос передавался слишком медленно и был прерван.",
    ErrorCode.PAYLOAD_TOO_LARGE: "Тело запроса слишком большое.",
    ErrorCode.QUERY_TOO_COMPLEX: (
        "Запрос слишком сложный: в нём слишком много полей или фрагментов. Упростите запрос."
    ),
    # The automatic persisted queries protocol's own message: clients that predate the
    # code (Apollo Client before 3.8, apollo-link-persisted-queries) match on it.
    ErrorCode.PERSISTED_QUERY_NOT_FOUND: "PersistedQueryNotFound",
    ErrorCode.PERSISTED_QUERY_HASH_MISMATCH: (
        "Хеш sha256Hash не совпадает с SHA-256 текста запроса (query)."
    ),
    ErrorCode.DOCUMENT_NOT_REGISTERED: (
        "Из браузера (по cookie сеанса) можно выполнять только зарегистрированные запросы "
        "страниц электронного дневника. Для произвольных запросов, например в GraphiQL, "
        "передайте заголовок Authorization: Bearer <токен>."
    ),
    ErrorCode.CURSOR_EXPIRED: (
        "Курсор изменений устарел: изменения так давно не хранятся. Загрузите дневник заново "
        "и подпишитесь на изменения без курсора."
    ),
    ErrorCode.SLOW_CONSUMER: (
        "Поток изменений закрыт: клиент не успевал их принимать. Подключитесь снова с "
        "последним полученным курсором — ничего не потеряется."
    ),
    ErrorCode.TOO_MANY_SUBSCRIPTIONS: (
        "Слишком много одновременных подписок. Закройте лишние вкладки или приложения."
    ),
}


class ApiError(GraphQLError):
    """An expected failure: carries its code; the message is Russian for end users."""

    code: ErrorCode = ErrorCode.INTERNAL_SERVER_ERROR

    def __init__(self, message: str | None = None, **details: Any) -> None:
        extensions: dict[str, Any] = {"code": self.code.value}
        extensions.update(details)
        super().__init__(message or MESSAGES[self.code], extensions=extensions)


class UnauthenticatedError(ApiError):
    code = ErrorCode.UNAUTHENTICATED


class TokenExpiredError(ApiError):
    code = ErrorCode.TOKEN_EXPIRED


class ForbiddenError(ApiError):
    code = ErrorCode.FORBIDDEN


class NotFoundError(ApiError):
    code = ErrorCode.NOT_FOUND


class BadUserInputError(ApiError):
    code = ErrorCode.BAD_USER_INPUT


class DateRangeReversedError(ApiError):
    code = ErrorCode.DATE_RANGE_REVERSED


class DateRangeTooLongError(ApiError):
    code = ErrorCode.DATE_RANGE_TOO_LONG


class DateOutOfRangeError(ApiError):
    code = ErrorCode.DATE_OUT_OF_RANGE


class LimitOutOfRangeError(ApiError):
    code = ErrorCode.LIMIT_OUT_OF_RANGE


class HttpError(Exception):
    """A response other than a GraphQL result: the status, the code and the headers."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or MESSAGES[code])
        self.status = status
        self.code = code
        self.message = message or MESSAGES[code]
        self.headers = dict(headers or {})
