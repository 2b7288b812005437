"""Setting up advertisers, offers, affiliates and links: validation and defaults.

Shared by the admin API and the CLI, so both accept and refuse exactly the same input.
Takes loosely typed values (JSON bodies, CLI flags), returns the stored object's id.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from clickback.domain import fraud, fx, money
from clickback.domain.models import OfferStatus, PayoutType
from clickback.domain.outbound import ascii_host
from clickback.domain.outbound_setup import UrlCheck, no_check, postback_values
from clickback.domain.ports import Store
from clickback.domain.security import parse_networks
from clickback.domain.timefmt import now_us
from clickback.errors import ConflictError, InputError, NotFoundError

_URL_SAFE = ":/?#[]@!$&'()*+,;=%{}~-._"
# the meta key naming the built-in affiliate that integration tests' links belong to
TEST_AFFILIATE = "test_affiliate_id"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def new_link_code() -> str:
    return secrets.token_urlsafe(6)


def _name(values: Mapping[str, Any]) -> str:
    name = values.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InputError(
            "`name` is required: 1 to 200 characters", code="invalid_name", field="name"
        )
    return name.strip()


def _id(values: Mapping[str, Any], field: str) -> int:
    value = values.get(field)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError(f"`{field}` is required: an id", code="invalid_id", field=field)
    try:
        number = int(value)
        if not -(2**63) <= number < 2**63:  # no database holds it: no such row
            raise ValueError
        return number
    except ValueError:
        raise InputError(
            f"`{field}` must be an integer id", code="invalid_id", field=field
        ) from None


def _decimal(
    values: Mapping[str, Any], field: str, too_large: InputError, too_precise: InputError
) -> Decimal:
    """`too_large` and `too_precise`: the refusals of a plain decimal with more digits
    before or after the point than any amount may have (they are no bad format)."""
    raw = values.get(field)
    text = str(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else ""
    amount = money.parse_amount(text)
    if amount is None:
        long = money.plain_but_long(text)
        if long:
            raise too_large if long == "integer" else too_precise
        raise InputError(
            f'`{field}` must be a non-negative decimal given as a string, e.g. "12.50"',
            code="invalid_amount",
            field=field,
        )
    return amount


def _amount_in(values: Mapping[str, Any], field: str, currency: str, named: str = "") -> Decimal:
    """`field` as an amount with no more decimals than `currency` has (`named`: how the
    message names the currency, `currency` itself by default)."""
    too_large = InputError(
        f"`{field}` is too large to store: at most "
        f"{money.format_minor(money.MAX_MINOR, currency)} {named or currency}",
        code="invalid_amount",
        field=field,
    )
    too_precise = InputError(
        f"`{field}` has more decimals than {named or currency} has",
        code="invalid_amount",
        field=field,
    )
    amount = _decimal(values, field, too_large, too_precise)
    if not money.fits_currency(amount, currency):
        raise too_precise
    if money.to_minor(amount, currency) > money.MAX_MINOR:
        # no postback could be paid (or valued) with it: each would be refused as too large
        raise too_large
    return amount


async def _check_base_value(
    store: Store, cols: Mapping[str, Any], currency: str, base_currency: str
) -> None:
    """Refuses a fixed payout whose value in the base currency, at the latest exchange
    rate stored, is too large to store: a postback paying it would be refused. A rate
    imported later can still make it so (the postback is then refused as too large)."""
    minor = cols.get("payout_amount") or 0
    if currency == base_currency or not minor:
        return
    rows = [(c, d, Decimal(r)) for c, d, r in await store.all_rates() if c == currency]
    day = time.strftime("%Y-%m-%d", time.gmtime())
    _, value = fx.Rates(base_currency, rows).to_base(minor, currency, day)
    if value is not None and value > money.MAX_MINOR:
        raise InputError(
            f"`payout_amount` is too large to store in {base_currency} (the base currency) at"
            f" the latest {currency} rate: at most "
            f"{money.format_minor(money.MAX_MINOR, base_currency)} {base_currency}",
            code="invalid_amount",
            field="payout_amount",
        )


def _percent(values: Mapping[str, Any], field: str) -> Decimal:
    over = InputError(f"`{field}` is at most 100", code="invalid_percent", field=field)
    # a percent of an amount is then exact in Decimal's 28 digits before it is rounded
    fine = InputError(f"`{field}` has at most 8 decimals", code="invalid_percent", field=field)
    percent = _decimal(values, field, over, fine)
    if percent > 100:
        raise over
    exponent = percent.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -8:
        raise fine
    return percent


def revenue_terms(values: Mapping[str, Any], base_currency: str) -> dict[str, str]:
    """What the advertiser pays the network per conversion: none (`revenue_type` ''),
    `cpa` (`revenue_amount`, in the base currency) or `cps` (`revenue_percent` of the
    sale). Stored as given; the rollups turn it into minor units of the base currency."""
    rtype = str(values.get("revenue_type") or "").lower()
    if rtype not in ("", "cpa", "cps"):
        raise InputError(
            "`revenue_type` must be cpa, cps or empty (none)",
            code="invalid_revenue_type",
            field="revenue_type",
        )
    out = {"revenue_type": rtype, "revenue_amount": "0", "revenue_percent": "0"}
    if rtype == "cpa":
        named = f"{base_currency} (the base currency)"
        out["revenue_amount"] = money.plain(
            _amount_in(values, "revenue_amount", base_currency, named)
        )
    elif rtype == "cps":
        out["revenue_percent"] = money.plain(_percent(values, "revenue_percent"))
    return out


def destination_url(raw: Any, field: str = "destination_url") -> str:
    if not isinstance(raw, str):
        raise InputError(f"`{field}` is required", code="invalid_url", field=field)
    url = quote(ascii_host(raw.strip(), field), safe=_URL_SAFE)  # IRIs become plain ASCII URLs
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2000:
        raise InputError(
            f"`{field}` must be an absolute http(s) URL of at most 2000 characters",
            code="invalid_url",
            field=field,
        )
    host = parts.hostname or ""
    try:
        if parts.port == 0:
            raise ValueError("port 0")
    except ValueError:
        raise InputError(
            f"`{field}` has a port that is not one (1 to 65535)", code="invalid_url", field=field
        ) from None
    if not host or "%" in host or ".." in host or host.startswith("."):
        raise InputError(
            f"`{field}` has no host a browser could reach: `{host}` (a space, a `%` or an"
            " empty label)",
            code="invalid_url",
            field=field,
        )
    if field == "destination_url":  # a fallback's braces are sent as they are
        _no_unknown_macro(raw, field)
    return url


# what a destination URL's macros are (`domain.redirect`), and what other platforms
# call them
_REDIRECT_MACROS = ("refid", "sub1", "sub2", "sub3", "sub4", "sub5", "offer_id", "affiliate_id")
_MACRO_LIKE = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}")
_REFID_NAMES = ("clickid", "click_id", "transaction_id", "transactionid", "subid", "aff_click_id")


def _no_unknown_macro(url: str, field: str) -> None:
    """Refuses a `{name}` in a destination URL that is no macro (`{click_id}`, `{Sub1}`):
    it would reach the landing page as the text, and the click test passed it."""
    for found in _MACRO_LIKE.finditer(url):
        name = found.group(1)
        if found.group(0) == "{" + name + "}" and name in _REDIRECT_MACROS:
            continue
        folded = name.strip().lower()
        meant = folded if folded in _REDIRECT_MACROS else None
        meant = meant or ("refid" if folded in _REFID_NAMES else None)
        hint = f" (`{{{meant}}}` is what it may mean)" if meant else ""
        raise InputError(
            f"`{found.group(0)}` in `{field}` is no macro{hint}: it would reach the landing page"
            f" as it is. The macros: {', '.join('{' + m + '}' for m in _REDIRECT_MACROS)}",
            code="unknown_macro",
            field=field,
        )


def fallback_url(raw: Any) -> str:
    """An offer's (or the tracker's) fallback URL, checked as a destination is; empty or
    absent: none."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return ""
    if not isinstance(raw, str):
        raise InputError(
            "`fallback_url` must be an absolute http(s) URL, or empty for none",
            code="invalid_url",
            field="fallback_url",
        )
    return destination_url(raw, "fallback_url")


