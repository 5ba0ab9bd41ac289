"""Alert delivery: a Slack-compatible webhook, SMTP email and a local JSON-lines file.

An :class:`Alert` names its ``kind`` (``stream``, ``orchestration``, ``check``, ``sla``)
and the ``stream`` that routes it: each stream (``settlement``, ``half_hourly``,
``monthly``, ``reconciled``) has a :class:`Route` (owner, Slack channel, email
recipients); ``parent``, ``ingest``, ``gate`` and any unknown stream use the
``orchestration`` route. :meth:`AlertsResource.send` delivers to every configured sink;
a failing sink is reported (``"failed: <ExceptionType>"``) and logged as a warning, never
raised, and never stops the other sinks. The JSON-lines file is the embedded default.

Redaction: before delivery every string in the alert has each secret value (the
webhook URL, the SMTP password and the values of :data:`SECRET_ENV_VARS`, when at least
6 characters) replaced by ``***``. Sink failures report only the exception type and
HTTP status, never a URL, password or server message.

Environment (read by :func:`alerts_resource_from_env` when the code location loads):

- ``MARGIN_ALERT_WEBHOOK_URL`` - incoming webhook URL (secret; passed as ``dg.EnvVar``)
- ``MARGIN_ALERT_SMTP_HOST`` / ``MARGIN_ALERT_SMTP_PORT`` - SMTP server (email only when set)
- ``MARGIN_ALERT_SMTP_USER`` / ``MARGIN_ALERT_SMTP_PASSWORD`` - SMTP login (password secret)
- ``MARGIN_ALERT_SMTP_FROM`` - sender address (default ``margin-pipeline@localhost``)
"""

import datetime as dt
import json
import logging
import os
import smtplib
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

logger = logging.getLogger(__name__)

#: Environment variables whose values are masked in every alert when set.
SECRET_ENV_VARS = (
    "MARGIN_ALERT_WEBHOOK_URL",
    "MARGIN_ALERT_SMTP_PASSWORD",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
)
MASK = "***"
MIN_SECRET_LENGTH = 6


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Alert:
    """One alert; ``stream`` is its route key, ``details`` holds JSON-safe values only."""

    kind: str  # "stream" | "orchestration" | "check" | "sla"
    stream: str
    level: str  # "error" | "warning"
    title: str
    text: str
    run_id: str | None = None
    job: str | None = None
    parent_run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=_utc_now)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


class Route(dg.Config):
    owner: str = Field(description="Team that owns the stream, e.g. 'settlement-team'.")
    channel: str = Field(description="Slack channel the webhook posts to, e.g. '#margin-settlement'.")
    email_to: list[str] = Field(default_factory=list, description="Email recipients; none skips email.")


def _route(owner: str, channel: str, email: str) -> Route:
    return Route(owner=owner, channel=channel, email_to=[email])


DEFAULT_ROUTES: dict[str, Route] = {
    "settlement": _route("settlement-team", "#margin-settlement", "settlement-oncall@example.invalid"),
    "half_hourly": _route("half-hourly-team", "#margin-half-hourly", "half-hourly-oncall@example.invalid"),
    "monthly": _route("billing-team", "#margin-monthly", "billing-oncall@example.invalid"),
    "reconciled": _route("reconciliation-team", "#margin-reconciled", "recon-oncall@example.invalid"),
    "orchestration": _route("data-platform", "#margin-orchestration", "platform-oncall@example.invalid"),
}
FALLBACK_ROUTE = "orchestration"


def _resolve(value: Any) -> Any:
    """The value of a field, also on a resource not yet resolved by Dagster (an ``EnvVar``)."""
    return value.get_value() if isinstance(value, dg.EnvVar) else value


