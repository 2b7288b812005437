"""A conversion's status changes and the outbound postbacks they queue, on both engines."""

from __future__ import annotations

from dataclasses import replace

from clickback.domain.ports import Store
from tests.storage.test_group_commit import conv, ledger, setup


async def test_a_rejection_taken_back_announces_a_sale_whose_postback_failed(
    store: Store,
) -> None:
    """The sale's postback failed (refused, or given up), then the conversion was rejected
    and approved again: the affiliate never heard of the sale, and a failed delivery
    cannot be resent once the later `approved` is delivered. A new `conversion` is
    queued first; one delivered (or still to be sent) is not queued twice."""
    adv, link = await setup(store)
    ids = []
    for order, state in (("F", "failed"), ("D", "delivered"), ("Q", "queued")):
        row = replace(conv(adv, link, order), status="rejected", delivery="queued")
        written = await store.write_postback(ledger(order), row)
        cid = written.conversion_id
        assert cid is not None
        await store._fetch(  # type: ignore[attr-defined]
            "UPDATE deliveries SET state = ? WHERE conversion_id = ? RETURNING id", state, cid
        )
        assert await store.transition(
            cid, "rejected", "approved", "x", "admin", "queued", announce="queued"
        )
        ids.append(cid)
    page = await store.list_rows("deliveries", {}, None, None, 50, None)
    got = sorted((d["conversion_id"], d["event"], d["state"]) for d in page.items)
    f, d, q = ids
    assert got == sorted(
        [
            (f, "conversion", "failed"),
            (f, "conversion", "queued"),  # announced anew
            (f, "approved", "queued"),
            (d, "conversion", "delivered"),
            (d, "approved", "queued"),
            (q, "conversion", "queued"),
            (q, "approved", "queued"),
        ]
    )
    # the failed one is not resent beside the sale told anew: the affiliate would count
    # it twice (two Idempotency-Keys)
    [old, new] = sorted(
        d["id"] for d in page.items if (d["conversion_id"], d["event"]) == (f, "conversion")
    )
    refused = await store.resend_delivery(old, 10**18)
    assert refused is not None and not refused["queued"] and refused["later_id"] == new


async def test_a_conversion_valued_is_never_valued_again(store: Store) -> None:
    """Valued is its base amount set: an order of zero valued without an order rate,
    stored with `rate` NULL (as it was for a while), keeps what it was valued at; a
    later import re-valued it at the rates then, behind the reports' back."""
    adv, link = await setup(store)
    ids = {}
    for order, base in (("Z", 0), ("W", None)):
        row = replace(conv(adv, link, order, amount=0), rate=None, base_amount=base)
        if base is None:
            row = replace(row, base_commission=None, flags="missing_rate")
        ids[order] = (await store.write_postback(ledger(order), row)).conversion_id
    waiting = await store.unvalued_conversions(0, 10)
    assert [r["id"] for r in waiting] == [ids["W"]]
