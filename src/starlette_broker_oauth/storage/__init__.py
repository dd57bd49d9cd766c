"""Repositories: the abstract interfaces and the built-in backends."""

from .base import (
    AccountDetails,
    AccountRepository,
    ClientRepository,
    GrantStore,
    ManagedStorage,
    PartnerDetails,
    PartnerRepository,
    SchemaState,
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
    "ManagedStorage",
    "MemoryStorage",
    "PartnerRepository",
    "PartnerDetails",
    "SQLAlchemyStorage",
    "SchemaState",
    "Storage",
    "gather_connections",
]
