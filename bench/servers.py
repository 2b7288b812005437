"""The servers the hot-path benchmark measures, each started as a `procs.Service`.

- nginx answering `return 302` (one worker, access log off): the ceiling of the load
  generator on this machine, from a temp config with its own pid, log and temp dirs;
- the bare ASGI 302 app (`bare_asgi.py`) on granian with the settings `clickback
  serve` uses: the 100 % baseline;
- `clickback serve` itself, on SQLite or PostgreSQL.

Servers are pinned to one core with `taskset` unless asked not to be.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from procs import Service, run_quiet

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
LANDING = "https://shop.example.com/landing?utm_source=clickback"

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 302 {landing}; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(argv: list[str], core: int | None) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if core is not None else argv


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def nginx(tmp: Path, port: int, core: int | None) -> Service:
    binary = nginx_binary()
    assert binary is not None
    root = tmp / "nginx"
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=root, port=port, landing=LANDING))
    argv = [binary, "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)]
    return Service("nginx", _pin(argv, core), root / "stdout.log").start()


def bare_asgi(tmp: Path, port: int, core: int | None, interface: str = "asgi") -> Service:
    """The bare 302 app on granian (`bare_asgi.py`, or `bare_rsgi.py` for "rsgi")."""
    argv = [
        str(BIN / "granian"),
        "--interface",
        interface,
        "--http",
        "1",
        "--loop",
        "uvloop",
        "--workers",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--working-dir",
        str(BENCH),
        f"bare_{interface}:app",
    ]
    return Service(f"bare {interface}", _pin(argv, core), tmp / f"bare-{port}.log").start()


def clickback(
    tmp: Path,
    db_url: str,
    port: int,
    core: int | None,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    name: str = "clickback",
    server: str | None = None,
) -> Service:
    argv = [
        str(BIN / "clickback"),
        "serve",
        "--db",
        db_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if server:  # else serve's default (revisions before the option know only granian)
        argv += ["--server", server]
    # only the settings asked for: none inherited from the shell running the benchmark
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKBACK_")}
    full_env.update(env or {})
    return Service(
        name, _pin(argv, core), tmp / f"clickback-{port}.log", env=full_env, cwd=tmp
    ).start()


def export_revision(rev: str, dest: Path) -> tuple[str, Path]:
    """`rev`'s src/ exported into `dest` (made here): its full commit id and the path."""
    sha = run_quiet(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"])
    sha = sha.strip()
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", sha, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return sha, dest / "src"


WORKTREE = "worktree"


def add_revs_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rev",
        action="append",
        default=[],
        help=f"a git revision, or {WORKTREE!r} for the working tree (the default); repeatable",
    )


def source_trees(revs: list[str], tmp: Path) -> dict[str, str]:
    """Per revision named (`WORKTREE` for the working tree, the default), the src/ to
    put on PYTHONPATH: the working tree's own, or the revision's exported into `tmp`."""
    return {
        rev: str(ROOT / "src")
        if rev == WORKTREE
        else str(export_revision(rev, tmp / rev.replace("/", "_"))[1])
        for rev in revs or [WORKTREE]
    }


def use_revision(rev: str, tmp: Path) -> str:
    """Export `rev`'s src/ into `tmp` and put it first on the path of this process and
    of every process it starts; the full commit id. `WORKTREE` (as `--rev` takes it in
    the scripts that compare revisions): nothing exported, and an empty id."""
    if rev == WORKTREE:
        return ""
    sha, path = export_revision(rev, tmp / "rev")
    src = str(path)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, src)
    return sha
