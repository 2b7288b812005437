"""What every admin endpoint shares: the Endpoint record (which also feeds the OpenAPI
document), bearer-token authorization, JSON bodies, path ids and the list contract."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clickback.domain.attribution import MISSING_RATE, THOUSANDS_LIKE, UNKNOWN_COMMISSIONID
from clickback.domain.fraud import REPORTED
from clickback.domain.listing import DEFAULT_LIMIT, LISTS, MAX_LIMIT, text_filter
from clickback.domain.models import OfferStatus
from clickback.domain.postback import scrub, token_like
from clickback.domain.tokens import ADMIN, AFFILIATE, NETWORK_FIELDS, denied
from clickback.errors import AuthError, InputError, NotFoundError, PermissionDeniedError
from clickback.web.present import parse_time

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp

ARCHIVABLE = frozenset({"advertisers", "offers", "affiliates", "links", "commission_rules"})
FLAGGED = frozenset({"clicks", "conversions"})
SORTS = {"id", "-id", "created_at", "-created_at", "received_at", "-received_at"}


@dataclass(frozen=True, slots=True)
class Caller:
    actor: str  # recorded on what the caller changes: "token:<id>:<name>" or "admin_token"
    role: str  # admin | read | affiliate
    affiliate_id: int | None = None  # an affiliate token's affiliate: all it may read


Handler = Callable[[Request, Caller], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    write: bool = False  # needs the admin role
    affiliate: bool = False  # an affiliate token may call it (on its own rows alone)
    body: str | None = None  # schema name of the JSON (or "csv") request body
    response: str | None = None  # schema name of the success body
    status: int = 200
    listing: str | None = None  # the table whose list contract applies
    query: tuple[str, ...] = ()  # other query parameters (strings)
    produces: str = "application/json"
    errors: tuple[int, ...] = (400, 404)
    tags: tuple[str, ...] = field(default_factory=tuple)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def base_url(app: ClickbackApp, request: Request) -> str:
    return app.settings.public_url or str(request.base_url).rstrip("/")


async def authorize(app: ClickbackApp, request: Request, ep: Endpoint) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("send `Authorization: Bearer <token>`", code="token_missing")
    configured = app.settings.admin_token
    if configured and hmac.compare_digest(token.encode(), configured.encode()):
        return Caller("admin_token", "admin")
    row = await app.store.find_token(hash_token(token))
    if row is None:
        raise AuthError("this token is not valid (unknown or revoked)", code="token_invalid")
    if row["role"] == AFFILIATE and not ep.affiliate:
        raise denied(
            "an affiliate token reads its own clicks, conversions, links, deliveries and"
            " reports only"
        )
    if ep.write and row["role"] != ADMIN:
        raise PermissionDeniedError("this token may only read", code="read_only_token")
    affiliate_id = row["affiliate_id"] if row["role"] == AFFILIATE else None
    if row["role"] == AFFILIATE and affiliate_id is None:  # never unscoped: fail closed
        raise AuthError("this token is not valid (no affiliate)", code="token_invalid")
    if row["role"] == AFFILIATE and row["affiliate_archived_at"] is not None:
        raise AuthError("this token is not valid (its affiliate is archived)", code="token_invalid")
    return Caller(f"token:{row['id']}:{row['name']}", row["role"], affiliate_id)


def _nul() -> InputError:
    return InputError("text may not hold the character U+0000", code="invalid_text")


def refuse_nul_query(request: Request) -> None:
    """A 400 for a query holding U+0000 (`%00`), which PostgreSQL's text cannot hold:
    one answer on both engines, for a filter of the API's or of the dashboard's."""
    if "%00" in request.url.query or "\x00" in request.url.query:
        raise _nul()


async def read_json(request: Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise InputError("the body must be a JSON object", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InputError("the body must be a JSON object", code="invalid_json")
    if _holds_nul(data):
        raise _nul()
    return data


def _holds_nul(value: Any) -> bool:
    """Whether a JSON value's text (its strings, its names) holds U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


_INT = re.compile(r"-?[0-9]{1,18}")


def int_param(request: Request, name: str = "id") -> int:
    raw = request.path_params[name]
    if not _INT.fullmatch(raw) or raw.startswith("-"):
        raise NotFoundError(f"{raw!r} is not an id")
    return int(raw)


def whole_list(request: Request, holds: str) -> None:
    """Refuses filters on a list that is always given whole (`holds`: what it holds)."""
    if request.query_params:
        raise InputError(
            f"this list takes no filters: it holds {holds}",
            code="unknown_filter",
            field=next(iter(request.query_params)),
        )


@dataclass(frozen=True, slots=True)
class ListQuery:
    filters: dict[str, Any]
    since: int | None
    until: int | None
    limit: int
    cursor: str | None
    nulls: dict[str, bool]
    ascending: bool
    flag: str | None = None


