"""``authgate import utmstack`` end to end: a UTMStack-shaped schema in the test
PostgreSQL (DDL from UTMStack's Liquibase changelogs, bcrypt hashes made with bcrypt),
imported into authgate; then the original passwords log in and are rehashed, legacy keys
work through both headers with their allow lists, a second import is a no-op, a dry run
writes nothing, an export file gives the same result, column variants are handled, and
no plaintext key is anywhere in authgate's database, logs or reports."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import httpx2
import pyotp
import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from authgate.app import create_app
from authgate.cli import app as cli_app
from authgate.cli import imports as cli_imports
from authgate.exceptions import ConfigurationError
from authgate.security.sealing import seal
from authgate.services.audit.events import OPERATOR
from authgate.services.import_report import LEFT_AS_IT_IS, ImportReport
from authgate.services.user_fields import UserChanges
from authgate.services.utmstack_import import (
    FS_MANAGER_SKIPPED,
    SECOND_FACTOR_PURPOSE,
    ImportOptions,
    UtmStackImporter,
)
from authgate.services.utmstack_rows import parse_source
from authgate.settings import CONFIG_FILE_VARIABLE
from authgate.storage import utmstack_source
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.models import ApiKey, Base, SecondFactor, User
from authgate.storage.paging import PageRequest
from tests.api.test_second_factor import harness_with, store_totp_secret
from tests.conftest import (
    ADMIN_PASSWORD,
    POSTGRES_URL,
    USER_PASSWORD,
    FakeClock,
    Harness,
    bearer,
    run_in_own_loop,
    test_settings,
)
from tests.mail import running_smtp_server

# UTMStack's schema, from config/liquibase/scripts/tables.sql (jhi_user, jhi_authority,
# jhi_user_authority, utm_configuration_parameter without its section) and
# changelog/20251017001_create_api_keys_table.xml (api_keys). The two-factor switch is on
# (data.sql writes 'false'; alice's TOTP factor is asked for only while it is on), beside
# a setting whose value must never be exported (the SMTP password, encrypted there).
DDL = """
CREATE TABLE jhi_user (
    id bigint PRIMARY KEY, login varchar(50) NOT NULL UNIQUE,
    password_hash varchar(60) NOT NULL, first_name varchar(50), last_name varchar(50),
    email varchar(191) UNIQUE, image_url varchar(256), activated boolean NOT NULL,
    lang_key varchar(6), activation_key varchar(20), reset_key varchar(20),
    created_by varchar(50) NOT NULL, created_date timestamp, reset_date timestamp,
    last_modified_by varchar(50), last_modified_date timestamp,
    tfa_secret varchar(100), tfa_method varchar(20), fs_manager boolean, default_password boolean
);
CREATE TABLE jhi_authority (name varchar(50) PRIMARY KEY);
CREATE TABLE jhi_user_authority (
    user_id bigint NOT NULL REFERENCES jhi_user (id),
    authority_name varchar(50) NOT NULL REFERENCES jhi_authority (name),
    PRIMARY KEY (user_id, authority_name)
);
CREATE TABLE api_keys (
    id uuid PRIMARY KEY, user_id bigint NOT NULL REFERENCES jhi_user (id) ON DELETE CASCADE,
    name varchar(255) NOT NULL, api_key varchar(255) NOT NULL UNIQUE, allowed_ip text,
    created_at timestamp NOT NULL, expires_at timestamp, generated_at timestamp
);
INSERT INTO jhi_authority VALUES ('ROLE_ADMIN'), ('ROLE_USER');
CREATE TABLE utm_configuration_parameter (
    id bigint PRIMARY KEY, section_id bigint NOT NULL, conf_param_short varchar(100),
    conf_param_large varchar(255), conf_param_description varchar(255), conf_param_value text,
    conf_param_required boolean, conf_param_datatype varchar(20),
    modification_time timestamp(6), modification_user varchar(255), conf_param_option text,
    UNIQUE (section_id, conf_param_short)
);
INSERT INTO utm_configuration_parameter (id, section_id, conf_param_short, conf_param_large,
    conf_param_value, conf_param_required, conf_param_datatype) VALUES
    (17, 3, 'utmstack.tfa.enable', 'Enable Two Factor Authentication', 'true', true, 'bool'),
    (10, 2, 'utmstack.mail.password', 'Mail Server Password', 'SMTP-PASSWORD-NOT-EXPORTED',
     false, 'password');
