"""Passwords: salted PBKDF2 hashes, a check that costs the same whether or not the user exists, and the policy
every new password meets (length, not a common password, not the user's name)."""
from __future__ import annotations

import gzip
import hashlib
import hmac
import secrets
from functools import lru_cache
from pathlib import Path

from engine.errors import InvalidInput

ITERATIONS = 200_000
MIN_LENGTH = 8
MAX_LENGTH = 128  # PBKDF2 hashes any length; a bound keeps a megabyte "password" from costing more
# The 20,000 most common passwords (Royce Williams' list, as shipped with Django under the BSD licence), those of
# MIN_LENGTH or more characters: anything shorter is refused by length already.
COMMON_PASSWORDS = Path(__file__).with_name("common-passwords.txt.gz")


def hash_password(password: str) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), ITERATIONS).hex()
    return f"pbkdf2:sha256:{ITERATIONS}${salt}${digest}"


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash no password matches, checked in place of a missing user's so that a wrong name costs as much
    time as a wrong password (user names cannot be found by timing)."""
    return hash_password(secrets.token_hex(16))


def check_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` hashes; with no stored hash the dummy is checked (same cost,
    always False)."""
    if not isinstance(password, str) or not password:
        return False
    if not stored or len(password) > MAX_LENGTH:  # no user, or no password anyone could have set
        _matches(dummy_hash(), password[:MAX_LENGTH])
        return False
    return _matches(stored, password)


def _matches(stored: str, password: str) -> bool:
    try:
        method, salt, digest = stored.split("$")
        iterations = int(method.rsplit(":", 1)[1])
    except ValueError:
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return hmac.compare_digest(candidate, digest)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as f:
        return frozenset(line.strip().lower() for line in f if line.strip())


def check_policy(password, user_name: str | None = None) -> str:
    """``password`` if it may be used; InvalidInput (field ``password``) naming what is wrong otherwise."""
    if not isinstance(password, str):
        raise InvalidInput("the password must be text", fields=["password"])
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"the password is too short: at least {MIN_LENGTH} characters", fields=["password"])
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"the password is too long: at most {MAX_LENGTH} characters", fields=["password"])
    if not password.strip() or len(set(password)) < 3:
        raise InvalidInput("the password is too simple: use at least three different characters",
                           fields=["password"])
    if password.lower() in common_passwords():
        raise InvalidInput("the password is one of the most common passwords: choose another",
                           fields=["password"])
    if user_name and len(user_name) >= 3 and user_name.lower() in password.lower():
        raise InvalidInput("the password must not contain the user name", fields=["password"])
    return password
