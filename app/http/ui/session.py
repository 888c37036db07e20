"""The console's sign-in: the admin key is the password; the session is an opaque cookie
signed with a key derived from the admin key (HMAC-SHA256), so any gateway process
sharing the key accepts it, and changing the key ends every session.

The cookie is HttpOnly and SameSite=Strict, and Secure when the console is served over
https. It carries an expiry, a random nonce and their signature; nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie

COOKIE = "syncgate_session"
PATH = "/ui"
#: How long a sign-in lasts.
LIFETIME_S = 12 * 3600


def _key(admin_key: str, purpose: str) -> bytes:
    return hmac.new(admin_key.encode(), f"syncgate-console-{purpose}".encode(), "sha256").digest()


def _sign(admin_key: str, message: str) -> str:
    mac = hmac.new(_key(admin_key, "session"), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def csrf_secret(admin_key: str | None) -> str:
    """The secret the CSRF tokens are signed with: derived from the admin key (the same in
    every process), random when there is none (the console is closed then anyway)."""
    if not admin_key:
        return secrets.token_hex(32)
    return _key(admin_key, "csrf").hex()


def new_session(admin_key: str, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + LIFETIME_S)
    message = f"{expires}.{secrets.token_urlsafe(18)}"
    return f"{message}.{_sign(admin_key, message)}"


def valid_session(admin_key: str | None, value: str | None, now: float | None = None) -> bool:
    if not admin_key or not value or value.count(".") != 2:
        return False
    expires, nonce, signature = value.split(".")
    if not expires.isdigit() or int(expires) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature, _sign(admin_key, f"{expires}.{nonce}"))


def key_matches(admin_key: str | None, presented: str) -> bool:
    if not admin_key:
        return False
    return hmac.compare_digest(presented.encode(), admin_key.encode())


def session_cookie(request: Request[Any, Any, Any], value: str, *, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path=PATH,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