"""

PASSWORDS = {
    "admin": "utm-operator-secret-2026",
    "alice": "correct horse battery staple",
    "bob": "utmstack-default-pass",
    "svc": "filesystem-manager-pass",
}
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NEW_TOTP_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def legacy_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


@dataclass
class UtmStackSource:
    url: str  # postgresql:// (what an operator passes)
    schema: str
    keys: dict[str, str] = field(default_factory=dict)  # name -> plaintext
    key_ids: dict[str, str] = field(default_factory=dict)  # name -> UUID

    def secrets(self) -> list[str]:
        return [*self.keys.values(), TOTP_SECRET]


def _bcrypt(password: str) -> str:
    # Spring's BCryptPasswordEncoder writes $2a$; cost 4 keeps the test fast.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4, prefix=b"2a")).decode()


@pytest.fixture
def utmstack() -> Iterator[UtmStackSource]:
    """UTMStack's tables in a schema of this test's own, dropped afterwards (in the
    test PostgreSQL: the tests that read UTMStack's database need one)."""
    if not POSTGRES_URL:
        pytest.skip("AUTHGATE_TEST_DATABASE_URL is not set")
    schema = f"utmstack_src_{os.getpid()}_{secrets.token_hex(3)}"
    plain_url = make_url(POSTGRES_URL).set(drivername="postgresql")
    source = UtmStackSource(url=plain_url.render_as_string(hide_password=False), schema=schema)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    keys = {
        # name: (owner, allowed_ip, expires_at)
        "bare-v4": (2, "127.0.0.1", now + timedelta(days=30)),
        "cidr-host-bits": (2, "10.1.2.3/16, ::1", now + timedelta(days=30)),
        "ipv6-exact": (2, "2001:db8::7", None),
        "unrestricted": (2, None, None),
        "beyond-cap": (3, "", now + timedelta(days=3650)),
        "expired": (2, "127.0.0.1", now - timedelta(days=1)),
        "admin-tool": (1, "127.0.0.1", None),
        "fs-manager-key": (4, None, None),
    }

    async def create() -> None:
        engine = create_async_engine(POSTGRES_URL)
        async with engine.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            await connection.execute(text(f'SET LOCAL search_path TO "{schema}"'))
            for statement in DDL.split(";"):
                if statement.strip():
                    await connection.execute(text(statement))
            users = [
                (1, "admin", "admin@localhost", False, None, None, False),
                (2, "alice", "alice@example.com", False, TOTP_SECRET, "TOTP", False),
                (3, "bob", "bob@example.com", True, None, None, False),
                (4, "svc", "svc@example.com", False, None, None, True),
            ]
            for user_id, login, email, default, tfa, method, fs_manager in users:
                await connection.execute(
                    text(
                        "INSERT INTO jhi_user (id, login, password_hash, first_name, email, "
                        "image_url, activated, lang_key, created_by, created_date, "
                        "last_modified_by, last_modified_date, tfa_secret, tfa_method, "
                        "fs_manager, default_password) VALUES (:id, :login, :hash, :first, "
                        ":email, :image, true, 'es', 'system', :created, 'admin', :modified, "
                        ":tfa, :method, :fs, :default)"
                    ),
                    {
                        "id": user_id,
                        "login": login,
                        "hash": _bcrypt(PASSWORDS[login]),
                        "first": login.title(),
                        "email": email,
                        "image": f"https://img.example/{login}.png",
                        "created": now - timedelta(days=400),
                        "modified": now - timedelta(days=3),
                        "tfa": tfa,
                        "method": method,
                        "fs": fs_manager,
                        "default": default,
                    },
                )
                roles = ["ROLE_USER"] + (["ROLE_ADMIN"] if login == "admin" else [])
                for role in roles:
                    await connection.execute(
                        text("INSERT INTO jhi_user_authority VALUES (:id, :role)"),
                        {"id": user_id, "role": role},
                    )
            for name, (owner, allowed, expires) in keys.items():
                plaintext, key_id = legacy_key(), str(__import__("uuid").uuid4())
                source.keys[name], source.key_ids[name] = plaintext, key_id
                await connection.execute(
                    text(
                        "INSERT INTO api_keys VALUES (:id, :owner, :name, :key, :allowed, "
                        ":created, :expires, :created)"
                    ),
                    {
                        "id": key_id,
                        "owner": owner,
                        "name": name,
                        "key": plaintext,
                        "allowed": allowed,
                        "created": now - timedelta(days=10),
                        "expires": expires,
                    },
                )
        await engine.dispose()

    async def drop() -> None:
        engine = create_async_engine(POSTGRES_URL)
        async with engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()

    run_in_own_loop(create)
    try:
        yield source
    finally:
        run_in_own_loop(drop)


async def import_from_database(
    harness: Harness, source: UtmStackSource, **options: Any
) -> ImportReport:
    tables = await utmstack_source.read_database(source.url, schema=source.schema)
    return await _import(harness, tables, **options)


async def _import(
    harness: Harness, tables: utmstack_source.SourceTables, **options: Any
) -> ImportReport:
    services = harness.services
    importer = UtmStackImporter(
        feed=services.feed,
        clock=services.clock,
        pepper=services.server_secret,
        audit=services.audit,
        max_key_lifetime_days=services.settings.api_keys.max_lifetime_days,
        second_factor=services.second_factor,
    )
    return await importer.run(parse_source(tables), ImportOptions(**options), source="test")


async def totp_login(
    harness: Harness, login: str, *, steps: int = 0, secret: str = TOTP_SECRET, v10: bool = False
) -> str:
    """POST /api/authenticate, then POST /api/tfa/verify-code (v11; v10: GET
    /api/tfa/verifyCode) with a code computed by pyotp from UTMStack's original secret,
    as the user's authenticator app would."""
    password_step = await harness.client.post(
        "/api/authenticate", json={"username": login, "password": PASSWORDS[login]}
    )
    assert password_step.status_code == 200, password_step.text
    assert password_step.json()["method"] == "TOTP"
    assert password_step.json()["authenticated"] is False
    pending = password_step.json()["token"]
    instant = harness.clock().timestamp() + 30 * steps
    code = pyotp.TOTP(secret).at(instant)
    if v10:
        verified = await harness.client.get(
            "/api/tfa/verifyCode", params={"code": code}, headers=bearer(pending)
        )
    else:
        verified = await harness.client.post(
            "/api/tfa/verify-code",
            content=code,
            headers={**bearer(pending), "Content-Type": "text/plain"},
        )
    assert verified.status_code == 200, verified.text
    assert verified.json()["authenticated"] is True
    token: str = verified.json()["id_token"]
    return token


def entry(report: ImportReport, kind: str, name: str) -> Any:
    [found] = [e for e in report.entries if e.kind == kind and e.name.startswith(name)]
    return found


AUDIT_TABLES = frozenset({"audit_events", "audit_chain_head", "audit_checkpoints"})


async def dump(harness: Harness, *, exclude: frozenset[str] = frozenset()) -> str:
    """Every row of every authgate table, as text (the test's "database dump")."""
    lines = []
    async with harness.services.db.session() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in exclude:
                continue
            for row in await session.execute(select(table)):
                lines.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(lines)


async def test_import_keeps_passwords_keys_and_roles_working(
    harness: Harness, utmstack: UtmStackSource, caplog: pytest.LogCaptureFixture
) -> None:
    """Users and keys arrive; passwords log in and are rehashed to Argon2id; legacy keys
    work through both headers with their allow lists; the report says what happened;
    nothing holds a plaintext key or the TOTP secret."""
    caplog.set_level(logging.DEBUG)
    report = await import_from_database(harness, utmstack)

    assert report.counts()["users"] == {
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "skipped": 1,
        "conflict": 0,
        "deleted_in_authgate": 0,
        "deleted_in_utmstack": 0,
    }
    assert "fs_manager" in entry(report, "user", "svc").notes[0]
    assert any("default password" in n for n in entry(report, "user", "bob").notes)
    assert "second factor TOTP imported and in force" in entry(report, "user", "alice").notes
    assert entry(report, "key", "fs-manager-key").action == "skipped"
    assert report.counts()["keys"]["created"] == 7
    assert "host bits masked" in entry(report, "key", "cidr-host-bits").notes
    assert any("beyond" in n for n in entry(report, "key", "beyond-cap").notes)

    # Passwords: bcrypt verified, then Argon2id; alice's authenticator app still works.
    token = await totp_login(harness, "alice")
    async with harness.services.db.session() as session:
        alice = await session.scalar(select(User).where(User.login == "alice"))
        bob = await session.scalar(select(User).where(User.login == "bob"))
    assert alice is not None
    assert bob is not None
    assert alice.password_hash.startswith("$argon2id$")
    assert await totp_login(harness, "alice", steps=1, v10=True)  # the new hash works too
    assert bob.password_change_required
    assert alice.first_name == "Alice"
    assert alice.lang_key == "es"
    assert alice.created_at < harness.clock() - timedelta(days=300)
    assert json.loads(alice.legacy_profile or "{}")["imageUrl"] == "https://img.example/alice.png"
    assert alice.second_factor == "TOTP"
    assert alice.legacy_second_factor is None
    account = await harness.client.get("/api/account", headers=bearer(token))
    assert account.json()["passwordChangeRequired"] is False

    # Keys: both headers, allow lists in each form, expiry.
    keys = utmstack.keys
    for headers in ({"Utm-Api-Key": keys["bare-v4"]}, bearer(keys["bare-v4"])):
        response = await harness.client.get("/api/account", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["login"] == "alice"
    for address, allowed in (("10.1.250.9", True), ("10.2.0.1", False), ("::1", True)):
        async with harness.client_from(address) as client:
            response = await client.get("/api/account", headers=bearer(keys["cidr-host-bits"]))
        assert (response.status_code == 200) is allowed, (address, response.text)
    async with harness.client_from("2001:db8::7") as client:
        response = await client.get("/api/account", headers=bearer(keys["ipv6-exact"]))
        assert response.status_code == 200
        assert (await client.get("/api/account", headers=bearer(keys["bare-v4"]))).status_code == (
            403
        )
    async with harness.client_from("198.51.100.4") as client:
        response = await client.get("/api/account", headers={"Utm-Api-Key": keys["unrestricted"]})
    assert response.status_code == 200
    expired = await harness.client.get("/api/account", headers=bearer(keys["expired"]))
    assert expired.status_code == 401
    assert "expired" in expired.json()["message"]
    admin_key = await harness.client.get("/api/users", headers=bearer(keys["admin-tool"]))
    assert admin_key.status_code == 200  # UTMStack's admin keeps an admin key
    listed = await harness.client.get("/api/api-keys", headers=bearer(token))
    assert {k["name"]: k["legacy"] for k in listed.json()} == {
        "bare-v4": True,
        "cidr-host-bits": True,
        "ipv6-exact": True,
        "unrestricted": True,
        "expired": True,
    }

    # No plaintext anywhere: database, logs, report.
    everything = "\n".join(
        [await dump(harness), caplog.text, json.dumps(report.as_json()), repr(report)]
    )
    for secret in utmstack.secrets():
        assert secret not in everything
    async with harness.services.db.session() as session:
        stored = await session.scalar(select(ApiKey.legacy_id).where(ApiKey.name == "bare-v4"))
    assert stored == utmstack.key_ids["bare-v4"]
    # issue 13 §6: the key keeps UTMStack's UUID as its id, so the id a UTMStack client
    # stored (v11 ApiKeyResponseDTO.id) still names it.
    assert {k["name"]: k["id"] for k in listed.json()} == {
        name: utmstack.key_ids[name]
        for name in ("bare-v4", "cidr-host-bits", "ipv6-exact", "unrestricted", "expired")
    }
    by_utmstack_id = await harness.client.get(
        f"/api/api-keys/{utmstack.key_ids['bare-v4']}", headers=bearer(token)
    )
    assert by_utmstack_id.json()["name"] == "bare-v4"


async def test_second_import_changes_nothing_and_follows_utmstack_edits(
    harness: Harness, utmstack: UtmStackSource
) -> None:
    """Run twice: nothing created or updated, the database is the same (a rehashed
    password is not put back). After edits on UTMStack's side, those are updated."""
    await import_from_database(harness, utmstack)
    await totp_login(harness, "alice")  # rehash
    before = await dump(harness, exclude=AUDIT_TABLES)  # the run itself is audited
    again = await import_from_database(harness, utmstack)
    assert not again.changed
    assert {e.action for e in again.entries} <= {"unchanged", "skipped"}
    assert await dump(harness, exclude=AUDIT_TABLES) == before
    assert await totp_login(harness, "alice", steps=1)

    engine = create_async_engine(POSTGRES_URL or "")
    async with engine.begin() as connection:
        await connection.execute(
            text("SELECT set_config('search_path', :schema, true)"), {"schema": utmstack.schema}
        )
        await connection.execute(
            text("UPDATE api_keys SET allowed_ip = '192.0.2.0/24' WHERE name = 'bare-v4'")
        )
        await connection.execute(
            text("UPDATE jhi_user SET last_name = 'Liddell' WHERE login = 'alice'")
        )
    await engine.dispose()
    edited = await import_from_database(harness, utmstack)
    assert entry(edited, "key", "bare-v4").action == "updated"
    assert entry(edited, "user", "alice").action == "updated"
    assert edited.counts()["keys"]["updated"] == 1
    refused = await harness.client.get("/api/account", headers=bearer(utmstack.keys["bare-v4"]))
    assert refused.status_code == 403  # the cached record was dropped with the change


async def edit_utmstack(source: UtmStackSource, *statements: str) -> None:
    """Change rows on UTMStack's side, between two imports."""
    engine = create_async_engine(POSTGRES_URL or "")
    async with engine.begin() as connection:
        await connection.execute(
            text("SELECT set_config('search_path', :schema, true)"), {"schema": source.schema}
        )
        for statement in statements:
            await connection.execute(text(statement))
    await engine.dispose()


async def test_changes_made_in_authgate_stand_and_deleted_stay_deleted(
    harness: Harness, utmstack: UtmStackSource
) -> None:
    """A deactivation, a role taken away, a key's allow list and expiry and a password
    changed in authgate are not undone by a later run while UTMStack's values stay the
    same; a field changed in UTMStack since is applied; a user deleted in authgate (and
    the keys that went with it) is not re-created."""
    frank_key = legacy_key()
    frank_key_id = "5b7a2f0e-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
    await edit_utmstack(
        utmstack,
        "INSERT INTO jhi_user (id, login, password_hash, email, activated, created_by) "  # noqa: S608
        f"VALUES (5, 'frank', '{_bcrypt('frank-password-long')}', 'frank@example.com', true, "
        "'system')",
        "INSERT INTO jhi_user_authority VALUES (5, 'ROLE_USER'), (5, 'ROLE_ADMIN')",
        "INSERT INTO api_keys (id, user_id, name, api_key, created_at) VALUES "  # noqa: S608
        f"('{frank_key_id}', 5, 'frank-admin', '{frank_key}', now())",
    )
    await import_from_database(harness, utmstack, merge_admin=True)
    users = harness.services.users
    token = await totp_login(harness, "alice")
    expires = (harness.clock() + timedelta(days=5)).replace(microsecond=0)
    replaced = await harness.client.put(
        f"/api/api-keys/{utmstack.key_ids['bare-v4']}",
        json={"name": "bare-v4", "allowedIp": ["192.0.2.7"], "expiresAt": expires.isoformat()},
        headers=bearer(token),
    )
    assert replaced.status_code == 200, replaced.text
    await users.update_user("alice", UserChanges(activated=False), acting_user_id=None)
    await users.update_user(
        "frank", UserChanges(authorities=frozenset({"ROLE_USER"})), acting_user_id=None
    )
    await users.set_password("bob", "bob-new-password-in-authgate")

    again = await import_from_database(harness, utmstack, merge_admin=True)
    assert not again.changed
    assert entry(again, "user", "alice").kept == ("activated",)
    assert entry(again, "user", "frank").kept == ("authorities",)
    assert entry(again, "key", "bare-v4").kept == ("allowed_networks", "expires_at")
    assert any("kept (unchanged in UTMStack)" in n for n in entry(again, "user", "alice").notes)
    json_entry = next(e for e in again.as_json()["entries"] if e["name"] == "alice")
    assert json_entry["keptFromAuthgate"] == ["activated"]
    async with harness.services.db.session() as session:
        alice = await session.scalar(select(User).where(User.login == "alice"))
        frank = await session.scalar(select(User).where(User.login == "frank"))
        key = await session.scalar(select(ApiKey).where(ApiKey.name == "bare-v4"))
    assert alice is not None
    assert not alice.activated
    assert frank is not None
    assert frank.authorities == "ROLE_USER"
    assert key is not None
    assert key.allowed_networks == "192.0.2.7"
    assert key.expires_at == expires
    assert await harness.login("bob", "bob-new-password-in-authgate")

    # Changed in UTMStack since the last run: UTMStack wins for that field only.
    await edit_utmstack(
        utmstack,
        "UPDATE api_keys SET allowed_ip = '198.51.100.0/24' WHERE name = 'bare-v4'",
        "UPDATE jhi_user SET first_name = 'Alicia' WHERE login = 'alice'",
    )
    edited = await import_from_database(harness, utmstack, merge_admin=True)
    assert entry(edited, "key", "bare-v4").action == "updated"
    assert entry(edited, "key", "bare-v4").kept == ("expires_at",)
    assert entry(edited, "user", "alice").action == "updated"
    async with harness.services.db.session() as session:
        alice = await session.scalar(select(User).where(User.login == "alice"))
        key = await session.scalar(select(ApiKey).where(ApiKey.name == "bare-v4"))
    assert alice is not None
    assert alice.first_name == "Alicia"
    assert not alice.activated
    assert key is not None
    assert key.allowed_networks == "198.51.100.0/24"
    assert key.expires_at == expires

    # Deleted in authgate: not re-created, nor its keys; said so.
    await users.delete_user("frank", acting_user_id=None)
    after_delete = await import_from_database(harness, utmstack, merge_admin=True)
    assert entry(after_delete, "user", "frank").action == "deleted_in_authgate"
    assert entry(after_delete, "user", "frank").notes == ("deleted in authgate, not re-created",)
    assert entry(after_delete, "key", "frank-admin").action == "deleted_in_authgate"
    assert after_delete.counts()["users"]["deleted_in_authgate"] == 1
    assert not after_delete.changed
    async with harness.services.db.session() as session:
        assert await session.scalar(select(User).where(User.login == "frank")) is None
        assert await session.scalar(select(ApiKey).where(ApiKey.name == "frank-admin")) is None
    refused = await harness.client.get("/api/account", headers=bearer(frank_key))
    assert refused.status_code == 401


async def audited(harness: Harness, event: str) -> list[Any]:
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=(event,)), PageRequest(size=100)
    )
    return list(page.items)


