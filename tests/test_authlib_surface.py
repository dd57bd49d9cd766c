"""Everything the adapter relies on in Authlib, checked against the Authlib installed.

The adapter (``starlette_broker_oauth._oauth``) uses Authlib through its public surface
only: it subclasses some of its classes, overrides some of their methods, calls others,
reads some attributes, and Authlib calls the adapter's hooks while it handles a request.
This file records all of it, so that an Authlib release that changes any of it fails here,
with a message naming what changed, before it fails somewhere inside a flow:

* no ``_private`` attribute of an Authlib object is read or written in the package;
* the Authlib methods the adapter overrides or calls keep the parameters recorded here;
* the names the adapter's subclasses override are still Authlib's, and the names they add
  are still not (so Authlib does not start calling, or overwriting, one of ours);
* the attributes the adapter reads and writes on Authlib objects are still public;
* Authlib still calls every hook the adapter implements, from its own code, through real
  requests (a spy on each hook);
* the Authlib installed is inside the range ``pyproject.toml`` declares.

When a test here fails after an Authlib upgrade:

1. read Authlib's changelog and the new source of the class or method the failure names;
2. if the change matters (a hook no longer called or called with other arguments, a
   parameter added, renamed or moved, a name the adapter adds now taken by Authlib), change
   the adapter to match, and run the whole suite (``scripts/check``);
3. only then update the record here, and the ``authlib`` range in ``pyproject.toml`` to
   the versions the suite has passed with.

An expectation updated without reading what changed defeats the test: the records here are
the list of what a reviewer of an Authlib upgrade must check.
"""

from __future__ import annotations

import ast
import inspect
import tomllib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidClientError,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749 import grants as authlib_grants
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from packaging.requirements import Requirement

from starlette_broker_oauth import MemoryStorage
from starlette_broker_oauth._oauth.endpoints import Introspection, Revocation
from starlette_broker_oauth._oauth.grants import (
    CodeGrant,
    DirectTokenGrant,
    PartnerCodeGrant,
    PartnerGrant,
    RefreshGrant,
    S256Only,
)
from starlette_broker_oauth._oauth.models import ClientView, CodeView, TokenView
from starlette_broker_oauth._oauth.requests import OAuthRequest, ParamsPayload
from starlette_broker_oauth._oauth.server import BrokerAuthorizationServer
from starlette_broker_oauth.models import AuthorizationCode

from .conftest import ISSUER, Platform, full_settings, pkce_pair, seed_full_platform

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "starlette_broker_oauth"
ADAPTER = sorted((PACKAGE / "_oauth").glob("*.py"))


# 1. No private attribute of an Authlib object anywhere in the package, and no Authlib
# object outside the adapter.


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _authlib_names(tree: ast.Module) -> set[str]:
    """The names a module binds to something imported from Authlib."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("authlib"):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("authlib"):
                    names.add(alias.asname or alias.name.split(".")[0])
    return names


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _authlib_facing_classes(trees: dict[Path, ast.Module]) -> set[str]:
    """Classes whose instances are Authlib objects: those that derive from an Authlib class
    (directly or through another such class of the adapter), and the mixins combined
    with one. Their ``self`` is an Authlib object, so no ``self._x`` on them either."""
    classes = {
        node: _authlib_names(tree)
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    facing: set[str] = set()
    changed = True
    while changed:
        changed = False
        for node, authlib in classes.items():
            bases = {_root(base) for base in node.bases}
            if node.name not in facing and bases & (authlib | facing):
                facing.add(node.name)
                changed = True
            if node.name in facing:
                for base in bases - authlib - facing - {None}:
                    assert base is not None
                    facing.add(base)
                    changed = True
    return facing


class _PrivateAccess(ast.NodeVisitor):
    def __init__(self, path: Path, facing: set[str]) -> None:
        self.path = path
        self.facing = facing
        self.classes: list[str] = []
        self.found: list[str] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append(node.name)
        self.generic_visit(node)
        self.classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_private(node.attr):
            on_self = isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}
            own = on_self and bool(self.classes) and self.classes[-1] not in self.facing
            if not own:
                self.found.append(f"{self.path.name}:{node.lineno} .{node.attr}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func.id if isinstance(node.func, ast.Name) else ""
        if function in {"getattr", "setattr", "hasattr", "delattr"} and len(node.args) > 1:
            name = node.args[1]
            if isinstance(name, ast.Constant) and _is_private(str(name.value)):
                self.found.append(f"{self.path.name}:{node.lineno} {function} {name.value!s}")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module.startswith("authlib"):
            private = [p for p in module.split(".") if _is_private(p)]
            private += [a.name for a in node.names if _is_private(a.name)]
            if private:
                self.found.append(f"{self.path.name}:{node.lineno} imports {private}")


def test_the_adapter_touches_no_private_authlib_attribute() -> None:
    """In ``_oauth/`` (with its bridge): no ``x._name`` except ``self._name`` in a class of
    ours that is not an Authlib object, no ``getattr(x, "_name")``, no import of a private
    Authlib name. Stricter than "no private attribute of an Authlib object", which only
    types could tell: no private attribute of anything but one's own class."""
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in ADAPTER}
    facing = _authlib_facing_classes(trees)
    assert {"OAuthRequest", "BrokerAuthorizationServer", "ClientView", "_TokenLookup"} <= facing
    found: list[str] = []
    for path, tree in trees.items():
        visitor = _PrivateAccess(path, facing)
        visitor.visit(tree)
        found += [f"{path.relative_to(PACKAGE).parent}/{place}" for place in visitor.found]
    assert not found, f"private attributes of Authlib objects: {found}"


