"""Translation support: a Babel extractor that takes the Chinese names people see from the diagrams
(form options; the events, gateways and scripts in a ticket's timeline) into the catalogue, so the English
interface translates them too. User tasks and form fields carry their English in the diagram itself
(``name_en``, ``label_en``)."""
from __future__ import annotations

from lxml import etree

BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
CAMUNDA = "{http://camunda.org/schema/1.0/bpmn}"
NAMED_STEPS = tuple(BPMN + tag for tag in (
    "startEvent", "endEvent", "boundaryEvent", "intermediateCatchEvent", "intermediateThrowEvent",
    "exclusiveGateway", "parallelGateway", "inclusiveGateway", "scriptTask", "serviceTask", "businessRuleTask",
    "process"))  # the process names: 总览's deployed definitions, the escalation's 升级主管
DMN = "{https://www.omg.org/spec/DMN/20191111/MODEL/}"
NAMED_DECISIONS = (DMN + "definitions", DMN + "decision")


def extract_bpmn(fileobj, keywords, comment_tags, options):
    """Babel extractor: (line, function, message, comments) for option names and named non-user steps."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.parse(fileobj, parser).getroot()
    for node in root.iter(CAMUNDA + "value", *NAMED_STEPS, *NAMED_DECISIONS):
        name = node.get("name")
        if name:
            yield node.sourceline, "gettext", name, [f"diagram: {node.get('id')}"]
