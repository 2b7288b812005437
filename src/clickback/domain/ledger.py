"""Replaying stored postbacks: re-run the decision once its cause is fixed.

A replay is a new ledger row (`replay_of` = the original) with the decision taken
now, judged as of the original arrival time (the attribution window). It cannot count
an order twice: the conversion's (advertiser, ordernumber, is_test) is unique, so
replaying an accepted postback, or replaying twice, answers `duplicate`; a bulk replay passes over
a postback a replay already counted, so it adds no ledger row for it. A postback refused because
it arrived incomplete (cut short, too large) or ambiguous (a parameter twice with two
values) is refused again: what was stored of it is not the order that was sent
(`149.90` cut short is `14`); one too large with the status it was first refused with
(413, 414), saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from clickback.domain.models import FieldError, Outcome
from clickback.domain.ports import Store
from clickback.domain.postback import UNSUPPORTED_ENCODING
from clickback.domain.tracker import PostbackAnswer, Tracker
from clickback.errors import NotFoundError

# refusals of the request as it arrived (cut short, too large, too many fields, a
# parameter twice, a body that was no JSON object or compressed): its stored parameters are not what
# was sent, or not all of it, so a replay refuses them again
INCOMPLETE = frozenset(
    {
        "request_incomplete",
        "request_too_large",
        "too_many_fields",
        "repeated",
        # `ordernumber=Smith&Sons-1` is stored as the order `Smith`: counted by a replay,
        # `Smith&Sons-1` sent again, fixed, would be a second conversion for the sale
        "unencoded_ampersand",
        "invalid_json",
        UNSUPPORTED_ENCODING,  # a compressed body, not read
    }
)


TOO_LARGE = "request_too_large"
# an order number refused for a NUL or half a character, kept as the text of its escape
# (`A\x001`, `SALE\ud83d`): counted by a replay, it would be an order apart from the same
# one sent again, fixed (`A1`); elsewhere such text is counted by a replay as it was kept
_HALF_AN_ORDER = ("invalid_text", "ordernumber")
_NOT_REPLAYABLE = (
    "the original was too large and only an excerpt of it was kept, so it cannot be"
    " replayed; have it sent again within the limit"
)


async def replay_row(tracker: Tracker, row: Mapping[str, Any]) -> PostbackAnswer:
    arrived = []
    status = None
    for e in orjson.loads(row["errors"] or "[]"):
        if e.get("code") == TOO_LARGE:
            # refused as it was first (413, 414), saying why a replay cannot help
            size = e["message"].split(": ", 1)[0]  # `body over 16384 bytes`, as first said
            arrived.append(FieldError(e["field"], TOO_LARGE, f"{size}: {_NOT_REPLAYABLE}"))
            status = too_large_status(row["http_status"], size)
        elif e.get("code") in INCOMPLETE or (e.get("code"), e.get("field")) == _HALF_AN_ORDER:
            arrived.append(FieldError(e["field"], e["code"], e["message"]))
    kept = orjson.loads(row["params"])  # a parameter sent more than once: its values
    return await tracker.postback(
        row["method"],
        row["ip"],
        {k: v[0] if isinstance(v, list) else v for k, v in kept.items()},
        arrived or None,
        received_at=row["received_at"],
        replay_of=row["id"],
        arrived_status=status,
        more_values={k: v[1:] for k, v in kept.items() if isinstance(v, list)},
        passed_for=passed_for(row),
    )


# refusals decided after the token, address and signature checks passed: a row with its
# RefID's advertiser and one of these passed them as it arrived (a request too large is
# told so before a failed check: 413 and 414 are not)
_AFTER_THE_CHECKS = frozenset(
    {Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.REJECTED}
    | {Outcome.EXPIRED_REFID, Outcome.OFFER_PAUSED}
)


def passed_for(row: Mapping[str, Any]) -> int | None:
    """The advertiser whose checks of who sent it (token, address, signature) a ledger
    row passed as it arrived, if it did: a replay is checked again as things are now,
    and one refused so is told that it passed then (a token rotated since, say)."""
    passed = row["outcome"] in _AFTER_THE_CHECKS and row["http_status"] not in (413, 414)
    return row["advertiser_id"] if passed else None


def too_large_status(answered: int, message: str) -> int:
    """What a request too large was answered, 413 (its body) or 414 (its query): as its
    row says, or, where a refusal before it was answered (a token's, 403), as its message
    does (`query longer than …`, `body over …`)."""
    if answered in (413, 414):
        return answered
    return 414 if message.startswith("query") else 413


async def replay(store: Store, tracker: Tracker, ledger_id: int) -> PostbackAnswer:
    row = await store.get_row("postbacks", ledger_id)
    if row is None:
        raise NotFoundError(f"postback {ledger_id} does not exist")
    return await replay_row(tracker, row)


async def replay_matching(
    store: Store,
    tracker: Tracker,
    filters: Mapping[str, Any],
    since: int | None,
    until: int | None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[tuple[int, PostbackAnswer]], int]:
    """Replays every original (not itself a replay) ledger row matching the filters, but
    those a replay already counted (`accepted`, or `duplicate`: its order was counted
    already); the answers, and how many were skipped so."""
    rows = await _all(store, "postbacks", filters, since, until)
    # a replay is stored at its original's arrival time, so the same window finds it
    settled = {
        r["replay_of"]
        for outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE)
        for r in await _all(store, "postbacks", {"outcome": outcome}, since, until, replays=True)
    }
    todo = [r for r in rows if r["replay_of"] is None and r["id"] not in settled]
    skipped = sum(r["replay_of"] is None for r in rows) - len(todo)
    done: list[tuple[int, PostbackAnswer]] = []
    for row in reversed(todo):  # oldest first, as they arrived
        done.append((row["id"], await replay_row(tracker, row)))
        if progress is not None:
            progress(len(done))
    return done, skipped


async def _all(
    store: Store,
    table: str,
    filters: Mapping[str, Any],
    since: int | None,
    until: int | None,
    *,
    replays: bool = False,
) -> list[dict[str, Any]]:
    """Every matching row, newest first, a page at a time (only replays, `replays`)."""
    rows: list[dict[str, Any]] = []
    cursor = None
    nulls = {"replay_of": False} if replays else None
    while True:
        page = await store.list_rows(table, filters, since, until, 1000, cursor, nulls=nulls)
        rows += page.items
        cursor = page.next_cursor
        if cursor is None:
            return rows
