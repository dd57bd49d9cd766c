"""Reading a request's parameters and credentials, for every face of the sub-app."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from urllib.parse import parse_qsl

from starlette.requests import Request

from .errors import BadRequest, UnprocessableEntity

__all__ = ["MAX_BODY", "Params", "basic_credentials", "optional", "query_params", "read_params"]

MAX_BODY = 64 * 1024

Params = dict[str, list[str]]


def basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """The user name and password of an HTTP Basic ``Authorization`` value (RFC 7617),
    or ``(None, None)`` when it is absent or not valid Basic credentials."""
    if not header:
        return None, None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # ValueError: not ASCII, or not UTF-8
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)


def query_params(request: Request) -> Params:
    """The query string's parameters, each with all its values."""
    params: Params = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


def optional(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The one value of ``name``, or ``None``; refuses a parameter given twice."""
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise UnprocessableEntity(f"{name} is given more than once")
    return values[0]


async def read_params(request: Request, *, json_allowed: bool = True) -> Params:
    """The body's parameters: JSON object or form-encoded (RFC 6749 §3.2 wants the latter)."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = b""
    async with aclosing(request.stream()) as chunks:  # closed at once, on every backend
        async for chunk in chunks:
            body += chunk
            if len(body) > MAX_BODY:
                raise BadRequest("request body is too large")
    if not body:
        return {}
    if content_type == "application/json" and json_allowed:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        return {key: [_json_text(key, value)] for key, value in data.items() if value is not None}
    if content_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise BadRequest("request body is not valid UTF-8") from None
        params: Params = {}
        for key, value in pairs:
            params.setdefault(key, []).append(value)
        return params
    expected = "application/x-www-form-urlencoded"
    if json_allowed:
        expected = "application/json or " + expected
    raise BadRequest(f"unsupported content type; send {expected}")


def _json_text(name: str, value: object) -> str:
    # The seed accepts scope as "string/numeric": a number counts as its decimal text.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise UnprocessableEntity(f"{name} must be a string")