async def test_deletions_in_utmstack_are_carried_over(
    harness: Harness, utmstack: UtmStackSource
) -> None:
    """A key row deleted in UTMStack (its only way to revoke one) is revoked, a user
    deleted there (with its keys) deactivated, each audited with the import as the cause
    and counted in the report; a dry run only reports; authgate's own users and keys are
    never touched; a reactivation made in authgate afterwards stands."""
    await import_from_database(harness, utmstack)
    bob_token = await harness.login("bob", PASSWORDS["bob"])
    bob_own = await harness.create_key(bob_token, name="made-in-authgate")
    await harness.create_user("carol")
    carol_key = await harness.create_key(await harness.login("carol", USER_PASSWORD))
    await edit_utmstack(
        utmstack,
        "DELETE FROM api_keys WHERE name = 'bare-v4'",
        "DELETE FROM jhi_user_authority WHERE user_id = 3",
        "DELETE FROM jhi_user WHERE id = 3",  # bob; beyond-cap goes with him (cascade)
    )

    async def status(key: str) -> int:
        return (await harness.client.get("/api/account", headers=bearer(key))).status_code

    dry = await import_from_database(harness, utmstack, dry_run=True)
    assert dry.counts()["keys"]["deleted_in_utmstack"] == 2
    assert dry.counts()["users"]["deleted_in_utmstack"] == 1
    assert await status(utmstack.keys["bare-v4"]) == 200  # a dry run writes nothing
    assert await harness.login("bob", PASSWORDS["bob"])

    report = await import_from_database(harness, utmstack)
    assert report.changed
    assert report.counts()["keys"]["deleted_in_utmstack"] == 2
    assert report.counts()["users"]["deleted_in_utmstack"] == 1
    assert entry(report, "key", "bare-v4").notes == (
        "deleted in UTMStack (its only way to revoke a key): revoked",
    )
    assert entry(report, "user", "bob").notes == (
        "deleted in UTMStack: deactivated, its 1 other live key(s) suspended",
    )
    by_name = {e["name"]: e for e in report.as_json()["entries"]}
    assert by_name["beyond-cap"]["action"] == "deleted_in_utmstack"
    assert by_name["bob"]["utmstackId"] == "3"
    assert report.as_json()["counts"]["users"]["deleted_in_utmstack"] == 1
    assert await status(utmstack.keys["bare-v4"]) == 401  # revoked: an unknown key
    assert await status(utmstack.keys["beyond-cap"]) == 401
    suspended = await harness.client.get("/api/account", headers=bearer(bob_own["key"]))
    assert suspended.json()["code"] == "api_key_owner_inactive"
    refused = await harness.client.post(
        "/api/authenticate", json={"username": "bob", "password": PASSWORDS["bob"]}
    )
    assert refused.status_code == 401
    assert await status(utmstack.keys["unrestricted"]) == 200  # alice's, still in UTMStack
    assert await status(carol_key["key"]) == 200  # authgate's own: never touched
    revoked = await audited(harness, "API_KEY_REVOKED")
    assert sorted((e.api_key_name, e.details["cause"]) for e in revoked) == [
        ("bare-v4", "utmstack_import"),
        ("beyond-cap", "utmstack_import"),
    ]
    [deactivated] = await audited(harness, "USER_DEACTIVATED")
    assert deactivated.details["cause"] == "utmstack_import"
    assert deactivated.details["suspendedApiKeys"] == 1

    again = await import_from_database(harness, utmstack)
    assert not again.changed
    assert entry(again, "key", "bare-v4").notes == ("deleted in UTMStack; revoked already",)
    assert entry(again, "user", "bob").notes == (
        "deleted in UTMStack: deactivated by an earlier run",
    )
    await harness.services.users.update_user(
        "bob", UserChanges(activated=True), acting_user_id=None
    )
    after = await import_from_database(harness, utmstack)
    assert not after.changed
    assert entry(after, "user", "bob").notes[0].endswith("reactivated in authgate since: left so")
    assert await harness.login("bob", PASSWORDS["bob"])


async def test_a_user_imported_before_and_skipped_now_is_left_as_it_is(
    harness: Harness, utmstack: UtmStackSource
) -> None:
    """An fs_manager imported with --include-fs-manager, then skipped by a run without
    it, is still in UTMStack: reported as skipped and left as it is (not deactivated),
    its key too."""
    await import_from_database(harness, utmstack, include_fs_manager=True)
    report = await import_from_database(harness, utmstack)
    assert not report.changed
    svc = entry(report, "user", "svc")
    assert svc.action == "skipped"
    assert svc.notes == (FS_MANAGER_SKIPPED, LEFT_AS_IT_IS)
    key = entry(report, "key", "fs-manager-key")
    assert key.action == "skipped"
    assert key.notes[-1] == LEFT_AS_IT_IS
    works = await harness.client.get(
        "/api/account", headers=bearer(utmstack.keys["fs-manager-key"])
    )
    assert works.status_code == 200


async def test_a_source_without_any_imported_key_carries_no_deletion(harness: Harness) -> None:
    """The diff review: another UTMStack (a staging copy, a rebuilt one) shares user ids,
    which are sequential, but never key ids (UUIDs): read as the same one, every key
    imported before was revoked for good, and its users deactivated."""
    plaintext = legacy_key()
    key_row = utm_key("6f1c2c4e-8a0b-4d57-9a51-3f1f3b7d9e20", 2, plaintext)
    alice, bob = utm_user(2, "alice"), utm_user(3, "bob")
    await _import(
        harness,
        utmstack_source.tables_from_document({"jhi_user": [alice, bob], "api_keys": [key_row]}),
    )
    other_key = {**key_row, "id": "9d3e2c4e-8a0b-4d57-9a51-3f1f3b7d9e21", "user_id": 3}
    other = {"jhi_user": [bob], "api_keys": [{**other_key, "api_key": legacy_key()}]}
    report = await _import(harness, utmstack_source.tables_from_document(other))
    assert report.counts()["users"]["deleted_in_utmstack"] == 0
    assert report.counts()["keys"]["deleted_in_utmstack"] == 0
    [variant] = [v for v in report.variants if v.subject == "api_keys"]
    assert "holds none of the live keys earlier runs imported" in variant.note
    ok = await harness.client.get("/api/account", headers=bearer(plaintext))
    assert ok.status_code == 200


async def test_a_source_without_any_imported_user_carries_no_deletion(harness: Harness) -> None:
    """A source that holds none of the users earlier runs imported is far more likely
    another (or an emptied) UTMStack than every user deleted: nothing is revoked or
    deactivated, and the report says why. Rows still there but unreadable are not
    deleted either."""
    plaintext = legacy_key()
    key_row = utm_key("6f1c2c4e-8a0b-4d57-9a51-3f1f3b7d9e10", 2, plaintext)
    alice, bob, svc = utm_user(2, "alice"), utm_user(3, "bob"), utm_user(9, "svc")
    document = {"jhi_user": [alice, bob], "api_keys": [key_row]}
    await _import(harness, utmstack_source.tables_from_document(document))
    other = {"jhi_user": [svc], "api_keys": []}
    report = await _import(harness, utmstack_source.tables_from_document(other))
    assert report.counts()["users"]["deleted_in_utmstack"] == 0
    assert report.counts()["keys"]["deleted_in_utmstack"] == 0
    [variant] = [v for v in report.variants if v.subject == "jhi_user"]
    assert "deletions in UTMStack are not carried over" in variant.note
    ok = await harness.client.get("/api/account", headers=bearer(plaintext))
    assert ok.status_code == 200

    unreadable = {
        "jhi_user": [{**alice, "activated": "yes"}, bob, svc],
        "api_keys": [
            {**key_row, "expires_at": 12},
            {**key_row, "id": "6f1c2c4e-8a0b-4d57-9a51-3f1f3b7d9e11", "api_key": legacy_key()},
        ],
    }
    kept = await _import(harness, utmstack_source.tables_from_document(unreadable))
    assert not kept.changed
    assert [e.action for e in kept.entries if e.source_id in ("2", key_row["id"])] == [
        "skipped",
        "skipped",
    ]
    assert all(
        e.notes[-1] == LEFT_AS_IT_IS for e in kept.entries if e.source_id in ("2", key_row["id"])
    )
    assert (await harness.client.get("/api/account", headers=bearer(plaintext))).status_code == 200
    [owner_unreadable] = [e for e in kept.entries if e.source_id.endswith("9e11")]
    assert owner_unreadable.notes == ("owner 2 not imported: its row in jhi_user is unreadable",)


async def test_the_last_active_administrator_is_not_deactivated(harness: Harness) -> None:
    """UTMStack's admin deleted there while it is authgate's only active administrator:
    a conflict, left active (nobody could administer authgate otherwise)."""
    admin, alice = utm_user(1, "admin"), utm_user(2, "alice")
    roles = [{"user_id": 1, "authority_name": "ROLE_ADMIN"}]
    await _import(
        harness,
        utmstack_source.tables_from_document(
            {"jhi_user": [admin, alice], "jhi_user_authority": roles}
        ),
    )
    report = await _import(harness, utmstack_source.tables_from_document({"jhi_user": [alice]}))
    kept = entry(report, "user", "admin")
    assert kept.action == "conflict"
    assert kept.notes[0].startswith("deleted in UTMStack, but authgate's last active administrator")
    assert await harness.login("admin", PASSWORDS["admin"])


async def test_users_of_an_earlier_import_keep_authgate_changes_if_utmstack_did_not_change(
    harness: Harness, utmstack: UtmStackSource
) -> None:
    """An earlier version recorded no imported fields: a row UTMStack did not modify since
    (same last-modified date) keeps what was changed in authgate; one it modified gets
    UTMStack's values."""
    await import_from_database(harness, utmstack)
    async with harness.services.db.transaction() as session:
        for login in ("alice", "bob"):
            user = await session.scalar(select(User).where(User.login == login))
            assert user is not None
            profile = json.loads(user.legacy_profile or "{}")
            profile.pop("importedFields")
            user.legacy_profile = json.dumps(profile, sort_keys=True)
            user.activated = False  # deactivated in authgate
    await edit_utmstack(
        utmstack, "UPDATE jhi_user SET last_modified_date = now() WHERE login = 'bob'"
    )
    report = await import_from_database(harness, utmstack)
    assert entry(report, "user", "alice").kept == ("activated",)
    assert entry(report, "user", "bob").kept == ()
    async with harness.services.db.session() as session:
        rows = await session.execute(select(User.login, User.activated))
        activated = dict(rows.all())
    assert activated["alice"] is False
    assert activated["bob"] is True


