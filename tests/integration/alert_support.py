"""What the alert, metrics and waiting-reason tests share: a real SMTP server (aiosmtpd) that
keeps what it receives, a local webhook receiver that can answer 500 first, masters, workers
and an alert sender serving in threads of the test process, and the API as a TestClient."""

from __future__ import annotations

import email
import email.policy
import json
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from core.settings import AlertSettings, Settings
from core.states import WORKFLOW_TERMINAL
from master.alert_sender import AlertSender
from master.server import MasterServer
from ops.localserver import wait_for
from worker.server import WorkerServer

TOKEN = "alert-test-token"
BASE_URL = "http://dagkeeper.test:8080"


def fast_alerts(settings: Settings, **over: Any) -> Settings:
    """Settings whose alert sender polls every 0.1 s and retries after 0.3 s, 0.6 s, ..."""
    cfg = AlertSettings(
        poll_interval_s=0.1, retry_base_s=0.3, retry_max_s=1.0, max_tries=50,
        send_timeout_s=2.0, base_url=BASE_URL,
    ).model_copy(update=over)  # fmt: skip
    return settings.model_copy(update={"alerts": cfg})


class Inbox:
    """aiosmtpd handler: every message received, parsed; ``logins`` the credentials used."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:  # fmt: skip
        if isinstance(auth_data, LoginPassword):
            user, pw = auth_data.login.decode(), auth_data.password.decode()
            self.logins.append((user, pw))
            return AuthResult(success=(user, pw) == ("alerts", "s3cret"))
        return AuthResult(success=False)

    def matching(self, pred: Callable[[EmailMessage], bool]) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if pred(m)]


def self_signed(tmp: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return ctx


def smtp_server(
    port: int, inbox: Inbox, login: bool = False, starttls: ssl.SSLContext | None = None
) -> Controller:
    """A started SMTP server on 127.0.0.1:``port`` (with ``login``: AUTH required, alerts/s3cret
    accepted, allowed without TLS on loopback; with ``starttls``: STARTTLS required first)."""
    kw: dict[str, Any] = {}
    if login:
        kw = {"authenticator": inbox.authenticate, "auth_required": True, "auth_require_tls": False}
    if starttls is not None:
        kw |= {"tls_context": starttls, "require_starttls": True}
    c = Controller(inbox, hostname="127.0.0.1", port=port, **kw)
    c.start()
    return c


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    return str(part.get_content()) if part is not None else ""


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


class Hook(BaseHTTPRequestHandler):
    """Records (headers, raw body) of each POST; answers 500 to the first ``fail_first``."""

    server: HookServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.calls.append(({k: v for k, v in self.headers.items()}, body))
            status = 500 if len(self.server.calls) <= self.server.fail_first else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class HookServer(ThreadingHTTPServer):
    def __init__(self, fail_first: int) -> None:
        super().__init__(("127.0.0.1", 0), Hook)
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class Served:
    """Masters, workers and alert senders in threads; ``close`` stops them in reverse order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stops: list[Callable[[], None]] = []

    def _thread(self, name: str, loop: Callable[[threading.Event], None],
                stop: Callable[[], None]) -> None:  # fmt: skip
        ev = threading.Event()
        t = threading.Thread(target=loop, args=(ev,), name=name, daemon=True)
        t.start()

        def halt() -> None:
            ev.set()
            t.join(timeout=15)
            stop()

        self._stops.append(halt)

    def master(self) -> MasterServer:
        m = MasterServer(self.settings)
        m.start()
        self._thread("master", m.serve_forever, m.stop)
        return m

    def worker(self, **over: Any) -> WorkerServer:
        s = self.settings
        if over:
            s = s.model_copy(update={"worker": s.worker.model_copy(update=over)})
        w = WorkerServer(s)
        w.start()
        self._thread(w.worker_id, w.serve_forever, lambda: w.stop(grace=0))
        return w

    def sender(self, m: MasterServer) -> AlertSender:
        a = AlertSender(m.sf, self.settings, m.actor)
        self._thread("alert-sender", a.serve, lambda: None)
        return a

    def close(self) -> None:
        for halt in reversed(self._stops):
            halt()
        self._stops.clear()


def api_client(settings: Settings) -> TestClient:
    s = settings.model_copy(deep=True)
    s.api.token = TOKEN
    client = TestClient(create_app(s))
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    return client


def ok(resp: Any, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text}"
    return resp.json() if resp.content else None


def run(api: TestClient, spec: dict[str, Any]) -> int:
    wid = ok(api.post("/api/v1/workflows", json=spec), 201)["id"]
    return int(ok(api.post(f"/api/v1/workflows/{wid}/runs", json={}), 202)["instance_id"])


def wait_terminal(api: TestClient, iid: int, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        inst: dict[str, Any] = ok(api.get(f"/api/v1/instances/{iid}"))
        return inst if inst["state"] in {s.value for s in WORKFLOW_TERMINAL} else None

    return wait_for(done, timeout, 0.05, f"instance {iid} to finish")


def email_channel(api: TestClient, name: str, port: int, **params: Any) -> dict[str, Any]:
    body = {"name": name, "kind": "EMAIL", "is_global": params.pop("is_global", False),
            "params": {"host": "127.0.0.1", "port": port, "recipients": ["ops@example.com"],
                       "sender": "dagkeeper@example.com", **params}}  # fmt: skip
    return dict(ok(api.post("/api/v1/alert-channels", json=body), 201))


def group(api: TestClient, name: str, channels: list[str]) -> dict[str, Any]:
    return dict(
        ok(api.post("/api/v1/alert-groups", json={"name": name, "channels": channels}), 201)
    )


def alert_rows(api: TestClient, settings: Settings, kind: str) -> list[dict[str, Any]]:
    """Every alert of ``kind`` as ``GET /alerts/{id}`` shows it (ids read from PostgreSQL)."""
    eng = create_engine(settings.db.url)
    try:
        with eng.connect() as c:
            ids = c.execute(text("SELECT id FROM alert WHERE kind = :k ORDER BY id"), {"k": kind})
            found = [int(i) for (i,) in ids]
    finally:
        eng.dispose()
    return [ok(api.get(f"/api/v1/alerts/{i}")) for i in found]


def body_json(raw: bytes) -> dict[str, Any]:
    return dict(json.loads(raw))
