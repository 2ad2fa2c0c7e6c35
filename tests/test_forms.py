"""Submitted data is validated against the form inside the diagram; nothing is stored on error."""
import pytest

from engine.errors import FormValidationError
from engine.bpmn.forms import FormValidator, build_fields

FORM = {"fields": [
    {"id": "name", "label": "姓名", "type": "string", "validation": {"required": None, "maxlength": "5"}},
    {"id": "score", "label": "评分", "type": "long", "validation": {"min": "0", "max": "100"}},
    {"id": "ok", "label": "满意", "type": "boolean", "validation": {"required": None}},
    {"id": "day", "label": "日期", "type": "date", "validation": {}},
    {"id": "at", "label": "时间", "type": "datetime", "validation": {}},
    {"id": "severity", "label": "严重程度", "type": "enum", "validation": {},
     "options": [{"id": "general", "name": "一般"}, {"id": "major", "name": "重大"}]},
    {"id": "members", "label": "成员", "type": "users", "validation": {}, "properties": {"role": "taskforce"}},
]}
USERS = {"tf1": {"taskforce"}, "ag": {"agent"}}


def validator():
    return FormValidator(build_fields(FORM), USERS.get)


def test_valid_data_is_typed():
    clean = validator().validate({"name": "张三", "score": "90", "ok": "true", "day": "2026-10-10",
                                  "at": "2026-10-10T09:30", "severity": "major", "members": "tf1"})
    assert clean == {"name": "张三", "score": 90, "ok": True, "day": "2026-10-10",
                     "at": "2026-10-10T09:30:00+08:00", "severity": "major", "members": ["tf1"]}


def test_missing_optional_fields_are_none():
    clean = validator().validate({"name": "a", "ok": False})
    assert clean["score"] is None and clean["members"] == []


@pytest.mark.parametrize("data, field, message", [
    ({"ok": True}, "name", "required"),
    ({"name": "a", "ok": True, "score": "ninety"}, "score", "whole number"),
    ({"name": "a", "ok": True, "score": True}, "score", "whole number"),
    ({"name": "a", "ok": True, "score": 101}, "score", "at most"),
    ({"name": "a", "ok": "maybe"}, "ok", "true or false"),
    ({"name": "a", "ok": True, "severity": "huge"}, "severity", "one of"),
    ({"name": "a", "ok": True, "day": "10/10/2026"}, "day", "YYYY-MM-DD"),
    ({"name": "a", "ok": True, "at": "2026-10-10"}, "at", "date and time"),
    ({"name": "a", "ok": True, "members": "ag"}, "members", "role taskforce"),
    ({"name": "a", "ok": True, "members": "nobody"}, "members", "no such user"),
    ({"name": "abcdef", "ok": True}, "name", "at most 5"),
    ({"name": "a", "ok": True, "__builtins__": {}}, "__builtins__", "unknown field"),
    ({"name": "a", "ok": True, "extra": 1}, "extra", "unknown field"),
])
def test_invalid_data_names_the_field(data, field, message):
    with pytest.raises(FormValidationError) as exc:
        validator().validate(data)
    assert message in exc.value.errors[field]


def test_all_errors_are_reported_at_once():
    with pytest.raises(FormValidationError) as exc:
        validator().validate({"score": -1, "bogus": 1})
    assert set(exc.value.errors) == {"name", "ok", "score", "bogus"}


def test_non_object_payload_is_rejected():
    with pytest.raises(FormValidationError):
        validator().validate(["not", "a", "dict"])
