"""The OpenAPI 3.1 document of the admin API and a browsable docs page, both public.

Built from the same `Endpoint` records that route requests, plus the schemas below, so
the document cannot list an endpoint the server lacks (a property-based test fires
generated requests at it and checks every answer against it).
"""

from __future__ import annotations

import html
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from clickback import __version__
from clickback.domain.listing import DEFAULT_LIMIT, LISTS, MAX_LIMIT
from clickback.web.http import ARCHIVABLE, FLAGGED, SORTS, Endpoint
from clickback.web.present import json_response

_T: dict[str, dict[str, Any]] = {
    "s": {"type": "string"},
    "i": {"type": "integer"},
    "b": {"type": "boolean"},
    "s?": {"type": ["string", "null"]},
    "i?": {"type": ["integer", "null"]},
    "o": {"type": "object"},
    "a": {"type": "array"},
}


def obj(fields: str, required: bool = True, **extra: Any) -> dict[str, Any]:
    """`"id:i name:s note:s?"` -> an object schema (all fields required unless told)."""
    props: dict[str, Any] = {}
    for spec in fields.split():
        name, kind = spec.split(":")
        props[name] = dict(_T[kind])
    props.update(extra)
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(props)
    return out


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def page_of(name: str) -> dict[str, Any]:
    return obj("next_cursor:s?", items={"type": "array", "items": ref(name)})