MAX_DAILY_CAP = 10_000_000


def offer_values(
    values: Mapping[str, Any], partial: bool = False, base_currency: str = "USD"
) -> dict[str, Any]:
    """Validated offer columns (only those given, when `partial`); `base_currency` (the
    tracker's CLICKBACK_BASE_CURRENCY) is the revenue's."""
    out: dict[str, Any] = {}

    def given(field: str) -> bool:
        return field in values and values[field] is not None

    if not partial or given("advertiser_id"):
        out["advertiser_id"] = _id(values, "advertiser_id")
    if not partial or given("name"):
        out["name"] = _name(values)
    if not partial or given("destination_url"):
        out["destination_url"] = destination_url(values.get("destination_url"))
    if not partial or "fallback_url" in values:  # null or "" in a PATCH removes it
        out["fallback_url"] = fallback_url(values.get("fallback_url"))
    if not partial or given("refid_param"):
        param = values.get("refid_param") or "refid"
        if (
            not isinstance(param, str)
            or not 0 < len(param) <= 50
            or any(c.isspace() or c in "&=#?%" for c in param)
        ):
            raise InputError(
                "`refid_param` must be a parameter name: 1 to 50 characters, no space and"
                " none of & = # ? %",
                code="invalid_param",
                field="refid_param",
            )
        out["refid_param"] = param
    if not partial or given("currency"):
        currency = money.normalize_currency(str(values.get("currency") or "USD"))
        if currency is None:
            raise InputError(
                "`currency` must be an ISO 4217 code", code="invalid_currency", field="currency"
            )
        out["currency"] = currency
    if not partial or given("payout_type"):
        try:
            ptype = PayoutType(str(values.get("payout_type") or "cpa").lower())
        except ValueError:
            raise InputError(
                "`payout_type` must be cpa, cps or cpl",
                code="invalid_payout_type",
                field="payout_type",
            ) from None
        if not values.get("payout_type"):  # the default: a field for another is no slip
            refuse_other_type(values, ptype.value, "payout_type", _PAYOUT_FIELDS, "offers")
        out["payout_type"] = ptype.value
        out["payout_amount"] = 0
        out["payout_percent"] = "0"
        if ptype is PayoutType.CPS:
            out["payout_percent"] = money.plain(_percent(values, "payout_percent"))
        else:
            currency = out.get("currency") or str(values.get("currency") or "USD").upper()
            amount = _amount_in(values, "payout_amount", currency)
            out["payout_amount"] = money.to_minor(amount, currency)
    if not partial or given("revenue_type"):
        out |= revenue_terms(values, base_currency)
        if not values.get("revenue_type"):  # none given (left out, null, ""): none
            kept = out["revenue_type"]
            refuse_other_type(values, kept, "revenue_type", _REVENUE_FIELDS, "revenue")
    if not partial or given("attribution_window_days"):
        raw = values.get("attribution_window_days")
        days = 30 if raw is None else _count(raw)  # not true (1) or 30.9 (30): refused
        if not 1 <= days <= 3650:
            raise InputError(
                "`attribution_window_days` must be a whole number of days, 1 to 3650",
                code="invalid_window",
                field="attribution_window_days",
            )
        out["attribution_window_days"] = days
    if not partial or given("status"):
        try:
            out["status"] = OfferStatus(str(values.get("status") or "active")).value
            if out["status"] == OfferStatus.ARCHIVED:  # archived by DELETE, with its time
                raise ValueError
        except ValueError:
            raise InputError(
                "`status` must be active or paused", code="invalid_status", field="status"
            ) from None
    if not partial or given("fraud_rules"):
        rules = fraud.parse_rules(values.get("fraud_rules") or {})
        out["fraud_rules"] = orjson.dumps(rules).decode()
    if not partial or given("approval"):
        approval = values.get("approval") or "auto"
        if approval not in ("auto", "review"):
            raise InputError(
                "`approval` must be auto or review", code="invalid_approval", field="approval"
            )
        out["approval"] = approval
    if not partial or "daily_cap" in values:  # null or "" in a PATCH removes it
        out["daily_cap"] = daily_cap(values.get("daily_cap"))
    if not partial or "auto_approve_days" in values:  # null or "" in a PATCH removes it
        out["auto_approve_days"] = auto_approve_days(values.get("auto_approve_days"))
    if (partial and "cap_redirect" in values) or given("cap_redirect"):
        out["cap_redirect"] = int(_bool(values, "cap_redirect"))
    elif not partial:
        out["cap_redirect"] = 0
    return out


