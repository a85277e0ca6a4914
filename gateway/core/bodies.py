"""Request bodies of the sign-in routes, read as bounded streams.

Every body under /auth, /oauth and /dev-idp is small (a login and password, a refresh
token, client credentials): `read_limited` reads `request.stream()` chunk by chunk and
stops as soon as the body would exceed its limit, so a chunked upload without
Content-Length costs at most the limit (plus one chunk) of reading and memory, never the
whole body. A declared Content-Length over the limit is refused before anything is read.
Both answer HttpError 413 PAYLOAD_TOO_LARGE.

Forms are parsed from the bounded body with starlette's own parsers (the same decoding
as `request.form()`, which would read the whole body first): urlencoded with a field
count limit, multipart with `max_part_size`, no files and the same field count limit.
A malformed or over-full form is HttpError 400 BAD_REQUEST.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Final

from starlette.datastructures import FormData
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

from gateway.core.errors import ErrorCode, HttpError

AUTH_BODY_LIMIT: Final = 8192
FORM_URLENCODED: Final = "application/x-www-form-urlencoded"
MULTIPART: Final = "multipart/form-data"
FORM_TYPES: Final = frozenset({FORM_URLENCODED, MULTIPART})


def too_large() -> HttpError:
    """The refusal of a body over its limit."""
    return HttpError(413, ErrorCode.PAYLOAD_TOO_LARGE)


async def read_limited(request: Request, limit: int = AUTH_BODY_LIMIT) -> bytes:
    """The whole body when it is at most `limit` bytes; HttpError 413 as soon as it is not."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    body = bytearray()
    async with aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            if len(body) + len(chunk) > limit:
                raise too_large()
            body += chunk
    return bytes(body)


async def read_form(
    request: Request, *, limit: int = AUTH_BODY_LIMIT, max_fields: int = 16
) -> FormData:
    """The fields of an urlencoded or multipart body of at most `limit` bytes.

    Another content type gives an empty form. HttpError 413 for a larger body, 400
    BAD_REQUEST for a malformed form, more than `max_fields` fields, or a file.
    """
    kind = media_type(request.headers.get("content-type"))
    if kind not in FORM_TYPES:
        return FormData()
    body = await read_limited(request, limit)
    try:
        if kind == MULTIPART:
            multipart = MultiPartParser(
                request.headers,
                _once(body),
                max_files=0,
                max_fields=max_fields,
                max_part_size=limit,
            )
            return await multipart.parse()
        urlencoded = FormParser(
            request.headers, _once(body), max_fields=max_fields, max_part_size=limit
        )
        return await urlencoded.parse()
    except MultiPartException:
        raise HttpError(400, ErrorCode.BAD_REQUEST) from None


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    """A body already read, as the stream starlette's parsers take."""
    yield body


def media_type(content_type: str | None) -> str | None:
    """`application/json` of `application/json; charset=utf-8`, lower-cased."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()
