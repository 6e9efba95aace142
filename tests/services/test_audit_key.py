"""The audit chain keyed with the audit key: the attacks of issue 10 item 6 (someone with
write access to the database, raw SQL) are reported; the key file; the re-anchoring of
trails written before the key; a node with another key; evidence the writer keeps."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import create_async_engine

from authgate.app import create_app
from authgate.container import Services, build_services
from authgate.exceptions import ConfigurationError
from authgate.runtime import BackgroundWork
from authgate.security.audit_chain import GENESIS_HASH, AuditKey, plain_hash
from authgate.services.audit.chain import AUDIT_KEY_FINGERPRINT, FLUSH_CHUNK, AuditChain
from authgate.services.audit.events import EventType
from authgate.settings import Settings
from authgate.storage import migrate
from authgate.storage.audit_repository import AuditRow
from authgate.storage.cluster_repository import ClusterRepository
from authgate.storage.models import AuditEvent, ClusterNode
from authgate.storage.paging import PageRequest
from tests import audit_tampering as attack
from tests.conftest import FakeClock, test_settings
from tests.services.test_audit import chained, node, record_logins, stored_ids


def secret() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Records are written only when a test flushes; the audit key is generated into
    the data dir, as on a single node."""
    return test_settings(
        tmp_path / "data", database_url=database_url, audit_flush_interval_seconds=60
    )


@pytest.fixture
async def services(settings: Settings, clock: FakeClock) -> AsyncIterator[Services]:
    async with node(settings, clock) as built:
        yield built


async def stored(services: Services, record_id: int) -> AuditEvent:
    async with services.db.session() as session:
        found = await session.get(AuditEvent, record_id)
    assert found is not None
    return found


# -- the key ----------------------------------------------------------------------------------


async def test_records_and_the_head_are_keyed_not_plain_sha256(services: Services) -> None:
    """Every record's hash is the HMAC under the audit key of the previous hash and its
    content (not SHA-256), and the head is signed; verify says so."""
    ids = await chained(services, 4)
    key = services.audit.key
    for record_id in ids:
        record = await stored(services, record_id)
        canonical = AuditRow.of_model(record).canonical()
        assert record.hash == key.record_hash(record.prev_hash, canonical)
        assert record.hash != plain_hash(record.prev_hash, canonical)
    head = await attack.head_row(services.db)
    assert key.signs_link("head", head.last_id, head.last_hash, head.mac)
    verification = await services.audit.verify()
    assert (verification.verdict, verification.checked, verification.keyed_from) == (
        "intact",
        len(ids),
        ids[0],
    )


async def test_the_audit_key_file_is_created_0600_and_kept(
    settings: Settings, clock: FakeClock
) -> None:
    """Without AUTHGATE_AUDIT_KEY(_FILE) a 32-byte key is generated into the data dir,
    mode 0600, apart from the pepper, and the next start uses the same key."""
    async with node(settings, clock) as first:
        fingerprint = first.audit.key.fingerprint
    path = settings.data_dir / "audit-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = base64.b64decode(path.read_text(encoding="utf-8").strip(), validate=True)
    assert len(key) == 32
    assert path.read_text() != (settings.data_dir / "api-key-pepper").read_text()
    assert AuditKey(key).fingerprint == fingerprint
    async with node(settings, clock) as again:
        assert again.audit.key.fingerprint == fingerprint


def test_the_audit_key_comes_from_the_setting_or_its_file(tmp_path: Path) -> None:
    """AUTHGATE_AUDIT_KEY and AUTHGATE_AUDIT_KEY_FILE are used as given (nothing is
    written to the data dir); a short or non-base64 key is a configuration error."""
    value = secret()
    expected = AuditKey(base64.b64decode(value)).fingerprint
    given = build_services(test_settings(tmp_path / "a", audit_key=value))
    assert given.audit.key.fingerprint == expected
    key_file = tmp_path / "shared-audit-key"
    key_file.write_text(value + "\n")
    from_file = build_services(test_settings(tmp_path / "b", audit_key_file=key_file))
    assert from_file.audit.key.fingerprint == expected
    assert not (tmp_path / "a" / "audit-key").exists()
    assert not (tmp_path / "b" / "audit-key").exists()
    for bad in (base64.b64encode(b"short").decode(), "not base64!"):
        with pytest.raises(ConfigurationError, match="audit key"):
            build_services(test_settings(tmp_path / "c", audit_key=bad))
    assert "audit_key" not in repr(given.audit.key)
    assert value not in repr(test_settings(tmp_path / "d", audit_key=value))


