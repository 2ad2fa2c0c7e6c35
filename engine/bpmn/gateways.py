"""Splitting gateways without a default flow: whether their conditions may all be false, in which case an
instance stops there with an incident (a warning before deploy, not a refusal)."""
from __future__ import annotations

import ast

from engine.bpmn.forms import read_form

B = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
_OPPOSITE = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE,
             ast.LtE: ast.Gt, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_MIRROR = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}


def _parse(text: str):
    try:
        return ast.parse((text or "").strip(), mode="eval").body
    except SyntaxError:
        return None


def _key(node) -> str:
    return ast.dump(node, annotate_fields=False)


def _comparison(node):
    """(left, op class, right) of a single comparison, with the operands in a canonical order."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
        return None
    left, op, right = _key(node.left), type(node.ops[0]), _key(node.comparators[0])
    if left > right and op in _MIRROR:
        left, op, right = right, _MIRROR[op], left
    return left, op, right


def _complementary(a, b) -> bool:
    if isinstance(a, ast.UnaryOp) and isinstance(a.op, ast.Not) and _key(a.operand) == _key(b):
        return True
    if isinstance(b, ast.UnaryOp) and isinstance(b.op, ast.Not) and _key(b.operand) == _key(a):
        return True
    ca, cb = _comparison(a), _comparison(b)
    return bool(ca and cb and ca[0] == cb[0] and ca[2] == cb[2] and _OPPOSITE.get(ca[1]) is cb[1])


def _required_enums(root) -> dict[str, set[str]]:
    """Required enum fields of the diagram's forms: field id → its option ids."""
    out: dict[str, set[str]] = {}
    for task in root.iter(B + "userTask"):
        for f in (read_form(task) or {}).get("fields", []):
            if f.get("type") == "enum" and "required" in (f.get("validation") or {}):
                out.setdefault(f["id"], set()).update(o["id"] for o in f.get("options") or [] if o.get("id"))
    return out


def _enum_covered(conditions, enums) -> bool:
    seen: dict[str, set] = {}
    for c in conditions:
        if isinstance(c, ast.Compare) and len(c.ops) == 1 and isinstance(c.ops[0], ast.Eq):
            name, value = c.left, c.comparators[0]
            if isinstance(value, ast.Name):
                name, value = value, name
            if isinstance(name, ast.Name) and isinstance(value, ast.Constant):
                seen.setdefault(name.id, set()).add(value.value)
    return any(field in enums and enums[field] and enums[field] <= values for field, values in seen.items())


def may_all_be_false(texts: list[str], enums: dict[str, set[str]]) -> bool:
    """Whether no condition need be true: False only when one is the literal True, two are each other's
    negation (``x`` / ``not x``, ``a == b`` / ``a != b``, ``a < b`` / ``a >= b``…), or they test a required
    enum field against every one of its options."""
    nodes = [_parse(t) for t in texts]
    if any(n is None for n in nodes):
        return True
    if any(isinstance(n, ast.Constant) and n.value is True for n in nodes):
        return False
    if any(_complementary(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:]):
        return False
    return not _enum_covered(nodes, enums)


def open_gateways(root) -> list:
    """Exclusive and inclusive gateways with several outgoing flows, no default flow, and conditions that may
    all be false."""
    out = []
    enums = None
    for proc in root.iter(B + "process"):
        outgoing: dict[str, list] = {}
        for flow in proc.iter(B + "sequenceFlow"):
            outgoing.setdefault(flow.get("sourceRef"), []).append(flow)
        for gw in proc.iter(B + "exclusiveGateway", B + "inclusiveGateway"):
            flows = outgoing.get(gw.get("id"), [])
            if len(flows) < 2 or gw.get("default"):
                continue
            texts = [(f.findtext(B + "conditionExpression") or "").strip() for f in flows]
            if not all(texts):
                continue  # a flow without a condition is an error of its own
            if enums is None:
                enums = _required_enums(root)
            if may_all_be_false(texts, enums):
                out.append(gw)
    return out
