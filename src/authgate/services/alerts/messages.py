"""What the alert sinks carry: a fired ``Alert`` and the audit chain's ``CheckpointNotice``;
the ``AlertSink`` protocol every sink implements, and its ``DeliveryError``.

A sink only delivers one message, raising ``DeliveryError`` when it cannot. Queueing,
retries with backoff and the bounds that keep a sink that is down from delaying the
others are ``dispatch.AlertDispatcher``'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from authgate.clock import format_utc
from authgate.services.severity import Severity


class DeliveryError(Exception):
    """A sink could not deliver an alert. The message names the sink, never a secret."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One fired alert rule: ``count`` events about ``subject`` within ``window_seconds``."""

    id: int
    rule_name: str
    kind: str
    severity: Severity
    subject: str
    count: int
    window_seconds: int
    fired_at: datetime
    summary: str

    def __post_init__(self) -> None:
        if self.fired_at.utcoffset() is None:
            raise ValueError("fired_at must be timezone-aware")

    def as_json(self) -> dict[str, str | int]:
        """The alert as a JSON object; ``fired_at`` is ISO 8601 UTC with a ``Z``."""
        return {
            "id": self.id,
            "rule_name": self.rule_name,
            "kind": self.kind,
            "severity": self.severity,
            "subject": self.subject,
            "count": self.count,
            "window_seconds": self.window_seconds,
            "fired_at": format_utc(self.fired_at),
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class CheckpointNotice:
    """A signed checkpoint of the audit chain, as published: ``checkpoint`` is the JWS
    (the only part a verifier trusts); the rest repeats its claims for people."""

    checkpoint: str
    position: int
    hash: str
    time: datetime
    node: str
    reason: str

    def __post_init__(self) -> None:
        if self.time.utcoffset() is None:
            raise ValueError("time must be timezone-aware")

    def as_json(self) -> dict[str, str | int]:
        return {
            "kind": "audit_checkpoint",
            "checkpoint": self.checkpoint,
            "position": self.position,
            "hash": self.hash,
            "time": format_utc(self.time),
            "node": self.node,
            "reason": self.reason,
        }


class AlertSink(Protocol):
    """Somewhere alerts go. ``deliver`` raises (preferably ``DeliveryError``) on failure."""

    name: str

    async def deliver(self, alert: Alert) -> None: ...


class CheckpointSink(AlertSink, Protocol):
    """A sink that also keeps audit checkpoints (``deliver_checkpoint``)."""

    async def deliver_checkpoint(self, notice: CheckpointNotice) -> None: ...


def keeps_checkpoints(sink: AlertSink) -> bool:
    return callable(getattr(sink, "deliver_checkpoint", None))


def compact_json(document: dict[str, str | int]) -> str:
    """``document`` as one line of JSON with sorted keys (what the log and webhooks get)."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True)
