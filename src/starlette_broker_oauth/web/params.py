"""Reading a request's parameters and credentials, for every face of the sub-app."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request

from ..errors import BadRequest, InvalidRequest
from ..security import basic_credentials

__all__ = [
    "MAX_BODY",
    "Params",
    "basic_credentials",
    "check_standard",
    "optional",
    "query_params",
    "read_params",
]

MAX_BODY = 64 * 1024
# The fields the endpoints read: each must be text (or, like the seed's scope, a number).
# Other fields are ignored, whatever their JSON type.
TEXT_FIELDS = frozenset(
    {
        "client_id",
        "client_secret",
        "redirect_uri",
        "scope",
        "account_id",
        "response_type",
        "state",
        "code_challenge",
        "code_challenge_method",
        "dpop_jkt",
        "request_uri",
    }
)

Params = dict[str, list[str]]


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
        raise InvalidRequest(f"{name} is given more than once")
    return values[0]


def check_standard(params: Mapping[str, Sequence[str]], authorization: str | None) -> None:
    """The standard endpoints' request rules, before Authlib reads the request: no
    parameter twice (RFC 6749 §3.2), and one client authentication method (§2.3)."""
    for name, values in params.items():
        if len(values) > 1:
            raise InvalidRequest(f"{name} is given more than once")
    methods = (authorization is not None) + ("client_secret" in params)
    methods += "client_assertion" in params or "client_assertion_type" in params
    if methods > 1:
        raise InvalidRequest("use one client authentication method per request")


async def read_params(request: Request, *, json_allowed: bool = True) -> Params:
    """The body's parameters: JSON object or form-encoded (RFC 6749 §3.2 wants the latter)."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = b""
    try:
        async with aclosing(request.stream()) as chunks:  # closed at once, on every backend
            async for chunk in chunks:
                body += chunk
                if len(body) > MAX_BODY:
                    raise BadRequest("request body is too large")
    except ClientDisconnect:  # nobody is left to answer; not a failure of ours
        raise BadRequest("the client disconnected before sending the body") from None
    if not body:
        return {}
    if content_type == "application/json" and json_allowed:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("request body is not valid JSON") from None
        except RecursionError:
            raise BadRequest("request body is nested too deeply") from None
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        return {
            _unicode("a field name", key): [_json_text(key, value)]
            for key, value in data.items()
            if value is not None and (key in TEXT_FIELDS or isinstance(value, str))
        }
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


def _unicode(name: str, value: str) -> str:
    # JSON may escape lone surrogates (``"\ud800"``), which are not text.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{name} is not valid Unicode text") from None
    return value


def _json_text(name: str, value: object) -> str:
    # The seed accepts scope as "string/numeric": a number counts as its decimal text.
    if isinstance(value, str):
        return _unicode(_unicode("a field name", name), value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InvalidRequest(f"{name} must be a string")
