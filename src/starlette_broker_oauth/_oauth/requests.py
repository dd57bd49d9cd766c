"""Authlib's view of a request whose parameters the HTTP face has already read."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload

from ..errors import InvalidRedirectURI, Refusal, UnsupportedGrantType, UnsupportedResponseType

__all__ = ["OAuthRequest"]

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


class OAuthRequest(OAuth2Request):  # type: ignore[misc]
    """An ``OAuth2Request`` over parameters already read from the HTTP request.

    Parameters:
        method, uri, headers: Of the HTTP request.
        params: Every parameter with all its values; Authlib sees the first of each and
            refuses repeated ones where RFC 6749 §3.1 says so.
        partner_flow: True on the partner endpoints, where the partner, not a browser,
            asks for the code or token.
    """

    def __init__(
        self,
        *,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        params: Mapping[str, Sequence[str]],
        partner_flow: bool = False,
    ) -> None:
        _screen(params)
        super().__init__(method=method, uri=uri, headers=headers)
        self._params = {key: values[0] for key, values in params.items() if values}
        self.payload = BasicOAuth2Payload(self._params)
        self.payload._datalist = {key: list(values) for key, values in params.items()}
        self.partner_flow = partner_flow

    @property
    def form(self) -> dict[str, str]:
        return self._params

    @property
    def args(self) -> dict[str, str]:
        return self._params

    @property
    def endpoint(self) -> str:
        """The last path segment of the endpoint (``token``, ``revoke``, …)."""
        return str(self.uri).rsplit("/", 1)[-1]
