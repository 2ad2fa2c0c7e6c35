"""Task and event types Kefu adds to SpiffWorkflow's: the external task (a service task Kefu cannot run itself
waits, with a topic, until a worker completes it) and message events whose payload becomes task data."""
from __future__ import annotations

from SpiffWorkflow.bpmn.specs.mixins.service_task import ServiceTask as ServiceTaskMixin
from SpiffWorkflow.spiff.parser.task_spec import SpiffTaskParser
from SpiffWorkflow.spiff.serializer.event_definition import MessageEventDefinitionConverter
from SpiffWorkflow.spiff.serializer.task_spec import SpiffBpmnTaskConverter
from SpiffWorkflow.spiff.specs.event_definitions import MessageEventDefinition
from SpiffWorkflow.spiff.specs.spiff_task import SpiffBpmnTask

CAMUNDA = "{http://camunda.org/schema/1.0/bpmn}"
DEFAULT_RETRIES = 3


class ExternalTask(ServiceTaskMixin, SpiffBpmnTask):
    """A service task run by a worker outside Kefu: it starts and waits (SpiffWorkflow's STARTED state) until
    ``task.complete()`` is called with the worker's variables in its data. Its topic and the retries a new
    task starts with are in ``extensions`` (``kefu_topic``, ``kefu_retries``)."""

    @property
    def topic(self) -> str:
        return self.extensions.get("kefu_topic") or self.bpmn_id

    @property
    def retries(self) -> int:
        return int(self.extensions.get("kefu_retries") or DEFAULT_RETRIES)

    def _run_hook(self, my_task):
        return None  # STARTED: the engine waits for a worker


class ExternalTaskParser(SpiffTaskParser):
    """Reads the topic that the Camunda dialect's translation left on the element (``camunda:topic``)."""

    def parse_extensions(self, node=None):
        ext = super().parse_extensions(node)
        node = self.node if node is None else node
        ext["kefu_topic"] = node.get(CAMUNDA + "topic") or node.get("id")
        retries = node.get("{urn:kefu}retries")
        if retries:
            ext["kefu_retries"] = int(retries)
        return ext

    def create_task(self):
        return self.spec_class(self.spec, self.bpmn_id, **self.bpmn_attributes)


class PayloadMessageEventDefinition(MessageEventDefinition):
    """A message whose payload (a JSON object) is merged into the catching task's data, as Camunda's message
    correlation sets process variables. With a ``messageVariable`` the payload goes there, as in SpiffWorkflow."""

    def update_task_data(self, my_task):
        if self.message_var is not None:
            return super().update_task_data(my_task)
        payload = my_task.internal_data.pop(self.name, None)
        if isinstance(payload, dict):
            my_task.data.update(payload)
        return None


def finish_spec(spec) -> None:
    """Give the message events of a parsed process the payload-merging message definition."""
    for task_spec in spec.task_specs.values():
        definition = getattr(task_spec, "event_definition", None)
        if type(definition) is MessageEventDefinition:
            definition.__class__ = PayloadMessageEventDefinition


def add_converters(config: dict) -> None:
    """Register the added types with a serializer configuration (the spec diff of migrations uses them)."""
    config[ExternalTask] = SpiffBpmnTaskConverter
    config[PayloadMessageEventDefinition] = MessageEventDefinitionConverter


def external_tasks(spec_and_subs) -> list:
    """Every external task spec of a process and its called processes."""
    spec, subs = spec_and_subs
    return [ts for proc in (spec, *subs.values()) for ts in proc.task_specs.values() if isinstance(ts, ExternalTask)]


def deliver(wf, name: str, payload: dict, bpmn_id: str | None = None) -> str | None:
    """Deliver the message ``name`` to the workflow's event waiting for it (the element ``bpmn_id`` when given):
    the payload becomes the catching task's data. The element that caught it, or None when nothing waits."""
    from SpiffWorkflow.bpmn import BpmnEvent
    from SpiffWorkflow.util.task import TaskState
    for task in wf.get_tasks(state=TaskState.WAITING):
        definition = getattr(task.task_spec, "event_definition", None)
        if isinstance(definition, MessageEventDefinition) and definition.name == name and \
                bpmn_id in (None, task.task_spec.bpmn_id):
            wf.catch(BpmnEvent(definition, payload=payload))
            return task.task_spec.bpmn_id
    return None
