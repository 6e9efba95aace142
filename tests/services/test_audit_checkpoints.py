"""Signed checkpoints of the audit chain: what they state, who can verify them (JWKS,
HS512 secret), that they are never access tokens, forgeries refused, publication to the
log, a webhook (at shutdown, through a real HTTP receiver) and syslog."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from fastapi import FastAPI

from authgate.app import create_app
from authgate.container import Services
from authgate.exceptions import ValidationFailed
from authgate.security.audit_checkpoints import (
    CHECKPOINT_AUDIENCE,
    CHECKPOINT_TYPE,
    Checkpoint,
    CheckpointInvalid,
    checkpoint_token,
    read_checkpoint,
    sign_checkpoint,
)
from authgate.security.signing_keys import KeyRing, generate_signing_key
from authgate.services.alerts.dispatch import AlertDispatcher
from authgate.services.alerts.log_sink import LogSink
from authgate.services.alerts.messages import CheckpointNotice
from authgate.services.alerts.syslog_sink import SyslogSink
from authgate.settings import Settings
from tests import audit_tampering as attack
from tests.conftest import FakeClock, bearer, test_settings
from tests.services.test_alert_sinks import (
    HttpReceiver,
    RecordingSink,
    SyslogListener,
    parse_cef,
    run_until_drained,
)
from tests.services.test_audit import chained, node, record_logins

WEBHOOK_SECRET = b"checkpoint-webhook-secret"
WAIT = 10.0


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return test_settings(
        tmp_path / "data", database_url=database_url, audit_flush_interval_seconds=60
    )


@pytest.fixture
async def services(settings: Settings, clock: FakeClock) -> AsyncIterator[Services]:
    async with node(settings, clock) as built:
        yield built


@pytest.fixture
async def udp_syslog() -> AsyncIterator[SyslogListener]:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    class Collector(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            received.put_nowait(data)

    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        Collector, local_addr=("127.0.0.1", 0)
    )
    try:
        yield SyslogListener(transport.get_extra_info("sockname")[1], received)
    finally:
        transport.close()


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    http = HttpReceiver()
    server = await asyncio.start_server(http.handle, "127.0.0.1", 0)
    http.port = server.sockets[0].getsockname()[1]
    async with server:
        yield http


def jwks_verify(token: str, jwks: dict[str, Any], issuer: str = "authgate") -> dict[str, Any]:
    """Verify ``token`` the way any JWKS consumer would (PyJWT, no authgate code)."""
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=[header["alg"]],
        audience=CHECKPOINT_AUDIENCE,
        issuer=issuer,
        options={"require": ["iat", "position", "hash", "node"]},
    )
    return claims


# -- what a checkpoint states and who can verify it ----------------------------------------


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
async def test_a_checkpoint_states_the_head_and_verifies_with_the_jwks(
    tmp_path: Path, database_url: str, clock: FakeClock, algorithm: str
) -> None:
    """The checkpoint's claims are the head's position and hash, the time and the node;
    its signature verifies with the public JWK Set served at /.well-known/jwks.json."""
    settings = test_settings(tmp_path / "data", database_url=database_url, jwt_algorithm=algorithm)
    async with node(settings, clock) as services:
        ids = await chained(services, 3)
        published = await services.checkpoints.publish("command_line")
        assert published is not None
        transport = httpx2.ASGITransport(app=create_app(settings, services=services))
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            jwks = (await client.get("/.well-known/jwks.json")).json()
        head = await attack.head_row(services.db)
    claims = jwks_verify(published.checkpoint, jwks)
    assert (claims["position"], claims["hash"]) == (ids[-1], head.last_hash)
    assert claims["iat"] == int(clock().timestamp())
    assert claims["node"] == published.node
    assert jwt.get_unverified_header(published.checkpoint)["typ"] == CHECKPOINT_TYPE
    assert "exp" not in claims
    assert "sub" not in claims


async def test_with_hs512_a_checkpoint_is_an_hmac_under_the_jwt_secret(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    secret = os.urandom(64)
    settings = test_settings(
        tmp_path / "data",
        database_url=database_url,
        jwt_algorithm="HS512",
        jwt_secret=base64.b64encode(secret).decode(),
    )
    async with node(settings, clock) as services:
        await chained(services, 2)
        published = await services.checkpoints.publish("command_line")
    assert published is not None
    claims = jwt.decode(
        published.checkpoint, secret, algorithms=["HS512"], audience=CHECKPOINT_AUDIENCE
    )
    assert claims["position"] == published.position


async def test_a_checkpoint_is_never_accepted_as_an_access_token(
    settings: Settings, clock: FakeClock
) -> None:
    """Signed with the token key, yet refused as a bearer credential (401): it has none
    of the claims an access token needs."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        published = await services.checkpoints.publish("command_line")
        assert published is not None
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/api/account", headers=bearer(published.checkpoint))
    assert response.status_code == 401