def test_the_check_finds_private_access() -> None:
    source = """
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import _hidden

class Ours(OAuth2Request):
    def f(self, payload):
        payload._datalist = {}
        self._mine = 1
        return getattr(payload, "_data")

class Plain:
    def f(self):
        self._fine = 1
"""
    path = Path("example.py")
    trees = {path: ast.parse(source)}
    visitor = _PrivateAccess(path, _authlib_facing_classes(trees))
    visitor.visit(trees[path])
    assert visitor.found == [
        "example.py:3 imports ['_hidden']",
        "example.py:7 ._datalist",
        "example.py:8 ._mine",
        "example.py:9 getattr _data",
    ]


def test_no_authlib_object_leaves_the_adapter() -> None:
    """The rest of ``src/`` cannot touch an Authlib object at all: it imports no Authlib
    (``tests/test_layers.py``), takes from ``_oauth`` only the adapter's own classes
    (``OAuthProtocol`` and the dataclasses it answers with), and never reads
    ``OAuthProtocol.server``, the one attribute that leads to Authlib's objects."""
    for path in PACKAGE.rglob("*.py"):
        if path in ADAPTER:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and "_oauth" in (node.module or "").split("."):
                assert node.module in {"_oauth", "starlette_broker_oauth._oauth"}, path
                names = {alias.name for alias in node.names}
                assert names <= {"Authorized", "ConsentRequest", "OAuthProtocol"}, path
            assert not (isinstance(node, ast.Attribute) and node.attr == "server"), path


# 2. The signatures of the Authlib methods the adapter overrides or calls.


def _signature(function: Callable[..., Any]) -> str:
    """The parameters (names, kinds, defaults), without annotations, as Python prints them."""
    signature = inspect.signature(function)
    parameters = [
        p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()
    ]
    return str(signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty))


