"""Kefu's domain core: process definitions, instances, tasks, forms, timers, customers and audit.

Plain Python, SpiffWorkflow and SQLAlchemy; it never imports the web layer. ``Kefu`` is the service object
the web app and the CLI talk to; ``errors`` holds the one error tree.
"""
from engine.clock import Clock
from engine.config import Config
from engine.errors import (
    ClockError, Conflict, DefinitionError, FormValidationError, IncidentError, InvalidInput, KefuError,
    NotAllowed, NotFound, SignInFailed, SignInLocked
)
from engine.service import Kefu

__all__ = ["Kefu", "Config", "Clock", "KefuError", "NotFound", "NotAllowed", "SignInFailed", "SignInLocked",
           "InvalidInput",
           "FormValidationError", "Conflict", "DefinitionError", "ClockError", "IncidentError"]
