"""Running wrk, pinned to its own core, and reading its `--latency` report.

One call of `run_wrk` is one measured run: wrk's figures (requests per second, the
latency distribution, non-2xx/3xx answers, socket errors) plus what it cost: wrk's own
CPU time, the server's CPU time and how busy each core was.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import procs

LUA = Path(__file__).resolve().parent / "lua"


def add_visitors_option(p: argparse.ArgumentParser) -> None:
    """`--visitors many|one`: whose clicks `lua/click.lua` sends (its third argument)."""
    p.add_argument(
        "--visitors",
        choices=("many", "one"),
        default="many",
        help="click traffic: each click from another address, in X-Forwarded-For through a "
        "trusted proxy (many, the default), or every click from 127.0.0.1 (one)",
    )


def add_env_option(p: argparse.ArgumentParser, help: str) -> None:
    """`--env CLICKBACK_NAME=VALUE`, repeatable: settings for the clickback servers a
    benchmark starts (`env_settings` reads them)."""
    p.add_argument("--env", action="append", default=[], metavar="CLICKBACK_NAME=VALUE", help=help)


def env_settings(values: Sequence[str]) -> dict[str, str]:
    """The `--env` values as settings."""
    return dict(v.split("=", 1) for v in values)


def behind_proxy(settings: dict[str, str], visitors: str) -> dict[str, str]:
    """A clickback server's settings for that traffic: with many visitors it trusts
    127.0.0.1 as its proxy (a load balancer in front of it), unless told otherwise; and
    its event loop's stops are logged from 30 ms (`loop_stops`), unless told otherwise."""
    if visitors == "many":
        settings.setdefault("CLICKBACK_TRUSTED_PROXIES", "127.0.0.1")
    settings.setdefault("CLICKBACK_LOOP_STALL_MS", str(LOOP_STALL_MS))
    return settings


LOOP_STALL_MS = 30
# the warning and the stack lines under it (indented), up to the next line logged
_STOP = re.compile(rb"event loop stopped for (\d+) ms[^\n]*\n(?:[ \t][^\n]*\n)*")


def loop_stops(log: Path, since: int) -> list[dict[str, Any]] | None:
    """The event loop's stops a clickback server logged after byte `since` of its log,
    each its length (`ms`) and what was logged of it (`log`: where the loop was); None
    when the server does not watch its loop (a revision from before the watchdog)."""
    text = log.read_bytes()
    if b"event loop watched" not in text:
        return None
    return [
        {"ms": int(m.group(1)), "log": m.group(0).decode(errors="replace")}
        for m in _STOP.finditer(text, since)
    ]


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DIST = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_LATENCY = re.compile(
    r"^\s+Latency\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)", re.M
)
_TOTAL = re.compile(r"^\s+(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_NON_OK = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


class WrkError(RuntimeError):
    pass


@dataclass
class WrkRun:
    requests: int
    seconds: float
    rps: float
    avg_ms: float
    max_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    started_us: int = 0
    ended_us: int = 0
    wrk_cpu_pct: float = 0.0
    server_cpu_pct: float = 0.0
    background_cpu_pct: float = 0.0
    steal_pct: float = 0.0
    nice_pct: float = 0.0
    core_busy_pct: dict[int, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse(text: str) -> WrkRun:
    """The figures of one wrk `--latency` report."""
    dist = {int(p): _ms(v, u) for p, v, u in _DIST.findall(text)}
    lat = _LATENCY.search(text)
    total = _TOTAL.search(text)
    rps = _RPS.search(text)
    if not (lat and total and rps and len(dist) == 4):
        raise WrkError(f"cannot read wrk's report:\n{text}")
    non_ok = _NON_OK.search(text)
    sock = _SOCKET.search(text)
    return WrkRun(
        requests=int(total.group(1)),
        seconds=_ms(total.group(2), total.group(3)) / 1000,
        rps=float(rps.group(1)),
        avg_ms=_ms(lat.group(1), lat.group(2)),
        max_ms=_ms(lat.group(5), lat.group(6)),
        p50_ms=dist[50],
        p75_ms=dist[75],
        p90_ms=dist[90],
        p99_ms=dist[99],
        non_2xx_3xx=int(non_ok.group(1)) if non_ok else 0,
        socket_errors=dict(
            zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)
        )
        if sock
        else {"connect": 0, "read": 0, "write": 0, "timeout": 0},
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    url: str,
    script: str,
    script_args: Sequence[str],
    *,
    duration: int,
    connections: int,
    server_pids: Callable[[], list[int]] | None = None,
    wrk_core: int | None = 0,
    tick: Callable[[float], None] | None = None,
) -> WrkRun:
    """One wrk run against `url`; `tick(seconds)` is called while it runs (progress).

    `server_pids` names the processes doing the server's work (its workers, and for
    PostgreSQL the database's); their CPU time is the server's, and what neither they
    nor wrk used is the background (other processes, interrupts, time stolen by the
    hypervisor) during the run; the niced (low-priority) part of it is also counted
    apart.
    """
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(LUA / script),
        url,
        "--",
        *script_args,
    ]
    if wrk_core is not None:
        argv = ["taskset", "-c", str(wrk_core), *argv]
    server0 = procs.cpu_by_pid(server_pids()) if server_pids else {}
    wrk_cpu0 = _children_cpu()
    cores0 = procs.core_times()
    started_us = time.time_ns() // 1000
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = t0 + duration + 30
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise WrkError(f"wrk did not finish within {duration + 30} s")
            time.sleep(0.1)
            if tick:
                tick(min(time.monotonic() - t0, duration))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wall = time.monotonic() - t0
    ended_us = time.time_ns() // 1000
    cores1 = procs.core_times()
    busy = procs.total_busy(cores0, cores1)
    server_cpu = 0.0
    if server_pids:
        server1 = procs.cpu_by_pid(server_pids())
        server_cpu = sum(v - server0.get(p, 0.0) for p, v in server1.items())
    wrk_cpu = _children_cpu() - wrk_cpu0
    assert proc.stdout is not None
    text = proc.stdout.read().decode(errors="replace")
    if proc.returncode != 0:
        raise WrkError(f"wrk failed ({proc.returncode}):\n{text}")
    run = parse(text)
    run.started_us, run.ended_us = started_us, ended_us
    run.core_busy_pct = {k: round(v, 1) for k, v in procs.core_busy(cores0, cores1).items()}
    run.wrk_cpu_pct = round(100 * wrk_cpu / wall, 1)
    run.server_cpu_pct = round(100 * server_cpu / wall, 1)
    nice = procs.total_nice(cores0, cores1)
    run.background_cpu_pct = round(100 * max(0.0, busy - server_cpu - wrk_cpu) / wall, 1)
    run.steal_pct = round(100 * procs.total_steal(cores0, cores1) / wall, 1)
    run.nice_pct = round(100 * nice / wall, 1)
    return run