def _mask(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {_mask(k, secrets): _mask(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v, secrets) for v in value]
    return value


def _failure(exc: BaseException) -> str:
    status = f" (HTTP {exc.code})" if isinstance(exc, urllib.error.HTTPError) else ""
    return f"failed: {type(exc).__name__}{status}"


class AlertsResource(dg.ConfigurableResource):
    """Delivers :class:`Alert` s to every configured sink, routed by stream."""

    jsonl_path: str | None = Field(default=None, description="Local JSON-lines file, one alert a line.")
    webhook_url: str | None = Field(default=None, description="Slack-compatible incoming webhook (secret).")
    webhook_timeout_seconds: float = Field(default=10, description="Timeout of one webhook POST.")
    smtp_host: str | None = Field(default=None, description="SMTP server; email is sent only when set.")
    smtp_port: int = Field(default=25, description="SMTP port.")
    smtp_user: str | None = Field(default=None, description="SMTP login user; no login when unset.")
    smtp_password: str | None = Field(default=None, description="SMTP login password (secret).")
    smtp_from: str = Field(default="margin-pipeline@localhost", description="Sender address.")
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_timeout_seconds: float = Field(default=10, description="Timeout of the SMTP connection.")
    routes: dict[str, Route] = Field(
        default_factory=lambda: dict(DEFAULT_ROUTES),
        description="Route per stream; 'orchestration' is the fallback for unknown streams.",
    )

    def route_for(self, stream: str) -> Route:
        if stream in self.routes:
            return self.routes[stream]
        return self.routes.get(FALLBACK_ROUTE, DEFAULT_ROUTES[FALLBACK_ROUTE])

    def configured_sinks(self) -> list[str]:
        sinks = [("webhook", self.webhook_url), ("email", self.smtp_host), ("jsonl", self.jsonl_path)]
        return [name for name, setting in sinks if _resolve(setting)]

    def _secrets(self) -> list[str]:
        values = [_resolve(self.webhook_url), _resolve(self.smtp_password)]
        values += [os.environ.get(name) for name in SECRET_ENV_VARS]
        found = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH}
        return sorted(found, key=len, reverse=True)  # longest first: a URL before a token inside it

    def send(self, alert: Alert, log: Any = None) -> dict[str, str]:
        """Deliver ``alert`` (redacted) to every sink; returns ``{sink: status}``, never raises."""
        log = log or logger
        secrets = self._secrets()
        payload = _mask(alert.as_dict(), secrets)
        safe = Alert(**payload)
        route = self.route_for(alert.stream)
        status: dict[str, str] = {}
        for name, deliver in (("webhook", self._post), ("email", self._email)):
            if name not in self.configured_sinks():
                status[name] = f"skipped: no {name} configured"
            elif name == "email" and not route.email_to:
                status[name] = "skipped: route has no recipients"
            else:
                try:
                    deliver(safe, payload, route)
                    status[name] = "sent"
                except Exception as exc:
                    status[name] = _failure(exc)
                    log.warning(
                        "alert sink %s %s for %s alert %r", name, status[name], safe.stream, safe.title
                    )
        if not _resolve(self.jsonl_path):
            status["jsonl"] = "skipped: no jsonl configured"
            return status
        try:
            delivered = [name for name, state in status.items() if state == "sent"] + ["jsonl"]
            self._append(payload, route, delivered)
            status["jsonl"] = "sent"
        except Exception as exc:
            status["jsonl"] = _failure(exc)
            log.warning("alert sink jsonl %s for %s alert %r", status["jsonl"], safe.stream, safe.title)
        return status

    def _post(self, alert: Alert, payload: dict[str, Any], route: Route) -> None:
        url = _resolve(self.webhook_url)
        if not url.startswith(("http://", "https://")):
            raise ValueError("webhook URL must be http(s)")
        body = {
            "text": f"[{alert.level.upper()}] {alert.stream}: {alert.title}\n{alert.text}",
            "channel": route.channel,
            "username": "margin_pipeline",
            "margin_pipeline": {**payload, "route": route.model_dump()},
        }
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.webhook_timeout_seconds) as response:
            response.read()

    def _email(self, alert: Alert, payload: dict[str, Any], route: Route) -> None:
        message = EmailMessage()
        message["Subject"] = f"[margin_pipeline] {alert.level.upper()} {alert.stream}: {alert.title}"
        message["From"] = self.smtp_from
        message["To"] = ", ".join(route.email_to)
        context = {k: payload[k] for k in ("kind", "run_id", "job", "parent_run_id", "created_at")}
        details = json.dumps({**context, "details": payload["details"]}, indent=2, sort_keys=True)
        message.set_content(f"{alert.text}\n\nOwner: {route.owner}\n\n{details}\n")
        host, port = _resolve(self.smtp_host), int(self.smtp_port)
        with smtplib.SMTP(host, port, timeout=self.smtp_timeout_seconds) as smtp:
            if self.smtp_starttls:
                smtp.starttls()
            if self.smtp_user:
                smtp.login(_resolve(self.smtp_user), _resolve(self.smtp_password) or "")
            smtp.send_message(message)

    def _append(self, payload: dict[str, Any], route: Route, delivered: list[str]) -> None:
        path = Path(_resolve(self.jsonl_path))
        path.parent.mkdir(parents=True, exist_ok=True)
        line = {**payload, "route": route.model_dump(), "delivered_to": delivered}
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
            handle.flush()


def alerts_resource_from_env(data_root_path: Path) -> AlertsResource:
    """The code location's alerts: JSONL under ``<data root>/alerts``, webhook and SMTP from env."""
    env = os.environ
    smtp: dict[str, Any] = {"smtp_host": env.get("MARGIN_ALERT_SMTP_HOST") or None}
    if env.get("MARGIN_ALERT_SMTP_PORT"):
        smtp["smtp_port"] = int(env["MARGIN_ALERT_SMTP_PORT"])
    if env.get("MARGIN_ALERT_SMTP_USER"):
        smtp["smtp_user"] = env["MARGIN_ALERT_SMTP_USER"]
    if env.get("MARGIN_ALERT_SMTP_PASSWORD"):
        smtp["smtp_password"] = dg.EnvVar("MARGIN_ALERT_SMTP_PASSWORD")
    if env.get("MARGIN_ALERT_SMTP_FROM"):
        smtp["smtp_from"] = env["MARGIN_ALERT_SMTP_FROM"]
    webhook = dg.EnvVar("MARGIN_ALERT_WEBHOOK_URL") if env.get("MARGIN_ALERT_WEBHOOK_URL") else None
    return AlertsResource(
        jsonl_path=str(Path(data_root_path) / "alerts" / "alerts.jsonl"), webhook_url=webhook, **smtp
    )
