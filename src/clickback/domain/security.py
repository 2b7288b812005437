"""Who may fire an advertiser's postbacks: its token, an IP allowlist, a signature.

The signature, when an advertiser sets a signing secret, is `sig` = hex HMAC-SHA256 under
that secret of the canonical string: every other parameter (including the required `ts`,
Unix seconds), sorted by name, each as `name=value` with both URL-encoded (RFC 3986,
nothing left unescaped but `A-Z a-z 0-9 - . _ ~`), joined by `&`. `ts` must be within
the allowed clock skew of the server's time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from clickback.domain.models import Advertiser, FieldError
from clickback.domain.postback import sent_instead
from clickback.errors import InputError


@dataclass(frozen=True, slots=True)
class Access:
    """The optional checks of one advertiser, parsed once."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    signing_secret: str
    require_signature: bool


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`203.0.113.0/24, 2001:db8::/32, 198.51.100.7` -> networks; InputError when bad."""
    out = []
    for part in text.replace("\n", ",").split(","):
        if part.strip():
            try:
                out.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise InputError(
                    f"{part.strip()!r} is not an IP address or CIDR",
                    code="invalid_cidr",
                    field="ip_allowlist",
                ) from None
    return tuple(out)


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def parse_ip(text: str) -> Address | None:
    """The address `text` names (an IPv4-mapped IPv6 address as its IPv4), or None."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def in_networks(ip: str, networks: Networks) -> bool:
    addr = parse_ip(ip)
    return addr is not None and any(addr in net for net in networks)


@lru_cache(maxsize=256)
def is_trusted_proxy(ip: str, networks: Networks) -> bool:
    """`in_networks` for the peer of a request: the few load balancers in front of the
    tracker, asked about on every request, so their answer is kept."""
    return in_networks(ip, networks)


@lru_cache(maxsize=64)
def _v4_ranges(networks: Networks) -> tuple[tuple[int, int], ...]:
    """The IPv4 networks as (address, mask) integers."""
    return tuple(
        (int(n.network_address), int(n.netmask))
        for n in networks
        if isinstance(n, ipaddress.IPv4Network)
    )


def _trusted_hop(hop: str, trusted: Networks) -> bool | None:
    """Whether a forwarded address is a trusted proxy; None when it is no address. A
    dotted IPv4 address (every visitor's, on most traffic) is read by `inet_pton`, which
    refuses what `ipaddress` refuses (leading zeros, missing or large parts) at a tenth
    of the cost; anything else goes through `ipaddress`."""
    try:
        number = int.from_bytes(socket.inet_pton(socket.AF_INET, hop), "big")
    except OSError:
        addr = parse_ip(hop)
        return None if addr is None else any(addr in net for net in trusted)
    return any(number & mask == net for net, mask in _v4_ranges(trusted))


def _without_port(hop: str) -> str | None:
    """A hop some proxies write with the client's port (Azure's application gateway):
    `203.0.113.9:51234`, `[2001:db8::1]:51234` or `[2001:db8::1]`; None for another."""
    if hop.startswith("["):
        inner, bracket, rest = hop[1:].partition("]")
        port_ok = not rest or (rest[0] == ":" and rest[1:].isdigit())
        return inner if bracket and port_ok else None
    host, colon, port = hop.partition(":")
    return host if colon and port.isdigit() and "." in host else None


def forwarded_ip(peer: str, forwarded_for: str | None, trusted: Networks) -> str:
    """The client's address: the direct peer, or, when that is a trusted proxy, the
    nearest address in `X-Forwarded-For` that is not itself a trusted proxy."""
    if not trusted or forwarded_for is None or not is_trusted_proxy(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        proxy = _trusted_hop(hop, trusted)
        if proxy is None and (bare := _without_port(hop)) is not None:
            hop, proxy = bare, _trusted_hop(bare, trusted)
        if proxy is None:
            return peer  # a garbled header: believe only the peer
        if not proxy:
            return hop
    return (_without_port(hops[0]) or hops[0]) if hops else peer


def canonical(params: Mapping[str, str]) -> str:
    return "&".join(
        f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(params.items()) if k != "sig"
    )


def sign(secret: str, params: Mapping[str, str]) -> str:
    return hmac.new(secret.encode(), canonical(params).encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=4096)
def _access(ip_allowlist: str, signing_secret: str, require_signature: bool) -> Access:
    return Access(parse_networks(ip_allowlist), signing_secret, require_signature)


OTHER_ADVERTISER = (
    "the token sent is the postback token of another advertiser than the one whose offer"
    " this RefID's click was on: the RefID is not one your tracking links gave, so the sale"
    " is not counted; fire the postback with the RefID your landing page received"
)


def check(
    advertiser: Advertiser,
    token: str,
    ip: str,
    params: Mapping[str, str],
    now_s: int,
    skew_s: int,
    owner: int | None = None,
) -> FieldError | None:
    """The first refusal (token, IP, signature), or None when the postback may proceed.
    `owner`: the advertiser whose postback token `token` is, if one's is. Another's is
    refused, its token required or not: the RefID is of a click on an offer of another
    advertiser than the one firing, who would be billed for the sale, its affiliate paid."""
    own = hmac.compare_digest(token.encode(), advertiser.postback_token.encode())
    if owner is not None and owner != advertiser.id and not own:  # (two may share one)
        return FieldError("token", "token_invalid", OTHER_ADVERTISER)
    if advertiser.require_token and not own:
        if not token:
            return FieldError(
                "token",
                "token_missing",
                "this advertiser's postbacks need its postback token, sent as `token`"
                + sent_instead(params, "token"),
            )
        return FieldError(
            "token",
            "token_invalid",
            "the token sent does not match this advertiser's postback token",
        )
    access = _access(
        advertiser.ip_allowlist, advertiser.signing_secret, advertiser.require_signature
    )
    if access.networks and not in_networks(ip, access.networks):
        return FieldError(
            "ip",
            "ip_not_allowed",
            f"{ip or 'this address'} may not fire postbacks for this advertiser",
        )
    if access.require_signature or (access.signing_secret and "sig" in params):
        sig = params.get("sig", "")
        # required with no secret to check it against (a row stored before the two were
        # checked together): no signature matches, rather than none being needed
        secret = access.signing_secret
        expected = sign(secret, params).encode() if secret else b""
        if not sig or not secret or not hmac.compare_digest(expected, sig.lower().encode()):
            return FieldError(
                "sig",
                "signature_invalid",
                "`sig` is missing or does not match the HMAC-SHA256 of the other parameters",
            )
        ts = params.get("ts", "")
        if not (ts.isascii() and ts.isdigit()) or abs(now_s - int(ts)) > skew_s:
            return FieldError(
                "ts",
                "signature_expired",
                f"`ts` must be Unix seconds within {skew_s} s of the server's clock",
            )
    return None
