"""API token roles, and what an affiliate token may see.

`admin` reads and writes, `read` reads everything. An `affiliate` token is the login a
network gives a publisher: tied to one affiliate, it reads that affiliate's clicks,
conversions, links and reports only, and never what the network earns from the
advertiser (`revenue`, `profit`). Shared by the admin API and the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clickback.domain.admin import _id as admin_id
from clickback.domain.ports import Store
from clickback.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError

ADMIN, READ, AFFILIATE = "admin", "read", "affiliate"
ROLES = (ADMIN, READ, AFFILIATE)
# report metrics that are the network's business, not its affiliates'
NETWORK_METRICS = frozenset({"revenue", "profit"})
# what of a row an affiliate token is not shown: who is behind the offer
NETWORK_FIELDS = frozenset({"advertiser_id"})
DENIED = "affiliate_token"  # the code of every refusal an affiliate token meets


async def token_terms(store: Store, values: Mapping[str, Any]) -> tuple[str, str, int | None]:
    """The name, role and affiliate of a new token, from loosely typed values; an
    affiliate token names an affiliate that exists, other roles none."""
    name, role = values.get("name") or "api", values.get("role") or READ
    if role not in ROLES:
        raise InputError(
            f"`role` is {', '.join(ROLES[:-1])} or {ROLES[-1]}", code="invalid_token", field="role"
        )
    if not isinstance(name, str) or len(name) > 200:
        raise InputError(
            "`name` is a text of at most 200 characters", code="invalid_token", field="name"
        )
    raw = values.get("affiliate_id")
    if role != AFFILIATE:
        if raw is not None:
            raise InputError(
                "`affiliate_id` is for a token of role affiliate only",
                code="affiliate_not_allowed",
                field="affiliate_id",
            )
        return name, role, None
    if raw is None:
        raise InputError(
            "a token of role affiliate needs `affiliate_id`: the affiliate whose traffic it reads",
            code="affiliate_required",
            field="affiliate_id",
        )
    affiliate_id = admin_id(values, "affiliate_id")
    affiliate = await store.get_row("affiliates", affiliate_id)
    if affiliate is None:
        raise NotFoundError(f"affiliate {affiliate_id} does not exist", field="affiliate_id")
    if affiliate["archived_at"] is not None:  # its token would be refused
        raise ConflictError(
            f"affiliate {affiliate_id} is archived: its tokens are refused",
            code="archived_affiliate",
            field="affiliate_id",
        )
    return name, role, affiliate_id


def denied(message: str) -> PermissionDeniedError:
    return PermissionDeniedError(message, code=DENIED)


def scoped(filters: Mapping[str, Any], affiliate_id: int | None) -> dict[str, Any]:
    """A list's exact-value filters as an affiliate token may ask them: its own affiliate
    always; another's is refused, and so is an advertiser (None: not an affiliate token,
    the filters as given)."""
    if affiliate_id is None:
        return dict(filters)
    if "advertiser_id" in filters:  # as in reports: it would name who is behind an offer
        raise denied("an affiliate token filters by offer, not by advertiser")
    asked = filters.get("affiliate_id")
    if asked is not None and asked != affiliate_id:
        raise denied("an affiliate token reads its own affiliate's rows only")
    return {**filters, "affiliate_id": affiliate_id}


def scoped_report(params: Mapping[str, list[str]], affiliate_id: int) -> dict[str, list[str]]:
    """A report's parameters as an affiliate token may ask them: its own affiliate alone,
    and no advertiser (networks keep who is behind an offer from their affiliates: the
    report would name it)."""
    grouped = {g.strip() for raw in params.get("group_by", []) for g in raw.split(",")}
    if "advertiser" in grouped or "advertiser" in params:
        raise denied("an affiliate token reports by offer, not by advertiser")
    asked = [v.strip() for raw in params.get("affiliate", []) for v in raw.split(",")]
    if any(v.isascii() and v.isdigit() and v.lstrip("0") != str(affiliate_id) for v in asked):
        raise denied("an affiliate token reports on its own affiliate only")
    if asked:  # its own id (what is not an id, the report refuses as it does for anyone)
        return dict(params)
    return {**params, "affiliate": [str(affiliate_id)]}
