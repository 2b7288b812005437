"""Parsing and validating an advertiser's postback parameters.

The seed's parameters: `refid`, `orderamount`, `ordernumber` (required) and `coupon`,
`currency`, `geo`, `commissionid` (optional), plus `token` where the advertiser requires
one. `clickid` is accepted as an alias of `refid`. Every bad field is reported, not just
the first; unknown extra parameters are kept, not refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from clickback.domain import money
from clickback.domain.models import FieldError

MAX_FIELD = 255
MAX_REFID = 64


@dataclass(frozen=True, slots=True)
class PostbackInput:
    refid: str
    orderamount: Decimal
    ordernumber: str
    coupon: str
    currency: str | None
    geo: str | None
    commissionid: str
    token: str


def _text(
    params: Mapping[str, str], name: str, errors: list[FieldError], limit: int = MAX_FIELD
) -> str:
    value = params.get(name, "").strip()
    if len(value) > limit:
        errors.append(FieldError(name, "too_long", f"`{name}` is longer than {limit} characters"))
    return value


# the parameters a postback is decided on: sent twice with different values, it is refused
# (which one was meant?), not read by its first value
PARAMETERS = frozenset(
    {"refid", "clickid", "orderamount", "ordernumber", "coupon", "currency", "geo"}
    | {"commissionid", "token", "sig", "ts"}
)
# the optional ones: a JSON `null` for one of these is as if it were left out (many
# serializers write `"coupon": null` for no coupon), not refused
OPTIONAL = frozenset({"coupon", "currency", "geo", "commissionid"})


def refid_name(params: Mapping[str, str]) -> str:
    """Which parameter holds the RefID: `refid`, or its alias `clickid` when `refid` is
    absent or blank and `clickid` is not."""
    if params.get("refid", "").strip() or not params.get("clickid", "").strip():
        return "refid"
    return "clickid"


# names other platforms give a field, looked for when it is missing (folded: lower case,
# no `_` or `-`), to say which name to use
_OTHER_NAMES = {
    "refid": ("clickid",),
    "orderamount": ("amount", "ordertotal", "total", "saleamount", "sale", "value", "price"),
    "ordernumber": ("orderid", "order", "transactionid", "txid", "tid", "orderno"),
    "token": ("apikey", "key", "secret", "postbacktoken"),
}


def fold(name: str) -> str:
    """A parameter's name as compared with the names read: in lower case, without `_`,
    `-` or spaces, nor a PHP array's brackets (`ordernumber[]`, `ordernumber[0]`)."""
    name = name.split("[", 1)[0]
    return name.lower().replace("_", "").replace("-", "").replace(" ", "").strip()


