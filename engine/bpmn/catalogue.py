"""What a task list shows of each task of a deployed diagram (its form, English name, documentation and rule
IDs), read from the stored XML with the standard library's parser rather than SpiffWorkflow's.

Listing tasks (``kefu tasks``, the queues) needs only this from the diagram; parsing the diagram into a
SpiffWorkflow spec costs the import of SpiffWorkflow and lxml and the parse itself, which a command that runs no
workflow should not pay. What it reads is what ``engine.bpmn.diagram``'s parser stores in the task specs
(``task_info(spec)``); ``tests/test_cli_imports.py`` checks that both agree for every diagram of the project.

A deployed diagram was checked when it was deployed (no DOCTYPE, valid BPMN), so it is read here as is.
"""
from __future__ import annotations

from xml.etree import ElementTree

from engine.bpmn.forms import build_fields, read_form, read_properties
from engine.bpmn.vocabulary import B, rule_ids

LOOPS = (B + "multiInstanceLoopCharacteristics", B + "standardLoopCharacteristics")


def task_info(name_en, documentation, form) -> dict:
    """The task's part of a task dictionary (``engine.services.shapes.task_dict``), in its key order."""
    return {"name_en": name_en, "rules": rule_ids(documentation), "documentation": documentation,
            "form": [f.to_dict() for f in build_fields(form)]}


def spec_info(tspec) -> dict:
    """``task_info`` of a parsed task spec (None: no spec of that name)."""
    ext = tspec.extensions if tspec is not None else {}
    return task_info(ext.get("kefu_properties", {}).get("name_en"), getattr(tspec, "documentation", None),
                     ext.get("form"))


def read(xml: bytes | str, process_id: str) -> dict[str, tuple]:
    """Task spec name → (English name, documentation, form) of every element directly in process
    ``process_id`` (the parsed spec's ``task_specs`` hold those, not the ones of sub-processes). A looping or
    multi-instance task works through its child spec, named ``<id> [child]`` as SpiffWorkflow names it."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    root = ElementTree.fromstring(xml)
    out: dict[str, tuple] = {}
    for proc in root.iter(B + "process"):
        if proc.get("id") != process_id:
            continue
        for node in proc:
            bpmn_id = node.get("id")
            if not bpmn_id or not isinstance(node.tag, str):
                continue
            doc = node.find(f".//{B}documentation")
            if node.tag == B + "userTask":
                entry = (read_properties(node).get("name_en"), doc.text if doc is not None else None,
                         read_form(node))
            else:
                entry = (None, doc.text if doc is not None else None, None)
            looped = any(child.tag in LOOPS for child in node)
            out[f"{bpmn_id} [child]" if looped else bpmn_id] = entry
    return out


def names_en(xml: bytes | str) -> dict[str, str]:
    """Chinese name → English name (``name_en``) of every user task of a diagram: what lists that keep only a
    task's name (a handover's lines) show in English."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    out = {}
    for node in ElementTree.fromstring(xml).iter(B + "userTask"):
        english = read_properties(node).get("name_en")
        if node.get("name") and english:
            out[node.get("name")] = english
    return out
