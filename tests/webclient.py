"""A signed-in browser stand-in for the web tests: Flask's test client with a CSRF token on every post."""
from __future__ import annotations

import re

from webapp import create_app

TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"')


class Web:
    def __init__(self, kefu, **config):
        self.kefu = kefu
        self.app = create_app({"TESTING": True, "SECRET_KEY": "test-secret", **config}, kefu=kefu)
        self.client = self.app.test_client()
        self.token = None

    def login_as(self, name: str) -> "Web":
        """Sign in without the password round trip (PBKDF2 is slow on purpose); one test does the real one."""
        user = self.kefu.users.get(name)
        with self.client.session_transaction() as s:
            s.clear()
            s["_user_id"] = name
            s["_fresh"] = True
            s["kefu_sv"] = user["session_version"] if user else 0  # the version a real sign-in records
        self.token = None
        return self

    def csrf(self) -> str:
        if self.token is None:
            page = self.client.get("/login").get_data(as_text=True)
            self.token = TOKEN.search(page)[1]
        return self.token

    def get(self, url, **kw):
        return self.client.get(url, **kw)

    def page(self, url) -> str:
        r = self.client.get(url)
        assert r.status_code == 200, (url, r.status_code, r.get_data(as_text=True)[:500])
        return r.get_data(as_text=True)

    def post(self, url, data=None, **kw):
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf())
        return self.client.post(url, data=data, **kw)

    def post_json(self, url, body):
        return self.client.post(url, json=body, headers={"X-CSRFToken": self.csrf(), "Accept": "application/json"})


def field_error(html: str, field_id: str) -> str | None:
    m = re.search(r'<div class="field invalid" data-field="%s">.*?<em class="err"[^>]*>([^<]*)</em>' % field_id,
                  html, re.S)
    return m[1] if m else None


def field_value(html: str, field_id: str) -> str | None:
    m = re.search(r'<(?:input|textarea)[^>]*name="%s"[^>]*?(?:value="([^"]*)"|>([^<]*)</textarea>)' % field_id, html)
    return (m[1] if m[1] is not None else m[2]) if m else None