# Methods wrapped by Authlib's ``@hooked`` show ``(self, *args, **kwargs)``: the adapter
# calls them with the arguments of the method they wrap, and the hook spy below checks that
# they still run.
SIGNATURES: dict[tuple[type[Any], str], str] = {
    (OAuth2Request, "__init__"): "(self, method, uri, body=None, headers=None)",
    (AuthorizationServer, "__init__"): "(self, scopes_supported=None)",
    (AuthorizationServer, "query_client"): "(self, client_id)",
    (AuthorizationServer, "authenticate_client"): "(self, request, methods, endpoint='token')",
    (AuthorizationServer, "register_client_auth_method"): "(self, method, func)",
    (AuthorizationServer, "register_grant"): "(self, grant_cls, extensions=None)",
    (AuthorizationServer, "register_endpoint"): "(self, endpoint)",
    (AuthorizationServer, "get_authorization_grant"): "(self, *args, **kwargs)",
    (AuthorizationServer, "create_token_response"): "(self, request=None)",
    (AuthorizationServer, "create_endpoint_response"): "(self, name, request=None)",
    (AuthorizationServer, "create_oauth2_request"): "(self, request)",
    (AuthorizationServer, "handle_response"): "(self, status, body, headers)",
    (AuthorizationServer, "handle_error_response"): "(self, request, error)",
    (AuthorizationServer, "send_signal"): "(self, name, *args, **kwargs)",
    (ClientMixin, "get_client_id"): "(self)",
    (ClientMixin, "get_default_redirect_uri"): "(self)",
    (ClientMixin, "get_allowed_scope"): "(self, scope)",
    (ClientMixin, "check_redirect_uri"): "(self, redirect_uri)",
    (ClientMixin, "check_endpoint_auth_method"): "(self, method, endpoint)",
    (ClientMixin, "check_response_type"): "(self, response_type)",
    (ClientMixin, "check_grant_type"): "(self, grant_type)",
    (authlib_grants.AuthorizationCodeGrant, "__init__"): "(self, request, server)",
    (authlib_grants.AuthorizationCodeGrant, "check_authorization_endpoint"): "(request)",
    (authlib_grants.AuthorizationCodeGrant, "validate_authorization_request"): "(self)",
    (
        authlib_grants.AuthorizationCodeGrant,
        "create_authorization_response",
    ): "(self, redirect_uri, grant_user)",
    (authlib_grants.AuthorizationCodeGrant, "query_authorization_code"): "(self, code, client)",
    (authlib_grants.AuthorizationCodeGrant, "authenticate_user"): "(self, authorization_code)",
    (authlib_grants.AuthorizationCodeGrant, "create_token_response"): "(self, *args, **kwargs)",
    (
        authlib_grants.AuthorizationCodeGrant,
        "validate_no_multiple_request_parameter",
    ): "(request)",
    (authlib_grants.RefreshTokenGrant, "authenticate_refresh_token"): "(self, refresh_token)",
    (authlib_grants.RefreshTokenGrant, "authenticate_user"): "(self, refresh_token)",
    (authlib_grants.RefreshTokenGrant, "create_token_response"): "(self, *args, **kwargs)",
    (authlib_grants.ImplicitGrant, "check_authorization_endpoint"): "(request)",
    (authlib_grants.ImplicitGrant, "validate_authorization_request"): "(self, *args, **kwargs)",
    (authlib_grants.ImplicitGrant, "create_authorization_response"): "(self, *args, **kwargs)",
    (CodeChallenge, "__init__"): "(self, required=True)",
    (CodeChallenge, "validate_code_challenge"): "(self, grant, redirect_uri)",
    (CodeChallenge, "get_authorization_code_challenge"): "(self, authorization_code)",
    (
        CodeChallenge,
        "get_authorization_code_challenge_method",
    ): "(self, authorization_code)",
    (RevocationEndpoint, "authenticate_token"): "(self, request, client)",
    (RevocationEndpoint, "check_params"): "(self, request, client)",
    (RevocationEndpoint, "query_token"): "(self, token_string, token_type_hint)",
    (RevocationEndpoint, "revoke_token"): "(self, token, request)",
    (IntrospectionEndpoint, "check_params"): "(self, request, client)",
    (IntrospectionEndpoint, "check_permission"): "(self, token, client, request)",
    (IntrospectionEndpoint, "introspect_token"): "(self, token)",
    (IntrospectionEndpoint, "query_token"): "(self, token_string, token_type_hint)",
    (OAuth2Error, "__init__"): (
        "(self, description=None, uri=None, status_code=None, state=None, redirect_uri=None,"
        " redirect_fragment=False, error=None)"
    ),
}


@pytest.mark.parametrize(
    ("owner", "name"), list(SIGNATURES), ids=[f"{c.__name__}.{n}" for c, n in SIGNATURES]
)
def test_authlib_method_keeps_its_signature(owner: type[Any], name: str) -> None:
    assert _signature(getattr(owner, name)) == SIGNATURES[owner, name]


