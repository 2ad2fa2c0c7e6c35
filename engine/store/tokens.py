"""Bearer tokens for the JSON API (``kefu users token``).

A token is 32 random bytes (URL-safe text with a ``kefu_`` prefix) shown once when it is made; the database
keeps its SHA-256 only, so a leaked table grants nothing. A token acts as its user: the same roles, groups and
checks as that user in the web UI. Revoking stamps ``revoked_at``; an inactive user's tokens stop working too.
"""
from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import bindparam, select

from engine.store.tables import ApiToken, User
from engine.errors import InvalidInput

PREFIX = "kefu_"
MAX_LABEL = 200


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def check_label(label) -> str | None:
    if label is None:
        return None
    if not isinstance(label, str) or len(label) > MAX_LABEL:
        raise InvalidInput(f"a token label is text of at most {MAX_LABEL} characters")
    return label.strip() or None


def create(s, user: User, label: str | None, now) -> tuple[str, ApiToken]:
    token = new_token()
    row = ApiToken(user_id=user.id, label=check_label(label), token_hash=digest(token), created_at=now)
    s.add(row)
    s.flush()
    return token, row


def revoke(s, user: User, now) -> int:
    rows = list(s.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))))
    for row in rows:
        row.revoked_at = now
    return len(rows)


# Asked on every API request: plain columns, no ORM objects.
_USER_OF = (select(User.name, User.display_name, User.roles, User.groups, User.active)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None),
                   User.active.is_(True)))


def user_of(db, token: str):
    """The active user a live token belongs to (a tuple: name, display_name, roles, groups, active), else None
    (unknown, revoked, or inactive user)."""
    if not token or not isinstance(token, str) or len(token) > 200:
        return None
    return db.read_one(_USER_OF, {"token_hash": digest(token)})
