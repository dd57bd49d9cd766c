"""The domain core: every rule of who gets a code or token, and every issuance and
revocation. It knows nothing of HTTP or Authlib and refuses with
:class:`~starlette_broker_oauth.errors.Refusal` subclasses.

* ``policy.py`` - what a client may ask for, and for which account: pure decisions;
* ``records.py`` - minting codes and tokens;
* ``authority.py`` - :class:`AuthorizationCore`: the policy applied to the repositories,
  with issuance, redemption, rotation and revocation and their audit events;
* ``revocation.py`` - everything that ends access: a token, a grant with its pending
  codes, an account's or a client's tokens; announced to token caches;
* ``administration.py`` - :class:`Administrator`: admin changes with their rules;
* ``connections.py`` - :class:`ConnectedApps`: an account's connected apps, listed and cut;
* ``assertions.py`` - :class:`ClientAssertions`: ``private_key_jwt`` client assertions
  (RFC 7523) checked, their ``jti`` used once;
* ``pushed.py`` - :class:`PushedRequests`: pushed authorization requests (RFC 9126);
* ``dpop.py`` - :class:`DPoPChecker`: the checks of a DPoP proof (RFC 9449);
* ``health.py`` - :class:`Readiness`: whether a worker can serve, and which check says not.
"""

from .administration import Administrator
from .assertions import ASSERTION_TYPE, ClientAssertions
from .authority import AuthorizationCore
from .connections import ConnectedApp, ConnectedApps
from .dpop import DPoPChecker, DPoPProof
from .health import Readiness, ReadinessReport
from .policy import AUTHORIZATION_PARAMS, Policy
from .pushed import REQUEST_URI_PREFIX, PushedAuthorization, PushedRequests
from .records import IssuedCode, IssuedToken, Minter

__all__ = [
    "ASSERTION_TYPE",
    "AUTHORIZATION_PARAMS",
    "REQUEST_URI_PREFIX",
    "Administrator",
    "AuthorizationCore",
    "ClientAssertions",
    "ConnectedApp",
    "ConnectedApps",
    "DPoPChecker",
    "DPoPProof",
    "IssuedCode",
    "IssuedToken",
    "Minter",
    "Policy",
    "PushedAuthorization",
    "PushedRequests",
    "Readiness",
    "ReadinessReport",
]
