"""Signing in and resolving callers: users and passwords, browser sessions, one-time sign-in
links, API keys, and the Actor (role in a project) each request runs as.

Secrets (session cookies, sign-in links, API keys) are random, shown once, and stored only as
SHA-256 hashes; passwords are hashed with argon2.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from promptloop.core.access import Actor, Role
from promptloop.core.errors import InvalidInput, NotFound, Unauthenticated
from promptloop.services.ratelimit import RateLimiter
from promptloop.store.models import ApiKey, Membership, Project, SignInLink, User, WebSession
from promptloop.store.types import utcnow

API_KEY_PREFIX = "plk_"
MIN_PASSWORD_LENGTH = 10
FIRST_ADMIN_EMAIL = "admin@localhost"
LINK_TTL = timedelta(hours=24)
_LAST_USED_EVERY = timedelta(seconds=60)
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Principal:
    """Who sent a request: a signed-in user or an API key (with its project)."""

    kind: Literal["user", "api_key"]
    name: str
    user: User | None = None
    api_key: ApiKey | None = None
    address: str | None = None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Users and passwords -------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or not domain or " " in email or len(email) > 320:
        raise InvalidInput(f"{email!r} is not an email address.")
    return email


def create_user(
    session: Session,
    *,
    email: str,
    name: str | None = None,
    password: str | None = None,
    server_admin: bool = False,
) -> User:
    email = normalize_email(email)
    if session.scalars(select(User).where(User.email == email)).first():
        raise InvalidInput(f"A user with email {email!r} already exists.")
    user = User(email=email, name=name or email.split("@")[0], server_admin=server_admin)
    if password is not None:
        _set_password(user, password)
    session.add(user)
    session.flush()
    return user


def get_user_by_email(session: Session, *, email: str) -> User:
    user = session.scalars(select(User).where(User.email == normalize_email(email))).first()
    if user is None:
        raise NotFound(f"No user with email {email!r}.")
    return user


def _set_password(user: User, password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters.")
    user.password_hash = _hasher.hash(password)
    user.password_changed_at = utcnow()


def change_password(session: Session, *, user: User, current: str | None, new: str) -> None:
    """Set a new password; the current one is required unless none was ever set (a new account)."""
    if user.password_hash is not None and not _verify(user, current or ""):
        raise InvalidInput("The current password is wrong.")
    _set_password(user, new)
    # Signing in elsewhere with the old password must stop working: end the other sessions.
    session.execute(
        update(WebSession).where(WebSession.user_id == user.id).values(expires_at=utcnow())
    )


def _verify(user: User, password: str) -> bool:
    if user.password_hash is None:
        return False
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def update_profile(session: Session, *, user: User, email: str | None, name: str | None) -> User:
    if email is not None and normalize_email(email) != user.email:
        email = normalize_email(email)
        if session.scalars(select(User).where(User.email == email)).first():
            raise InvalidInput(f"A user with email {email!r} already exists.")
        user.email = email
    if name:
        user.name = name.strip()[:200]
    return user


# Sign-in -----------------------------------------------------------------------------------


def sign_in(
    session: Session, *, email: str, password: str, limiter: RateLimiter, address: str | None
) -> User:
    """The user whose password this is; Unauthenticated otherwise (never saying which part was wrong)."""
    limiter.hit(f"ip:{address}", what="sign-in attempts from this address")
    limiter.hit(f"email:{email.strip().lower()}", what="sign-in attempts for this account")
    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        _hasher.hash(
            password
        )  # spend the same time as a real check: no account enumeration by timing
        raise Unauthenticated("Wrong email or password.")
    if not _verify(user, password):
        raise Unauthenticated("Wrong email or password.")
    if _hasher.check_needs_rehash(user.password_hash or ""):
        user.password_hash = _hasher.hash(password)
    return user


def start_web_session(session: Session, *, user: User, days: int) -> tuple[str, str]:
    """A new browser session for `user`: (cookie value, CSRF token)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=digest(token),
            user_id=user.id,
            csrf_token=csrf,
            expires_at=session_expiry(days=days),
        )
    )
    return token, csrf


def session_expiry(*, days: int) -> datetime:
    return utcnow() + timedelta(days=days)


def resolve_web_session(session: Session, *, token: str) -> tuple[User, WebSession] | None:
    row = session.execute(
        select(User, WebSession)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.token_hash == digest(token), WebSession.expires_at > utcnow())
    ).first()
    return (row[0], row[1]) if row else None


