"""Outbound postbacks: how fast a backlog goes out, and whether a stalled affiliate holds
the others back.

    python bench/outbound.py [--rev REV] [--backlog 2000] [--stalled 100] [--others 50]
        [--stall 8] [--latency 0] [--out bench/results/outbound.json]

Starts `clickback serve` on a fresh SQLite database and a receiver on loopback (asyncio,
keep-alive, in this process), then:

1. **Backlog.** Affiliate A's postback is disabled, `--backlog` conversions are made
   (their deliveries are held), the screening is given 4 s, and A's postback is enabled:
   the rate at which they reach the receiver (answering at once, or after `--latency`
   seconds) is printed.
2. **A stalled receiver.** A's receiver now answers each request only after `--stall`
   seconds (below the 10 s outbound timeout). `--stalled` conversions are made for A,
   then `--others` for affiliate B, whose receiver answers at once: how long B's take to
   arrive after B's last postback was accepted, and the most of A's requests the
   receiver held at one time.

Figures are printed and written as JSON. With `--rev`, that revision's src/ is run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import procs
import servers

TOKEN = "bench-admin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Receiver:
    """Records each request's `c` (the RefID) by path; `/slow` is answered after `stall` s."""

    def __init__(self, stall: float, latency: float):
        self.stall = stall
        self.latency = latency
        self.got: dict[str, set[str]] = {"/fast": set(), "/slow": set(), "/b": set()}
        self.holding = 0
        self.most_held = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                parts = urlsplit(target)
                if parts.path == "/slow":
                    self.holding += 1
                    self.most_held = max(self.most_held, self.holding)
                    try:
                        await asyncio.sleep(self.stall)
                    finally:
                        self.holding -= 1
                elif self.latency:
                    await asyncio.sleep(self.latency)
                self.got[parts.path].add(parse_qs(parts.query)["c"][0])
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the sender closed it, or the benchmark is over
        finally:
            writer.close()


async def until(predicate: object, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def convert(c: httpx.AsyncClient, code: str, orders: list[str], width: int = 32) -> None:
    """A click and its postback for each order number, `width` at a time."""
    queue = list(orders)

    async def worker() -> None:
        while queue:
            order = queue.pop()
            r = await c.get(f"/c/{code}")
            refid = parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]
            params = {"refid": refid, "orderamount": "10", "ordernumber": order}
            r = await c.get("/postback", params=params)
            assert r.json()["status"] == "accepted", r.text

    await asyncio.gather(*(worker() for _ in range(width)))


async def scenario(base: str, args: argparse.Namespace) -> dict[str, float | int]:
    receiver = Receiver(args.stall, args.latency)
    listener = await asyncio.start_server(receiver.serve, "127.0.0.1", 0, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    out: dict[str, float | int] = {}
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30) as c:
        adv = (await c.post("/api/v1/advertisers", json={"name": "Shop"})).json()
        offer = {
            "advertiser_id": adv["id"],
            "name": "O",
            "destination_url": "https://shop.example/",
            "payout_type": "cpa",
            "payout_amount": "1.00",
        }
        offer_id = (await c.post("/api/v1/offers", json=offer)).json()["id"]
        codes = {}
        for name, path in (("A", "/fast"), ("B", "/b")):
            aff = (await c.post("/api/v1/affiliates", json={"name": name})).json()
            url = f"http://127.0.0.1:{port}{path}?c={{refid}}"
            r = await c.patch(f"/api/v1/affiliates/{aff['id']}", json={"postback_url": url})
            assert r.status_code == 200, r.text
            link = {"offer_id": offer_id, "affiliate_id": aff["id"]}
            codes[name] = ((await c.post("/api/v1/links", json=link)).json()["code"], aff["id"])
        code_a, aff_a = codes["A"]
        code_b, _ = codes["B"]

        await c.patch(f"/api/v1/affiliates/{aff_a}", json={"postback_enabled": False})
        await convert(c, code_a, [f"L{i}" for i in range(args.backlog)])
        await asyncio.sleep(4)  # screened: their deliveries wait, held
        await c.patch(f"/api/v1/affiliates/{aff_a}", json={"postback_enabled": True})
        took = await until(lambda: len(receiver.got["/fast"]) >= args.backlog, 600, "backlog")
        out["backlog"] = args.backlog
        out["backlog_seconds"] = round(took, 2)
        out["backlog_per_second"] = round(args.backlog / took, 1)
        print(f"backlog: {args.backlog} delivered in {took:.2f} s, {args.backlog / took:,.0f}/s")

        slow = f"http://127.0.0.1:{port}/slow?c={{refid}}"
        await c.patch(f"/api/v1/affiliates/{aff_a}", json={"postback_url": slow})
        await convert(c, code_a, [f"S{i}" for i in range(args.stalled)])
        await convert(c, code_b, [f"B{i}" for i in range(args.others)])
        took = await until(lambda: len(receiver.got["/b"]) >= args.others, 600, "B's postbacks")
        out["others"] = args.others
        out["others_seconds"] = round(took, 2)
        out["stalled_most_held"] = receiver.most_held
        print(
            f"stalled: B's {args.others} arrived {took:.2f} s after its last postback; A's"
            f" receiver held at most {receiver.most_held} of A's requests at a time"
        )
    listener.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rev", default=servers.WORKTREE, help="a git revision (the working tree)")
    p.add_argument("--backlog", type=int, default=2000)
    p.add_argument("--stalled", type=int, default=100)
    p.add_argument("--others", type=int, default=50)
    p.add_argument("--stall", type=float, default=8.0, help="seconds A's receiver stalls")
    p.add_argument(
        "--latency", type=float, default=0.0, help="seconds the other receivers take (0)"
    )
    p.add_argument("--port", type=int, default=18480)
    p.add_argument("--out", type=Path, default=servers.BENCH / "results" / "outbound.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="clickback-outbound-") as name:
        tmp = Path(name)
        sha = servers.use_revision(args.rev, tmp)
        env = {
            "CLICKBACK_ADMIN_TOKEN": TOKEN,
            "CLICKBACK_OUTBOUND_ALLOW_PRIVATE": "1",
            "CLICKBACK_FRAUD_MIN_SECONDS": "0",
        }
        db = f"sqlite:///{tmp / 'outbound.db'}"
        try:
            servers.clickback(tmp, db, args.port, None, env=env).wait_ready(args.port)
            result = asyncio.run(scenario(f"http://127.0.0.1:{args.port}", args))
        finally:
            procs.stop_all()
    result = {"rev": args.rev, "commit": sha, **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