SUBS = " ".join(f"sub{i}:s" for i in range(1, 6))
ERROR = obj("status:s", errors={"type": "array", "items": obj("field:s? code:s message:s")})
STATUS_RESULT = obj("status:s reasons:a")
SCHEMAS: dict[str, Any] = {
    "Error": ERROR,
    "Advertiser": obj(
        "id:i name:s postback_token:s require_token:b ip_allowlist:s signing_secret:s "
        "require_signature:b created_at:s updated_at:s archived_at:s?"
    ),
    "AdvertiserCreate": obj("name:s postback_token:s require_token:b", required=False)
    | {"required": ["name"]},
    "AdvertiserUpdate": obj(
        "name:s postback_token:s require_token:b ip_allowlist:s "
        "signing_secret:s require_signature:b",
        required=False,
    ),
    "Offer": obj(
        "id:i advertiser_id:i name:s destination_url:s fallback_url:s refid_param:s payout_type:s "
        "payout_amount:s payout_percent:s revenue_type:s revenue_amount:s revenue_percent:s "
        "currency:s attribution_window_days:i "
        "status:s approval:s fraud_rules:o daily_cap:i? auto_approve_days:i? cap_redirect:b "
        "created_at:s updated_at:s archived_at:s?"
    ),
    "OfferCreate": obj(
        "advertiser_id:i name:s destination_url:s fallback_url:s? refid_param:s payout_type:s "
        "payout_amount:s payout_percent:s revenue_type:s revenue_amount:s revenue_percent:s "
        "currency:s attribution_window_days:i status:s approval:s fraud_rules:o daily_cap:i? "
        "auto_approve_days:i? cap_redirect:b",
        required=False,
    )
    | {"required": ["advertiser_id", "name", "destination_url"]},
    "OfferUpdate": obj(
        "name:s destination_url:s fallback_url:s? refid_param:s payout_type:s payout_amount:s "
        "payout_percent:s revenue_type:s revenue_amount:s revenue_percent:s currency:s "
        "attribution_window_days:i status:s approval:s fraud_rules:o daily_cap:i? "
        "auto_approve_days:i? cap_redirect:b",
        required=False,
    ),
    "Affiliate": obj(
        "id:i name:s postback_url:s postback_method:s postback_secret:s "
        "postback_events:a postback_enabled:b postback_disabled_at:s? "
        "postback_failures:i created_at:s updated_at:s archived_at:s?"
    ),
    "AffiliateCreate": obj(
        "name:s postback_url:s postback_method:s postback_secret:s postback_events:a",
        required=False,
    )
    | {"required": ["name"]},
    "AffiliateUpdate": obj(
        "name:s postback_url:s postback_method:s postback_secret:s "
        "postback_events:a postback_enabled:b",
        required=False,
    ),
    "OfferPostbackSet": obj("postback_url:s postback_method:s postback_events:a", required=False)
    | {"required": ["postback_url"]},
    "OfferPostback": obj(
        "offer_id:i affiliate_id:i postback_url:s postback_method:s postback_events:a "
        "created_at:s updated_at:s"
    ),
    "AffiliateCapSet": obj("daily_cap:i"),
    "AffiliateCap": obj("offer_id:i affiliate_id:i daily_cap:i created_at:s updated_at:s"),
    "Delivery": obj(
        "id:i conversion_id:i affiliate_id:i offer_id:i event:s state:s "
        "attempt_count:i next_attempt_at:s? last_status:i? last_error:s "
        "created_at:s updated_at:s"
    ),
    "Link": obj(
        "id:i code:s offer_id:i affiliate_id:i active:b is_test:b tracking_url:s "
        "created_at:s archived_at:s?"
    ),
    "LinkCreate": obj("offer_id:i affiliate_id:i"),
    "LinkUpdate": obj("active:b", required=False),
    "Click": obj(
        f"refid:s link_id:i offer_id:i affiliate_id:i {SUBS} ip:s user_agent:s "
        "referer:s is_test:b created_at:s"
    ),
    "Conversion": obj(
        f"id:i refid:s click_id:s? offer_id:i affiliate_id:i advertiser_id:i "
        f"link_id:i {SUBS} ordernumber:s orderamount:s currency:s commission:s "
        "commission_currency:s coupon:s geo:s? commissionid:s rule:s status:s "
        "is_test:b click_missing:b flags:a base_currency:s rate:s? "
        "base_amount:s? base_commission:s? revenue_terms:s? created_at:s clicked_at:s "
        "updated_at:s? recorded_at:s?"
    ),
    "Postback": obj(
        "id:i received_at:s method:s ip:s params:o refid:s ordernumber:s "
        "advertiser_id:i? outcome:s http_status:i errors:a code:s? conversion_id:i? "
        "link_id:i? is_test:b replay_of:i?"
    ),
    "IntegrationTestStart": obj("affiliate_id:i simulate:b", required=False),
    "IntegrationTest": obj(
        "id:i offer_id:i affiliate_id:i link_id:i refid:s tracking_url:s "
        "postback_url:s signature_required:b started_at:s created_at:s",
        click_test=STATUS_RESULT,
        conversion_test=obj("status:s reasons:a postback_ids:a"),
    ),
    "PostbackUrl": obj(
        "offer_id:i postback_url:s methods:a required:a optional:a signature_required:b "
        "instructions:s"
    ),
    "Replay": obj("replayed:i answer:o", postback={"$ref": "#/components/schemas/Postback"}),
    "StatusChange": obj("status:s reason:s"),
    "BulkStatus": obj("changed:i unchanged:i errors:i lines:a"),
    "Totals": obj("base_currency:s by_status:o payable:s"),
    "RuleCreate": obj(
        "commissionid:s affiliate_id:i payout_type:s payout_amount:s payout_percent:s",
        required=False,
    )
    | {"required": ["payout_type"]},
    "Rule": obj(
        "id:i offer_id:i affiliate_id:i? commissionid:s payout_type:s payout_amount:s "
        "payout_percent:s currency:s created_at:s archived_at:s?"
    ),
    "RatesImported": obj(
        "stored:i valued:i waiting:i too_large:a replaced:a kept_earlier_rate:a note:s?"
    ),
    "RateList": obj(
        "base_currency:s next_cursor:s?",
        items={"type": "array", "items": obj("currency:s date:s rate:s")},
    ),
    "TokenCreate": obj("name:s role:s affiliate_id:i?", required=False),
    "TokenCreated": obj("id:i name:s role:s affiliate_id:i? token:s"),
    "Token": obj("id:i name:s role:s affiliate_id:i? created_at:s revoked_at:s?"),
    "Report": obj(
        "group_by:a from:s to:s tz:s by:s base_currency:s notes:a complete_until:s total_rows:i",
        rows={"type": "array", "items": {"type": "object"}},
        totals={"type": "object"},
    ),
}
SCHEMAS["DeliveryDetail"] = {
    "allOf": [
        ref("Delivery"),
        obj(
            "",
            attempts={
                "type": "array",
                "items": obj(
                    "at:s method:s url:s status_code:i? response_excerpt:s latency_ms:i error:s"
                ),
            },
        ),
    ]
}
SCHEMAS["AffiliateDetail"] = {
    "allOf": [
        ref("Affiliate"),
        obj("", postback_overrides={"type": "array", "items": ref("OfferPostback")}),
    ]
}
SCHEMAS["ConversionDetail"] = {
    "allOf": [
        ref("Conversion"),
        obj("", history={"type": "array", "items": obj("from:s to:s reason:s actor:s at:s")}),
    ]
}
for _name in (
    "Advertiser",
    "Offer",
    "Affiliate",
    "Link",
    "Click",
    "Conversion",
    "Postback",
    "IntegrationTest",
    "Rule",
    "Token",
    "Delivery",
    "OfferPostback",
    "AffiliateCap",
):
    SCHEMAS[f"{_name}List"] = page_of(_name)

