"""Who works a human task: in a process with role lanes, the lane's role (narrowed by the task's assignee and
candidate group expressions); in a process without them, the task's candidates (Kefu roles and user groups
from ``camunda:candidateGroups``, users from ``camunda:candidateUsers``) or its ``camunda:assignee``, and with
none of these the role of the user who started the instance."""
from __future__ import annotations

from engine.bpmn.vocabulary import LANE_ROLES, ROLES

MAX_CANDIDATES = 1000  # characters of the stored list
TASK_FORCE = "taskforce"  # P5: its tasks are each assigned to one member, who works it whatever their roles


def names(value) -> list[str]:
    """User, group or role names from an expression's value: a name, a comma-separated text or a list."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        return []
    return [v.strip() for v in value if isinstance(v, str) and v.strip()]


def starter_role(starter_roles: set[str]) -> str:
    """The role a lanes-less task without candidates goes to: the starter's first working role, else agent."""
    return next((r for r in LANE_ROLES if r in starter_roles), "agent")


def route(assignee, users, groups, starter_roles) -> dict:
    """The row values (role, assignee, candidates) of a ready task of a lanes-less process from the values of
    its ``camunda:assignee``, ``candidateUsers`` and ``candidateGroups`` expressions; ``starter_roles()`` gives
    the starting user's roles when neither candidates nor an assignee were named."""
    who = names(assignee)
    entries = [f"role:{g}" if g in ROLES else f"group:{g}" for g in names(groups)]
    entries += [f"user:{u}" for u in names(users)]
    role = next((e[5:] for e in entries if e.startswith("role:")), None)
    if not who and not entries:
        role = starter_role(starter_roles())
        entries = [f"role:{role}"]
    text = ",".join(dict.fromkeys(entries))
    while len(text) > MAX_CANDIDATES:
        text = text.rsplit(",", 1)[0]
    return {"role": role, "assignee": who[0] if who else None, "candidates": text}


def candidates(task) -> list[str] | None:
    """A task's (a row's or a task dictionary's) candidates, or None for a task of a role lane."""
    value = task.get("candidates") if isinstance(task, dict) else getattr(task, "candidates", None)
    if value is None:
        return None
    return names(value)


def _get(task, key):
    return task.get(key) if isinstance(task, dict) else getattr(task, key, None)


def is_candidate(name: str, roles: set[str], groups: set[str], task) -> bool:
    """Whether the user is among the task's candidates (lanes-less tasks; claims not considered)."""
    for entry in candidates(task) or ():
        kind, _, value = entry.partition(":")
        if (kind == "role" and value in roles) or (kind == "group" and value in groups) or \
                (kind == "user" and value == name):
            return True
    return False


def group_ok(groups: set[str], task) -> bool:
    group = _get(task, "candidate_group")
    return not (group and groups and group not in groups)


def may_work(name: str, roles: set[str], groups: set[str], task) -> bool:
    """Whether the user may claim or complete the task as it stands (state aside)."""
    assignee = _get(task, "assignee")
    if candidates(task) is None:
        if _get(task, "role") == TASK_FORCE and assignee == name:
            return True  # P5: a member of this ticket's task force, drawn from any department
        return _get(task, "role") in roles and assignee in (None, name) and group_ok(groups, task)
    if assignee:
        return assignee == name
    return is_candidate(name, roles, groups, task)


def may_see(name: str, roles: set[str], groups: set[str], task) -> bool:
    """Whether the user may look at the task: its workers, its assignee, supervisors and auditors."""
    return bool(roles & {_get(task, "role"), "supervisor", "auditor"}) or _get(task, "assignee") == name \
        or is_candidate(name, roles, groups, task)


def may_act(name: str, roles: set[str], groups: set[str], task) -> bool:
    """Whether the user may act on the task or did: its assignee, its worker (the lane's role and group, or a
    candidate) while unclaimed, or the one who completed it."""
    if _get(task, "assignee") == name or _get(task, "completed_by") == name:
        return True
    if _get(task, "assignee"):
        return False
    if _get(task, "state") not in (None, "ready"):
        return False
    return may_work(name, roles, groups, task)


# Roles that work with or oversee every ticket; the others read the tickets they have a task on.
WIDE_ROLES = ("agent", "supervisor", "qa", "auditor", "process_owner")


def may_read(name: str, roles: set[str], groups: set[str], tasks) -> bool:
    """Whether the user may read a ticket (the ticket page's rule): a wide role, or whoever may act on (assignee;
    the lane's role and group, or a candidate, while unclaimed) or completed one of its tasks — a task force
    member of this ticket (its assignee) whatever their roles (P5)."""
    if roles & set(WIDE_ROLES):
        return True
    return any(_get(t, "assignee") == name or may_act(name, roles, groups, t) for t in tasks)
