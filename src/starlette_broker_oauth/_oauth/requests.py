"""Authlib's view of a request whose parameters the HTTP face has already read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload

__all__ = ["OAuthRequest"]


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
