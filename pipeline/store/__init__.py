"""ClickHouse storage: one DDL, an embedded (chdb) and a server (clickhouse-connect) backend."""

from __future__ import annotations

from pipeline.settings import StoreSettings
from pipeline.store.base import QueryResult, Store
from pipeline.store.ddl import TABLES, schema_statements
from pipeline.store.embedded import EmbeddedStore
from pipeline.store.readonly import ReadLimits, ReadRefused
from pipeline.store.server import ServerStore


def open_store(settings: StoreSettings, limits: ReadLimits | None = None) -> Store:
    """The backend the settings choose: Tocsin's chdb backend on a data directory when no
    URL is set, else clickhouse-connect (a server, or chDB for a ``chdb:///path`` URL).
    ``limits`` bound analysts' reads (:meth:`Store.read`)."""
    if settings.embedded:
        return EmbeddedStore(settings.path, settings.database, settings.ttl_days, limits)
    return ServerStore(
        settings.clickhouse_url,
        settings.clickhouse_user,
        settings.clickhouse_password.reveal(),
        settings.database,
        settings.ttl_days,
        limits,
        cluster=settings.cluster,
    )


__all__ = [
    "TABLES",
    "EmbeddedStore",
    "QueryResult",
    "ReadLimits",
    "ReadRefused",
    "ServerStore",
    "Store",
    "open_store",
    "schema_statements",
]
