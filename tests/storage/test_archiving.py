"""An archive and a create under the same row at once, as two nodes may do them: the row
made ends archived with its parent, never live under an archived one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clickback.domain import admin
from clickback.domain.ports import Store
from clickback.errors import ConflictError
from clickback.storage.primitives import now_us


async def _setup(store: Store) -> tuple[int, int]:
    adv = await admin.create_advertiser(store, {"name": "Shop"})
    body = {"name": "O", "destination_url": "https://shop.example/", "payout_amount": "1"}
    offer = await admin.create_offer(store, {**body, "advertiser_id": adv})
    return offer, await store.create_affiliate("Aff")


class ArchivedMeanwhile:
    """The store, with the offer archived by another node just before a link is made:
    after the create's check that the offer is live, before its insert."""

    def __init__(self, store: Store, offer_id: int):
        self.store, self.offer_id = store, offer_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def create_link(self, *args: Any, **kwargs: Any) -> int:
        await self.store.archive_row("offers", self.offer_id)
        return await self.store.create_link(*args, **kwargs)


async def test_a_link_made_as_its_offer_is_archived_is_archived_and_refused(
    store: Store,
) -> None:
    offer, aff = await _setup(store)
    racing: Any = ArchivedMeanwhile(store, offer)
    with pytest.raises(ConflictError) as refused:
        await admin.create_link(racing, {"offer_id": offer, "affiliate_id": aff})
    assert refused.value.code == "offer_archived"
    [link] = (await store.list_rows("links", {"offer_id": offer}, None, None, 9, None)).items
    assert link["archived_at"] is not None


async def test_an_archive_waits_for_a_link_being_made_under_it(store: Store) -> None:
    """PostgreSQL: a link inserted, not yet committed, when the offer is archived is
    waited for and archived with it (SQLite writes one transaction at a time)."""
    if store.engine != "postgres":
        pytest.skip("SQLite: one write transaction at a time, no interleaving to wait for")
    offer, aff = await _setup(store)
    pool: Any = store.pool  # type: ignore[attr-defined]
    async with pool.acquire() as conn:
        insert = conn.transaction()
        await insert.start()
        link = await conn.fetchval(
            "INSERT INTO links (code, offer_id, affiliate_id, created_at, updated_at)"
            " VALUES ('racing', $1, $2, $3, $3) RETURNING id",
            offer,
            aff,
            now_us(),
        )
        archive = asyncio.create_task(store.archive_row("offers", offer))
        await asyncio.sleep(0.5)
        waited = not archive.done()
        await insert.commit()
    assert await archive and waited, "the archive did not wait for the insert under way"
    row = await store.get_row("links", link)
    assert row is not None and row["archived_at"] is not None
