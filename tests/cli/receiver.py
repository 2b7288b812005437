"""A real HTTP receiver on loopback for outbound postbacks, scripted to fail for a while.

`script` is a list of behaviours, one per request, the last repeating: an int is the
status to answer, a float is seconds to stall before answering 200 (a timeout when it is
longer than the sender waits: the receiver has it, the sender sends it again, and a
deduplicating receiver keeps one by Idempotency-Key). Every request is recorded."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Hit:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    script: list[int | float]
    hits: list[Hit] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # set: every request waits for it to be set before it is answered (and recorded)
    hold: threading.Event | None = None
    arrived: int = 0  # requests that came, answered or not

    def next_behaviour(self) -> int | float:
        with self.lock:
            n = len(self.hits)
        return self.script[min(n, len(self.script) - 1)]

    def delivered(self) -> dict[str, Hit]:
        """Successful hits by Idempotency-Key: what a deduplicating receiver keeps."""
        out: dict[str, Hit] = {}
        for hit in self.hits:
            if hit.status == 200:
                out.setdefault(hit.headers["idempotency-key"], hit)
        return out

    def wait_for(self, count: int, timeout: float = 30) -> dict[str, Hit]:
        deadline = time.monotonic() + timeout
        while len(self.delivered()) < count:
            assert time.monotonic() < deadline, f"only {len(self.delivered())} of {count} arrived"
            time.sleep(0.05)
        return self.delivered()


def verify_signature(secret: str, header: str, payload: str, skew: int = 300) -> bool:
    """The receiver's side of `X-Clickback-Signature: t=<unix>,v1=<hex>`, as documented."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.{payload}".encode(), hashlib.sha256)
    fresh = abs(time.time() - int(parts["t"])) <= skew
    return fresh and hmac.compare_digest(expected.hexdigest(), parts["v1"])


@contextmanager
def receiving(
    script: list[int | float],
    host: str = "127.0.0.1",
    port: int = 0,
    hold: threading.Event | None = None,
) -> Iterator[Receiver]:
    """A receiver listening on `host` (any loopback address) and `port` (0: a free one);
    with `hold`, each request is answered only once it is set."""
    receiver = Receiver(script, hold=hold)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            with receiver.lock:
                receiver.arrived += 1
            if receiver.hold is not None:
                receiver.hold.wait(60)
            behaviour = receiver.next_behaviour()
            status = 200
            if isinstance(behaviour, float):
                time.sleep(behaviour)  # the sender may give up first: it will send again
            else:
                status = behaviour
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            url = f"http://{self.headers['host']}{self.path}"
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                receiver.hits.append(Hit(self.command, url, headers, body, status))
            try:
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the sender gave up waiting

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # the listen backlog: socketserver's 5 drops the SYNs of a sender's concurrent
        # postbacks past it, and each dropped one waits a second to be sent again
        request_queue_size = 128

    server = Server((host, port), Handler)
    server.daemon_threads = True
    receiver.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
