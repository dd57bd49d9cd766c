"""The OpenAPI 3.1 document of the sub-application, served at ``/oauth/openapi.json``."""

from __future__ import annotations

from typing import Any

from .. import routes
from ..core import AUTHORIZATION_PARAMS
from ..routes import RouteSpec
from ..settings import OAuthSettings

__all__ = ["openapi_document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return response


# Sent with every 503.
_RETRY = {"Retry-After": "Seconds to wait before trying again: 1."}


def _broker_errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "The request could not be read: a body that is not JSON or form-encoded, "
        "malformed, nested too deeply or too large, or a query string that is not UTF-8.",
        404: "Not found (a path with control characters).",
        401: "Partner authentication failed, or the client is unknown, not the partner's, "
        "or its secret is wrong (one answer for all).",
        422: "A field is missing or invalid: redirect URI, scope, response type, account, "
        "disabled client, live account without approval.",
        500: "Internal server error.",
        503: "The storage is unavailable; retry later.",
    }
    return {
        str(s): _json(_ref("BrokerError"), text[s], **(_RETRY if s == 503 else {}))
        for s in statuses
    }


def _oauth_errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "RFC 6749 §5.2 error (invalid_request, invalid_grant, invalid_scope, "
        "unauthorized_client, unsupported_grant_type, unsupported_token_type).",
        401: "invalid_client: client authentication failed.",
        500: "server_error.",
        503: "temporarily_unavailable: the storage is unavailable.",
    }
    return {
        str(s): _json(_ref("OAuthError"), text[s], **(_RETRY if s == 503 else {})) for s in statuses
    }


def _token_request(settings: OAuthSettings) -> dict[str, Any]:
    """The token endpoint's form, one shape per grant type; refresh appears only when this
    server issues refresh tokens. ``client_id`` and ``client_secret`` are
    client_secret_post, for a request without an ``Authorization`` header."""
    client = {"client_id": {"type": "string"}, "client_secret": {"type": "string"}}
    shapes: list[dict[str, Any]] = [
        {
            "type": "object",
            "required": ["grant_type", "code", "redirect_uri"],
            "properties": {
                "grant_type": {"const": "authorization_code"},
                "code": {"type": "string"},
                "redirect_uri": {"type": "string"},
                "code_verifier": {"type": "string"},
                **client,
            },
        }
    ]
    if settings.refresh_token_lifetime is not None:
        shapes.append(
            {
                "type": "object",
                "required": ["grant_type", "refresh_token"],
                "properties": {
                    "grant_type": {"const": "refresh_token"},
                    "refresh_token": {"type": "string"},
                    "scope": {"type": "string"},
                    **client,
                },
            }
        )
    return shapes[0] if len(shapes) == 1 else {"oneOf": shapes}


_GRANT_FIELDS = {
    "client_id": {"type": "string"},
    "client_secret": {"type": "string"},
    "redirect_uri": {"type": "string", "description": "A registered URI, exactly."},
    "scope": {
        "oneOf": [{"type": "string"}, {"type": "number"}],
        "description": "Space-separated scopes; a number counts as its decimal text.",
    },
    "account_id": {"type": "string", "format": "uuid"},
}


