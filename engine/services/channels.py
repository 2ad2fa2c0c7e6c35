"""How a notification leaves: e-mail over SMTP and a JSON POST to a webhook (an SMS or WeCom gateway).

SMTP settings come from the environment when a message is sent:

    KEFU_SMTP_HOST       the mail server (no host: e-mail messages fail and stay visible in the outbox)
    KEFU_SMTP_PORT       default 25 (465: SMTP over TLS)
    KEFU_SMTP_USER       with KEFU_SMTP_PASSWORD: sign in before sending
    KEFU_SMTP_PASSWORD
    KEFU_SMTP_FROM       the sender address (default kefu@localhost)
    KEFU_SMTP_STARTTLS   1: upgrade the connection with STARTTLS before signing in
"""
from __future__ import annotations

import json
import os
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import make_msgid

TIMEOUT = 10  # seconds a server may take to answer one message


class SendFailed(Exception):
    """The message did not go out; the reason is kept in the outbox row."""


def smtp_settings(environ=None) -> dict:
    env = os.environ if environ is None else environ
    try:
        port = int(env.get("KEFU_SMTP_PORT") or 25)
    except ValueError:
        port = 25
    return {"host": (env.get("KEFU_SMTP_HOST") or "").strip(), "port": port,
            "user": env.get("KEFU_SMTP_USER") or None, "password": env.get("KEFU_SMTP_PASSWORD") or None,
            "sender": env.get("KEFU_SMTP_FROM") or "kefu@localhost",
            "starttls": (env.get("KEFU_SMTP_STARTTLS") or "").strip().lower() in ("1", "true", "yes", "on")}


def send_email(to: str, subject: str, body: str, settings: dict | None = None) -> None:
    cfg = settings or smtp_settings()
    if not cfg["host"]:
        raise SendFailed("no mail server configured (KEFU_SMTP_HOST)")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = cfg["sender"], to, subject
    msg["Message-ID"] = make_msgid(domain="kefu")
    msg.set_content(body)
    try:
        cls = smtplib.SMTP_SSL if cfg["port"] == 465 else smtplib.SMTP
        with cls(cfg["host"], cfg["port"], timeout=TIMEOUT) as smtp:
            if cfg["starttls"] and cls is smtplib.SMTP:
                smtp.starttls()
            if cfg["user"] and cfg["password"]:
                smtp.login(cfg["user"], cfg["password"])
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise SendFailed(f"{type(exc).__name__}: {exc}"[:500]) from exc


def post_webhook(url: str, payload: dict) -> None:
    if not url.lower().startswith(("http://", "https://")):
        raise SendFailed("the webhook address must start with http:// or https://")
    request = urllib.request.Request(url, data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                                     headers={"Content-Type": "application/json; charset=utf-8",
                                              "User-Agent": "kefu-notifications"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - http(s) only
            response.read(4096)
    except urllib.error.HTTPError as exc:
        raise SendFailed(f"the webhook answered HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise SendFailed(f"{type(exc).__name__}: {exc}"[:500]) from exc
