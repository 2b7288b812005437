"""Dashboard sessions and CSRF protection.

Logging in to `/ui` takes an API token (admin or read, the same as for `/api/v1`; never an
affiliate token, which reads one affiliate's own traffic through the API alone). The
session cookie holds the SHA-256 hash of that token (never the token), an expiry and a
CSRF value, signed with HMAC-SHA256 under a key kept in the database (so every node
accepts it); it is HttpOnly, SameSite=Strict, and Secure when the tracker is served
over HTTPS. Each request looks the token up again, so revoking it ends its sessions.
Each session also has a random id in the cookie: logging out records that id in the
database until the cookie would have expired, so a copy of the cookie kept elsewhere is
refused from then on, on every node.
Every form that changes something carries the session's CSRF value; the login form,
made before a session exists, carries one that is also set as a short-lived cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from clickback.domain.refid import new_secret
from clickback.domain.tokens import AFFILIATE
from clickback.web.http import hash_token

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp

COOKIE = "clickback_session"
LOGIN_COOKIE = "clickback_login"
MAX_AGE = 12 * 3600
KEY_META = "ui_session_key"


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: str
    role: str  # admin | read
    actor: str  # recorded on what the session changes
    csrf: str
    sid: str  # ended server-side by logging out
    expires: int  # seconds since the epoch

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, app: ClickbackApp):
        self.app = app
        self._key: bytes | None = None

    async def key(self) -> bytes:
        if self._key is None:
            stored = await self.app.store.get_or_set_meta(KEY_META, new_secret())
            self._key = stored.encode()
        return self._key

    async def seal(self, payload: dict[str, Any]) -> str:
        body = _b64(orjson.dumps(payload))
        mac = hmac.digest(await self.key(), body.encode(), hashlib.sha256)
        return f"{body}.{_b64(mac)}"

    async def unseal(self, value: str) -> dict[str, Any] | None:
        body, _, mac = value.partition(".")
        try:
            expected = hmac.digest(await self.key(), body.encode(), hashlib.sha256)
            if not hmac.compare_digest(expected, _unb64(mac)):
                return None
            data = orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("exp", 0) < time.time():
            return None
        return data

    async def check_token(self, token: str) -> tuple[str, str, str] | None:
        """(token hash, role, actor) for a valid API token, else None."""
        return await self.check_hash(hash_token(token))

    async def check_hash(self, token_hash: str) -> tuple[str, str, str] | None:
        configured = self.app.settings.admin_token
        if configured and hmac.compare_digest(token_hash, hash_token(configured)):
            return token_hash, "admin", "ui:admin_token"
        row = await self.app.store.find_token(token_hash)
        if row is None:
            return None
        return token_hash, str(row["role"]), f"ui:token:{row['id']}:{row['name']}"

    async def current(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        data = await self.unseal(raw) if raw else None
        # a cookie without a session id could not be ended by logging out: no session
        if data is None or not isinstance(data.get("h"), str) or not data.get("sid"):
            return None
        found = await self.check_hash(data["h"])
        if found is None or found[1] == AFFILIATE:  # an operator tool (`UI.login`)
            return None
        if await self.app.store.session_ended(str(data["sid"])):
            return None
        return Session(
            found[0],
            found[1],
            found[2],
            str(data.get("csrf", "")),
            str(data["sid"]),
            int(data["exp"]),
        )

    async def start(self, response: Response, request: Request, token_hash: str) -> None:
        payload = {
            "h": token_hash,
            "exp": int(time.time()) + MAX_AGE,
            "csrf": new_csrf(),
            "sid": secrets.token_urlsafe(16),
        }
        self.set_cookie(response, request, COOKIE, await self.seal(payload), MAX_AGE)

    async def end(self, session: Session) -> None:
        """Refuses this session's cookie from now on, wherever a copy of it is."""
        await self.app.store.end_session(session.sid, session.expires * 1_000_000)

    def set_cookie(
        self, response: Response, request: Request, name: str, value: str, age: int
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=age,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https"
            or self.app.settings.public_url.startswith("https://"),
        )


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())
