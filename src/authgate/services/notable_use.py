"""An API key's accepted use that is a security event, confirmed against the whole
cluster's view before it is recorded.

A server process knows when *it* last saw a key accepted (seeded from the key's
``last_used_at`` as cached when it loaded the key). With several workers or nodes that
is not when the key was last used: a key in constant use on one worker looks idle to
another that sees it once an hour, and a key's first use on each worker looks like the
key's first use. So the gate's verdict is a candidate, a :class:`NotableUse`: the usage
log's next flush reads the key's ``last_used_at`` as stored (every process writes its
last use there each flush interval) before it writes this process's own, and calls the
candidate with it:

* a *first use* is recorded as such only if no process stored a use of the key; a key
  used before (elsewhere) is recorded after inactivity if that use is old enough, or
  else as a use from an address new to this process (the ``key_new_ip`` alert rule
  judges the address against the whole trail);
* a use *after inactivity* is recorded only if the key was idle that long for the whole
  cluster, with ``idleSeconds`` from the later of the stored and the locally seen last
  use; else as the request's address event if it had one (an address new to this
  process, or past the many-addresses bound: such a use must not vanish with the idle
  verdict), or, with every accepted request audited, as an ordinary accepted request;
* a use from a *new address*, or past the many-addresses bound, is recorded as it is;
* with every accepted request audited, an ordinary one too (it waits in the same queue).

Every candidate of a process goes through the same queue, so that process's records of
a key keep the order of its requests (the alert rules read "the key's first use" and
"the use before this one" in that order); each is written within a flush interval of
its request, with the request's own details (caller, key, client address, path, user
agent, correlation id, time).

What remains: two processes whose first uses (or first uses after an idle period) fall
within one flush interval of each other both read the old ``last_used_at`` and may each
record it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


class NotableUse:
    """One accepted request of a key that this process judged a security event
    (``reason``; None: an ordinary one, with every accepted request audited); called
    (off the request path) with the key's last use as stored by every process, it
    records the request as the event the cluster's view confirms."""

    __slots__ = (
        "_address_event",
        "_at",
        "_audit",
        "_details",
        "_every_success",
        "_idle_seconds",
        "_reason",
        "_request",
        "_seen_last",
    )

    def __init__(
        self,
        *,
        audit: AuditLog,
        at: datetime,
        reason: Reason | None,
        details: dict[str, Any] | None,
        address_event: tuple[Reason, dict[str, Any] | None] | None = None,
        idle_seconds: float,
        every_success: bool,
    ) -> None:
        self._audit = audit
        self._at = at
        self._reason = reason
        self._details = details
        self._address_event = address_event
        self._seen_last: float | None = None
        if reason is Reason.AFTER_INACTIVITY and details is not None:
            self._seen_last = at.timestamp() - details["idleSeconds"]
        self._idle_seconds = idle_seconds
        self._every_success = every_success
        request = current_request.get()
        self._request = _RequestFacts.of(request) if request is not None else None

    def __call__(self, stored_last_use: datetime | None) -> None:
        reason: Reason | None = self._reason
        details = self._details
        if reason is Reason.FIRST_USE and stored_last_use is not None:
            # Used before, through another worker or node (or before this process
            # forgot the key): not its first use; new to this process, though.
            idle = self._at.timestamp() - stored_last_use.timestamp()
            if idle >= self._idle_seconds:
                reason, details = Reason.AFTER_INACTIVITY, {"idleSeconds": int(idle)}
            else:
                reason, details = Reason.NEW_ADDRESS, None
        elif reason is Reason.AFTER_INACTIVITY and self._seen_last is not None:
            last = self._seen_last
            if stored_last_use is not None:
                last = max(last, stored_last_use.timestamp())
            idle = self._at.timestamp() - last
            if idle >= self._idle_seconds:
                details = {"idleSeconds": int(idle)}
            elif self._address_event is not None:  # used meanwhile elsewhere; new here
                reason, details = self._address_event
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
