"""Translation support: a Babel extractor that takes the Chinese names people see from the diagrams
(form options and timers) into the catalogue, so the English interface can translate them too.
Field labels and task names carry their English in the diagram itself (``label_en``, ``name_en``)."""
from __future__ import annotations

from lxml import etree

BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
CAMUNDA = "{http://camunda.org/schema/1.0/bpmn}"
TIMER_EVENTS = (BPMN + "boundaryEvent", BPMN + "intermediateCatchEvent")


def extract_bpmn(fileobj, keywords, comment_tags, options):
    """Babel extractor: (line, function, message, comments) for option names and timer names."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.parse(fileobj, parser).getroot()
    for node in root.iter(CAMUNDA + "value", *TIMER_EVENTS):
        name = node.get("name")
        if not name:
            continue
        if node.tag in TIMER_EVENTS and node.find(f"{BPMN}timerEventDefinition") is None:
            continue
        yield node.sourceline, "gettext", name, [f"diagram: {node.get('id')}"]
