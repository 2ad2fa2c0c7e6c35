"""Kefu's domain core: process definitions, instances, tasks, forms, timers, customers and audit.

Plain Python, SpiffWorkflow and SQLAlchemy; it never imports the web layer. ``Kefu`` is the service object
the web app and the CLI talk to; ``errors`` holds the one error tree.
"""
from .clock import Clock
from .config import Config
from .errors import (ClockError, Conflict, DefinitionError, FormValidationError, IncidentError, InvalidInput,
                     KefuError, NotAllowed, NotFound)
from .service import Kefu

__all__ = ["Kefu", "Config", "Clock", "KefuError", "NotFound", "NotAllowed", "InvalidInput",
           "FormValidationError", "Conflict", "DefinitionError", "ClockError", "IncidentError"]
