"""docs/deploy.md's nginx server block and systemd unit, as written there: nginx with that
block (a self-signed certificate in place of the real one) in front of a real `clickback
serve` with the unit's settings. Clicks and postbacks go through on HTTPS and HTTP, and
the address stored is the visitor's, not nginx's nor one the visitor made up."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import orjson

from tests.cli.conftest import Server, cli, free_port

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
VISITOR = "127.0.0.2"  # a loopback address that is not the trusted proxy's
WRAP = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{block}
}}
"""


def _block(lang: str) -> str:
    found = re.search(rf"```{lang}\n(.*?)```", GUIDE.read_text(), re.S)
    assert found, f"no {lang} block in {GUIDE}"
    return found.group(1)


def _unit_env() -> dict[str, str]:
    unit = _block("ini")
    assert "clickback serve --host 127.0.0.1 --port 8080" in unit
    lines = [x.removeprefix("Environment=") for x in unit.splitlines()]
    return dict(x.split("=", 1) for x in lines if x.startswith("CLICKBACK_"))


def _nginx(tmp: Path, upstream: int, http: int, https: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx is needed (scripts/test installs Debian's)"
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=track.example.com", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    block = _block("nginx")
    for old, new in (
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream};"),
        ("listen 80;", f"listen 127.0.0.1:{http};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;"),
        ("/etc/letsencrypt/live/track.example.com/fullchain.pem", str(cert)),
        ("/etc/letsencrypt/live/track.example.com/privkey.pem", str(key)),
    ):
        assert old in block, old
        block = block.replace(old, new)
    conf = tmp / "nginx.conf"
    conf.write_text(WRAP.format(tmp=tmp, block=block))
    with (tmp / "error.log").open("ab") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
            stdout=log,
            stderr=log,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", https), timeout=1).close()
            return proc
        except OSError:
            assert proc.poll() is None, (tmp / "error.log").read_text()
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("nginx did not start: " + (tmp / "error.log").read_text())


def test_the_guides_nginx_block_and_unit_front_a_server_with_the_visitors_address(
    sqlite_db: str, tmp_path: Path
) -> None:
    env = _unit_env()
    assert env.pop("CLICKBACK_DATABASE_URL").startswith("sqlite:////")
    server = Server(sqlite_db, tmp_path, env=env)
    front = tmp_path / "nginx"
    front.mkdir()
    http, https = free_port(), free_port()
    nginx: subprocess.Popen[bytes] | None = None
    try:
        server.start("--demo")
        code = re.search(r"/c/([^?\s]+)", server.log.read_text())
        assert code
        nginx = _nginx(front, server.port, http, https)
        transport = httpx.HTTPTransport(local_address=VISITOR, verify=False)
        with httpx.Client(transport=transport, timeout=10) as visitor:
            made_up = {"X-Forwarded-For": "203.0.113.66", "Host": "track.example.com"}
            answers = [
                visitor.get(f"{base}/c/{code.group(1)}?sub1={sub}", headers=made_up)
                for base, sub in (
                    (f"https://127.0.0.1:{https}", "tls"),
                    (f"http://127.0.0.1:{http}", "plain"),
                )
            ]
            assert [r.status_code for r in answers] == [302, 302], [r.text for r in answers]
            refid = re.search(r"refid=([^&]+)", answers[0].headers["location"])
            assert refid
            r = visitor.get(
                f"https://127.0.0.1:{https}/postback",
                params={"refid": refid.group(1), "orderamount": "10", "ordernumber": "D1"},
            )
            assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        server.stop()
    clicks = [orjson.loads(x) for x in cli("clicks", "list", "--json", db=sqlite_db).splitlines()]
    seen = sorted((c["sub1"], c["ip"]) for c in clicks)
    assert seen == [("plain", VISITOR), ("tls", VISITOR)]
    [ledger] = [orjson.loads(x) for x in cli("postbacks", "list", "--json", db=sqlite_db).split()]
    assert (ledger["outcome"], ledger["ip"]) == ("accepted", VISITOR)
