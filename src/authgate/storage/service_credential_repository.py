"""Service credentials in the database (``service_credentials``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.models import ServiceCredential
from authgate.storage.row_locks import lock_row
from authgate.storage.text import storable_text


class ServiceCredentialRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def by_credential_id(self, credential_id: str) -> ServiceCredential | None:
        if not storable_text(credential_id):
            return None
        return await self._session.scalar(
            select(ServiceCredential).where(ServiceCredential.credential_id == credential_id)
        )

    async def locked(self, credential_id: str) -> ServiceCredential | None:
        """``by_credential_id`` read anew, the row locked until the transaction ends: a
        concurrent change (a rotation, a revocation) waits for this one, then sees it."""
        if not storable_text(credential_id):
            return None
        condition = ServiceCredential.credential_id == credential_id
        return await lock_row(self._session, ServiceCredential, condition)

    async def by_lookup(self, digest: str) -> ServiceCredential | None:
        """The credential whose adopted secret, or previous adopted secret, has the keyed
        hash ``digest`` (both indexed); one whose current secret it is comes first."""
        rows = list(
            await self._session.scalars(
                select(ServiceCredential)
                .where(
                    or_(
                        ServiceCredential.secret_lookup == digest,
                        ServiceCredential.previous_secret_lookup == digest,
                    )
                )
                .limit(2)
            )
        )
        current = [row for row in rows if row.secret_lookup == digest]
        return next(iter(current or rows), None)

    async def live_name_taken(self, name: str, *, except_id: int | None = None) -> bool:
        if not storable_text(name):
            return False
        query = select(ServiceCredential.id).where(
            ServiceCredential.name == name, ServiceCredential.revoked_at.is_(None)
        )
        if except_id is not None:
            query = query.where(ServiceCredential.id != except_id)
        return await self._session.scalar(query.limit(1)) is not None

    async def listed(self, *, include_revoked: bool) -> Sequence[ServiceCredential]:
        query = select(ServiceCredential).order_by(ServiceCredential.id)
        if not include_revoked:
            query = query.where(ServiceCredential.revoked_at.is_(None))
        return list(await self._session.scalars(query))

    def add(self, credential: ServiceCredential) -> None:
        self._session.add(credential)

    async def touch(self, row_id: int, at: datetime) -> None:
        """Record a use (the caller throttles how often)."""
        await self._session.execute(
            update(ServiceCredential).where(ServiceCredential.id == row_id).values(last_used_at=at)
        )
