"""Authlib's view of a request whose parameters the HTTP face has already read."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request

from ..core import DPoPProof
from ..errors import InvalidRedirectURI, Refusal, UnsupportedGrantType, UnsupportedResponseType
from ..models import Account, Client

__all__ = ["OAuthRequest", "ParamsPayload"]

# What RFC 6749 §5.2 allows in an error description; Authlib refuses to build one with
# anything else, and it quotes these parameters in its descriptions.
_DESCRIBABLE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_QUOTED: dict[str, type[Refusal]] = {
    "redirect_uri": InvalidRedirectURI,
    "response_type": UnsupportedResponseType,
    "grant_type": UnsupportedGrantType,
}


def _screen(params: Mapping[str, Sequence[str]]) -> None:
    """Refuse, before Authlib sees them, values it would quote in an error description
    it cannot build: no registered redirect URI, response type or grant type has them."""
    for name, refusal in _QUOTED.items():
        for value in params.get(name, ()):
            if not _DESCRIBABLE.fullmatch(value):
                raise refusal(f"{name} is not valid")


class ParamsPayload(OAuth2Payload):  # type: ignore[misc]
    """Authlib's view of parameters already read: the first value of each, and all of them.

    Parameters:
        params: Every parameter with all its values, as the HTTP face read them.
    """

    def __init__(self, params: Mapping[str, Sequence[str]]) -> None:
        #: Every parameter with all its values (what Authlib calls ``datalist``).
        self.all_values: dict[str, list[str]] = {key: list(v) for key, v in params.items()}
        #: The first value of each parameter that has one (what Authlib calls ``data``).
        self.first_values: dict[str, str] = {
            key: values[0] for key, values in self.all_values.items() if values
        }

    @property
    def data(self) -> dict[str, str]:
        return self.first_values

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self.all_values


class OAuthRequest(OAuth2Request):  # type: ignore[misc]
    """An ``OAuth2Request`` over parameters already read from the HTTP request.

    Besides Authlib's own attributes (``client`` once Authlib has authenticated or looked
    it up, ``user`` the resource owner), it carries what the HTTP face has already read, so
    that the adapter does not ask the storage for it again.

    Parameters:
        method, uri, headers: Of the HTTP request.
        params: Every parameter with all its values; Authlib sees the first of each and
            refuses repeated ones where RFC 6749 §3.1 says so.
        partner_flow: True on the partner endpoints, where the partner, not a browser,
            asks for the code or token.
        known_client: The client as the partner endpoint has read and checked it; client
            authentication compares the secret with this record instead of reading it again.
        account: The account the partner endpoint has read and checked: the resource owner,
            known before the grant runs (Authlib's ``request.user``, as its
            ``get_consent_grant`` sets it).
        dpop: The token request's DPoP proof, once the core has checked it (RFC 9449).
    """

    payload: ParamsPayload
    partner_flow: bool
    known_client: Client | None
    user: Account | None
    dpop: DPoPProof | None

    def __init__(
        self,
        *,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        params: Mapping[str, Sequence[str]],
        partner_flow: bool = False,
        known_client: Client | None = None,
        account: Account | None = None,
        dpop: DPoPProof | None = None,
    ) -> None:
        _screen(params)
        super().__init__(method=method, uri=uri, headers=headers)
        self.payload = ParamsPayload(params)
        self.partner_flow = partner_flow
        self.known_client = known_client
        self.user = account
        self.dpop = dpop

    @property
    def form(self) -> dict[str, str]:
        return self.payload.first_values

    @property
    def args(self) -> dict[str, str]:
        return self.payload.first_values

    @property
    def endpoint(self) -> str:
        """The last path segment of the endpoint (``token``, ``revoke``, …)."""
        return str(self.uri).rsplit("/", 1)[-1]
