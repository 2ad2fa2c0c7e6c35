"""Users and roles (RULES.md "Roles"), their passwords (``engine.services.passwords``: hashed, and held to the
policy wherever they are set), their web sessions' version and their API tokens."""
from __future__ import annotations

import re

from sqlalchemy import select

from engine.bpmn.vocabulary import ROLES
from engine.errors import InvalidInput, NotAllowed, NotFound
from engine.clock import iso
from engine.services import ownership, shapes
from engine.services.context import Context
from engine.services.passwords import check_password, check_policy, hash_password  # noqa: F401 - re-exported
from engine.store import chain as audit, tokens, writes
from engine.store.tables import User

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
READ_ONLY_ROLES = frozenset({"auditor"})


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not USER_NAME.match(name):
        raise InvalidInput(f"invalid user name {name!r}: letters, digits, '.', '_' or '-', at most 64")
    return name


def check_roles(roles) -> list[str]:
    roles = [r.strip() for r in (roles or []) if r and r.strip()]
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise InvalidInput(f"unknown role(s): {', '.join(unknown)} (roles: {', '.join(ROLES)})")
    if not roles:
        raise InvalidInput(f"at least one role is needed (roles: {', '.join(ROLES)})")
    return list(dict.fromkeys(roles))


class UserService:
    """Add, list and authenticate users; issue and revoke their API tokens; refuse read-only users."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def add(self, name: str, roles, display_name: str | None = None, groups=(),
                 password: str | None = None) -> dict:
        check_user_name(name)
        roles = check_roles(roles)
        if password is not None and password != "":
            check_policy(password, name)  # the CLI's --password, the demo's, any caller's
        digest = hash_password(password) if password else None  # slow on purpose: not while holding the lock
        with self.ctx.db.unit_of_work() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                user = User(name=name, roles="", groups="", created_at=self.ctx.now(), active=True)
                s.add(user)
            merged = list(dict.fromkeys([*user.role_set, *roles]))
            user.roles = ",".join(r for r in ROLES if r in merged)
            if groups:
                user.groups = ",".join(dict.fromkeys([*user.group_set, *groups]))
            if display_name:
                user.display_name = display_name
            if digest:
                user.password_hash = digest
            s.flush()
            return shapes.user_dict(user)

    def all(self) -> list[dict]:
        """Every user, by name."""
        with self.ctx.db.reading() as s:
            return [shapes.user_dict(u) for u in s.scalars(select(User).order_by(User.name))]

    def authenticate(self, name: str, password: str) -> dict | None:
        """The active user whose password this is, or None. A wrong name costs what a wrong password does.
        Sign-in through the web goes through ``kefu.security.sign_in``, which also throttles."""
        with self.ctx.db.reading() as s:
            user = s.scalar(select(User).where(User.name == name)) if isinstance(name, str) else None
            found = shapes.user_dict(user) if user is not None and user.active else None
            stored = user.password_hash if found else None
        return found if check_password(stored, password) and found else None

    def set_password(self, name: str, password: str, current: str | None = None) -> dict:
        """Give user ``name`` a new password that meets the policy; with ``current`` (a user changing their
        own) that must be the present one. Every web session of the user ends (the session version moves)."""
        check_policy(password, name)
        if current is not None and self.authenticate(name, current) is None:
            raise NotAllowed("the current password is not correct", fields=["current_password"])
        digest = hash_password(password)
        with self.ctx.db.unit_of_work() as s:
            user = s.scalar(select(User).where(User.name == name)) if name else None
            if user is None:
                raise NotFound(f"no user {name!r}")
            user.password_hash = digest
            user.session_version = (user.session_version or 0) + 1
            return shapes.user_dict(user)

    def end_sessions(self, name: str) -> int:
        """End every web session of ``name`` (logout): sessions carry the version they started under."""
        with self.ctx.db.unit_of_work() as s:
            user = s.scalar(select(User).where(User.name == name)) if name else None
            if user is None:
                return 0
            user.session_version = (user.session_version or 0) + 1
            return user.session_version

    def set_active(self, name: str, active: bool) -> dict:
        """Deactivate (or reactivate) a user. A deactivated user signs in no more, and their ready tasks go back
        to their queues (X1: an inactive owner's offers too), each with a ``task_returned_to_queue`` event."""
        with self.ctx.db.unit_of_work() as s:
            user = s.scalar(select(User).where(User.name == name)) if name else None
            if user is None:
                raise NotFound(f"no user {name!r}")
            returned = 0
            if user.active and not active:
                user.session_version = (user.session_version or 0) + 1
                now = self.ctx.now()
                for inst, events in ownership.release_user(s, user.name, now).items():
                    inst.updated_at = now
                    audit.append(s, inst, events)
                    returned += len(events)
                writes.write(s)
            user.active = bool(active)
            s.flush()
            return {**shapes.user_dict(user), "tasks_returned": returned}

    def get(self, name: str) -> dict | None:
        """One active user by name, or None (the web login keeps only the name in its session)."""
        with self.ctx.db.reading() as s:
            user = s.scalar(select(User).where(User.name == name)) if name else None
            return shapes.user_dict(user) if user is not None and user.active else None

    def create_token(self, name: str, label: str | None = None) -> dict:
        """A new bearer token for the existing user ``name``; the token text is returned only here."""
        with self.ctx.db.unit_of_work() as s:
            user = s.scalar(select(User).where(User.name == name)) if name else None
            if user is None:
                raise NotFound(f"no user {name!r}; add it with 'kefu users add'")
            token, row = tokens.create(s, user, label, self.ctx.now())
            return {"token": token, "id": row.id, "user": user.name, "label": row.label,
                    "created_at": iso(row.created_at)}

    def revoke_tokens(self, name: str) -> dict:
        """Revoke every live token of user ``name``."""
        with self.ctx.db.unit_of_work() as s:
            user = s.scalar(select(User).where(User.name == name)) if name else None
            if user is None:
                raise NotFound(f"no user {name!r}")
            return {"user": user.name, "revoked": tokens.revoke(s, user, self.ctx.now())}

    def token_user(self, token: str) -> dict | None:
        """The active user a live bearer token acts as, or None."""
        row = tokens.user_of(self.ctx.db, token)
        return shapes.user_fields(*row) if row is not None else None

    def check_may_change(self, actor: str) -> None:
        """Refuse a user who may only read (the auditor role) before any change is attempted."""
        with self.ctx.db.reading() as s:
            user = s.scalar(select(User).where(User.name == actor))
            if user is None:
                return  # the command's own check decides about unknown users, as before
            if not user.role_set - READ_ONLY_ROLES:
                raise NotAllowed(f"user {actor} may only read (role {', '.join(sorted(user.role_set))}); "
                                 "nothing was changed")
