"""Generated hostile input (Hypothesis): arbitrary bytes in every header, path segment,
query value and body field of every endpoint. Each answer must be a documented one in
its endpoint's shape (2xx, 3xx or 4xx; never 5xx) and nothing may be logged at ERROR.

The app is called as an ASGI application, so bytes reach it exactly as a server would
hand them over (``raw_path``, query string, header values), with no client in between
to clean them up.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Platform, full_settings, open_storage, seed_full_platform

# Enough to find what hand-written cases miss, small enough for CI (about 10 s in all).
EXAMPLES = 2000


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Errors(logging.Handler):
    """Collects ERROR records of the library and the server stack."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Target:
    world: Platform
    portal: anyio.from_thread.BlockingPortal
    errors: Errors

    def call(
        self,
        method: str,
        path: str,
        *,
        query: bytes = b"",
        headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
        body: bytes = b"",
    ) -> Answer:
        return self.portal.call(self._call, method, path, query, list(headers), body)

    async def _call(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> Answer:
        raw_path = quote(path, safe="/", errors="surrogatepass").encode("ascii")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "https",
            "path": path,
            "raw_path": raw_path,
            "root_path": "",
            "query_string": query,
            "headers": [(b"host", b"broker.test"), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("broker.test", 443),
        }
        sent = False
        answer = Answer(0, {}, b"")

        async def receive() -> MutableMapping[str, Any]:
            nonlocal sent
            if sent:
                await anyio.sleep_forever()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message["headers"]
                }
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")

        await self.world.app(scope, receive, send)
        return answer


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    kind: str = request.param
    tmp_path: Path = tmp_path_factory.mktemp(kind)
    errors = Errors()
    loggers = [logging.getLogger(n) for n in ("starlette_broker_oauth", "uvicorn.error", "")]
    for logger in loggers:
        logger.addHandler(errors)
    with anyio.from_thread.start_blocking_portal() as portal:
        ready: dict[str, Any] = {}
        stop = portal.call(anyio.Event)

        async def run() -> None:
            async with open_storage(kind, tmp_path) as storage:
                world = await seed_full_platform(kind, storage, full_settings())
                ready["world"] = world
                await stop.wait()
                await world.http.aclose()

        future = portal.start_task_soon(run)
        while "world" not in ready:
            portal.call(anyio.sleep, 0.01)
        try:
            yield Target(ready["world"], portal, errors)
        finally:
            portal.call(stop.set)
            future.result(timeout=30)
            for logger in loggers:
                logger.removeHandler(errors)


# strategies

TEXT = st.text(max_size=40)
ANY_BYTES = st.binary(max_size=60)
# What an HTTP server hands over as a header value: no CR, LF or NUL, any other byte.
HEADER_BYTES = st.binary(max_size=60).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
)
NASTY = st.sampled_from(
    [
        "",
        "\x00",
        "\n",
        "\t",
        '"',
        "\\",
        "'",
        "é",
        "\u202e",
        "\ud800",
        "https://app.example.com/callback",
        'https://app.example.com/callback"',
        "https://app.example.com/callback\n",
        "javascript:alert(1)",
        "00000000-0000-0000-0000-000000000000",
        "general trading",
        "S256",
        "code",
        "token",
        "authorization_code",
        "refresh_token",
        "x" * 300,
    ]
)
VALUE = st.one_of(TEXT, NASTY)
FIELDS = st.sampled_from(
    [
        "client_id",
        "client_secret",
        "redirect_uri",
        "scope",
        "account_id",
        "response_type",
        "state",
        "code",
        "code_verifier",
        "code_challenge",
        "code_challenge_method",
        "grant_type",
        "refresh_token",
        "token",
        "token_type_hint",
        "decision",
        "csrf_token",
        "unknown",
    ]
)
PAIRS = st.lists(st.tuples(st.one_of(FIELDS, TEXT), VALUE), max_size=8)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | VALUE,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(VALUE, inner, max_size=3),
    max_leaves=10,
)


def world_values(world: Platform) -> st.SearchStrategy[str]:
    """Values that get past the first checks: real ids, secrets and URIs, sometimes with
    a hostile character added."""
    real = st.sampled_from(
        [
            world.client_id,
            world.client_secret,
            world.redirect_uri,
            str(world.paper_account),
            str(world.live_account),
            world.partner[0],
        ]
    )
    return st.one_of(real, st.tuples(real, NASTY).map("".join))


