"""The attacks of issue 10 item 6 on the audit trail, done as someone with write access to
the database would: raw SQL on ``audit_events`` and ``audit_chain_head``, never through
authgate's code. Shared by the service, API and CLI tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from authgate.security.audit_chain import GENESIS_HASH, AuditKey, plain_hash
from authgate.storage.audit_repository import AuditRow
from authgate.storage.db import Database
from authgate.storage.models import AuditEvent

HEAD_ROW, RETENTION_ROW = 1, 2

# (previous hash, canonical content) -> hash, as the attacker computes it.
Hasher = Callable[[str, str], str]


@dataclass(frozen=True)
class HeadRow:
    """The chain head as stored (a backup of it, for the rollback attack)."""

    last_id: int
    last_hash: str
    mac: str | None


async def execute(db: Database, statement: str, **parameters: Any) -> None:
    async with db.transaction() as session:
        await session.execute(text(statement), parameters)


async def ids(db: Database) -> list[int]:
    async with db.session() as session:
        rows = await session.execute(text("SELECT id FROM audit_events ORDER BY id"))
        return [row[0] for row in rows.all()]


async def hash_of(db: Database, record_id: int) -> str:
    async with db.session() as session:
        value = await session.scalar(
            text("SELECT hash FROM audit_events WHERE id = :id"), {"id": record_id}
        )
    assert isinstance(value, str)
    return value


async def head_row(db: Database) -> HeadRow:
    async with db.session() as session:
        row = (
            await session.execute(
                text("SELECT last_id, last_hash, mac FROM audit_chain_head WHERE id = :id"),
                {"id": HEAD_ROW},
            )
        ).one()
    return HeadRow(row.last_id, row.last_hash, row.mac)


async def restore_head(db: Database, head: HeadRow) -> None:
    await execute(
        db,
        "UPDATE audit_chain_head SET last_id = :last_id, last_hash = :last_hash, mac = :mac "
        "WHERE id = :id",
        id=HEAD_ROW,
        last_id=head.last_id,
        last_hash=head.last_hash,
        mac=head.mac,
    )


# -- attack 1: delete the newest records and repoint the head ---------------------------------


async def delete_newest_and_repoint_head(db: Database, count: int, *, drop_mac: bool) -> int:
    """Delete the ``count`` newest records and point the head at the last one left (with
    its real hash). ``drop_mac``: also clear the head's signature, else leave it as it
    was. Returns the id of the first deleted record."""
    existing = await ids(db)
    first_deleted, last_kept = existing[-count], existing[-count - 1]
    await execute(db, "DELETE FROM audit_events WHERE id >= :id", id=first_deleted)
    new_head = HeadRow(last_kept, await hash_of(db, last_kept), None)
    if not drop_mac:
        new_head = HeadRow(new_head.last_id, new_head.last_hash, (await head_row(db)).mac)
    await restore_head(db, new_head)
    return first_deleted


# -- attack 2: delete the oldest records with a forged retention anchor -----------------------


async def delete_oldest_with_forged_anchor(db: Database, count: int, *, mac: str | None) -> int:
    """Delete the ``count`` oldest records and set the retention anchor to the last one
    deleted (its real id and hash), as retention would, with ``mac`` as its signature.
    Returns the id of the first record left."""
    existing = await ids(db)
    last_deleted = existing[count - 1]
    anchor_hash = await hash_of(db, last_deleted)
    await execute(db, "DELETE FROM audit_events WHERE id <= :id", id=last_deleted)
    await execute(db, "DELETE FROM audit_chain_head WHERE id = :id", id=RETENTION_ROW)
    await execute(
        db,
        "INSERT INTO audit_chain_head (id, last_id, last_hash, mac) "
        "VALUES (:id, :last_id, :last_hash, :mac)",
        id=RETENTION_ROW,
        last_id=last_deleted,
        last_hash=anchor_hash,
        mac=mac,
    )
    return existing[count]


# -- attack 3: rewrite a field and recompute every hash -------------------------------------


def sha256_hasher() -> Hasher:
    return plain_hash


def wrong_key_hasher(key: AuditKey) -> Hasher:
    return key.record_hash


async def rewrite_and_rehash(
    db: Database,
    victim: int,
    hasher: Hasher,
    *,
    head_mac: Callable[[int, str], str | None] | None = None,
    **changes: Any,
) -> None:
    """Change ``changes`` on record ``victim``, then recompute every record's
    ``prev_hash`` and ``hash`` from the start of the chain with ``hasher``, and point the
    head at the new last hash, signed with ``head_mac`` (None: the signature is cleared)."""
    assignments = ", ".join(f"{column} = :{column}" for column in changes)
    await execute(
        db,
        f"UPDATE audit_events SET {assignments} WHERE id = :victim",  # noqa: S608 - test columns
        victim=victim,
        **changes,
    )
    async with db.session() as session:
        anchor = await session.scalar(
            text("SELECT last_hash FROM audit_chain_head WHERE id = :id"), {"id": RETENTION_ROW}
        )
        records = list(
            (await session.execute(text("SELECT id FROM audit_events ORDER BY id"))).scalars()
        )
    previous = anchor or GENESIS_HASH
    async with db.transaction() as session:
        for record_id in records:
            stored = await session.get(AuditEvent, record_id)
            assert stored is not None
            own = hasher(previous, AuditRow.of_model(stored).canonical())
            await session.execute(
                text("UPDATE audit_events SET prev_hash = :prev, hash = :own WHERE id = :id"),
                {"prev": previous, "own": own, "id": record_id},
            )
            previous = own
        last_id = records[-1]
        mac = head_mac(last_id, previous) if head_mac is not None else None
        await session.execute(
            text(
                "UPDATE audit_chain_head SET last_id = :last_id, last_hash = :last_hash, "
                "mac = :mac WHERE id = :id"
            ),
            {"last_id": last_id, "last_hash": previous, "mac": mac, "id": HEAD_ROW},
        )