def test_authlib_functions_and_errors_keep_their_signatures() -> None:
    assert _signature(create_s256_code_challenge) == "(code_verifier)"
    # The adapter raises these with OAuth2Error's keyword arguments.
    assert InvalidClientError.__init__ is OAuth2Error.__init__
    assert InvalidRequestError.__init__ is OAuth2Error.__init__
    assert (InvalidClientError.error, InvalidRequestError.error) == (
        "invalid_client",
        "invalid_request",
    )


def test_authlib_properties_the_adapter_overrides_are_properties() -> None:
    for owner, name in [
        (OAuth2Request, "form"),
        (OAuth2Request, "args"),
        (OAuth2Request, "scope"),
        (OAuth2Payload, "data"),
        (OAuth2Payload, "datalist"),
    ]:
        assert isinstance(inspect.getattr_static(owner, name), property), (owner, name)
    assert inspect.getattr_static(OAuth2Request, "scope").fset is not None  # Authlib sets it


# 3. What the adapter's subclasses override, and what they add.


def _request() -> OAuthRequest:
    return OAuthRequest(method="POST", uri=ISSUER + "/oauth/token", headers={}, params={})


def _core() -> Any:
    from starlette_broker_oauth.core import AuthorizationCore

    storage = MemoryStorage()
    return AuthorizationCore(
        settings=full_settings(),
        clients=storage,
        accounts=storage,
        partners=storage,
        grants=storage,
    )


def _ours_and_authlibs(cls: type[Any]) -> tuple[set[str], set[str]]:
    """Names defined by the adapter's classes in ``cls``'s MRO, and names Authlib's have."""
    ours = {"__init__"} if "__init__" in vars(cls) else set()
    authlib: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("starlette_broker_oauth"):
            ours.update(n for n in vars(klass) if not n.startswith("__"))
        elif klass.__module__.startswith("authlib"):
            authlib.update(dir(klass))
    return ours, authlib


# For each subclass: the names it overrides (methods, properties, class attributes), and the
# names it adds (those, and the instance attributes its ``__init__`` sets that Authlib's
# does not).
SUBCLASSES: dict[type[Any], tuple[set[str], set[str]]] = {
    OAuthRequest: (
        {"__init__", "args", "form"},
        {"dpop", "endpoint", "known_client", "partner_flow"},
    ),
    ParamsPayload: ({"__init__", "data", "datalist"}, {"all_values", "first_values"}),
    BrokerAuthorizationServer: (
        {
            "__init__",
            "authenticate_client",
            "create_oauth2_request",
            "handle_error_response",
            "handle_response",
            "query_client",
            "send_signal",
        },
        {
            "authenticate_assertion",
            "authenticate_basic",
            "authenticate_credentials",
            "authenticate_post",
            "core",
        },
    ),
    ClientView: (
        {
            "__init__",
            "check_endpoint_auth_method",
            "check_grant_type",
            "check_redirect_uri",
            "check_response_type",
            "get_allowed_scope",
            "get_client_id",
            "get_default_redirect_uri",
        },
        {"core", "model"},
    ),
    CodeGrant: (
        {
            "TOKEN_ENDPOINT_AUTH_METHODS",
            "authenticate_user",
            "check_authorization_endpoint",
            "create_authorization_response",
            "create_token_response",
            "query_authorization_code",
            "validate_authorization_request",
        },
        set(),
    ),
    RefreshGrant: (
        {
            "INCLUDE_NEW_REFRESH_TOKEN",
            "TOKEN_ENDPOINT_AUTH_METHODS",
            "authenticate_refresh_token",
            "authenticate_user",
            "create_token_response",
        },
        set(),
    ),
    PartnerGrant: ({"TOKEN_ENDPOINT_AUTH_METHODS", "check_authorization_endpoint"}, set()),
    PartnerCodeGrant: (
        {
            "RESPONSE_TYPES",
            "TOKEN_ENDPOINT_AUTH_METHODS",
            "check_authorization_endpoint",
            "create_authorization_response",
            "validate_authorization_request",
        },
        set(),
    ),
    DirectTokenGrant: (
        {
            "TOKEN_ENDPOINT_AUTH_METHODS",
            "check_authorization_endpoint",
            "create_authorization_response",
            "validate_authorization_request",
        },
        set(),
    ),
    S256Only: (
        {
            "CODE_CHALLENGE_METHODS",
            "DEFAULT_CODE_CHALLENGE_METHOD",
            "SUPPORTED_CODE_CHALLENGE_METHOD",
            "validate_code_challenge",
        },
        set(),
    ),
    Revocation: (
        {"CLIENT_AUTH_METHODS", "authenticate_token", "query_token", "revoke_token"},
        set(),
    ),
    Introspection: (
        {
            "CLIENT_AUTH_METHODS",
            "check_params",
            "check_permission",
            "introspect_token",
            "query_token",
        },
        set(),
    ),
}