# -- attack 1: delete the newest records, repoint the head ------------------------------------


@pytest.mark.parametrize("drop_mac", [False, True], ids=["mac-left", "mac-cleared"])
async def test_deleting_the_newest_records_and_repointing_the_head_is_reported(
    services: Services, drop_mac: bool
) -> None:
    """The head now names the last record left, with its real hash: the head's signature
    (left as it was, or cleared) no longer fits, so the cut is reported."""
    await chained(services, 6)
    first_deleted = await attack.delete_newest_and_repoint_head(services.db, 2, drop_mac=drop_mac)
    verification = await services.audit.verify()
    assert not verification.intact
    assert verification.verdict == "truncated"
    assert verification.first_broken_id == first_deleted
    assert verification.problem


# -- attack 2: delete the oldest records, forge the retention anchor -------------------------


@pytest.mark.parametrize("mac", ["none", "garbage", "head-signature"])
async def test_deleting_the_oldest_records_with_a_forged_anchor_is_reported(
    services: Services, mac: str
) -> None:
    """The anchor names the last deleted record with its real hash, as retention would,
    but without a signature under the key (none, a made-up one, or the head's own
    signature moved over): reported as truncated at the start."""
    await chained(services, 6)
    head = await attack.head_row(services.db)
    signature = {"none": None, "garbage": "f" * 64, "head-signature": head.mac}[mac]
    await attack.delete_oldest_with_forged_anchor(services.db, 2, mac=signature)
    verification = await services.audit.verify()
    assert not verification.intact
    assert verification.verdict == "truncated"
    assert "retention anchor" in (verification.problem or "")


# -- attack 3: rewrite fields and recompute every hash ---------------------------------------


@pytest.mark.parametrize(
    "variant",
    ["sha256-head-unsigned", "sha256-head-signature-kept", "wrong-key-head-signed-with-it"],
)
async def test_rewriting_a_record_and_recomputing_every_hash_is_reported(
    services: Services, variant: str
) -> None:
    """A field is rewritten and every hash recomputed from the start (plain SHA-256, or
    HMAC under a key of the attacker's), the head pointed at the new last hash: the
    records do not carry the audit key's hashes, so the rewrite is reported."""
    ids = await chained(services, 6)
    old_mac = (await attack.head_row(services.db)).mac
    wrong = AuditKey(os.urandom(32))
    hasher, head_mac = {
        "sha256-head-unsigned": (attack.sha256_hasher(), None),
        "sha256-head-signature-kept": (attack.sha256_hasher(), lambda _i, _h: old_mac),
        "wrong-key-head-signed-with-it": (
            attack.wrong_key_hasher(wrong),
            lambda i, h: wrong.link_mac("head", i, h),
        ),
    }[variant]
    await attack.rewrite_and_rehash(
        services.db, ids[3], hasher, head_mac=head_mac, actor_login="mallory"
    )
    verification = await services.audit.verify()
    assert not verification.intact, verification
    assert verification.verdict == "forged"
    assert verification.first_broken_id == ids[0]  # the first record no longer fits


async def test_editing_one_field_without_rehashing_names_that_record(services: Services) -> None:
    """The simplest edit: one field, no hash touched: named at that record."""
    ids = await chained(services, 5)
    await attack.execute(
        services.db, "UPDATE audit_events SET reason = 'edited' WHERE id = :id", id=ids[2]
    )
    verification = await services.audit.verify()
    assert (verification.verdict, verification.first_broken_id) == ("forged", ids[2])


@pytest.mark.parametrize("record_id", [0, -1])
async def test_a_record_inserted_before_the_first_id_is_reported(
    services: Services, record_id: int
) -> None:
    """Ids need not be positive: a record put below the chain's first id (0 or -1, with
    any hashes) was skipped by the walk, which started after 0, and listed by the audit
    search as if genuine (attack review)."""
    await chained(services, 3)
    await attack.execute(
        services.db,
        "INSERT INTO audit_events (id, occurred_at, event_type, outcome, details, prev_hash, "
        "hash) VALUES (:id, :at, 'USER_DELETED', 'success', '{}', 'x', 'y')",
        id=record_id,
        at=datetime(2026, 12, 6, 11, 13, tzinfo=UTC),
    )
    verification = await services.audit.verify()
    assert verification.verdict != "intact"
    assert verification.first_broken_id == record_id