_ERROR_TEXT = {
    400: "Bad input: every problem is listed",
    401: "No or bad token",
    403: "The token may only read, or is an affiliate token and this is not its own",
    404: "No such object",
    409: "Not allowed from the object's current state",
}


def body_fields(endpoints: list[Endpoint]) -> dict[str, frozenset[str]]:
    """The fields each JSON request body takes, by schema name: what `http` lets in, so
    the document and the server agree (every `...Create` with its `...Update` too)."""
    names = {ep.body for ep in endpoints if ep.body and ep.body != "csv"}
    names |= {n.removesuffix("Create") + "Update" for n in names if n.endswith("Create")}
    return {n: frozenset(SCHEMAS[n]["properties"]) for n in names if n in SCHEMAS}


def _param(name: str, where: str, schema: dict[str, Any], text: str = "") -> dict[str, Any]:
    out = {"name": name, "in": where, "schema": schema, "required": where == "path"}
    if text:
        out["description"] = text
    return out


def _paging_params() -> list[dict[str, Any]]:
    return [
        _param(
            "limit",
            "query",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            f"page size, default {DEFAULT_LIMIT}",
        ),
        _param("cursor", "query", {"type": "string"}, "next_cursor of the previous page"),
    ]


def _list_params(table: str, totals: bool = False) -> list[dict[str, Any]]:
    spec = LISTS[table]
    params = [
        *_paging_params(),
        _param("since", "query", {"type": "string", "format": "date-time"}, "ISO 8601, UTC"),
        _param("until", "query", {"type": "string", "format": "date-time"}, "ISO 8601, UTC"),
        _param("sort", "query", {"type": "string", "enum": sorted(SORTS)}, "default newest first"),
    ]
    if table in ARCHIVABLE:
        params.append(_param("archived", "query", {"type": "string", "enum": ["true", "false"]}))
    if table in FLAGGED and not totals:
        params.append(_param("flag", "query", {"type": "string"}, "rows carrying this flag"))
    for name, kind in spec.filters.items():
        schema: dict[str, Any] = {"type": "integer"} if kind is int else {"type": "string"}
        if isinstance(kind, tuple):
            schema["enum"] = list(kind)
        if name.startswith("is_"):
            schema = {"type": "string", "enum": ["true", "false"]}
        params.append(_param(name, "query", schema, "exact value"))
    return params