def test_reading_refuses_anything_but_a_checkpoint_of_this_deployment(clock: FakeClock) -> None:
    """An access token (wrong typ), a changed signature or claim, another deployment's
    key, another issuer, a JSON without the member, garbage: CheckpointInvalid."""
    ring = KeyRing([generate_signing_key("ES256", now=clock())])
    other = KeyRing([generate_signing_key("ES256", now=clock())])
    statement = Checkpoint(position=7, hash="a" * 64, time=clock(), node="n1")
    token = sign_checkpoint(ring, statement, issuer="authgate")
    assert read_checkpoint(ring, token, issuer="authgate") == statement  # whole seconds
    header, payload, signature = token.split(".")
    forged_payload = base64.urlsafe_b64encode(
        json.dumps({**json.loads(_unb64(payload)), "position": 3}).encode()
    ).rstrip(b"=")
    access_token = jwt.encode(
        {"sub": "admin", "position": 7}, ring.active.private, "ES256", {"kid": ring.active.kid}
    )
    refused = {
        "access token": access_token,
        "changed claim": f"{header}.{forged_payload.decode()}.{signature}",
        "changed signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "other deployment": sign_checkpoint(other, statement, issuer="authgate"),
        "other issuer": sign_checkpoint(ring, statement, issuer="elsewhere"),
        "garbage": "not-a-jws",
        "too long": "a" * 5000,
    }
    accepted = []
    for name, candidate in refused.items():
        try:
            read_checkpoint(ring, candidate, issuer="authgate")
        except CheckpointInvalid:
            continue
        accepted.append(name)
    assert accepted == []
    with pytest.raises(CheckpointInvalid):
        checkpoint_token('{"position": 7}')
    with pytest.raises(CheckpointInvalid):
        checkpoint_token("{not json")
    assert checkpoint_token(json.dumps({"checkpoint": token, "position": 1})) == token


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