# -- checkpoints against the attacks and a rollback ------------------------------------------


async def test_the_attacks_are_also_reported_against_a_checkpoint(services: Services) -> None:
    """A checkpoint taken before the newest records were cut off names a record the chain
    no longer reaches: truncated; after a rewrite its record has another hash: rewritten."""
    await chained(services, 6)
    published = await services.checkpoints.publish("command_line")
    assert published is not None
    held = services.checkpoints.read(published.checkpoint)
    assert (await services.audit.verify(checkpoint=held)).intact
    await attack.delete_newest_and_repoint_head(services.db, 1, drop_mac=False)
    cut = await services.audit.verify(checkpoint=held)
    assert cut.checkpoint is not None
    assert cut.checkpoint.status == "truncated"
    assert not cut.intact


async def test_a_rewrite_is_rewritten_against_a_checkpoint(services: Services) -> None:
    ids = await chained(services, 6)
    published = await services.checkpoints.publish("command_line")
    assert published is not None
    await attack.rewrite_and_rehash(
        services.db, ids[1], attack.sha256_hasher(), actor_login="mallory"
    )
    verification = await services.audit.verify(
        checkpoint=services.checkpoints.read(published.checkpoint)
    )
    assert verification.checkpoint is not None
    assert verification.checkpoint.status == "rewritten"
    assert not verification.intact


async def test_a_rollback_to_an_earlier_state_is_caught_only_by_a_checkpoint(
    services: Services,
) -> None:
    """Someone who kept an earlier copy of the head row (a backup) deletes what came
    after it and restores that row: every remaining signature is genuine, so verify alone
    finds nothing (the limit of any key kept beside the data); the checkpoint published
    in between names the missing record."""
    await chained(services, 3)
    backup = await attack.head_row(services.db)
    ids = await chained(services, 3)
    published = await services.checkpoints.publish("interval")
    assert published is not None
    await attack.execute(services.db, "DELETE FROM audit_events WHERE id > :id", id=backup.last_id)
    await attack.restore_head(services.db, backup)

    assert (await services.audit.verify()).intact
    verification = await services.audit.verify(
        checkpoint=services.checkpoints.read(published.checkpoint)
    )
    assert (verification.verdict, verification.first_broken_id) == (
        "truncated",
        backup.last_id + 1,
    )
    assert verification.checkpoint is not None
    assert verification.checkpoint.status == "truncated"
    assert ids[-1] == published.position


# -- what the writer does with a tampered head -----------------------------------------------


