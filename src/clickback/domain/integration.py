"""The seed's two tests, per offer: a test click and a test conversion.

Starting a test makes a test link (test traffic is flagged `is_test` and kept out of
reports and payouts), clicks it through the real click path, checks the redirect
(RefID in the offer's parameter, macros filled) and tries the landing page: an
unreachable page is a warning, not a failure, as the tracker may run where the shop is
not reachable. The conversion test is read from the postback ledger: it passes once a
postback for the test link is accepted (or repeats the test's own order), and fails with
each problem the ledger names, or as a duplicate of an order counted before it (saying
what of the test postback differs from that order, as its answer did).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import orjson

from clickback.domain import admin, attribution, security
from clickback.domain.ports import Store
from clickback.domain.refid import TEXT_LEN, created_ms
from clickback.domain.timefmt import iso
from clickback.domain.tracker import Tracker
from clickback.errors import InputError, NotFoundError

# Tries a landing URL: its HTTP status, or a message saying why it could not be reached.
LandingProbe = Callable[[str], Awaitable[int | str]]

_MACRO_LEFT = re.compile(r"\{(refid|sub[1-5]|offer_id|affiliate_id)\}")
_REFID_RUN = re.compile(rf"(?=([-0-9A-Z_a-z]{{{TEXT_LEN}}}))")  # overlapping runs
PENDING, PASSED, FAILED = "pending", "passed", "failed"


def reason(code: str, field: str, message: str) -> dict[str, str]:
    return {"code": code, "field": field, "message": message}


async def test_affiliate(store: Store) -> int:
    """The built-in affiliate that test links belong to, made once and shared by nodes."""
    known = await store.get_meta(admin.TEST_AFFILIATE)
    if known is not None:
        return int(known)
    made = await store.create_affiliate("clickback integration tests")
    shared = int(await store.get_or_set_meta(admin.TEST_AFFILIATE, str(made)))
    if shared != made:  # another node made one first: this one has nothing, archive it
        await store.archive_row("affiliates", made)
    return shared


async def click_test(
    tracker: Tracker, code: str, offer: dict[str, Any], probe: LandingProbe | None
) -> tuple[str, list[dict[str, str]], str]:
    """Runs test 1 through the real click path: (status, reasons, the test RefID)."""
    location = await tracker.click(
        code, "sub1=integration-test", "", "clickback-test", "", fallback=False
    )
    if location is None:
        return (
            FAILED,
            [
                reason(
                    "offer_paused",
                    "status",
                    "the offer is archived: it serves no click again"
                    if offer["archived_at"] is not None
                    else f"the offer is not active: activate it (`clickback offer activate"
                    f" {offer['id']}`, or PATCH its status to active), then run the test again",
                )
            ],
            "",
        )
    reasons: list[dict[str, str]] = []
    refid = ""
    if "{refid}" in offer["destination_url"]:
        # the macro may stand beside other URL-safe characters (`/r/aff-{refid}`): the
        # RefID is the run of its length there that verifies
        runs = (m.group(1) for m in _REFID_RUN.finditer(location))
        refid = next((r for r in runs if tracker.codec.verify(r) is not None), "")
    else:
        param = offer["refid_param"]
        refid = parse_qs(urlsplit(location).query).get(param, [""])[0]
        if not refid:
            reasons.append(
                reason("refid_missing", "destination_url", f"the redirect does not carry `{param}`")
            )
    if tracker.codec.verify(refid) is None and not reasons:
        reasons.append(reason("refid_missing", "destination_url", "no valid RefID in redirect"))
    try:  # a URL stored before unknown macros were refused (`admin.destination_url`)
        admin.destination_url(offer["destination_url"])
    except InputError as exc:
        reasons.append(reason(exc.code, "destination_url", exc.message))
    left = _MACRO_LEFT.findall(location)
    if left:
        reasons.append(
            reason(
                "macro_unfilled",
                "destination_url",
                f"macros left in the redirect: {', '.join(left)}",
            )
        )
    if reasons:
        return FAILED, reasons, refid
    if probe is not None:
        result = await probe(location)
        if isinstance(result, int) and result < 400:
            reasons.append(
                reason(
                    "landing_reachable", "destination_url", f"the landing page answered {result}"
                )
            )
        elif isinstance(result, int):
            reasons.append(
                reason(
                    "landing_error",
                    "destination_url",
                    f"warning: the landing page answered {result}",
                )
            )
        else:
            reasons.append(
                reason(
                    "landing_unreachable",
                    "destination_url",
                    f"warning: the landing page could not be reached: {result}",
                )
            )
    return PASSED, reasons, refid


async def start(
    store: Store,
    tracker: Tracker,
    offer_id: int,
    affiliate_id: int | None = None,
    probe: LandingProbe | None = None,
) -> int:
    await admin.require_live(store, "offers", offer_id)  # its test link would not serve
    offer = await store.get_row("offers", offer_id)
    assert offer is not None
    parents = [("offers", offer_id)]
    if affiliate_id is None:  # the built-in one, which is not archived
        affiliate_id = await test_affiliate(store)
    else:
        await admin.require_live(store, "affiliates", affiliate_id, "affiliate_id")
        parents.append(("affiliates", affiliate_id))
    code = admin.new_link_code()
    link_id = await store.create_link(code, offer_id, affiliate_id, is_test=True)
    await admin.still_live(store, "links", link_id, *parents)
    await tracker.catalog.reload()
    status, reasons, refid = await click_test(tracker, code, offer, probe)
    return await store.create_integration_test(
        offer_id, affiliate_id, link_id, refid, status, orjson.dumps(reasons).decode()
    )


async def simulate(store: Store, tracker: Tracker, test_id: int) -> None:
    """Fires a test's postback as the advertiser's server would: with its token, and `ts`
    and `sig` when it signs (`domain.security`), from 127.0.0.1 (an IP allowlist without
    that address refuses it), but not through the postback rate limiter: it is the
    operator's action, not the advertiser's traffic. Nothing to fire when the click test
    made no RefID."""
    test = await store.get_row("integration_tests", test_id)
    if test is None:
        raise NotFoundError(f"integration test {test_id} does not exist")
    if not test["refid"]:
        return
    offer = await store.get_row("offers", test["offer_id"])
    assert offer is not None
    advertiser = await store.get_row("advertisers", offer["advertiser_id"])
    assert advertiser is not None
    params = {
        "refid": test["refid"],
        "orderamount": "1.00",
        "ordernumber": f"SIMULATED-{test_id}-{test['started_at']}",
    }
    if advertiser["require_token"]:
        params["token"] = advertiser["postback_token"]
    if advertiser["signing_secret"]:
        params["ts"] = str(int(time.time()))
        params["sig"] = security.sign(advertiser["signing_secret"], params)
    await tracker.postback("GET", "127.0.0.1", params, simulated=True)


async def rerun(store: Store, tracker: Tracker, test_id: int, probe: LandingProbe | None) -> None:
    test = await store.get_row("integration_tests", test_id)
    if test is None:
        raise NotFoundError(f"integration test {test_id} does not exist")
    offer = await store.get_row("offers", test["offer_id"])
    link = await store.get_row("links", test["link_id"])
    assert offer is not None and link is not None
    status, reasons, refid = await click_test(tracker, link["code"], offer, probe)
    await store.restart_integration_test(test_id, refid, status, orjson.dumps(reasons).decode())


async def remove(store: Store, tracker: Tracker, test_id: int) -> None:
    if not await store.delete_integration_test(test_id):
        raise NotFoundError(f"integration test {test_id} does not exist")
    await tracker.catalog.reload()


async def conversion_test(store: Store, test: dict[str, Any]) -> dict[str, Any]:
    """Test 2, read from the ledger: the postbacks for the test link since the (re)start,
    with this run's RefID or one of a click made since (a test order placed through the
    test link). Until one comes, what may be the advertiser's attempts is said: one with
    a RefID of an earlier run, or ones whose RefID named no click (lost, cut short)."""
    every = await store.test_postbacks(test["link_id"], test["started_at"], 500)
    rows = [r for r in every if _of_this_run(r["refid"], test)][:50]
    if not rows and not test["refid"]:
        return {"status": PENDING, "reasons": [NO_REFID], "postback_ids": []}
    if not rows:
        return {
            "status": PENDING,
            "reasons": await _waiting(store, test, every),
            "postback_ids": [],
        }
    ids = [r["id"] for r in rows]
    if any(r["outcome"] == "accepted" for r in rows):
        return {"status": PASSED, "reasons": [], "postback_ids": ids}
    for r in rows:
        if r["outcome"] == "duplicate" and await _own_order(store, test, r):
            return {"status": PASSED, "reasons": [], "postback_ids": ids}
    latest = rows[0]
    reasons: list[dict[str, Any]]
    if latest["outcome"] == "duplicate":  # of an order counted before: no test conversion
        reasons = [_duplicate_reason(latest)]
    else:
        errors = orjson.loads(latest["errors"])
        reasons = [reason(e["code"], e["field"], e["message"]) for e in errors]
    return {"status": FAILED, "reasons": reasons, "postback_ids": ids}


def _of_this_run(refid: str, test: dict[str, Any]) -> bool:
    """A RefID this run of the test made, or one of a click on its link since it began:
    not one an earlier run made (a shop that kept the first run's RefID passed a rerun
    without carrying a visitor's)."""
    if not refid:  # sent under another name (`click_id`): the ledger keeps it blank
        return True
    try:
        return bool(refid == test["refid"] or created_ms(refid) * 1000 >= test["started_at"])
    except ValueError:  # not of this server's form: the link's own, whenever made
        return True


async def _waiting(
    store: Store, test: dict[str, Any], earlier: list[dict[str, Any]]
) -> list[dict[str, str]]:
    """Why no postback of this run has come, as far as the ledger tells: one fired with
    an earlier run's RefID, or postbacks since the run began whose RefID named no click,
    which may be the advertiser's with the RefID lost on the way."""
    if earlier:
        return [
            reason(
                "stale_refid",
                "refid",
                f"postback {earlier[0]['id']} (answered {earlier[0]['outcome']}) carried the"
                " RefID of a click made before this run of the test began: this run passes on"
                " its own RefID, or on that of a click on the test link made since it began",
            )
        ]
    offer = await store.get_row("offers", test["offer_id"])
    advertiser = offer and await store.get_row("advertisers", offer["advertiser_id"])
    token = advertiser["postback_token"] if advertiser else ""
    unmatched = await store.unmatched_postbacks(test["started_at"], token, test["refid"], 3)
    if not unmatched:
        return []
    newest = orjson.loads(unmatched[0]["errors"] or "[]")
    why = f" ({newest[0]['code']}: {newest[0]['message']})" if newest else ""
    ids = ", ".join(str(r["id"]) for r in unmatched)
    which = f"postback {ids}" if len(unmatched) == 1 else f"postbacks {ids}"
    return [
        reason(
            "refid_unmatched",
            "refid",
            f"no postback with this test's RefID yet; since the test began, {which} with"
            f" this advertiser's token or the test RefID cut short named no click, the newest"
            f" refused{why}: the RefID was lost or changed on the way; send it as the click"
            " brought it, whole",
        )
    ]


# a conversion test whose click test made no RefID: there is no postback to fire yet
NO_REFID = reason(
    "no_refid",
    "refid",
    "waiting for the click test: it made no RefID to fire a postback with; once its"
    " problem is fixed, rerun the test (the dashboard's Rerun, POST"
    " /api/v1/integration-tests/ID/rerun, or `clickback integration-test OFFER` anew)",
)


def _duplicate_reason(postback: dict[str, Any]) -> dict[str, Any]:
    """Why a test postback repeating another order made no test conversion: the ledger's
    `duplicate_ordernumber` entry (the conversion it repeats, and what of it differs, as
    the postback's answer said), and what to do. A row stored before the entry was kept
    says only which conversion it repeats (and one before it kept `differs`, no
    `differs`)."""
    note = next(
        (
            e
            for e in orjson.loads(postback["errors"] or "[]")
            if e.get("code") == attribution.DUPLICATE_ORDERNUMBER
        ),
        None,
    )
    said = (
        note["message"]
        if note
        else f"ordernumber {postback['ordernumber']!r} was counted already, as conversion"
        f" {postback['conversion_id']}"
    )
    message = f"{said}. No test conversion was made: fire the test postback with a new order number"
    return {
        **reason(attribution.DUPLICATE_ORDERNUMBER, "ordernumber", message),
        "differs": note.get("differs", []) if note else [],
    }


async def _own_order(store: Store, test: dict[str, Any], postback: dict[str, Any]) -> bool:
    """Whether a duplicate postback repeats an order this test's link counted (a retry, or
    the same test order fired again after a re-run), not another order."""
    counted = await store.get_row("conversions", postback["conversion_id"])
    return (
        counted is not None and bool(counted["is_test"]) and (counted["link_id"] == test["link_id"])
    )


async def describe(
    store: Store, base: str, row: dict[str, Any], reveal: bool = True
) -> dict[str, Any]:
    """An integration test as the API and the CLI show it, with both tests' status (the
    advertiser's token in its postback URL only if `reveal`: `postback_template`)."""
    link = await store.get_row("links", row["link_id"])
    offer = await store.get_row("offers", row["offer_id"])
    assert link is not None and offer is not None
    advertiser = await store.get_row("advertisers", offer["advertiser_id"])
    assert advertiser is not None
    return {
        "id": row["id"],
        "offer_id": row["offer_id"],
        "affiliate_id": row["affiliate_id"],
        "link_id": row["link_id"],
        "refid": row["refid"],
        "tracking_url": f"{base}/c/{link['code']}",
        # with no RefID (the click test failed) the template, not a RefID left empty
        "postback_url": postback_template(base, advertiser, row["refid"] or "{refid}", reveal),
        "signature_required": signature_required(advertiser),
        "click_test": {
            "status": row["click_status"],
            "reasons": orjson.loads(row["click_reasons"]),
        },
        "conversion_test": await conversion_test(store, row),
        "started_at": iso(row["started_at"]),
        "created_at": iso(row["created_at"]),
    }


def postback_template(
    base: str, advertiser: dict[str, Any], refid: str = "{refid}", reveal: bool = True
) -> str:
    """The advertiser's postback URL in the seed's form. The token it requires is
    percent-encoded (a token with `+`, `&` or `=` would not arrive as set); with `reveal`
    False (a read token's view: the token lets whoever holds it fire postbacks) it is the
    placeholder TOKEN_HIDDEN."""
    url = (
        f"{base}/postback?refid={refid}&orderamount=&ordernumber=&coupon=&currency=&geo="
        "&commissionid="
    )
    if advertiser["require_token"]:
        token = quote(advertiser["postback_token"], safe="") if reveal else TOKEN_HIDDEN
        url += f"&token={token}"
    return url


def signature_required(advertiser: dict[str, Any]) -> bool:
    """Whether the advertiser's postbacks are refused unless signed (`domain.security`)."""
    return bool(advertiser["require_signature"])  # with no secret: every postback refused


SIGNATURE_INSTRUCTIONS = (
    "This advertiser's postbacks must be signed, or they are refused (403 "
    "`signature_invalid`): add `ts` (Unix seconds) and `sig`, the hex HMAC-SHA256 under "
    "its signing secret of every other parameter sorted by name (a name sent twice: its "
    "first value), each `name=value` "
    'percent-encoded (RFC 3986) and joined by `&`. The section "Who may fire an '
    "advertiser's postbacks\" of docs/outbound.md shows how; the Python helper "
    "`clickback.client.fire_postback(..., signing_secret=...)` signs for you."
)


def instructions(advertiser: dict[str, Any]) -> str:
    """How to fire the advertiser's postbacks, and to sign them where it must."""
    if signature_required(advertiser):
        return f"{POSTBACK_INSTRUCTIONS} {SIGNATURE_INSTRUCTIONS}"
    return POSTBACK_INSTRUCTIONS


TOKEN_HIDDEN = "{token}"  # shown for the advertiser's token to who may not see it
POSTBACK_INSTRUCTIONS = (
    "Fire this URL from your server when an order completes, with the visitor's RefID "
    "in `refid`. Required: `orderamount` (a plain decimal such as 49.90; 0 for a CPL "
    "lead) and `ordernumber` (unique per order: a repeat is answered `duplicate` and "
    "never counted twice, so retrying is safe). Optional: `coupon`, `currency` (ISO "
    "4217, default the offer's), `geo` (ISO 3166-1 alpha-2), `commissionid`. GET or "
    "POST (form body) both work. A 200 with status `accepted` or `duplicate` means it "
    "was counted; any other answer names each problem in `errors`."
)
