"""Configuration: every setting is a ``KEFU_``-prefixed environment variable with a default.

    KEFU_DATABASE_URL   SQLAlchemy URL; default a SQLite file ``kefu.db`` in the working directory
    KEFU_ENV            ``production`` (default), ``demo`` or ``test``
    KEFU_CLOCK          ISO time that pins "now"; honoured only when KEFU_ENV is ``demo`` or ``test``
    KEFU_PROCESSES      folder of diagrams deployed by ``kefu deploy`` without arguments
                        (default: ``processes/`` in the working directory, else the project's)
    KEFU_INSTANCE_CACHE_MB  memory for the workflows a process keeps after saving them, so that the next
                        step on the same instance skips restoring it (default 64; 0 turns it off)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TIME_CONTROL_ENVS = frozenset({"demo", "test"})
INSTANCE_CACHE_MB = 64.0


def _default_processes() -> Path:
    """``processes/`` in the working directory if there is one, else the project's own."""
    here = Path.cwd() / "processes"
    return here if here.is_dir() else PROJECT_ROOT / "processes"


@dataclass(frozen=True)
class Config:
    database_url: str = "sqlite:///kefu.db"
    env: str = "production"
    clock: str | None = None
    processes_dir: Path = field(default=PROJECT_ROOT / "processes")
    # None: KEFU_INSTANCE_CACHE_MB, else INSTANCE_CACHE_MB (so a Config made in code follows the environment)
    instance_cache_mb: float | None = None

    @property
    def instance_cache_bytes(self) -> int:
        """The warm instances' memory budget in bytes (0: no cache)."""
        mb = self.instance_cache_mb
        if mb is None:
            text = (os.environ.get("KEFU_INSTANCE_CACHE_MB") or "").strip()
            try:
                mb = float(text) if text else INSTANCE_CACHE_MB
            except ValueError:
                raise ValueError(f"KEFU_INSTANCE_CACHE_MB must be a number of megabytes, not {text!r}") from None
        return max(0, int(mb * 1024 * 1024))

    @property
    def time_controls_allowed(self) -> bool:
        return self.env in TIME_CONTROL_ENVS

    @classmethod
    def from_env(cls, environ=None) -> "Config":
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("KEFU_DATABASE_URL") or cls.database_url,
            env=(env.get("KEFU_ENV") or "production").strip().lower(),
            clock=env.get("KEFU_CLOCK") or None,
            processes_dir=Path(env.get("KEFU_PROCESSES") or _default_processes()),
        )
