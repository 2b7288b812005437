"""The in-process cache of what the hot paths read: links, offers, advertisers,
commission rules, exchange rates, and the daily caps reached today (UTC).

A change made through this process is seen at once (`reload`); other processes and
nodes see it within `check_seconds`, because every change bumps a version number in
the database that each process polls. A link code missing from the cache falls
through to the database, so a link made on another node works at once everywhere.

An offer with `cap_redirect` whose daily cap the screening found reached today (or an
affiliate's own cap on it) has its links (those of the affiliate) not serving, so that
their clicks get the fallback URL, decided here once and not per click; with no fallback
URL at all they keep serving. The poll reloads at a UTC day's change too, so yesterday's
caps stop applying without waiting for a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from clickback.domain.fx import Rates
from clickback.domain.models import Advertiser, CommissionRule, Link, Offer, OfferStatus
from clickback.domain.outbound import PostbackConfig
from clickback.domain.ports import Store
from clickback.domain.redirect import RedirectTemplate
from clickback.errors import ClickbackError, UnavailableError

log = logging.getLogger("clickback.catalog")
T = TypeVar("T")
_ABANDONED: set[asyncio.Future[Any]] = set()  # reads given up on, left to end by themselves


async def within(read: Awaitable[T], seconds: float) -> T:
    """`read`'s result, or TimeoutError after `seconds`. A read given up on is cancelled
    but not waited for: on a hung connection its cancelling hangs too (asyncio.wait_for
    waits for it, and so hung as long as the connection did)."""
    task = asyncio.ensure_future(read)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        _ABANDONED.add(task)
        task.add_done_callback(_ABANDONED.discard)
        raise TimeoutError(f"no answer within {seconds:g} s")
    return task.result()


@dataclass(frozen=True, slots=True)
class Route:
    """What a click on one link needs, precomputed."""

    link_id: int
    offer_id: int
    affiliate_id: int
    serving: bool  # link active, offer active, and no daily cap reached that redirects it
    template: RedirectTemplate
    is_test: int
    fallback_url: str = ""  # the offer's, for a click while not serving
    capped: bool = False  # not serving for a daily cap reached (and only for that)


DAY_US = 86_400_000_000


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000


class Catalog:
    def __init__(
        self,
        store: Store,
        check_seconds: float = 1.0,
        base_currency: str = "USD",
        fallback_url: str = "",
        clock: Any = None,
    ):
        self._store = store
        self._check_seconds = check_seconds
        # a read of the catalog's own (a check, a reload, an unknown code's link) is given
        # up after this: one hung database connection (half-open after a failover, a
        # stuck pooler) stopped every later check, and the node served a paused offer
        self.read_timeout = max(5.0, 5 * check_seconds)
        self.fallback_url = fallback_url  # CLICKBACK_FALLBACK_URL; '': none
        self.clock = clock or SystemClock()
        self.day = -1  # the UTC day whose caps reached are held
        self.capped: frozenset[tuple[int, int]] = frozenset()  # (offer, affiliate or 0)
        self.rules: dict[int, list[CommissionRule]] = {}
        self.postbacks: Mapping[tuple[int, int], PostbackConfig] = {}
        self.rates = Rates(base_currency)
        self.version = -1
        self.routes: dict[str, Route] = {}
        self.links: dict[int, Link] = {}
        self.offers: dict[int, Offer] = {}
        self.advertisers: dict[int, Advertiser] = {}
        self.token_owners: dict[str, int] = {}  # postback token -> its advertiser's id
        self._task: asyncio.Task[None] | None = None
        self.checked_at = time.monotonic()  # when the database last told what is current

    def stale_seconds(self) -> float:
        """How long ago the database last told this cache what is current, once that is
        longer than the checks given up on allow (twice `read_timeout`); else 0. A node
        whose reads keep failing serves what it read last: paused offers, old payouts."""
        age = time.monotonic() - self.checked_at
        return age if age > 2 * self.read_timeout else 0.0

    async def reload(self) -> None:
        day = self.clock.now_us() // DAY_US
        snap = await self._store.load_catalog()
        # read after the version: a cap reached meanwhile bumps it, and is read again
        reached = await self._store.caps_reached(day)
        self.day = day
        self.capped = frozenset((o, a) for o, a, d in reached if d == day)
        self.advertisers = {a.id: a for a in snap.advertisers}
        self.token_owners = {a.postback_token: a.id for a in snap.advertisers if a.postback_token}
        self.offers = {o.id: o for o in snap.offers}
        rules: dict[int, list[CommissionRule]] = {}
        for rule in snap.rules:
            rules.setdefault(rule.offer_id, []).append(rule)
        self.rules = rules
        self.rates = Rates(self.rates.base, snap.rates)
        self.postbacks = snap.postbacks
        self.links = {}
        self.routes = {}
        for link in snap.links:
            self._add(link)
        self.version = snap.version
        self.checked_at = time.monotonic()

    def _add(self, link: Link) -> Route | None:
        offer = self.offers.get(link.offer_id)
        if offer is None:
            return None
        self.links[link.id] = link
        serving = link.active and offer.status is OfferStatus.ACTIVE
        capped = serving and self._capped(offer, link)
        route = Route(
            link.id,
            offer.id,
            link.affiliate_id,
            serving and not capped,
            RedirectTemplate(offer.destination_url, offer.refid_param, offer.id, link.affiliate_id),
            int(link.is_test),
            offer.fallback_url,
            capped,
        )
        self.routes[link.code] = route
        return route

    def _capped(self, offer: Offer, link: Link) -> bool:
        """Whether the link's clicks go to the fallback URL for a daily cap reached today:
        the offer's (while it has one) or the link's affiliate's own. Never an integration
        test's link (its conversions are not counted), nor with no fallback URL at all (a
        capped offer is not sent to the 404 page)."""
        if not offer.cap_redirect or link.is_test or not (offer.fallback_url or self.fallback_url):
            return False
        own = offer.daily_cap is not None and (offer.id, 0) in self.capped
        return own or (offer.id, link.affiliate_id) in self.capped

    def postback_config(self, offer_id: int, affiliate_id: int) -> PostbackConfig | None:
        """The offer+affiliate override, else the affiliate's own outbound postback."""
        return self.postbacks.get((offer_id, affiliate_id)) or self.postbacks.get((0, affiliate_id))

    def delivery_state(self, offer_id: int, affiliate_id: int, event: str, is_test: int) -> str:
        """'' when the event is not posted back (never for test traffic), else its state."""
        config = None if is_test else self.postback_config(offer_id, affiliate_id)
        return config.state_for(event) if config else ""

    async def route(self, code: str) -> Route | None:
        route = self.routes.get(code)
        if route is not None:
            return route
        if "\x00" in code:  # no code holds it, and PostgreSQL's text cannot
            return None
        try:
            link = await within(self._store.link_by_code(code), self.read_timeout)
            if link is not None and link.offer_id not in self.offers:
                # made elsewhere together with its offer
                await within(self.reload(), self.read_timeout)
                return self.routes.get(code)
        except ClickbackError:
            raise
        except Exception as exc:  # the database out, or a connection hung
            log.warning("the link of code %r could not be read: %r", code, exc)
            raise UnavailableError("the tracker cannot read its links now; retry") from None
        if link is None:
            return None
        return self._add(link)

    async def refresh_if_changed(self) -> bool:
        """Reloads after a change, or once the UTC day changed (the caps reached are
        each day's)."""
        day = self.clock.now_us() // DAY_US
        if day != self.day or await self._store.config_version() != self.version:
            await self.reload()
            return True
        self.checked_at = time.monotonic()
        return False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._check_seconds)
            # a failed check is retried on the next tick; the cache keeps serving
            with contextlib.suppress(Exception):
                await within(self.refresh_if_changed(), self.read_timeout)
