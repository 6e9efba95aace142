"""Column variants of older UTMStack versions: detected, reported, handled (from an
export document, so no UTMStack database is needed)."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import bcrypt

from authgate.services.utmstack_import import ImportOptions, UtmStackImporter
from authgate.services.utmstack_rows import parse_source
from authgate.storage.utmstack_source import tables_from_document
from tests.conftest import Harness, bearer

PASSWORD = "erin-password-long"


def legacy_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def user(user_id: int, login: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": user_id,
        "login": login,
        "password_hash": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode(),
        "email": f"{login}@example.com",
        "activated": True,
        "created_by": "system",
        "created_date": "2024-03-01T10:00:00",
        **extra,
    }


def subjects(document: dict[str, Any]) -> dict[str, str]:
    data = parse_source(tables_from_document(document))
    return {variant.subject: variant.note for variant in data.variants}


def test_missing_columns_and_tables_are_reported() -> None:
    """No tfa_method, fs_manager, default_password, no authorities table, account_id
    instead of user_id, no generated_at: each is reported with what is done about it."""
    document = {
        "jhi_user": [user(1, "erin")],
        "api_keys": [
            {
                "id": "0b0e2b8e-9d1f-4a0e-8f51-5a6f4fd0c001",
                "account_id": "b3f8c0de-0000-4000-8000-000000000001",
                "name": "old",
                "api_key": legacy_key(),
                "allowed_ip": None,
                "created_at": "2024-05-01T00:00:00+00:00",
                "expires_at": None,
            }
        ],
        "columns": {
            "jhi_user": ["id", "login", "password_hash", "email", "activated", "created_date"],
            "api_keys": ["id", "account_id", "name", "api_key", "allowed_ip", "created_at"],
        },
    }
    found = subjects(document)
    assert found["jhi_user.tfa_method"] == (
        "absent: a tfa_secret is taken as e-mail codes (no authenticator app holds it)"
    )
    assert "jhi_user.fs_manager" in found
    assert "jhi_user.default_password" in found
    assert "absent: users get ROLE_USER only" in found["jhi_user_authority"]
    assert "account_id" in found["api_keys.user_id"]
    assert "api_keys.generated_at" in found
    assert "api_keys.expires_at" in found


def test_columns_are_told_by_the_rows_without_a_columns_object() -> None:
    document = {"jhi_user": [user(1, "erin", tfa_secret=None)]}
    found = subjects(document)
    assert "jhi_user.tfa_method" in found
    assert "jhi_user.tfa_secret" not in found
    assert "absent: no API key is imported" in found["api_keys"]


async def test_older_forms_are_imported(harness: Harness) -> None:
    """A key column on jhi_user (before the api_keys table) becomes a legacy key of its
    user; keys without user_id go to --unmapped-keys-owner, else they are skipped."""
    user_key, account_key = legacy_key(), legacy_key()
    document = {
        "jhi_user": [user(1, "erin", api_key=user_key), user(2, "frank", lang_key="pt_BR!")],
        "api_keys": [
            {
                "id": "0b0e2b8e-9d1f-4a0e-8f51-5a6f4fd0c002",
                "account_id": "b3f8c0de-0000-4000-8000-000000000002",
                "name": "by-account",
                "api_key": account_key,
                "created_at": "2024-05-01T00:00:00",
            },
            {"id": "broken-row", "user_id": 1, "name": "no key column"},
        ],
    }
    services = harness.services
    importer = UtmStackImporter(
        feed=services.feed,
        clock=services.clock,
        pepper=services.server_secret,
        audit=services.audit,
        max_key_lifetime_days=365,
        second_factor=services.second_factor,
    )
    data = parse_source(tables_from_document(document))
    first = await importer.run(data, ImportOptions(), source="test")
    actions = {(e.kind, e.name): (e.action, e.notes) for e in first.entries}
    assert actions[("key", "UTMStack key")][0] == "created"
    assert actions[("key", "by-account")][0] == "skipped"
    assert "--unmapped-keys-owner" in actions[("key", "by-account")][1][0]
    assert actions[("key", "broken-row")] == (
        "skipped",
        ("unreadable row: missing column api_key",),
    )
    response = await harness.client.get("/api/account", headers=bearer(user_key))
    assert response.json()["login"] == "erin"

    second = await importer.run(data, ImportOptions(unmapped_keys_owner="frank"), source="test")
    assert [e.action for e in second.entries if e.name == "by-account"] == ["created"]
    response = await harness.client.get("/api/account", headers=bearer(account_key))
    assert response.json()["login"] == "frank"
    assert await harness.login("erin", PASSWORD)
    frank = await harness.services.users.get_user("frank")
    assert frank.lang_key == "en"  # UTMStack's value is no language tag: English


def test_rows_of_the_wrong_type_are_unreadable_never_guessed() -> None:
    """A hand-edited export with strings for booleans, a number for a timestamp or a
    list for an allow list: the row is reported unreadable and skipped, never read in
    the permissive direction (active, not a service account, never expiring, any
    address). The same row typed as PostgreSQL exports it is read."""
    document = {
        "jhi_user": [
            user(1, "erin", activated="false"),
            user(2, "svc", fs_manager="true"),
            user(3, "gina", tfa_secret=12345, tfa_method="TOTP"),
            user(4, "hank", activated=None),
            user(5, "ivan", activated=False, fs_manager=None, default_password=True),
        ],
        "api_keys": [
            {
                "id": "0b0e2b8e-9d1f-4a0e-8f51-5a6f4fd0c003",
                "user_id": 5,
                "name": "expired-as-millis",
                "api_key": legacy_key(),
                "created_at": "2024-05-01T00:00:00",
                "expires_at": 1700000000000,
            },
            {
                "id": "0b0e2b8e-9d1f-4a0e-8f51-5a6f4fd0c004",
                "user_id": 5,
                "name": "allow-list-as-array",
                "api_key": legacy_key(),
                "allowed_ip": ["10.0.0.1"],
            },
            {
                "id": "0b0e2b8e-9d1f-4a0e-8f51-5a6f4fd0c005",
                "user_id": "5",
                "name": "owner-as-text",
                "api_key": legacy_key(),
            },
        ],
    }
    data = parse_source(tables_from_document(document))
    assert [u.login for u in data.users] == ["ivan"]
    ivan = data.users[0]
    assert (ivan.activated, ivan.fs_manager, ivan.default_password) == (False, False, True)
    assert data.keys == []
    assert data.unreadable == [
        ("jhi_user", "1", "activated is not true or false"),
        ("jhi_user", "2", "fs_manager is not true or false"),
        ("jhi_user", "3", "tfa_secret is not text"),
        ("jhi_user", "4", "activated is not true or false"),
        (
            "api_keys",
            "0b0e2b8e-9d1f-4a0e-8f51-5a6f4fd0c003",
            "expires_at is not a timestamp in ISO 8601 form",
        ),
        ("api_keys", "0b0e2b8e-9d1f-4a0e-8f51-5a6f4fd0c004", "allowed_ip is not text"),
        ("api_keys", "0b0e2b8e-9d1f-4a0e-8f51-5a6f4fd0c005", "user_id is not a number"),
    ]


def test_a_timestamp_with_no_utc_form_is_unreadable() -> None:
    """A hand-edited timestamp outside the years 1 to 9999 in UTC makes its row
    unreadable (reported, skipped), never an OverflowError that ends the import."""
    document = {
        "jhi_user": [
            user(1, "erin", created_date="0001-01-01T00:00:00+01:00"),
            user(2, "frank"),
        ]
    }
    data = parse_source(tables_from_document(document))
    assert [u.login for u in data.users] == ["frank"]
    [(table, label, why)] = data.unreadable
    assert (table, label) == ("jhi_user", "1")
    assert why.startswith("created_date: Time out of range")
