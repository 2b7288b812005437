"""`clickback token create | list | revoke`: the admin API's tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from clickback.cli import DbOption, _run, _table, console, token_app
from clickback.domain import admin
from clickback.domain.timefmt import iso


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    role: Annotated[str, typer.Option(help="admin or read.")] = "admin",
    db: DbOption = None,
) -> None:
    """Create an API token; it is shown once, only its hash is stored. The token alone is
    printed to stdout (`TOKEN=$(clickback token create)`); its id and the reminder to
    store it go to stderr."""
    from clickback.web.http import hash_token

    if role not in ("admin", "read"):
        console.print("[red]error[/red]: --role is admin or read")
        raise typer.Exit(2)
    token = admin.new_token()
    token_id = _run(db, lambda s: s.create_token(name, hash_token(token), role))
    print(token)
    Console(stderr=True).print(
        f"token {token_id} ({role}, {name!r}) created: it is shown this once, store it now "
        f"(revoke it with `clickback token revoke {token_id}`)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@token_app.command("list")
def token_list(db: DbOption = None) -> None:
    """API tokens (never the tokens themselves: only their hashes are stored)."""
    rows = [
        {
            **t,
            "created_at": iso(t["created_at"]),
            "revoked_at": iso(t["revoked_at"]),
        }
        for t in _run(db, lambda s: s.list_tokens())
    ]
    _table(rows, ["id", "name", "role", "created_at", "revoked_at"])


@token_app.command("revoke")
def token_revoke(token_id: int, db: DbOption = None) -> None:
    """Revoke an API token: it is refused from then on."""
    if not _run(db, lambda s: s.revoke_token(token_id)):
        console.print(f"[red]error[/red]: no active token {token_id}")
        raise typer.Exit(2)
    console.print(f"token {token_id} revoked")
