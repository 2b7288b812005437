"""The `clickback` command: serve, migrate, set up, inspect.

Setup commands go through the same validation as the admin API (`domain.admin`), and
bump the shared config version, so a running server sees the change within a second.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TextIO, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from clickback.config import Settings
from clickback.domain import admin, fx, rules
from clickback.domain.catalog import Catalog
from clickback.domain.ports import Store
from clickback.errors import ClickbackError, ConfigError, InputError
from clickback.storage import open_store
from clickback.web import present

app = typer.Typer(no_args_is_help=True, help="clickback: self-hosted S2S conversion tracking.")
advertiser_app = typer.Typer(no_args_is_help=True, help="Advertisers.")
offer_app = typer.Typer(no_args_is_help=True, help="Offers.")
affiliate_app = typer.Typer(no_args_is_help=True, help="Affiliates.")
link_app = typer.Typer(no_args_is_help=True, help="Tracking links.")
token_app = typer.Typer(no_args_is_help=True, help="Admin API tokens.")
deliveries_app = typer.Typer(no_args_is_help=True, help="Outbound postbacks to affiliates.")
rates_app = typer.Typer(no_args_is_help=True, help="Exchange rates into the base currency.")
rule_app = typer.Typer(no_args_is_help=True, help="Commission rules of an offer.")
conversions_app = typer.Typer(no_args_is_help=True, help="Conversions.")
clicks_app = typer.Typer(no_args_is_help=True, help="Clicks.")
postbacks_app = typer.Typer(no_args_is_help=True, help="The postback ledger.")
for sub, name in (
    (advertiser_app, "advertiser"),
    (offer_app, "offer"),
    (affiliate_app, "affiliate"),
    (link_app, "link"),
    (token_app, "token"),
    (conversions_app, "conversions"),
    (clicks_app, "clicks"),
    (postbacks_app, "postbacks"),
    (rates_app, "rates"),
    (deliveries_app, "deliveries"),
    (rule_app, "rule"),
):
    app.add_typer(sub, name=name)

# piped or redirected (`| less`, `> file`, ssh without a terminal) with no COLUMNS
# told, tables are not squeezed into 80 columns (a RefID over eight lines): a table is
# as wide as its cells, up to PIPED_WIDTH
PIPED_WIDTH = 240
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPED_WIDTH)
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON lines, not a table.")]
DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: CLICKBACK_DATABASE_URL).")
]


def _settings(db: str | None) -> Settings:
    if db:
        os.environ["CLICKBACK_DATABASE_URL"] = db
    return Settings.from_env()


SERVED_URL = "served_url"  # meta: the URL the last `clickback serve` answers on
DEFAULT_URL = "http://127.0.0.1:8080"  # `clickback serve` with no options


def served_url(host: str, port: int) -> str:
    """The URL `clickback serve --host HOST --port PORT` answers on from this machine: an
    address that listens on every interface (0.0.0.0, ::) is reached on loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


async def public_base(store: Store, settings: Settings) -> str:
    """Where the URLs the CLI prints point: CLICKBACK_PUBLIC_URL, else the URL the running
    (or last) `clickback serve` on this database answers on, else serve's default."""
    return settings.public_url or await store.get_meta(SERVED_URL) or DEFAULT_URL


def _run(
    db: str | None,
    work: Callable[[Store], Awaitable[T]],
    *,
    migrate: bool = True,
    makes: bool = False,
) -> T:
    """`work` on the database, migrated first (unless not `migrate`: left as it is). A
    SQLite file that was not there is made, and said so on stderr, unless the command
    `makes` databases (migrate, serve): one run without its `--db` lists, exports or
    reports nothing from a new database, which looked like an answer."""
    settings = _settings(db)
    new_file = "" if makes else _new_sqlite_file(settings.database_url)

    async def go() -> T:
        store = await open_store(settings.database_url, settings)
        try:
            if migrate:
                await store.migrate()
                await fx.check_base_currency(store, settings.base_currency)
            return await work(store)
        finally:
            await store.close()

    try:
        return _or_exit(lambda: asyncio.run(go()))
    finally:
        if new_file and os.path.exists(new_file):
            Console(stderr=True).print(
                f"note: there was no database at {os.path.abspath(new_file)}: a new one was"
                " made there (--db or CLICKBACK_DATABASE_URL names another)",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )


def _new_sqlite_file(url: str) -> str:
    """The path of the SQLite file the URL names, if there is none yet; '' otherwise."""
    if not url.startswith("sqlite:"):
        return ""
    from clickback.storage.sqlite import path_from_url

    path = path_from_url(url)
    return "" if path == ":memory:" or os.path.exists(path) else path