def _instance_names(cls: type[Any]) -> tuple[set[str], set[str]]:
    """Instance attributes our ``__init__`` sets, and those Authlib's sets."""
    if cls is OAuthRequest:
        ours, theirs = _request(), OAuth2Request("POST", ISSUER + "/oauth/token")
    elif cls is ParamsPayload:
        return set(vars(ParamsPayload({}))), set()
    elif cls is BrokerAuthorizationServer:
        ours, theirs = BrokerAuthorizationServer(_core()), AuthorizationServer()
    elif cls is ClientView:
        ours, theirs = ClientView(None, _core()), ClientMixin()  # type: ignore[arg-type]
    else:
        return set(), set()
    return set(vars(ours)), set(vars(theirs))


@pytest.mark.parametrize("cls", list(SUBCLASSES), ids=[c.__name__ for c in SUBCLASSES])
def test_subclass_overrides_authlib_names_and_adds_its_own(cls: type[Any]) -> None:
    ours, authlib = _ours_and_authlibs(cls)
    ours_instance, authlib_instance = _instance_names(cls)
    ours |= ours_instance - authlib_instance
    authlib |= authlib_instance
    overrides, additions = SUBCLASSES[cls]
    assert ours & authlib == overrides, "names overridden: an Authlib name changed"
    assert ours - authlib == additions, "names added: one is now Authlib's, or one is new"


def test_the_adapters_own_instance_attributes_are_public() -> None:
    for cls in (OAuthRequest, ParamsPayload, BrokerAuthorizationServer, ClientView):
        ours, theirs = _instance_names(cls)
        assert not {n for n in ours - theirs if n.startswith("_")}, cls


# 4. The attributes the adapter reads and writes on Authlib objects.


def test_authlib_objects_have_the_public_attributes_the_adapter_uses() -> None:
    request = OAuth2Request("POST", ISSUER + "/oauth/token")
    # Set by Authlib while it handles a request, read by the adapter afterwards.
    for name in ("client", "user", "authorization_code", "refresh_token", "payload"):
        assert getattr(request, name) is None, name
    assert (request.method, request.uri, request.headers) == ("POST", ISSUER + "/oauth/token", {})
    for name in ("client_id", "response_type", "grant_type", "redirect_uri", "scope", "state"):
        assert isinstance(inspect.getattr_static(OAuth2Payload, name), property), name

    error = InvalidRequestError("why", state="s", redirect_uri="https://app.example.com/cb")
    assert (error.error, error.description, error.state, error.redirect_uri) == (
        "invalid_request",
        "why",
        "s",
        "https://app.example.com/cb",
    )
    assert InvalidClientError(status_code=401).status_code == 401

    # Class attributes the adapter sets on its subclasses, and the names it asks for.
    assert isinstance(authlib_grants.AuthorizationCodeGrant.TOKEN_ENDPOINT_AUTH_METHODS, list)
    code_grant, implicit_grant = authlib_grants.AuthorizationCodeGrant, authlib_grants.ImplicitGrant
    assert ({"code"}, {"token"}) == (code_grant.RESPONSE_TYPES, implicit_grant.RESPONSE_TYPES)
    assert authlib_grants.RefreshTokenGrant.INCLUDE_NEW_REFRESH_TOKEN is False
    assert RevocationEndpoint.CLIENT_AUTH_METHODS == ["client_secret_basic"]
    assert (RevocationEndpoint.ENDPOINT_NAME, IntrospectionEndpoint.ENDPOINT_NAME) == (
        "revocation",
        "introspection",
    )
    assert CodeChallenge.DEFAULT_CODE_CHALLENGE_METHOD == "plain"
    assert set(CodeChallenge.CODE_CHALLENGE_METHODS) == {"plain", "S256"}
    assert CodeChallenge.SUPPORTED_CODE_CHALLENGE_METHOD == ["plain", "S256"]

    # Grants keep the request and the server they were made for.
    server = BrokerAuthorizationServer(_core())
    grant = CodeGrant(_request(), server)
    assert (grant.request.endpoint, grant.server) == ("token", server)


