"""Server processes for the benchmark: started in their own process group, always stopped.

A `Service` is one server (nginx, granian, `clickback serve`) with its log file. Every
service started is remembered until stopped, so `stop_all()` in a `finally` (or on
Ctrl-C) leaves nothing running. Also: the process tree of a service (granian and nginx
fork workers), its workers' resident memory and CPU time, and whole-core CPU counters,
all read from /proc.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
# core -> (busy, total, steal, nice) seconds since boot; busy includes steal (time the
# hypervisor gave this virtual core to someone else) and nice (user time of processes
# with a lower priority: they still slow the servers down, by waking them up later
# and by sharing the caches)
CoreTimes = dict[int, tuple[float, float, float, float]]
_ZERO = (0.0, 0.0, 0.0, 0.0)
_live: list[Service] = []


class ServiceError(RuntimeError):
    pass


class Service:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Service:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # its own process group: stop() takes its workers too
            )
        _live.append(self)
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, port: int, path: str = "/", timeout: float = 30.0) -> None:
        """Until an HTTP request to 127.0.0.1:port gets any answer (a 302 is fine)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", path)
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"{self.name} not answering on port {port} after {timeout:.0f} s:\n"
                        f"{self.log_tail()}"
                    ) from None
                time.sleep(0.05)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after `grace` seconds."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
        # after the main process, anything left in its group (a worker that outlived it)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if self in _live:
            _live.remove(self)

    def tree(self) -> list[int]:
        """The main process and all its descendants."""
        return [self.pid, *descendants(self.pid)]

    def workers(self) -> list[int]:
        """The worker processes (the descendants), or the main process if it has none."""
        return descendants(self.pid) or [self.pid]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p) for p in self.tree())


def stop_all() -> None:
    for service in reversed(list(_live)):
        try:
            service.stop(grace=5.0)
        except Exception as exc:  # keep stopping the others
            print(f"could not stop {service.name}: {exc}")


def run_quiet(
    argv: Sequence[str], timeout: float = 120.0, env: Mapping[str, str] | None = None
) -> str:
    """Run a short command to completion; its output, or an error with that output."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if done.returncode != 0:
        raise ServiceError(
            f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        found.extend(int(c) for c in text.split())
    return found


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    stack = children(pid)
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children(p))
    return sorted(out)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


# process titles: "postgres: [CLUSTER: ]WHAT", WHAT a shared writer or "USER DB HOST STATE"
_PG_TITLE = re.compile(r"postgres: (?:[\w./-]+: )?(.*)")
_PG_AUX = ("checkpointer", "background writer", "walwriter", "autovacuum")


def pg_pids(database: str) -> list[int]:
    """PostgreSQL processes working for `database`: its backends and the shared writers."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        what = _PG_TITLE.match(title)
        if what and (f" {database} " in what.group(1) or what.group(1).startswith(_PG_AUX)):
            found.append(int(entry))
    return found


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {p: cpu_seconds(p) for p in pids}


def total_busy(before: CoreTimes, after: CoreTimes | None = None) -> float:
    """Busy seconds, summed over all cores, from `before` to `after` (or now)."""
    after = after or core_times()
    return sum(v[0] - before.get(core, _ZERO)[0] for core, v in after.items())


def total_steal(before: CoreTimes, after: CoreTimes) -> float:
    """Stolen seconds, summed over all cores, from `before` to `after`."""
    return sum(v[2] - before.get(core, _ZERO)[2] for core, v in after.items())


def total_nice(before: CoreTimes, after: CoreTimes) -> float:
    """Seconds of niced (low-priority) user time, summed over all cores."""
    return sum(v[3] - before.get(core, _ZERO)[3] for core, v in after.items())


def settle(quiet_pct: float = 15.0, window: float = 0.5, timeout: float = 20.0) -> float:
    """Wait until the machine is nearly idle (all cores together busy less than
    `quiet_pct` % of one core over `window` seconds), at most `timeout` seconds.
    Returns the last busy figure seen, in % of one core."""
    os.sync()  # write back dirty pages now rather than during the next run
    deadline = time.monotonic() + timeout
    while True:
        before = core_times()
        time.sleep(window)
        busy = 100 * total_busy(before) / window
        if busy < quiet_pct or time.monotonic() > deadline:
            return busy


def core_times() -> CoreTimes:
    """Per core: (busy, total, steal, nice) seconds since boot, from /proc/stat."""
    out: CoreTimes = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *vals = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in vals[:8]]
            idle = ticks[3] + ticks[4]  # idle + iowait
            total = sum(ticks)
            out[int(name[3:])] = tuple(  # type: ignore[assignment]
                x / _TICK for x in (total - idle, total, ticks[7], ticks[1])
            )
    return out


def core_busy(before: CoreTimes, after: CoreTimes | None = None) -> dict[int, float]:
    """Per core: percent busy from `before` to `after` (or now)."""
    after = after or core_times()
    out: dict[int, float] = {}
    for core, (busy, total, _, _) in after.items():
        b0, t0, _, _ = before.get(core, _ZERO)
        out[core] = 100.0 * (busy - b0) / (total - t0) if total > t0 else 0.0
    return out
