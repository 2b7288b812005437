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
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from clickback.domain.models import Advertiser, FieldError
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


def in_networks(
    ip: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def canonical(params: Mapping[str, str]) -> str:
    return "&".join(
        f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(params.items()) if k != "sig"
    )


def sign(secret: str, params: Mapping[str, str]) -> str:
    return hmac.new(secret.encode(), canonical(params).encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=4096)
def _access(ip_allowlist: str, signing_secret: str, require_signature: bool) -> Access:
    return Access(parse_networks(ip_allowlist), signing_secret, require_signature)


def check(
    advertiser: Advertiser,
    token: str,
    ip: str,
    params: Mapping[str, str],
    now_s: int,
    skew_s: int,
) -> FieldError | None:
    """The first refusal (token, IP, signature), or None when the postback may proceed."""
    if advertiser.require_token and not hmac.compare_digest(
        token.encode(), advertiser.postback_token.encode()
    ):
        code = "token_missing" if not token else "token_invalid"
        return FieldError("token", code, "this advertiser's postbacks need its postback token")
    access = _access(
        advertiser.ip_allowlist, advertiser.signing_secret, advertiser.require_signature
    )
    if access.networks and not in_networks(ip, access.networks):
        return FieldError(
            "ip",
            "ip_not_allowed",
            f"{ip or 'this address'} may not fire postbacks for this advertiser",
        )
    if access.signing_secret and (access.require_signature or "sig" in params):
        sig = params.get("sig", "")
        expected = sign(access.signing_secret, params).encode()
        if not sig or not hmac.compare_digest(expected, sig.lower().encode()):
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