def redact(item: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """Secrets that would let a reader forge postbacks are for admin tokens only: an
    object's own, the `token` a ledger row's postback was sent with, and the password
    in an outbound postback URL's credentials (an override's, an attempt's too); an
    affiliate token is not shown a row's advertiser either. A secret that is set reads
    `(hidden)`, one that is not `""`: a blank for both read as "unsigned"."""
    if caller.role == "admin":
        return item
    out = {k: (HIDDEN if k in SECRETS and v else v) for k, v in item.items()}
    for key, value in out.items():
        if key in URLS and isinstance(value, str):
            out[key] = hide_password(value)
        elif key in NESTED and isinstance(value, list):
            out[key] = [redact(v, caller) if isinstance(v, dict) else v for v in value]
    if caller.affiliate_id is not None:  # nor who is behind an offer, to an affiliate
        out = {k: v for k, v in out.items() if k not in NETWORK_FIELDS}
    params = out.get("params")
    if isinstance(params, dict):
        # said to be there, so that it is not read as a postback sent without one; one
        # sent under another name (`api_key`) hidden too; and one written into a text
        # anywhere in the row: a JSON body read as a form (the whole body is a name), an
        # excerpt of a body that is no JSON, a query after a RefID (and the error that
        # quotes it)
        out = {k: _scrubbed(v) for k, v in out.items() if k != "params"}
        out["params"] = {
            scrub(k, HIDDEN): HIDDEN if v and token_like(k) else _scrubbed(v)
            for k, v in params.items()
        }
    return out


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value, HIDDEN)
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    return value


SECRETS = frozenset({"postback_token", "signing_secret", "postback_secret"})
URLS = frozenset({"postback_url", "url"})  # outbound: their credentials go as Basic auth
NESTED = frozenset({"postback_overrides", "attempts"})


def hide_password(url: str) -> str:
    """`https://user:***@aff.example/pb`: the URL with the password of its credentials
    hidden (the user name kept, to tell which account is used)."""
    scheme, sep, rest = url.partition("://")
    netloc_end = len(rest)
    for c in "/?#":
        if (i := rest.find(c)) != -1:
            netloc_end = min(netloc_end, i)
    userinfo, at, host = rest[:netloc_end].rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (sep and at and colon and password):
        return url
    return f"{scheme}{sep}{user}:{HIDDEN_PASSWORD}@{host}{rest[netloc_end:]}"


HIDDEN = "(hidden)"  # a ledger row's token, to a read token
HIDDEN_PASSWORD = "***"


# what a click or conversion may be flagged with: a name mistyped (`over_cpa`) found
# nothing, and was read as "none are flagged so"
KNOWN_FLAGS = frozenset((*REPORTED, MISSING_RATE, UNKNOWN_COMMISSIONID, THOUSANDS_LIKE))


def _flag(name: str, value: str) -> bool:
    if value not in ("true", "false"):
        raise InputError(f"`{name}` must be true or false", code="invalid_filter", field=name)
    return value == "true"


