"""``kefu web``: gunicorn with several workers on a free loopback port answers the UI and the API, and stops
gracefully on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kefu_cli(env, *args) -> str:
    done = subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def request(url, token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def env(tmp_path):
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{tmp_path / 'kefu.db'}", "KEFU_ENV": "test"}
    env.pop("KEFU_SECRET_KEY", None)
    kefu_cli(env, "deploy")
    kefu_cli(env, "demo")
    return env


def test_kefu_web_runs_gunicorn_workers_and_stops_on_sigterm(env, tmp_path):
    token = kefu_cli(env, "users", "token", "agent", "--label", "test").strip()
    port = free_port()
    log = open(tmp_path / "web.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "web", "--bind", f"127.0.0.1:{port}",
                             "--workers", "2"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, health = request(base + "/healthz")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline, "kefu web did not answer within 60 s"
                time.sleep(0.2)
        assert status == 200 and health["status"] == "ok"
        # gunicorn forks its workers one after another (with a short random pause): the first may answer before
        # the second exists, so wait for the second, then check there are exactly two
        grown = time.monotonic() + 30
        while len(children(proc.pid)) < 2 and time.monotonic() < grown:
            time.sleep(0.1)
        time.sleep(0.5)
        assert len(children(proc.pid)) == 2  # two workers, no scheduler among them
        status, started = request(base + "/api/v1/tickets", token, {"kind": "repair"})
        assert status == 201 and started["ticket_no"].startswith("BX"), started
        statuses = {request(base + f"/api/v1/instances/{started['ticket_no']}", token)[0] for _ in range(6)}
        assert statuses == {200}
        assert request(base + "/api/v1/tasks")[0] == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "web.log").read_text()
    assert "Handling signal: term" in text and "Shutting down: Master" in text
    assert "Traceback" not in text


def test_kefu_web_refuses_a_database_without_schema_and_bad_numbers(tmp_path):
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    done = subprocess.run([sys.executable, "-m", "engine.cli", "web", "--workers", "0"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--workers" in done.stderr
    done = subprocess.run([sys.executable, "-m", "engine.cli", "web", "--bind", f"127.0.0.1:{free_port()}"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "kefu init" in done.stderr


def test_keep_alive_clients_beyond_a_workers_capacity_are_all_served(env, tmp_path):
    """One worker with one thread holds at most two connections and keeps one idle: more keep-alive clients
    than that wait their turn (a surplus idle connection is closed after its response) and none starves."""
    import http.client
    port = free_port()
    log = open(tmp_path / "web.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "web", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1", "--threads", "1"], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert request(f"http://127.0.0.1:{port}/healthz")[0] == 200
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline, "kefu web did not answer within 60 s"
                time.sleep(0.2)
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=20) for _ in range(4)]
        closed, began = 0, time.monotonic()
        for _round in range(3):
            for conn in conns:  # each connection in turn; http.client reconnects after "Connection: close"
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                assert r.status == 200 and json.loads(r.read())["status"] == "ok"
                closed += r.getheader("Connection", "").lower() == "close"
        assert time.monotonic() - began < 10  # nobody waited for an idle connection's keep-alive to expire
        assert closed > 0  # the surplus idle connections were closed, not kept
        for conn in conns:
            conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=40)
        log.close()


def test_live_streams_have_threads_of_their_own_under_gunicorn(env, tmp_path):
    """Issue 20: one worker with one request thread and two stream places: two pages hold event streams, a
    third is told it is busy, requests are still answered at once, and a ticket opened through the API
    reaches the open streams."""
    import http.client
    import http.cookiejar
    import re
    import urllib.parse
    token = kefu_cli(env, "users", "token", "agent", "--label", "test").strip()
    port = free_port()
    log = open(tmp_path / "web.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "web", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1", "--threads", "1", "--live-streams", "2"], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    streams = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert request(base + "/healthz")[0] == 200
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline, "kefu web did not answer within 60 s"
                time.sleep(0.2)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(base + "/login", timeout=10).read().decode()
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)[1]
        opener.open(base + "/login", urllib.parse.urlencode(
            {"csrf_token": csrf, "username": "supervisor", "password": "kefu-demo"}).encode(), timeout=30).read()
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)

        def open_stream():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            conn.request("GET", "/live/events", headers={"Cookie": cookie, "Accept": "text/event-stream"})
            r = conn.getresponse()
            assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
            return conn, r

        def read_until(r, word, limit=20):
            text, ends = "", time.monotonic() + limit
            while word not in text:
                assert time.monotonic() < ends, text
                line = r.readline().decode()
                assert line, text
                text += line
            return text

        for _ in range(2):
            conn, r = open_stream()
            assert "event: hello" in read_until(r, "event: hello")
            streams.append((conn, r))
        busy_conn, busy = open_stream()
        assert "event: busy" in read_until(busy, "event: busy")
        busy_conn.close()
        began = time.monotonic()
        assert request(base + "/healthz")[0] == 200 and time.monotonic() - began < 2  # not waiting for a thread
        status, started = request(base + "/api/v1/tickets", token, {"kind": "repair"})
        assert status == 201
        for _conn, r in streams:
            assert started["ticket_no"] in read_until(r, started["ticket_no"])
        proc.send_signal(signal.SIGTERM)  # the open streams end at once; the shutdown does not wait for them
        began = time.monotonic()
        assert proc.wait(timeout=40) == 0 and time.monotonic() - began < 20
    finally:
        for conn, _r in streams:
            conn.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "web.log").read_text()