def end_web_session(session: Session, *, token: str) -> None:
    session.execute(
        update(WebSession).where(WebSession.token_hash == digest(token)).values(expires_at=utcnow())
    )


def create_sign_in_link(session: Session, *, user: User) -> str:
    """A one-time token that signs `user` in (valid 24 h); earlier unused ones stop working."""
    now = utcnow()
    session.execute(
        update(SignInLink)
        .where(SignInLink.user_id == user.id, SignInLink.used_at.is_(None))
        .values(used_at=now)
    )
    token = secrets.token_urlsafe(32)
    session.add(SignInLink(token_hash=digest(token), user_id=user.id, expires_at=now + LINK_TTL))
    return token


def redeem_sign_in_link(session: Session, *, token: str) -> User:
    now = utcnow()
    link = session.scalars(
        select(SignInLink).where(SignInLink.token_hash == digest(token)).with_for_update()
    ).first()
    if link is None or link.used_at is not None or link.expires_at <= now:
        raise Unauthenticated(
            "This sign-in link is invalid, used or expired. Ask an admin for a new one "
            "(or run `promptloop users link EMAIL` on the server)."
        )
    link.used_at = now
    user = session.get(User, link.user_id)
    assert user is not None
    return user


def first_admin_link(session: Session, *, project: Project) -> str | None:
    """On a server nobody can sign in to yet, ensure the first admin exists and return a fresh
    one-time sign-in token for them; None once any user has a password."""
    if session.scalar(
        select(func.count()).select_from(User).where(User.password_hash.is_not(None))
    ):
        return None
    admin = session.scalars(
        select(User).where(User.server_admin.is_(True)).order_by(User.id)
    ).first()
    if admin is None:
        admin = create_user(session, email=FIRST_ADMIN_EMAIL, name="Admin", server_admin=True)
        session.add(Membership(project_id=project.id, user_id=admin.id, role=Role.admin.name))
    return create_sign_in_link(session, user=admin)


# API keys ------------------------------------------------------------------------------------


def new_api_key_secret() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def resolve_api_key(session: Session, *, secret: str) -> ApiKey:
    """The live key with this secret; Unauthenticated for unknown or revoked keys."""
    if secret.startswith("plf_"):
        raise Unauthenticated(
            "This is a feedback token: it works only to give feedback on its one log, with "
            "POST /api/v1/feedback. Use an API key ('plk_…') for anything else."
        )
    key = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest(secret))).first()
    if key is None:
        raise Unauthenticated(
            "This API key is not valid. Create one with `promptloop keys create`."
        )
    if key.revoked_at is not None:
        raise Unauthenticated(f"API key {key.prefix}… was revoked on {key.revoked_at:%Y-%m-%d}.")
    return key


def last_use_is_stale(key: ApiKey) -> bool:
    """Whether the key's last-used time is old enough to record again (once a minute at most,
    so that reads do not turn into writes on every call)."""
    return key.last_used_at is None or utcnow() - key.last_used_at > _LAST_USED_EVERY


def touch_api_key(session: Session, *, key: ApiKey) -> None:
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=utcnow()))


# Actors --------------------------------------------------------------------------------------


def actor_for(session: Session, *, principal: Principal, project: Project) -> Actor:
    """The principal acting in `project`: its role there. A project the principal cannot see is
    NotFound, exactly like one that does not exist, so names cannot be probed."""
    hidden = NotFound(
        f"No project named {project.name!r}. List projects with GET /api/v1/projects."
    )
    if principal.api_key is not None:
        if principal.api_key.project_id != project.id:
            raise hidden
        role = Role[principal.api_key.role]
        return Actor(
            kind="api_key",
            id=principal.api_key.id,
            name=principal.name,
            role=role,
            address=principal.address,
        )
    user = principal.user
    assert user is not None
    if user.server_admin:
        role = Role.admin
    else:
        membership = session.scalars(
            select(Membership).where(
                Membership.project_id == project.id, Membership.user_id == user.id
            )
        ).first()
        if membership is None:
            raise hidden
        role = Role[membership.role]
    return Actor(
        kind="user",
        id=user.id,
        name=user.email,
        role=role,
        address=principal.address,
        server_admin=user.server_admin,
    )