def _count(raw: Any) -> int:
    """A whole number given as one or as its text (12, "12"; not 2.5, True, "1e3" or
    "ten": 0, which no count here takes)."""
    text = str(raw).strip() if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    return int(text) if text.isascii() and text.isdigit() else 0


def auto_approve_days(raw: Any) -> int | None:
    """An offer's validation period: days (1 to 365) after which a conversion still
    pending is approved; None, '' or absent: never."""
    if raw is None or raw == "":
        return None
    days = _count(raw)
    if not 1 <= days <= 365:
        raise InputError(
            "`auto_approve_days` must be a whole number of days, 1 to 365, or empty for none",
            code="invalid_auto_approve",
            field="auto_approve_days",
        )
    return days


def daily_cap(raw: Any) -> int | None:
    """An offer's conversions a UTC day (1 to 10,000,000, a whole number, or its text);
    None, '' or absent: no cap."""
    if raw is None or raw == "":
        return None
    cap = _count(raw)
    if not 1 <= cap <= MAX_DAILY_CAP:
        raise InputError(
            f"`daily_cap` must be a whole number of conversions a day, 1 to {MAX_DAILY_CAP:,},"
            " or empty for no cap",
            code="invalid_cap",
            field="daily_cap",
        )
    return cap


async def create_advertiser(store: Store, values: Mapping[str, Any]) -> int:
    name = _name(values)
    token = values.get("postback_token") or new_token()
    if not isinstance(token, str) or len(token) > 200:
        raise InputError(
            "`postback_token` must be a string", code="invalid_token", field="postback_token"
        )
    required = values.get("require_token") is not None and _bool(values, "require_token")
    return await store.create_advertiser(name, token, required)


