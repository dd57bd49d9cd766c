"""The Authlib adapter: the only package that imports Authlib.

Laid out like Authlib's own framework integrations (``integrations/flask_oauth2/``):

* ``requests.py`` - Authlib's view of a request whose parameters are already read;
* ``models.py`` - Authlib's views of clients, codes and tokens;
* ``grants.py`` - the grant classes (code, refresh, the partner's direct token, PKCE);
* ``endpoints.py`` - RFC 7009 revocation and RFC 7662 introspection;
* ``server.py`` - the authorization server, with client authentication and error hooks;
* ``protocol.py`` - the async face the HTTP layer calls.

It holds no rule of its own: every decision and write is the domain core's.
"""

from .protocol import Authorized, ConsentRequest, OAuthProtocol, ProtocolResponse

__all__ = ["Authorized", "ConsentRequest", "OAuthProtocol", "ProtocolResponse"]
