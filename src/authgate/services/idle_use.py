"""An API key's use after a long idle time, confirmed against the whole cluster's view.

A server process knows when *it* last saw a key accepted (seeded from the key's
``last_used_at`` as cached when it loaded the key). With several workers or nodes that
is not when the key was last used: a key in constant use on one worker looks idle to
another that sees it once an hour. So the gate's verdict "after inactivity" is only a
candidate, an :class:`IdleUse`: the usage log's next flush reads the key's
``last_used_at`` as stored (every process writes its last use there each flush interval)
before it writes this process's own, and calls the candidate with it. The record is
written only if the key was idle that long for the whole cluster, with ``idleSeconds``
from the later of the stored and the locally seen last use, and with the request's own
details (caller, key, client address, path, user agent, correlation id, time).

What remains: two processes whose first uses after an idle period fall within one flush
interval of each other both read the old ``last_used_at`` and may each record it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from authgate.reasons import Reason
from authgate.security.principal import Principal
from authgate.services.audit.events import EventType, RequestInfo, current_request
from authgate.services.audit.writer import AuditLog


@dataclass(frozen=True, slots=True)
class _RequestFacts:
    """What the audit trail reads of a request (``RequestInfo``), kept past its end."""

    client_ip: str | None
    user_agent: str | None
    path: str | None
    correlation_id: str | None
    principal: Principal | None

    @classmethod
    def of(cls, request: RequestInfo) -> _RequestFacts:
        return cls(
            request.client_ip,
            request.user_agent,
            request.path,
            request.correlation_id,
            request.principal,
        )


class IdleUse:
    """One accepted request this process saw after ``idle_seconds`` without use of its
    key; called (off the request path) with the key's last use as stored by every
    process, it records the request if the key really was idle (or, with
    ``every_success``, records it as an ordinary accepted request)."""

    __slots__ = ("_at", "_audit", "_every_success", "_idle_seconds", "_request", "_seen_last")

    def __init__(
        self,
        *,
        audit: AuditLog,
        at: datetime,
        seen_idle_seconds: float,
        idle_seconds: float,
        every_success: bool,
    ) -> None:
        self._audit = audit
        self._at = at
        self._seen_last = at.timestamp() - seen_idle_seconds
        self._idle_seconds = idle_seconds
        self._every_success = every_success
        request = current_request.get()
        self._request = _RequestFacts.of(request) if request is not None else None

    def __call__(self, stored_last_use: datetime | None) -> None:
        last = self._seen_last
        if stored_last_use is not None:
            last = max(last, stored_last_use.timestamp())
        idle = self._at.timestamp() - last
        if idle >= self._idle_seconds:
            reason, details = Reason.AFTER_INACTIVITY, {"idleSeconds": int(idle)}
        elif self._every_success:
            reason, details = None, None
        else:
            return  # used meanwhile through another worker or node
        context = current_request.set(self._request)
        try:
            self._audit.record(
                EventType.API_KEY_ACCESS_SUCCESS,
                "success",
                reason=reason,
                details=details,
                occurred_at=self._at,
            )
        finally:
            current_request.reset(context)