async def create_offer(store: Store, values: Mapping[str, Any], base_currency: str = "USD") -> int:
    cols = offer_values(values, base_currency=base_currency)
    await require_live(store, "advertisers", cols["advertiser_id"], "advertiser_id")
    await _check_base_value(store, cols, cols["currency"], base_currency)
    offer_id = await store.create_offer(cols)
    await still_live(store, "offers", offer_id, ("advertisers", cols["advertiser_id"]))
    return offer_id


async def still_live(store: Store, table: str, made: int, *parents: tuple[str, int]) -> None:
    """After a create: when a parent was archived meanwhile (by another node, between the
    check and the insert), the row made is archived as well, and the create refused.
    With `archive_row`'s lock on PostgreSQL, either this sees the archive or the archive
    sees the row."""
    for parent, parent_id in parents:
        row = await store.get_row(parent, parent_id)
        if row is not None and row["archived_at"] is not None:
            await store.archive_row(table, made)
            noun = parent.rstrip("s")
            raise ConflictError(
                f"{noun} {parent_id} was archived while {table.rstrip('s')} {made} was made"
                " under it, so that is archived too",
                code=f"{noun}_archived",
            )


async def require_live(store: Store, table: str, row_id: int, field: str | None = None) -> None:
    """Refuses making something under a row that does not exist or is archived (what
    is made under it would never serve)."""
    noun = table.rstrip("s")
    row = await store.get_row(table, row_id)
    if row is None:
        raise NotFoundError(f"{noun} {row_id} does not exist", field=field)
    if row["archived_at"] is not None:
        raise ConflictError(
            f"{noun} {row_id} is archived: nothing new can be made under it",
            code=f"{noun}_archived",
            field=field,
        )


# which of an offer's types each payout or revenue field applies to
_PAYOUT_FIELDS = {"payout_amount": ("cpa", "cpl"), "payout_percent": ("cps",)}
_REVENUE_FIELDS = {"revenue_amount": ("cpa",), "revenue_percent": ("cps",)}


def _check_kept_type(
    values: Mapping[str, Any],
    current: Mapping[str, Any],
    type_field: str,
    fields: Mapping[str, tuple[str, ...]],
    noun: str,
) -> None:
    """A payout (revenue) field sent without its type is read against the offer's type:
    one that type does not use would be refused for want of the other field (or, for an
    offer with no revenue, dropped), so it is refused saying what it applies to and that
    the type must come with it."""
    if not values.get(type_field):  # left out, null or "": the offer's own is read
        refuse_other_type(values, current[type_field], type_field, fields, noun)


def refuse_other_type(
    values: Mapping[str, Any],
    kept: str,
    type_field: str,
    fields: Mapping[str, tuple[str, ...]],
    noun: str,
) -> None:
    """Refuses a payout (revenue) field the type `kept` (the offer's, or the default, the
    type not being given) does not use, given other than 0 (what a read offer shows of
    it): it would be dropped, and the offer pay (or earn) otherwise than was asked."""
    for field, types in fields.items():
        if kept not in types and _not_zero(values.get(field)):
            applies = " and ".join(t.upper() for t in types)
            has = f"is {kept.upper()}" if kept else "has none"
            whose = "this offer" if noun == "offers" or not kept else f"this offer's {noun}"
            raise InputError(
                f"`{field}` applies to {applies} {noun}, and {whose} {has}: send"
                f" `{type_field}` ({' or '.join(types)}) with it, or leave `{field}` out",
                code=f"needs_{type_field}",
                field=field,
            )


