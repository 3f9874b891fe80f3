"""ClickHouse storage: one DDL, an embedded (chdb) and a server (clickhouse-connect) backend."""

from __future__ import annotations

from pipeline.settings import StoreSettings
from pipeline.store.base import QueryResult, Store, is_read_only
from pipeline.store.ddl import TABLES, schema_statements
from pipeline.store.embedded import EmbeddedStore
from pipeline.store.server import ServerStore


def open_store(settings: StoreSettings) -> Store:
    """The backend the settings choose: a server when a URL is set, else embedded chdb."""
    if settings.embedded:
        return EmbeddedStore(settings.path, settings.database, settings.ttl_days)
    return ServerStore(
        settings.clickhouse_url,
        settings.clickhouse_user,
        settings.clickhouse_password.reveal(),
        settings.database,
        settings.ttl_days,
    )


__all__ = [
    "TABLES",
    "EmbeddedStore",
    "QueryResult",
    "ServerStore",
    "Store",
    "is_read_only",
    "open_store",
    "schema_statements",
]
