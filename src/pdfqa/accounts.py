"""Registration, login, sessions, password changes and login throttling.

Passwords are hashed with scrypt (standard library) at OWASP's minimum cost (N=2**17, r=8, p=1,
128 MiB; ``PDFQA_SCRYPT_LOG_N``) in a pool of two threads, so a flood of logins queues instead
of exhausting memory or the event loop; a hash made at another cost is replaced on the next
successful login. Login tokens are random, handed to the client once and stored only as SHA-256
hashes. A session ends at its expiry or after ``session_idle_s`` unused, whichever comes first.

Failed logins are counted per (account, client address) in Redis: after ``login_attempts``
failures in ``login_window_s`` that pair gets ``429`` until the window ends, without spending a
hash. Keyed on the pair, an attacker elsewhere can never lock the owner out, and any lock-out
ends with its window. (Litestar's rate-limit middleware, per client address, caps the volume.)
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import re
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from uuid import UUID

import msgspec

from pdfqa.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized
from pdfqa.resources import Resources
from pdfqa.settings import Settings, csv
from pdfqa.store import users
from pdfqa.store.users import User

__all__ = [
    "authenticate",
    "change_password",
    "create_user",
    "hash_password",
    "is_admin",
    "login",
    "logout",
    "logout_everywhere",
    "needs_rehash",
    "register",
    "require_admin",
    "set_admin",
    "verify_password",
]

T = TypeVar("T")

SCRYPT_R, SCRYPT_P = 8, 1
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
HASH_THREADS = 2
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@functools.cache
def _hasher() -> ThreadPoolExecutor:
    """The threads that run scrypt (created on first use, never at import)."""
    return ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="scrypt")


async def _off_loop(fn: functools.partial[T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_hasher(), fn)


def _scrypt(password: str, salt: bytes, *, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * r * n + 2**20
    )


def hash_password(password: str, log_n: int = 17) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64 parts)."""
    n = 2**log_n
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    parts = (base64.b64encode(salt).decode(), base64.b64encode(digest).decode())
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${parts[0]}${parts[1]}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = _scrypt(
            password, base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


def needs_rehash(stored: str, log_n: int) -> bool:
    """Whether ``stored`` was made at other parameters than today's."""
    return not stored.startswith(f"scrypt${2**log_n}${SCRYPT_R}${SCRYPT_P}$")


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def named_admin(settings: Settings, email: str) -> bool:
    """Whether ``PDFQA_ADMIN_EMAILS`` names this address."""
    return email.lower() in {e.lower() for e in csv(settings.admin_emails)}


def is_admin(settings: Settings, user: User) -> bool:
    """Admins: the first registered user and those an admin promoted (``users.is_admin``), and
    the users ``PDFQA_ADMIN_EMAILS`` names (read at run time: no row needs changing)."""
    return user.is_admin or named_admin(settings, user.email)


def _effective(settings: Settings, user: User) -> User:
    """The user with ``is_admin`` as :func:`is_admin` decides it."""
    if user.is_admin or not named_admin(settings, user.email):
        return user
    return msgspec.structs.replace(user, is_admin=True)


def require_admin(settings: Settings, user: User) -> None:
    """:class:`Forbidden` (403) unless ``user`` is an admin."""
    if not is_admin(settings, user):
        raise Forbidden("Only an administrator may do this.")


async def set_admin(res: Resources, actor: User, user_id: UUID, admin: bool) -> User:
    """An admin promotes or demotes another user.

    Refused (409) for a user ``PDFQA_ADMIN_EMAILS`` names (change the setting instead) and for
    demoting oneself (so a deployment never loses its last admin by a slip).
    """
    require_admin(res.settings, actor)
    if not admin and user_id == actor.id:
        raise Conflict("You cannot remove your own admin rights; ask another admin.")
    async with res.db.acquire() as conn:
        target = await users.get_user(conn, user_id)
        if target is None:
            raise NotFound("No such user.")
        if not admin and named_admin(res.settings, target.email):
            raise Conflict("This user is an admin by PDFQA_ADMIN_EMAILS; change that setting.")
        changed = await users.set_admin(conn, user_id, admin)
    assert changed is not None
    return _effective(res.settings, changed)


async def list_users(res: Resources) -> list[User]:
    async with res.db.acquire() as conn:
        found = await users.list_users(conn)
    return [_effective(res.settings, u) for u in found]


def _check_new(email: str, password: str) -> str:
    email = email.strip()
    if not _EMAIL.match(email) or len(email) > 254:
        raise InvalidInput("Enter a valid e-mail address.")
    _check_password(password)
    return email


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"The password must have at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"The password may have at most {MAX_PASSWORD} characters.")


async def _hash(settings: Settings, password: str) -> str:
    return await _off_loop(functools.partial(hash_password, password, settings.scrypt_log_n))


async def _verify(password: str, stored: str) -> bool:
    return await _off_loop(functools.partial(verify_password, password, stored))


async def register(res: Resources, email: str, password: str) -> User:
    """Self-registration, as the settings allow it; :class:`Forbidden` when they do not."""
    settings = res.settings
    if settings.registration == "closed":
        raise Forbidden("Registration is closed; ask an administrator for an account.")
    email = _check_new(email, password)
    domains = {d.lower().lstrip("@") for d in csv(settings.registration_domains)}
    if domains and email.rpartition("@")[2].lower() not in domains:
        raise Forbidden("Registration is open only to addresses of: " + ", ".join(sorted(domains)))
    return await create_user(res, email, password)


async def create_user(res: Resources, email: str, password: str) -> User:
    """Create an account (an admin's path too: no registration rules apply)."""
    email = _check_new(email, password)
    hashed = await _hash(res.settings, password)
    async with res.db.acquire() as conn:
        user = await users.create_user(
            conn, uuid.uuid4(), email, hashed, is_admin=named_admin(res.settings, email)
        )
    return _effective(res.settings, user)


# Verified against when the e-mail is unknown, so both cases take the same time.
_DUMMY_SALT = "AAAAAAAAAAAAAAAAAAAAAA=="
_DUMMY_DIGEST = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def _dummy_hash(log_n: int) -> str:
    return f"scrypt${2**log_n}${SCRYPT_R}${SCRYPT_P}${_DUMMY_SALT}${_DUMMY_DIGEST}"


def _failures_key(settings: Settings, email: str, address: str) -> str:
    """Per deployment (prefixed by its queue name), per (account, address) pair."""
    pair = f"{email.strip().lower()}\x00{address}".encode()
    return f"{settings.queue_name}:login-failures:{hashlib.sha256(pair).hexdigest()}"


async def login(res: Resources, email: str, password: str, address: str) -> tuple[User, str]:
    """Check the credentials from client ``address`` and open a session: (user, token)."""
    settings = res.settings
    key = _failures_key(settings, email, address)
    failures = int(await res.redis.get(key) or 0)
    if failures >= settings.login_attempts:
        wait = int(await res.redis.ttl(key))
        raise RateLimited(
            "Too many failed logins for this account from your address; try again later.",
            retry_after=wait if wait > 0 else settings.login_window_s,
        )
    async with res.db.acquire() as conn:
        found = await users.get_by_email(conn, email.strip())
    stored = found.password_hash if found else _dummy_hash(settings.scrypt_log_n)
    ok = await _verify(password, stored)
    if found is None or not ok:
        async with res.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, settings.login_window_s, nx=True)
            await pipe.execute()
        raise Unauthorized("Wrong e-mail or password.")
    await res.redis.delete(key)
    token = secrets.token_urlsafe(32)
    rehashed = (
        await _hash(settings, password) if needs_rehash(stored, settings.scrypt_log_n) else None
    )
    async with res.db.acquire() as conn, conn.transaction():
        if rehashed is not None:
            await users.set_password(conn, found.user.id, rehashed)
        await users.purge_sessions(conn, settings.session_idle_s)
        await users.create_session(conn, token_hash(token), found.user.id, settings.session_ttl_s)
    return _effective(settings, found.user), token


