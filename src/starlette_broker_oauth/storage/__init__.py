"""Repositories: the abstract interfaces and the built-in backends."""

from .base import (
    AccountDetails,
    AccountRepository,
    ClientRepository,
    GrantStore,
    PartnerAuthenticator,
    PartnerDetails,
    Storage,
    gather_connections,
)
from .memory import MemoryStorage
from .sqlalchemy import SQLAlchemyStorage

__all__ = [
    "AccountDetails",
    "AccountRepository",
    "ClientRepository",
    "GrantStore",
    "MemoryStorage",
    "PartnerAuthenticator",
    "PartnerDetails",
    "SQLAlchemyStorage",
    "Storage",
    "gather_connections",
]
