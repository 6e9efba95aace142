"""The node registry (``cluster_nodes``) and deployment-wide facts (``deployment_settings``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.models import (
    ApiKey,
    ClusterNode,
    DeploymentSetting,
    OneTimeCode,
    SecondFactor,
    ServiceCredential,
)


class ClusterRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # -- deployment-wide facts -------------------------------------------------------------

    async def setting(self, name: str) -> str | None:
        row = await self._session.get(DeploymentSetting, name)
        return row.value if row is not None else None

    async def put_setting(self, name: str, value: str, *, now: datetime) -> None:
        row = await self._session.get(DeploymentSetting, name, with_for_update=True)
        if row is None:
            self._session.add(DeploymentSetting(name=name, value=value, updated_at=now))
        else:
            row.value = value
            row.updated_at = now

    async def any_api_keys(self) -> bool:
        """Whether any digest depends on the stored pepper fingerprint: an API key's or
        a service credential's (both are keyed with the pepper)."""
        keys = exists().where(ApiKey.id.is_not(None))
        credentials = exists().where(ServiceCredential.id.is_not(None))
        return bool(await self._session.scalar(select(or_(keys, credentials))))

    async def any_second_factor_secrets(self, *, now: datetime) -> bool:
        """Whether anything a user still relies on depends on the second-factor key: a
        TOTP secret in force (encrypted with it), or a one-time code still usable (its
        hash is keyed with it). Used and expired codes, and enrolments never completed,
        do not count: they are kept, but lose nothing with the key."""
        totp = exists().where(SecondFactor.totp_secret.is_not(None))
        codes = exists().where(
            OneTimeCode.used_at.is_(None),
            or_(OneTimeCode.expires_at.is_(None), OneTimeCode.expires_at > now),
        )
        return bool(await self._session.scalar(select(or_(totp, codes))))

    # -- the node registry -----------------------------------------------------------------

    async def live_nodes(self, seen_after: datetime) -> Sequence[ClusterNode]:
        rows = await self._session.scalars(
            select(ClusterNode)
            .where(ClusterNode.last_seen_at > seen_after)
            .order_by(ClusterNode.started_at, ClusterNode.node_id)
        )
        return rows.all()

    async def register(self, node: ClusterNode) -> None:
        await self._session.merge(node)

    async def touch(self, node_id: str, *, now: datetime, active_kid: str, kids: str) -> bool:
        """Refresh a node's heartbeat; False when its row is gone (pruned as dead)."""
        result = await self._session.execute(
            update(ClusterNode)
            .where(ClusterNode.node_id == node_id)
            .values(last_seen_at=now, active_kid=active_kid, kids=kids)
        )
        return bool(getattr(result, "rowcount", 0))

    async def remove(self, node_id: str) -> None:
        await self._session.execute(delete(ClusterNode).where(ClusterNode.node_id == node_id))

    async def prune(self, seen_before: datetime) -> int:
        result = await self._session.execute(
            delete(ClusterNode).where(ClusterNode.last_seen_at < seen_before)
        )
        return int(getattr(result, "rowcount", 0) or 0)
