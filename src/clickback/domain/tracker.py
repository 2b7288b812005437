"""The two hot paths as domain calls: record a click, record a postback.

The web layer hands over what it read off the request and gets back plain values to
answer with. Each call makes one durable write through the store's group commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote_plus

import orjson

from clickback.domain import attribution, money, security
from clickback.domain.catalog import Catalog, Route, SystemClock, within
from clickback.domain.models import Advertiser, FieldError, Link, Offer, OfferStatus, Outcome
from clickback.domain.ports import ClickRow, LedgerRow, Store, StoredOrder
from clickback.domain.postback import (
    UNSUPPORTED_ENCODING,
    PostbackInput,
    get_body_ignored,
    json_as_form,
    merge_errors,
    parse_postback,
    refid_name,
)
from clickback.domain.ratelimit import RateLimiter
from clickback.domain.refid import HEAD_REFID, RefIdCodec, RefIdInfo, new_secret
from clickback.domain.refid import TEXT_LEN as REFID_LEN
from clickback.errors import ClickbackError, UnavailableError

if TYPE_CHECKING:
    from clickback.config import Settings

log = logging.getLogger("clickback.fallback")
T = TypeVar("T")

MAX_SUB = 255
MAX_HEADER_VALUE = 512
_EMPTY_SUBS = ("", "", "", "", "")


# said of a replay refused for who sent it when it passed those checks as it arrived
CHANGED_SINCE = (
    "; it passed this check when it arrived: the advertiser's token, allowed addresses or"
    " signing changed since, and a replay is checked as things are now (have the"
    " advertiser send it again)"
)


@dataclass(frozen=True, slots=True)
class PostbackAnswer:
    status: int
    body: dict[str, Any]
    ledger_id: int


def parse_subs(query: str) -> tuple[str, str, str, str, str]:
    """sub1..sub5 from a raw query string; only those five are decoded, and only when
    they hold an escape."""
    if "sub" not in query:
        return _EMPTY_SUBS
    subs = ["", "", "", "", ""]
    for part in query.split("&"):
        if part[:3] == "sub" and len(part) > 5 and part[4] == "=" and "1" <= part[3] <= "5":
            value = part[5:]
            if "%" in value or "+" in value:
                # bytes that are not UTF-8 (`M%FCller`, Latin-1) kept as their escapes,
                # `M\\xfcller`, as a postback's are: replaced, every such value was one
                value = unquote_plus(value, errors="backslashreplace").replace("\x00", "")
            subs[ord(part[3]) - 49] = value[:MAX_SUB]
    return (subs[0], subs[1], subs[2], subs[3], subs[4])


async def open_tracker(
    store: Store,
    secrets: tuple[str, ...] = (),
    check_seconds: float = 1.0,
    durability: str = "sync",
    base_currency: str = "USD",
    signature_skew_s: int = 300,
    postback_rate_limit: float = 0.0,
    fallback_url: str = "",
) -> Tracker:
    """A Tracker over a migrated store: RefID keys from settings, else the shared stored key.
    A stored key still verifies once keys are set (after them): setting `CLICKBACK_SECRET`
    on a tracker that ran on its generated key keeps the RefIDs it issued valid."""
    if secrets:
        stored = await store.get_meta("refid_secret")
        keys = list(dict.fromkeys([*secrets, *([stored] if stored else [])]))
    else:
        keys = [await store.get_or_set_meta("refid_secret", new_secret())]
    catalog = Catalog(store, check_seconds, base_currency, fallback_url)
    await catalog.reload()
    return Tracker(
        store,
        catalog,
        RefIdCodec(keys),
        click_durability=durability,
        signature_skew_s=signature_skew_s,
        postback_rate_limit=postback_rate_limit,
        fallback_url=fallback_url,
    )


async def open_tracker_for(store: Store, settings: Settings) -> Tracker:
    """The Tracker the server runs, from its settings: the command line's replays and
    integration tests decide as the server does (its signature skew, rate limit,
    fallback URL), not by the defaults."""
    return await open_tracker(
        store,
        settings.secrets,
        settings.cache_check_seconds,
        settings.click_durability,
        settings.base_currency,
        settings.signature_skew_seconds,
        settings.postback_rate_limit,
        settings.fallback_url,
    )


class Tracker:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        codec: RefIdCodec,
        clock: Any = None,
        click_durability: str = "sync",
        signature_skew_s: int = 300,
        postback_rate_limit: float = 0.0,
        fallback_url: str = "",
    ):
        self.fallback_url = fallback_url  # CLICKBACK_FALLBACK_URL; '': none
        self.signature_skew_s = signature_skew_s
        self.limiter = RateLimiter(postback_rate_limit)
        self.store = store
        self.catalog = catalog
        self.codec = codec
        self.clock = clock or SystemClock()
        self._sync_clicks = click_durability == "sync"

    async def click(
        self,
        code: str,
        query: str,
        ip: str,
        user_agent: str,
        referer: str,
        *,
        fallback: bool = True,
        store: bool = True,
    ) -> str | None:
        """The Location to redirect to after the click is stored; for no such link, or
        one not serving, the fallback URL (no click stored: there is nothing to attribute
        to), or None when there is none (or `fallback` is off). With `store` off (a HEAD
        request: a link checker, not a visit) the same Location, no click stored."""
        route = self.catalog.routes.get(code) or await self.catalog.route(code)
        if route is None or not route.serving:
            return self._fallback(code, route) if fallback else None
        location, written = self._issue(route, query, ip, user_agent, referer, store)
        if written is not None:
            await written
        return location

    def click_cached(
        self, code: str, query: str, ip: str, user_agent: str, referer: str, store: bool = True
    ) -> tuple[str, asyncio.Future[None] | None] | None:
        """`click` without a coroutine, for a serving link in the cache: the Location and
        the write to wait for before answering (None: nothing to wait for: an
        asynchronous click, or a HEAD); None for any other link (`click` answers it)."""
        route = self.catalog.routes.get(code)
        if route is None or not route.serving:
            return None
        return self._issue(route, query, ip, user_agent, referer, store)

    def _issue(
        self, route: Route, query: str, ip: str, user_agent: str, referer: str, store: bool
    ) -> tuple[str, asyncio.Future[None] | None]:
        """A click on a serving link: its RefID made, its row handed to the writer."""
        subs = parse_subs(query) if query else _EMPTY_SUBS
        if not store:
            # a HEAD (a link checker's) sees where the link goes, with a RefID of no
            # click, which no postback converts with (a real one would, attributed, with
            # no click stored and so none screened); its shape, for a URL with the RefID
            # in its path
            return route.template.build(HEAD_REFID, subs), None
        now_us = self.clock.now_us()
        refid = self.codec.issue(route.link_id, now_us // 1000)
        row: ClickRow = (
            refid,
            route.link_id,
            route.offer_id,
            route.affiliate_id,
            *subs,
            ip,
            user_agent[:MAX_HEADER_VALUE],
            referer[:MAX_HEADER_VALUE],
            now_us,
            route.is_test,
        )
        written = None
        if self._sync_clicks:
            written = self.store.write_click(row)
        else:
            self.store.queue_click(row)
        return route.template.build(refid, subs), written

    async def postback(
        self,
        method: str,
        ip: str,
        params: dict[str, str],
        extra_errors: list[FieldError] | None = None,
        *,
        received_at: int | None = None,
        replay_of: int | None = None,
        sent: Mapping[str, str] | None = None,
        simulated: bool = False,
        arrived_status: int | None = None,
        more_values: Mapping[str, Sequence[str]] | None = None,
        passed_for: int | None = None,
    ) -> PostbackAnswer:
        """Decide on a postback and store it, raw, with the decision, in one write.

        A replay passes the original's `received_at`, so the attribution window is judged
        as of when the postback first arrived. `sent` is the parameters as they arrived
        (`params` keeps an excerpt of a long value and drops NUL): the signature is
        checked against them, so such a value is answered as in an unsigned postback (a
        `too_long` field, say), not as a signature that does not match. A replay, and a
        `simulated` postback (an integration test's, fired by the operator), are the
        operator's own: the advertiser-facing rate limiter neither counts nor refuses them.
        `arrived_status` is the status of a refusal for how the request arrived (`413` a
        body too large, `414` a query too long), in the answer and the ledger alike, in
        place of `400`; another refusal (a token, the rate limit) keeps its own.
        `more_values` are the later values of parameters of the advertiser's own sent more
        than once: the ledger keeps such a parameter as the list of its values.
        `passed_for` (a replay's) is the advertiser whose token, address and signature
        checks the postback passed as it arrived: checked again all the same (settings
        made stricter after forged postbacks must hold for their replays too), and a
        refusal now says that it passed then (`ledger.passed_for`)."""
        now_us = received_at if received_at is not None else self.clock.now_us()
        conversion = None
        link = offer = advertiser = None
        parsed = parse_postback(params)
        # the link is read off the RefID even when other fields are bad, so the ledger
        # (and an integration test) can say whose postback was refused, and why
        raw_refid = params.get(refid_name(params), "").strip()
        hint = None
        info = self.codec.verify(raw_refid) if raw_refid else None
        # a body cut short (too large, the client gone) read as a form is no JSON sent
        # without its content type
        cut = bool(extra_errors) and any(
            e.code in ("request_too_large", "request_incomplete") for e in extra_errors or ()
        )
        if not raw_refid:
            info, hint = self._find_refid(params)
            hint = (
                hint or get_body_ignored(method, params) or (None if cut else json_as_form(params))
            )
        if info is not None:
            link, offer, advertiser = await self._resolve(info.link_id)
        refusal: attribution.Refusal | None
        denied = None
        if advertiser is not None:
            token = params.get("token", "").strip()  # every value is read trimmed
            denied = security.check(
                advertiser,
                token,
                ip,
                params if sent is None else sent,
                now_us // 1_000_000,
                self.signature_skew_s,
                self.catalog.token_owners.get(token) if token else None,
            )
            if denied is not None and advertiser.id == passed_for:
                denied = dataclasses.replace(denied, message=denied.message + CHANGED_SINCE)
        # what was wrong with the request as it arrived is kept behind any refusal, so a
        # replay once the refusal's cause is gone still knows it (`ledger.INCOMPLETE`)
        arrived = list(extra_errors or [])
        if replay_of is None and not simulated and not self.limiter.allow(ip, now_us):
            refusal = attribution.Refusal(
                Outcome.RATE_LIMITED,
                [
                    FieldError(
                        "*", "rate_limited", "too many postbacks from this address; retry later"
                    ),
                    *arrived,
                ],
            )
        elif denied is not None and arrived_status not in (413, 414):
            # (a request cut short for its size is told so first: the token or the
            # signature it was refused for may be in what was cut)
            # what else is wrong with the fields is told beside: a developer who mends the
            # token then meets the missing `ordernumber` at the next try otherwise
            wrong = list(parsed) if isinstance(parsed, list) else []
            refusal = attribution.Refusal(
                Outcome.FORBIDDEN, [denied, *merge_errors(arrived, wrong)]
            )
        elif extra_errors or isinstance(parsed, list):
            found = list(parsed) if isinstance(parsed, list) else []
            if raw_refid and info is None and hint is None:  # every bad field at once
                found += attribution.unknown_refid(raw_refid, self._after(raw_refid)).errors
            if raw_refid:  # a RefID in the query, the rest in a body not read as such
                hint = get_body_ignored(method, params) or (None if cut else json_as_form(params))
            if hint is not None:  # first: it is why the fields are missing, and the
                found.insert(0, hint)  # ledger's `code` (its filter) is the first's
            if any(e.code == UNSUPPORTED_ENCODING for e in arrived):  # the body unread:
                found = [e for e in found if e.code != "missing"]  # that is why, alone
            refusal = attribution.Refusal(Outcome.REJECTED, merge_errors(arrived, found))
        elif info is None:
            refusal = attribution.unknown_refid(raw_refid, self._after(raw_refid))
        else:
            rules = self.catalog.rules.get(offer.id, ()) if offer else ()
            delivery = (
                self.catalog.delivery_state(offer.id, link.affiliate_id, "conversion", link.is_test)
                if offer and link
                else ""
            )
            decided = attribution.decide(
                parsed,
                info,
                link,
                offer,
                advertiser,
                now_us,
                rules,
                self.catalog.rates,
                ip,
                delivery,
                # a replay is judged as of its first arrival, but recorded now: an offer's
                # validation period runs from now
                None if received_at is None else self.clock.now_us(),
            )
            if isinstance(decided, attribution.Refusal):
                refusal = decided
            else:
                refusal, conversion = None, decided
        repeats = None
        if refusal is not None and refusal.outcome in attribution.OF_THE_OFFER:
            repeats = await self._counted_already(parsed, advertiser, link, offer)
        outcome = refusal.outcome if refusal else Outcome.ACCEPTED
        if repeats is not None:
            # counted already: a duplicate, whatever the offer or the window says now;
            # why it would be refused as new is told beside
            assert refusal is not None
            message, differs = attribution.duplicate(*repeats)
            note = FieldError("ordernumber", attribution.DUPLICATE_ORDERNUMBER, message)
            warnings = [e.as_dict() for e in refusal.errors]
            errors_out: list[dict[str, Any]] = [{**note.as_dict(), "differs": differs}, *warnings]
            outcome, refusal = Outcome.DUPLICATE, None
        elif refusal:
            errors_out = [e.as_dict() for e in refusal.errors]
        else:
            assert conversion is not None
            errors_out = (
                [w.as_dict() for w in attribution.warnings(conversion, self.catalog.rates)]
                if conversion.flags
                else []
            )
        ledger = LedgerRow(
            received_at=now_us,
            method=method,
            ip=ip,
            params=orjson.dumps(
                {**params, **{k: [params[k], *v] for k, v in more_values.items()}}
                if more_values
                else params
            ).decode(),
            refid=raw_refid,  # as read (trimmed); `params` keeps what was sent
            ordernumber=params.get("ordernumber", "").strip(),
            advertiser_id=advertiser.id if advertiser else None,
            outcome=outcome,
            http_status=(
                arrived_status
                if arrived_status is not None and outcome is Outcome.REJECTED
                else attribution.HTTP_STATUS[outcome]
            ),
            errors=orjson.dumps(errors_out).decode(),
            code=errors_out[0]["code"] if errors_out else "",
            link_id=link.id if link else None,
            is_test=int(link.is_test) if link else 0,
            replay_of=replay_of,
            conversion_id=repeats[1].conversion_id if repeats else None,
        )
        written = await self.store.write_postback(ledger, conversion)
        if refusal is not None:
            body: dict[str, Any] = {"status": "rejected", "errors": errors_out}
            if outcome is not Outcome.REJECTED:
                body["code"] = errors_out[0]["code"]
            return PostbackAnswer(ledger.http_status, body, written.ledger_id)
        if repeats is not None:
            body = {
                "status": "duplicate",
                "conversion_id": repeats[1].conversion_id,
                "message": errors_out[0]["message"],
                "differs": errors_out[0]["differs"],
                "warnings": errors_out[1:],
            }
            return PostbackAnswer(200, body, written.ledger_id)
        assert conversion is not None
        if written.outcome is Outcome.DUPLICATE:
            assert written.stored is not None
            message, differs = attribution.duplicate(conversion, written.stored)
            body = {
                "status": "duplicate",
                "conversion_id": written.conversion_id,
                "message": message,
                "differs": differs,
            }
            if errors_out:  # what was sent is told of as an accepted postback's is
                body["warnings"] = errors_out
            return PostbackAnswer(200, body, written.ledger_id)
        body = {
            "status": "accepted",
            "conversion_id": written.conversion_id,
            "refid": conversion.refid,
            "commission": money.format_minor(conversion.commission, conversion.commission_currency),
            "currency": conversion.commission_currency,
            "conversion_status": conversion.status,
        }
        if errors_out:
            body["warnings"] = errors_out
        return PostbackAnswer(200, body, written.ledger_id)

    async def _counted_already(
        self,
        parsed: PostbackInput | list[FieldError],
        advertiser: Advertiser | None,
        link: Link | None,
        offer: Offer | None,
    ) -> tuple[attribution.SentOrder, StoredOrder] | None:
        """What a postback refused for its offer or its click's age sent, and the stored
        conversion of its order, when that order was counted already."""
        if not isinstance(parsed, PostbackInput) or not (advertiser and link and offer):
            return None
        sent = attribution.sent_order(parsed, offer)
        if sent is None:
            return None
        stored = await self._read(
            self.store.stored_order(advertiser.id, sent.ordernumber, int(link.is_test)),
            "its conversions",
        )
        return None if stored is None else (sent, stored)

    async def _read(self, read: Awaitable[T], what: str) -> T:
        """A read a postback needs, within the catalog's read timeout; the database out of
        reach or hung is answered as such (503, retry), not as a server error."""
        try:
            return await within(read, self.catalog.read_timeout)
        except ClickbackError:
            raise
        except Exception as exc:
            log.warning("a postback could not read %s: %r", what, exc)
            raise UnavailableError(f"the tracker cannot read {what} now; retry") from None

    def _fallback(self, code: str, route: Route | None) -> str | None:
        """The offer's fallback URL, else the tracker's; the reason is logged (debug) for
        the operator, never told to the visitor."""
        url = (route.fallback_url if route else "") or self.fallback_url
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "click on %r not served (%s): %s",
                code[:64],
                self._not_serving(route),
                f"fallback to {url}" if url else "404, no fallback URL",
            )
        return url or None

    def _not_serving(self, route: Route | None) -> str:
        if route is None:
            return "unknown_link"
        if route.capped:
            return f"cap_reached offer={route.offer_id} link={route.link_id}"
        offer = self.catalog.offers.get(route.offer_id)
        if offer is not None and offer.status is not OfferStatus.ACTIVE:
            return f"offer_{offer.status.value} offer={route.offer_id} link={route.link_id}"
        return f"link_inactive offer={route.offer_id} link={route.link_id}"

    async def _resolve(self, link_id: int) -> tuple[Link | None, Offer | None, Advertiser | None]:
        cat = self.catalog
        if link_id not in cat.links:  # a link made on another node; the MAC says it exists
            await self._read(cat.reload(), "its links")
        link = cat.links.get(link_id)
        offer = cat.offers.get(link.offer_id) if link else None
        advertiser = cat.advertisers.get(offer.advertiser_id) if offer else None
        return link, offer, advertiser

    def _after(self, refid: str) -> str:
        """What was sent after a RefID that holds, when `refid` is one with more after it."""
        if len(refid) > REFID_LEN and self.codec.verify(refid[:REFID_LEN]) is not None:
            return refid[REFID_LEN:]
        return ""

    def _find_refid(self, params: dict[str, str]) -> tuple[RefIdInfo | None, FieldError | None]:
        """A RefID sent under another parameter's name (`click_id=…`, `subid=…`): found so
        the rejection can say which name to use, and so a test postback finds its test."""
        for name, value in params.items():
            if len(value) == REFID_LEN:
                info = self.codec.verify(value)
                if info is not None:
                    return info, FieldError(
                        name,
                        "wrong_parameter",
                        f"`{name}` carries a RefID: send it as `refid` instead",
                    )
        return None, None
