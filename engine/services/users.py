"""Users and roles (RULES.md "Roles"); passwords are stored as salted PBKDF2 hashes."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from engine.bpmn.diagram import ROLES
from engine.errors import InvalidInput

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_ITERATIONS = 200_000


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


def hash_password(password: str) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), _ITERATIONS).hex()
    return f"pbkdf2:sha256:{_ITERATIONS}${salt}${digest}"


def check_password(stored: str | None, password: str) -> bool:
    if not stored or not password:
        return False
    try:
        method, salt, digest = stored.split("$")
        iterations = int(method.rsplit(":", 1)[1])
    except ValueError:
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return hmac.compare_digest(candidate, digest)
