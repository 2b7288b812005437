"""The conversion screening's writes on both engines: each flagged conversion's update and
audit event, guarded so that a conversion whose status moved since the screening read it
(changed by hand meanwhile) is left as it is, with no event."""

from __future__ import annotations

from clickback.domain.ports import Screening, Store
from tests.storage.test_group_commit import conv, ledger, setup


async def test_flagged_screenings_update_and_log_only_conversions_still_as_read(
    store: Store,
) -> None:
    adv, link = await setup(store)
    ids = []
    for order in ("A", "B", "C", "D"):
        written = await store.write_postback(ledger(order), conv(adv, link, order))
        assert written.conversion_id is not None
        ids.append(written.conversion_id)
    a, b, c, d = ids
    # B is rejected by hand after the screening read it as approved
    assert await store.transition(b, "approved", "rejected", "chargeback", "admin")
    assert await store.acquire_job("screening", "me", 1, 10**18) == ""
    assert await store.screen_conversions(
        [
            Screening(a, "geo_mismatch", "approved", "approved", "flagged: geo", ""),
            Screening(b, "geo_mismatch", "approved", "pending", "flagged: geo", ""),
            Screening(c, "ip_velocity", "approved", "pending", "held: velocity", ""),
            Screening(d, "", "approved", "approved", "", ""),  # nothing found
        ],
        "me",
        now=9_000,
    )
    got = {}
    for cid in ids:
        row, history = await store.conversion_with_history(cid)
        assert row is not None
        events = [(e["from_status"], e["to_status"], e["reason"], e["actor"]) for e in history]
        got[cid] = (row["flags"], row["status"], row["screened"], events)
    assert got[a] == (
        "geo_mismatch",
        "approved",
        1,
        [("approved", "approved", "flagged: geo", "fraud_screening")],
    )
    # left as the hand change made it: not flagged, not screened, no screening event
    assert got[b] == ("", "rejected", 0, [("approved", "rejected", "chargeback", "admin")])
    assert got[c] == (
        "ip_velocity",
        "pending",
        1,
        [("approved", "pending", "held: velocity", "fraud_screening")],
    )
    assert got[d] == ("", "approved", 1, [])