async def test_second_factors_follow_utmstack_but_not_over_authgate(
    harness: Harness, utmstack: UtmStackSource
) -> None:
    """A TOTP secret changed in UTMStack is updated (the new one logs in); one an admin
    reset in authgate since is not put back while UTMStack's stays the same."""
    await import_from_database(harness, utmstack)
    await edit_utmstack(
        utmstack,
        "UPDATE jhi_user SET tfa_secret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ' WHERE login = 'alice'",
    )
    changed = await import_from_database(harness, utmstack)
    assert entry(changed, "user", "alice").action == "updated"
    assert "second factor TOTP imported and in force" in entry(changed, "user", "alice").notes
    assert await totp_login(harness, "alice", secret=NEW_TOTP_SECRET)
    assert not (await import_from_database(harness, utmstack)).changed

    await harness.services.second_factor.reset("alice", by=OPERATOR)  # users reset-tfa
    again = await import_from_database(harness, utmstack)
    assert not again.changed
    assert any("changed in authgate" in n for n in entry(again, "user", "alice").notes)
    plain = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": PASSWORDS["alice"]}
    )
    assert plain.json()["authenticated"] is True  # no second step: the reset stands

    # E-mail codes without an SMTP server would lock bob out: not imported, said so.
    await edit_utmstack(utmstack, "UPDATE jhi_user SET tfa_method = 'EMAIL' WHERE login = 'bob'")
    no_smtp = await import_from_database(harness, utmstack)
    assert any("need an SMTP server" in n for n in entry(no_smtp, "user", "bob").notes)
    assert no_smtp.email_factors_waiting == 1
    assert no_smtp.as_json()["secondFactors"] == {
        "emailNotImportedNoSmtp": 1,
        "totpNotImportedUnusableSecret": 0,
        "notImportedSwitchOff": 0,
    }
    bob = await harness.client.post(
        "/api/authenticate", json={"username": "bob", "password": PASSWORDS["bob"]}
    )
    assert bob.json()["method"] is None


def utm_user(user_id: int, login: str, **fields: Any) -> dict[str, Any]:
    """A ``jhi_user`` row as UTMStack's export file holds it."""
    return {
        "id": user_id,
        "login": login,
        "password_hash": _bcrypt(PASSWORDS[login]),
        "email": f"{login}@example.com",
        "activated": True,
        "created_by": "system",
        **fields,
    }


def utm_key(key_id: str, user_id: int, plaintext: str, **fields: Any) -> dict[str, Any]:
    """An ``api_keys`` row as UTMStack's export file holds it (no allow list, no expiry)."""
    return {
        "id": key_id,
        "user_id": user_id,
        "name": "ci",
        "api_key": plaintext,
        "allowed_ip": None,
        "created_at": "2026-01-02T03:04:05",
        "expires_at": None,
        **fields,
    }


def unusable_totp_export() -> utmstack_source.SourceTables:
    """alice's TOTP secret as a person types it (spaces, lower case); bob's is no base32."""
    spaced = " ".join(TOTP_SECRET[i : i + 4] for i in range(0, len(TOTP_SECRET), 4)).lower()
    return utmstack_source.tables_from_document(
        {
            "jhi_user": [
                utm_user(2, "alice", tfa_secret=spaced, tfa_method="TOTP"),
                utm_user(3, "bob", tfa_secret="not base32!!", tfa_method="TOTP"),
            ]
        }
    )


UNUSABLE_NOTE = "second factor TOTP not imported: UTMStack's secret is not base32"


async def test_a_totp_secret_no_app_can_hold_is_not_imported(harness: Harness) -> None:
    """A UTMStack TOTP secret that is not base32 is not put in force (every code was a
    500 after it was): the report says so for the user and counts it, and the user
    signs in with the password alone. One typed with spaces and in lower case is read
    as authenticator apps read it, and its codes pass."""
    tables = unusable_totp_export()
    report = await _import(harness, tables)
    bob = entry(report, "user", "bob")
    assert bob.action == "created"
    assert [n for n in bob.notes if n.startswith(UNUSABLE_NOTE)], bob.notes
    assert not [n for n in bob.notes if "imported and in force" in n]
    assert report.totp_factors_unusable == 1
    assert report.as_json()["secondFactors"] == {
        "emailNotImportedNoSmtp": 0,
        "totpNotImportedUnusableSecret": 1,
        "notImportedSwitchOff": 0,
    }
    password_only = await harness.client.post(
        "/api/authenticate", json={"username": "bob", "password": PASSWORDS["bob"]}
    )
    assert password_only.json()["authenticated"] is True
    assert password_only.json()["method"] is None
    assert "second factor TOTP imported and in force" in entry(report, "user", "alice").notes
    assert await totp_login(harness, "alice")
    again = await _import(harness, tables)
    assert not again.changed
    assert again.totp_factors_unusable == 1


async def test_a_user_left_without_an_unusable_factor_enrols_where_one_is_required(
    tmp_path: Path, database_url: str
) -> None:
    """With AUTHGATE_TFA_REQUIRED, the user whose TOTP secret was not imported is taken
    through enrolment at the next login, as any user who must have a factor and has none."""
    async with harness_with(tmp_path, database_url, tfa_required="all") as harness:
        await _import(harness, unusable_totp_export())
        login = await harness.client.post(
            "/api/authenticate", json={"username": "bob", "password": PASSWORDS["bob"]}
        )
        assert login.json()["authenticated"] is False
        assert login.json()["forceTfa"] is True
        assert login.json()["tfaConfigured"] is False
        assert login.json()["method"] is None


async def test_an_unusable_secret_an_earlier_import_put_in_force_is_removed(
    harness: Harness,
) -> None:
    """An import before imports checked secrets put bob's in force: every code was
    refused (a 500 before that). The next run removes it, so bob signs in as if imported
    now; a run after that changes nothing."""
    tables = unusable_totp_export()
    await _import(harness, tables)
    await store_totp_secret(harness, "bob", "not base32!!")
    fixed = await _import(harness, tables)
    bob = entry(fixed, "user", "bob")
    assert bob.action == "updated"
    assert "the unusable TOTP secret an earlier import put in force removed" in bob.notes
    password_only = await harness.client.post(
        "/api/authenticate", json={"username": "bob", "password": PASSWORDS["bob"]}
    )
    assert password_only.json()["authenticated"] is True
    assert not (await _import(harness, tables)).changed


async def test_sealed_second_factors_of_an_earlier_import_are_converted(
    harness: Harness, utmstack: UtmStackSource
) -> None:
    """What an earlier version left (UTMStack's secret sealed in legacy_second_factor,
    no factor in force) becomes a factor in force at the next run; the column empties."""
    await import_from_database(harness, utmstack)
    carol_id = await harness.create_user("carol")  # imported once, gone from UTMStack since
    pepper = harness.services.server_secret
    earlier = json.dumps(
        {"method": "TOTP", "secret": seal(pepper, SECOND_FACTOR_PURPOSE, TOTP_SECRET)}
    )
    async with harness.services.db.transaction() as session:
        alice = await session.scalar(select(User).where(User.login == "alice"))
        assert alice is not None
        profile = json.loads(alice.legacy_profile or "{}")
        profile.pop("importedSecondFactor")
        alice.legacy_profile = json.dumps(profile, sort_keys=True)
        alice.legacy_second_factor, alice.second_factor = earlier, None
        await session.execute(delete(SecondFactor).where(SecondFactor.user_id == alice.id))
        # A user not in UTMStack any more: the sealed copy is the only one.
        carol = await session.get(User, carol_id)
        assert carol is not None
        carol.legacy_second_factor = json.dumps(
            {"method": "TOTP", "secret": seal(pepper, SECOND_FACTOR_PURPOSE, NEW_TOTP_SECRET)}
        )
    converted = await import_from_database(harness, utmstack)
    assert entry(converted, "user", "carol").action == "updated"
    assert entry(converted, "user", "carol").notes == (
        "sealed second factor TOTP converted and in force",
    )
    carol_step = await harness.client.post(
        "/api/authenticate", json={"username": "carol", "password": USER_PASSWORD}
    )
    assert carol_step.json()["method"] == "TOTP"
    notes = entry(converted, "user", "alice").notes
    assert entry(converted, "user", "alice").action == "updated"
    assert "sealed second factor of an earlier import converted" in notes
    assert "second factor TOTP imported and in force" in notes
    assert await totp_login(harness, "alice")
    async with harness.services.db.session() as session:
        leftover = await session.scalar(
            select(func.count()).select_from(User).where(User.legacy_second_factor.is_not(None))
        )
    assert leftover == 0
    assert not (await import_from_database(harness, utmstack)).changed


