"""Storage: one Store implementation per engine, chosen by the database URL's scheme."""

from __future__ import annotations

from clickback.config import Settings
from clickback.domain.ports import Store
from clickback.errors import ConfigError


def unavailable_errors(url: str) -> tuple[type[BaseException], ...]:
    """What the driver of the URL's engine raises when the database may be out of reach
    for now (the store's `unavailable` tells which are)."""
    if url.startswith(("postgresql:", "postgres:")):
        from clickback.storage.postgres import PostgresStore

        return PostgresStore.unavailable_errors
    from clickback.storage.sqlite import SqliteStore

    return SqliteStore.unavailable_errors


async def open_store(url: str, settings: Settings | None = None) -> Store:
    settings = settings or Settings()
    if url.startswith("sqlite:"):
        from clickback.storage.sqlite import SqliteStore, path_from_url

        return SqliteStore(path_from_url(url), batch_max=settings.batch_max)
    if url.startswith(("postgresql:", "postgres:")):
        from clickback.storage.postgres import PostgresStore

        store = PostgresStore(
            url,
            pool_size=settings.pg_pool_size,
            batch_max=settings.batch_max,
            write_timeout=settings.pg_write_timeout,
        )
        await store.open()
        return store
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///file.db or postgresql://…")
