"""`clickback serve --server native`: what its own HTTP/1.1 front owes a client beyond
what tests/cli/test_rsgi.py checks on both servers: keep-alive and pipelining, `Expect:
100-continue`, its limits, its timeouts, upgrades, and a clean stop. Raw sockets on
loopback against a real server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import CLICKBACK, Server
from tests.cli.test_rsgi import TOKEN, api, ledger, refid_of, setup_link


@pytest.fixture
def native(sqlite_db: str, tmp_path: Path) -> Iterator[Server]:
    srv = Server(
        sqlite_db,
        tmp_path,
        {
            "CLICKBACK_ADMIN_TOKEN": TOKEN,
            "CLICKBACK_HTTP_IDLE_SECONDS": "1.5",
            "CLICKBACK_HTTP_REQUEST_SECONDS": "1.5",
        },
    )
    srv.start("--server", "native")
    srv.kind = "native"
    yield srv
    srv.stop()


def read_answers(s: socket.socket, count: int, timeout: float = 5) -> list[bytes]:
    """`count` whole answers (each with its Content-Length body) read off `s`."""
    s.settimeout(timeout)
    data = b""
    answers: list[bytes] = []
    while len(answers) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(data) >= end:
                answers.append(data[:end])
                data = data[end:]
                continue
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return answers


def closed(s: socket.socket, timeout: float = 5) -> bool:
    """Whether the server closed `s` (nothing more to read) within `timeout`."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_pipelined_requests_are_answered_in_order_on_one_connection(native: Server) -> None:
    code = setup_link(native)
    refid = refid_of(httpx.get(f"{native.base}/c/{code}"))
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            f"GET /c/{code}?sub1=p1 HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            f"GET /postback?refid={refid}&orderamount=5&ordernumber=PIPE HTTP/1.1\r\n"
            "Host: x\r\n\r\n"
            f"GET /api/v1/advertisers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            f"GET /c/{code}?sub1=p2 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        answers = read_answers(s, 5)
        assert [a.split(b"\r\n")[0] for a in answers] == [
            b"HTTP/1.1 302 Found",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 302 Found",
        ], answers
        assert answers[1].endswith(b"ok") and b'"accepted"' in answers[2]
        assert b'"Shop"' in answers[3]
        assert not any(b"connection: close" in a for a in answers)
        # the same connection goes on serving
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        [ready] = read_answers(s, 1)
        assert ready.endswith(b"ready")
    clicks = api(native, "GET", "/clicks").json()["items"]
    assert {c["sub1"] for c in clicks} >= {"p1", "p2"}


def test_connection_close_and_http_1_0(native: Server) -> None:
    code = setup_link(native)
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(f"GET /c/{code} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 302") and b"connection: close" in answer
        assert closed(s)
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(f"GET /c/{code} HTTP/1.0\r\n\r\n".encode())
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 302") and b"connection: close" in answer
        assert closed(s)
    with socket.create_connection(("127.0.0.1", native.port)) as s:  # 1.0 asking to keep it
        s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        assert len(read_answers(s, 2)) == 2


def test_expect_100_continue_and_a_body_too_large_for_the_api(native: Server) -> None:
    code = setup_link(native)
    refid = refid_of(httpx.get(f"{native.base}/c/{code}"))
    body = f"refid={refid}&orderamount=7&ordernumber=EXP".encode()
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            b"POST /postback HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        s.settimeout(5)
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # sent before the body
        s.sendall(body)
        [answer] = read_answers(s, 1)
        assert b'"accepted"' in answer, answer
    # an upload to the API past the limit, announced: refused before it is sent
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            b"POST /api/v1/advertisers HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 999999999\r\n\r\n"
        )
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert closed(s)


def test_a_head_too_large_and_a_request_that_is_not_http(native: Server) -> None:
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
        assert closed(s)
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
        assert closed(s)
    assert httpx.get(f"{native.base}/healthz").text == "ok"  # and the server goes on