async def test_email_second_factor_sends_codes_through_smtp(
    utmstack: UtmStackSource,
    tmp_path: Path,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """UTMStack's EMAIL method becomes authgate's e-mail codes, sent by a real SMTP
    server at the next login; no TOTP secret in the database dump or the logs."""
    caplog.set_level(logging.DEBUG)
    await edit_utmstack(
        utmstack,
        "UPDATE jhi_user SET tfa_method = 'EMAIL', tfa_secret = 'KRSXG5CTMVRXEZLU' "
        "WHERE login = 'bob'",
        # UTMStack v10: a per-login secret, no method (codes were e-mailed).
        "UPDATE jhi_user SET tfa_secret = 'MFRGGZDFMZTWQ2LK' WHERE login = 'admin'",
    )
    with running_smtp_server() as (recorder, port):
        settings = test_settings(
            tmp_path / "smtp",
            database_url=database_url,
            alert_smtp_host="127.0.0.1",
            alert_smtp_port=port,
            alert_email_from="authgate@example.com",
            alert_email_to=["security@example.com"],
        )
        clock = FakeClock()
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
                smtp = Harness(app=app, services=app.state.services, client=client, clock=clock)
                report = await import_from_database(smtp, utmstack)
                bob_notes = entry(report, "user", "bob").notes
                assert "second factor EMAIL imported and in force" in bob_notes
                step = await client.post(
                    "/api/authenticate", json={"username": "bob", "password": PASSWORDS["bob"]}
                )
                assert step.json()["method"] == "EMAIL", step.text
                mails = [m for m in recorder.messages() if m["To"] == "bob@example.com"]
                found = re.search(r"\b(\d{6})\b", mails[-1].get_content())
                assert found is not None
                verified = await client.post(
                    "/api/tfa/verify-code",
                    content=found.group(1),
                    headers={**bearer(step.json()["token"]), "Content-Type": "text/plain"},
                )
                assert verified.status_code == 200, verified.text
                assert verified.json()["authenticated"] is True
                v10_user = await client.post(
                    "/api/authenticate",
                    json={"username": "admin", "password": PASSWORDS["admin"]},
                )
                assert v10_user.json()["method"] == "EMAIL"
                everything = await dump(smtp) + "\n" + caplog.text
    for secret in (TOTP_SECRET, "KRSXG5CTMVRXEZLU", "MFRGGZDFMZTWQ2LK"):
        assert secret not in everything


async def test_dry_run_writes_nothing(harness: Harness, utmstack: UtmStackSource) -> None:
    before = await dump(harness)
    report = await import_from_database(harness, utmstack, dry_run=True)
    assert report.counts()["users"]["created"] == 3
    await harness.services.audit.flush()
    assert await dump(harness) == before


async def test_admin_is_a_conflict_unless_merged(
    harness: Harness, utmstack: UtmStackSource, admin_token: str
) -> None:
    """authgate's own admin: UTMStack's admin is a conflict (its keys skipped); with
    merge_admin its keys go to authgate's admin, whose password stays."""
    report = await import_from_database(harness, utmstack)
    assert entry(report, "user", "admin").action == "conflict"
    assert entry(report, "key", "admin-tool").action == "skipped"
    merged = await import_from_database(harness, utmstack, merge_admin=True)
    assert entry(merged, "user", "admin").action == "updated"
    assert entry(merged, "key", "admin-tool").action == "created"
    assert await harness.login("admin", ADMIN_PASSWORD)
    response = await harness.client.get("/api/account", headers=bearer(utmstack.keys["admin-tool"]))
    assert response.json()["login"] == "admin"
    again = await import_from_database(harness, utmstack, merge_admin=True)
    assert not again.changed


async def test_fs_manager_users_are_imported_on_request(
    harness: Harness, utmstack: UtmStackSource
) -> None:
    report = await import_from_database(harness, utmstack, include_fs_manager=True)
    assert entry(report, "user", "svc").action == "created"
    assert entry(report, "key", "fs-manager-key").action == "created"


async def test_utmstack_built_in_accounts_are_skipped_with_the_reason(harness: Harness) -> None:
    """JHipster's ``system`` and ``anonymoususer`` and the ``user`` account (UTMStack's UI
    hides ``system`` and ``user``, its backend ``anonymoususer``) have reserved logins in
    authgate: each row is skipped with a note naming it UTMStack's built-in account, its
    keys are skipped with it, and the other users are imported."""
    rows = [
        (1, "system", "system@localhost"),
        (2, "anonymoususer", "anonymous@localhost"),
        (4, "User", "user@localhost"),
        (7, "dana", "dana@example.com"),
    ]
    tables = utmstack_source.SourceTables(
        rows={
            "jhi_user": [
                {
                    "id": user_id,
                    "login": login,
                    "password_hash": _bcrypt("a-long-enough-password"),
                    "email": email,
                    "activated": True,
                    "created_by": "system",
                }
                for user_id, login, email in rows
            ],
            "jhi_user_authority": [{"user_id": 1, "authority_name": "ROLE_ADMIN"}],
            "api_keys": [
                utm_key("6f1c2c4e-8a0b-4d57-9a51-3f1f3b7d9e10", 1, legacy_key(), name="system-key")
            ],
        }
    )
    report = await _import(harness, tables)
    for login in ("system", "anonymoususer", "User"):
        skipped = entry(report, "user", login)
        assert skipped.action == "skipped"
        assert skipped.notes == (
            f"The login {login.lower()!r} is reserved: UTMStack's built-in account, "
            "hidden in its UI.",
        )
    assert entry(report, "key", "system-key").action == "skipped"
    assert entry(report, "user", "dana").action == "created"
    listed = await harness.services.users.list_users(PageRequest(size=10))
    assert [user.login for user in listed.items] == ["dana"]


async def export_with_psql(utmstack: UtmStackSource, export: Path) -> None:
    """The README's psql command, writing UTMStack's export to ``export``."""
    with export.open("w") as out:
        await asyncio.to_thread(
            subprocess.run,
            [
                "psql",
                utmstack.url,
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--set",
                "ON_ERROR_STOP=1",
                "--command",
                utmstack_source.export_query(),
            ],
            stdout=out,
            check=True,
            env={**os.environ, "PGOPTIONS": f"--search_path={utmstack.schema}"},
        )


async def test_export_file_gives_the_same_result(
    harness: Harness, utmstack: UtmStackSource, tmp_path: Path
) -> None:
    """The README's psql command makes a file that imports like the database."""
    export = tmp_path / "utmstack.json"
    await export_with_psql(utmstack, export)
    from_database = await utmstack_source.read_database(utmstack.url, schema=utmstack.schema)
    from_file = utmstack_source.read_file(export)
    assert parse_source(from_file) == parse_source(from_database)
    report = await _import(harness, from_file)
    assert report.counts()["keys"]["created"] == 7
    again = await import_from_database(harness, utmstack)
    assert not again.changed


async def test_the_source_is_read_in_a_read_only_transaction(
    utmstack: UtmStackSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a query that writes (here, swapped in for the export query) cannot change
    UTMStack's database: PostgreSQL refuses it, and the error names no row."""
    writing = (
        "WITH w AS (INSERT INTO jhi_authority VALUES ('ROLE_WRITTEN') RETURNING 1) "
        "SELECT json_build_object('jhi_user', '[]'::json, 'n', (SELECT count(*) FROM w))"
    )
    monkeypatch.setattr(utmstack_source, "export_query", lambda tables: writing)
    with pytest.raises(ConfigurationError, match="ReadOnlySQLTransaction"):
        await utmstack_source.read_database(utmstack.url, schema=utmstack.schema)
    engine = create_async_engine(POSTGRES_URL or "")
    async with engine.connect() as connection:
        names = await connection.scalars(
            text(f'SELECT name FROM "{utmstack.schema}".jhi_authority')  # noqa: S608
        )
        assert set(names) == {"ROLE_ADMIN", "ROLE_USER"}
    await engine.dispose()


async def test_unreachable_or_foreign_databases_are_configuration_errors(
    utmstack: UtmStackSource,
) -> None:
    with pytest.raises(ConfigurationError, match="no jhi_user table"):
        await utmstack_source.read_database(utmstack.url, schema="no_such_schema")
    with pytest.raises(ConfigurationError, match="postgresql://"):
        await utmstack_source.read_database("mysql://u@h/db")
    with pytest.raises(ConfigurationError, match="connection refused") as refused:
        await utmstack_source.read_database("postgresql://nobody@127.0.0.1:1/none")
    assert "(--database-url)" in str(refused.value)
    # As serve names it, not by the driver's class (InvalidCatalogNameError): the
    # README-driven review.
    missing = make_url(utmstack.url).set(database="no_such_utmstack_database")
    with pytest.raises(ConfigurationError) as unknown:
        await utmstack_source.read_database(missing.render_as_string(hide_password=False))
    assert "has no database 'no_such_utmstack_database'" in str(unknown.value)
    assert "fix the name in --database-url" in str(unknown.value)


async def test_sslmode_in_the_url_is_taken_as_asyncpg_takes_it(utmstack: UtmStackSource) -> None:
    """libpq's sslmode (psql's and most tools' URLs) works as in AUTHGATE_DATABASE_URL;
    a parameter the driver refuses is one line naming no password, not a traceback."""
    url = make_url(utmstack.url).update_query_dict({"sslmode": "disable"})
    tables = await utmstack_source.read_database(
        url.render_as_string(hide_password=False), schema=utmstack.schema
    )
    assert len(tables.rows["jhi_user"]) == 4
    refused = make_url(utmstack.url).set(password="s3cret-pw").update_query_dict({"bogus": "1"})
    with pytest.raises(ConfigurationError, match="cannot connect") as raised:
        await utmstack_source.read_database(
            refused.render_as_string(hide_password=False), schema=utmstack.schema
        )
    assert "s3cret-pw" not in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_readme_documents_the_export_query() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert " ".join(utmstack_source.export_query().split()) in " ".join(readme.split())


def test_cli_imports_from_a_file_with_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command: --dry-run and --json, then a real run, then a no-op; exit 0, JSON
    report, no key in the output."""
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "250")
    plaintext = legacy_key()
    document = {
        "jhi_user": [
            {
                "id": 7,
                "login": "dana",
                "password_hash": _bcrypt("dana-password-long"),
                "email": "dana@example.com",
                "activated": True,
                "created_by": "system",
            }
        ],
        "jhi_user_authority": [{"user_id": 7, "authority_name": "ROLE_USER"}],
        "api_keys": [
            {
                "id": "6f1c2c4e-8a0b-4d57-9a51-3f1f3b7d9e10",
                "user_id": 7,
                "name": "[bold]ci",
                "api_key": plaintext,
                "allowed_ip": "203.0.113.5",
                "created_at": "2026-01-02T03:04:05",
                "expires_at": None,
            }
        ],
    }
    export = tmp_path / "export.json"
    export.write_text(json.dumps(document))
    runner = CliRunner()
    try:
        dry = runner.invoke(
            cli_app,
            ["--init", "import", "utmstack", "--from-file", str(export), "--dry-run", "--json"],
        )
        assert dry.exit_code == 0, dry.output
        assert json.loads(dry.stdout)["counts"]["keys"]["created"] == 1
        monkeypatch.setenv("COLUMNS", "40")  # the report's tables: whole rows in a pipe
        real = runner.invoke(
            cli_app,
            [
                "--init",
                "import",
                "utmstack",
                "--from-file",
                str(export),
                "--report",
                str(tmp_path / "r"),
            ],
        )
        assert real.exit_code == 0, real.output
        [key_row] = [line for line in real.stdout.splitlines() if "[bold]ci" in line]
        assert "6f1c2c4e-8a0b-4d57-9a51-3f1f3b7d9e10" in key_row  # text, not markup; uncut
        again = runner.invoke(cli_app, ["import", "utmstack", "--from-file", str(export), "--json"])
        assert json.loads(again.stdout)["counts"]["users"]["unchanged"] == 1
        assert json.loads(again.stdout)["counts"]["keys"]["unchanged"] == 1
        audit = runner.invoke(cli_app, ["audit", "tail", "-n", "5"])
        assert "UTMSTACK_IMPORTED" in audit.output
        for output in (dry.output, real.output, again.output, (tmp_path / "r").read_text()):
            assert plaintext not in output
        neither = runner.invoke(cli_app, ["import", "utmstack"])
        assert neither.exit_code == 2
    finally:
        os.environ.pop(CONFIG_FILE_VARIABLE, None)


def test_cli_refuses_a_report_path_it_cannot_write_before_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--report into a missing directory: one line, exit 2, nothing imported; a report
    that fails after the commit (the path broke meanwhile) is one line too."""
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(tmp_path / "data"))
    document = {
        "jhi_user": [
            {
                "id": 7,
                "login": "dana",
                "password_hash": _bcrypt("dana-password-long"),
                "email": "dana@example.com",
                "activated": True,
                "created_by": "system",
            }
        ]
    }
    export = tmp_path / "export.json"
    export.write_text(json.dumps(document))
    runner = CliRunner()
    command = ["--init", "import", "utmstack", "--from-file", str(export), "--json", "--report"]
    try:
        refused = runner.invoke(cli_app, [*command, str(tmp_path / "none" / "r.json")])
        assert refused.exit_code == 2, refused.output
        assert "no directory" in refused.stderr
        assert "Traceback" not in refused.output
        assert refused.stdout == ""
        directory = runner.invoke(cli_app, [*command, str(tmp_path)])
        assert directory.exit_code == 2
        assert "is a directory" in directory.stderr
        users = runner.invoke(cli_app, ["--init", "users", "list", "--output", "json"])
        assert users.exit_code == 0, users.output
        assert "dana" not in users.stdout  # nothing was imported

        # The directory vanishes between the check and the write (here: no check).
        monkeypatch.setattr(cli_imports, "_unwritable", lambda path: None)
        late = runner.invoke(cli_app, [*command, str(tmp_path / "gone" / "r.json")])
        assert late.exit_code == 1
        assert "the import is done, but --report" in late.stderr
        assert "No such file or directory" in late.stderr
        assert json.loads(late.stdout)["counts"]["users"]["created"] == 1
        assert "Traceback" not in late.output
    finally:
        os.environ.pop(CONFIG_FILE_VARIABLE, None)


def test_cli_warns_of_email_second_factors_left_out_without_smtp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an SMTP server, UTMStack's EMAIL second factors are not imported: the
    totals count them and the run ends with a warning line saying how many users sign
    in with a password alone until SMTP is set and the import is run again."""
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "250")
    rows = [
        {
            "id": user_id,
            "login": login,
            "password_hash": _bcrypt("a-password-long"),
            "email": f"{login}@example.com",
            "activated": True,
            "tfa_secret": "KRSXG5CTMVRXEZLU",
            "tfa_method": "EMAIL",
        }
        for user_id, login in ((7, "dana"), (8, "emil"))
    ]
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"jhi_user": rows}))
    runner = CliRunner()
    try:
        tables = runner.invoke(
            cli_app, ["--init", "import", "utmstack", "--from-file", str(export)]
        )
        assert tables.exit_code == 0, tables.output
        assert "EMAIL second factors not imported (no SMTP)" in tables.stdout
        last = tables.stderr.strip().splitlines()[-1]
        assert last.startswith("warning: 2 users sign in with a password alone")
        assert "run the import again" in " ".join(tables.stderr.split())
        as_json = runner.invoke(
            cli_app, ["import", "utmstack", "--from-file", str(export), "--json"]
        )
        assert json.loads(as_json.stdout)["secondFactors"] == {
            "emailNotImportedNoSmtp": 2,
            "totpNotImportedUnusableSecret": 0,
            "notImportedSwitchOff": 0,
        }
        assert "warning: 2 users" in as_json.stderr
    finally:
        os.environ.pop(CONFIG_FILE_VARIABLE, None)


def test_cli_says_which_totp_secrets_it_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's reproduction: an export with a TOTP secret that is not base32. The
    user's row and the totals say it was not imported, and the run ends with a warning
    line; the secret itself is printed nowhere."""
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "250")
    row = utm_user(3, "bob", tfa_secret="not base32!!", tfa_method="TOTP")
    export = tmp_path / "utm.json"
    export.write_text(json.dumps({"jhi_user": [row]}))
    runner = CliRunner()
    try:
        tables = runner.invoke(
            cli_app, ["--init", "import", "utmstack", "--from-file", str(export)]
        )
        assert tables.exit_code == 0, tables.output
        assert UNUSABLE_NOTE in tables.stdout
        assert "TOTP second factors not imported (unusable secret)" in tables.stdout
        last = tables.stderr.strip().splitlines()[-1]
        assert last.startswith("warning: 1 user signs in with a password alone")
        assert "not base32" in " ".join(tables.stderr.split())
        as_json = runner.invoke(
            cli_app, ["import", "utmstack", "--from-file", str(export), "--json"]
        )
        assert json.loads(as_json.stdout)["secondFactors"]["totpNotImportedUnusableSecret"] == 1
        for output in (tables.output, as_json.output):
            assert "not base32!!" not in output
    finally:
        os.environ.pop(CONFIG_FILE_VARIABLE, None)