# C0 and C1 control characters: a terminal would act on them (ESC sequences clear the
# screen, retitle the window, hide or rewrite rows the operator reads)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(value: str) -> str:
    """Text from outside (a sub-ID, an order number, a User-Agent, a message quoting
    them) as the terminal may print it: each control character as its `\\xNN` escape."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


def _or_exit(call: Callable[[], T]) -> T:
    """`call`'s result; a ClickbackError it raises is printed, and the command exits 2."""
    try:
        return call()
    except ClickbackError as exc:
        console.print(f"[red]error[/red] ({exc.code}): {escape(printable(exc.message))}")
        raise typer.Exit(2) from None


def _table(rows: list[dict[str, Any]], columns: list[str], whole: tuple[str, ...] = ()) -> None:
    """`whole` columns fold a long value onto more lines instead of cutting it short.
    Values are shown as they are, never read as markup: a sub-ID, a User-Agent or a
    referer is whatever a visitor sent (`[/]` broke the table, `[bold]x` showed `x`), and
    control characters are shown escaped (`printable`)."""
    table = Table()
    for c in columns:
        table.add_column(Text(c), overflow="fold" if c in whole else "ellipsis")
    for r in rows:
        table.add_row(
            *(Text("" if r.get(c) is None else printable(str(r.get(c)))) for c in columns)
        )
    console.print(table)


def _fields(obj: dict[str, Any]) -> None:
    """One object (as the API shows it) as a table of its fields, an object or list
    value as its JSON."""
    rows = [
        {"field": k, "value": orjson.dumps(v).decode() if isinstance(v, dict | list) else v}
        for k, v in obj.items()
    ]
    _table(rows, ["field", "value"], whole=("value",))


def masked(secret: str) -> str:
    """A secret as a list shows it: its first 4 characters then `…`, enough to tell two
    apart, or `…` alone for one too short to give away a third of; '' (none set) as is."""
    if not secret:
        return ""
    return (secret[:4] if len(secret) >= 12 else "") + "…"


LimitOption = Annotated[int, typer.Option(min=1, help="The most rows shown (one page).")]
CursorOption = Annotated[
    str | None,
    typer.Option(help="The page after the one that printed it (`more: --cursor …`)."),
]


def said_archived(row: dict[str, Any]) -> dict[str, Any]:
    """A row's cells with `(archived)` after its name when it is: in the table, where it
    looked live (the JSON has `archived_at`)."""
    return {**row, "name": f"{row['name']} (archived)" if row["archived_at"] else row["name"]}


def _list(
    db: str | None,
    kind: str,
    columns: list[str],
    limit: int = 100,
    filters: dict[str, Any] | None = None,
    as_json: bool = False,
    since: int | None = None,
    until: int | None = None,
    shown: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    whole: tuple[str, ...] = (),
    cursor: str | None = None,
    secret: tuple[str, ...] = (),
) -> None:
    """A page of a list, newest first, as a table (`shown` turns a presented row into its
    table cells) or as the API's JSON, a line each, the `secret` fields of either masked.
    When older rows are left, the cursor of the next page goes to stderr, so that stdout
    holds the rows alone."""
    settings = _settings(db)

    async def work(store: Store) -> tuple[list[dict[str, Any]], str | None]:
        _check_filters(kind, filters or {})
        base = await public_base(store, settings)
        page = await store.list_rows(kind, filters or {}, since, until, limit, cursor or None)
        rows = [present.PRESENTERS[kind](r, base) for r in page.items]
        for row in rows if secret else ():
            row.update((k, masked(row[k])) for k in secret)
        return rows, page.next_cursor

    rows, next_cursor = _run(db, work)
    if as_json:
        for row in rows:
            print(orjson.dumps(row).decode())
    else:
        _table([shown(r) for r in rows] if shown else rows, columns, whole)
    _more(next_cursor)