async def test_the_writer_records_a_moved_head_in_the_chain_itself(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """Appending after the head was moved signs a new head, but first writes an
    AUDIT_CHAIN_TAMPERED record under the key: the cut stays reported after later
    appends, and the error is logged."""
    await chained(services, 5)
    await attack.delete_newest_and_repoint_head(services.db, 2, drop_mac=False)
    with caplog.at_level(logging.ERROR, logger="authgate.services.audit"):
        record_logins(services.audit, "after-", 3)
        await services.audit.flush()
    assert "AUDIT_CHAIN_TAMPERED" in caplog.text
    async with services.db.session() as session:
        tampered = await session.scalar(
            text("SELECT id FROM audit_events WHERE event_type = 'AUDIT_CHAIN_TAMPERED'")
        )
    verification = await services.audit.verify()
    assert (verification.verdict, verification.first_broken_id) == ("truncated", tampered)
    record_logins(services.audit, "later-", 2)
    await services.audit.flush()
    assert (await services.audit.verify()).first_broken_id == tampered


@pytest.mark.parametrize("row_by_row", [False, True], ids=["batch", "row by row"])
async def test_the_tampering_record_the_writer_adds_is_not_counted_as_written(
    services: Services, monkeypatch: pytest.MonkeyPatch, row_by_row: bool
) -> None:
    """A flush counts the records it was given that were written, never the
    AUDIT_CHAIN_TAMPERED record the writer adds on the way: the same whether the batch
    goes in at once or record by record (after the database refused a value)."""
    await chained(services, 5)
    await attack.delete_newest_and_repoint_head(services.db, 2, drop_mac=False)
    if row_by_row:

        async def refused(self: AuditChain, batch: list[AuditRow]) -> int:
            raise DataError("INSERT INTO audit_events", {}, Exception("value too long"))

        monkeypatch.setattr(AuditChain, "append", refused)
    record_logins(services.audit, "after-", 3)
    assert await services.audit.flush() == 3
    assert services.audit.dropped == 0
    async with services.db.session() as session:
        tampered = await session.scalar(
            text("SELECT count(*) FROM audit_events WHERE event_type = 'AUDIT_CHAIN_TAMPERED'")
        )
    assert tampered == 1


async def test_retention_does_not_sign_over_a_forged_anchor(
    services: Services, clock: FakeClock
) -> None:
    """With the retention anchor forged, retention deletes nothing (signing a new anchor
    would bury the evidence) and verify keeps reporting it."""
    await chained(services, 6)
    await attack.delete_oldest_with_forged_anchor(services.db, 2, mac=None)
    clock.advance(days=services.settings.audit.retention_days + 1)
    assert await services.audit.delete_expired() == 0
    assert (await services.audit.verify()).verdict == "truncated"


async def test_retention_signs_its_anchor(services: Services, clock: FakeClock) -> None:
    """Genuine retention leaves a signed anchor: the shorter trail verifies intact."""
    await chained(services, 4)
    clock.advance(days=services.settings.audit.retention_days + 1)
    record_logins(services.audit, "recent-", 3)
    await services.audit.flush()
    assert await services.audit.delete_expired() >= 4
    async with services.db.session() as session:
        row = (
            await session.execute(
                text("SELECT last_id, last_hash, mac FROM audit_chain_head WHERE id = 2")
            )
        ).one()
    assert services.audit.key.signs_link("retention", row.last_id, row.last_hash, row.mac)
    assert (await services.audit.verify()).intact


# -- another key --------------------------------------------------------------------------------


async def test_a_process_with_another_audit_key_is_refused(
    settings: Settings, clock: FakeClock
) -> None:
    """Once the trail is keyed, a process (server or CLI) with another key refuses to
    start: everything it wrote would read as forged."""
    async with node(settings, clock) as first:
        await chained(first, 2)
    stranger = test_settings(
        settings.data_dir.parent / "stranger",
        database_url=settings.effective_database_url,
        audit_key=secret(),
        # The first's other secrets: a command with others is refused for those first.
        api_key_pepper_file=settings.data_dir / "api-key-pepper",
        tfa_key_file=settings.data_dir / "tfa-key",
    )
    refused = BackgroundWork(build_services(stranger, clock=clock))
    try:
        with pytest.raises(ConfigurationError, match="not the one the audit trail is keyed with"):
            await refused.start(background=False)
    finally:
        await refused.close()


async def test_a_wrong_stored_fingerprint_is_corrected_when_the_head_proves_the_key(
    settings: Settings, clock: FakeClock
) -> None:
    """Someone changed the stored fingerprint: the head is signed with this process's key,
    so the process starts and puts the right fingerprint back."""
    async with node(settings, clock) as first:
        await chained(first, 2)
        fingerprint = first.audit.key.fingerprint
        await attack.execute(
            first.db,
            "UPDATE deployment_settings SET value = :v WHERE name = :n",
            v="0" * 32,
            n=AUDIT_KEY_FINGERPRINT,
        )
    async with node(settings, clock) as again:
        async with again.db.session() as session:
            assert await ClusterRepository(session).setting(AUDIT_KEY_FINGERPRINT) == fingerprint
        assert (await again.audit.verify()).intact


# -- trails written before the key ----------------------------------------------------------


async def write_plain_trail(database_url: str, clock: FakeClock, count: int) -> list[str]:
    """A trail as authgate wrote it before the audit key: plain SHA-256 records, an
    unsigned head, no fingerprint stored. Returns the records' hashes."""
    engine = create_async_engine(database_url)
    try:
        await migrate.upgrade(engine)
        hashes = []
        previous = GENESIS_HASH
        async with engine.begin() as connection:
            for number in range(count):
                row = AuditRow(
                    occurred_at=clock(),
                    event_type="AUTH_SUCCESS",
                    outcome="success",
                    actor_login=f"old-{number}",
                    actor_user_id=None,
                    api_key_id=None,
                    api_key_name=None,
                    client_ip="192.0.2.1",
                    user_agent=None,
                    request_path="/api/authenticate",
                    reason=None,
                    correlation_id=None,
                    details=None,
                )
                own = plain_hash(previous, row.canonical())
                await connection.execute(
                    insert(AuditEvent),
                    {
                        **{f.name: getattr(row, f.name) for f in dataclasses.fields(AuditRow)},
                        "prev_hash": previous,
                        "hash": own,
                    },
                )
                hashes.append(own)
                previous = own
            last_id = (await connection.execute(text("SELECT MAX(id) FROM audit_events"))).scalar()
            await connection.execute(
                text("INSERT INTO audit_chain_head (id, last_id, last_hash) VALUES (1, :i, :h)"),
                {"i": last_id, "h": previous},
            )
        return hashes
    finally:
        await engine.dispose()


async def test_an_existing_plain_chain_is_re_anchored_when_the_key_is_introduced(
    settings: Settings, clock: FakeClock
) -> None:
    """The first start with a key appends AUDIT_KEY_INTRODUCED, hashed with the key and
    linked to the plain chain's last hash; verify checks the plain prefix as before and
    everything from that record on under the key, and says where the keyed part starts."""
    hashes = await write_plain_trail(settings.effective_database_url, clock, 4)
    async with node(settings, clock) as services:
        ids = await stored_ids(services)
        introduced = await stored(services, ids[-1])
        assert introduced.event_type == EventType.AUDIT_KEY_INTRODUCED
        assert introduced.prev_hash == hashes[-1]
        key = services.audit.key
        canonical = AuditRow.of_model(introduced).canonical()
        assert introduced.hash == key.record_hash(introduced.prev_hash, canonical)
        record_logins(services.audit, "new-", 3)
        await services.audit.flush()
        verification = await services.audit.verify()
        assert verification.intact, verification
        assert verification.keyed_from == introduced.id
        assert verification.checked == 4 + 1 + 3
        # The plain prefix is anchored now: rewriting it (recomputing its SHA-256 hashes)
        # no longer fits the keyed record that links to it.
        await attack.rewrite_and_rehash(
            services.db, ids[1], attack.sha256_hasher(), head_mac=None, actor_login="mallory"
        )
        assert not (await services.audit.verify()).intact


async def test_a_plain_prefix_cannot_end_anywhere_but_at_the_key_introduction(
    settings: Settings, clock: FakeClock
) -> None:
    """Plain records may only precede the AUDIT_KEY_INTRODUCED record: a plain record
    after it is reported as forged."""
    await write_plain_trail(settings.effective_database_url, clock, 2)
    async with node(settings, clock) as services:
        ids = await chained(services, 3)
        victim = await stored(services, ids[-2])
        canonical = AuditRow.of_model(victim).canonical()
        await attack.execute(
            services.db,
            "UPDATE audit_events SET hash = :h WHERE id = :id",
            h=plain_hash(victim.prev_hash, canonical),
            id=victim.id,
        )
        verification = await services.audit.verify()
        assert (verification.verdict, verification.first_broken_id) == ("forged", victim.id)


async def test_a_new_trail_is_keyed_from_its_first_record(services: Services) -> None:
    """A fresh database gets no introduction record: its first record is keyed."""
    ids = await chained(services, 2)
    async with services.db.session() as session:
        types = list(await session.scalars(text("SELECT event_type FROM audit_events")))
    assert "AUDIT_KEY_INTRODUCED" not in types
    assert (await services.audit.verify()).keyed_from == ids[0]


async def test_the_key_is_introduced_only_once_older_nodes_have_stopped(
    settings: Settings, clock: FakeClock
) -> None:
    """While a node of the previous version (no audit key fingerprint in the registry)
    is live, the chain stays plain (verify: unkeyed); once it is gone the introduction
    happens and the trail verifies, keyed from the introduction."""
    await write_plain_trail(settings.effective_database_url, clock, 2)
    await register_old_node(settings.effective_database_url, clock)
    async with node(settings, clock) as services:
        assert not services.audit.introduced
        record_logins(services.audit, "during-upgrade-", 2)
        await services.audit.flush()
        assert (await services.audit.verify()).verdict == "unkeyed"
        async with services.db.transaction() as session:
            await ClusterRepository(session).remove("old:9:abcd")
        introduced = await BackgroundWork(services).introduce_audit_key()
        assert introduced is not None
        verification = await services.audit.verify()
        assert verification.intact, verification
        assert verification.keyed_from == introduced


async def test_a_keyed_chain_whose_head_lost_its_signature_is_never_re_anchored(
    settings: Settings, clock: FakeClock
) -> None:
    """Removing the head's signature (and the stored fingerprint) after cutting records
    does not get the chain re-anchored by the next start: the cut stays reported."""
    async with node(settings, clock) as first:
        await chained(first, 5)
        await attack.delete_newest_and_repoint_head(first.db, 2, drop_mac=True)
        await attack.execute(
            first.db, "DELETE FROM deployment_settings WHERE name = :n", n=AUDIT_KEY_FINGERPRINT
        )
    async with node(settings, clock) as again:
        async with again.db.session() as session:
            types = list(await session.scalars(text("SELECT event_type FROM audit_events")))
        assert "AUDIT_KEY_INTRODUCED" not in types
        assert (await again.audit.verify()).verdict == "truncated"
        record_logins(again.audit, "after-", 1)
        await again.audit.flush()
        assert (await again.audit.verify()).verdict == "truncated"


async def test_an_unkeyed_head_without_history_of_a_key_is_unkeyed_not_intact(
    services: Services,
) -> None:
    """A trail whose records are all plain and whose head is unsigned is never reported
    intact: plain SHA-256 proves nothing against a database writer."""
    ids = await chained(services, 3)
    await attack.rewrite_and_rehash(services.db, ids[0], attack.sha256_hasher(), actor_login="x")
    await attack.execute(
        services.db, "DELETE FROM deployment_settings WHERE name = :n", n=AUDIT_KEY_FINGERPRINT
    )
    verification = await services.audit.verify()
    assert verification.verdict == "unkeyed"
    assert not verification.intact


async def test_flush_costs_the_same_statements_with_the_key(services: Services) -> None:
    """Hot path: the HMACs and the head's signature ride on the statements that were
    there before: a flush of 500 records issues the statements of a flush of 1, plus one
    INSERT per further chunk of FLUSH_CHUNK records (chunks keep a large batch from
    holding the event loop)."""
    from sqlalchemy import event

    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        record_logins(services.audit, "one-", 1)
        await services.audit.flush()
        single = len(statements)
        statements.clear()
        record_logins(services.audit, "many-", 500)
        await services.audit.flush()
        many = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    chunks = -(-500 // FLUSH_CHUNK)
    assert many == single + chunks - 1, statements
    inserts = [statement for statement in statements if statement.startswith("INSERT")]
    assert len(inserts) == chunks, statements
    assert single <= 8


async def test_the_retention_anchor_of_a_plain_trail_is_signed_at_introduction(
    settings: Settings, clock: FakeClock
) -> None:
    """A plain trail that retention already cut (unsigned anchor): the introduction signs
    the anchor, so a later hand-made anchor is told apart from it."""
    await write_plain_trail(settings.effective_database_url, clock, 5)
    engine = create_async_engine(settings.effective_database_url)
    async with engine.begin() as connection:
        second = (
            await connection.execute(text("SELECT id, hash FROM audit_events ORDER BY id"))
        ).all()[1]
        await connection.execute(
            text("DELETE FROM audit_events WHERE id <= :id"), {"id": second.id}
        )
        await connection.execute(
            text("INSERT INTO audit_chain_head (id, last_id, last_hash) VALUES (2, :i, :h)"),
            {"i": second.id, "h": second.hash},
        )
    await engine.dispose()
    async with node(settings, clock) as services:
        assert (await services.audit.verify()).intact
        remaining = await stored_ids(services)
        await attack.delete_oldest_with_forged_anchor(services.db, 1, mac=None)
        verification = await services.audit.verify()
        assert verification.verdict == "truncated"
        assert remaining[0] not in await stored_ids(services)


async def test_node_fingerprints_disagreeing_about_the_audit_key_are_refused(
    settings: Settings, tmp_path: Path, clock: FakeClock
) -> None:
    """A live node registered with another audit key fingerprint makes a new node refuse
    to start (the registry comparison, as for the pepper)."""
    async with node(settings, clock) as services:
        async with services.db.transaction() as session:
            await ClusterRepository(session).register(
                ClusterNode(
                    node_id="peer:2:abcd",
                    hostname=services.cluster.hostname if services.cluster else "h",
                    pid=2,
                    version="1",
                    started_at=clock(),
                    last_seen_at=clock(),
                    pepper_fingerprint=pepper_fingerprint_of(services),
                    active_kid=services.tokens.codec.keyring.active.kid,
                    kids=services.tokens.codec.keyring.active.kid,
                    uses_redis=False,
                    audit_key_fingerprint="1" * 32,
                )
            )
        assert services.cluster is not None
        with pytest.raises(ConfigurationError, match="uses another audit key"):
            await services.cluster.preflight()


def pepper_fingerprint_of(services: Services) -> str:
    from authgate.services.cluster import pepper_fingerprint

    return pepper_fingerprint(services.server_secret)


async def test_a_trail_emptied_by_retention_is_intact_against_its_last_checkpoint(
    services: Services, clock: FakeClock
) -> None:
    """Retention of every record leaves an empty keyed trail (signed anchor = head):
    intact, and a checkpoint of its last record is removed_by_retention, not tampering."""
    await chained(services, 3)
    published = await services.checkpoints.publish("interval")
    assert published is not None
    clock.advance(days=services.settings.audit.retention_days + 1)
    assert await services.audit.delete_expired() >= 3
    verification = await services.audit.verify(
        checkpoint=services.checkpoints.read(published.checkpoint)
    )
    assert verification.intact, verification
    assert verification.checkpoint is not None
    assert verification.checkpoint.status == "removed_by_retention"


async def register_old_node(
    database_url: str, clock: FakeClock, *, agreeing_with: Services | None = None
) -> None:
    """A live node of the previous version: registered without an audit key fingerprint
    (otherwise agreeing with ``agreeing_with``'s pepper, signing keys and host)."""
    same: dict[str, object] = {}
    if agreeing_with is not None:
        kid = agreeing_with.tokens.codec.keyring.active.kid
        same = {
            "hostname": socket.gethostname()[:255],
            "pepper_fingerprint": pepper_fingerprint_of(agreeing_with),
            "active_kid": kid,
            "kids": kid,
        }
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(ClusterNode),
                {
                    "node_id": "old:9:abcd",
                    "hostname": "old-host",
                    "pid": 9,
                    "version": "0.9",
                    "started_at": clock(),
                    "last_seen_at": clock(),
                    "pepper_fingerprint": "0" * 32,
                    "active_kid": "k",
                    "kids": "k",
                    "uses_redis": False,
                    "audit_key_fingerprint": None,
                    **same,
                },
            )
    finally:
        await engine.dispose()


async def test_a_serving_node_introduces_the_key_once_the_old_node_is_gone(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server started beside a node of the previous version keeps the chain plain and
    retries; when that node deregisters, it introduces the key by itself and publishes a
    checkpoint (reason key_introduced)."""
    monkeypatch.setattr("authgate.runtime.HEARTBEAT_SECONDS", 0.02)
    await write_plain_trail(settings.effective_database_url, clock, 2)
    app = create_app(settings, clock=clock)
    await register_old_node(
        settings.effective_database_url, clock, agreeing_with=app.state.services
    )
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        assert not services.audit.introduced
        async with services.db.transaction() as session:
            await ClusterRepository(session).remove("old:9:abcd")
        async with asyncio.timeout(10):
            # Polls the database: the publication has no in-process event to wait on.
            while not (listed := await services.checkpoints.search(PageRequest(size=10))).total:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert services.audit.introduced
        assert [c.reason for c in listed.items] == ["key_introduced"]
        verification = await services.audit.verify()
        assert verification.intact, verification
        assert verification.keyed_from == listed.items[0].position


async def test_serving_start_on_a_plain_trail_publishes_a_key_introduced_checkpoint(
    settings: Settings, clock: FakeClock
) -> None:
    await write_plain_trail(settings.effective_database_url, clock, 3)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        listed = await services.checkpoints.search(PageRequest(size=10))
        assert [c.reason for c in listed.items] == ["key_introduced"]
        introduced = await stored(services, listed.items[0].position)
        assert introduced.event_type == EventType.AUDIT_KEY_INTRODUCED