def test_authlib_accepts_the_issuers_the_settings_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter builds Authlib's requests on the issuer's URL: ``https``, or ``http`` on a
    loopback host (``OAuthSettings`` refuses any other)."""
    monkeypatch.delenv("AUTHLIB_INSECURE_TRANSPORT", raising=False)
    loopback = ("http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000")
    for issuer in ("https://broker.test", *loopback):
        assert OAuth2Request("POST", issuer + "/oauth/token").uri == issuer + "/oauth/token"
    with pytest.raises(OAuth2Error, match="insecure_transport"):
        OAuth2Request("POST", "http://broker.test/oauth/token")


def test_authlib_reads_the_code_challenge_from_the_code_view() -> None:
    code = AuthorizationCode(
        code_hash="h",
        client_id="c",
        account_id=uuid.uuid4(),
        redirect_uri="https://app.example.com/cb",
        scope="general",
        issued_at=datetime.now(UTC),
        expires_at=datetime.now(UTC),
        code_challenge="challenge",
        code_challenge_method="S256",
    )
    view = CodeView(code)
    pkce = S256Only(required=False)
    assert pkce.get_authorization_code_challenge(view) == "challenge"
    assert pkce.get_authorization_code_challenge_method(view) == "S256"


# 5. Authlib calls the adapter's hooks, from its own code, through real requests.

# (the adapter's class, the hook): Authlib must call each from one of its own modules.
HOOKS: list[tuple[type[Any], str]] = [
    (BrokerAuthorizationServer, "authenticate_basic"),
    (BrokerAuthorizationServer, "authenticate_client"),
    (BrokerAuthorizationServer, "authenticate_post"),
    (BrokerAuthorizationServer, "create_oauth2_request"),
    (BrokerAuthorizationServer, "handle_error_response"),
    (BrokerAuthorizationServer, "handle_response"),
    (BrokerAuthorizationServer, "query_client"),
    (BrokerAuthorizationServer, "send_signal"),
    (CodeGrant, "check_authorization_endpoint"),
    (CodeGrant, "create_token_response"),
    (CodeGrant, "query_authorization_code"),
    (RefreshGrant, "authenticate_refresh_token"),
    (RefreshGrant, "create_token_response"),
    (PartnerGrant, "check_authorization_endpoint"),
    (S256Only, "validate_code_challenge"),
    (Revocation, "authenticate_token"),
    (Revocation, "revoke_token"),
    (Introspection, "check_params"),
    (Introspection, "check_permission"),
    (Introspection, "introspect_token"),
    (Introspection, "query_token"),
    (ClientView, "check_endpoint_auth_method"),
    (ClientView, "check_grant_type"),
    (ClientView, "check_redirect_uri"),
    (ClientView, "check_response_type"),
    (ClientView, "get_allowed_scope"),
    (ClientView, "get_default_redirect_uri"),
    (CodeView, "get_redirect_uri"),
    (TokenView, "check_client"),
    (TokenView, "get_scope"),
    (TokenView, "is_expired"),
    (TokenView, "is_revoked"),
    (OAuthRequest, "form"),
    (ParamsPayload, "data"),
    (ParamsPayload, "datalist"),
]


def _spy(monkeypatch: pytest.MonkeyPatch, cls: type[Any], name: str, calls: set[str]) -> None:
    """Replace ``cls.name`` by a wrapper that records the module of each caller."""
    key = f"{cls.__name__}.{name}"

    def record() -> None:
        frame = inspect.currentframe()
        wrapper = frame.f_back if frame is not None else None
        caller_frame = wrapper.f_back if wrapper is not None else None
        assert caller_frame is not None
        caller = caller_frame.f_globals.get("__name__", "")
        if caller.startswith("authlib."):
            calls.add(key)

    raw = inspect.getattr_static(cls, name)
    if isinstance(raw, property):
        fget = raw.fget
        assert fget is not None

        def getter(self: Any) -> Any:
            record()
            return fget(self)

        monkeypatch.setattr(cls, name, property(getter, raw.fset))
    elif isinstance(raw, classmethod):
        function = raw.__func__

        def class_wrapper(klass: Any, *args: Any, **kwargs: Any) -> Any:
            record()
            return function(klass, *args, **kwargs)

        monkeypatch.setattr(cls, name, classmethod(class_wrapper))
    else:

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            record()
            return raw(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)


async def _every_flow(world: Platform) -> None:
    """Partner code and token, the exchange with PKCE, refresh with a scope, introspection,
    revocation, hosted consent with and without a redirect URI, and a refused exchange."""
    verifier, challenge = pkce_pair()
    code = await world.code(code_challenge=challenge, code_challenge_method="S256")
    exchanged = await world.exchange(code, code_verifier=verifier)
    assert exchanged.status_code == 200, exchanged.text
    pair = exchanged.json()
    refreshed = await world.http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": pair["refresh_token"],
            "scope": "general",
        },
        auth=(world.client_id, world.client_secret),
    )
    assert refreshed.status_code == 200, refreshed.text
    token = refreshed.json()["access_token"]
    basic = (world.client_id, world.client_secret)
    about = await world.http.post("/oauth/introspect", data={"token": token}, auth=basic)
    assert about.json()["active"] is True, about.text
    posted = {"token": token, "client_id": world.client_id, "client_secret": world.client_secret}
    revoked = await world.http.post("/oauth/revoke", data=posted)
    assert revoked.status_code == 200, revoked.text
    direct = await world.http.post("/v1/oauth/token", json=world.grant_body(), auth=world.partner)
    assert direct.status_code == 200, direct.text
    params = {
        "response_type": "code",
        "client_id": world.client_id,
        "redirect_uri": world.redirect_uri,
        "scope": "general",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    cookie = {"Cookie": f"session={world.paper_account}"}
    page = await world.http.get("/oauth/authorize?" + urlencode(params), headers=cookie)
    assert page.status_code == 200, page.text
    del params["redirect_uri"]  # two are registered: Authlib asks for a default, gets none
    page = await world.http.get("/oauth/authorize?" + urlencode(params), headers=cookie)
    assert page.status_code == 400, page.text
    refused = await world.exchange("not-a-code")
    assert refused.json()["error"] == "invalid_grant", refused.text


@pytest.mark.anyio
async def test_authlib_calls_every_hook_of_the_adapter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: set[str] = set()
    for cls, name in HOOKS:
        _spy(monkeypatch, cls, name, calls)
    verify = S256Only.CODE_CHALLENGE_METHODS["S256"]

    def spied_verify(code_verifier: str, code_challenge: str) -> bool:
        frame = inspect.currentframe()
        caller_frame = frame.f_back if frame is not None else None
        assert caller_frame is not None
        if caller_frame.f_globals.get("__name__", "").startswith("authlib."):
            calls.add("S256Only.CODE_CHALLENGE_METHODS['S256']")
        return verify(code_verifier, code_challenge)

    monkeypatch.setattr(S256Only, "CODE_CHALLENGE_METHODS", {"S256": spied_verify})
    async with MemoryStorage() as storage:
        world = await seed_full_platform("memory", storage, full_settings())
        async with world.http:
            await _every_flow(world)
    expected = {f"{cls.__name__}.{name}" for cls, name in HOOKS}
    expected.add("S256Only.CODE_CHALLENGE_METHODS['S256']")
    assert not expected - calls, f"Authlib no longer calls: {sorted(expected - calls)}"


# 6. The Authlib installed is the one pyproject.toml declares.


def test_installed_authlib_is_in_the_declared_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = [Requirement(d) for d in project["project"]["dependencies"]]
    (authlib,) = [r for r in declared if r.name.lower() == "authlib"]
    assert authlib.specifier.contains(version("authlib")), (str(authlib), version("authlib"))
    # An upper bound: a release the suite has not passed with is not accepted silently.
    assert any(spec.operator in {"<", "<=", "=="} for spec in authlib.specifier), str(authlib)
