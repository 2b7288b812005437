"""The conversion lifecycle: pending → approved | rejected, approved → reversed, and
rejected → approved (a rejection taken back: the advertiser rejected it in error, or
the operator approves what a fraud rule or a cap rejected; never by a validation file).

Each change carries a reason code and who made it, and is kept as an audit event.
Only approved conversions are payable. Changes arrive one by one (API, CLI) or as an
advertiser's validation file: CSV lines of `ordernumber,status,reason`, reported line
by line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clickback.domain.csvtext import csv_lines
from clickback.domain.fraud import fraud_flags
from clickback.domain.ports import Store
from clickback.domain.postback import composed
from clickback.errors import ConflictError, InputError, NotFoundError

ALLOWED = {
    ("pending", "approved"),
    ("pending", "rejected"),
    ("approved", "reversed"),
    ("rejected", "approved"),
}
STATUSES = ("pending", "approved", "rejected", "reversed")
MAX_REASON = 200
FILE_REASON = "validation_file"  # a validation file's line that gives no reason


def check_reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise InputError(
            f"`reason` is required: a code such as `chargeback`, at most {MAX_REASON} characters",
            code="invalid_reason",
            field="reason",
        )
    return reason.strip()


def check_move(current: str, to: str) -> None:
    if to not in STATUSES:
        raise InputError(
            f"`status` must be one of {', '.join(STATUSES)}", code="invalid_status", field="status"
        )
    if current == to:
        raise ConflictError(f"the conversion is already {to}", code="unchanged", field="status")
    if (current, to) not in ALLOWED:
        allowed = moves(current) or ("nothing",)
        raise ConflictError(
            f"{'an' if current[0] in 'aeiou' else 'a'} {current} conversion cannot become "
            f"{to}; it may become: {', '.join(allowed)}",
            code="invalid_transition",
            field="status",
        )


def moves(current: str) -> tuple[str, ...]:
    """What a conversion of this status may become, in the order of STATUSES."""
    return tuple(to for to in STATUSES if (current, to) in ALLOWED)


# (offer_id, affiliate_id, event, is_test) -> the outbound delivery's state, '' for none
DeliveryState = Callable[[int, int, str, int], str]


def _no_delivery(offer_id: int, affiliate_id: int, event: str, is_test: int) -> str:
    return ""


async def change_status(
    store: Store,
    conversion_id: int,
    to: str,
    reason: Any,
    actor: str,
    delivery_state: DeliveryState = _no_delivery,
) -> None:
    why = check_reason(reason)
    row = await store.get_row("conversions", conversion_id)
    if row is None:
        raise NotFoundError(f"conversion {conversion_id} does not exist")
    check_move(row["status"], to)
    await _move(store, row, to, why, actor, delivery_state)


async def _move(
    store: Store,
    row: Mapping[str, Any],
    to: str,
    why: str,
    actor: str,
    delivery_state: DeliveryState,
) -> None:
    """The checked move of the conversion `row` (as read) to `to`, with its outbound
    postbacks; ConflictError when it changed since it was read."""
    delivery = delivery_state(row["offer_id"], row["affiliate_id"], to, row["is_test"])
    # a rejection taken back: an affiliate never told of the sale (its postback
    # cancelled when a fraud rule rejected it, or none queued) is told of it now
    announce = (
        delivery_state(row["offer_id"], row["affiliate_id"], "conversion", row["is_test"])
        if row["status"] == "rejected"
        else ""
    )
    moved = await store.transition(
        row["id"], row["status"], to, why, actor, delivery, announce=announce
    )
    if not moved:
        raise ConflictError(
            "the conversion changed meanwhile; read it and retry", code="concurrent_change"
        )


AUTO_APPROVAL = "auto_approval"  # the actor of an approval at the end of a validation period


async def approve_due(
    store: Store,
    now_us: int,
    delivery_state: DeliveryState = _no_delivery,
    page: int = 500,
    most: int | None = None,
) -> int:
    """Approves the pending conversions whose offer's validation period
    (`auto_approve_days`) has passed without a decision: the advertiser did not reject
    them in time. One carrying a fraud flag or `over_cap` (held by the screening, or
    flagged on a review offer) waits for a person, and is passed over, as is one decided
    meanwhile. Read `page` at a time, the oldest first; how many were approved (`most`
    at the most: the rest, the next time)."""
    approved, after = 0, (-1, 0)
    await store.date_unrecorded()
    while rows := await store.due_for_approval(now_us, after, page):
        after = (rows[-1]["recorded_at"], rows[-1]["id"])
        for row in rows:
            if fraud_flags(str(row["flags"])):
                continue
            days = row["auto_approve_days"]
            reason = f"auto_approved: no decision within {days} day{'s' if days > 1 else ''}"
            try:
                await change_status(
                    store, int(row["id"]), "approved", reason, AUTO_APPROVAL, delivery_state
                )
            except ConflictError:  # decided meanwhile
                continue
            approved += 1
            if approved == most:
                return approved
        if len(rows) < page:
            break
    return approved


@dataclass(frozen=True, slots=True)
class LineResult:
    line: int
    ordernumber: str
    result: str  # changed | unchanged | error
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "ordernumber": self.ordernumber,
            "result": self.result,
            "code": self.code,
            "message": self.message,
        }


async def apply_csv(
    store: Store,
    advertiser_id: int,
    text: str,
    actor: str,
    delivery_state: DeliveryState = _no_delivery,
) -> list[LineResult]:
    """Applies an advertiser's validation file; every line is reported, none stops the rest."""
    if await store.get_row("advertisers", advertiser_id) is None:
        raise NotFoundError(f"advertiser {advertiser_id} does not exist")
    out: list[LineResult] = []
    for number, fields in csv_lines(text):
        if not fields or all(not f.strip() for f in fields):
            continue
        if number == 1 and [f.strip().lower() for f in fields[:2]] == ["ordernumber", "status"]:
            continue  # a header
        order = fields[0].strip()
        if len(fields) < 2:
            out.append(
                LineResult(
                    number, order, "error", "invalid_line", "expected: ordernumber,status,reason"
                )
            )
            continue
        to = fields[1].strip().lower()
        try:
            # files often leave the reason out, or empty, on the lines they approve
            given = fields[2] if len(fields) > 2 else ""
            why = check_reason(given) if given.strip() else FILE_REASON
            row = await store.find_conversion(advertiser_id, composed(order))
            if row is None:
                raise NotFoundError(
                    f"no conversion with ordernumber {order!r}", code="unknown_ordernumber"
                )
            check_move(row["status"], to)
            if row["status"] == "rejected":
                # files list every order approved: one would approve what the fraud rules
                # or a cap rejected, and pay it
                raise ConflictError(
                    "a rejected conversion is approved by the network (the API, the CLI,"
                    " the dashboard), not by a validation file",
                    code="invalid_transition",
                    field="status",
                )
            await _move(store, row, to, why, actor, delivery_state)
        except ConflictError as exc:
            result = "unchanged" if exc.code == "unchanged" else "error"
            out.append(LineResult(number, order, result, exc.code, exc.message))
            continue
        except InputError as exc:
            out.append(LineResult(number, order, "error", exc.code, exc.message))
            continue
        out.append(LineResult(number, order, "changed", to, f"{row['status']} → {to}"))
    return out
