"""What happens to an owner's keys with the owner's account: suspended with a
deactivation (and, with ``AUTHGATE_API_KEY_RESUME_ON_REACTIVATION``, resumed with the
reactivation), revoked with a password reset or a "log out everywhere", each change
audited and told to every worker and node."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from authgate.security.principal import KeyReference
from authgate.services.audit.events import Actor, EventType, current_request
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import Change, ChangeKind, UnitOfWork
from authgate.services.ports import ApiKeyRepo
from authgate.storage.models import ApiKey


def end_grace(key: ApiKey) -> None:
    """End a rotation's grace period at once: the previous secret stops working."""
    key.previous_secret_hash = None
    key.previous_valid_until = None


async def suspend_owner_keys(
    work: UnitOfWork, keys: ApiKeyRepo, owner_id: int, *, now: datetime
) -> list[KeyReference]:
    """Suspend every live key of ``owner_id`` that is not suspended yet, in ``work`` (the
    deactivation's own transaction), and tell every worker and node (change feed). A
    deactivation is a remediation: a rotation's previous secret, still in its grace
    period, ends with it and does not come back when the key is re-enabled."""
    suspended = []
    for key in await keys.live_of_owner(owner_id):
        if key.suspended_at is None:
            key.suspended_at = now
            suspended.append(_changed(work, key, owner_id, now=now))
    return suspended


async def resume_owner_keys(
    work: UnitOfWork, keys: ApiKeyRepo, owner_id: int, *, now: datetime
) -> list[KeyReference]:
    """Re-enable every suspended key of ``owner_id`` that is neither revoked nor expired,
    in ``work`` (the reactivation's own transaction), at once on every worker and node.
    Only a deactivation suspends keys. An expired one stays suspended: whoever extends
    it later re-enables it too, deliberately."""
    resumed = []
    for key in await keys.live_of_owner(owner_id):
        if key.suspended_at is not None and (key.expires_at is None or key.expires_at > now):
            key.suspended_at = None
            resumed.append(_changed(work, key, owner_id, now=now))
    return resumed


async def revoke_owner_keys(
    work: UnitOfWork, keys: ApiKeyRepo, owner_id: int, *, now: datetime
) -> list[KeyReference]:
    """Revoke every live key of ``owner_id`` in ``work`` (a password reset's or a "log
    out everywhere"'s own transaction), at once on every worker and node."""
    revoked = []
    for key in await keys.live_of_owner(owner_id):
        key.revoked_at = now
        revoked.append(_changed(work, key, owner_id, now=now))
    return revoked


def _changed(work: UnitOfWork, key: ApiKey, owner_id: int, *, now: datetime) -> KeyReference:
    """A key changed with its owner's account: stamped, its rotation's grace ended
    (suspended, resumed or revoked, the previous secret never works again; a resumption
    also ends one that a suspension before this rule left), told to every worker and
    node when ``work`` commits, and referred to for the audit trail."""
    key.updated_at = now
    end_grace(key)
    work.publish(Change(ChangeKind.API_KEY_CHANGED, key.key_id))
    return KeyReference(key_pk=key.id, name=key.name, owner_id=owner_id)


def audit_owner_keys(
    audit: AuditLog, event: EventType, keys: Sequence[KeyReference], *, cause: str
) -> None:
    """One audit event per key suspended, resumed or revoked with its owner's account,
    by the current caller (or the operator)."""
    request = current_request.get()
    caller = request.principal if request is not None else None
    for reference in keys:
        audit.record(
            event, "success", actor=Actor.of(caller, key=reference), details={"cause": cause}
        )
