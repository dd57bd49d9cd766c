"""Pushed authorization requests (RFC 9126): their rules, from the push to the one use.

A client pushes its authorization request to ``POST /oauth/par`` with client
authentication; the request is validated in full there (by the same code as a browser's
request at the hosted consent page) and stored by the hash of a new ``request_uri``'s
random part. The ``request_uri`` then stands for the request at the authorization
endpoint (the hosted consent page, or the partner's ``POST /v1/oauth/authorize``): it is
the pushing client's only, it works until it is used once or expires, and the
front-channel parameters beside it other than ``client_id`` are ignored (RFC 9126 §4).

A client, or the whole platform, may require pushed requests (RFC 9126 §6): a
front-channel request without ``request_uri`` is then refused as ``invalid_request``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..clock import Clock
from ..errors import InvalidRequest, InvalidRequestURI, PushedRequestRequired
from ..models import Client, PushedRequest
from ..security import hash_secret, new_secret, secrets_equal
from ..settings import OAuthSettings
from ..storage.base import ClientRepository, GrantStore
from .dpop import is_thumbprint

__all__ = ["REQUEST_URI_PREFIX", "PushedAuthorization", "PushedRequests"]

#: RFC 9126 §2.2: the ``request_uri`` is a URN of this form, ending in a random value.
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"


@dataclass(frozen=True, slots=True, kw_only=True)
class PushedAuthorization:
    """A pushed request's ``request_uri`` (given out once) and its lifetime."""

    request_uri: str
    expires_in: int

    def response(self) -> dict[str, Any]:
        """The RFC 9126 §2.2 response body."""
        return {"request_uri": self.request_uri, "expires_in": self.expires_in}


def request_hash(request_uri: str) -> str | None:
    """The storage key of a ``request_uri``: the hash of its random part; ``None`` for a
    value that is not one of ours."""
    if not request_uri.startswith(REQUEST_URI_PREFIX):
        return None
    random_part = request_uri[len(REQUEST_URI_PREFIX) :]
    return hash_secret(random_part) if random_part else None


class PushedRequests:
    """The rules of pushed authorization requests, over the grant store.

    Parameters:
        settings: Server settings (``par_lifetime``, ``require_pushed_authorization_requests``).
        clients: Where clients are looked up.
        grants: Where pushed requests are kept.
        clock: Where time is read.
    """

    def __init__(
        self,
        *,
        settings: OAuthSettings,
        clients: ClientRepository,
        grants: GrantStore,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.grants = grants
        self.clock = clock

    # at the PAR endpoint

    def check_pushable(self, params: Mapping[str, Sequence[str]]) -> None:
        """What a pushed request must be beyond a valid authorization request: no
        ``request_uri`` in it (RFC 9126 §2.1), and PKCE (RFC 7636; its method, ``S256``,
        is checked with the request)."""
        if "request_uri" in params:
            raise InvalidRequest("request_uri may not be pushed (RFC 9126 §2.1)")
        if not any(params.get("code_challenge", ())):
            raise InvalidRequest("code_challenge is required: PKCE with S256 (RFC 7636)")
        for value in params.get("dpop_jkt", ()):
            if not is_thumbprint(value):
                raise InvalidRequest("dpop_jkt must be a JWK SHA-256 thumbprint (RFC 9449 §10)")

    def check_client_id(self, client: Client, params: Mapping[str, Sequence[str]]) -> None:
        """A ``client_id`` in the pushed request must name the authenticated client
        (RFC 9126 §2.1)."""
        for value in params.get("client_id", ()):
            if not secrets_equal(value, client.client_id):
                raise InvalidRequest("client_id is not the authenticated client's")

    async def push(self, client: Client, params: Sequence[tuple[str, str]]) -> PushedAuthorization:
        """Store a validated request for ``client``: a new ``request_uri`` for it."""
        random_part = new_secret()
        lifetime = self.settings.par_lifetime
        await self.grants.save_pushed_request(
            PushedRequest(
                request_hash=hash_secret(random_part),
                client_id=client.client_id,
                params=tuple(params),
                expires_at=self.clock.now() + lifetime,
            )
        )
        return PushedAuthorization(
            request_uri=REQUEST_URI_PREFIX + random_part,
            expires_in=int(lifetime.total_seconds()),
        )

    # at the authorization endpoint

    def required(self, client: Client | None) -> bool:
        """Whether authorization requests for ``client`` must be pushed (RFC 9126 §6)."""
        if self.settings.require_pushed_authorization_requests:
            return True
        return client is not None and client.require_pushed_authorization_requests

    async def check_front_channel(
        self, client_id: str | None, *, client: Client | None = None
    ) -> None:
        """Refuse a request without ``request_uri`` where pushed requests are required
        (RFC 9126 §4: ``invalid_request``). ``client`` is the client as this request
        already read it, if it did."""
        if self.settings.require_pushed_authorization_requests:
            raise PushedRequestRequired()
        if client is None and client_id:
            client = await self.clients.get_client(client_id)
        if self.required(client):
            raise PushedRequestRequired()

    async def find(self, client_id: str | None, request_uri: str | None) -> PushedRequest:
        """The pushed request a ``request_uri`` stands for, if ``client_id`` pushed it and
        it is unused and unexpired; one refusal for every other case."""
        key = None if request_uri is None else request_hash(request_uri)
        record = None if key is None or not client_id else await self.grants.get_pushed_request(key)
        if (
            record is None
            or client_id is None
            or not secrets_equal(record.client_id, client_id)
            or self.clock.now() >= record.expires_at
        ):
            raise InvalidRequestURI()
        return record

    async def use(self, record: PushedRequest, *, presented_at: datetime | None = None) -> None:
        """Use the pushed request up, once; refused if it was used already.

        ``presented_at``: when its ``request_uri`` was presented, if that was earlier
        than now (the hosted page's ``GET``, with the user's decision coming later):
        it must have been unexpired then."""
        now = self.clock.now() if presented_at is None else presented_at
        if not await self.grants.use_pushed_request(
            record.request_hash, client_id=record.client_id, now=now
        ):
            raise InvalidRequestURI()
