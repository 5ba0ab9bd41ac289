"""Alert delivery against a local webhook server, a local SMTP server and a JSONL file."""

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from margin_pipeline.operations.alerts import (
    DEFAULT_ROUTES,
    Alert,
    AlertsResource,
    Route,
    alerts_resource_from_env,
)

WEBHOOK_TOKEN = "T0SECRETWEBHOOK"
SMTP_PASSWORD = "s3cr3t-smtp-pass"
DATABRICKS_TOKEN = "dapi-0123456789abcdef-secret"


@dataclass
class Hook:
    base: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def hook() -> Iterator[Hook]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.paths.append(self.path)
            state.bodies.append({"raw": body.decode(), "content_type": self.headers["Content-Type"]})
            self.send_response(state.status)
            self.end_headers()
            self.wfile.write(b"ok" if state.status == 200 else b"boom")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Hook(base=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@dataclass
class Mailbox:
    port: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)


class Collector:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.messages.append(
            {"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "raw": envelope.original_content}
        )
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Mailbox(port=port)

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        box.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == SMTP_PASSWORD.encode())

    controller = Controller(
        Collector(box), hostname="127.0.0.1", port=port, auth_require_tls=False, authenticator=authenticator
    )
    controller.start()
    yield box
    controller.stop()


def _alert(stream: str = "settlement", **kw: Any) -> Alert:
    base = {"kind": "stream", "stream": stream, "level": "error", "title": "MERGE failed", "text": "boom"}
    return Alert(**{**base, **kw})


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_settlement_alert_reaches_all_three_sinks(hook: Hook, smtp: Mailbox, tmp_path: Path) -> None:
    jsonl = tmp_path / "nested" / "alerts.jsonl"
    res = AlertsResource(
        jsonl_path=str(jsonl), webhook_url=f"{hook.base}/hooks/x", smtp_host="127.0.0.1", smtp_port=smtp.port
    )
    assert res.configured_sinks() == ["webhook", "email", "jsonl"]
    alert = _alert(run_id="run-1", job="settlement_job", details={"dates": ["2024-01-01"], "rows": 3})
    status = res.send(alert)
    assert status == {"webhook": "sent", "email": "sent", "jsonl": "sent"}

    route = DEFAULT_ROUTES["settlement"]
    [post] = hook.bodies
    assert post["content_type"] == "application/json"
    body = json.loads(post["raw"])
    assert body["channel"] == route.channel == "#margin-settlement"
    assert "MERGE failed" in body["text"] and "boom" in body["text"]
    assert body["username"] == "margin_pipeline"
    assert body["margin_pipeline"]["run_id"] == "run-1"
    assert body["margin_pipeline"]["route"]["owner"] == route.owner

    [mail] = smtp.messages
    assert mail["to"] == route.email_to == ["settlement-oncall@example.invalid"]
    message = message_from_bytes(mail["raw"], policy=default_policy)
    assert message["Subject"] == "[margin_pipeline] ERROR settlement: MERGE failed"
    content = message.get_content()
    assert "boom" in content and '"rows": 3' in content

    [line] = _lines(jsonl)
    assert line["title"] == "MERGE failed" and line["details"] == {"dates": ["2024-01-01"], "rows": 3}
    assert line["route"] == {"owner": route.owner, "channel": route.channel, "email_to": route.email_to}
    assert line["delivered_to"] == ["webhook", "email", "jsonl"]
    assert line["created_at"].endswith("Z")


@pytest.mark.parametrize("stream", ["parent", "ingest", "no_such_stream"])
def test_orchestration_route_is_the_fallback(hook: Hook, tmp_path: Path, stream: str) -> None:
    res = AlertsResource(jsonl_path=str(tmp_path / "a.jsonl"), webhook_url=f"{hook.base}/h")
    assert res.send(_alert(stream, kind="orchestration"))["webhook"] == "sent"
    orchestration = DEFAULT_ROUTES["orchestration"]
    assert json.loads(hook.bodies[0]["raw"])["channel"] == orchestration.channel
    assert _lines(tmp_path / "a.jsonl")[0]["route"]["owner"] == orchestration.owner
    assert res.route_for("settlement") != orchestration


def test_custom_routes_are_used(tmp_path: Path) -> None:
    custom = {
        "settlement": Route(owner="custom-team", channel="#custom", email_to=["c@example.invalid"]),
        "orchestration": Route(owner="custom-platform", channel="#custom-platform"),
    }
    jsonl = tmp_path / "alerts.jsonl"
    res = AlertsResource(jsonl_path=str(jsonl), routes=custom)
    assert res.route_for("settlement").owner == "custom-team"
    assert res.route_for("monthly").owner == "custom-platform"
    assert AlertsResource().route_for("settlement").owner == DEFAULT_ROUTES["settlement"].owner

    @dg.asset
    def alerting(alerts: AlertsResource) -> None:
        alerts.send(_alert("settlement"))
        alerts.send(_alert("parent"))

    # Through a real run: the configured routes must survive Dagster's config processing.
    assert dg.materialize([alerting], resources={"alerts": res}).success
    owners = [line["route"]["owner"] for line in _lines(jsonl)]
    assert owners == ["custom-team", "custom-platform"]


