"""Results of the hot-path benchmark: medians, ratios to the baselines, goals, output.

A `Result` holds one target's measured runs; `summarize` turns the list of results into
rows with medians and the ratios to the bare ASGI 302 and to nginx measured in the same
run; `print_table` shows them with rich and `write_json` stores them with the machine
facts and settings, for comparison with later runs.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import fixtures
from loadgen import LOOP_STALL_MS, WrkRun
from rich.console import Console
from rich.table import Table

BARE = "bare-asgi"
BARE_END = "bare-asgi-end"
NGINX = "nginx"
RSS_GOAL_MB = 150.0
GROWTH_LIMIT = 1.5  # postback p99 with many clicks stored, at most this times the small one
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Goal:
    """What a target should reach: a share of the bare ASGI rate, a p99 ceiling."""

    min_pct_bare: float | None = None
    max_p99_ms: float | None = None
    max_rss_mb: float | None = None

    def parts(self) -> list[tuple[str, str, float]]:
        """Each bound: (its description, the figure it bounds, the bound)."""
        out = []
        if self.min_pct_bare is not None:
            out.append((f">={self.min_pct_bare:.0f} %", "pct_bare", self.min_pct_bare))
        if self.max_p99_ms is not None:
            out.append((f"p99<={self.max_p99_ms:g} ms", "p99_ms", self.max_p99_ms))
        if self.max_rss_mb is not None:
            out.append((f"RSS<={self.max_rss_mb:.0f} MB", "rss_mb", self.max_rss_mb))
        return out

    def describe(self) -> str:
        return ", ".join(text for text, _, _ in self.parts())

    def missed(self, figures: dict[str, float | None]) -> list[str]:
        """The bounds these figures miss (a figure not measured misses its bound)."""
        out = []
        for text, name, bound in self.parts():
            value = figures.get(name)
            low = name == "pct_bare"
            if value is None or (value < bound if low else value > bound):
                out.append(text)
        return out


@dataclass
class Result:
    key: str
    label: str
    runs: list[WrkRun] = field(default_factory=list)
    warmup: WrkRun | None = None
    disturbed: list[WrkRun] = field(default_factory=list)
    worker_rss_mb: list[float] = field(default_factory=list)
    main_rss_mb: float | None = None
    goal: Goal | None = None
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    max_background: float = 100.0

    def counted(self) -> list[WrkRun]:
        """The runs the figures come from: those not disturbed by other processes (all
        of them when every run was)."""
        clean = [r for r in self.runs if r.background_cpu_pct <= self.max_background]
        return clean or self.runs

    def median(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.counted()]
        return statistics.median(values) if values else None

    def total(self, attr: str) -> int:
        return sum(int(getattr(r, attr)) for r in self.runs)


def _pct(value: float | None, base: float | None) -> float | None:
    return round(100 * value / base, 1) if value and base else None


def _per_request(r: Result) -> float | None:
    """Server CPU time per answered request, in µs (median over the runs)."""
    values = [10_000 * x.server_cpu_pct / x.rps for x in r.counted() if x.rps]
    return round(statistics.median(values), 1) if values else None


def baseline_rps(results: list[Result]) -> float | None:
    """The 100 %: the bare ASGI runs at the start and at the end together, so that a
    machine that got faster or slower during the run moves it less."""
    by_key = {r.key: r for r in results}
    runs = [x.rps for k in (BARE, BARE_END) if k in by_key for x in by_key[k].counted()]
    return statistics.median(runs) if runs else None


def summarize(results: list[Result]) -> list[dict[str, Any]]:
    by_key = {r.key: r for r in results}
    nginx = by_key.get(NGINX)
    bare_rps = baseline_rps(results)
    nginx_rps = nginx.median("rps") if nginx else None
    rows = []
    for r in results:
        rps = r.median("rps")
        p99 = r.median("p99_ms")
        pct_bare = _pct(rps, bare_rps)
        rss = max(r.worker_rss_mb) if r.worker_rss_mb else None
        verdict, missed = None, None
        if r.goal and not r.skipped and rps:
            missed = r.goal.missed({"pct_bare": pct_bare, "p99_ms": p99, "rss_mb": rss})
            verdict = not missed
        rows.append(
            {
                "key": r.key,
                "label": r.label,
                "skipped": r.skipped,
                "rps": rps,
                "p50_ms": r.median("p50_ms"),
                "p99_ms": p99,
                "counted_runs": len(r.counted()),
                "rps_runs": [x.rps for x in r.runs],
                "p99_runs": [x.p99_ms for x in r.runs],
                "pct_bare": pct_bare,
                "pct_nginx": _pct(rps, nginx_rps),
                "worker_rss_mb": [round(x, 1) for x in r.worker_rss_mb],
                "main_rss_mb": round(r.main_rss_mb, 1) if r.main_rss_mb else None,
                "non_2xx_3xx": r.total("non_2xx_3xx"),
                "requests": r.total("requests"),
                "socket_errors": sum(sum(x.socket_errors.values()) for x in r.runs),
                "server_cpu_pct": r.median("server_cpu_pct"),
                "cpu_us_per_request": _per_request(r),
                "core_busy_pct": {
                    str(c): statistics.median(x.core_busy_pct.get(c, 0.0) for x in r.counted())
                    for c in (r.runs[0].core_busy_pct if r.runs else {})
                },
                "wrk_cpu_pct": r.median("wrk_cpu_pct"),
                "goal": r.goal.describe() if r.goal else None,
                "goal_met": verdict,
                "goal_missed": missed,
                "notes": r.notes,
                "extra": r.extra,
                "runs": [x.as_dict() for x in r.runs],
                "warmup": r.warmup.as_dict() if r.warmup else None,
                "disturbed_runs": [x.as_dict() for x in r.disturbed],
                "background_cpu_pct": r.median("background_cpu_pct"),
            }
        )
    return rows


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def print_table(console: Console, rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("target", "left"),
        ("req/s", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("RSS MB", "right"),
        ("% bare", "right"),
        ("% nginx", "right"),
        ("srv CPU", "right"),
        ("µs/req", "right"),
        ("other CPU", "right"),
        ("non-2xx/3xx", "right"),
        ("goal", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        if row["skipped"]:
            table.add_row(row["label"], *["–"] * 10, f"[dim]skipped: {row['skipped']}[/dim]")
            continue
        rss = row["worker_rss_mb"]
        met = row["goal_met"]
        goal = "" if row["goal"] is None else row["goal"]
        if met:
            goal = f"[green]met[/green] ({goal})"
        elif met is not None:
            missed = row["goal_missed"]
            kept = [g for g in goal.split(", ") if g not in missed]
            goal = f"[red]missed[/red] {', '.join(missed)}"
            goal += f"; [green]met[/green] {', '.join(kept)}" if kept else ""
        table.add_row(
            row["label"],
            _num(row["rps"], ",.0f"),
            _num(row["p50_ms"], ".2f"),
            _num(row["p99_ms"], ".2f"),
            "+".join(f"{x:.0f}" for x in rss) if rss else "–",
            _num(row["pct_bare"], ".0f"),
            _num(row["pct_nginx"], ".0f"),
            _num(row["server_cpu_pct"], ".0f") + " %",
            _num(row["cpu_us_per_request"], ".1f"),
            _num(row["background_cpu_pct"], ".0f") + " %",
            f"{row['non_2xx_3xx']:,}",
            goal,
        )
    console.print(table)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "absent"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def source_state(rev_sha: str) -> dict[str, Any]:
    """Which code was measured: an exported revision, or the working tree and its HEAD."""
    if rev_sha:
        return {"commit": rev_sha, "source": f"git revision {rev_sha[:12]} (exported)"}
    head = _first_line(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "commit": head,
        "source": "working tree" + (" with uncommitted changes in src/" if dirty else ""),
    }


def machine_facts(pg_url: str | None) -> dict[str, Any]:
    """The machine and the versions of what runs on it (PostgreSQL's unless None)."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    facts: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(int(mem) / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "nginx": _first_line(["nginx", "-v"]),
        "wrk": _first_line(["wrk", "-v"]).split(" Copyright")[0],
        "load_average_at_start": os.getloadavg(),
    }
    for dist in ("clickback", "granian", "uvloop", "asyncpg", "orjson"):
        try:
            facts[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            facts[dist] = None
    if pg_url:
        try:
            facts["postgresql"] = fixtures.pg_version(pg_url.rsplit("/", 1)[0] + "/postgres")
        except Exception as exc:
            facts["postgresql"] = f"unreachable: {exc}"
    return facts


def growth_check(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Postback p99 with many clicks stored against the figure with few."""
    by_key = {r["key"]: r for r in rows}
    small, grown = by_key.get("sqlite-postback"), by_key.get("sqlite-postback-grown")
    if not (small and grown and small["p99_ms"] and grown["p99_ms"]):
        return None
    ratio = grown["p99_ms"] / small["p99_ms"]
    return {
        "small_clicks": small["extra"].get("clicks_stored"),
        "grown_clicks": grown["extra"].get("clicks_stored"),
        "small_p99_ms": small["p99_ms"],
        "grown_p99_ms": grown["p99_ms"],
        "p99_ratio": round(ratio, 2),
        "rps_ratio": round(grown["rps"] / small["rps"], 2),
        "limit": GROWTH_LIMIT,
        "met": ratio <= GROWTH_LIMIT,
    }


def print_details(console: Console, rows: list[dict[str, Any]]) -> None:
    """What the table leaves out: the ledger's outcomes, rows stored, socket errors."""
    for row in rows:
        if row["skipped"]:
            continue
        ledgers = [r["extra"]["ledger"] for r in row["runs"] if "ledger" in r["extra"]]
        if ledgers:
            total: dict[str, int] = {}
            for ledger in ledgers:
                for k, v in ledger.items():
                    total[k] = total.get(k, 0) + v
            refused = sum(v for k, v in total.items() if k not in ("accepted", "duplicate"))
            console.print(
                f"{row['label']}: ledger over the measured runs "
                + ", ".join(f"{k} {v:,}" for k, v in total.items())
                + f"; wrk saw {row['non_2xx_3xx']:,} non-2xx/3xx (refusals expected: {refused:,})"
            )
        stored = [r["extra"].get("clicks_stored") for r in row["runs"]]
        if row["key"].startswith(("sqlite-click", "pg-click")) and None not in stored:
            console.print(
                f"{row['label']}: {sum(stored):,} click rows stored for "
                f"{row['requests']:,} redirects counted by wrk"
            )
        behind = [r["extra"]["behind_s"] for r in row["runs"] if "behind_s" in r["extra"]]
        if behind:
            caught = [r["extra"].get("caught_up_s") for r in row["runs"]]
            lags = "; ".join(
                f"{name} " + " / ".join(_secs(b.get(name)) for b in behind) for name in behind[0]
            )
            console.print(
                f"{row['label']}: behind when wrk stopped (each measured run): {lags}; "
                "every click and conversion in the reports "
                + " / ".join(_secs(c) for c in caught)
                + " after wrk stopped"
            )
        stops = [r["extra"].get("loop_stops") for r in row["runs"]]
        if stops and None not in stops:
            lengths = [[stop["ms"] for stop in run] for run in stops]
            console.print(
                f"{row['label']}: event loop stops logged (CLICKBACK_LOOP_STALL_MS, "
                f"{LOOP_STALL_MS} ms unless --env says) in each measured run with its catch-up: "
                + " / ".join(
                    f"{len(s)} ({sum(s):,} ms, longest {max(s, default=0)})" for s in lengths
                )
                + (
                    "; where the loop was: `loop_stops` of each run in the JSON"
                    if any(lengths)
                    else ""
                )
            )
        if row["socket_errors"]:
            console.print(f"[yellow]{row['label']}: {row['socket_errors']} socket errors[/yellow]")


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"