@st.composite
def bodies(draw: st.DrawFn, values: st.SearchStrategy[str]) -> tuple[bytes | None, bytes]:
    """A content type (or none) and a body: form, JSON, deep JSON or raw bytes."""
    kind = draw(st.sampled_from(["form", "json", "deep", "raw", "none"]))
    pairs_strategy = st.lists(
        st.tuples(st.one_of(FIELDS, TEXT), st.one_of(VALUE, values)), max_size=8
    )
    if kind == "form":
        pairs = draw(pairs_strategy)
        body = urlencode(pairs, errors="surrogatepass").encode("ascii")
        if draw(st.booleans()):
            body += draw(ANY_BYTES)
        return b"application/x-www-form-urlencoded", body
    if kind == "json":
        data = draw(
            st.dictionaries(st.one_of(FIELDS, TEXT), st.one_of(JSON_VALUE, values), max_size=8)
        )
        return b"application/json", json.dumps(data).encode()
    if kind == "deep":
        depth = draw(st.integers(min_value=100, max_value=20_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        value = b'{"scope":' + opener * depth + b"1" + closer * depth + b"}"
        return b"application/json", value if draw(st.booleans()) else value[9:-1]
    if kind == "raw":
        return draw(st.sampled_from([b"application/json", b"text/plain", b"\xff"])), draw(ANY_BYTES)
    return None, b""


@st.composite
def authorizations(draw: st.DrawFn, world: Platform) -> bytes | None:
    partner = ":".join(world.partner).encode()
    client = f"{world.client_id}:{world.client_secret}".encode()
    kind = draw(
        st.sampled_from(["none", "partner", "client", "basic-bytes", "bearer", "raw", "mixed"])
    )
    if kind == "none":
        return None
    if kind == "partner":
        return b"Basic " + base64.b64encode(partner)
    if kind == "client":
        return b"Basic " + base64.b64encode(client)
    if kind == "basic-bytes":
        return b"Basic " + base64.b64encode(draw(ANY_BYTES))
    if kind == "bearer":
        return b"Bearer " + draw(HEADER_BYTES)
    if kind == "mixed":
        return b"Basic " + draw(HEADER_BYTES)
    return draw(HEADER_BYTES)


def segment() -> st.SearchStrategy[str]:
    return st.one_of(st.text(min_size=1, max_size=30), NASTY.filter(bool))


ENDPOINTS = [
    ("GET", "/v1/oauth/clients/{}"),
    ("POST", "/v1/oauth/token"),
    ("POST", "/v1/oauth/authorize"),
    ("DELETE", "/v1/oauth/token/{}"),
    ("POST", "/oauth/token"),
    ("POST", "/oauth/revoke"),
    ("POST", "/oauth/introspect"),
    ("GET", "/oauth/authorize"),
    ("POST", "/oauth/authorize"),
    ("GET", "/oauth/connections"),
    ("POST", "/oauth/connections"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/oauth/openapi.json"),
    ("GET", "/v2/account"),
    ("PUT", "/v1/oauth/token"),
    ("GET", "/{}"),
]


def valid_params(world: Platform, path: str) -> list[tuple[str, str]]:
    """A request that would succeed, for the mutations to start from."""
    if path.startswith("/v1/"):
        return list(world.grant_body().items())
    if path.startswith("/oauth/authorize"):
        return [
            ("response_type", "code"),
            ("client_id", world.client_id),
            ("redirect_uri", world.redirect_uri),
            ("scope", "general trading"),
            ("state", "s"),
        ]
    return [
        ("grant_type", "authorization_code"),
        ("code", "c"),
        ("redirect_uri", world.redirect_uri),
        ("token", "t"),
    ]


@st.composite
def near_valid(draw: st.DrawFn, world: Platform, path: str) -> list[tuple[str, str]]:
    """A valid request with one to three fields replaced, removed, repeated or added."""
    pairs = valid_params(world, path)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        action = draw(st.sampled_from(["replace", "remove", "repeat", "add", "append"]))
        index = draw(st.integers(min_value=0, max_value=len(pairs) - 1)) if pairs else 0
        if action == "add" or not pairs:
            pairs.append((draw(FIELDS), draw(VALUE)))
        elif action == "replace":
            pairs[index] = (pairs[index][0], draw(VALUE))
        elif action == "remove":
            pairs.pop(index)
        elif action == "repeat":
            pairs.append(pairs[index])
        else:
            pairs[index] = (pairs[index][0], pairs[index][1] + draw(NASTY))
    return pairs


@st.composite
def requests(draw: st.DrawFn, world: Platform) -> dict[str, Any]:
    method, template = draw(st.sampled_from(ENDPOINTS))
    path = template.format(draw(segment())) if "{}" in template else template
    if draw(st.booleans()):
        # Near-valid: real credentials and a valid request, mutated; in the query (GET)
        # or as a form or JSON body.
        pairs = draw(near_valid(world, path))
        headers: list[tuple[bytes, bytes]] = [
            (
                b"authorization",
                b"Basic "
                + base64.b64encode(
                    (
                        ":".join(world.partner)
                        if path.startswith("/v1/")
                        else f"{world.client_id}:{world.client_secret}"
                    ).encode()
                ),
            )
        ]
        if path.startswith("/oauth/authorize"):
            headers = [(b"cookie", f"session={world.paper_account}".encode())]
        encoded = urlencode(pairs, errors="surrogatepass").encode("ascii")
        if method == "GET":
            return {
                "method": method,
                "path": path,
                "query": encoded,
                "headers": headers,
                "body": b"",
            }
        if draw(st.booleans()) and path.startswith("/v1/"):
            body = json.dumps(dict(pairs)).encode()
            headers.append((b"content-type", b"application/json"))
        else:
            body = encoded
            headers.append((b"content-type", b"application/x-www-form-urlencoded"))
        return {"method": method, "path": path, "query": b"", "headers": headers, "body": body}
    values = world_values(world)
    query_pairs = draw(
        st.lists(st.tuples(st.one_of(FIELDS, TEXT), st.one_of(VALUE, values)), max_size=8)
    )
    query = urlencode(query_pairs, errors="surrogatepass").encode("ascii")
    if draw(st.booleans()):
        query += b"&" + draw(ANY_BYTES).replace(b"#", b"")
    headers = []
    if (authorization := draw(authorizations(world))) is not None:
        headers.append((b"authorization", authorization))
    content_type, body = draw(bodies(values))
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if draw(st.booleans()):
        headers.append((b"cookie", b"session=" + draw(HEADER_BYTES)))
    if draw(st.booleans()):
        headers.append(
            (draw(st.sampled_from([b"x-forwarded-for", b"accept", b"origin"])), draw(HEADER_BYTES))
        )
    return {"method": method, "path": path, "query": query, "headers": headers, "body": body}


def documented(path: str, answer: Answer) -> None:
    """The answer is one the endpoint documents, in the endpoint's shape."""
    status = answer.status
    assert 200 <= status < 500, f"{status} {answer.body[:300]!r}"
    if status in (204, 303) or not answer.body:
        return
    if status == 404 and re.search(r"[\x00-\x1f\x7f]", path):
        # Starlette's Mount("/") cannot route a path with a control character: the host
        # app's own 404 answers, before the sub-app is reached.
        return
    content_type = answer.headers.get("content-type", "")
    if path.startswith(("/oauth/authorize", "/oauth/connections")) and "html" in content_type:
        assert answer.body.startswith(b"<!doctype html>")
        return
    assert content_type.startswith("application/json"), (status, content_type, answer.body[:200])
    body = answer.json()
    if status < 400:
        assert isinstance(body, dict)
    elif path.startswith("/oauth/") and not path.startswith("/oauth/openapi"):
        assert isinstance(body["error"], str), body
    elif path == "/v2/account" or "error" in body:
        # The platform's protected route, or any of its paths under the platform's
        # AuthenticationMiddleware, refusing a token: RFC 6750 §3's challenge, or RFC
        # 9449 §7.1's when the request used the DPoP scheme.
        assert isinstance(body["error"], str), body
        challenge = answer.headers["www-authenticate"]
        assert challenge.startswith(("Bearer", "DPoP ")), answer.headers
        assert not path.startswith(("/v1/", "/oauth/", "/.well-known/")), path
    else:
        assert isinstance(body["code"], int), body
        assert isinstance(body["message"], str), body


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_request_gets_a_documented_answer(target: Target, data: st.DataObject) -> None:
    request = data.draw(requests(target.world))
    target.errors.records.clear()
    answer = target.call(**request)
    documented(request["path"], answer)
    assert target.errors.records == [], [r.getMessage() for r in target.errors.records]


def test_the_generator_reaches_deep_code(target: Target) -> None:
    """Hostile input only proves something if valid credentials get past the door: the
    same harness, with good values, issues a token and reaches the protected route."""
    world = target.world
    auth = b"Basic " + base64.b64encode(":".join(world.partner).encode())
    body = json.dumps(world.grant_body()).encode()
    issued = target.call(
        "POST",
        "/v1/oauth/token",
        headers=[(b"authorization", auth), (b"content-type", b"application/json")],
        body=body,
    )
    assert issued.status == 200, issued.body
    token = issued.json()["access_token"]
    account = target.call(
        "GET", "/v2/account", headers=[(b"authorization", f"Bearer {token}".encode())]
    )
    assert account.status == 200