def _operation(ep: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": ep.method.lower()
        + re.sub(r"[{}]", "", ep.path.replace("/", "_").replace("-", "_")),
        "tags": list(ep.tags),
        "security": [{"bearer": []}],
    }
    if ep.affiliate:
        op["description"] = (
            "An affiliate token may call this: it answers for the token's own affiliate only"
            + (" and leaves out revenue and profit." if "/reports" in ep.path else ".")
        )
        op["x-affiliate-token"] = True
    params = []
    if "{id}" in ep.path:
        kind = {"type": "string"} if ep.path.startswith("/api/v1/clicks/") else {"type": "integer"}
        params.append(_param("id", "path", kind))
    if "{affiliate_id}" in ep.path:
        params.append(_param("affiliate_id", "path", {"type": "integer"}))
    if ep.listing and ep.produces != "text/csv" and not ep.path.endswith("/totals"):
        params += _list_params(ep.listing)
    elif ep.listing:
        totals = ep.path.endswith("/totals")
        params += [
            p for p in _list_params(ep.listing, totals) if p["name"] not in ("limit", "cursor")
        ]
        if ep.produces == "text/csv":
            params.append(
                _param(
                    "limit",
                    "query",
                    {"type": "integer", "minimum": 1, "maximum": 10**18 - 1},
                    "the most rows written; default every matching row",
                )
            )
        if ep.path.endswith("/totals"):
            params = [p for p in params if p["name"] not in ("sort", "archived")]
    paging = {p["name"]: p for p in _paging_params()}
    params += [paging.get(name) or _param(name, "query", {"type": "string"}) for name in ep.query]
    op["parameters"] = params
    if ep.body == "csv":
        op["requestBody"] = {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    elif ep.body:
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": ref(ep.body)}},
        }
    responses: dict[str, Any] = {}
    if ep.status == 204:
        responses["204"] = {"description": "Done"}
    elif ep.produces == "text/csv":
        responses[str(ep.status)] = {
            "description": "CSV, streamed",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    else:
        schema = ref(ep.response) if ep.response else {"type": "object"}
        responses[str(ep.status)] = {
            "description": "OK",
            "content": {"application/json": {"schema": schema}},
        }
    codes = {*ep.errors, 401, 403, 404} | ({400} if ep.listing or ep.body else set())
    if ep.body or ep.listing:
        codes.add(400)
    for code in sorted(codes):
        responses[str(code)] = {
            "description": _ERROR_TEXT[code],
            "content": {"application/json": {"schema": ref("Error")}},
        }
    op["responses"] = responses
    return op


def document(endpoints: list[Endpoint]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for ep in endpoints:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep)
    # a request body with another field is a 400 unknown_field
    bodies = body_fields(endpoints)
    schemas = {
        name: {**schema, "additionalProperties": False} if name in bodies else schema
        for name, schema in SCHEMAS.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clickback admin API",
            "version": __version__,
            "description": "Every call needs `Authorization: Bearer <token>` (`clickback "
            "token create`). A token's role is `admin` (read and write), `read` (read "
            "everything) or `affiliate` (one affiliate's own view: the operations marked "
            "`x-affiliate-token` only, always filtered to its affiliate; reports without "
            "revenue and profit; anything else is a 403 `affiliate_token`). Lists answer "
            "`{items, next_cursor}`, newest first. Money travels as decimal strings, times "
            "as ISO 8601 UTC.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def docs_page(doc: dict[str, Any]) -> str:
    """A self-contained page: every operation with its parameters and bodies."""
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = ", ".join(p["name"] for p in op["parameters"] if p["in"] == "query")
            body: dict[str, Any] = op.get("requestBody", {}).get("content", {})
            first: dict[str, Any] = next(iter(body.values()), {})
            body_ref = str(first.get("schema", {}).get("$ref", ""))
            body_text = body_ref.rsplit("/", 1)[-1] if body_ref else ("CSV" if body else "")
            ok = ", ".join(c for c in op["responses"] if c < "400")
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}"
                f"</code></td><td>{html.escape(op['summary'])}</td><td>{html.escape(body_text)}"
                f"</td><td><small>{html.escape(params)}</small></td><td>{ok}</td></tr>"
            )
    schemas = []
    for name, schema in doc["components"]["schemas"].items():
        props = schema.get("properties", {})
        fields = ", ".join(f"{k}" for k in props) or html.escape(str(schema))
        schemas.append(f"<tr><td id='{name}'><code>{name}</code></td><td>{fields}</td></tr>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>clickback API</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;"
        "padding:4px 8px;text-align:left;vertical-align:top}code{white-space:nowrap}</style>"
        f"</head><body><h1>clickback admin API {html.escape(doc['info']['version'])}</h1>"
        f"<p>{html.escape(doc['info']['description'])}</p>"
        "<p>Machine-readable: <a href='/api/v1/openapi.json'>/api/v1/openapi.json</a></p>"
        "<table><tr><th>method</th><th>path</th><th>what</th><th>body</th>"
        f"<th>query</th><th>answers</th></tr>{''.join(rows)}</table>"
        f"<h2>Schemas</h2><table>{''.join(schemas)}</table></body></html>"
    )


def routes(endpoints: list[Endpoint]) -> list[Route]:
    doc = document(endpoints)
    page = docs_page(doc)

    async def openapi_json(request: Request) -> Response:
        return json_response(doc)

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    return [Route("/api/v1/openapi.json", openapi_json), Route("/api/v1/docs", docs)]