async def test_the_service_answers_bad_checkpoints_with_a_validation_error(
    services: Services,
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        services.checkpoints.read("nonsense")
    assert raised.value.field_errors[0].field == "checkpoint"


# -- when a checkpoint is (not) taken -----------------------------------------------------------


async def test_an_interval_checkpoint_is_taken_only_when_the_chain_grew(
    services: Services,
) -> None:
    await chained(services, 2)
    assert await services.checkpoints.publish("interval", unless_unchanged=True) is not None
    assert await services.checkpoints.publish("interval", unless_unchanged=True) is None
    record_logins(services.audit, "more-", 1)
    await services.audit.flush()
    assert await services.checkpoints.publish("interval", unless_unchanged=True) is not None


async def test_no_checkpoint_certifies_a_tampered_head(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """After the head was moved without the key, no checkpoint is signed (it would
    certify the cut); the refusal is logged."""
    await chained(services, 4)
    await attack.delete_newest_and_repoint_head(services.db, 1, drop_mac=False)
    with caplog.at_level(logging.ERROR):
        assert await services.checkpoints.publish("interval") is None
    assert "no audit checkpoint" in caplog.text


async def test_the_periodic_task_publishes_and_stops(services: Services) -> None:
    """run() publishes after each interval when the chain grew, and ends on stop."""
    await chained(services, 1)
    recording = RecordingCheckpoints()
    dispatcher = AlertDispatcher([recording], retries=0)
    periodic = type(services.checkpoints)(
        db=services.db,
        audit=services.audit,
        keyring=lambda: services.tokens.codec.keyring,
        issuer="authgate",
        dispatcher=dispatcher,
        clock=services.clock,
        node=lambda: "test-node",
        interval=0.01,
        retention=services.checkpoints._retention,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(periodic.run(stop))
    delivery = asyncio.create_task(dispatcher.run(stop))
    try:
        await asyncio.wait_for(recording.arrived.wait(), WAIT)
    finally:
        stop.set()
        await asyncio.gather(task, delivery)
    assert recording.notices[0].node == "test-node"
    assert recording.notices[0].reason == "interval"


class RecordingCheckpoints(RecordingSink):
    def __init__(self) -> None:
        super().__init__("recording-checkpoints")
        self.notices: list[CheckpointNotice] = []
        self.arrived = asyncio.Event()

    async def deliver_checkpoint(self, notice: CheckpointNotice) -> None:
        self.notices.append(notice)
        self.arrived.set()


# -- where checkpoints go --------------------------------------------------------------------


async def test_the_checkpoint_at_shutdown_reaches_the_webhook(
    tmp_path: Path, database_url: str, clock: FakeClock, receiver: HttpReceiver
) -> None:
    """Stopping the app writes what is buffered, then publishes a checkpoint of that
    final head: the webhook receives it signed with the webhook secret, and its JWS
    verifies with the JWKS and makes a later verify of the intact trail report "matches"."""
    settings = test_settings(
        tmp_path / "data",
        database_url=database_url,
        audit_flush_interval_seconds=60,
        alert_webhook_url=receiver.url("/checkpoints"),
        alert_webhook_secret=WEBHOOK_SECRET.decode(),
    )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        record_logins(services.audit, "buffered-", 5)  # still buffered at shutdown
        jwks = await _get_jwks(app)
    checkpoints = [r for r in receiver.requests if r.headers["x-authgate-event"] != "alert"]
    assert len(checkpoints) == 1, receiver.requests
    request = checkpoints[0]
    assert request.headers["x-authgate-event"] == "audit-checkpoint"
    signed = f"{request.headers['x-authgate-timestamp']}.".encode() + request.body
    expected = hmac.new(WEBHOOK_SECRET, signed, hashlib.sha256).hexdigest()
    assert request.headers["x-authgate-signature"] == f"sha256={expected}"
    body = json.loads(request.body)
    assert (body["kind"], body["reason"]) == ("audit_checkpoint", "shutdown")
    claims = jwks_verify(body["checkpoint"], jwks)
    assert claims["position"] == body["position"]

    again = create_app(settings, clock=clock)
    async with again.router.lifespan_context(again):
        services = again.state.services
        head = await attack.head_row(services.db)
        assert claims["position"] == head.last_id  # the five buffered records are in it
        verification = await services.audit.verify(
            checkpoint=services.checkpoints.read(request.body.decode())
        )
        assert verification.intact, verification
        assert verification.checkpoint is not None
        assert verification.checkpoint.status == "matches"


async def _get_jwks(app: FastAPI) -> dict[str, Any]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
        document: dict[str, Any] = (await client.get("/.well-known/jwks.json")).json()
        return document


async def test_syslog_carries_the_checkpoint_in_cef(
    udp_syslog: SyslogListener, clock: FakeClock
) -> None:
    """RFC 5424, MSGID CHECKPOINT, informational, CEF event class audit_checkpoint with the
    JWS in cs1, position in cn1 and hash in cs2."""
    notice = CheckpointNotice(
        checkpoint="eyJhbGciOiJFUzI1NiJ9.eyJwb3NpdGlvbiI6NDJ9.c2ln",
        position=42,
        hash="b" * 64,
        time=clock(),
        node="node-1",
        reason="interval",
    )
    sink = SyslogSink(f"udp://127.0.0.1:{udp_syslog.port}", hostname="host-a")
    await sink.deliver_checkpoint(notice)
    message = (await udp_syslog.next_message()).decode()
    assert message.startswith(f"<{10 * 8 + 6}>1 ")
    assert " host-a authgate - CHECKPOINT - CEF:0|authgate|authgate|" in message
    header, extension = parse_cef(message.split(" - CHECKPOINT - ", 1)[1])
    assert header[4:7] == ["audit_checkpoint", "Audit chain checkpoint", "1"]
    assert extension["cs1"] == notice.checkpoint
    assert (extension["cs1Label"], extension["cn1"], extension["cs2"]) == (
        "checkpoint",
        "42",
        "b" * 64,
    )


async def test_checkpoints_go_to_the_log_and_not_to_sinks_without_them(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The log sink writes one INFO line with the checkpoint's JSON; a sink without
    ``deliver_checkpoint`` (e-mail) is not given it."""
    mail_like = RecordingSink("email")
    log_sink = LogSink(logging.getLogger("authgate.alerts"))
    dispatcher = AlertDispatcher([log_sink, mail_like], retries=0)
    notice = CheckpointNotice(
        checkpoint="x.y.z", position=1, hash="c" * 64, time=clock(), node="n", reason="interval"
    )
    with caplog.at_level(logging.INFO, logger="authgate.alerts"):
        dispatcher.submit_checkpoint(notice)
        await run_until_drained(dispatcher)
    [line] = [r.getMessage() for r in caplog.records if "audit checkpoint" in r.getMessage()]
    assert json.loads(line.split(" ", 2)[2]) == notice.as_json()
    assert (mail_like.attempts, mail_like.delivered) == (0, [])
    assert dispatcher.stats["email"] == {"delivered": 0, "failed": 0, "retries": 0}
