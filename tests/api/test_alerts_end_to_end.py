"""Alerts end to end: attacks scripted through the HTTP API reach a real webhook receiver
(signed), a UDP syslog listener and an SMTP server on loopback, through the app's own
background tasks (audit flush, rule evaluation, delivery), deduplicated per window."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI

from authgate.app import create_app
from authgate.container import Services
from authgate.services.user_fields import NewUser
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, FakeClock, bearer, test_settings

T = TypeVar("T")

WAIT = 60.0  # patience for a busy host (waits end on arrival); no latency is asserted
WEBHOOK_SECRET = "end-to-end-webhook-secret"
SINKS = ("webhook", "syslog", "email")

PER_ACCOUNT = "Failed logins for one account"
PER_ADDRESS = "Failed logins from one address"
BAD_KEYS = "Invalid API keys from one address"
NEW_ADDRESS = "API key used from a new address"
AFTER_IDLE = "API key used after 30 idle days"
ADMIN_ACTIONS = "Administrative actions"

# The defaults of the same names, with thresholds small enough for a test.
SMALL_THRESHOLDS: list[dict[str, Any]] = [
    {"name": PER_ACCOUNT, "kind": "failed_logins_per_account", "threshold": 3,
     "window_seconds": 300, "severity": "high"},
    {"name": PER_ADDRESS, "kind": "failed_logins_per_ip", "threshold": 4,
     "window_seconds": 600, "severity": "high"},
    {"name": BAD_KEYS, "kind": "failed_key_uses_per_ip", "threshold": 3,
     "window_seconds": 60, "severity": "high"},
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def eventually(check: Callable[[], T | None], what: str) -> T:
    """Poll ``check`` until it returns something truthy, failing after ``WAIT`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            pytest.fail(f"not within {WAIT} s: {what}")
        await asyncio.sleep(0.05)


# --- receivers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """What a sink received, reduced to what the tests compare."""

    rule: str
    subject: str
    kind: str
    severity: str


@dataclass
class WebhookReceiver:
    """An HTTP server that checks each request's signature and records the alert."""

    secret: bytes
    port: int = 0
    alerts: list[Received] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        headers = {}
        for line in head.split("\r\n")[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        timestamp = headers.get("x-authgate-timestamp", "")
        signed = f"{timestamp}.".encode() + body
        expected = "sha256=" + hmac.new(self.secret, signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("x-authgate-signature", ""), expected):
            self.bad_signatures += 1
            status = 401
        elif headers.get("x-authgate-event") == "audit-checkpoint":
            self.checkpoints.append(json.loads(body))  # at shutdown; not an alert
            status = 200
        else:
            alert = json.loads(body)
            self.bodies.append(alert)
            self.alerts.append(
                Received(alert["rule_name"], alert["subject"], alert["kind"], alert["severity"])
            )
            status = 200
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()


class SyslogReceiver(asyncio.DatagramProtocol):
    """A UDP syslog listener that parses the CEF line of each RFC 5424 message."""

    def __init__(self) -> None:
        self.alerts: list[Received] = []
        self.messages: list[str] = []

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        message = data.decode()
        self.messages.append(message)
        _, alert, cef = message.partition(" authgate - ALERT - ")
        if not alert:
            return  # an audit checkpoint (at shutdown), not an alert
        # CEF:0|vendor|product|version|kind|rule name|severity|extension
        fields = cef.split("|", 7)
        extension = fields[7]
        subject = extension.split(" cs1=", 1)[1].split(" cs1Label=subject", 1)[0]
        severity = {"10": "critical", "8": "high", "5": "medium", "3": "low"}[fields[6]]
        self.alerts.append(Received(fields[5], subject.replace("\\=", "="), fields[4], severity))


class MailReceiver:
    """An aiosmtpd handler that records each message's alert fields."""

    def __init__(self) -> None:
        self.alerts: list[Received] = []
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        text = message.get_content()
        lines = {
            key.strip(): value.strip()
            for key, _, value in (line.partition(":") for line in text.splitlines())
            if key.strip() in ("Rule", "Subject", "Kind", "Severity")
        }
        self.messages.append(message)
        self.alerts.append(
            Received(lines["Rule"], lines["Subject"], lines["Kind"], lines["Severity"])
        )
        return "250 Message accepted"


@dataclass
class Receivers:
    webhook: WebhookReceiver
    syslog: SyslogReceiver
    syslog_port: int
    mail: MailReceiver
    smtp_port: int

    def settings(self) -> dict[str, Any]:
        return {
            "alert_webhook_url": f"http://127.0.0.1:{self.webhook.port}/alerts/hook",
            "alert_webhook_secret": WEBHOOK_SECRET,
            "alert_syslog_target": f"udp://127.0.0.1:{self.syslog_port}",
            "alert_smtp_host": "127.0.0.1",
            "alert_smtp_port": self.smtp_port,
            "alert_email_from": "authgate@example.com",
            "alert_email_to": ["soc@example.com", "admin@example.com"],
        }

    def received(self, sink: str) -> list[Received]:
        by_sink = {
            "webhook": self.webhook.alerts,
            "syslog": self.syslog.alerts,
            "email": self.mail.alerts,
        }
        return by_sink[sink]

    def count(self, rule: str, subject: str, sinks: tuple[str, ...] = SINKS) -> dict[str, int]:
        """How often each sink received the alert of ``rule`` about ``subject``."""
        return {
            sink: sum(1 for r in self.received(sink) if (r.rule, r.subject) == (rule, subject))
            for sink in sinks
        }

    async def wait_for(
        self, rule: str, subject: str, sinks: tuple[str, ...] = SINKS
    ) -> dict[str, Received]:
        """Wait until every sink in ``sinks`` received the alert; returns what each got."""

        def arrived() -> dict[str, Received] | None:
            found = {
                sink: next(
                    (r for r in self.received(sink) if (r.rule, r.subject) == (rule, subject)),
                    None,
                )
                for sink in sinks
            }
            return found if all(found.values()) else None  # type: ignore[return-value]

        return await eventually(
            arrived, f"{rule!r} about {subject!r} at {', '.join(sinks)}: {self.summary()}"
        )

    def summary(self) -> str:
        return "; ".join(
            f"{sink} got {[(r.rule, r.subject) for r in self.received(sink)]}" for sink in SINKS
        )


@pytest.fixture
def mail_server() -> Iterator[tuple[MailReceiver, int]]:
    recorder = MailReceiver()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


@pytest.fixture
async def receivers(mail_server: tuple[MailReceiver, int]) -> AsyncIterator[Receivers]:
    webhook = WebhookReceiver(WEBHOOK_SECRET.encode())
    server = await asyncio.start_server(webhook.handle, "127.0.0.1", 0)
    webhook.port = server.sockets[0].getsockname()[1]
    syslog = SyslogReceiver()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: syslog, local_addr=("127.0.0.1", 0)
    )
    mail, smtp_port = mail_server
    try:
        async with server:
            yield Receivers(
                webhook, syslog, transport.get_extra_info("sockname")[1], mail, smtp_port
            )
    finally:
        transport.close()


# --- the application ----------------------------------------------------------------------------


@dataclass
class Env:
    """A running app (background tasks included) wired to the receivers, with an admin."""

    app: FastAPI
    services: Services
    clock: FakeClock
    receivers: Receivers
    admin_token: str = ""

    @asynccontextmanager
    async def client(self, address: str = "127.0.0.1") -> AsyncIterator[httpx2.AsyncClient]:
        """A client whose requests arrive from ``address``."""
        transport = httpx2.ASGITransport(
            app=self.app, client=(address, 1), raise_app_exceptions=False
        )
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c

    async def login(self, username: str, password: str, address: str = "127.0.0.1") -> str:
        async with self.client(address) as client:
            response = await client.post(
                "/api/authenticate", json={"username": username, "password": password}
            )
        assert response.status_code == 200, response.text
        token: str = response.json()["id_token"]
        return token

    async def failed_login(self, username: str, address: str) -> None:
        async with self.client(address) as client:
            response = await client.post(
                "/api/authenticate", json={"username": username, "password": "wrong-password"}
            )
        assert response.status_code == 401, response.text

    async def create_user(self, login: str, password: str = USER_PASSWORD) -> None:
        response = await self.request(
            "POST",
            "/api/users",
            json={"login": login, "email": f"{login}@example.com", "password": password},
        )
        assert response.status_code == 201, response.text

    async def create_key(self, name: str, *, days: float) -> dict[str, Any]:
        expires = (self.clock() + timedelta(days=days)).isoformat().replace("+00:00", "Z")
        response = await self.request(
            "POST", "/api/api-keys", json={"name": name, "allowedIp": [], "expiresAt": expires}
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def use_key(self, key: str, address: str) -> None:
        async with self.client(address) as client:
            response = await client.get("/api/account", headers={"Utm-Api-Key": key})
        assert response.status_code == 200, response.text

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        """A request as the admin (logging in again when the clock made the token expire)."""
        async with self.client() as client:
            response = await client.request(method, url, headers=bearer(self.admin_token), **kwargs)
            if response.status_code == 401:
                self.admin_token = await self.login("admin", ADMIN_PASSWORD)
                response = await client.request(
                    method, url, headers=bearer(self.admin_token), **kwargs
                )
        return response

    async def fired(self) -> list[dict[str, Any]]:
        """Every fired alert, from GET /api/alerts."""
        response = await self.request("GET", "/api/alerts", params={"size": 1000})
        assert response.status_code == 200, response.text
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    async def fired_rows(self, rule: str, subject: str) -> list[dict[str, Any]]:
        return [a for a in await self.fired() if (a["rule"], a["subject"]) == (rule, subject)]


@asynccontextmanager
async def running_app(
    tmp_path: Path, database_url: str, clock: FakeClock, receivers: Receivers, **overrides: Any
) -> AsyncIterator[Env]:
    values: dict[str, Any] = {
        **receivers.settings(),
        "audit_flush_interval_seconds": 0.2,
        "usage_flush_interval_seconds": 0.2,
        "alert_evaluation_interval_seconds": 0.1,
        "alert_rules": SMALL_THRESHOLDS,
        **overrides,
    }
    settings = test_settings(tmp_path / "data", database_url=database_url, **values)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        env = Env(app=app, services=services, clock=clock, receivers=receivers)
        for login, password, roles in (
            ("admin", ADMIN_PASSWORD, {"ROLE_USER", "ROLE_ADMIN"}),
            ("victim", USER_PASSWORD, {"ROLE_USER"}),
        ):
            await services.users.create_user(
                NewUser(
                    login=login,
                    email=f"{login}@example.com",
                    password=password,
                    authorities=frozenset(roles),
                )
            )
        env.admin_token = await env.login("admin", ADMIN_PASSWORD)
        yield env


@pytest.fixture
async def env(
    tmp_path: Path, database_url: str, clock: FakeClock, receivers: Receivers
) -> AsyncIterator[Env]:
    async with running_app(tmp_path, database_url, clock, receivers) as running:
        yield running


async def spray(env: Env, address: str, attempts: int, prefix: str = "sprayed") -> None:
    """Wrong passwords for ``attempts`` different (unknown) usernames from one address."""
    for number in range(attempts):
        await env.failed_login(f"{prefix}-{number}", address)


# --- attacks ------------------------------------------------------------------------------------


async def test_failed_logins_for_one_account_reach_every_sink(env: Env) -> None:
    """Wrong passwords for one account from different addresses fire the per-account rule,
    delivered to webhook (signed), syslog and e-mail with the account as subject."""
    for host in range(1, 4):
        await env.failed_login("victim", f"10.0.0.{host}")

    got = await env.receivers.wait_for(PER_ACCOUNT, "account:victim")

    assert {r.kind for r in got.values()} == {"failed_logins_per_account"}
    assert {r.severity for r in got.values()} == {"high"}
    assert env.receivers.webhook.bad_signatures == 0
    [body] = [b for b in env.receivers.webhook.bodies if b["rule_name"] == PER_ACCOUNT]
    assert body["count"] >= 3
    assert body["window_seconds"] == 300
    [mail] = [m for m in env.receivers.mail.messages if PER_ACCOUNT in str(m["Subject"])]
    assert str(mail["Subject"]) == f"[authgate] high: {PER_ACCOUNT} (account:victim)"
    assert str(mail["To"]) == "soc@example.com, admin@example.com"
    # No single address crossed its own threshold.
    assert not [a for a in await env.fired() if a["rule"] == PER_ADDRESS]


async def test_an_ongoing_attack_fires_once_per_window(env: Env) -> None:
    """An attack that goes on after the alert fired does not fire the same rule again for
    the same account within the window: one stored alert, one delivery per sink."""
    for host in range(1, 4):
        await env.failed_login("victim", f"10.0.0.{host}")
    await env.receivers.wait_for(PER_ACCOUNT, "account:victim")

    for host in range(4, 9):
        await env.failed_login("victim", f"10.0.0.{host}")
    # Events are evaluated in order: once this later alert arrived, the attack's were seen.
    await spray(env, "10.9.9.9", 4, prefix="marker")
    await env.receivers.wait_for(PER_ADDRESS, "ip:10.9.9.9")

    rows = await env.fired_rows(PER_ACCOUNT, "account:victim")
    assert len(rows) == 1, rows
    assert env.receivers.count(PER_ACCOUNT, "account:victim") == dict.fromkeys(SINKS, 1)


async def test_password_spray_from_one_address_fires_the_per_address_rule(env: Env) -> None:
    """Wrong passwords for many usernames from one address fire "Failed logins from one
    address" about that address at every sink; no per-account alert fires."""
    await spray(env, "192.0.2.77", 5)

    got = await env.receivers.wait_for(PER_ADDRESS, "ip:192.0.2.77")

    assert {r.kind for r in got.values()} == {"failed_logins_per_ip"}
    [row] = await env.fired_rows(PER_ADDRESS, "ip:192.0.2.77")
    assert row["count"] >= 4
    assert row["kind"] == "failed_logins_per_ip"
    assert not [a for a in await env.fired() if a["rule"] == PER_ACCOUNT]


async def test_a_blocked_address_typing_many_usernames_fires_no_account_alerts(env: Env) -> None:
    """The attack review's repro A: an address blocked by brute-force protection (10
    wrong logins) then sends 3 wrong logins for each of 15 usernames. They are refused
    (423) without a password being looked at, so they fire no per-account alert (before:
    one alert and one e-mail per username typed); the address's rule fires once."""
    address = "10.20.30.40"
    await spray(env, address, 10, prefix="warm-up")
    async with env.client(address) as client:
        for number in range(15):
            for _ in range(3):
                response = await client.post(
                    "/api/authenticate",
                    json={"username": f"victim-{number}", "password": "wrong-password"},
                )
                assert response.status_code == 423, response.text
    # Records are evaluated in order: once this later alert arrived, the attack's were seen.
    await spray(env, "10.9.9.9", 4, prefix="marker")
    await env.receivers.wait_for(PER_ADDRESS, "ip:10.9.9.9")

    assert not [a for a in await env.fired() if a["rule"] == PER_ACCOUNT]
    assert len(await env.fired_rows(PER_ADDRESS, f"ip:{address}")) == 1
    assert not [r for r in env.receivers.mail.alerts if r.rule == PER_ACCOUNT]


async def test_invalid_api_keys_from_one_address_fire(env: Env) -> None:
    """Requests with made-up API keys from one address fire the failed_key_uses_per_ip rule."""
    async with env.client("198.51.100.9") as client:
        for number in range(3):
            response = await client.get(
                "/api/account", headers={"Utm-Api-Key": f"agk_made_up_key_{number:040d}"}
            )
            assert response.status_code == 401

    got = await env.receivers.wait_for(BAD_KEYS, "ip:198.51.100.9")

    assert {r.kind for r in got.values()} == {"failed_key_uses_per_ip"}


async def test_key_used_from_a_new_address_fires_once_per_address(env: Env) -> None:
    """A key's very first use is not from a "new" address (nothing was known before it):
    no key_new_ip. The first use from each further address fires it once; later uses
    from an address already seen do not fire again."""
    created = await env.create_key("deploy", days=90)
    key, key_id = created["key"], created["id"]
    first, second, third = (f"key:{key_id}|ip:203.0.113.{n}" for n in (1, 2, 3))

    for _ in range(3):
        await env.use_key(key, "203.0.113.1")
    await env.use_key(key, "203.0.113.2")
    got = await env.receivers.wait_for(NEW_ADDRESS, second)
    assert {r.kind for r in got.values()} == {"key_new_ip"}

    for _ in range(2):
        await env.use_key(key, "203.0.113.2")
    await env.use_key(key, "203.0.113.3")
    await env.receivers.wait_for(NEW_ADDRESS, third)

    assert await env.fired_rows(NEW_ADDRESS, first) == []
    assert len(await env.fired_rows(NEW_ADDRESS, second)) == 1
    assert len(await env.fired_rows(NEW_ADDRESS, third)) == 1
    assert env.receivers.count(NEW_ADDRESS, second) == dict.fromkeys(SINKS, 1)


async def test_key_used_after_inactivity_fires(env: Env) -> None:
    """A key used again after more than the rule's 30 idle days fires key_after_inactivity;
    a gap shorter than the window does not."""
    created = await env.create_key("nightly", days=120)
    key, subject = created["key"], f"key:{created['id']}"

    await env.use_key(key, "203.0.113.50")
    env.clock.advance(days=29)
    await env.use_key(key, "203.0.113.50")
    # Wait until the uses so far were evaluated.
    await env.use_key(key, "203.0.113.51")
    await env.receivers.wait_for(NEW_ADDRESS, f"{subject}|ip:203.0.113.51")
    env.clock.advance(days=31)
    await env.use_key(key, "203.0.113.50")

    got = await env.receivers.wait_for(AFTER_IDLE, subject)

    assert {r.kind for r in got.values()} == {"key_after_inactivity"}
    assert {r.severity for r in got.values()} == {"low"}
    assert len(await env.fired_rows(AFTER_IDLE, subject)) == 1


async def test_admin_action_fires(env: Env) -> None:
    """An administrator creating a user fires "Administrative actions" about that admin."""
    await env.create_user("new.hire")

    got = await env.receivers.wait_for(ADMIN_ACTIONS, "actor:admin")

    assert {r.kind for r in got.values()} == {"admin_actions"}


async def test_fired_alerts_are_audited_and_listed_newest_first(env: Env) -> None:
    """Each fired alert is an ALERT_FIRED audit record; GET /api/alerts lists them newest
    first with X-Total-Count, and pages."""
    await spray(env, "192.0.2.10", 4)
    await env.receivers.wait_for(PER_ADDRESS, "ip:192.0.2.10")
    await env.create_user("new.hire")
    await env.receivers.wait_for(ADMIN_ACTIONS, "actor:admin")

    response = await env.request("GET", "/api/alerts")
    assert response.status_code == 200
    alerts = response.json()
    total = int(response.headers["X-Total-Count"])
    assert total == len(alerts) >= 2
    ids = [alert["id"] for alert in alerts]
    assert ids == sorted(ids, reverse=True)
    fired_at = [alert["firedAt"] for alert in alerts]
    assert fired_at == sorted(fired_at, reverse=True)
    mine = [(a["rule"], a["subject"]) for a in alerts]
    assert mine.index((ADMIN_ACTIONS, "actor:admin")) < mine.index((PER_ADDRESS, "ip:192.0.2.10"))
    assert set(alerts[0]) == {
        "id", "rule", "kind", "severity", "subject", "count", "firedAt", "summary",
    }  # fmt: skip

    first_page = await env.request("GET", "/api/alerts", params={"size": 1})
    assert [a["id"] for a in first_page.json()] == ids[:1]
    assert first_page.headers["X-Total-Count"] == str(total)
    second_page = await env.request("GET", "/api/alerts", params={"size": 1, "page": 1})
    assert [a["id"] for a in second_page.json()] == ids[1:2]

    await env.services.audit.flush()
    page = await env.services.audit.search(
        AuditFilter(event_types=("ALERT_FIRED",)), PageRequest(size=1000)
    )
    recorded = {(e.details or {}).get("alertId"): e for e in page.items}
    assert set(recorded) == set(ids)
    for alert in alerts:
        entry = recorded[alert["id"]]
        assert (entry.details or {})["rule"] == alert["rule"]
        assert (entry.details or {})["subject"] == alert["subject"]
        assert entry.reason == alert["kind"]
        assert entry.outcome == "success"
        # The server fired it: not the operator's command line, not the admin who acted.
        assert entry.actor_login == "authgate (server)"


async def test_alerts_fired_counter_carries_kind_and_severity(env: Env) -> None:
    """authgate_alerts_fired_total is labelled with the fired alert's kind and severity."""
    await env.create_user("new.hire")
    await env.receivers.wait_for(ADMIN_ACTIONS, "actor:admin")

    response = await env.request("GET", "/management/prometheus")

    assert response.status_code == 200
    assert 'authgate_alerts_fired_total{kind="admin_actions",severity="low"}' in response.text


# --- expiry reminders ---------------------------------------------------------------------------


async def test_expiry_reminders_fire_once_per_stage(env: Env) -> None:
    """A key expiring in 2 days gets the 3-day reminder once, one expiring in 10 days the
    14-day one; once the clock passes expiry, the expired stage fires with API_KEY_EXPIRED."""
    alerts = env.services.alerts
    soon = await env.create_key("expires-soon", days=2)
    soon_subject = f"key:{soon['id']}"

    assert await alerts.expiry_reminders() == 1
    assert await alerts.expiry_reminders() == 0
    await env.receivers.wait_for("API key expires in 3 days", soon_subject)

    later = await env.create_key("expires-later", days=10)
    later_subject = f"key:{later['id']}"
    assert await alerts.expiry_reminders() == 1
    assert await alerts.expiry_reminders() == 0
    got = await env.receivers.wait_for("API key expires in 14 days", later_subject)
    assert {r.severity for r in got.values()} == {"medium"}
    assert {r.kind for r in got.values()} == {"api_key_expiry"}

    env.clock.advance(days=2, hours=1)
    # The engine's own hourly check may run first: either way it fires exactly once.
    await alerts.expiry_reminders()
    await alerts.expiry_reminders()
    got = await env.receivers.wait_for("API key expired", soon_subject)
    assert {r.severity for r in got.values()} == {"high"}

    fired = [(a["rule"], a["subject"]) for a in await env.fired() if a["kind"] == "api_key_expiry"]
    assert sorted(fired) == sorted(
        [
            ("API key expires in 3 days", soon_subject),
            ("API key expires in 14 days", later_subject),
            ("API key expired", soon_subject),
        ]
    )
    await env.services.audit.flush()
    page = await env.services.audit.search(
        AuditFilter(event_types=("API_KEY_EXPIRED", "API_KEY_EXPIRING")), PageRequest(size=100)
    )
    events = sorted(
        (e.event_type, (e.details or {}).get("keyId"), (e.details or {}).get("stageDays"))
        for e in page.items
    )
    assert events == sorted(
        [
            ("API_KEY_EXPIRING", soon["id"], 3),
            ("API_KEY_EXPIRING", later["id"], 14),
            ("API_KEY_EXPIRED", soon["id"], 0),
        ]
    )


async def test_expiry_reminders_start_again_after_the_expiry_is_extended(env: Env) -> None:
    """A key whose expiry was extended after its 3-day reminder is reminded again 3 days
    before the new expiry date (the reminder is per expiry date, not once per key ever)."""
    alerts = env.services.alerts
    created = await env.create_key("extended", days=2)
    subject = f"key:{created['id']}"
    assert await alerts.expiry_reminders() == 1

    new_expiry = (env.clock() + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    extended = await env.request(
        "PUT",
        f"/api/api-keys/{created['id']}",
        json={"name": "extended", "allowedIp": [], "expiresAt": new_expiry},
    )
    assert extended.status_code == 200, extended.text
    env.clock.advance(days=28)  # the new expiry is 2 days away
    await alerts.expiry_reminders()  # (or the engine's own hourly check, first)

    rows = await env.fired_rows("API key expires in 3 days", subject)
    assert len(rows) == 2, rows


async def test_revoked_keys_get_no_expiry_reminder(env: Env) -> None:
    """A revoked key expiring soon is not reminded about."""
    created = await env.create_key("revoked-soon", days=2)
    revoked = await env.request("DELETE", f"/api/api-keys/{created['id']}")
    assert revoked.status_code == 204

    assert await env.services.alerts.expiry_reminders() == 0


# --- sinks --------------------------------------------------------------------------------------


async def test_a_failing_webhook_never_blocks_authentication_or_other_sinks(
    tmp_path: Path, database_url: str, clock: FakeClock, receivers: Receivers
) -> None:
    """With the webhook pointing at a closed port, logins still work and syslog and e-mail
    still receive the alert while the webhook's deliveries are retried and then fail."""
    closed = f"http://127.0.0.1:{free_port()}/hook"
    async with running_app(
        tmp_path, database_url, clock, receivers, alert_webhook_url=closed, alert_delivery_retries=1
    ) as env:
        for host in range(1, 4):
            await env.failed_login("victim", f"10.0.0.{host}")

        await receivers.wait_for(PER_ACCOUNT, "account:victim", sinks=("syslog", "email"))
        assert await env.login("victim", USER_PASSWORD, "10.0.0.200")
        await spray(env, "192.0.2.99", 4)
        await receivers.wait_for(PER_ADDRESS, "ip:192.0.2.99", sinks=("syslog", "email"))
        assert await env.login("victim", USER_PASSWORD, "10.0.0.201")

        dispatcher = env.services.alert_dispatcher
        await eventually(
            lambda: dispatcher.stats["webhook"]["failed"] >= 1 or None,
            f"the webhook's failure is counted: {env.services.alert_dispatcher.stats}",
        )
        assert receivers.webhook.alerts == []


async def test_sink_test_reaches_every_sink(env: Env) -> None:
    """POST /api/alert-sinks/test queues one test alert per sink (log included), and it
    arrives at the webhook, syslog and e-mail receivers."""
    response = await env.request("POST", "/api/alert-sinks/test")

    assert response.status_code == 200, response.text
    assert response.json() == {"queued": 4}
    got = await env.receivers.wait_for("Test alert", "test")
    assert {r.kind for r in got.values()} == {"test"}
    # A test alert is not a fired alert.
    assert not [a for a in await env.fired() if a["rule"] == "Test alert"]
