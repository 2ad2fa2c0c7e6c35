"""Live pages (issue 20): one server-sent event stream per browser tab tells the page what changed.

``GET /live/events`` streams ``change`` events (the tickets that changed, alerts for this user, the count of
their ready tasks) as the audit ledger moves on (``engine.services.live``), a heartbeat comment every
``HEARTBEAT`` seconds, and ends after ``STREAM_SECONDS`` (with a little jitter) so the browser reconnects
(``Last-Event-ID`` carries on where it stopped) and no stream outlives a sign-out or a deploy for long.

A stream holds a worker thread for its whole life, so each process serves at most ``KEFU_LIVE_STREAMS``
(default 8) at a time; ``kefu web`` gives each gunicorn worker that many threads on top of its request
threads, and ``kefu serve`` adds them to waitress's. A stream beyond the bound is told ``busy`` and to come
back in half a minute (the page still works; it refreshes when that stream opens).
"""
from __future__ import annotations

import json
import os
import random
import threading
import time

from flask import Blueprint, Response, current_app, jsonify, request
from flask_babel import get_locale
from flask_login import current_user, login_required

from .auth import kefu, me

bp = Blueprint("live", __name__)

HEARTBEAT = 15.0  # seconds between comments that keep proxies from closing an idle stream
STREAM_SECONDS = 150.0  # then the stream ends and the browser reconnects
POLL_SECONDS = 2.0  # SQLite: how often a stream looks for other processes' changes
RETRY_MS = 2000
BUSY_RETRY_MS = 30000
STOPPING = threading.Event()  # set when the process is shutting down: open streams end at once


def stream_limit() -> int:
    try:
        return max(1, int(os.environ.get("KEFU_LIVE_STREAMS") or 8))
    except ValueError:
        return 8


class StreamSlots:
    """At most ``limit`` streams at once in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self.open = 0

    def take(self, limit: int) -> bool:
        with self._lock:
            if self.open >= limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1


def slots() -> StreamSlots:
    """This app's stream places (one app per process in service; tests make several)."""
    return current_app.extensions.setdefault("kefu_live_slots", StreamSlots())


def _event(name: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _spoken(change: dict, app, locale: str) -> dict:
    """The alerts' task names (from the diagrams) in the page's language (the stream runs outside the
    request's context)."""
    from flask_babel import force_locale

    from .labels import diagram_text
    named = [a for a in change.get("alerts") or () if a.get("task")]
    if named:
        with app.app_context(), app.test_request_context(), force_locale(locale):
            for a in named:
                a["task"] = diagram_text(a["task"])
    return change


def ready_count(k, name: str) -> int:
    return len(k.tasks.ready(actor=name))


def _start(value) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if 0 <= n < 2 ** 62 else None


@bp.get("/live/events")
@login_required
def events():
    k = kefu()
    user = {"name": me(), "roles": sorted(current_user.roles), "groups": sorted(current_user.groups)}
    headers = {"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"}
    places = slots()
    if not places.take(current_app.config.get("LIVE_STREAMS") or stream_limit()):
        busy = f"retry: {BUSY_RETRY_MS}\n" + _event("busy", {"retry_ms": BUSY_RETRY_MS})
        return Response(busy, mimetype="text/event-stream", headers=headers)
    k.live.activate()
    seconds = float(current_app.config.get("LIVE_STREAM_SECONDS") or STREAM_SECONDS)
    heartbeat = float(current_app.config.get("LIVE_HEARTBEAT") or HEARTBEAT)
    resume = _start(request.headers.get("Last-Event-ID") or request.args.get("since"))
    halt = current_app.extensions.setdefault("kefu_live_stop", threading.Event())  # this app's streams end
    app, locale = current_app._get_current_object(), str(get_locale() or "zh")

    def stream():
        try:
            seen = k.live.signal.version
            last = k.live.last()
            yield f"retry: {RETRY_MS}\n"
            hello = {"last": last, "count": ready_count(k, user["name"])}
            if resume is not None and resume < last:  # changes while the page had no stream
                hello.update(_spoken(k.live.since(resume, user), app, locale))
                hello["last"] = last
            yield _event("hello", hello, last)
            ends = time.monotonic() + seconds * random.uniform(0.9, 1.1)
            quiet_since = time.monotonic()
            while not (STOPPING.is_set() or halt.is_set()):
                now = time.monotonic()
                if now >= ends:
                    break
                poll = heartbeat if k.live.cross_process else POLL_SECONDS
                seen = k.live.wait(seen, min(poll, ends - now, heartbeat))
                current = k.live.last()
                if current > last:
                    change = _spoken(k.live.since(last, user), app, locale)
                    change["count"] = ready_count(k, user["name"])
                    last = change["last"]  # the newest entry read (all of them, or the first MAX_ENTRIES)
                    yield _event("change", change, last)
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= heartbeat:
                    yield ": heartbeat\n\n"
                    quiet_since = time.monotonic()
            yield _event("bye", {"last": last})
        finally:
            places.give_back()

    return Response(stream(), mimetype="text/event-stream", headers=headers)


@bp.get("/live/state")
@login_required
def state():
    """The change counter and my ready-task count (for scripts and checks; the pages use the stream)."""
    k = kefu()
    return jsonify({"last": k.live.last(), "count": ready_count(k, me()), "streams": slots().open,
                    "stream_limit": stream_limit()})


def stop_streams(app) -> None:
    """End every open stream of ``app`` (a test server going away)."""
    app.extensions.setdefault("kefu_live_stop", threading.Event()).set()
    app.extensions["kefu"].live.signal.bump()


def live_config() -> dict:
    """What live.js needs to know, in the reader's language (a JSON block in base.html)."""
    from flask_babel import gettext as _
    from flask import url_for
    return {"now": int(kefu().now().timestamp() * 1000), "events_url": url_for("live.events"),
            "ticket_url": url_for("records.instance", ref="__TICKET__"),
            "text": {"left": _("剩余 %(t)s", t="{t}"), "over": _("已超时 %(t)s", t="{t}"),
                     "dh": _("%(d)d天%(h)d小时", d=111, h=222).replace("111", "{d}").replace("222", "{h}"),
                     "hm": _("%(h)d小时%(m)d分", h=222, m=333).replace("222", "{h}").replace("333", "{m}"),
                     "m": _("%(m)d分钟", m=333).replace("333", "{m}"),
                     "major_complaint": _("新的重大投诉"), "overdue": _("超时预警"),
                     "open": _("查看"), "dismiss": _("关闭"), "updated": _("此页内容已有变化"), "reload": _("刷新"),
                     "sound_on": _("提示音：开"), "sound_off": _("提示音：关")}}
