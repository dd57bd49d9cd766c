"""Repositories: the abstract interfaces and the built-in backends."""

from .base import (
    AccountRepository,
    ClientRepository,
    GrantStore,
    PartnerAuthenticator,
    Storage,
    gather_connections,
)
from .memory import MemoryStorage
from .sqlalchemy import SQLAlchemyStorage

__all__ = [
    "AccountRepository",
    "ClientRepository",
    "GrantStore",
    "MemoryStorage",
    "PartnerAuthenticator",
    "SQLAlchemyStorage",
    "Storage",
    "gather_connections",
]