async def authenticate(res: Resources, token: str | None) -> User:
    """The user a token belongs to; :class:`Unauthorized` when missing, unknown, idle or expired."""
    if not token:
        raise Unauthorized("Log in first.")
    async with res.db.acquire() as conn:
        user = await users.session_user(conn, token_hash(token), res.settings.session_idle_s)
    if user is None:
        raise Unauthorized("Your session has expired; log in again.")
    return _effective(res.settings, user)


async def logout(res: Resources, token: str) -> None:
    """Revoke a token."""
    async with res.db.acquire() as conn:
        await users.delete_session(conn, token_hash(token))


async def logout_everywhere(res: Resources, user_id: UUID) -> int:
    """Revoke every session of the user; returns how many there were."""
    async with res.db.acquire() as conn:
        return await users.delete_sessions(conn, user_id)


async def change_password(
    res: Resources, user: User, current: str, new: str, keep_token: str | None
) -> None:
    """Replace the password after checking the current one; ends every other session."""
    _check_password(new)
    async with res.db.acquire() as conn:
        found = await users.get_by_email(conn, user.email)
    if found is None or not await _verify(current, found.password_hash):
        raise Forbidden("The current password is wrong.")
    hashed = await _hash(res.settings, new)
    keep = token_hash(keep_token) if keep_token else None
    async with res.db.acquire() as conn, conn.transaction():
        await users.set_password(conn, user.id, hashed)
        await users.delete_sessions(conn, user.id, keep=keep)
