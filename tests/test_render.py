"""The table of answers: one row for every error of the tree and every kind of refused
token, none for anything else, and each row rendered in its faces' documented shapes."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from starlette_broker_oauth import errors
from starlette_broker_oauth.errors import (
    BrokerOAuthError,
    InvalidClient,
    InvalidGrant,
    StorageUnavailable,
    TokenError,
    TokenErrorKind,
)
from starlette_broker_oauth.routes import Face
from starlette_broker_oauth.web.render import ANSWERS, ErrorHandlers, answer_to, bearer_error


def tree() -> list[type[BrokerOAuthError]]:
    """Every class of the error tree, walked from its root."""
    found: list[type[BrokerOAuthError]] = []
    pending: list[type[BrokerOAuthError]] = [BrokerOAuthError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(sub for sub in cls.__subclasses__() if sub.__module__ == errors.__name__)
    return found


def test_the_tree_is_every_error_class_of_the_errors_module() -> None:
    declared = {
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if obj.__module__ == errors.__name__ and issubclass(obj, Exception)
    }
    assert set(tree()) == declared


def test_every_error_has_exactly_one_row_and_every_row_an_error() -> None:
    rows = list(ANSWERS)
    expected: list[Any] = [Exception, *tree(), *TokenErrorKind]
    assert len(rows) == len(set(rows))  # no key twice (a dict literal would hide it)
    assert sorted(map(repr, rows)) == sorted(map(repr, expected))


def test_every_status_is_in_the_documented_range() -> None:
    for key, answer in ANSWERS.items():
        for face, status in answer.status.items():
            assert 400 <= status < 600, (key, face)
        assert set(answer.text) <= set(answer.status), key


def test_a_class_the_tree_does_not_name_is_a_bug() -> None:
    assert answer_to(KeyError("x")) is ANSWERS[Exception]

    class Subclassed(StorageUnavailable):
        pass

    assert answer_to(Subclassed("x")) is ANSWERS[StorageUnavailable]
    assert answer_to(TokenError(TokenErrorKind.EXPIRED)) is ANSWERS[TokenErrorKind.EXPIRED]


def _request(path: str) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    return Request(scope)


def _page(request: Request, status: int, error: str, detail: str) -> Response:
    return Response(f"{error}|{detail}", status_code=status, media_type="text/html")


def _instance(key: Any) -> Exception:
    if isinstance(key, TokenErrorKind):
        return TokenError(key)
    if key is TokenError:
        return TokenError(TokenErrorKind.UNKNOWN)
    if key is errors.MethodNotAllowed:
        return errors.MethodNotAllowed("method not allowed", allowed=("POST",))
    if key is Exception:
        return RuntimeError("secret=hunter2")
    exc: Exception = key("what was wrong")
    return exc


PATHS = {
    Face.PARTNER: "/v1/oauth/token",
    Face.STANDARD: "/oauth/token",
    Face.PAGE: "/oauth/authorize",
}


@pytest.mark.parametrize("key", list(ANSWERS), ids=repr)
def test_every_row_renders_in_its_faces_shapes(key: Any) -> None:
    handlers = ErrorHandlers(issuer="https://broker.test", page=_page)
    answer = ANSWERS[key]
    exc = _instance(key)
    for face, status in answer.status.items():
        if face is Face.BEARER:
            assert isinstance(exc, TokenError | StorageUnavailable)
            response = bearer_error(exc)
            body = json.loads(bytes(response.body))
            assert set(body) == {"error", "error_description"}
            assert response.headers["cache-control"] == "no-store"
        else:
            rendered = handlers.answer(_request(PATHS[face]), exc)
            assert rendered is not None
            response = rendered
            if face is Face.PARTNER:
                body = json.loads(bytes(response.body))
                assert body == {"code": status * 100000 + 10000, "message": body["message"]}
                assert body["message"]
            elif face is Face.STANDARD:
                body = json.loads(bytes(response.body))
                assert set(body) <= {"error", "error_description"}
                assert body["error"]
                assert response.headers["cache-control"] == "no-store"
            else:
                assert bytes(response.body).decode().split("|")[0]
        assert response.status_code == status, face
        assert b"hunter2" not in bytes(response.body)


@pytest.mark.parametrize("key", list(ANSWERS), ids=repr)
def test_a_face_without_an_answer_leaves_the_error_to_the_bug_handler(key: Any) -> None:
    handlers = ErrorHandlers(issuer="https://broker.test", page=_page)
    exc = _instance(key)
    for face, path in PATHS.items():
        if face not in ANSWERS[key].status:
            assert handlers.answer(_request(path), exc) is None


def test_the_sub_app_handles_what_some_face_answers_and_leaves_bugs_to_the_server() -> None:
    handlers = ErrorHandlers(issuer="https://broker.test", page=None).handlers()
    answered = {
        key
        for key, answer in ANSWERS.items()
        if isinstance(key, type) and key is not Exception and answer.status
    }
    assert set(handlers) == {*answered, 404, 405, Exception}
    for bug in (errors.ConfigurationError, errors.StorageError, TokenError, BrokerOAuthError):
        assert bug not in handlers


def test_one_answer_for_every_refused_client() -> None:
    partner = ANSWERS[InvalidClient]
    assert partner.status[Face.PARTNER] == 401
    assert partner.text[Face.PARTNER] == InvalidClient.ONE_ANSWER
    assert ANSWERS[InvalidGrant].status == {Face.PARTNER: 422, Face.STANDARD: 400, Face.PAGE: 400}


@pytest.mark.anyio
async def test_an_error_its_face_does_not_answer_is_a_bug_there(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A repository raising the router's 405 at the token endpoint: the standard endpoints
    have no answer for it, so it is a bug there, answered as one and raised on."""
    import httpx

    from starlette_broker_oauth import MemoryStorage, OAuthSettings, create_oauth_app

    from .conftest import FailingClients

    misplaced = errors.MethodNotAllowed("method not allowed", allowed=("GET",))
    token_request = {"grant_type": "authorization_code", "code": "c", "redirect_uri": "r"}
    app = create_oauth_app(
        settings=OAuthSettings(issuer="https://broker.test"),
        storage=MemoryStorage(),
        clients=FailingClients(misplaced),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://broker.test") as http:
        with pytest.raises(errors.MethodNotAllowed):
            await http.post("/oauth/token", data=token_request, auth=("c", "s"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://broker.test") as http:
        answer = await http.post("/oauth/token", data=token_request, auth=("c", "s"))
    assert answer.status_code == 500
    assert answer.json() == {"error": "server_error", "error_description": "internal server error"}
    assert "unexpected error on POST /oauth/token" in caplog.text
