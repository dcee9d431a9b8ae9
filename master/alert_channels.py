"""The two alert channels: EMAIL (smtplib: plain, STARTTLS or SSL, optional login; a multipart
mail with text and HTML) and WEBHOOK (httpx POST of JSON or a Slack-compatible body, signed with
HMAC-SHA256 when the channel has a secret). Each send raises ``ChannelError`` saying why."""

from __future__ import annotations

import smtplib
import ssl
import time
from email.message import EmailMessage
from typing import Any

import httpx

from core.alert_render import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertView,
    render_mail,
    signature,
    webhook_body,
)
from core.errors import ChannelError


def _tls_context(params: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if params.get("verify_tls") is False:  # a self-signed relay the operator chose to trust
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def send_email(
    params: dict[str, Any], secrets: dict[str, Any], a: AlertView, base_url: str, timeout_s: float
) -> str:
    """Mail the alert to the channel's recipients; returns a one-line receipt."""
    r = render_mail(a, base_url)
    to = [str(x) for x in params.get("recipients") or []]
    cc = [str(x) for x in params.get("cc") or []]
    if not to and not cc:
        raise ChannelError("the channel has no recipients")
    msg = EmailMessage()
    msg["Subject"] = r.subject
    msg["From"] = str(params.get("sender") or "dagkeeper@localhost")
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["X-Dagkeeper-Alert"] = str(a.id)
    msg.set_content(r.text)
    msg.add_alternative(r.html, subtype="html")
    host, port = str(params.get("host") or "localhost"), int(params.get("port") or 25)
    security = str(params.get("security") or "NONE").upper()
    try:
        if security == "SSL":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=timeout_s, context=_tls_context(params)
            )
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout_s)
        with smtp:
            if security == "STARTTLS":
                smtp.starttls(context=_tls_context(params))
            user = params.get("username")
            if user:
                smtp.login(str(user), str(secrets.get("password") or ""))
            refused = smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise ChannelError(f"SMTP {host}:{port}: {type(exc).__name__}: {exc}") from None
    if refused:
        raise ChannelError(f"SMTP {host}:{port} refused {sorted(refused)}")
    return f"mailed {len(to) + len(cc)} recipient(s) via {host}:{port}"


def send_webhook(
    params: dict[str, Any], secrets: dict[str, Any], a: AlertView, base_url: str, timeout_s: float
) -> str:
    """POST the alert; any answer but 2xx is a failure (retried by the sender)."""
    url = str(params.get("url") or "")
    body = webhook_body(a, base_url, str(params.get("format") or "JSON"))
    headers = {str(k): str(v) for k, v in (params.get("headers") or {}).items()}
    headers["Content-Type"] = "application/json"
    headers["User-Agent"] = "dagkeeper-alerts"
    key = secrets.get("secret")
    if key:
        ts = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = ts
        headers[SIGNATURE_HEADER] = signature(str(key), ts, body)
    try:
        resp = httpx.post(url, content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ChannelError(f"POST {url}: {type(exc).__name__}: {exc}") from None
    if not 200 <= resp.status_code < 300:
        raise ChannelError(f"POST {url}: HTTP {resp.status_code}")
    return f"POST {url}: HTTP {resp.status_code}"


SENDERS = {"EMAIL": send_email, "WEBHOOK": send_webhook}
