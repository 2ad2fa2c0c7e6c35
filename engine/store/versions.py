"""Deployed definition versions: the newest, the one with given content, the next number."""
from __future__ import annotations

from sqlalchemy import func, select

from engine.store.tables import Definition


def latest(session, process_id: str):
    return session.scalars(select(Definition).where(Definition.process_id == process_id)
                           .order_by(Definition.version.desc()).limit(1)).first()


def version_with(session, process_id: str, sha256: str):
    """The deployed version of ``process_id`` whose content has this SHA-256 (an older one: a version is
    deployed once), or None."""
    return session.scalars(select(Definition).where(Definition.process_id == process_id,
                                                    Definition.sha256 == sha256).limit(1)).first()


def next_version(session, process_id: str) -> int:
    return (session.scalar(select(func.max(Definition.version))
                           .where(Definition.process_id == process_id)) or 0) + 1
