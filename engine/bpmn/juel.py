"""The common subset of JUEL (Camunda 7's ``${...}`` expressions) translated into the Python that Kefu's sandbox
runs, and a suggested Python rewrite for anything outside that subset.

Translated: one ``${...}`` (or ``#{...}``) making up the whole text; variables; ``true``, ``false``, ``null``;
string and number literals; ``!``/``not``, ``&&``/``and``, ``||``/``or``; ``==``/``eq``, ``!=``/``ne``,
``<``/``lt``, ``>``/``gt``, ``<=``/``le``, ``>=``/``ge``; ``empty``; parentheses. ``${amount > 1000 && !vip}``
becomes ``amount > 1000 and not vip``. Anything else (property access, method calls, arithmetic, the
conditional operator, text around the expression) raises ``JuelError`` with the reason and, where one can be
made, the Python to write instead.
"""
from __future__ import annotations

import keyword
import re

KEYWORDS = {"and": "and", "or": "or", "not": "not", "eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=",
            "ge": ">=", "empty": "empty", "true": "True", "false": "False", "null": "None"}
UNSUPPORTED_WORDS = {"div": "/", "mod": "%", "instanceof": "isinstance"}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()])
  | (?P<other>.)
""", re.X | re.S)
_WHOLE = re.compile(r"^\s*[$#]\{(.*)\}\s*$", re.S)
_EMBEDDED = re.compile(r"[$#]\{")
# Python precedence of what we emit: or < and < not < comparisons < atoms
_PREC = {"or": 1, "and": 2, "not": 3, "cmp": 4, "atom": 5}


class JuelError(ValueError):
    """An expression outside the translated subset: ``reason`` says why, ``suggestion`` is Python to write
    instead (None when none could be made)."""

    def __init__(self, reason: str, suggestion: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.suggestion = suggestion


def is_juel(text: str | None) -> bool:
    """Whether the text holds a ``${...}`` or ``#{...}`` expression."""
    return bool(text) and bool(_EMBEDDED.search(text))


def translate(text: str, aliases: dict[str, str] | None = None) -> str:
    """The Python of a JUEL expression; ``aliases`` renames variables (e.g. ``initiator`` → ``started_by``)."""
    m = _WHOLE.match(text or "")
    if m is None or _EMBEDDED.search(m.group(1)):
        raise JuelError("text around or between ${...} expressions (a composite expression) is not translated",
                        _suggest_composite(text or ""))
    body = m.group(1)
    tokens = _tokens(body)
    if not tokens:
        raise JuelError("the expression is empty")
    parser = _Parser(tokens, aliases or {})
    try:
        code, _prec = parser.expression()
        if parser.pos != len(tokens):
            kind, value = tokens[parser.pos]
            raise JuelError(f"the operator {value!r} is not translated" if kind == "other"
                            else f"unexpected {value!r}")
    except JuelError as exc:
        raise JuelError(exc.reason, exc.suggestion or suggest(body, aliases)) from None
    return code


def _tokens(body: str) -> list[tuple[str, str]]:
    out = []
    for m in _TOKEN.finditer(body):
        kind = m.lastgroup
        if kind != "space":
            out.append((kind, m.group()))
    return out