def token_like(name: str) -> bool:
    """A parameter that is, or may well be, the advertiser's token (`token`, `Token`,
    `api_key`, `auth_token`, `amp;token` from a URL written for HTML, …): hidden from
    read tokens wherever a postback's parameters are shown."""
    if name[:4].lower() == "amp;":
        name = name[4:]
    # a PHP array's name and its keys (`data[token]`) each
    parts = [name.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", name)]
    return any(fold(part).endswith(("token", "secret", "key")) for part in parts)


# a secret's name and value inside a text: in a JSON body read as a key or kept as an
# excerpt (`"token": "…"`, `\"token\": [\"…\"]` escaped in a string), a query written into
# a value (`token=…`, `token%3D…`); a value quoted is hidden to its closing quote
_SECRET_IN_TEXT = re.compile(
    r"""(?i)([A-Za-z0-9_\-]*(?:token|secret|key)\\?["']?\s*(?::|=|%3d)\s*(?:\[\s*)?)"""
    r"""(\\?"(?:[^"\\]|\\(?!"))*\\?"|'[^']*'|[^"'&\s,;}\]]+)"""
)


def scrub(text: str, hidden: str) -> str:
    """`text` with the value of every secret-like name in it (`token=…`, `"api_key": "…"`)
    replaced by `hidden`."""
    lowered = text.lower()
    if "oken" not in lowered and "ecret" not in lowered and "ey" not in lowered:
        return text
    return _SECRET_IN_TEXT.sub(lambda m: m.group(1) + hidden, text)


def sent_instead(params: Mapping[str, str], name: str) -> str:
    """What to add to the message of a `name` that is missing: where it was sent under a
    name written otherwise (`OrderAmount`, `order_number`, `Click-ID`) or under another
    platform's (`order_id`, `amount`), which is not read, that it was; else ''."""
    for sent in params:
        if sent in (name, "clickid"):
            continue
        if sent.lower().startswith("amp;") and (
            fold(sent[4:]) == name or (name == "refid" and fold(sent[4:]) == "clickid")
        ):
            return (
                f"; `{sent}` was sent: the URL was written for HTML (`&amp;` for `&`)."
                " Send a plain `&` between parameters"
            )
        folded = fold(sent)
        if folded == name or (name == "refid" and folded == "clickid"):
            why = " parameter names are lower case," if sent.lower() in (name, "clickid") else ""
            return f"; `{sent}` was sent, which is not read:{why} written exactly `{name}`"
        if folded in _OTHER_NAMES.get(name, ()):
            return (
                f"; `{sent}` was sent, which is not read: if it is the {name}, send it as `{name}`"
            )
    return ""


def _missing(params: Mapping[str, str], name: str, message: str) -> FieldError:
    return FieldError(name, "missing", message + sent_instead(params, name))


def placeholder(refid: str) -> bool:
    """Whether a RefID sent is a URL template's placeholder left unfilled (`{refid}`,
    `[clickid]`, `%refid%`, `REFID`), not a value."""
    return any(c in refid for c in "{}[]<>%$#") or fold(refid) in ("refid", "clickid")


def composed(ordernumber: str) -> str:
    """One order number however its characters are composed (`ü` as one character, or
    `u` and a combining diaeresis, as a macOS file name or some platforms send it): order
    numbers are compared, counted, stored and looked up in composed form (Unicode NFC);
    the ledger keeps what was sent."""
    return ordernumber if ordernumber.isascii() else unicodedata.normalize("NFC", ordernumber)


def parse_postback(params: Mapping[str, str]) -> PostbackInput | list[FieldError]:
    errors: list[FieldError] = []
    refid = _text(params, refid_name(params), errors, MAX_REFID)
    if not refid:
        errors.append(_missing(params, "refid", "`refid` is required: the RefID of the click"))

    ordernumber = _text(params, "ordernumber", errors)
    if not ordernumber:
        errors.append(
            _missing(params, "ordernumber", "`ordernumber` is required, unique per order")
        )
    elif (unseen := invisible(ordernumber)) is not None:
        errors.append(unseen)
    else:
        ordernumber = composed(ordernumber)

    amount_text = params.get("orderamount", "").strip()
    amount = money.parse_amount(amount_text)
    if not amount_text:
        errors.append(
            _missing(params, "orderamount", "`orderamount` is required (0 for a CPL lead)")
        )
    elif amount is None:
        errors.append(FieldError("orderamount", "invalid_amount", _amount_problem(amount_text)))

    currency: str | None = None
    currency_text = params.get("currency", "").strip()
    if currency_text:
        currency = money.normalize_currency(currency_text)
        if currency is None:
            errors.append(
                FieldError("currency", "invalid_currency", "`currency` must be an ISO 4217 code")
            )
    if currency and amount is not None:
        precision = check_precision(amount, currency)
        if precision is not None:
            errors.append(precision)

    geo: str | None = None
    geo_text = params.get("geo", "").strip()
    if geo_text:
        geo = geo_text.upper()
        if geo not in money.countries():
            errors.append(
                FieldError("geo", "invalid_geo", "`geo` must be an ISO 3166-1 alpha-2 code")
            )

    coupon = _text(params, "coupon", errors)
    commissionid = _text(params, "commissionid", errors)
    token = _text(params, "token", errors)
    if errors or amount is None:
        return errors
    return PostbackInput(refid, amount, ordernumber, coupon, currency, geo, commissionid, token)


def invisible(ordernumber: str) -> FieldError | None:
    """The error for an order number holding a character that is not seen (a byte-order
    mark, a zero-width space, a control character): `D-1` with one is another order, a
    second conversion for the same sale."""
    if ordernumber.isprintable():  # no such character (nor any other but a space)
        return None
    for c in ordernumber:
        if unicodedata.category(c) in ("Cf", "Cc"):
            name = unicodedata.name(c, "a control character")
            return FieldError(
                "ordernumber",
                "invalid_text",
                f"`ordernumber` holds U+{ord(c):04X} ({name}), a character that is not"
                " seen: the same order with and without it would count twice; send it"
                " without",
            )
    return None


def json_order_number(sent: str) -> FieldError | None:
    """The error for an `ordernumber` a JSON body sent as a number not written as a whole
    number (`777.0`, `7.77e2`): read as written, each would be another order than `777`."""
    if sent.lstrip("-").isdigit():
        return None
    return FieldError(
        "ordernumber",
        "invalid_json",
        f"`ordernumber` as a JSON number must be written as a whole number, not `{sent[:20]}`"
        " (`777.0` and `777` would be two orders): send order numbers as JSON strings",
    )


def not_a_value(name: str, sent: str) -> FieldError:
    """The error for a parameter a JSON body sent as neither a string nor a number
    (`true`, `null`, a list), `sent` its JSON text: for `orderamount` the amount's own
    `invalid_amount` (a boolean is no amount), else `invalid_json`."""
    if name == "orderamount":
        return FieldError(
            name,
            "invalid_amount",
            "`orderamount` must be a plain non-negative decimal such as 12.50, as a JSON"
            f" number or string, not `{sent[:20]}`",
        )
    return FieldError(
        name, "invalid_json", f"`{name}` must be a string or a number, not `{sent[:20]}`"
    )


def half_a_character(name: str, sent: str) -> FieldError:
    """The error for a parameter a JSON body sent as a string holding a lone UTF-16
    surrogate (`"SALE\\ud83d"`: an emoji cut in two), which is half of a character."""
    half = next(c for c in sent if "\ud800" <= c <= "\udfff")
    return FieldError(
        name,
        "invalid_text",
        f"`{name}` holds half of a character, the lone surrogate `\\u{ord(half):04x}` (an"
        " emoji or other character cut in two): send whole characters",
    )


def nul_in(name: str) -> FieldError:
    """The error for a parameter holding U+0000 (NUL, `%00`), which is no text: dropping it
    would make `A%001` the order `A1`, another one."""
    return FieldError(
        name,
        "invalid_text",
        f"`{name}` holds the character U+0000 (NUL, `%00`), which is no text: send it without",
    )


# the ledger's name for the body a GET was sent with (not read: a GET is its query)
GET_BODY = "(body of the GET)"
UNSUPPORTED_ENCODING = "unsupported_encoding"  # a compressed body: not read


def get_body_ignored(method: str, params: Mapping[str, str]) -> FieldError | None:
    """A GET sent with a body, which is not read, said so for a postback refused for
    want of its fields."""
    if method == "GET" and GET_BODY in params:
        return FieldError(
            "*",
            "get_body_ignored",
            "a GET's body is not read: send the fields in the query, or POST the body",
        )
    return None


def json_as_form(params: Mapping[str, str]) -> FieldError | None:
    """A JSON body sent without its content type is read as a form: its whole text one
    parameter's name. Said so, for a postback refused for want of its fields."""
    if any(name.lstrip().startswith(("{", "[")) for name in params):
        return FieldError(
            "*",
            "json_not_declared",
            "the body is JSON but was not sent as such: send it with"
            " `Content-Type: application/json`",
        )
    return None


def merge_errors(arrived: Sequence[FieldError], found: Sequence[FieldError]) -> list[FieldError]:
    """A refused postback's errors: those of how it arrived, then those found reading it,
    but none of the latter about a parameter refused already for what it was sent as
    (`"orderamount": true` is told once that it is no amount, not again as the text
    `true`; `"10\\udc00"` once that it holds half a character)."""
    sent_as = {e.field for e in arrived if e.field != "*" and e.code in _SENT_AS}
    if any(e.code == "too_many_fields" for e in arrived):
        # a parameter past the first MAX_FIELDS was sent, but not kept: not "missing"
        found = [e for e in found if e.code != "missing"]
    if not sent_as:
        return [*arrived, *found]
    return [*arrived, *(e for e in found if e.field not in sent_as)]


# the codes `not_a_value`, `half_a_character` and `nul_in` give, and `repeated` (the
# value kept is the first, blank maybe: the parameter was sent all the same)
_SENT_AS = frozenset({"invalid_amount", "invalid_json", "invalid_text", "repeated"})


def _too_precise(currency: str) -> FieldError:
    return FieldError(
        "orderamount",
        "invalid_amount",
        f"`orderamount` has more decimals than {currency} has ({money.exponent(currency)})",
    )


def check_precision(amount: Decimal, currency: str) -> FieldError | None:
    """The error for an amount finer than the currency's minor unit, else None."""
    return None if money.fits_currency(amount, currency) else _too_precise(currency)


def thousands_like(amount: Decimal, currency: str) -> bool:
    """Whether an amount counted as sent may have been written with a point between its
    thousands: three decimals, the last of them 0 (finer is refused), after a whole part
    of 1 to 999, in a currency of fewer decimals. `2.500` is 2.50 to a shop that keeps
    three decimals (a DECIMAL(10,3) column, `Decimal('100.0') * Decimal('0.85')`) and
    2,500 to one formatting with `number_format($x, 0, ',', '.')`."""
    return money.exponent(currency) < 3 and amount.as_tuple().exponent == -3 and 1 <= amount < 1000


def too_large(currency: str) -> FieldError:
    """An order whose amount, commission, or either in the base currency, is more than
    `money.MAX_MINOR` minor units."""
    return FieldError(
        "orderamount",
        "invalid_amount",
        f"`orderamount` is too large to store: it, its commission, or either in {currency}, is "
        f"over {money.MAX_MINOR:,} minor units",
    )


_EXPONENT = re.compile(r"\A[0-9]*\.?[0-9]+[eE][+-]?[0-9]+\Z")


def _is_currency(text: str) -> bool:
    """Whether what is left of an amount without its digits, dot and spaces names a
    currency: a sign such as `$` or `€`, or an ISO code such as `USD`."""
    if not text:
        return False
    if all(unicodedata.category(c) == "Sc" for c in text):
        return True
    return text.upper() in money.currencies()


def _amount_problem(text: str) -> str:
    """What is wrong with an `orderamount` that is not a plain non-negative decimal, said
    so that the advertiser's developer sees the fix."""
    long = money.plain_but_long(text)
    if long == "integer":
        return f"`orderamount` is too large to store: over {money.MAX_MINOR:,} minor units"
    if long == "decimals":
        return "`orderamount` has more decimals than any currency has (18 at the most)"
    plain = "`orderamount` must be a plain non-negative decimal such as 12.50"
    if text.startswith("-"):
        return f"{plain}: a refund is no negative order, reverse the conversion instead"
    if "," in text:
        return (
            f"{plain}, with a dot for the decimals and no thousands separators (not `{text[:20]}`)"
        )
    if _EXPONENT.match(text):
        return f"{plain}, its digits written out without an exponent (not `{text[:20]}`)"
    if _is_currency("".join(c for c in text if not (c.isdigit() or c in ". "))):
        return f"{plain}: the number alone, its currency in `currency`"
    if text.startswith("+") and money.parse_amount(text[1:]) is not None:
        return f"{plain}, without a sign"
    if " " in text and money.parse_amount(text.replace(" ", "")) is not None:
        return f"{plain}, without spaces"
    return plain
