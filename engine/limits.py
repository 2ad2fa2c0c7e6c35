"""Bounds on what callers hand the engine: row numbers a database can hold, JSON nesting, text that only looks
filled in; the web app, the API and the CLI check their input with these before anything runs."""
from __future__ import annotations

import json
import unicodedata

from engine.errors import InvalidInput

MAX_ROW_ID = 2**31 - 1  # the largest INTEGER primary key PostgreSQL stores (and so the largest id anywhere)
MAX_JSON_DEPTH = 32  # forms are flat; a data object holds lists of names at most
MAX_ATTACHMENT = 20 * 1024 * 1024  # bytes: the largest file attached to a case (engine.services.casefile)
CONTACT_CHANNELS = ("phone", "sms", "visit")  # how a contact with the customer went (the case file's log)
# Letters that show nothing (Hangul fillers, the braille blank): text of only these is as empty as spaces.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def row_number(text) -> int | None:
    """``text`` as a row id if it is ASCII digits naming a possible row (1 … MAX_ROW_ID), else None: "²" and
    "٣" are digits to ``str.isdigit`` but no number a database takes, and 2**63 overflows SQLite's INTEGER."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if 0 < text <= MAX_ROW_ID else None
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    number = int(text)
    return number if 0 < number <= MAX_ROW_ID else None


def is_blank(text) -> bool:
    """Whether text shows nothing: empty, or only spaces, control and format characters (the zero-width space
    U+200B, the byte-order mark, direction marks) and letters that draw nothing."""
    if text is None:
        return True
    return all(unicodedata.category(ch)[0] in "ZC" or ch in _BLANK_LETTERS for ch in str(text))


def too_deep(value, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a parsed JSON value nests lists and objects deeper than ``limit`` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return False


def load_json(text, what: str = "the body"):
    """Parse JSON text or bytes; InvalidInput (never RecursionError) for bad or too deeply nested JSON."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInput(f"{what} nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    if too_deep(value):
        raise InvalidInput(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    return value
