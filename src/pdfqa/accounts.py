"""Registration, login and sessions.

Passwords are hashed with scrypt (standard library) off the event loop; login tokens are random,
handed to the client once, and stored only as SHA-256 hashes, so a database leak reveals none.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import uuid

from pdfqa.errors import InvalidInput, Unauthorized
from pdfqa.resources import Resources
from pdfqa.store import users
from pdfqa.store.users import User

__all__ = ["authenticate", "hash_password", "login", "logout", "register", "verify_password"]

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64 parts)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    parts = (base64.b64encode(salt).decode(), base64.b64encode(digest).decode())
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${parts[0]}${parts[1]}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = base64.b64decode(digest)
    actual = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(expected),
    )
    return hmac.compare_digest(actual, expected)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def register(res: Resources, email: str, password: str) -> User:
    """Create an account; :class:`InvalidInput` for a bad e-mail or short password."""
    email = email.strip()
    if not _EMAIL.match(email) or len(email) > 254:
        raise InvalidInput("Enter a valid e-mail address.")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"The password must have at least {MIN_PASSWORD} characters.")
    hashed = await asyncio.to_thread(hash_password, password)
    async with res.db.acquire() as conn:
        return await users.create_user(conn, uuid.uuid4(), email, hashed)


# Verified against when the e-mail is unknown, so both cases take the same time.
_DUMMY_HASH = (
    "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)


async def login(res: Resources, email: str, password: str) -> tuple[User, str]:
    """Check the credentials and open a session; returns the user and the token."""
    async with res.db.acquire() as conn:
        found = await users.get_by_email(conn, email.strip())
    stored = found.password_hash if found else _DUMMY_HASH
    ok = await asyncio.to_thread(verify_password, password, stored)
    if found is None or not ok:
        raise Unauthorized("Wrong e-mail or password.")
    token = secrets.token_urlsafe(32)
    async with res.db.acquire() as conn:
        await users.create_session(
            conn, token_hash(token), found.user.id, res.settings.session_ttl_s
        )
    return found.user, token


async def authenticate(res: Resources, token: str | None) -> User:
    """The user a token belongs to; :class:`Unauthorized` when missing, unknown or expired."""
    if not token:
        raise Unauthorized("Log in first.")
    async with res.db.acquire() as conn:
        user = await users.session_user(conn, token_hash(token))
    if user is None:
        raise Unauthorized("Your session has expired; log in again.")
    return user


async def logout(res: Resources, token: str) -> None:
    """Revoke a token."""
    async with res.db.acquire() as conn:
        await users.delete_session(conn, token_hash(token))
