"""Whether the tests run under CI, read one way for every test: the ``CI`` variable set to ``true``, ``1`` or
``yes`` (in any case). Under CI a test that cannot have what it needs (PostgreSQL, the browser) fails instead
of being skipped."""
from __future__ import annotations

import os

CI_VALUES = ("true", "1", "yes")


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in CI_VALUES
