"""The ASGI application: hot paths first, health checks, then the admin API.

`create_app(settings, store)` builds it; the store is opened and migrated at start-up
when not given. `clickback serve` runs it under granian behind `web/rsgi.py`, which
answers the hot paths itself (`clickback serve --interface asgi` runs it as it is).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

import httpx

from clickback import outbound_http
from clickback.config import Settings
from clickback.domain import fraud, fx
from clickback.domain.catalog import Catalog
from clickback.domain.integration import LandingProbe
from clickback.domain.outbound import Attempt, OutboundRequest, RetryPolicy
from clickback.domain.ports import Store
from clickback.domain.rollup import RollupJob, shared_enricher
from clickback.domain.screener import Screener
from clickback.domain.security import parse_networks
from clickback.domain.sender import Sender
from clickback.domain.tracker import Tracker, open_tracker_for
from clickback.probe import probe_landing
from clickback.storage import open_store
from clickback.web import kit, tracking
from clickback.web.watchdog import LoopWatchdog

log = logging.getLogger("clickback")


class ClickbackApp:
    """ASGI callable. Routing for the two hot paths is a prefix test, nothing more."""

    def __init__(self, settings: Settings, store: Store | None = None):
        self.settings = settings
        self.store: Store = store  # type: ignore[assignment]  # set by startup() when None
        self._owns_store = store is None
        self.ready = False
        self.in_flight = 0  # HTTP requests being answered: the background jobs rest for them
        self.begun = 0  # HTTP requests begun, ever
        self.tracker: Tracker = None  # type: ignore[assignment]
        self.catalog: Catalog = None  # type: ignore[assignment]
        self.probe: LandingProbe | None = probe_landing
        self.sender: Sender | None = None
        self.trusted_proxies = parse_networks(",".join(settings.trusted_proxies))
        self.screener: Screener | None = None
        self.rollup: RollupJob | None = None
        self.watchdog: LoopWatchdog | None = None
        from clickback.web.api import build_api

        self.api = build_api(self)

    async def startup(self) -> None:
        if self.store is None:
            self.store = await open_store(self.settings.database_url, self.settings)
        await self.store.migrate()
        await fx.check_base_currency(self.store, self.settings.base_currency)
        self.tracker = await open_tracker_for(self.store, self.settings)
        self.catalog = self.tracker.catalog
        self.catalog.start()
        self._start_jobs()
        self.rollup = RollupJob(
            self.store,
            mmdb_path=self.settings.geoip_mmdb,
            interval=self.settings.rollup_interval,
            settle=self.settings.rollup_settle,
            batch=self.settings.jobs_batch,
            share=self.settings.jobs_share,
            max_lag=self.settings.jobs_max_lag,
            coalesce=self.settings.rollup_coalesce,
            busy=self.answering_probe(),
            after_screening=True,  # the screener runs in this process (or another's)
            base_currency=self.settings.base_currency,
        )
        if self.settings.rollup_interval > 0:
            self.rollup.start()  # off the hot path: reports read what it rolls up
        # what start-up made lives as long as the process: keep the collector off it, or
        # each full collection walks it all while requests wait (tens of ms measured)
        gc.collect()
        gc.freeze()
        if self.settings.loop_stall_ms > 0:
            self.watchdog = LoopWatchdog(self.settings.loop_stall_ms / 1000)
            self.watchdog.start()
        self.ready = True

    def _start_jobs(self) -> None:
        """The outbound postback sender and the fraud screening, in this process."""
        s = self.settings
        # requests made to the checked address (outbound_http) are pooled by that address:
        # a kept connection would carry another host's postback over the TLS session (and
        # certificate) of the first host on that address, so none is kept there
        keep = 20 if s.outbound_allow_private else 0  # httpx's default, or none
        pool = httpx.Limits(max_connections=100, max_keepalive_connections=keep)
        self._http = httpx.AsyncClient(follow_redirects=False, limits=pool)
        http = self._http

        async def send(request: OutboundRequest) -> Attempt:
            return await outbound_http.send(
                http, request, s.outbound_timeout, s.outbound_allow_private
            )

        policy = RetryPolicy(
            s.outbound_retry_seconds, s.outbound_give_up_hours * 3600, s.outbound_disable_after
        )
        self.sender = Sender(
            self.store,
            send,
            policy,
            s.outbound_lease_seconds,
            s.jobs_poll_seconds,
            grace_seconds=s.outbound_timeout + 1.0,
        )
        limits = fraud.Thresholds(s.fraud_min_seconds, s.fraud_flood_clicks, s.fraud_ip_conversions)
        enricher = shared_enricher(s.geoip_mmdb)  # the same data the reports use

        def is_bot(user_agent: str) -> bool:
            return enricher.agent(user_agent).bot

        self.screener = Screener(
            self.store,
            fraud.ClickScreen(is_bot, fraud.Networks.from_file(s.datacenter_ranges), limits),
            fraud.ConversionScreen(enricher.country, limits),
            self.catalog.delivery_state,
            s.jobs_poll_seconds,
            batch=s.jobs_batch,
            share=s.jobs_share,
            max_lag=s.jobs_max_lag,
            busy=self.answering_probe(),
            base_currency=s.base_currency,
            settle=s.rollup_settle,
        )
        self.sender.start()
        self.screener.start()

    async def shutdown(self) -> None:
        self.ready = False
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.sender is not None and self.screener is not None:
            await self.sender.stop()
            await self.screener.stop()
            await self._http.aclose()
        if self.rollup is not None:
            await self.rollup.stop()
        if self.catalog is not None:
            await self.catalog.stop()
        if self._owns_store and self.store is not None:
            await self.store.close()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            self.begun += 1
            self.in_flight += 1
            try:
                if path[:3] == "/c/":
                    await tracking.click(self, scope, receive, send)
                elif path in tracking.POSTBACK_PATHS:
                    await tracking.postback(self, scope, receive, send)
                elif path == "/kit/refid.js":
                    await kit.refid_js(scope, receive, send)
                else:
                    await self.api(scope, receive, send)
            finally:
                self.in_flight -= 1
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.api(scope, receive, send)

    def answering(self) -> bool:
        return self.in_flight > 0

    def answering_probe(self) -> Callable[[], bool]:
        """For one background job: whether requests were answered since it last asked
        (one is in flight, or one began meanwhile). In flight alone is not enough:
        under a full load a job's pass often ends just after the requests it let in
        were answered and before the next ones are handed over (a third of the passes,
        measured), and the job would then skip the rest the requests need."""
        seen = self.begun

        def answered() -> bool:
            nonlocal seen
            began, seen = self.begun != seen, self.begun
            return began or self.in_flight > 0

        return answered

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: Settings | None = None, store: Store | None = None) -> ClickbackApp:
    return ClickbackApp(settings or Settings.from_env(), store)


def app_from_env() -> ClickbackApp:
    """Factory for the server process: settings from CLICKBACK_* variables."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every outbound postback's URL, with any password in it; the sender logs
    # the failures without it, and the delivery log keeps every attempt
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return create_app(Settings.from_env())
