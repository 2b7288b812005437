"""The in-process cache of what the hot paths read: links, offers, advertisers,
commission rules and exchange rates.

A change made through this process is seen at once (`reload`); other processes and
nodes see it within `check_seconds`, because every change bumps a version number in
the database that each process polls. A link code missing from the cache falls
through to the database, so a link made on another node works at once everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from clickback.domain.fx import Rates
from clickback.domain.models import Advertiser, CommissionRule, Link, Offer, OfferStatus
from clickback.domain.outbound import PostbackConfig
from clickback.domain.ports import Store
from clickback.domain.redirect import RedirectTemplate


@dataclass(frozen=True, slots=True)
class Route:
    """What a click on one link needs, precomputed."""

    link_id: int
    offer_id: int
    affiliate_id: int
    serving: bool  # link active and offer active
    template: RedirectTemplate
    is_test: int
    fallback_url: str = ""  # the offer's, for a click while not serving


class Catalog:
    def __init__(self, store: Store, check_seconds: float = 1.0, base_currency: str = "USD"):
        self._store = store
        self._check_seconds = check_seconds
        self.rules: dict[int, list[CommissionRule]] = {}
        self.postbacks: Mapping[tuple[int, int], PostbackConfig] = {}
        self.rates = Rates(base_currency)
        self.version = -1
        self.routes: dict[str, Route] = {}
        self.links: dict[int, Link] = {}
        self.offers: dict[int, Offer] = {}
        self.advertisers: dict[int, Advertiser] = {}
        self._task: asyncio.Task[None] | None = None

    async def reload(self) -> None:
        snap = await self._store.load_catalog()
        self.advertisers = {a.id: a for a in snap.advertisers}
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

    def _add(self, link: Link) -> Route | None:
        offer = self.offers.get(link.offer_id)
        if offer is None:
            return None
        self.links[link.id] = link
        route = Route(
            link.id,
            offer.id,
            link.affiliate_id,
            link.active and offer.status is OfferStatus.ACTIVE,
            RedirectTemplate(offer.destination_url, offer.refid_param, offer.id, link.affiliate_id),
            int(link.is_test),
            offer.fallback_url,
        )
        self.routes[link.code] = route
        return route

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
        link = await self._store.link_by_code(code)
        if link is None:
            return None
        if link.offer_id not in self.offers:
            await self.reload()  # made elsewhere together with its offer
            return self.routes.get(code)
        return self._add(link)

    async def refresh_if_changed(self) -> bool:
        if await self._store.config_version() != self.version:
            await self.reload()
            return True
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
                await self.refresh_if_changed()
