"""The columns a few reads name without the ORM: ``kefu tasks`` lists a queue without importing the mapped
classes of ``engine.store.tables`` (whose declarative mapping costs more than the whole command otherwise) or
SQLAlchemy's ORM. Lightweight ``table()`` clauses over the same tables, with the same column types; the
mapped tables stay the one definition of the schema: ``tests/test_cli_imports.py`` checks that every column
here is a column there, of the same type."""
from __future__ import annotations

from sqlalchemy import Boolean, Integer, String, Text, column, table

from engine.store.types import UTCDateTime

users = table("users", column("name", String), column("roles", String), column("groups", String),
              column("active", Boolean))

instances = table("instances", column("id", Integer), column("ticket_no", String), column("kind", String),
                  column("definition_id", Integer), column("severity", String), column("vip", Boolean),
                  column("owner", String), column("staff_involved", String),
                  column("response_due", UTCDateTime), column("finish_due", UTCDateTime),
                  column("clock_paused_at", UTCDateTime))

human_tasks = table("human_tasks", column("id", String), column("instance_id", Integer),
                    column("bpmn_id", String), column("spec_name", String), column("name", String),
                    column("role", String), column("candidate_group", String), column("candidates", String),
                    column("assignee", String), column("state", String), column("created_at", UTCDateTime),
                    column("due_at", UTCDateTime), column("ended_at", UTCDateTime),
                    column("completed_by", String), column("end_reason", String),
                    column("offer_due", UTCDateTime))

definitions = table("definitions", column("id", Integer), column("process_id", String), column("xml", Text))

ALL = (users, instances, human_tasks, definitions)
