"""What a long-running Kefu process (``kefu scheduler``, ``kefu serve``) logs to stderr.

Kefu's own loggers (``kefu.*``) at INFO: what the service did (timers fired, clock moved, scheduler started).
Every library at WARNING and above only: SpiffWorkflow logs each task step at INFO (``spiff.*``, about 0.6 KB
per timer fired), APScheduler each job run and waitress its start. A scheduler working through hundreds of
due timers would otherwise write megabytes, and a reader that is slow to drain its stderr would stall it.
"""
from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def configure_logging(stream=None) -> None:
    """Log to ``stream`` (stderr): Kefu's own INFO and up, libraries' WARNING and up. Does nothing to a
    process whose logging is configured already (a root handler exists)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("kefu").setLevel(logging.INFO)