def test_an_upgrade_is_not_made_and_the_request_is_read_whole(native: Server) -> None:
    """`curl --http2` on an http:// URL asks for h2c: the postback, its body included,
    is read and answered in HTTP/1.1, and the connection kept."""
    code = setup_link(native)
    refid = refid_of(httpx.get(f"{native.base}/c/{code}"))
    body = f"refid={refid}&orderamount=49.90&ordernumber=H2C".encode()
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            b"POST /postback HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 200") and b'"accepted"' in answer, answer
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answers(s, 1)[0].endswith(b"ok")


def test_an_upload_refused_midway_is_answered_with_the_refusal(native: Server) -> None:
    """An upload to the API cut by the server (a bad chunk, a pause past the request
    time) is answered with that refusal, not the app's 500 at being cut; and one
    without a token asking `Expect: 100-continue` is refused with no `100` first."""
    url = b"POST /api/v1/advertisers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
    auth = url % TOKEN.encode()
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(auth + b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"nam\r\nZZ\r\n')
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 400"), answer
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(auth + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        [answer] = read_answers(s, 1, timeout=10)  # CLICKBACK_HTTP_REQUEST_SECONDS=1.5
        assert answer.startswith(b"HTTP/1.1 408"), answer
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            b"POST /api/v1/advertisers HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 30000000\r\n\r\n"
        )
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 401"), answer
    assert "Traceback" not in native.log.read_text()


def test_idle_connections_and_slow_requests_time_out(native: Server) -> None:
    with socket.create_connection(("127.0.0.1", native.port)) as idle:
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(read_answers(idle, 1)) == 1
        began = time.monotonic()
        assert closed(idle, timeout=10)  # CLICKBACK_HTTP_IDLE_SECONDS=1.5
        assert 1.0 < time.monotonic() - began < 6
    with socket.create_connection(("127.0.0.1", native.port)) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the headers never end
        [answer] = read_answers(slow, 1, timeout=10)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert closed(slow)


def test_a_postback_cut_short_in_a_pipeline_is_kept(native: Server) -> None:
    code = setup_link(native)
    refid = refid_of(httpx.get(f"{native.base}/c/{code}"))
    body = f"refid={refid}&orderamount=20&ordernumber=LATE".encode()
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            f"GET /postback?refid={refid}&orderamount=5&ordernumber=FIRST HTTP/1.1\r\n"
            "Host: x\r\n\r\n".encode()
            + b"POST /postback HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body) + 10, body)
        )
        assert b'"accepted"' in read_answers(s, 1)[0]
    deadline = time.monotonic() + 5
    while len(items := ledger(native)) < 2:
        assert time.monotonic() < deadline, items
        time.sleep(0.05)
    assert items[0]["code"] == "request_incomplete"
    assert items[0]["params"]["ordernumber"] == "LATE", items[0]
    orders = [c["ordernumber"] for c in api(native, "GET", "/conversions").json()["items"]]
    assert orders == ["FIRST"]


def test_sigterm_answers_what_began_and_keeps_every_click(native: Server) -> None:
    code = setup_link(native)
    refids = [refid_of(httpx.get(f"{native.base}/c/{code}")) for _ in range(20)]
    idle = socket.create_connection(("127.0.0.1", native.port))  # kept open, doing nothing
    try:
        assert native.proc is not None
        began = time.monotonic()
        os.killpg(native.proc.pid, signal.SIGTERM)
        assert native.proc.wait(15) == 0
        assert time.monotonic() - began < 8  # an idle connection does not hold the stop
        assert closed(idle)
    finally:
        idle.close()
    native.start("--server", "native")
    stored = {
        c["refid"] for c in api(native, "GET", "/clicks", params={"limit": 100}).json()["items"]
    }
    assert set(refids) <= stored