def test_secrets_never_leave(
    hook: Hook,
    smtp: Mailbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    webhook_url = f"{hook.base}/hooks/{WEBHOOK_TOKEN}"
    monkeypatch.setenv("MARGIN_ALERT_WEBHOOK_URL", webhook_url)
    monkeypatch.setenv("MARGIN_ALERT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MARGIN_ALERT_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("MARGIN_ALERT_SMTP_USER", "alerts")
    monkeypatch.setenv("MARGIN_ALERT_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("MARGIN_ALERT_SMTP_FROM", "alerts@example.invalid")
    monkeypatch.setenv("DATABRICKS_TOKEN", DATABRICKS_TOKEN)
    caplog.set_level(logging.DEBUG)
    unresolved = alerts_resource_from_env(tmp_path)
    assert unresolved.webhook_url != webhook_url  # an EnvVar, not the value, is in the resource's config
    secrets = [webhook_url, WEBHOOK_TOKEN, SMTP_PASSWORD, DATABRICKS_TOKEN]
    leaky = _alert(
        title=f"token {DATABRICKS_TOKEN} leaked",
        text=f"POST {webhook_url} failed\nlogin with {SMTP_PASSWORD}",
        details={"nested": [{"url": webhook_url}], DATABRICKS_TOKEN: SMTP_PASSWORD},
    )
    with dg.build_resources({"alerts": unresolved}) as resources:
        alerts: AlertsResource = resources.alerts
        assert alerts.smtp_password == SMTP_PASSWORD
        status = alerts.send(leaky)
        hook.status = 500
        failed = alerts.send(leaky)

    assert status == {"webhook": "sent", "email": "sent", "jsonl": "sent"}
    assert failed["webhook"] == "failed: HTTPError (HTTP 500)"
    assert hook.paths == [f"/hooks/{WEBHOOK_TOKEN}"] * 2  # the secret URL was really used
    assert smtp.logins == [(b"alerts", SMTP_PASSWORD.encode())] * 2  # and the password
    mail = message_from_bytes(smtp.messages[0]["raw"], policy=default_policy)
    assert mail["From"] == "alerts@example.invalid"
    body = json.loads(hook.bodies[0]["raw"])
    assert "token *** leaked" in body["text"] and "POST *** failed" in body["text"]

    jsonl = tmp_path / "alerts" / "alerts.jsonl"
    outputs = {
        "webhook": "\n".join(b["raw"] for b in hook.bodies),
        "email": b"\n".join(m["raw"] for m in smtp.messages).decode(),
        "jsonl": jsonl.read_text(),
        "status": json.dumps([status, failed]),
        "log": caplog.text,
    }
    assert "HTTPError" in caplog.text  # the failure was logged
    for where, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} in {where}"


def test_failing_webhook_does_not_stop_other_sinks(
    hook: Hook, smtp: Mailbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hook.status = 500
    jsonl = tmp_path / "alerts.jsonl"
    res = AlertsResource(
        jsonl_path=str(jsonl), webhook_url=f"{hook.base}/hooks/x", smtp_host="127.0.0.1", smtp_port=smtp.port
    )
    warnings: list[str] = []

    class Log:
        def warning(self, msg: str, *args: Any) -> None:
            warnings.append(msg % args)

    status = res.send(_alert(level="warning"), log=Log())
    assert status["webhook"].startswith("failed") and "HTTP 500" in status["webhook"]
    assert hook.base not in status["webhook"] and "127.0.0.1" not in status["webhook"]
    assert status["email"] == "sent" and status["jsonl"] == "sent"
    assert len(smtp.messages) == 1
    [line] = _lines(jsonl)
    assert line["delivered_to"] == ["email", "jsonl"]
    [warning] = warnings
    assert "webhook" in warning and "127.0.0.1" not in warning

    # An unreachable SMTP server fails the same way: reported, not raised.
    smtp_down = AlertsResource(jsonl_path=str(jsonl), smtp_host="127.0.0.1", smtp_port=1)
    status = smtp_down.send(_alert())
    assert status["email"].startswith("failed: ") and status["jsonl"] == "sent"
    assert "alert sink email failed" in caplog.text


def test_only_jsonl_without_webhook_or_smtp(tmp_path: Path) -> None:
    jsonl = tmp_path / "alerts.jsonl"
    res = AlertsResource(jsonl_path=str(jsonl))
    assert res.configured_sinks() == ["jsonl"]
    status = res.send(_alert("monthly"))
    assert status["jsonl"] == "sent"
    assert status["webhook"].startswith("skipped") and status["email"].startswith("skipped")
    assert _lines(jsonl)[0]["delivered_to"] == ["jsonl"]
    assert AlertsResource().send(_alert())["jsonl"].startswith("skipped")


def test_email_skipped_when_route_has_no_recipients(smtp: Mailbox, tmp_path: Path) -> None:
    routes = {"orchestration": Route(owner="p", channel="#p")}
    res = AlertsResource(smtp_host="127.0.0.1", smtp_port=smtp.port, routes=routes)
    assert res.send(_alert("parent"))["email"].startswith("skipped")
    assert smtp.messages == []


def test_env_without_secrets_gives_jsonl_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MARGIN_ALERT_WEBHOOK_URL", "MARGIN_ALERT_SMTP_HOST", "MARGIN_ALERT_SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    res = alerts_resource_from_env(tmp_path)
    assert res.configured_sinks() == ["jsonl"]
    assert res.jsonl_path == str(tmp_path / "alerts" / "alerts.jsonl")
