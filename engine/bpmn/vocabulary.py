"""The diagram language's names that the rest of the engine needs without parsing a diagram: the BPMN
namespace, the roles and lane roles, and the rule IDs an element's documentation cites. No SpiffWorkflow and
no lxml here, so a command that only reads rows (``kefu tasks``) can use them cheaply."""
from __future__ import annotations

import re
from functools import lru_cache

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
B = "{%s}" % BPMN_NS
ROLES = ("agent", "supervisor", "department", "technician", "taskforce", "qa", "auditor", "process_owner",
         "integration")  # integration: a system (e.g. telephony) that opens tickets and reads them via the API
LANE_ROLES = ("agent", "supervisor", "department", "technician", "taskforce", "qa")
RULE_ID = re.compile(r"\b(?:[CPRTIQK]\d{1,2}|K-cycle|K-score|QA)\b")


def lane_role(name: str | None) -> str | None:
    """The role a lane stands for: its name is the role id, or contains it as a word ("客服专员 agent")."""
    if name in LANE_ROLES:
        return name
    found = [w for w in re.findall(r"[A-Za-z_]+", name or "") if w in LANE_ROLES]
    return found[0] if len(set(found)) == 1 else None


def rule_ids(documentation: str | None) -> list[str]:
    """The rule IDs a documentation text cites, in order, each once (a new list: callers may extend it)."""
    return list(_rule_ids(documentation or ""))


@lru_cache(maxsize=4096)
def _rule_ids(documentation: str) -> tuple[str, ...]:
    # asked for every task and event of every save; a diagram's few documentation texts recur
    return tuple(dict.fromkeys(RULE_ID.findall(documentation)))
