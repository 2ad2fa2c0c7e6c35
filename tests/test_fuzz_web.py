"""Malformed input never makes a 5xx: every web route, driven with odd query parameters and form values.

Two passes over the routes of the app's URL map (a route added later is driven too): a sweep that sends each
parameter a view reads each odd value of a fixed list, one at a time (an early refusal of one parameter would
hide the next), and a property-based pass (Hypothesis) that combines parameters, users and generated text."""
from __future__ import annotations

import inspect
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.webclient import Web

# The sweep: one of each kind of trouble (digits that are not ASCII, a number past 64 bits, a negative one,
# invisible text, text past every column's length, an impossible date, a page cursor with a huge id, JSON).
# The Hypothesis pass draws from these, more odd values and generated text.
ODD_VALUES = ["²", "9223372036854775808", "-1", "\u200b", "x" * 3000, "2026-02-30",
              "2026-11-23T09:00:00+08:00_" + "9" * 30, "[]"]
MORE_VALUES = ["", "１２３", "9" * 40, "0000-00", "<script>", "//evil.example", "1e309", "NaN", "\u202e", "\ufeff",
               "%00", "../../etc/passwd", "' OR 1=1 --", "2026-13", "🙂", "{}", "on", "TS20261123-0001", "2026-11-23T09:00:00_1", "javascript:alert(1)", "\t\n", "٣٤"]
_SPECIAL = st.sampled_from(ODD_VALUES + MORE_VALUES)
ODD = st.one_of(_SPECIAL, _SPECIAL, st.integers().map(str),
                st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
USERS = ("supervisor", "owner", "agent", "qa", "auditor", "department")
SKIP = {"static", "auth.logout"}  # files on disk; signing out ends the fuzzing user's session
READS = re.compile(r'request\.(?:args|form)\.get(?:list)?\(\s*"([a-z_]+)"|request\.(?:args|form)\["([a-z_]+)"\]')
# What views read through a list of names rather than by name.
EXTRA = {"audit.search": "ticket customer kind severity status agent date_from date_to overdue limit after",
         "audit.export_search": "ticket customer kind severity status agent date_from date_to overdue after",
         "records.customer_update": "name phone email company address region needs special_note vip",
         "desk.intake_submit": "customer_name contact_phone region content demand severity nature occurred_at",
         "desk.complete": "result opinion satisfied reply note",
         "desk.create_customer": "name phone company address region vip",
         "api.find_customers": "q", "api.tasks": "role kind instance",
         "casefile.search": "q status kind severity assignee date_from date_to view after",
         "api.search": "q status kind severity assignee date_from date_to view limit after",
         "casefile.add_contact": "channel outcome", "casefile.add_attachment": "supersedes",
         "api.add_attachment": "filename supersedes",
         "auth.login": "username password next", "auth.password": "current_password new_password confirm_password"}


def _views():
    """(rule text, endpoint, method, parameter names) of every route."""
    from webapp import create_app
    app = create_app({"SECRET_KEY": "x"}, kefu=_NoEngine())
    out = []
    for r in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if r.endpoint in SKIP:
            continue
        source = inspect.getsource(inspect.unwrap(app.view_functions[r.endpoint]))
        names = {a or b for a, b in READS.findall(source)} | set(EXTRA.get(r.endpoint, "").split())
        for method in sorted(r.methods & {"GET", "POST"}):
            out.append((r.rule, r.endpoint, method, sorted(names)))
    return out


class _NoEngine:
    """Enough of an engine for create_app to build the URL map."""
    class config:  # noqa: N801 - stands in for the Config instance
        env = "test"
        database_url = "sqlite://"


VIEWS = _views()


@pytest.fixture
def fuzz(kefu, scenario):
    """The app over one open complaint (so ids and ticket numbers name something)."""
    scenario.start("complaint")
    task = scenario.ready()[0]
    web = Web(kefu, WTF_CSRF_ENABLED=False, PROPAGATE_EXCEPTIONS=False,
              LIVE_STREAM_SECONDS=0.2)  # the live event stream is fuzzed too, and ends at once
    known = {"ref": scenario.ticket_no, "task_id": task["id"], "customer_id": "1", "process_id": "complaint",
             "version": "1", "month": "2026-11", "key": "K1", "kind": "complaint", "code": "en", "fmt": "csv",
             "event_id": "1", "attachment_id": "1", "hid": "1", "message_id": "1"}
    return web, known


def _path(rule: str, values: dict) -> str:
    return re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", lambda m: values[m.group(1)], rule)


def _send(web, method: str, path: str, params: dict):
    if method == "GET":
        r = web.client.get(path, query_string=params)
    elif path.startswith("/api/"):
        r = web.client.post(path, json=params, headers={"Authorization": "Bearer x"})
    else:
        r = web.client.post(path, data=params)
    try:
        r.get_data()  # a download streams: an error after its headers breaks it
    except Exception as exc:  # noqa: BLE001 - any failure while streaming is the finding
        r.status_code = 599
        r.set_data(repr(exc))
    return r


def _user_for(web, method, path) -> str:
    """The first user whom the route does not refuse outright (so the parameters are read)."""
    for user in USERS:
        web.login_as(user)
        if _send(web, method, path, {}).status_code not in (401, 403):
            return user
    return USERS[0]


def test_every_parameter_with_every_odd_value(fuzz):
    web, known = fuzz
    failures = []
    for rule, endpoint, method, names in VIEWS:
        path = _path(rule, known)
        web.login_as(_user_for(web, method, path))
        for name in names:
            for value in ODD_VALUES:
                r = _send(web, method, path, {name: value})
                if r.status_code >= 500:
                    failures.append((method, path, name, value[:40], r.status_code))
    assert not failures, "\n".join(map(repr, failures))


SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(data=st.data())
def test_no_odd_request_makes_a_server_error(fuzz, data):
    web, known = fuzz
    rule, endpoint, method, names = data.draw(st.sampled_from(VIEWS))
    web.login_as(data.draw(st.sampled_from(USERS)))
    odd_path = {k: data.draw(st.one_of(st.just(v), ODD.filter(lambda s: s.strip("./") and not set("/?#%") & set(s))))
                for k, v in known.items()}
    path = _path(rule, odd_path)
    params = data.draw(st.dictionaries(st.sampled_from(names or ["unknown"]), ODD, max_size=3))
    r = _send(web, method, path, params)
    assert r.status_code < 500, (method, path, params, r.status_code, r.get_data(as_text=True)[:300])