def run_clickback(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300"}  # an error's box not folded
    return subprocess.run([CLICKBACK, *args], capture_output=True, text=True, timeout=60, env=env)


def test_native_serve_on_a_port_in_use_is_a_clean_error(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_clickback(["serve", "--db", db, "--server", "native", "--port", str(port)])
    assert out.returncode == 2 and "cannot listen on" in out.stdout, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    out = run_clickback(["serve", "--db", db, "--server", "native", "--interface", "asgi"])
    assert out.returncode == 2 and "--server granian" in out.stdout + out.stderr


def workers_of(pid: int) -> set[int]:
    """The worker processes `serve --workers N` started (not multiprocessing's own)."""
    found = set()
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.add(int(child))
    return found


def test_workers_share_the_port_and_one_that_dies_is_replaced(
    sqlite_db: str, tmp_path: Path
) -> None:
    srv = Server(sqlite_db, tmp_path, {"CLICKBACK_ADMIN_TOKEN": TOKEN})
    srv.start("--server", "native", "--workers", "2")
    try:
        assert srv.proc is not None
        deadline = time.monotonic() + 20
        while len(first := workers_of(srv.proc.pid)) < 2:
            assert time.monotonic() < deadline, first
            time.sleep(0.1)
        code = setup_link(srv)
        refids = [refid_of(httpx.get(f"{srv.base}/c/{code}")) for _ in range(10)]
        gone = min(first)
        os.kill(gone, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(now := workers_of(srv.proc.pid)) < 2 or gone in now:
            assert time.monotonic() < deadline, now
            time.sleep(0.1)
        # the port is served throughout: by the other worker, then by both
        refids += [refid_of(httpx.get(f"{srv.base}/c/{code}")) for _ in range(10)]
        assert srv.proc.poll() is None
        os.killpg(srv.proc.pid, signal.SIGTERM)
        assert srv.proc.wait(30) == 0
        assert not workers_of(srv.proc.pid) if Path(f"/proc/{srv.proc.pid}").exists() else True
    finally:
        srv.stop()
    srv.start("--server", "native")
    clicks = api(srv, "GET", "/clicks", params={"limit": 100}).json()["items"]
    assert set(refids) <= {c["refid"] for c in clicks}
    srv.stop()


def test_a_request_refused_in_a_pipeline_is_answered_after_those_before_it(
    native: Server,
) -> None:
    code = setup_link(native)
    refid = refid_of(httpx.get(f"{native.base}/c/{code}"))
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            f"GET /postback?refid={refid}&orderamount=10&ordernumber=PIPE1 HTTP/1.1\r\n"
            f"Host: x\r\n\r\nGET /c/{code}?sub1=before HTTP/1.1\r\nHost: x\r\n\r\n"
            "BAD\x01\r\n\r\n".encode()
        )
        answers = read_answers(s, 3)
        assert [a.split(b"\r\n")[0] for a in answers] == [
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 302 Found",
            b"HTTP/1.1 400 Bad Request",
        ], answers
        assert b'"accepted"' in answers[0]
        assert closed(s)


def test_an_upload_is_passed_on_as_it_comes_and_refused_unread(native: Server) -> None:
    """The app answers an upload without a token before its body came (not held in
    memory first); one with a token gets its body, also when sent slowly in parts."""
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            b"POST /api/v1/offers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 60000000\r\n\r\n{"name": '
        )
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 401") and b"connection: close" in answer, answer
        assert closed(s)
    body = b'{"name": "Slow Shop"}'
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            b"POST /api/v1/advertisers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n" % (TOKEN.encode(), len(body))
        )
        for part in (body[:5], body[5:12], body[12:]):
            time.sleep(0.2)
            s.sendall(part)
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 201"), answer
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # still kept alive
        assert read_answers(s, 1)[0].endswith(b"ok")
    names = [a["name"] for a in api(native, "GET", "/advertisers").json()["items"]]
    assert names == ["Slow Shop"]