def _not_zero(value: Any) -> bool:
    if value is None or value == "":
        return False
    try:
        return Decimal(str(value)) != 0
    except ArithmeticError:
        return True  # not a number: refused, not dropped


async def update_offer(
    store: Store, offer_id: int, values: Mapping[str, Any], base_currency: str = "USD"
) -> None:
    current = await store.get_row("offers", offer_id)
    if current is None:
        raise NotFoundError(f"offer {offer_id} does not exist")
    if values.get("status") is not None and current["archived_at"] is not None:
        raise ConflictError(
            f"offer {offer_id} is archived: it never serves again, so its status cannot"
            " be set (create a new offer instead)",
            code="offer_archived",
        )
    _check_kept_type(values, current, "payout_type", _PAYOUT_FIELDS, "offers")
    _check_kept_type(values, current, "revenue_type", _REVENUE_FIELDS, "revenue")
    given = values.get("currency")
    new = money.normalize_currency(given) if isinstance(given, str) else None
    if given is not None and new is None:  # told as such, not as a change needing an amount
        raise InputError(
            "`currency` must be an ISO 4217 code", code="invalid_currency", field="currency"
        )
    changes_currency = given is not None and new != current["currency"]
    if changes_currency and current["payout_type"] != "cps" and "payout_amount" not in values:
        # the fixed payout is kept in minor units of the currency: it must be restated
        raise InputError(
            "changing the currency of a CPA/CPL offer needs its `payout_amount` in the new one",
            code="currency_needs_amount",
            field="currency",
        )
    if "currency" not in values:
        values = {**values, "currency": current["currency"]}
    if ("payout_amount" in values or "payout_percent" in values) and not values.get("payout_type"):
        values = {**values, "payout_type": current["payout_type"]}
    if ("revenue_amount" in values or "revenue_percent" in values) and not values.get(
        "revenue_type"
    ):
        values = {**values, "revenue_type": current["revenue_type"]}
    cols = offer_values(values, partial=True, base_currency=base_currency)
    cols.pop("advertiser_id", None)
    if "approval" in values:
        if values["approval"] not in ("auto", "review"):
            raise InputError(
                "`approval` must be auto or review", code="invalid_approval", field="approval"
            )
        cols["approval"] = values["approval"]
    await _check_base_value(store, cols, cols.get("currency") or current["currency"], base_currency)
    await store.update_row("offers", offer_id, cols)


async def create_affiliate(
    store: Store, values: Mapping[str, Any], check_url: UrlCheck | None = None
) -> int:
    """A new affiliate, with its outbound postback when given (checked as on update)."""
    name = _name(values)
    cols = await _affiliate_postback(values, check_url or no_check)
    return await store.create_affiliate(name, cols)


async def create_link(store: Store, values: Mapping[str, Any]) -> int:
    offer_id = _id(values, "offer_id")
    affiliate_id = _id(values, "affiliate_id")
    await require_live(store, "offers", offer_id, "offer_id")
    await require_live(store, "affiliates", affiliate_id, "affiliate_id")
    link_id = await store.create_link(new_link_code(), offer_id, affiliate_id)
    await still_live(store, "links", link_id, ("offers", offer_id), ("affiliates", affiliate_id))
    return link_id


async def update_advertiser(store: Store, advertiser_id: int, values: Mapping[str, Any]) -> None:
    cols: dict[str, Any] = {}
    if values.get("name") is not None:
        cols["name"] = _name(values)
    if values.get("postback_token") is not None:
        token = values["postback_token"]
        if not isinstance(token, str) or not 0 < len(token) <= 200:
            raise InputError(
                "`postback_token` must be 1 to 200 characters",
                code="invalid_token",
                field="postback_token",
            )
        cols["postback_token"] = token
    if values.get("require_token") is not None:
        cols["require_token"] = int(_bool(values, "require_token"))
    if values.get("ip_allowlist") is not None:
        text = values["ip_allowlist"]
        if not isinstance(text, str):
            raise InputError(
                "`ip_allowlist` is a comma-separated list of IPs and CIDRs",
                code="invalid_cidr",
                field="ip_allowlist",
            )
        cols["ip_allowlist"] = ", ".join(str(n) for n in parse_networks(text))
    if values.get("signing_secret") is not None:
        cols["signing_secret"] = _secret(values, "signing_secret")
    if values.get("require_signature") is not None:
        cols["require_signature"] = int(_bool(values, "require_signature"))
    if "signing_secret" in cols or cols.get("require_signature"):
        await _check_signature_secret(store, advertiser_id, cols)
    await _update(store, "advertisers", advertiser_id, cols)


