"""`clickback token create | list | revoke`: the admin API's tokens, an affiliate's
included (`domain.tokens`: it reads that affiliate's own traffic, nothing else)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from clickback.cli import (
    CursorOption,
    DbOption,
    JsonOption,
    LimitOption,
    _list,
    _run,
    console,
    token_app,
)
from clickback.domain import admin
from clickback.domain.ports import Store
from clickback.domain.tokens import AFFILIATE, ROLES, token_terms


def _refuse(code: str, message: str) -> typer.Exit:
    console.print(f"[red]error[/red] ({code}): {escape(message)}", soft_wrap=True)
    return typer.Exit(2)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    role: Annotated[str, typer.Option(help="admin, read or affiliate.")] = "admin",
    affiliate: Annotated[
        int | None,
        typer.Option(help="With --role affiliate: the affiliate whose own traffic it reads."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Create an API token; it is shown once, only its hash is stored. The token alone is
    printed to stdout (`TOKEN=$(clickback token create)`); its id and the reminder to
    store it go to stderr. An affiliate token (`--role affiliate --affiliate ID`) reads
    that affiliate's clicks, conversions, links, deliveries and reports, without revenue or
    profit."""
    from clickback.web.http import hash_token

    if role not in ROLES:
        raise _refuse("invalid_token", "--role is admin, read or affiliate")
    if role == AFFILIATE and affiliate is None:
        raise _refuse(
            "affiliate_required",
            "--role affiliate needs --affiliate ID: the affiliate whose traffic it reads",
        )
    if role != AFFILIATE and affiliate is not None:
        raise _refuse(
            "affiliate_not_allowed",
            f"--affiliate goes with --role affiliate (not {role}): add --role affiliate",
        )
    token = admin.new_token()

    async def work(store: Store) -> tuple[int, int | None]:
        values = {"name": name, "role": role, "affiliate_id": affiliate}
        _, _, affiliate_id = await token_terms(store, values)
        return await store.create_token(name, hash_token(token), role, affiliate_id), affiliate_id

    token_id, affiliate_id = _run(db, work)
    print(token)
    what = role if affiliate_id is None else f"affiliate {affiliate_id}'s"
    Console(stderr=True).print(
        f"token {token_id} ({what}, {name!r}) created: it is shown this once, store it now "
        f"(revoke it with `clickback token revoke {token_id}`)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@token_app.command("list")
def token_list(
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """API tokens, newest first (never the tokens themselves: only their hashes are
    stored); an affiliate token with its affiliate."""
    _list(
        db,
        "api_tokens",
        ["id", "name", "role", "affiliate", "created_at", "revoked_at"],
        limit,
        as_json=as_json,
        cursor=cursor,
        shown=lambda t: {**t, "affiliate": t["affiliate_id"]},
    )


@token_app.command("revoke")
def token_revoke(token_id: int, db: DbOption = None) -> None:
    """Revoke an API token: it is refused from then on."""
    if not _run(db, lambda s: s.revoke_token(token_id)):
        console.print(f"[red]error[/red]: no active token {token_id}")
        raise typer.Exit(2)
    console.print(f"token {token_id} revoked")