def _more(next_cursor: str | None) -> None:
    """The cursor of a list's next page, on stderr, when rows are left."""
    if next_cursor:
        Console(stderr=True).print(
            f"more: --cursor {next_cursor} (the same command with it shows the next page)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


@app.command()
def migrate(db: DbOption = None) -> None:
    """Create or upgrade the schema."""
    version = _run(db, lambda store: store.migrate(), makes=True)
    console.print(f"schema at version {version}")


@app.command()
def backup(
    dest: Annotated[
        str, typer.Argument(help="The backup's path; its report file is PATH-reports.")
    ],
    db: DbOption = None,
) -> None:
    """Copy a SQLite database, while it serves, to new files (PostgreSQL: pg_dump).
    The database is left at its schema version (a backup before an upgrade)."""
    from clickback.storage.sqlite import path_from_url
    from clickback.storage.sqlite_backup import backup_files

    url = _settings(db).database_url
    if not url.startswith("sqlite:"):
        from clickback.storage.postgres import split_url

        dsn, schema_name = split_url(url)
        command = "pg_dump --format=custom --file clickback.dump"
        command += f" --schema {schema_name} {dsn}" if schema_name else " DATABASE_URL"
        console.print(
            "[red]error[/red] (backup): a PostgreSQL database is backed up with PostgreSQL's"
            f" own tools, while it runs: {escape(command)} (pg_restore puts it back);"
            " `clickback backup` copies a SQLite database"
        )
        raise typer.Exit(2)
    source = path_from_url(url)
    if not os.path.isfile(source):
        console.print(f"[red]error[/red] (backup): no database at {escape(source)}")
        raise typer.Exit(2)
    with console.status(f"backing up to {escape(dest)}"):
        made = _or_exit(lambda: backup_files(source, dest.removeprefix("sqlite:///")))
    for path, size in made:
        console.print(f"{escape(path)}  {size / 2**20:,.1f} MB")
    if len(made) == 1:
        console.print(
            "checked (quick_check). The database has no report file: the server makes it"
            " again at its start. To restore: stop the server, move the database's files"
            " away (its -wal and -shm too), and copy this one in its place under its name."
        )
        return
    console.print(
        "checked (quick_check). To restore: stop the server, move the database's files away"
        " (its -wal and -shm too), and copy these two in their place under its name."
    )


def _check_worker_settings(settings: Settings) -> None:
    """What the workers read at their start, read here first: a bad value is one line
    (ConfigError, InputError), not a worker's traceback."""
    from clickback.domain.fraud import Networks
    from clickback.domain.security import parse_networks

    parse_networks(",".join(settings.trusted_proxies))
    Networks.from_file(settings.datacenter_ranges)
    if settings.geoip_mmdb and not os.path.isfile(settings.geoip_mmdb):
        raise ConfigError(f"CLICKBACK_GEOIP_MMDB: no file {settings.geoip_mmdb}")


def _check_port_free(host: str, port: int) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    db: DbOption = None,
    workers: Annotated[int, typer.Option(help="Worker processes (SQLite: keep 1).")] = 1,
    demo: Annotated[bool, typer.Option(help="Create demo data and print URLs to try.")] = False,
    interface: Annotated[
        str | None,
        typer.Option(
            help="With --server granian (which it implies): granian's interface, rsgi (the "
            "default: the hot paths answered in one call each) or asgi (the same app as any "
            "ASGI server runs it)."
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            help="native (the default): clickback's own HTTP/1.1 front (uvloop and httptools), "
            "the faster; or granian."
        ),
    ] = None,
) -> None:
    """Run the tracker (migrates the schema first)."""
    server = server or ("granian" if interface else "native")
    if server not in ("granian", "native"):
        raise typer.BadParameter("native or granian", param_hint="--server")
    if interface not in (None, "rsgi", "asgi"):
        raise typer.BadParameter("rsgi or asgi", param_hint="--interface")
    if interface and server == "native":
        raise typer.BadParameter(
            "an interface of granian's: add --server granian", param_hint="--interface"
        )
    settings = _settings(db)
    _check_worker_settings(settings)
    _check_port_free(host, port)
    base = settings.public_url or served_url(host, port)

    async def prepare(store: Store) -> tuple[str, str, str] | None:
        from clickback.demo import create_demo

        await store.set_meta(SERVED_URL, base)  # for the URLs the other commands print
        return await create_demo(store, base) if demo else None

    urls = _run(db, prepare, makes=True)
    if urls:
        if urls[2]:
            console.print(f"[yellow]Note[/yellow]: {escape(urls[2])}", soft_wrap=True)
        console.print(f"Tracking link: {escape(urls[0])}", soft_wrap=True)
        console.print("Follow it, copy the refid from the landing URL, then fire:")
        console.print(f"Postback:      {escape(urls[1])}", soft_wrap=True)
    console.print(f"clickback on {base} (database {escape(settings.database_url)})")
    if server == "native":
        from clickback.web import native_serve as native
        from clickback.web.app import app_from_env

        if workers > 1:
            code = native.serve_workers(host, port, workers)
            if code:
                raise typer.Exit(code)
            return
        try:
            sock = native.listening_socket(host, port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        native.serve(app_from_env, sock)
        return
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops

    rsgi = interface != "asgi"
    # the target as a file and the working directory as its import root: given a module
    # name, granian puts the working directory first on the import path, and a click.py
    # or typer.py there stopped every worker at its start
    web = Path(__file__).resolve().parent / "web"
    Granian(
        f"{web / 'rsgi.py'}:rsgi_from_env" if rsgi else f"{web / 'app.py'}:app_from_env",
        address=host,
        port=port,
        interface=Interfaces.RSGI if rsgi else Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        factory=True,
        log_access=False,
        working_dir=web.parent.parent,
    ).serve()


# -- setup ----------------------------------------------------------------------------


@advertiser_app.command("create")
def advertiser_create(
    name: str,
    token: Annotated[str | None, typer.Option(help="Postback token (generated if absent).")] = None,
    require_token: Annotated[bool, typer.Option(help="Refuse postbacks without it.")] = False,
    db: DbOption = None,
) -> None:
    """Create an advertiser (its postback token generated unless --token gives one)."""
    values = {"name": name, "postback_token": token, "require_token": require_token}
    new_id = _run(db, lambda s: admin.create_advertiser(s, values))
    console.print(f"advertiser {new_id} created")
    if not require_token:
        console.print(
            "note: its postbacks are taken from anyone who holds a RefID (every visitor's"
            " landing page URL has one): before real traffic, require its token"
            f" (`clickback advertiser security {new_id} --require-token`), a signature or an"
            ' IP allowlist (docs/deploy.md, "Who may fire a postback")'
        )


@advertiser_app.command("list")
def advertiser_list(
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    show_tokens: Annotated[
        bool,
        typer.Option(
            "--show-tokens",
            help="Print the postback tokens (and, with --json, signing secrets) whole, "
            "to copy one; else their first 4 characters then '…'.",
        ),
    ] = False,
) -> None:
    """Advertisers, newest first, with their postback tokens (masked unless --show-tokens)."""
    columns = ["id", "name", "require_token", "postback_token", "created_at"]
    secret = () if show_tokens else ("postback_token", "signing_secret")
    whole = ("postback_token",) if show_tokens else ()  # folded, never cut: to copy
    _list(
        db,
        "advertisers",
        columns,
        limit,
        as_json=as_json,
        cursor=cursor,
        secret=secret,
        whole=whole,
        shown=said_archived,
    )


@affiliate_app.command("create")
def affiliate_create(name: str, db: DbOption = None) -> None:
    """Create an affiliate (set its postback with `affiliate postback`)."""
    new_id = _run(db, lambda s: admin.create_affiliate(s, {"name": name}))
    console.print(f"affiliate {new_id} created")


@affiliate_app.command("list")
def affiliate_list(
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Affiliates, newest first, with their postback URLs."""
    columns = ["id", "name", "postback_url", "postback_enabled", "postback_failures", "created_at"]
    _list(db, "affiliates", columns, limit, as_json=as_json, cursor=cursor, shown=said_archived)


@link_app.command("create")
def link_create(
    offer: Annotated[int, typer.Option(help="Offer id.")],
    affiliate: Annotated[int, typer.Option(help="Affiliate id.")],
    db: DbOption = None,
) -> None:
    """Create an affiliate's tracking link to an offer; prints its URL."""
    values = {"offer_id": offer, "affiliate_id": affiliate}
    settings = _settings(db)

    async def work(store: Store) -> dict[str, Any]:
        row = await store.get_row("links", await admin.create_link(store, values))
        assert row is not None
        return present.link(row, await public_base(store, settings))

    link = _run(db, work)
    console.print(f"link {link['id']} created: {escape(link['tracking_url'])}")


@link_app.command("list")
def link_list(
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Tracking links, newest first, with their URLs."""
    columns = ["id", "code", "offer_id", "affiliate_id", "tracking_url", "active"]
    # the URL whole (over more lines when narrow): it is what is copied from here
    _list(
        db,
        "links",
        columns,
        limit,
        as_json=as_json,
        cursor=cursor,
        whole=("tracking_url",),
        shown=lambda r: {**r, "active": "archived" if r["archived_at"] else r["active"]},
    )


@rates_app.command("import")
def rates_import(
    file: Annotated[
        typer.FileText, typer.Argument(help="CSV: date,currency,rate.", encoding=CSV_ENCODING)
    ],
    db: DbOption = None,
) -> None:
    """Load exchange rates (1 unit of currency = rate units of the base currency) and value
    the conversions that were waiting for one."""
    base = _settings(db).base_currency
    rows = _or_exit(lambda: fx.parse_rates(read_csv(file), base))
    done = _run(db, lambda s: fx.import_rates(s, rows, base))
    console.print(f"{len(rows)} rates stored (base {base}); {done.valued} conversions valued")
    if note := done.note():
        console.print(escape(note))


@rates_app.command("list")
def rates_list(
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    currency: Annotated[str | None, typer.Option(help="Only this currency's rates.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stored exchange rates, by currency and date, a page at a time."""
    page = _run(db, lambda s: s.list_rates(currency, limit, cursor))
    rows = [{"currency": r["currency"], "date": r["day"], "rate": r["rate"]} for r in page.items]
    if as_json:
        for row in rows:
            print(orjson.dumps(row).decode())
    else:
        _table(rows, ["currency", "date", "rate"])
    _more(page.next_cursor)


@rule_app.command("create")
def rule_create(
    offer: Annotated[int, typer.Option(help="Offer id.")],
    payout_type: Annotated[str, typer.Option(help="cpa, cps or cpl.")],
    commissionid: Annotated[str, typer.Option(help="The postback's commissionid.")] = "",
    affiliate: Annotated[int | None, typer.Option(help="Only for this affiliate.")] = None,
    payout_amount: Annotated[str | None, typer.Option(help="CPA/CPL amount.")] = None,
    payout_percent: Annotated[str | None, typer.Option(help="CPS percent.")] = None,
    db: DbOption = None,
) -> None:
    """A payout chosen by the postback's commissionid and/or the affiliate."""
    values = {
        "commissionid": commissionid,
        "affiliate_id": affiliate,
        "payout_type": payout_type,
        # only as given: a rule's missing amount or percent is refused, as the API does
        **_given(payout_amount=payout_amount, payout_percent=payout_percent),
    }
    base = _settings(db).base_currency  # the bound on the payout's value in it
    rule_id = _run(db, lambda s: rules.create_rule(s, offer, values, base))
    console.print(f"rule {rule_id} created")


@rule_app.command("list")
def rule_list(
    offer: int,
    limit: LimitOption = 1000,
    cursor: CursorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """An offer's commission rules, archived ones too."""
    columns = [
        "id",
        "offer_id",
        "affiliate_id",
        "commissionid",
        "payout_type",
        "payout_amount",
        "payout_percent",
        "archived_at",
    ]
    _list(db, "commission_rules", columns, limit, {"offer_id": offer}, as_json, cursor=cursor)


async def _catalog(store: Store) -> Catalog:
    catalog = Catalog(store)
    await catalog.reload()
    return catalog


# a CSV file given to an import is read as the API reads an upload: UTF-8, without the
# byte-order mark a spreadsheet's "CSV UTF-8" starts it with
CSV_ENCODING = "utf-8-sig"


def read_csv(file: TextIO) -> str:
    """The text of a CSV file opened with CSV_ENCODING; one not UTF-8 is refused as the
    API refuses it."""
    try:
        return file.read()
    except UnicodeDecodeError:
        raise InputError("the file must be UTF-8 text", code="invalid_encoding") from None


def _given(**filters: Any) -> dict[str, Any]:
    return {k: v for k, v in filters.items() if v is not None}


def _check_filters(kind: str, filters: dict[str, Any]) -> None:
    """Refuses a filter value a column of set values does not take, as the API does."""
    from clickback.domain.listing import LISTS, text_filter

    for name, value in filters.items():
        if isinstance(value, str) and name in LISTS[kind].filters:
            text_filter(kind, name, value)


def main() -> None:
    try:
        app()
    except ClickbackError as exc:  # bad input read before `_run` (a time, a CSV of rates)
        console.print(f"[red]error[/red] ({exc.code}): {escape(printable(exc.message))}")
        raise SystemExit(2) from None
    except (ConnectionError, FileNotFoundError, PermissionError, sqlite3.OperationalError) as exc:
        # the database cannot be reached or opened; a bug's traceback is left as it is
        console.print(f"[red]error[/red] (unavailable): {type(exc).__name__}: {escape(str(exc))}")
        raise SystemExit(2) from None
    except Exception as exc:
        from asyncpg import exceptions as pg

        refused = (
            pg.PostgresConnectionError,
            pg.InvalidCatalogNameError,  # no such database
            pg.InvalidAuthorizationSpecificationError,  # no such role, a wrong password
        )
        if isinstance(exc, refused):
            console.print(
                f"[red]error[/red] (unavailable): {type(exc).__name__}: {escape(str(exc))}"
            )
            raise SystemExit(2) from None
        raise


from clickback import (  # noqa: E402, F401  (they add their commands)
    cli_ledger,
    cli_offers,
    cli_outbound,
    cli_reports,
    cli_tokens,
    cli_traffic,
)
