"""External tasks and messages: a worker fetches and locks the tasks of a topic, completes them with variables
or reports a failure; a named message reaches the instance waiting for it or starts a process."""
from __future__ import annotations

import json

from engine.cli.common import _data, _print, _service
from engine.errors import InvalidInput


def _task_line(t: dict) -> str:
    lock = f" locked by {t['worker_id']} until {t['lock_expires_at']}" if t.get("worker_id") else ""
    error = f" last error: {t['error_message']}" if t.get("error_message") else ""
    return f"{t['id']}  {t['topic']}  {t['ticket_no']} (instance {t['instance_id']})  {t['name'] or t['bpmn_id']}" \
           f"  retries {t['retries']}{lock}{error}"


def cmd_fetch(args):
    from engine.clock import parse_duration
    lock = parse_duration(args.lock)
    topics = [args.topic] if args.topic else None
    got = _service().external.fetch_and_lock(args.worker, topics, lock, args.max, actor=args.actor)
    out = [{"id": t["id"], "topic": t["topic"], "instance_id": t["instance_id"], "ticket_no": t["ticket_no"],
            "bpmn_id": t["bpmn_id"], "name": t["name"], "retries": t["retries"],
            "lock_expires_at": t["lock_expires_at"], "variables": t["variables"]} for t in got]
    _print(args, out, lambda ts: "\n".join(
        f"{t['id']}  {t['topic']}  instance {t['instance_id']} ({t['ticket_no']})  locked until "
        f"{t['lock_expires_at']}\n  variables: {json.dumps(t['variables'], ensure_ascii=False, default=str)}"
        for t in ts) or "no task to fetch")


def cmd_complete(args):
    r = _service().external.complete(args.task, args.worker, _data(args.data) or {}, actor=args.actor)
    _print(args, r, lambda r: f"completed {r['id']} ({r['topic']}); {r['ticket_no']}: {r['status']}")


def cmd_fail(args):
    from engine.clock import parse_duration
    retry_in = parse_duration(args.retry_in) if args.retry_in else None
    r = _service().external.fail(args.task, args.worker, args.error, retries=args.retries, details=args.details,
                                 retry_in=retry_in, actor=args.actor)
    _print(args, r, lambda r: f"failure recorded for {r['id']} ({r['topic']}): {r['retries']} retries left"
                              + (f"; {r['ticket_no']} has an incident" if r["status"] == "incident" else ""))


def cmd_extend(args):
    from engine.clock import parse_duration
    r = _service().external.extend_lock(args.task, args.worker, parse_duration(args.lock), actor=args.actor)
    _print(args, r, lambda r: f"{r['id']} locked by {r['worker_id']} until {r['lock_expires_at']}")


def cmd_list(args):
    ts = _service().external.list(topic=args.topic, instance=args.instance)
    _print(args, ts, lambda ts: "\n".join(_task_line(t) for t in ts) or "no open external tasks")


def cmd_message(args):
    if not args.actor:
        raise InvalidInput("--as USER is needed to send a message")
    r = _service().messages.correlate(args.name, args.actor, _data(args.data), instance=args.instance,
                                      all_instances=args.all)
    _print(args, r, lambda r: "\n".join(
        [f"message {r['message']} reached {c['ticket_no']} at {c['element']}: {c['status']}" for c in r["correlated"]]
        + ([f"message {r['message']} started {r['started']['kind']} {r['started']['ticket_no']}"] if r["started"]
           else [])))


def register(sub, add) -> None:
    ext = sub.add_parser("external", help="external tasks: fetch and lock, complete, fail (workers)") \
        .add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("fetch", cmd_fetch, "lock open external tasks (of a topic) for a worker and print them", subparsers=ext)
    sp.add_argument("--topic", help="only this topic")
    sp.add_argument("--worker", required=True, help="the worker's id; it alone may complete what it locked")
    sp.add_argument("--lock", default="5m", help="how long the lock holds (5m, 1h, PT10M; default 5m)")
    sp.add_argument("--max", type=int, default=1, help="at most this many tasks (default 1)")
    sp.add_argument("--as", dest="actor", help="a user with role integration, supervisor or process_owner")
    sp = add("complete", cmd_complete, "complete an external task the worker locked", subparsers=ext)
    sp.add_argument("task")
    sp.add_argument("--worker", required=True)
    sp.add_argument("--data", help="variables as a JSON object (or @file, or - for stdin)")
    sp.add_argument("--as", dest="actor")
    sp = add("fail", cmd_fail, "report that a worker could not do an external task", subparsers=ext)
    sp.add_argument("task")
    sp.add_argument("--worker", required=True)
    sp.add_argument("--error", required=True, help="what went wrong")
    sp.add_argument("--details")
    sp.add_argument("--retries", type=int, help="retries left (default: one fewer); 0 raises an incident")
    sp.add_argument("--retry-in", help="not fetched again before this much time passed (e.g. 10m)")
    sp.add_argument("--as", dest="actor")
    sp = add("extend-lock", cmd_extend, "keep a locked external task longer", subparsers=ext)
    sp.add_argument("task")
    sp.add_argument("--worker", required=True)
    sp.add_argument("--lock", required=True, help="the new lock, counted from now (e.g. 10m)")
    sp.add_argument("--as", dest="actor")
    sp = add("list", cmd_list, "open external tasks with their locks and retries", subparsers=ext)
    sp.add_argument("--topic")
    sp.add_argument("--instance")
    sp = add("message", cmd_message, "deliver a named message to the instance waiting for it, or start the "
                                     "process it starts")
    sp.add_argument("name")
    sp.add_argument("--data", help="its variables as a JSON object (or @file, or - for stdin)")
    sp.add_argument("--instance", help="the instance (id or ticket number) when several wait")
    sp.add_argument("--all", action="store_true", help="deliver it to every instance waiting for it")
    sp.add_argument("--as", dest="actor", help="who sends it (starts the instance it starts)")
