"""Signing in: throttled per user name and per client address with a lockout an administrator can lift, counted
in the database so that every worker and process shares the count; lockouts and their lifting are security
events, append-only, that auditors read."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, event as sa_event, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from engine.clock import iso
from engine.errors import InvalidInput, NotAllowed, NotFound, SignInFailed, SignInLocked
from engine.services import shapes
from engine.services.context import SYSTEM, Context
from engine.services.passwords import check_password
from engine.store.tables import SecurityEvent, SignInThrottle, User

USER_LIMIT = 5  # wrong passwords for one user name within WINDOW: the name is locked
ADDRESS_LIMIT = 20  # failed sign-ins from one address within WINDOW (any names): the address is locked
WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
FORGET_AFTER = timedelta(days=1)
UNLOCK_ROLES = frozenset({"supervisor"})  # besides the service itself (an administrator at the CLI)  # counters untouched this long (and not locked) are removed


def user_key(name: str) -> str:
    return "user:" + str(name or "")[:150]


def address_key(address: str) -> str:
    return "address:" + str(address or "")[:150]


class SecurityService:
    """Sign in with throttling and lockouts; lift a lockout; read the security events."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def sign_in(self, name: str, password: str, address: str | None = None) -> dict:
        """The user ``name`` if ``password`` is theirs (active users only). SignInLocked while the name or the
        address is locked; SignInFailed for a wrong name or a wrong password alike, which take the same time."""
        now = self.ctx.now()
        keys = [user_key(name)] + ([address_key(address)] if address else [])
        with self.ctx.db.reading() as s:
            locks = {r.key: r.locked_until for r in s.scalars(select(SignInThrottle).where(
                SignInThrottle.key.in_(keys), SignInThrottle.locked_until > now))}
            user = s.scalar(select(User).where(User.name == name)) if isinstance(name, str) and name else None
            found = shapes.user_dict(user) if user is not None and user.active else None
            stored = user.password_hash if found else None
        if locks:
            raise SignInLocked(f"too many failed sign-ins; try again after {iso(max(locks.values()))} or ask an "
                               "administrator to unlock ('kefu users unlock')", until=iso(max(locks.values())),
                               subject="address" if address_key(address or "") in locks else "user")
        if check_password(stored, password) and found:  # the dummy hash is checked when there is no user
            self._forget(keys[0])
            return found
        self._count_failure(name, address, now)
        raise SignInFailed("wrong user name or password")

    def _forget(self, key: str) -> None:
        with self.ctx.db.reading() as s:
            if s.get(SignInThrottle, key) is None:
                return  # the usual case: no earlier failure, no write
        with self.ctx.db.unit_of_work() as s:
            s.execute(delete(SignInThrottle).where(SignInThrottle.key == key))

    def _count_failure(self, name: str, address: str | None, now: datetime) -> None:
        with self.ctx.db.unit_of_work() as s:
            s.execute(delete(SignInThrottle).where(
                SignInThrottle.last_failure_at < now - FORGET_AFTER,
                or_(SignInThrottle.locked_until.is_(None), SignInThrottle.locked_until < now)))
            targets = [(user_key(name), USER_LIMIT, "user", str(name or "")[:150])]
            if address:
                targets.append((address_key(address), ADDRESS_LIMIT, "address", address[:150]))
            for key, limit, kind, subject in targets:
                row = self._counter(s, key, now)
                if row.first_failure_at < now - WINDOW or (row.locked_until and row.locked_until <= now):
                    row.failures, row.first_failure_at, row.locked_until = 0, now, None  # a new window
                row.failures += 1
                row.last_failure_at = now
                if row.failures >= limit and row.locked_until is None:
                    row.locked_until = now + LOCKOUT
                    self._record(s, now, "sign_in_locked", SYSTEM, subject, address,
                                 {"kind": kind, "failures": row.failures, "until": iso(row.locked_until)})

    @staticmethod
    def _counter(s, key: str, now: datetime) -> SignInThrottle:
        """The counter row ``key``, locked for this transaction; created if new (concurrent creators on
        PostgreSQL meet in the upsert, SQLite holds the write lock already)."""
        if s.get_bind().dialect.name == "postgresql":
            s.execute(pg_insert(SignInThrottle).values(key=key, failures=0, first_failure_at=now,
                                                       last_failure_at=now).on_conflict_do_nothing())
            return s.get(SignInThrottle, key, with_for_update=True, populate_existing=True)
        row = s.get(SignInThrottle, key)
        if row is None:
            row = SignInThrottle(key=key, failures=0, first_failure_at=now, last_failure_at=now)
            s.add(row)
        return row

    def _record(self, s, now, type_: str, actor: str, subject: str, address: str | None, data: dict) -> None:
        s.add(SecurityEvent(at=now, type=type_, actor=actor, subject=subject, address=address, data=data))

    def unlock(self, name: str | None = None, address: str | None = None, actor: str = SYSTEM,
               from_address: str | None = None) -> dict:
        """Lift the lockout (and clear the count) of user ``name`` or of client ``address``; recorded."""
        if bool(name) == bool(address):
            raise InvalidInput("name a user or an address to unlock, not both")
        key, kind, subject = ((user_key(name), "user", name) if name else
                              (address_key(address), "address", address))
        now = self.ctx.now()
        with self.ctx.db.unit_of_work() as s:
            if actor != SYSTEM and not self.ctx.user(s, actor).role_set & UNLOCK_ROLES:
                raise NotAllowed(f"user {actor} may not lift lockouts (needs role supervisor)")
            row = s.get(SignInThrottle, key)
            if row is None:
                raise NotFound(f"{kind} {subject!r} has no failed sign-ins to clear")
            was_locked = row.locked_until is not None and row.locked_until > now
            s.delete(row)
            self._record(s, now, "sign_in_unlocked", actor, subject, from_address,
                         {"kind": kind, "failures": row.failures, "was_locked": was_locked,
                          "until": iso(row.locked_until)})
        return {"kind": kind, "subject": subject, "was_locked": was_locked, "failures": row.failures}

    def lockouts(self) -> list[dict]:
        """The user names and addresses locked now, soonest released first."""
        now = self.ctx.now()
        with self.ctx.db.reading() as s:
            rows = s.scalars(select(SignInThrottle).where(and_(SignInThrottle.locked_until.is_not(None),
                                                               SignInThrottle.locked_until > now))
                             .order_by(SignInThrottle.locked_until))
            return [{"kind": r.key.split(":", 1)[0], "subject": r.key.split(":", 1)[1], "failures": r.failures,
                     "locked_until": iso(r.locked_until), "last_failure_at": iso(r.last_failure_at)}
                    for r in rows]

    def events(self, limit: int = 100) -> list[dict]:
        """The newest security events first."""
        limit = max(1, min(int(limit), 10_000))
        with self.ctx.db.reading() as s:
            rows = s.scalars(select(SecurityEvent).order_by(SecurityEvent.id.desc()).limit(limit))
            return [{"id": e.id, "at": iso(e.at), "type": e.type, "actor": e.actor, "subject": e.subject,
                     "address": e.address, "data": e.data} for e in rows]


def _append_only(_mapper, _connection, _target):
    raise NotAllowed("security events are append-only and cannot be changed or deleted")


sa_event.listen(SecurityEvent, "before_update", _append_only)  # the triggers of migration 0007 refuse SQL too
sa_event.listen(SecurityEvent, "before_delete", _append_only)
