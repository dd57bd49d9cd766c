"""starlette-broker-oauth: an OAuth 2.0 authorization server for brokerage ASGI apps."""

from . import errors as _errors
from .core.verifier import TokenVerifier, VerifiedToken, bearer_token
from .errors import (
    BadRequest,
    BrokerOAuthError,
    ConfigurationError,
    NotFound,
    RequestError,
    StorageError,
    StorageUnavailable,
    TokenError,
    TokenErrorKind,
)
from .models import (
    AccessToken,
    Account,
    AuthorizationCode,
    Client,
    ClientCredentials,
    ClientStatus,
    Connection,
    Partner,
    PartnerCredentials,
    RefreshToken,
)
from .settings import OAuthSettings
from .storage import (
    AccountRepository,
    ClientRepository,
    GrantStore,
    ManagedStorage,
    MemoryStorage,
    PartnerRepository,
    SQLAlchemyStorage,
    Storage,
)
from .web.app import create_oauth_app, metadata_route
from .web.health import health_routes

__version__ = "0.1.0"

__all__ = [
    "AccessToken",
    "Account",
    "AccountRepository",
    "AuthorizationCode",
    "BadRequest",
    "BrokerOAuthError",
    "Client",
    "ClientCredentials",
    "ClientRepository",
    "ClientStatus",
    "ConfigurationError",
    "Connection",
    "GrantStore",
    "ManagedStorage",
    "MemoryStorage",
    "NotFound",
    "OAuthSettings",
    "Partner",
    "PartnerCredentials",
    "PartnerRepository",
    "RefreshToken",
    "RequestError",
    "SQLAlchemyStorage",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "TokenError",
    "TokenErrorKind",
    "TokenVerifier",
    "VerifiedToken",
    "bearer_token",
    "create_oauth_app",
    "health_routes",
    "metadata_route",
]


def __getattr__(name: str) -> type[BrokerOAuthError]:
    # APIError, ServiceUnavailable, Unauthorized, UnprocessableEntity: deprecated names.
    return _errors.deprecated(name, __name__)