class _Parser:
    def __init__(self, tokens, aliases):
        self.tokens, self.aliases, self.pos = tokens, aliases, 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self):
        tok = self.peek()
        self.pos += 1
        return tok

    def word(self):
        kind, value = self.peek()
        if kind == "name" and value in KEYWORDS:
            return KEYWORDS[value]
        if kind == "op":
            return {"&&": "and", "||": "or", "!": "not"}.get(value, value)
        return None

    def expression(self):
        return self.binary("or")

    def binary(self, level):
        lower = {"or": "and", "and": "eq"}[level]
        left, prec = self.binary(lower) if lower != "eq" else self.equality()
        while self.word() == level:
            self.take()
            right, rprec = self.binary(lower) if lower != "eq" else self.equality()
            left = f"{_wrap(left, prec, _PREC[level])} {level} {_wrap(right, rprec, _PREC[level] + 1)}"
            prec = _PREC[level]
        return left, prec

    def equality(self):
        return self.comparison(("==", "!="), self.relational)

    def relational(self):
        return self.comparison(("<", ">", "<=", ">="), self.unary)

    def comparison(self, ops, operand):
        left, prec = operand()
        while self.word() in ops:
            op = self.word()
            self.take()
            right, rprec = operand()
            left = f"{_wrap(left, prec, _PREC['cmp'] + 1)} {op} {_wrap(right, rprec, _PREC['cmp'] + 1)}"
            prec = _PREC["cmp"]
        return left, prec

    def unary(self):
        w = self.word()
        if w == "not":
            self.take()
            inner, prec = self.unary()
            return f"not {_wrap(inner, prec, _PREC['not'])}", _PREC["not"]
        if w == "empty":
            self.take()
            inner, prec = self.unary()
            return f"{_wrap(inner, prec, _PREC['cmp'] + 1)} in (None, '', [], {{}})", _PREC["cmp"]
        return self.primary()

    def primary(self):
        kind, value = self.take()
        if kind is None:
            raise JuelError("the expression ends too early")
        if kind == "op" and value == "(":
            inner, prec = self.expression()
            if self.take() != ("op", ")"):
                raise JuelError("a '(' is not closed")
            return inner, prec
        if kind == "number":
            result = value
        elif kind == "string":
            result = repr(_unquote(value))
        elif kind == "name":
            result = self.name(value)
        elif kind == "other" and value == "-":
            raise JuelError("arithmetic (-) is not translated")
        else:
            raise JuelError(f"{value!r} is not translated" if kind != "other"
                            else f"the operator {value!r} is not translated")
        nxt = self.peek()
        if nxt[0] == "other" and nxt[1] in ".[(":
            raise JuelError("property access, indexes and method calls are not translated")
        if nxt == ("op", "("):
            raise JuelError("function and method calls are not translated")
        return result, _PREC["atom"]

    def name(self, value: str) -> str:
        if value in KEYWORDS:
            word = KEYWORDS[value]
            if word in ("True", "False", "None"):
                return word
            raise JuelError(f"{value!r} is misplaced")
        if value in UNSUPPORTED_WORDS:
            raise JuelError(f"the operator {value!r} is not translated")
        value = self.aliases.get(value, value)
        if "$" in value or keyword.iskeyword(value) or value in ("True", "False", "None"):
            raise JuelError(f"the variable name {value!r} cannot be used in Python: rename the variable")
        return value


def _wrap(code: str, prec: int, needed: int) -> str:
    return f"({code})" if prec < needed else code


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1], flags=re.S)


# ---------------------------------------------------------------- suggestions for what is not translated
_GET_VARIABLE = re.compile(r"\bexecution\s*\.\s*getVariable\s*\(\s*(['\"])(\w+)\1\s*\)")
_SUGGEST_OPS = [(r"&&", " and "), (r"\|\|", " or "), (r"!(?!=)", " not "), (r"\beq\b", "=="), (r"\bne\b", "!="),
                (r"\blt\b", "<"), (r"\bgt\b", ">"), (r"\ble\b", "<="), (r"\bge\b", ">="), (r"\bdiv\b", "/"),
                (r"\bmod\b", "%"), (r"\btrue\b", "True"), (r"\bfalse\b", "False"), (r"\bnull\b", "None")]


def suggest(body: str, aliases: dict[str, str] | None = None) -> str | None:
    """A best-effort Python rewrite of a JUEL expression body, to show beside a refusal (never run as such)."""
    text = _GET_VARIABLE.sub(lambda m: m.group(2), body)
    strings: list[str] = []
    text = re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"",
                  lambda m: strings.append(repr(_unquote(m.group()))) or f"\x00{len(strings) - 1}\x00", text)
    m = re.fullmatch(r"\s*(.+?)\s*\?\s*(.+?)\s*:\s*(.+?)\s*", text)
    if m:  # a ? b : c
        text = f"{m.group(2)} if {m.group(1)} else {m.group(3)}"
    text = re.sub(r"\bempty\s+([\w.]+)", r"not \1", text)
    for pattern, repl in _SUGGEST_OPS:
        text = re.sub(pattern, repl, text)
    # a.b.c (not a method call) -> a['b']['c']
    text = re.sub(r"\b([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)+)\b(?!\s*\()",
                  lambda m: m.group(1) + "".join(f"[{p!r}]" for p in m.group(2).split(".")[1:]), text)
    for old, new in (aliases or {}).items():
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    text = re.sub(r"\x00(\d+)\x00", lambda m: strings[int(m.group(1))], text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", text))
    if not text or re.search(r"\w\s*\(", text.replace(" if ", " ").replace(" not ", " ")):
        return None  # method or function calls: no general rewrite
    try:
        compile(text, "<suggestion>", "eval")
    except SyntaxError:
        return None
    return text


def _suggest_composite(text: str) -> str | None:
    parts = re.split(r"[$#]\{(.*?)\}", text)
    pieces = []
    for i, part in enumerate(parts):
        if i % 2:
            inner = suggest(part)
            if inner is None:
                return None
            pieces.append("{" + inner + "}")
        elif part:
            pieces.append(part.replace("{", "{{").replace("}", "}}"))
    return "f" + repr("".join(pieces)) if pieces else None
