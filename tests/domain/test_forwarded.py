"""The client's address behind trusted proxies (`X-Forwarded-For`)."""

from __future__ import annotations

import pytest

from clickback.domain.security import forwarded_ip, parse_networks

TRUSTED = parse_networks("127.0.0.1, 10.0.0.0/8")


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9"),  # the proxy as IPv4-mapped
        ("127.0.0.1", "198.51.100.1, 203.0.113.9, 10.1.2.3", "203.0.113.9"),  # nearest
        ("127.0.0.1", "10.1.2.3, 10.4.5.6", "10.1.2.3"),  # every hop a proxy: the first
        ("127.0.0.1", " 2001:db8::5 ", "2001:db8::5"),
        ("127.0.0.1", "203.0.113.9, not-an-ip", "127.0.0.1"),  # garbled: only the peer
        ("127.0.0.1", " , ", "127.0.0.1"),
        ("127.0.0.1", "203.0.113.09", "127.0.0.1"),  # a leading zero: no address
        ("127.0.0.1", "203.0.113", "127.0.0.1"),
        ("127.0.0.1", "203.0.113.256", "127.0.0.1"),
        ("127.0.0.1", "203.0.113.9, 10.255.255.255", "203.0.113.9"),  # the range's edge
        ("127.0.0.1", "203.0.113.9, 11.0.0.0", "11.0.0.0"),  # just past it
        ("127.0.0.1", "::ffff:10.1.2.3, 198.51.100.4", "198.51.100.4"),
        ("127.0.0.1", "198.51.100.4, ::ffff:10.1.2.3", "198.51.100.4"),  # mapped proxy
        ("127.0.0.1", "203.0.113.9:51234", "203.0.113.9"),  # with the client's port
        ("127.0.0.1", "[2001:db8::5]:51234, 10.1.2.3:443", "2001:db8::5"),
        ("127.0.0.1", "[2001:db8::5]", "2001:db8::5"),
        ("127.0.0.1", "203.0.113.9:port", "127.0.0.1"),
        ("127.0.0.1", "[2001:db8::5", "127.0.0.1"),
        ("127.0.0.1", "[2001:db8::5]junk", "127.0.0.1"),
        ("127.0.0.1", "10.1.2.3:443, 10.4.5.6", "10.1.2.3"),  # every hop a proxy: no port
        ("127.0.0.1", None, "127.0.0.1"),
        ("192.0.2.7", "203.0.113.9", "192.0.2.7"),  # an untrusted peer's header is ignored
    ],
)
def test_forwarded_ip(peer: str, header: str | None, client: str) -> None:
    assert forwarded_ip(peer, header, TRUSTED) == client
    assert forwarded_ip(peer, header, ()) == peer  # no proxy trusted: always the peer
