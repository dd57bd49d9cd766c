"""starlette-broker-oauth: an OAuth 2.0 authorization server for brokerage ASGI apps."""

from .core.verifier import TokenVerifier, VerifiedToken, bearer_token
from .errors import (
    APIError,
    BadRequest,
    BrokerOAuthError,
    ConfigurationError,
    NotFound,
    ServiceUnavailable,
    StorageError,
    StorageUnavailable,
    TokenError,
    TokenErrorKind,
    Unauthorized,
    UnprocessableEntity,
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

__version__ = "0.1.0"

__all__ = [
    "APIError",
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
    "SQLAlchemyStorage",
    "ServiceUnavailable",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "TokenError",
    "TokenErrorKind",
    "TokenVerifier",
    "Unauthorized",
    "UnprocessableEntity",
    "VerifiedToken",
    "bearer_token",
    "create_oauth_app",
    "metadata_route",
]