def _limit(value: str) -> int:
    if not _INT.fullmatch(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise InputError(f"`limit` must be 1 to {MAX_LIMIT}", code="invalid_limit", field="limit")
    return int(value)


def keyed_list_query(
    what: str, params: QueryParams, filters: tuple[str, ...]
) -> tuple[dict[str, str], int, str | None]:
    """The list contract of a list kept by another key than an id or a time (the exchange
    rates, by currency and day): `limit` and `cursor` as every list's, exact-value
    `filters`; anything else is a 400. Returns (filters, limit, cursor)."""
    found: dict[str, str] = {}
    limit, cursor = DEFAULT_LIMIT, None
    for name, value in params.multi_items():
        if name == "limit":
            limit = _limit(value)
        elif name == "cursor":
            cursor = value or None
        elif name in filters:
            found[name] = value
        else:
            known = ", ".join(sorted({*filters, "limit", "cursor"}))
            raise InputError(
                f"unknown filter `{name}`; {what} take: {known}",
                code="unknown_filter",
                field=name,
            )
    return found, limit, cursor


def list_query(table: str, params: QueryParams, extra: frozenset[str] = frozenset()) -> ListQuery:
    """The list contract: `limit`, `cursor`, `since`/`until`, `sort`, exact-value filters
    (and `archived` where objects archive); anything else is a 400."""
    spec = LISTS[table]
    q: dict[str, Any] = {
        "filters": {},
        "since": None,
        "until": None,
        "limit": DEFAULT_LIMIT,
        "cursor": None,
        "nulls": {},
        "ascending": False,
    }
    for name, value in params.multi_items():
        if name in extra:
            continue
        if name == "limit":
            q["limit"] = _limit(value)
        elif name == "cursor":
            q["cursor"] = value or None
        elif name in ("since", "until"):
            q[name] = parse_time(value, name)
        elif name == "sort":
            if value not in SORTS:
                raise InputError(
                    f"`sort` must be one of {', '.join(sorted(SORTS))}",
                    code="invalid_sort",
                    field="sort",
                )
            q["ascending"] = not value.startswith("-")
        elif name == "flag" and table in FLAGGED:
            if value not in KNOWN_FLAGS:  # nor `%`, which would match every row (SQL LIKE)
                raise InputError(
                    f"`flag` is one of {', '.join(sorted(KNOWN_FLAGS))}",
                    code="invalid_filter",
                    field="flag",
                )
            q["flag"] = value
        elif name == "archived" and table in ARCHIVABLE:
            _archived(q["nulls"], _flag(name, value), name)
        elif name == "status" and table == "offers":
            # an offer reads `archived` once archived, whatever status it was left with
            status = text_filter(table, name, value)
            _archived(q["nulls"], status == OfferStatus.ARCHIVED, name)
            if status != OfferStatus.ARCHIVED:
                q["filters"][name] = status
        elif name in spec.filters:
            if spec.filters[name] is int:
                if name.startswith("is_"):  # a flag: true/false (or 1/0)
                    value = {"true": "1", "false": "0"}.get(value, value)
                    if value not in ("0", "1"):
                        raise InputError(
                            f"`{name}` must be true or false", code="invalid_filter", field=name
                        )
                if not _INT.fullmatch(value):
                    raise InputError(
                        f"`{name}` must be an integer", code="invalid_filter", field=name
                    )
                q["filters"][name] = int(value)
            else:
                q["filters"][name] = text_filter(table, name, value)
        else:
            known = sorted(
                {*spec.filters, "limit", "cursor", "since", "until", "sort", *extra}
                | ({"flag"} if table in FLAGGED else set())
            )
            raise InputError(
                f"unknown filter `{name}`; {table} take: {', '.join(known)}",
                code="unknown_filter",
                field=name,
            )
    return ListQuery(**q)


def _archived(nulls: dict[str, bool], archived: bool, name: str) -> None:
    """Lists archived rows only (or only those not archived), refused when another
    filter (`archived`, an offer's `status`) asked for the other."""
    if nulls.get("archived_at", not archived) == archived:
        raise InputError(
            f"`{name}` contradicts another filter of the list (an offer's `status=archived`"
            " lists archived offers, as `archived=true` does; `status=active` or `paused`"
            " those not archived)",
            code="invalid_filter",
            field=name,
        )
    nulls["archived_at"] = not archived


async def refuse_unknown_fields(
    request: Request, ep: Endpoint, bodies: Mapping[str, frozenset[str]]
) -> None:
    """A write's JSON body may hold only the fields its schema names (none when it has
    no body): a misspelt or misplaced field is a 400, never silently ignored."""
    takes = bodies.get(ep.body or "", frozenset())
    if not (await request.body()).strip():  # no body (a POST of nothing, or a newline)
        return
    unknown = sorted(set(await read_json(request)) - takes)
    if not unknown:
        return
    name = unknown[0]
    where = f"{ep.method} {ep.path}"
    message = (
        f"unknown field `{name}`; {where} takes: {', '.join(sorted(takes))}"
        if takes
        else f"unknown field `{name}`; {where} takes no body"
    )
    update = (ep.body or "").removesuffix("Create") + "Update"
    if ep.body and ep.body.endswith("Create") and name in bodies.get(update, frozenset()):
        message += f" (`{name}` is set with PATCH {ep.path}/{{id}} once created)"
    create = (ep.body or "").removesuffix("Update") + "Create"
    if ep.body and ep.body.endswith("Update") and name in bodies.get(create, frozenset()):
        message += f" (`{name}` is given at creation and cannot be changed)"
    if len(unknown) > 1:
        message += f"; also unknown: {', '.join(unknown[1:])}"
    raise InputError(message, code="unknown_field", field=name)


def build_routes(
    app: ClickbackApp,
    endpoints: list[Endpoint],
    bodies: Mapping[str, frozenset[str]] | None = None,
) -> list[Route]:
    """Starlette routes: one per path, dispatching on method, each call authorized.
    `bodies` names the fields of each JSON request body schema; a write whose body holds
    another is refused (`refuse_unknown_fields`)."""
    fields = bodies or {}
    by_path: dict[str, dict[str, Endpoint]] = {}
    for ep in endpoints:
        by_path.setdefault(ep.path, {})[ep.method] = ep
    routes = []
    # literal paths first: /clicks/export must not be read as the click "export"
    for path, methods in sorted(by_path.items(), key=lambda item: item[0].count("{")):

        async def dispatch(request: Request, methods: dict[str, Endpoint] = methods) -> Response:
            ep = methods.get(request.method) or (
                methods.get("GET") if request.method == "HEAD" else None
            )
            if ep is None:
                raise InputError(
                    f"{request.method} is not allowed here; use {', '.join(methods)}",
                    code="method_not_allowed",
                )
            caller = await authorize(app, request, ep)
            refuse_nul_query(request)
            if ep.write and ep.body != "csv":
                await refuse_unknown_fields(request, ep, fields)
            return await ep.handler(request, caller)

        verbs = [*methods, "HEAD"] if "GET" in methods else list(methods)
        routes.append(Route(path, dispatch, methods=verbs))
    return routes
