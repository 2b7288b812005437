"""Migrations 10 and on, appended to `schema.MIGRATIONS` in order (the engine words in
braces and how a statement is written for both engines or each: `schema`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Statement = str | Mapping[str, Sequence[str]]  # SQL for both engines, or each its own

LATER: list[tuple[int, str, list[Statement]]] = []

LATER.append(
    (
        10,
        "outbound: a delivery queued again by hand retries for the give-up time from then",
        ["ALTER TABLE deliveries ADD COLUMN retry_from BIGINT"],
    )
)

LATER.append(
    (
        11,
        "dashboard: sessions ended by logging out, kept until their cookie would expire",
        [
            """CREATE TABLE ui_logouts (
                session_id TEXT NOT NULL PRIMARY KEY,
                expires_at BIGINT NOT NULL
            )""",
        ],
    )
)

LATER.append(
    (
        12,
        "outbound: a delivery keeps the conversion's status as of the event that queued it",
        [
            "ALTER TABLE deliveries ADD COLUMN conversion_status TEXT",
            # those queued before: a status change's own status; a conversion's, the status
            # it had before the first change by hand (the screening's changes come before
            # its postback goes out), else the status it has (NULL, a row an older node
            # adds during a rolling upgrade: the status when sent, as before)
            "UPDATE deliveries SET conversion_status = event WHERE event <> 'conversion'",
            """UPDATE deliveries SET conversion_status = coalesce(
                (SELECT e.from_status FROM conversion_events AS e
                 WHERE e.conversion_id = deliveries.conversion_id
                 AND e.actor <> 'fraud_screening' ORDER BY e.id LIMIT 1),
                (SELECT c.status FROM conversions AS c WHERE c.id = deliveries.conversion_id))
            WHERE event = 'conversion'""",
        ],
    )
)

LATER.append(
    (
        13,
        "integration tests: their built-in affiliate serves again if it was archived",
        # it could be archived before (DELETE /api/v1/affiliates/{id}); since, it cannot
        [
            "UPDATE affiliates SET archived_at = NULL WHERE id IN "
            "(SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'test_affiliate_id')"
        ],
    )
)

LATER.append(
    (
        14,
        "offers: a fallback URL, where the offer's links send a click while not serving",
        ["ALTER TABLE offers ADD COLUMN fallback_url TEXT NOT NULL DEFAULT ''"],
    )
)

LATER.append(
    (
        15,
        "offers: a daily conversion cap, over which the screening flags a conversion",
        ["ALTER TABLE offers ADD COLUMN daily_cap INTEGER"],
    )
)

LATER.append(
    (
        16,
        "tokens: an affiliate token, tied to the one affiliate whose traffic it reads",
        ["ALTER TABLE api_tokens ADD COLUMN affiliate_id BIGINT REFERENCES affiliates (id)"],
    )
)

LATER.append(
    (
        17,
        "caps: an affiliate's own daily conversion cap on an offer",
        [
            """CREATE TABLE affiliate_caps (
                offer_id BIGINT NOT NULL REFERENCES offers (id),
                affiliate_id BIGINT NOT NULL REFERENCES affiliates (id),
                daily_cap INTEGER NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (offer_id, affiliate_id)
            )""",
        ],
    )
)

LATER.append(
    (
        18,
        "offers: a validation period, after which a pending conversion is approved",
        [
            "ALTER TABLE offers ADD COLUMN auto_approve_days INTEGER",
            # the auto-approval reads the pending ones only, the oldest first
            "CREATE INDEX conversions_pending ON conversions (created_at) WHERE status = 'pending'",
        ],
    )
)

# Migration 19's conversions on SQLite: migration 1's table with the columns added since
# (3, 4), in their order, without its UNIQUE (advertiser_id, ordernumber), which SQLite
# cannot drop but by making the table again
_CONVERSION_COLUMNS = """id, refid, offer_id, affiliate_id, advertiser_id, link_id,
    sub1, sub2, sub3, sub4, sub5, ordernumber, orderamount, currency, commission,
    commission_currency, coupon, geo, commissionid, status, is_test, click_missing,
    created_at, clicked_at, rule, flags, base_currency, rate, base_amount, base_commission,
    updated_at, ip, screened"""
_CONVERSIONS_REMADE = [
    """CREATE TABLE conversions_remade (
                id INTEGER PRIMARY KEY,
                refid TEXT NOT NULL,
                offer_id BIGINT NOT NULL,
                affiliate_id BIGINT NOT NULL,
                advertiser_id BIGINT NOT NULL,
                link_id BIGINT NOT NULL,
                sub1 TEXT NOT NULL, sub2 TEXT NOT NULL, sub3 TEXT NOT NULL,
                sub4 TEXT NOT NULL, sub5 TEXT NOT NULL,
                ordernumber TEXT NOT NULL,
                orderamount BIGINT NOT NULL,
                currency TEXT NOT NULL,
                commission BIGINT NOT NULL,
                commission_currency TEXT NOT NULL,
                coupon TEXT NOT NULL,
                geo TEXT NOT NULL,
                commissionid TEXT NOT NULL,
                status TEXT NOT NULL,
                is_test SMALLINT NOT NULL,
                click_missing SMALLINT NOT NULL,
                created_at BIGINT NOT NULL,
                clicked_at BIGINT NOT NULL,
                rule TEXT NOT NULL DEFAULT '',
                flags TEXT NOT NULL DEFAULT '',
                base_currency TEXT NOT NULL DEFAULT '',
                rate TEXT,
                base_amount BIGINT,
                base_commission BIGINT,
                updated_at BIGINT,
                ip TEXT NOT NULL DEFAULT '',
                screened SMALLINT NOT NULL DEFAULT 0
            )""",
    f"""INSERT INTO conversions_remade ({_CONVERSION_COLUMNS})
            SELECT {_CONVERSION_COLUMNS} FROM conversions""",
    # the history and the outbox refer to conversions by name: they refer to the new
    # table once it has the name (SqliteStore.migrate checks every reference after)
    "DROP TABLE conversions",
    "ALTER TABLE conversions_remade RENAME TO conversions",
    "CREATE INDEX conversions_refid ON conversions (refid)",
    "CREATE INDEX conversions_missing_rate ON conversions (id) WHERE rate IS NULL",
    "CREATE INDEX conversions_unscreened ON conversions (id) WHERE screened = 0",
    "CREATE INDEX conversions_pending ON conversions (created_at) WHERE status = 'pending'",
]

LATER.append(
    (
        19,
        "conversions: an integration test's order numbers are deduplicated apart from real ones",
        # a developer's test postback with a real order number of the shop made that
        # order's real postback a duplicate, never counted
        [
            {
                "sqlite": _CONVERSIONS_REMADE,
                "postgres": [
                    "ALTER TABLE conversions DROP CONSTRAINT "
                    "conversions_advertiser_id_ordernumber_key"
                ],
            },
            "CREATE UNIQUE INDEX conversions_order ON conversions "
            "(advertiser_id, ordernumber, is_test)",
        ],
    )
)

LATER.append(
    (
        20,
        "conversions: when each was recorded, from which its offer's validation period runs",
        # a replay's conversion carries the original arrival time (created_at): the period
        # counted from it could be over the moment the replay recorded it
        [
            "ALTER TABLE conversions ADD COLUMN recorded_at BIGINT",
            "UPDATE conversions SET recorded_at = created_at",
            # one a replay made, still pending: when it was recorded is not known, so its
            # period runs whole from now
            """UPDATE conversions SET recorded_at = {now_us}
                WHERE status = 'pending' AND id IN (SELECT conversion_id FROM postbacks
                WHERE replay_of IS NOT NULL AND outcome = 'accepted')""",
            "DROP INDEX conversions_pending",
            # the auto-approval reads the pending ones only, the first recorded first
            "CREATE INDEX conversions_pending ON conversions (recorded_at) "
            "WHERE status = 'pending'",
        ],
    )
)

LATER.append(
    (
        21,
        "offers: whether clicks go to the fallback URL once a daily cap is reached",
        ["ALTER TABLE offers ADD COLUMN cap_redirect SMALLINT NOT NULL DEFAULT 0"],
    )
)

LATER.append(
    (
        22,
        "caps: the daily caps reached, by offer, affiliate (0: the offer's own) and UTC day",
        [
            # read by day (today's, by every process's cache): the day leads the key
            """CREATE TABLE caps_reached (
                day BIGINT NOT NULL,
                offer_id BIGINT NOT NULL REFERENCES offers (id),
                affiliate_id BIGINT NOT NULL,
                reached_at BIGINT NOT NULL,
                PRIMARY KEY (day, offer_id, affiliate_id)
            )""",
        ],
    )
)

LATER.append(
    (
        23,
        "archived with what they belong to: an archived advertiser's offers, and the links"
        " of an archived offer or affiliate (archiving does so since)",
        [
            """UPDATE offers SET archived_at = (SELECT a.archived_at FROM advertisers AS a
                WHERE a.id = offers.advertiser_id)
                WHERE archived_at IS NULL
                AND advertiser_id IN (SELECT id FROM advertisers WHERE archived_at IS NOT NULL)""",
            """UPDATE links SET archived_at = coalesce(
                (SELECT o.archived_at FROM offers AS o WHERE o.id = links.offer_id),
                (SELECT f.archived_at FROM affiliates AS f WHERE f.id = links.affiliate_id))
                WHERE archived_at IS NULL
                AND (offer_id IN (SELECT id FROM offers WHERE archived_at IS NOT NULL)
                OR affiliate_id IN (SELECT id FROM affiliates WHERE archived_at IS NOT NULL))""",
        ],
    )
)

LATER.append(
    (
        24,
        "deliveries due, queued or held, by when: a sender's claim reads the oldest in order"
        " (it sorted every one due, 20-40 ms a claim behind a backlog of 20,000)",
        [
            """CREATE INDEX deliveries_due_or_held ON deliveries (next_at)
                WHERE state IN ('queued', 'held')""",
        ],
    )
)

LATER.append(
    (
        25,
        "conversions keep their offer's revenue terms from when they were recorded (the"
        " rollups valued them at the offer's terms when they read them: a change of terms,"
        " a late exchange rate or a report file made again moved past revenue); rows from"
        " before have none (NULL) and are valued at the offer's terms, as before",
        ["ALTER TABLE conversions ADD COLUMN revenue_terms TEXT"],
    )
)

# an order number is compared in composed form (NFC) since: stored ones are composed too,
# but where another row of the advertiser holds the same order in either form (counted
# twice already, each form once: both stay as they are)
_ALONE = (
    " AND NOT EXISTS (SELECT 1 FROM conversions AS o WHERE o.advertiser_id ="
    " conversions.advertiser_id AND o.is_test = conversions.is_test AND o.id <> conversions.id"
    " AND {nfc_o} = {nfc_c})"
)
LATER.append(
    (
        26,
        "order numbers stored in composed form (Unicode NFC), as postbacks' are compared"
        " since: a retry of an order stored decomposed is then a duplicate of it",
        [
            {
                # (the rows to compose staged once, composed: each looked for by the
                # unique index, not every row of its advertiser composed again for each)
                "sqlite": [
                    "CREATE TEMP TABLE composed_orders AS SELECT id, advertiser_id, is_test,"
                    " nfc(ordernumber) AS n FROM conversions WHERE ordernumber <> nfc(ordernumber)",
                    "CREATE INDEX temp.composed_orders_n ON composed_orders (advertiser_id, n)",
                    "UPDATE conversions SET ordernumber = (SELECT c.n FROM composed_orders AS c"
                    " WHERE c.id = conversions.id) WHERE id IN (SELECT c.id FROM composed_orders"
                    " AS c WHERE NOT EXISTS (SELECT 1 FROM conversions AS o WHERE"
                    " o.advertiser_id = c.advertiser_id AND o.ordernumber = c.n AND o.is_test ="
                    " c.is_test) AND NOT EXISTS (SELECT 1 FROM composed_orders AS d WHERE"
                    " d.advertiser_id = c.advertiser_id AND d.n = c.n AND d.is_test = c.is_test"
                    " AND d.id <> c.id))",
                    "DROP TABLE temp.composed_orders",
                ],
                # (normalize() needs a UTF8 database; in another encoding, which holds
                # none of the characters that compose, there is nothing to compose)
                "postgres": [
                    "DO $$ BEGIN IF current_setting('server_encoding') = 'UTF8' THEN "
                    "UPDATE conversions SET ordernumber = normalize(ordernumber, NFC)"
                    " WHERE ordernumber IS NOT NFC NORMALIZED"
                    + _ALONE.format(
                        nfc_o="normalize(o.ordernumber, NFC)",
                        nfc_c="normalize(conversions.ordernumber, NFC)",
                    )
                    + "; END IF; END $$"
                ],
            }
        ],
    )
)

LATER.append(
    (
        27,
        "conversions recorded before their revenue terms were kept take their offer's terms"
        " of the upgrade (what the rollups valued them at so far): a report file made again,"
        " or a late exchange rate, no longer values them at terms changed since",
        [
            "UPDATE conversions SET revenue_terms = (SELECT CASE o.revenue_type"
            " WHEN 'cpa' THEN 'cpa:' || o.revenue_amount WHEN 'cps' THEN 'cps:' ||"
            " o.revenue_percent ELSE '' END FROM offers AS o WHERE o.id = conversions.offer_id)"
            " WHERE revenue_terms IS NULL"
        ],
    )
)
