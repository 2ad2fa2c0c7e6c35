"""The key that signs sessions and CSRF tokens: from the environment, else made once and kept in a file."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from engine import Kefu


def secret_key(kefu: Kefu, instance_path: str) -> str:
    """``KEFU_SECRET_KEY``, else a random key generated once and kept in a file beside the SQLite database
    (or in the app's instance folder for other databases), readable by its owner only."""
    if os.environ.get("KEFU_SECRET_KEY"):
        return os.environ["KEFU_SECRET_KEY"]
    url = kefu.config.database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):]).resolve().with_name("kefu-secret.key")
    else:
        path = Path(instance_path) / "kefu-secret.key"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process generated it a moment ago
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key)
    return key