async def _check_signature_secret(
    store: Store, advertiser_id: int, cols: Mapping[str, Any]
) -> None:
    """Refuses leaving an advertiser with a signature required and no secret to check it
    with: it would read as protected while no postback could be signed."""
    current = await store.get_row("advertisers", advertiser_id)
    if current is None:
        raise NotFoundError(f"advertiser {advertiser_id} does not exist")
    required = cols.get("require_signature", current["require_signature"])
    if not required or cols.get("signing_secret", current["signing_secret"]):
        return
    if cols.get("signing_secret") == "":
        raise InputError(
            "`signing_secret` cannot be cleared while a signature is required: send"
            " `require_signature` false with it",
            code="signature_needs_secret",
            field="signing_secret",
        )
    raise InputError(
        "`require_signature` needs a signing secret to check signatures with: send"
        " `signing_secret` with it",
        code="signature_needs_secret",
        field="require_signature",
    )


async def _affiliate_postback(values: Mapping[str, Any], check_url: UrlCheck) -> dict[str, Any]:
    """An affiliate's validated postback fields (those given), its URL checked."""
    cols = postback_values(values)
    if cols.get("postback_url"):
        await check_url(cols["postback_url"])
    if values.get("postback_secret") is not None:
        cols["postback_secret"] = _secret(values, "postback_secret")
    return cols


async def update_affiliate(
    store: Store, affiliate_id: int, values: Mapping[str, Any], check_url: UrlCheck = no_check
) -> None:
    cols = {"name": _name(values)} if values.get("name") is not None else {}
    cols |= await _affiliate_postback(values, check_url)
    await _update(store, "affiliates", affiliate_id, cols)
    if values.get("postback_enabled") is not None:
        if _bool(values, "postback_enabled"):
            await store.enable_postbacks(affiliate_id, now_us())
        elif (await store.get_row("affiliates", affiliate_id) or {}).get(
            "postback_disabled_at"
        ) is None:  # paused by hand: held as after failures, until enabled again
            await store.disable_postbacks(affiliate_id, now_us())


async def update_link(store: Store, link_id: int, values: Mapping[str, Any]) -> None:
    cols = {"active": int(_bool(values, "active"))} if values.get("active") is not None else {}
    if cols:
        current = await store.get_row("links", link_id)
        if current is not None and current["archived_at"] is not None:
            raise ConflictError(
                f"link {link_id} is archived: it never serves again, so it cannot be made"
                " active or inactive (create a new link instead)",
                code="link_archived",
            )
    await _update(store, "links", link_id, cols)


async def archive(store: Store, table: str, row_id: int) -> None:
    if table == "affiliates" and await store.get_meta(TEST_AFFILIATE) == str(row_id):
        # its links would stop: every integration test's click would fail from then on
        raise ConflictError(
            f"affiliate {row_id} is the built-in test affiliate: the integration tests' links"
            " belong to it, so it cannot be archived",
            code="test_affiliate",
        )
    if not await store.archive_row(table, row_id):
        raise NotFoundError(f"{table.rstrip('s').replace('_', ' ')} {row_id} does not exist")


async def _update(store: Store, table: str, row_id: int, cols: Mapping[str, Any]) -> None:
    if not await store.update_row(table, row_id, cols):
        raise NotFoundError(f"{table.rstrip('s')} {row_id} does not exist")


def _secret(values: Mapping[str, Any], field: str) -> str:
    secret = values[field]
    if not isinstance(secret, str) or len(secret) > 200:
        raise InputError(
            f"`{field}` must be at most 200 characters", code="invalid_secret", field=field
        )
    return secret


def _bool(values: Mapping[str, Any], field: str) -> bool:
    value = values.get(field)
    if not isinstance(value, bool):
        raise InputError(f"`{field}` must be true or false", code="invalid_bool", field=field)
    return value
