"""SQL for exchange rates and the conversions valued with them: the rates stored, which
base currency the stored amounts are in, and the conversions still missing a rate.
Mixed into `SqlStore`."""

from __future__ import annotations

import time
from typing import Any

from clickback.domain.ports import Page
from clickback.errors import InputError
from clickback.storage.primitives import SqlPrimitives, decode_cursor, encode_cursor


class RatesSql(SqlPrimitives):
    async def put_rates(self, rows: list[tuple[str, str, str]]) -> int:
        """Stores (currency, day, rate) rows, replacing a day's earlier rate."""
        t = time.time_ns() // 1000
        await self._write_all(
            [
                (
                    "INSERT INTO rates (currency, day, rate, created_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (currency, day) DO UPDATE SET rate = excluded.rate, "
                    "created_at = excluded.created_at RETURNING currency",
                    (c, d, r, t),
                )
                for c, d, r in rows
            ],
            bump=True,
        )
        return len(rows)

    async def rates_changed_at(self) -> int:
        """When exchange rates were last stored (0: never)."""
        rows = await self._fetch_tuples("SELECT coalesce(max(created_at), 0) FROM rates")
        return int(rows[0][0])

    async def base_currency_in_use(self) -> str | None:
        """The base currency the newest valued conversion was valued in; '' when none is
        valued but exchange rates are stored (in a base not recorded); None when neither:
        nothing is stored in a base currency yet. Reads the conversions back from the
        newest by their key, to the first valued one."""
        rows = await self._fetch_tuples(
            "SELECT base_currency FROM conversions WHERE base_currency <> '' "
            "ORDER BY id DESC LIMIT 1"
        )
        if rows:
            return str(rows[0][0])
        return "" if await self._fetch_tuples("SELECT 1 FROM rates LIMIT 1") else None

    async def all_rates(self) -> list[tuple[str, str, str]]:
        rows = await self._fetch("SELECT currency, day, rate FROM rates ORDER BY currency, day")
        return [(r["currency"], r["day"], r["rate"]) for r in rows]

    async def unvalued_conversions(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        return await self._fetch(
            "SELECT id, currency, orderamount, commission, commission_currency, created_at "
            # valued is base_amount set (an order of zero is, without a rate: '' or,
            # stored before that was so, NULL); its values are kept as they were
            "FROM conversions WHERE rate IS NULL AND base_amount IS NULL AND id > ? "
            "ORDER BY id LIMIT ?",
            after_id,
            limit,
        )

    async def value_conversions(self, rows: list[tuple[str, int, int, str, int]]) -> None:
        """Sets (rate, base_amount, base_commission, base_currency, id) on each conversion."""
        if rows:
            await self._write_all(
                [
                    (
                        "UPDATE conversions SET rate = ?, base_amount = ?, base_commission = ?, "
                        "base_currency = ?, flags = replace(replace(flags, 'missing_rate,', ''), "
                        "'missing_rate', '') WHERE id = ? RETURNING id",
                        row,
                    )
                    for row in rows
                ],
                # a rollup that looked for newly valued conversions when the rates were
                # stored, before these were valued, looks again at once (not in a minute)
                bump=True,
            )

    async def list_rates(self, currency: str | None, limit: int, cursor: str | None) -> Page:
        """A page of the stored rates by currency, then day (their key: they have no id),
        of one currency when `currency` is given; the cursor is the last row's key."""
        where: list[str] = []
        args: list[Any] = []
        if currency is not None:
            where.append("currency = ?")
            args.append(currency)
        if cursor:
            after_currency, sep, after_day = decode_cursor(cursor, str).partition(" ")
            if not sep:
                raise InputError(
                    "`cursor` is not one this server gave out",
                    code="invalid_cursor",
                    field="cursor",
                )
            where.append("(currency > ? OR (currency = ? AND day > ?))")
            args += [after_currency, after_currency, after_day]
        sql = "SELECT currency, day, rate FROM rates"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._fetch(sql + " ORDER BY currency, day LIMIT ?", *args, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        return Page(rows, encode_cursor(f"{last['currency']} {last['day']}") if last else None)