def openapi_document(
    settings: OAuthSettings, *, hosted_consent: bool, connections: bool = False
) -> dict[str, Any]:
    """The document for these settings: servers, scopes, the grant types this server
    accepts, and the hosted pages that are on."""
    partner: list[dict[str, list[str]]] = [{"partnerBasic": []}]
    # {}: client_secret_post, the credentials in the form
    client_auth: list[dict[str, list[str]]] = [{"clientBasic": []}, {}]
    grant_body = {
        "required": True,
        "content": {
            "application/json": {"schema": _ref("GrantRequest")},
            "application/x-www-form-urlencoded": {"schema": _ref("GrantRequest")},
        },
    }
    form = "application/x-www-form-urlencoded"
    operations: dict[RouteSpec, dict[str, Any]] = {
        routes.PARTNER_CLIENT: {
            "get": {
                "summary": "Details of a client, for the partner's consent page",
                "operationId": "getClient",
                "security": partner,
                "parameters": [
                    {
                        "name": "client_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {"name": "response_type", "in": "query", "schema": {"enum": ["code", "token"]}},
                    {"name": "redirect_uri", "in": "query", "schema": {"type": "string"}},
                    {"name": "scope", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "request_uri",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "RFC 9126: a request the client pushed; the answer "
                        "carries its parameters as `request` (the other query parameters "
                        "are then not checked).",
                    },
                ],
                "responses": {
                    "200": _json(_ref("Client"), "The client."),
                    **_broker_errors(400, 401, 404, 422, 500, 503),
                },
            }
        },
        routes.PARTNER_TOKEN: {
            "post": {
                "summary": "Issue an access token for an account (response type token)",
                "operationId": "issueToken",
                "security": partner,
                "requestBody": grant_body,
                "responses": {
                    "200": _json(
                        _ref("BrokerToken"), "The token.", **{"Cache-Control": "no-store"}
                    ),
                    **_broker_errors(400, 401, 422, 500, 503),
                },
            }
        },
        routes.PARTNER_AUTHORIZE: {
            "post": {
                "summary": "Issue a one-time authorization code for an account",
                "operationId": "authorize",
                "security": partner,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("CodeRequest")},
                        form: {"schema": _ref("CodeRequest")},
                    },
                },
                "responses": {
                    "200": _json(_ref("Code"), "The code.", **{"Cache-Control": "no-store"}),
                    **_broker_errors(400, 401, 422, 500, 503),
                },
            }
        },
        routes.PARTNER_REVOKE: {
            "delete": {
                "summary": "Revoke an access token (the token value is the id)",
                "operationId": "deleteToken",
                "security": partner,
                "parameters": [
                    {
                        "name": "token_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "204": {
                        "description": "The grant the token belongs to is revoked, or the "
                        "token is unknown to this partner (nothing happens)."
                    },
                    **_broker_errors(400, 401, 404, 500, 503),
                },
            }
        },
        routes.TOKEN: {
            "post": {
                "summary": "Token endpoint (RFC 6749 §3.2): code exchange and refresh",
                "operationId": "token",
                "security": client_auth,
                "requestBody": {
                    "required": True,
                    "content": {form: {"schema": _ref("TokenRequest")}},
                },
                "responses": {
                    "200": _json(
                        _ref("OAuthToken"), "RFC 6749 §5.1.", **{"Cache-Control": "no-store"}
                    ),
                    **_oauth_errors(400, 401, 500, 503),
                },
            }
        },
        routes.PUSHED_AUTHORIZATION: {
            "post": {
                "summary": "Pushed authorization request (RFC 9126): push the authorization "
                "request, get a request_uri for the authorization endpoint",
                "operationId": "pushAuthorizationRequest",
                "security": client_auth,
                "requestBody": {
                    "required": True,
                    "content": {form: {"schema": _ref("PushedAuthorizationRequest")}},
                },
                "responses": {
                    "201": _json(
                        _ref("PushedAuthorizationResponse"),
                        "RFC 9126 §2.2: a single-use request_uri, for this client only.",
                        **{"Cache-Control": "no-store"},
                    ),
                    **_oauth_errors(400, 401, 500, 503),
                },
            }
        },
        routes.REVOCATION: {
            "post": {
                "summary": "Token revocation (RFC 7009)",
                "operationId": "revoke",
                "security": client_auth,
                "requestBody": {
                    "required": True,
                    "content": {form: {"schema": _ref("TokenQuery")}},
                },
                "responses": {
                    "200": _json({"type": "object"}, "Revoked, or not the caller's, or unknown."),
                    **_oauth_errors(400, 401, 500, 503),
                },
            }
        },
        routes.INTROSPECTION: {
            "post": {
                "summary": "Token introspection (RFC 7662)",
                "operationId": "introspect",
                "security": client_auth,
                "requestBody": {
                    "required": True,
                    "content": {form: {"schema": _ref("IntrospectionQuery")}},
                },
                "responses": {
                    "200": _json(_ref("Introspection"), "RFC 7662 §2.2."),
                    **_oauth_errors(400, 401, 500, 503),
                },
            }
        },
        routes.METADATA: {
            "get": {
                "summary": "Authorization server metadata (RFC 8414)",
                "operationId": "metadata",
                "security": [],
                "responses": {
                    "200": _json({"type": "object"}, "RFC 8414 §3.2."),
                    **_broker_errors(400),
                },
            }
        },
        routes.OPENAPI: {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "security": [],
                "responses": {
                    "200": _json({"type": "object"}, "OpenAPI 3.1."),
                    **_broker_errors(400),
                },
            }
        },
    }
    html = {"text/html": {"schema": {"type": "string"}}}
    redirect = {
        "description": "To the client's redirect URI (code or error, state, iss), or to "
        "the platform's login page.",
        "headers": {"Location": {"schema": {"type": "string"}}},
    }

    def page(text: str) -> dict[str, Any]:
        return {"description": text, "content": html}

    page_error = page(
        "The client or redirect URI is invalid, or the form is not valid: an error "
        "page, never a redirect (RFC 9700 §4.11)."
    )
    page_errors = {
        "400": page_error,
        "401": page("The user is no longer signed in."),
        "403": page("The form was sent from another site."),
        "500": page("Internal server error."),
        "503": {
            **page("The storage is unavailable; nothing was changed."),
            "headers": {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in _RETRY.items()
            },
        },
    }
    operations[routes.CONSENT] = {
        "get": {
            "summary": "Authorization endpoint (RFC 6749 §4.1.1): the consent page",
            "operationId": "consentPage",
            "security": [],
            "parameters": [
                {
                    "name": name,
                    "in": "query",
                    "required": name == "client_id",
                    "schema": {"type": "string"},
                }
                for name in (*AUTHORIZATION_PARAMS, "request_uri")
            ],
            "responses": {
                "200": {"description": "The consent page.", "content": html},
                "303": redirect,
                "400": page_error,
                "500": page_errors["500"],
                "503": page_errors["503"],
            },
        },
        "post": {
            "summary": "The user's decision",
            "operationId": "consentDecision",
            "security": [],
            "requestBody": {"required": True, "content": {form: {"schema": _ref("Decision")}}},
            "responses": {"303": redirect, **page_errors},
        },
    }
    operations[routes.CONNECTIONS] = {
        "get": {
            "summary": "The signed-in user's connected apps",
            "operationId": "connectionsPage",
            "security": [],
            "parameters": [
                {"name": "disconnected", "in": "query", "schema": {"type": "string"}},
                {"name": "account", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "The connected-apps page.", "content": html},
                "303": {
                    "description": "To the platform's login page.",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                "400": page_error,
                "500": page_errors["500"],
                "503": page_errors["503"],
            },
        },
        "post": {
            "summary": "Disconnect an app from one of the user's accounts",
            "operationId": "disconnect",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {form: {"schema": _ref("Disconnect")}},
            },
            "responses": {
                "303": {
                    "description": "Back to the connected-apps page.",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                **page_errors,
            },
        },
    }
    served = routes.served(consent=hosted_consent, connections=connections)
    paths = {route.path: operations[route] for route in served}
    scopes = sorted(settings.scopes_supported)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Broker OAuth",
            "version": "1",
            "description": "OAuth 2.0 authorization server of the brokerage: the partner "
            "endpoints of the Broker API and the standard endpoints.",
        },
        "servers": [{"url": settings.issuer}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "partnerBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The partner's key id and secret.",
                },
                "clientBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "client_secret_basic (RFC 6749 §2.3.1).",
                },
            },
            "schemas": {
                "BrokerError": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
                },
                "OAuthError": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "error_description": {"type": "string"},
                    },
                },
                "Client": {
                    "type": "object",
                    "required": [
                        "client_id",
                        "name",
                        "status",
                        "redirect_uri",
                        "live_trading_approved",
                    ],
                    "properties": {
                        "client_id": {"type": "string"},
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "url": {"type": "string"},
                        "terms_of_use": {"type": "string"},
                        "privacy_policy": {"type": "string"},
                        "status": {"enum": ["ACTIVE", "DISABLED"]},
                        "redirect_uri": {"type": "array", "items": {"type": "string"}},
                        "live_trading_approved": {"type": "boolean"},
                        "request": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "description": "With request_uri: the pushed request's "
                            "parameters (RFC 9126).",
                        },
                    },
                },
                "GrantRequest": {
                    "type": "object",
                    "required": list(_GRANT_FIELDS),
                    "properties": _GRANT_FIELDS,
                },
                "CodeRequest": {
                    "type": "object",
                    "required": list(_GRANT_FIELDS),
                    "properties": {
                        **_GRANT_FIELDS,
                        "code_challenge": {"type": "string", "description": "RFC 7636 §4.2."},
                        "code_challenge_method": {"enum": ["S256"]},
                        "request_uri": {
                            "type": "string",
                            "description": "RFC 9126: a request the client pushed, used up "
                            "here; its redirect_uri, scope, state and PKCE challenge are "
                            "the code's, and those of this body are ignored.",
                        },
                    },
                },
                "BrokerToken": {
                    "type": "object",
                    "required": ["access_token", "token_type", "scope"],
                    "properties": {
                        "access_token": {"type": "string"},
                        "token_type": {"const": "Bearer"},
                        "scope": {"type": "string"},
                        "expires_in": {"type": "integer"},
                    },
                },
                "Code": {
                    "type": "object",
                    "required": ["code", "client_id", "redirect_uri", "scope"],
                    "properties": {
                        "code": {"type": "string"},
                        "client_id": {"type": "string"},
                        "redirect_uri": {"type": "string"},
                        "scope": {"type": "string"},
                        "state": {
                            "type": "string",
                            "description": "The pushed request's state, for the redirect.",
                        },
                    },
                },
                "TokenRequest": _token_request(settings),
                "OAuthToken": {
                    "type": "object",
                    "required": ["access_token", "token_type"],
                    "properties": {
                        "access_token": {"type": "string"},
                        "token_type": {"const": "Bearer"},
                        "scope": {"type": "string"},
                        "expires_in": {"type": "integer"},
                        "refresh_token": {"type": "string"},
                    },
                },
                "PushedAuthorizationRequest": {
                    "type": "object",
                    "required": ["response_type", "redirect_uri", "code_challenge"],
                    "properties": {
                        "response_type": {"const": "code"},
                        "client_id": {"type": "string"},
                        "redirect_uri": {"type": "string", "description": "Registered, exactly."},
                        "scope": {"type": "string"},
                        "state": {"type": "string"},
                        "code_challenge": {"type": "string", "description": "RFC 7636 §4.2."},
                        "code_challenge_method": {"enum": ["S256"]},
                        "client_secret": {"type": "string"},
                    },
                },
                "PushedAuthorizationResponse": {
                    "type": "object",
                    "required": ["request_uri", "expires_in"],
                    "properties": {
                        "request_uri": {
                            "type": "string",
                            "pattern": "^urn:ietf:params:oauth:request_uri:",
                        },
                        "expires_in": {"type": "integer"},
                    },
                },
                "TokenQuery": {
                    "type": "object",
                    "required": ["token"],
                    "properties": {
                        "token": {"type": "string"},
                        "token_type_hint": {"enum": ["access_token", "refresh_token"]},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                },
                # RFC 7662 §2.1: a hint the server does not know only widens its search
                # (introspection has no unsupported_token_type, unlike RFC 7009).
                "IntrospectionQuery": {
                    "type": "object",
                    "required": ["token"],
                    "properties": {
                        "token": {"type": "string"},
                        "token_type_hint": {
                            "type": "string",
                            "description": "access_token or refresh_token; any other "
                            "value is ignored",
                        },
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                },
                "Introspection": {
                    "type": "object",
                    "required": ["active"],
                    "properties": {
                        "active": {"type": "boolean"},
                        "scope": {"type": "string"},
                        "client_id": {"type": "string"},
                        "token_type": {"type": "string"},
                        "sub": {"type": "string"},
                        "iat": {"type": "integer"},
                        "exp": {"type": "integer"},
                        "iss": {"type": "string"},
                    },
                },
                "Decision": {
                    "type": "object",
                    "required": ["decision", "csrf_token"],
                    "properties": {
                        "decision": {"enum": ["approve", "deny"]},
                        "csrf_token": {"type": "string"},
                        "account_id": {"type": "string", "format": "uuid"},
                    },
                    "additionalProperties": {"type": "string"},
                },
                "Disconnect": {
                    "type": "object",
                    "required": ["csrf_token", "account_id", "client_id"],
                    "properties": {
                        "csrf_token": {"type": "string"},
                        "account_id": {"type": "string", "format": "uuid"},
                        "client_id": {"type": "string"},
                    },
                },
                "Scope": {
                    "enum": scopes,
                    "description": "\n".join(f"- `{s}`: {settings.describe(s)}" for s in scopes),
                },
            },
        },
    }
