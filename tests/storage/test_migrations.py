"""Several nodes starting at once on one PostgreSQL database migrate it once, in order."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from clickback.storage import schema
from clickback.storage.postgres import PostgresStore
from tests.conftest import PG_URL


async def test_nodes_starting_together_migrate_once() -> None:
    name = "m_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f"CREATE SCHEMA {name}")
    stores = [PostgresStore(f"{PG_URL}?schema={name}") for _ in range(4)]
    try:
        versions = await asyncio.gather(*(s.migrate() for s in stores))
        assert versions == [schema.LATEST] * 4
        applied = await admin.fetch(f"SELECT version FROM {name}.schema_migrations ORDER BY 1")
        assert [r[0] for r in applied] == [v for v, _, _ in schema.MIGRATIONS]
    finally:
        await admin.execute(f"DROP SCHEMA {name} CASCADE")
        await admin.close()