def test_tracebacks_of_the_cli_show_no_variables() -> None:
    """typer prints the variables of every frame of an unexpected error by default: an
    import's frames hold UTMStack's rows (plaintext keys), so the CLI turns that off."""
    assert cli_app.pretty_exceptions_show_locals is False


def test_cli_reads_the_database_named_by_the_environment(
    utmstack: UtmStackSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UTMSTACK_DATABASE_URL (keeps the password out of the process list) and --schema;
    the printed tables name the source without a password and hold no key."""
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("UTMSTACK_DATABASE_URL", utmstack.url)
    runner = CliRunner()
    try:
        result = runner.invoke(
            cli_app,
            ["--init", "import", "utmstack", "--schema", utmstack.schema, "--include-fs-manager"],
        )
        assert result.exit_code == 0, result.output
        assert "fs-manager-key" in result.output
        assert "second factor TOTP" in result.output
        again = runner.invoke(
            cli_app, ["import", "utmstack", "--schema", utmstack.schema, "--json"]
        )
        report = json.loads(again.stdout)
        assert report["source"].startswith("database 127.0.0.1/")
        assert report["counts"]["keys"]["created"] == 0
        for secret in utmstack.secrets():
            assert secret not in result.output
            assert secret not in again.output
    finally:
        os.environ.pop(CONFIG_FILE_VARIABLE, None)


def test_cli_an_explicit_file_wins_over_the_environments_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UTMSTACK_DATABASE_URL is --database-url's default: --from-file given on the command
    line is imported (the database is not contacted); both options given explicitly
    still conflict."""
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("UTMSTACK_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"jhi_user": [utm_user(3, "bob")]}))
    runner = CliRunner()
    try:
        from_file = runner.invoke(
            cli_app, ["--init", "import", "utmstack", "--from-file", str(export), "--json"]
        )
        assert from_file.exit_code == 0, from_file.output
        report = json.loads(from_file.stdout)
        assert report["source"] == f"file {export}"
        assert report["counts"]["users"]["created"] == 1
        both = runner.invoke(
            cli_app,
            [
                "import",
                "utmstack",
                "--from-file",
                str(export),
                "--database-url",
                "postgresql://nobody@127.0.0.1:1/none",
            ],
        )
        assert both.exit_code == 2
        assert "give exactly one of --database-url and --from-file" in both.stderr
    finally:
        os.environ.pop(CONFIG_FILE_VARIABLE, None)


def test_cli_reports_deletions_in_utmstack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key row gone from a later export: the run's table lists it as
    deleted_in_utmstack and counts it; --dry-run --json says the same and writes nothing."""
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "250")
    key_id = "6f1c2c4e-8a0b-4d57-9a51-3f1f3b7d9e10"
    key_row = utm_key(key_id, 3, legacy_key())
    bob = utm_user(3, "bob")
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"jhi_user": [bob], "api_keys": [key_row]}))
    runner = CliRunner()
    command = ["import", "utmstack", "--from-file", str(export)]
    try:
        assert runner.invoke(cli_app, ["--init", *command]).exit_code == 0
        export.write_text(json.dumps({"jhi_user": [bob], "api_keys": []}))
        dry = runner.invoke(cli_app, [*command, "--dry-run", "--json"])
        assert json.loads(dry.stdout)["counts"]["keys"]["deleted_in_utmstack"] == 1
        monkeypatch.setattr(cli_imports, "_FULL_TABLE_LIMIT", 0)  # a large import's table
        tables = runner.invoke(cli_app, command)
        assert tables.exit_code == 0, tables.output
        [row] = [line for line in tables.stdout.splitlines() if key_id in line]
        assert "deleted_in_utmstack" in row
        assert "revoked" in row
        assert "deleted_in_utmstack" in tables.stdout.split("totals")[1]
        again = runner.invoke(cli_app, [*command, "--json"])
        assert json.loads(again.stdout)["counts"]["keys"]["deleted_in_utmstack"] == 0
    finally:
        os.environ.pop(CONFIG_FILE_VARIABLE, None)


# -- UTMStack's global two-factor switch (utmstack.tfa.enable) -------------------------------


def switch_row(value: str | None) -> dict[str, Any]:
    return {"conf_param_short": "utmstack.tfa.enable", "conf_param_value": value}


@pytest.mark.parametrize(
    ("rows", "enabled"),
    [
        ([switch_row("true")], True),
        ([switch_row("TRUE")], True),  # Boolean.parseBoolean: any case
        ([switch_row("false")], False),
        ([switch_row(None)], False),  # a null is off, as in UTMStack
        ([switch_row("yes")], False),
        ([switch_row(" true")], False),
        ([switch_row("true"), switch_row("true")], True),
        ([switch_row("true"), switch_row("false")], None),  # disagree: not read
        ([switch_row(1)], None),  # type: ignore[arg-type]
        ([{"conf_param_short": "utmstack.mail.host", "conf_param_value": "true"}], None),
        (None, None),  # no table (an export of the earlier command)
    ],
)
def test_the_switch_is_read_as_utmstack_reads_it(
    rows: list[dict[str, Any]] | None, enabled: bool | None
) -> None:
    document: dict[str, Any] = {"jhi_user": []}
    if rows is not None:
        document["utm_configuration_parameter"] = rows
    switch = parse_source(utmstack_source.tables_from_document(document)).tfa_switch
    assert switch.enabled is enabled
    if enabled is None:
        assert switch.detail


async def test_the_switch_off_leaves_utmstacks_factors_out(
    harness: Harness, utmstack: UtmStackSource, tmp_path: Path
) -> None:
    """Off, UTMStack asked nobody for a second factor: alice's TOTP is not put in force
    (noted, counted), she signs in with her password as in UTMStack. Turned on, it is
    imported; turned off again, the factor that import put in force is removed."""
    await edit_utmstack(
        utmstack,
        "UPDATE utm_configuration_parameter SET conf_param_value = 'false' "
        "WHERE conf_param_short = 'utmstack.tfa.enable'",
        # UTMStack v10's leftover: a per-login secret written while the switch was on.
        "UPDATE jhi_user SET tfa_secret = 'MFRGGZDFMZTWQ2LK' WHERE login = 'bob'",
    )
    report = await import_from_database(harness, utmstack)
    assert report.tfa_switch.enabled is False
    alice = entry(report, "user", "alice").notes
    assert (
        "second factor TOTP not imported: UTMStack's two-factor switch (utmstack.tfa.enable) "
        "is off, so UTMStack did not ask for it"
    ) in alice
    assert not [n for n in alice if "in force" in n]
    assert any("switch" in n and "EMAIL" in n for n in entry(report, "user", "bob").notes)
    assert report.factors_switch_off == 2
    assert report.email_factors_waiting == 0  # not asked for: not waiting for SMTP either
    document = report.as_json()
    assert document["secondFactors"]["notImportedSwitchOff"] == 2
    assert document["twoFactorSwitch"] == {
        "state": "off",
        "detail": "utmstack.tfa.enable is off",
        "utmstackFlow": "v11",
        "authgateSettings": {"AUTHGATE_TFA_REQUIRED": "none"},
    }
    plain = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": PASSWORDS["alice"]}
    )
    assert plain.json()["authenticated"] is True
    assert not (await import_from_database(harness, utmstack)).changed

    switch_on = (
        "UPDATE utm_configuration_parameter SET conf_param_value = 'true' "
        "WHERE conf_param_short = 'utmstack.tfa.enable'"
    )
    await edit_utmstack(utmstack, switch_on)
    on = await import_from_database(harness, utmstack)
    assert "second factor TOTP imported and in force" in entry(on, "user", "alice").notes
    assert on.as_json()["twoFactorSwitch"]["authgateSettings"] == {
        "AUTHGATE_TFA_REQUIRED": "all",
        "AUTHGATE_TFA_UNENROLLED": "enrol",
    }
    assert await totp_login(harness, "alice")

    await edit_utmstack(utmstack, switch_on.replace("'true'", "'false'"))
    off = await import_from_database(harness, utmstack)
    assert entry(off, "user", "alice").action == "updated"
    assert (
        "second factor an earlier import put in force removed (UTMStack's switch is off)"
        in entry(off, "user", "alice").notes
    )
    plain = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": PASSWORDS["alice"]}
    )
    assert plain.json()["authenticated"] is True

    # The export file carries the switch, and none of UTMStack's other settings.
    export = tmp_path / "utmstack.json"
    await export_with_psql(utmstack, export)
    assert "SMTP-PASSWORD-NOT-EXPORTED" not in export.read_text()
    from_file = parse_source(utmstack_source.read_file(export))
    assert from_file.tfa_switch.enabled is False


def v10_export(switch: str | None) -> dict[str, Any]:
    """A UTMStack v10 export (no tfa_method column): dana had a per-login secret."""
    row = {
        "id": 7,
        "login": "dana",
        "password_hash": _bcrypt("a-password-long"),
        "email": "dana@example.com",
        "activated": True,
        "tfa_secret": "KRSXG5CTMVRXEZLU",
    }
    document: dict[str, Any] = {"jhi_user": [row]}
    if switch is not None:
        document["utm_configuration_parameter"] = [switch_row(switch)]
    return document


def test_cli_names_the_settings_that_do_what_the_switch_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Switch on, UTMStack v10: the run ends with a notice naming AUTHGATE_TFA_REQUIRED=all
    and AUTHGATE_TFA_UNENROLLED=email, and what authgate is set to now; the JSON report
    says the same. No switch in the export: one warning line that it could not be read."""
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "400")
    export = tmp_path / "v10.json"
    export.write_text(json.dumps(v10_export("true")))
    runner = CliRunner()
    try:
        tables = runner.invoke(
            cli_app, ["--init", "import", "utmstack", "--from-file", str(export), "--dry-run"]
        )
        assert tables.exit_code == 0, tables.output
        notice = " ".join(tables.stderr.split())
        assert "notice: UTMStack's two-factor switch (utmstack.tfa.enable) is on" in notice
        assert "UTMStack v10 e-mailed every user a code at each login" in notice
        assert "AUTHGATE_TFA_REQUIRED=all and AUTHGATE_TFA_UNENROLLED=email" in notice
        assert "authgate now has AUTHGATE_TFA_REQUIRED=none, AUTHGATE_TFA_UNENROLLED=enrol" in (
            notice
        )
        as_json = runner.invoke(
            cli_app, ["import", "utmstack", "--from-file", str(export), "--json", "--dry-run"]
        )
        switch = json.loads(as_json.stdout)["twoFactorSwitch"]
        assert switch["state"] == "on"
        assert switch["utmstackFlow"] == "v10"
        assert switch["authgateSettings"] == {
            "AUTHGATE_TFA_REQUIRED": "all",
            "AUTHGATE_TFA_UNENROLLED": "email",
        }
        assert "AUTHGATE_TFA_UNENROLLED=email" in " ".join(as_json.stderr.split())

        export.write_text(json.dumps(v10_export(None)))
        unknown = runner.invoke(
            cli_app, ["import", "utmstack", "--from-file", str(export), "--dry-run"]
        )
        assert unknown.exit_code == 0, unknown.output
        warning = " ".join(unknown.stderr.split())
        assert (
            "warning: UTMStack's two-factor switch (utmstack.tfa.enable) could not be read: "
            "no utm_configuration_parameter in the source"
        ) in warning
        assert (
            "unknown"
            in json.loads(
                runner.invoke(
                    cli_app, ["import", "utmstack", "--from-file", str(export), "--json"]
                ).stdout
            )["twoFactorSwitch"]["state"]
        )
    finally:
        os.environ.pop(CONFIG_FILE_VARIABLE, None)


async def test_without_the_switch_factors_are_imported_as_before(harness: Harness) -> None:
    """No switch in the source: each user's factor is taken as UTMStack's rows give it
    (as before the switch was read), and the report says the switch was not read."""
    document = {"jhi_user": [utm_user(2, "alice", tfa_secret=TOTP_SECRET, tfa_method="TOTP")]}
    report = await _import(harness, utmstack_source.tables_from_document(document))
    assert report.tfa_switch.enabled is None
    assert report.as_json()["twoFactorSwitch"]["state"] == "unknown"
    assert "second factor TOTP imported and in force" in entry(report, "user", "alice").notes
    assert await totp_login(harness, "alice")


# -- allow lists UTMStack could not match ---------------------------------------------------


async def test_allow_list_entries_utmstack_never_matched(harness: Harness) -> None:
    """An entry that is neither an address nor a network never matched in UTMStack (it
    compares such entries as text): dropped with a note, the key works from its other
    entries. A key with no usable entry worked from nowhere: not imported. An IPv6 entry
    is admitted, with a note that UTMStack never matched it."""
    keys = {
        "hostname": ("127.0.0.1,my-host.example", legacy_key()),
        "bad-prefix": ("127.0.0.1,10.0.0.0/33", legacy_key()),
        "only-bad": ("10.0.0.0/33, my-host.example", legacy_key()),
        "v6": ("::1, 2001:db8::/32", legacy_key()),
        "tomcat-form": ("0:0:0:0:0:0:0:1", legacy_key()),
    }
    document = {
        "jhi_user": [utm_user(3, "bob")],
        "api_keys": [
            {
                "id": f"6f1c2c4e-8a0b-4d57-9a51-3f1f3b7d9e1{n}",
                "user_id": 3,
                "name": name,
                "api_key": plaintext,
                "allowed_ip": allowed,
                "created_at": "2026-01-02T03:04:05",
                "expires_at": None,
            }
            for n, (name, (allowed, plaintext)) in enumerate(keys.items())
        ],
    }
    report = await _import(harness, utmstack_source.tables_from_document(document))
    for name, number, entry_text in (
        ("hostname", 2, "my-host.example"),
        ("bad-prefix", 2, "10.0.0.0/33"),
    ):
        key = entry(report, "key", name)
        assert key.action == "created", key
        assert (
            f"allowed_ip entry {number} ({entry_text!r}) dropped: neither an address nor a "
            "network, so UTMStack never matched it; the key works from its other entries"
        ) in key.notes
        ok = await harness.client.get("/api/account", headers=bearer(keys[name][1]))
        assert ok.status_code == 200, ok.text
        async with harness.client_from("10.0.0.1") as client:
            refused = await client.get("/api/account", headers=bearer(keys[name][1]))
        assert refused.status_code == 403  # never wider than UTMStack's
    skipped = entry(report, "key", "only-bad")
    assert skipped.action == "skipped"
    assert skipped.notes[0].startswith("no allowed_ip entry is an address or a network")
    v6 = entry(report, "key", "v6")
    assert v6.action == "created"
    assert [
        n for n in v6.notes if n.startswith("allowed_ip entry 1 ('::1') is IPv6: UTMStack never")
    ]
    assert [n for n in v6.notes if "entry 2 ('2001:db8::/32') is IPv6" in n]
    async with harness.client_from("::1") as client:
        assert (await client.get("/api/account", headers=bearer(keys["v6"][1]))).status_code == 200
    assert not [n for n in entry(report, "key", "tomcat-form").notes if "IPv6" in n]
    assert not (await _import(harness, utmstack_source.tables_from_document(document))).changed


async def test_allow_lists_utmstack_matched_no_address_with_are_not_imported(
    harness: Harness,
) -> None:
    """UTMStack admits any address only for a null or blank allowed_ip; separators alone
    (',', stored for "allowedIp": ["", ""]) matched no address, and neither did an IPv4
    entry its CIDR pattern refuses (leading zeros, a netmask, a padded prefix: compared
    as text with the caller's address). Such a key is not imported, never made "any
    address"; beside a usable entry, such an entry is dropped with a note."""
    keys = {
        "separators": ",",
        "spaced-separators": " , ,",
        "leading-zeros-cidr": "010.0.0.0/8",
        "leading-zeros-address": "192.168.001.010",
        "padded-prefix": "10.0.0.0/08",
        "netmask": "10.0.0.0/255.0.0.0",
        "mixed": "127.0.0.1, 010.0.0.0/8",
        "blank": "  ",
        # Java's trim() keeps a no-break or ideographic space (the diff review): not blank
        # there, and no address matched it, alone or before an address.
        "no-break-space": "\u00a0",
        "ideographic-space": "\u3000",
        "spaced-address": "\u00a0127.0.0.1",
    }
    plaintexts = {name: legacy_key() for name in keys}
    document = {
        "jhi_user": [utm_user(3, "bob")],
        "api_keys": [
            {
                "id": f"7a1c2c4e-8a0b-4d57-9a51-3f1f3b7d9e{n:02d}",
                "user_id": 3,
                "name": name,
                "api_key": plaintexts[name],
                "allowed_ip": allowed,
                "created_at": "2026-01-02T03:04:05",
                "expires_at": None,
            }
            for n, (name, allowed) in enumerate(keys.items())
        ],
    }
    report = await _import(harness, utmstack_source.tables_from_document(document))
    separators = entry(report, "key", "separators")
    assert separators.action == "skipped"
    assert separators.notes == (
        "allowed_ip holds separators only: UTMStack matched no address with it, so the key "
        "worked from no address; not imported",
    )
    assert entry(report, "key", "spaced-separators").notes == separators.notes
    for name in ("leading-zeros-cidr", "leading-zeros-address", "padded-prefix", "netmask"):
        skipped = entry(report, "key", name)
        assert skipped.action == "skipped", skipped
        assert skipped.notes[0].startswith("no allowed_ip entry is an address or a network")
        assert "in a form UTMStack's pattern refuses" in skipped.notes[0]
    for name in ("no-break-space", "ideographic-space", "spaced-address"):
        skipped = entry(report, "key", name)
        assert skipped.action == "skipped", skipped
        assert skipped.notes[0].startswith("no allowed_ip entry is an address or a network")
    for name in keys.keys() - {"mixed", "blank"}:
        async with harness.client_from("10.1.2.3") as client:
            refused = await client.get("/api/account", headers=bearer(plaintexts[name]))
        assert refused.status_code == 401, name  # not imported: an unknown key
    mixed = entry(report, "key", "mixed")
    assert mixed.action == "created"
    assert [n for n in mixed.notes if n.startswith("allowed_ip entry 2 ('010.0.0.0/8') dropped")]
    async with harness.client_from("10.0.0.1") as client:
        assert (
            await client.get("/api/account", headers=bearer(plaintexts["mixed"]))
        ).status_code == (403)
    assert entry(report, "key", "blank").action == "created"  # blank: UTMStack's any address
    async with harness.client_from("198.51.100.4") as client:
        assert (
            await client.get("/api/account", headers=bearer(plaintexts["blank"]))
        ).status_code == (200)


# -- passwords bcrypt read only 72 bytes of ----------------------------------------------------


async def test_a_password_of_72_bytes_or_more_keeps_its_bcrypt_hash(harness: Harness) -> None:
    """Spring's bcrypt read 72 bytes: the first 72 and anything after them log in (as in
    UTMStack), but such a login never rehashes the password as typed, so a typo after
    byte 72 does not become the password. A short password is rehashed as before."""
    real = "L0ng-" + "x" * 70 + "-the-real-tail"
    typo = real[:72] + "-a-typo"
    spring = bcrypt.hashpw(real.encode()[:72], bcrypt.gensalt(4, prefix=b"2a")).decode()
    document = {
        "jhi_user": [
            {**utm_user(3, "bob"), "password_hash": spring},
            utm_user(2, "alice"),
        ]
    }
    await _import(harness, utmstack_source.tables_from_document(document))
    assert await harness.login("bob", typo)  # UTMStack let this in too
    assert await harness.login("bob", real)
    assert await harness.login("bob", real[:72])
    assert await harness.login("alice", PASSWORDS["alice"])
    async with harness.services.db.session() as session:
        bob = await session.scalar(select(User).where(User.login == "bob"))
        alice = await session.scalar(select(User).where(User.login == "alice"))
    assert bob is not None
    assert alice is not None
    assert bob.password_hash == spring
    assert alice.password_hash.startswith("$argon2id$")


# -- conflicts and notes ---------------------------------------------------------------------


async def test_a_case_only_duplicate_names_the_utmstack_row_it_collides_with(
    harness: Harness,
) -> None:
    document = {
        "jhi_user": [
            utm_user(20, "alice", email="Jane@Example.com"),
            utm_user(21, "bob", email="jane@example.com"),
            {**utm_user(22, "alice", email="other@example.com"), "login": "Alice"},
        ]
    }
    report = await _import(harness, utmstack_source.tables_from_document(document))
    assert entry(report, "user", "alice").action == "created"
    [by_email] = [e for e in report.entries if e.source_id == "21"]
    assert by_email.action == "conflict"
    assert by_email.notes == (
        "e-mail already used by UTMStack user 20 (alice), imported before it: authgate "
        "compares logins and e-mail addresses without case",
    )
    [by_login] = [e for e in report.entries if e.source_id == "22"]
    assert by_login.notes[0].startswith("login already used by UTMStack user 20 (alice)")
    await harness.create_user("carol")
    other = await _import(
        harness,
        utmstack_source.tables_from_document(
            {"jhi_user": [{**utm_user(23, "bob"), "login": "carol"}]}
        ),
    )
    assert entry(other, "user", "carol").notes == ("login already used by another authgate user",)


NAMESPACE = "logins and e-mail addresses are one namespace (a user signs in with either)"


async def test_a_login_that_is_another_users_e_mail_is_a_conflict(harness: Harness) -> None:
    """UTMStack looks an e-mail-shaped name up by e-mail only, and authgate keeps logins
    and e-mail addresses one namespace: a login equal to another user's e-mail (or an
    e-mail equal to another user's login) is a conflict, the later UTMStack row (by id)
    skipped, as for a duplicate e-mail; against authgate's own users too."""
    await harness.create_user("carol")
    document = {
        "jhi_user": [
            utm_user(41, "alice", email="z41@corp.com"),
            {**utm_user(42, "bob", email="z@corp.com"), "login": "z41@corp.com"},
            {**utm_user(50, "alice", email="c@corp.com"), "login": "c52@corp.com"},
            {**utm_user(51, "bob", email="c52@corp.com"), "login": "b51"},
            {**utm_user(60, "bob", email="d@corp.com"), "login": "carol@example.com"},
        ]
    }
    report = await _import(harness, utmstack_source.tables_from_document(document))
    by_id = {e.source_id: e for e in report.entries if e.kind == "user"}
    assert by_id["41"].action == "created"
    assert by_id["42"].action == "conflict"
    assert by_id["42"].notes == (
        "login already used as the e-mail address of UTMStack user 41 (alice), imported "
        f"before it: {NAMESPACE}",
    )
    assert by_id["50"].action == "created"
    assert by_id["51"].action == "conflict"
    assert by_id["51"].notes == (
        "e-mail address already used as the login of UTMStack user 50 (c52@corp.com), "
        f"imported before it: {NAMESPACE}",
    )
    assert by_id["60"].notes == (
        f"login already used as the e-mail address of another authgate user: {NAMESPACE}",
    )
    token = await harness.login("z41@corp.com", PASSWORDS["alice"])  # alice's e-mail
    account = await harness.client.get("/api/account", headers=bearer(token))
    assert account.json()["login"] == "alice"
    again = await _import(harness, utmstack_source.tables_from_document(document))
    assert not again.changed
    assert [e.source_id for e in again.entries if e.action == "conflict"] == ["42", "51", "60"]


async def test_a_rerun_finds_a_login_that_became_another_users_e_mail(harness: Harness) -> None:
    """On a later run: a login renamed in UTMStack into another user's e-mail is a
    conflict (the user left as it is); a clash an earlier import let in is the later
    row's, and the earlier row is updated as usual."""
    document = {
        "jhi_user": [
            utm_user(41, "alice", email="z41@corp.com"),
            utm_user(42, "bob", email="z@corp.com"),
            utm_user(43, "svc", email="s@corp.com"),
        ]
    }
    await _import(harness, utmstack_source.tables_from_document(document))
    document["jhi_user"][1]["login"] = "z41@corp.com"
    renamed = await _import(harness, utmstack_source.tables_from_document(document))
    assert entry(renamed, "user", "z41@corp.com").action == "conflict"
    assert (
        entry(renamed, "user", "z41@corp.com")
        .notes[0]
        .startswith("login already used as the e-mail address of UTMStack user 41 (alice)")
    )
    async with harness.services.db.session() as session:
        logins = set((await session.scalars(select(User.login))).all())
    assert logins == {"alice", "bob", "svc"}

    # As an import before this check left it: svc's login is alice's e-mail in authgate.
    async with harness.services.db.transaction() as session:
        svc = await session.scalar(select(User).where(User.login == "svc"))
        assert svc is not None
        svc.login = "z41@corp.com"
        profile = json.loads(svc.legacy_profile or "{}")
        profile["importedFields"]["login"] = "z41@corp.com"
        svc.legacy_profile = json.dumps(profile, sort_keys=True)
    document["jhi_user"][1]["login"] = "bob"
    document["jhi_user"][2]["login"] = "z41@corp.com"
    document["jhi_user"][0]["first_name"] = "Alicia"
    later = await _import(harness, utmstack_source.tables_from_document(document))
    by_id = {e.source_id: e for e in later.entries if e.kind == "user"}
    assert by_id["41"].action == "updated"  # the earlier row keeps its name
    assert by_id["43"].action == "conflict"
    assert (
        by_id["43"]
        .notes[0]
        .startswith("login already used as the e-mail address of UTMStack user 41 (alice)")
    )


async def test_notes_say_what_the_import_made_of_odd_rows(harness: Harness) -> None:
    """A second-factor method authgate does not know (with its secret), a malformed
    bcrypt hash, a language authgate does not accept, no authorities at all or only
    unknown ones: each is imported and noted, never silently."""
    document = {
        "jhi_user": [
            utm_user(2, "alice", tfa_method="SMS", tfa_secret=TOTP_SECRET, lang_key="pt_BR"),
            {**utm_user(3, "bob"), "password_hash": "$2a$10$short"},
            utm_user(4, "svc"),
            {**utm_user(5, "bob"), "login": "erin", "email": "erin@example.com"},
        ],
        "jhi_user_authority": [
            {"user_id": 5, "authority_name": "ROLE_ADMIN"},
            {"user_id": 4, "authority_name": "ROLE_AUDITOR"},
        ],
        "utm_configuration_parameter": [switch_row("true")],
    }
    report = await _import(harness, utmstack_source.tables_from_document(document))
    alice = entry(report, "user", "alice").notes
    assert (
        "second factor SMS not imported: authgate has no such method (it has TOTP and "
        "e-mail codes); UTMStack's row has a secret for it"
    ) in alice
    assert not [n for n in alice if "without a secret" in n]
    assert "language 'pt_BR' is not one authgate accepts: set to en" in alice
    assert "no authorities in UTMStack: given ROLE_USER, authgate's least role" in alice
    bob = entry(report, "user", "bob")
    assert bob.action == "created"
    assert [n for n in bob.notes if n.startswith("password hash is not a well-formed bcrypt")]
    svc = entry(report, "user", "svc").notes
    assert "no authority authgate knows: given ROLE_USER, authgate's least role" in svc
    assert "authorities not known to authgate, kept in the profile only: ROLE_AUDITOR" in svc
    assert entry(report, "user", "erin").notes == ()  # nothing odd: nothing noted


# -- text a database cannot hold ---------------------------------------------------------------


def test_cli_refuses_rows_with_lone_surrogates_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JSON export may escape a lone surrogate ("\\udcff"): that row is unreadable,
    skipped with the column named; the others are imported; no traceback."""
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "250")
    plaintext = legacy_key()
    rows = [
        utm_user(2, "alice", first_name="Al\udcffice"),
        utm_user(3, "bob"),
    ]
    document = {
        "jhi_user": rows,
        "jhi_user_authority": [
            {"user_id": 3, "authority_name": "ROLE_\udcff"},
            {"user_id": 3, "authority_name": "ROLE_USER"},
        ],
        "api_keys": [
            utm_key("6f1c2c4e-8a0b-4d57-9a51-3f1f3b7d9e10", 3, plaintext, name="ci\udcff")
        ],
    }
    export = tmp_path / "export.json"
    export.write_text(json.dumps(document))  # ensure_ascii: "\udcff" escaped, as in the review
    assert "\\udcff" in export.read_text()
    runner = CliRunner()
    try:
        result = runner.invoke(
            cli_app, ["--init", "import", "utmstack", "--from-file", str(export), "--json"]
        )
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        report = json.loads(result.stdout)
        by_id = {(e["kind"], e["utmstackId"]): e for e in report["entries"]}
        assert by_id[("user", "2")]["action"] == "skipped"
        assert by_id[("user", "2")]["notes"] == [
            "unreadable row: first_name holds text that is not valid Unicode (a lone surrogate)"
        ]
        assert by_id[("user", "3")]["action"] == "created"
        assert by_id[("user", "user 3")]["notes"][0].startswith(
            "unreadable row: authority_name holds text that is not valid Unicode"
        )
        key = by_id[("key", "6f1c2c4e-8a0b-4d57-9a51-3f1f3b7d9e10")]
        assert key["action"] == "skipped"
        assert "name holds text that is not valid Unicode" in key["notes"][0]
        tables = runner.invoke(cli_app, ["import", "utmstack", "--from-file", str(export)])
        assert tables.exit_code == 0, tables.output
        assert "Traceback" not in tables.output
    finally:
        os.environ.pop(CONFIG_FILE_VARIABLE, None)