def test_a_half_closed_client_gets_its_answer(native: Server) -> None:
    code = setup_link(native)
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(f"GET /c/{code}?sub1=half HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.shutdown(socket.SHUT_WR)
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 302"), answer


def test_utf8_in_a_request_line_split_across_packets(native: Server) -> None:
    code = setup_link(native)
    line = f"GET /c/{code}?sub1=M\u00fcller HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(line[:10])
        time.sleep(0.2)
        s.sendall(line[10:])
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 302"), answer
    assert [c["sub1"] for c in api(native, "GET", "/clicks").json()["items"]] == ["M\u00fcller"]


def test_spaces_and_tabs_left_unencoded_in_a_postbacks_url_are_read_as_escaped(
    native: Server,
) -> None:
    """What a script that does not encode its URL sends (`ordernumber=ORD 7`, a tab in a
    coupon) is read as if encoded, counted and kept, where the parser refused it in
    plain text and no ledger row kept it; a tracking link's line is left as it came."""
    code = setup_link(native)
    refid = refid_of(httpx.get(f"{native.base}/c/{code}"))
    lines = (
        f"GET /postback?refid={refid}&orderamount=10&ordernumber=ORD 7 HTTP/1.1",
        f"GET /postback?refid={refid}&orderamount=10&ordernumber=ORD 8&coupon=A\tB HTTP/1.1",
    )
    for line in lines:
        with socket.create_connection(("127.0.0.1", native.port)) as s:
            s.sendall(f"{line}\r\nHost: x\r\n\r\n".encode())
            [answer] = read_answers(s, 1)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            assert b'"accepted"' in answer, answer
    orders = [c["ordernumber"] for c in api(native, "GET", "/conversions").json()["items"]]
    assert sorted(orders) == ["ORD 7", "ORD 8"], orders
    for other in (f"/c/{code}?sub1=a b", "/postback/../api/v1/offers?x=a b", "/postbacks?a b"):
        with socket.create_connection(("127.0.0.1", native.port)) as s:
            s.sendall(f"GET {other} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            [answer] = read_answers(s, 1)
            assert answer.startswith(b"HTTP/1.1 400"), (other, answer)


def test_postbacks_too_large_or_stalled_are_kept_with_what_came(native: Server) -> None:
    code = setup_link(native)
    refid = refid_of(httpx.get(f"{native.base}/c/{code}"))
    big = f"refid={refid}&orderamount=1&ordernumber=BIG1&pad=".encode() + b"x" * 20000
    r = httpx.post(
        f"{native.base}/postback",
        content=big,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413, r.text
    [row] = ledger(native)
    assert row["code"] == "request_too_large" and row["params"]["ordernumber"] == "BIG1", row
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            b"POST /postback HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n"
            + f"refid={refid}&ordernumber=STALL".encode()
        )
        # CLICKBACK_HTTP_REQUEST_SECONDS=1.5: the tracker's own answer, the body cut short
        [answer] = read_answers(s, 1, timeout=10)
        assert answer.startswith(b"HTTP/1.1 400") and b"request_incomplete" in answer, answer
        assert b"connection: close" in answer and closed(s)
    deadline = time.monotonic() + 5
    while len(items := ledger(native)) < 2:
        assert time.monotonic() < deadline, items
        time.sleep(0.05)
    assert items[0]["code"] == "request_incomplete"
    assert items[0]["params"]["ordernumber"] == "STALL", items[0]


def test_http_details_expect_1_0_no_content_and_odd_targets(native: Server) -> None:
    code = setup_link(native)
    with socket.create_connection(("127.0.0.1", native.port)) as s:  # any case
        s.sendall(
            b"POST /postback HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n"
            b"Content-Length: 3\r\n\r\n"
        )
        s.settimeout(5)
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    with socket.create_connection(("127.0.0.1", native.port)) as s:  # not to HTTP/1.0
        s.sendall(
            b"POST /postback HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
        )
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 400") and b"100 Continue" not in answer, answer
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        [answer] = read_answers(s, 1)
        assert b"connection: keep-alive" in answer.lower(), answer
        # a streamed answer to HTTP/1.0: no chunks, it ends with the connection
        s.sendall(
            f"GET /api/v1/clicks/export HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        s.settimeout(5)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        head, _, text = data.partition(b"\r\n\r\n")
        assert b"connection: close" in head and b"transfer-encoding" not in head, head
        assert text.startswith(b"refid,"), text[:100]
    assert api(native, "PUT", "/offers/1/caps/1", json={"daily_cap": 5}).status_code == 200
    r = api(native, "DELETE", "/offers/1/caps/1")
    assert r.status_code == 204 and "content-length" not in r.headers, r.headers
    for target in (f"/c/{code}#frag", f"http://tracker.example/c/{code}?sub1=abs"):
        with socket.create_connection(("127.0.0.1", native.port)) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            [answer] = read_answers(s, 1)
            assert answer.startswith(b"HTTP/1.1 302"), (target, answer)


def test_upgrades_pipelined_split_or_in_any_case_keep_their_bodies(native: Server) -> None:
    """However an Upgrade comes (behind a request whose body ends in the same packet,
    its header in a packet of its own, in any case), the postback's body is read; a
    body holding a line `upgrade: …` is kept as it was sent."""
    code = setup_link(native)
    refid = refid_of(httpx.get(f"{native.base}/c/{code}"))

    def postback(order: str, upgrade: bytes = b"") -> bytes:
        body = f"refid={refid}&orderamount=5&ordernumber={order}".encode()
        return (
            b"POST /postback HTTP/1.1\r\nHost: x\r\n%s"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (upgrade, len(body), body)
        )

    h2c = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n"
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first = postback("U1")
        s.sendall(first[:-3])
        time.sleep(0.2)
        s.sendall(first[-3:] + postback("U2", h2c))  # pipelined behind a body's end
        time.sleep(0.2)
        mixed = postback("U3", h2c.replace(b"Upgrade: h2c", b"upGrade: h2c"))
        split = mixed.index(b"upGrade")
        s.sendall(mixed[:split])  # the header name starts the next packet
        time.sleep(0.2)
        s.sendall(mixed[split:])
        answers = read_answers(s, 3)
        assert all(b'"accepted"' in a for a in answers), answers
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # and it goes on
        assert read_answers(s, 1)[0].endswith(b"ok")
    note = "line1\nupgrade: yes"
    r = httpx.post(
        f"{native.base}/postback",
        files={"coupon": (None, note)},
        data={"refid": refid, "orderamount": "1", "ordernumber": "U4"},
    )
    assert r.json()["status"] == "accepted", r.text
    coupons = {
        c["ordernumber"]: c["coupon"] for c in api(native, "GET", "/conversions").json()["items"]
    }
    assert coupons["U4"] == note and {"U1", "U2", "U3"} <= set(coupons)


def test_a_client_that_does_not_read_is_not_answered_into_memory(native: Server) -> None:
    """Requests piled up by a client that reads none of its answers are answered only
    as it reads, and the connection is dropped once it has not read for
    CLICKBACK_HTTP_IDLE_SECONDS (1.5 here)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", native.port))
    try:
        s.settimeout(10)
        s.sendall(b"GET /ui/static/uplot-1.6.32.iife.min.js HTTP/1.1\r\nHost: x\r\n\r\n" * 600)
        time.sleep(5)
        s.settimeout(5)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    finally:
        s.close()
    # what the kernel's buffers held (tens), not all 600 answers kept in the server's memory
    assert data.count(b"HTTP/1.1 200") < 300, data.count(b"HTTP/1.1 200")
    assert httpx.get(f"{native.base}/healthz").text == "ok"


def test_a_pipelined_postback_waiting_to_continue_is_told_in_its_turn(native: Server) -> None:
    code = setup_link(native)
    refid = refid_of(httpx.get(f"{native.base}/c/{code}"))
    body = f"refid={refid}&orderamount=7&ordernumber=EXP2".encode()
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            f"GET /c/{code} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            + b"POST /postback HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        s.settimeout(5)
        data = b""
        while b"100 Continue\r\n\r\n" not in data:  # the click's 302, then the 100
            chunk = s.recv(65536)
            assert chunk, data  # not closed: the postback refused as cut
            data += chunk
        assert data.startswith(b"HTTP/1.1 302") and data.endswith(b"\r\n\r\n"), data
        s.sendall(body)
        [answer] = read_answers(s, 1)
        assert b'"accepted"' in answer, answer


def test_many_upgrades_in_one_packet_and_a_coding_not_chunked(native: Server) -> None:
    """Upgrades pipelined in one packet are read one after another (not one call
    within another: 520 of them overflowed the stack); an upgrade's body in a
    Transfer-Encoding that is not chunked is refused, as it is without the upgrade."""
    one = b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(one * 600 + b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        answers = read_answers(s, 601, timeout=20)
        assert len(answers) == 601 and all(a.endswith(b"ok") for a in answers), len(answers)
    with socket.create_connection(("127.0.0.1", native.port)) as s:
        s.sendall(
            b"POST /healthz HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            b"Transfer-Encoding: gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        [answer] = read_answers(s, 1)
        assert answer.startswith(b"HTTP/1.1 400") and b"Transfer-Encoding" in answer, answer
        assert closed(s)
    assert "RecursionError" not in native.log.read_text()
