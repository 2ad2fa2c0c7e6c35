"""The one error tree of Kefu.

    KefuError                       base; ``code`` is a stable machine-readable string
    ├── NotFound                    an instance, task, definition, user or customer does not exist
    ├── NotAllowed                  the actor may not do this (role, lane, assignee, read-only)
    │   ├── SignInFailed            a wrong user name or password (which of the two is never said)
    │   └── SignInLocked            too many failed sign-ins: the name or the address is locked for a while
    ├── InvalidInput                bad command arguments or data outside a form (e.g. malformed JSON)
    │   └── FormValidationError     submitted data does not fit the task's form; ``errors`` maps field → message
    ├── Conflict                    the state moved on: stale save, task no longer ready, already claimed
    ├── DefinitionError             a diagram cannot be deployed; names the file, the element and the line
    ├── ClockError                  test/demo time controls used where they are refused
    └── IncidentError               a script or expression failed while the engine stepped (the instance
                                    holds an incident that can be retried)

Library exceptions (SpiffWorkflow, lxml, SQLAlchemy) are re-raised as these at the engine boundary.
"""
from __future__ import annotations


class KefuError(Exception):
    code = "error"
    exit_code = 1

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message}
        out.update({k: v for k, v in self.details.items() if v is not None})
        return out


class NotFound(KefuError):
    code = "not_found"
    exit_code = 4


class NotAllowed(KefuError):
    code = "not_allowed"
    exit_code = 3


class SignInFailed(NotAllowed):
    code = "sign_in_failed"


class SignInLocked(NotAllowed):
    code = "locked"


class InvalidInput(KefuError):
    code = "invalid_input"
    exit_code = 2


class FormValidationError(InvalidInput):
    code = "form_invalid"

    def __init__(self, errors: dict[str, str], task_name: str | None = None):
        fields = ", ".join(f"{k}: {v}" for k, v in errors.items())
        where = f" for task '{task_name}'" if task_name else ""
        super().__init__(f"invalid form data{where}: {fields}", errors=errors)
        self.headline = f"invalid form data{where}"
        self.errors = errors


class Conflict(KefuError):
    code = "conflict"
    exit_code = 5


class DefinitionError(KefuError):
    code = "definition_invalid"
    exit_code = 2

    def __init__(self, message: str, file: str | None = None, element: str | None = None,
                 line: int | None = None):
        where = ", ".join(p for p in (
            f"file {file}" if file else None,
            f"element '{element}'" if element else None,
            f"line {line}" if line else None) if p)
        super().__init__(f"{where}: {message}" if where else message,
                         file=file, element=element, line=line, reason=message)


class ClockError(KefuError):
    code = "clock_refused"
    exit_code = 3


class IncidentError(KefuError):
    code = "incident"
    exit_code = 6
