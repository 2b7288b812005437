"""Settings, read once from `CLICKBACK_*` environment variables (and CLI flags that set them).

Every setting is declared in `SETTINGS` with its default and a line of documentation;
`docs/configuration.md` lists them all and a test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from clickback.domain.admin import fallback_url
from clickback.domain.money import normalize_currency
from clickback.errors import ConfigError, InputError

# name -> (default, documentation)
SETTINGS: dict[str, tuple[str, str]] = {
    "CLICKBACK_DATABASE_URL": (
        "sqlite:///clickback.db",
        "Where data lives: `sqlite:///path.db` (the default, `./clickback.db`) or "
        "`postgresql://user@host:port/db`.",
    ),
    "CLICKBACK_PUBLIC_URL": (
        "",
        "Base URL that tracking links and postback URLs are shown with, e.g. "
        "`https://track.example.com`. Empty: the admin API and UI use the URL they were "
        "reached on; the CLI uses the URL the last `clickback serve` on the same database "
        "recorded at its start (its own CLICKBACK_PUBLIC_URL, else `http://HOST:PORT`, "
        "with 127.0.0.1 for 0.0.0.0 and ::1 for ::), or `http://127.0.0.1:8080` before "
        "any has run.",
    ),
    "CLICKBACK_ADMIN_TOKEN": (
        "",
        "A bearer token with the admin role for `/api/v1`, besides tokens made with "
        "`clickback token create`. Empty: only those.",
    ),
    "CLICKBACK_SECRET": (
        "",
        "Comma-separated keys that sign RefIDs; the first signs, all verify (rotation). "
        "Empty: a key generated once and stored in the database, shared by every node; once "
        "keys are set, a stored key still verifies, so the RefIDs it signed stay valid (to "
        "retire it when they are past every attribution window: delete the `refid_secret` "
        "row of the `meta` table).",
    ),
    "CLICKBACK_FALLBACK_URL": (
        "",
        "Where a click goes (302, no RefID, no click stored) when its link code is unknown, "
        "or its link, affiliate or offer is not serving (inactive, paused, archived) and the "
        "offer has no `fallback_url` of its own. Empty: such a click gets the 404 page.",
    ),
    "CLICKBACK_CLICK_DURABILITY": (
        "sync",
        "`sync`: the click row is committed before the 302 is sent. `async`: the 302 is "
        "sent at once and the click committed in the next batch (a crash may lose the "
        "click row; its conversions are still attributed from the signed RefID).",
    ),
    "CLICKBACK_BASE_CURRENCY": (
        "USD",
        "The currency reports total in; conversions store their amount in it too, valued "
        "with the exchange rate of their day (`clickback rates import`). A database keeps "
        "the one it first stored amounts or rates in: another is refused at start.",
    ),
    "CLICKBACK_BATCH_MAX": (
        "512",
        "Most rows the writer commits in one transaction.",
    ),
    "CLICKBACK_CACHE_CHECK_SECONDS": (
        "1.0",
        "How often each process checks whether links, offers or advertisers changed.",
    ),
    "CLICKBACK_OUTBOUND_ALLOW_PRIVATE": (
        "0",
        "`1` lets outbound postbacks go to loopback, private, link-local and multicast "
        "addresses (tests, private networks). Otherwise such URLs are refused. Read by the "
        "CLI and the server alike: `clickback affiliate postback` needs it in its own "
        "environment, `clickback serve` in its.",
    ),
    "CLICKBACK_OUTBOUND_TIMEOUT": (
        "10",
        "Seconds an outbound postback may take, resolving its host included; shorter than "
        "CLICKBACK_OUTBOUND_LEASE_SECONDS. A server told to stop (SIGTERM) waits up to this "
        "and a second for the postbacks in flight to end and be recorded: give the process "
        "manager a longer stop timeout than that, or a postback cut off is sent again.",
    ),
    "CLICKBACK_OUTBOUND_RETRY_SECONDS": (
        "10,60,300,900,3600,10800",
        "Backoff before each retry of an outbound postback, in seconds; the last repeats. "
        "Each wait is shortened by a random 0-50 % (jitter).",
    ),
    "CLICKBACK_OUTBOUND_GIVE_UP_HOURS": (
        "72",
        "An outbound postback still failing this long after it was queued is `failed`.",
    ),
    "CLICKBACK_OUTBOUND_DISABLE_AFTER": (
        "25",
        "Consecutive failed attempts after which an affiliate's postback is disabled and "
        "its deliveries held until re-enabled.",
    ),
    "CLICKBACK_OUTBOUND_LEASE_SECONDS": (
        "30",
        "How long a sender owns the deliveries it took; after a crash another sender "
        "takes them over once this passes. Longer than CLICKBACK_OUTBOUND_TIMEOUT (else "
        "the server does not start): a send outliving its lease would be sent again.",
    ),
    "CLICKBACK_JOBS_POLL_SECONDS": (
        "0.5",
        "How often the background jobs (outbound sender, fraud screening) look for work.",
    ),
    "CLICKBACK_JOBS_BATCH": (
        "250",
        "Rows a background job (rollups, fraud screening) takes per pass. A pass runs on "
        "the event loop that answers clicks, so smaller passes keep redirect latency low.",
    ),
    "CLICKBACK_JOBS_SHARE": (
        "0.25",
        "The most of the event loop the background jobs (rollups, fraud screening) take "
        "while catching up, as long as they are within CLICKBACK_JOBS_MAX_LAG and requests "
        "are being answered: a burst delays reports and fraud flags a little rather than "
        "the redirects; an idle server folds its backlog at full speed. 1: no limit.",
    ),
    "CLICKBACK_JOBS_MAX_LAG": (
        "5",
        "The freshness bound of reports and fraud flags, in seconds: a background job "
        "(rollups, fraud screening) whose backlog is older than this (the newest click or "
        "conversion of a pass that filled its batch) stops resting between passes "
        "(CLICKBACK_JOBS_SHARE no longer applies) until it is back within it. Under more "
        "traffic than the core can serve and fold, redirects slow down instead of reports "
        "falling behind without end. 0: no bound.",
    ),
    "CLICKBACK_FRAUD_MIN_SECONDS": (
        "10",
        "A conversion sooner than this after its click is flagged `fast_conversion`.",
    ),
    "CLICKBACK_FRAUD_FLOOD_CLICKS": (
        "20",
        "More clicks than this from one IP on one link within a minute are `click_flood`.",
    ),
    "CLICKBACK_FRAUD_IP_CONVERSIONS": (
        "5",
        "More conversions than this within a day from the clicks of one IP are flagged "
        "`ip_conversions`.",
    ),
    "CLICKBACK_DATACENTER_RANGES": (
        "",
        "A file of data-centre CIDRs (one per line); clicks from them are flagged "
        "`datacenter_ip`. Empty: no such flag.",
    ),
    "CLICKBACK_TRUSTED_PROXIES": (
        "",
        "Comma-separated CIDRs of reverse proxies whose `X-Forwarded-For` is believed for "
        "the client IP (postback allowlists, ledger): every line of the header, read from "
        "the right, the nearest address that is not a trusted proxy. Empty: the direct peer "
        "is the client.",
    ),
    "CLICKBACK_POSTBACK_RATE_LIMIT": (
        "0",
        "Postbacks per second allowed per source IP (bursts up to 2 s worth); more get 429 "
        "with Retry-After. 0: no limit (an advertiser's server may fire in bursts, and a "
        "refused postback is a lost sale). The operator's own postbacks (replays, simulated "
        "integration tests) are neither counted nor refused.",
    ),
    "CLICKBACK_SIGNATURE_SKEW_SECONDS": (
        "300",
        "How far a signed postback's `ts` may be from the server's clock.",
    ),
    "CLICKBACK_PG_POOL_SIZE": (
        "4",
        "PostgreSQL connections per process for reads (the writer has its own).",
    ),
    "CLICKBACK_PG_WRITE_TIMEOUT": (
        "4",
        "Seconds a PostgreSQL write batch may go unanswered (a server that hangs rather than "
        "fails): its requests are then answered 503 (retry; a repeated order is answered "
        "`duplicate`) and the writer opens a new connection. A click is committed within "
        "this time of its coming or answered 503 (an asynchronous one is dropped; its RefID "
        "still attributes), so the fraud screening and the rollup take clicks once this "
        "plus 1 s old (unless CLICKBACK_ROLLUP_SETTLE is set): with several processes or "
        "nodes, a click committed later could be passed over for good.",
    ),
    "CLICKBACK_GEOIP_MMDB": (
        "",
        "A MaxMind `.mmdb` file (GeoLite2/GeoIP2 Country or City, or a compatible one) to "
        "read click countries from. Empty: the data geoip2fast ships.",
    ),
    "CLICKBACK_ROLLUP_INTERVAL": (
        "1.0",
        "Seconds between runs of the report rollup job in each `serve` process (one "
        "process at a time does the work, under a lease). `0`: this process never runs it.",
    ),
    "CLICKBACK_ROLLUP_SETTLE": (
        "",
        "Seconds old a click must be before the fraud screening and the rollup take it, so "
        "that every write batch that stamped one before it has committed (they pass clicks "
        "by RefID). Empty: 2 on SQLite (one process writes it, in stamp order); on "
        "PostgreSQL CLICKBACK_PG_WRITE_TIMEOUT plus 1 (5), the longest a click's write may "
        "take, as several processes and nodes write it. Lower it on PostgreSQL only with one "
        "process writing. A click is in reports within settle + interval (+ the screening's "
        "poll).",
    ),
    "CLICKBACK_ROLLUP_COALESCE": (
        "1.0",
        "While the rollup job works through a backlog of clicks or conversions (its passes "
        "fill their batch), what it folds is held in memory up to this many seconds and "
        "applied together (conversions up to four batches), so a rollup key that comes "
        "again meanwhile (the same link, sub-IDs, country, device and hour) is written once "
        "instead of once a pass, and the report file is committed once. Adds at most this "
        "to how far reports trail a burst; what was held is read again after a crash. 0: "
        "every pass applies what it folded.",
    ),
    "CLICKBACK_LOOP_STALL_MS": (
        "100",
        "When the event loop that answers clicks and postbacks has not turned for this many "
        "milliseconds (every request waiting), a warning is logged, once it turns again, "
        "with how long it stopped and where its thread was (logger `clickback.loop`). "
        "0: not watched.",
    ),
    "CLICKBACK_HTTP_IDLE_SECONDS": (
        "75",
        "`clickback serve --server native`: a kept-alive connection with no request for this "
        "long is closed.",
    ),
    "CLICKBACK_HTTP_REQUEST_SECONDS": (
        "30",
        "`clickback serve --server native`: a request whose line, headers and body have not "
        "all come this long after its first byte is answered 408 and its connection closed.",
    ),
}


def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, SETTINGS[name][0])


@dataclass(frozen=True)
class Settings:
    database_url: str = SETTINGS["CLICKBACK_DATABASE_URL"][0]
    public_url: str = ""
    admin_token: str = ""
    secrets: tuple[str, ...] = field(default_factory=tuple)
    click_durability: str = "sync"
    fallback_url: str = ""
    batch_max: int = 512
    cache_check_seconds: float = 1.0
    pg_pool_size: int = 4
    pg_write_timeout: float = 4.0
    base_currency: str = "USD"
    outbound_allow_private: bool = False
    outbound_timeout: float = 10.0
    outbound_retry_seconds: tuple[float, ...] = (10, 60, 300, 900, 3600, 10800)
    outbound_give_up_hours: float = 72.0
    outbound_disable_after: int = 25
    outbound_lease_seconds: float = 30.0
    jobs_poll_seconds: float = 0.5
    jobs_batch: int = 250
    jobs_share: float = 0.25
    jobs_max_lag: float = 5.0
    fraud_min_seconds: float = 10.0
    fraud_flood_clicks: int = 20
    fraud_ip_conversions: int = 5
    datacenter_ranges: str = ""
    geoip_mmdb: str = ""
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)
    postback_rate_limit: float = 0.0
    signature_skew_seconds: int = 300
    rollup_interval: float = 1.0
    rollup_settle: float | None = None  # None: the store's (`click_settle_us`)
    rollup_coalesce: float = 1.0
    loop_stall_ms: float = 100.0
    http_idle_seconds: float = 75.0
    http_request_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.outbound_lease_seconds <= self.outbound_timeout:
            # a send that outlives its sender's lease is taken over and sent again by
            # another process, without end while the receiver stays that slow
            raise ConfigError(
                "CLICKBACK_OUTBOUND_LEASE_SECONDS must be longer than CLICKBACK_OUTBOUND_TIMEOUT"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        durability = _get(env, "CLICKBACK_CLICK_DURABILITY")
        if durability not in ("sync", "async"):
            raise ConfigError("CLICKBACK_CLICK_DURABILITY must be `sync` or `async`")
        try:
            batch_max = int(_get(env, "CLICKBACK_BATCH_MAX"))
            check = float(_get(env, "CLICKBACK_CACHE_CHECK_SECONDS"))
            pool = int(_get(env, "CLICKBACK_PG_POOL_SIZE"))
            numbers: dict[str, object] = {
                "outbound_timeout": float(_get(env, "CLICKBACK_OUTBOUND_TIMEOUT")),
                "outbound_retry_seconds": tuple(
                    float(x) for x in _get(env, "CLICKBACK_OUTBOUND_RETRY_SECONDS").split(",")
                ),
                "outbound_give_up_hours": float(_get(env, "CLICKBACK_OUTBOUND_GIVE_UP_HOURS")),
                "outbound_disable_after": int(_get(env, "CLICKBACK_OUTBOUND_DISABLE_AFTER")),
                "outbound_lease_seconds": float(_get(env, "CLICKBACK_OUTBOUND_LEASE_SECONDS")),
                "jobs_poll_seconds": float(_get(env, "CLICKBACK_JOBS_POLL_SECONDS")),
                "jobs_batch": max(1, int(_get(env, "CLICKBACK_JOBS_BATCH"))),
                "jobs_share": min(1.0, max(0.01, float(_get(env, "CLICKBACK_JOBS_SHARE")))),
                "jobs_max_lag": max(0.0, float(_get(env, "CLICKBACK_JOBS_MAX_LAG"))),
                "fraud_min_seconds": float(_get(env, "CLICKBACK_FRAUD_MIN_SECONDS")),
                "fraud_flood_clicks": int(_get(env, "CLICKBACK_FRAUD_FLOOD_CLICKS")),
                "fraud_ip_conversions": int(_get(env, "CLICKBACK_FRAUD_IP_CONVERSIONS")),
                "postback_rate_limit": float(_get(env, "CLICKBACK_POSTBACK_RATE_LIMIT")),
                "signature_skew_seconds": int(_get(env, "CLICKBACK_SIGNATURE_SKEW_SECONDS")),
                "loop_stall_ms": max(0.0, float(_get(env, "CLICKBACK_LOOP_STALL_MS"))),
                "pg_write_timeout": max(0.1, float(_get(env, "CLICKBACK_PG_WRITE_TIMEOUT"))),
                "http_idle_seconds": max(0.1, float(_get(env, "CLICKBACK_HTTP_IDLE_SECONDS"))),
                "http_request_seconds": max(
                    0.1, float(_get(env, "CLICKBACK_HTTP_REQUEST_SECONDS"))
                ),
            }
            interval = float(_get(env, "CLICKBACK_ROLLUP_INTERVAL"))
            raw_settle = _get(env, "CLICKBACK_ROLLUP_SETTLE").strip()
            settle = float(raw_settle) if raw_settle else None
            coalesce = float(_get(env, "CLICKBACK_ROLLUP_COALESCE"))
        except ValueError as exc:
            raise ConfigError(f"bad numeric setting: {exc}") from exc
        base = _get(env, "CLICKBACK_BASE_CURRENCY").strip().upper()
        if normalize_currency(base) is None:
            raise ConfigError("CLICKBACK_BASE_CURRENCY must be an ISO 4217 code")
        try:
            fallback = fallback_url(_get(env, "CLICKBACK_FALLBACK_URL"))
        except InputError as exc:
            said = exc.message.replace("`fallback_url`", "it")
            raise ConfigError(f"CLICKBACK_FALLBACK_URL, when set: {said}") from None
        secrets = tuple(s.strip() for s in _get(env, "CLICKBACK_SECRET").split(",") if s.strip())
        return cls(
            database_url=_get(env, "CLICKBACK_DATABASE_URL"),
            public_url=_get(env, "CLICKBACK_PUBLIC_URL").rstrip("/"),
            admin_token=_get(env, "CLICKBACK_ADMIN_TOKEN"),
            secrets=secrets,
            click_durability=durability,
            fallback_url=fallback,
            batch_max=max(1, batch_max),
            cache_check_seconds=check,
            pg_pool_size=max(1, pool),
            base_currency=base,
            outbound_allow_private=_get(env, "CLICKBACK_OUTBOUND_ALLOW_PRIVATE") in ("1", "true"),
            datacenter_ranges=_get(env, "CLICKBACK_DATACENTER_RANGES"),
            geoip_mmdb=_get(env, "CLICKBACK_GEOIP_MMDB"),
            trusted_proxies=tuple(
                p.strip() for p in _get(env, "CLICKBACK_TRUSTED_PROXIES").split(",") if p.strip()
            ),
            rollup_interval=max(0.0, interval),
            rollup_settle=None if settle is None else max(0.0, settle),
            rollup_coalesce=max(0.0, coalesce),
            **numbers,  # type: ignore[arg-type]
        )
